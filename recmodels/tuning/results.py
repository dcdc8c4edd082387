"""What a search shows and writes: the trials as rows, the table on screen, the CSV and the plot."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from ..fileio import atomic_path, new_figure, save_line_plot
from .space import parameter_names

TABLE_CSV = "trials.csv"


def params_text(params: dict) -> str:
    return " ".join(f"{k}={_short(v)}" for k, v in params.items() if k != "model")


def _short(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def is_interrupted(trial, optuna) -> bool:
    """Whether a trial was stopped by Ctrl-C or a kill: failed without an error of its own.

    Such a trial is not counted towards ``--trials``; a resume runs another in its place.
    """
    return trial.state == optuna.trial.TrialState.FAIL and "error" not in trial.user_attrs


def _state(trial, optuna) -> str:
    """``complete``, ``pruned``, ``fail`` (an error of its own) or ``interrupted``."""
    return "interrupted" if is_interrupted(trial, optuna) else trial.state.name.lower()


def trial_rows(study, optuna) -> list[dict]:
    """One dict per trial: number, state, model, valid/test RMSE, epochs, seconds, parameters."""
    names = []
    for t in study.trials:
        names.extend(k for k in t.params if k != "model" and k not in names)
    order = parameter_names()
    names.sort(key=lambda n: order.index(n) if n in order else len(order))  # the dataclasses' order
    rows = []
    for t in study.trials:
        if t.state == optuna.trial.TrialState.WAITING:
            continue
        curve = [t.intermediate_values[k] for k in sorted(t.intermediate_values)]
        row = {
            "trial": t.number,
            "state": _state(t, optuna),
            "model": t.user_attrs.get("model", t.params.get("model")),
            "valid_rmse": t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
            "test_rmse": t.user_attrs.get("test_rmse"),
            "best_epoch": t.user_attrs.get("best_epoch"),
            "epochs": t.user_attrs.get("epochs", len(curve) or None),
            "seconds": t.user_attrs.get("seconds"),
            "run_dir": t.user_attrs.get("run_dir"),
        }
        defaults = t.user_attrs.get("defaults") or {}
        row.update({name: t.params.get(name, defaults.get(name)) for name in names})
        row["valid_rmse_by_epoch"] = curve
        rows.append(row)
    return rows


def format_table(rows: list[dict], *, best: int | None = None, limit: int = 20) -> str:
    """The results table as text: best first, pruned and failed trials last."""
    shown = sorted(rows, key=lambda r: (r["valid_rmse"] is None,
                                        r["valid_rmse"] if r["valid_rmse"] is not None else 0,
                                        r["trial"]))
    skip = {"valid_rmse_by_epoch", "run_dir"}
    columns = [c for c in (rows[0] if rows else {}) if c not in skip]
    if all(r["model"] == rows[0]["model"] for r in rows):
        columns.remove("model")

    def cell(value) -> str:
        if value is None:
            return "-"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    table = [columns] + [[cell(r[c]) + ("*" if c == "trial" and r["trial"] == best else "")
                          for c in columns] for r in shown[:limit]]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(line, widths, strict=True)) for line in table]
    if len(shown) > limit:
        lines.append(f"... {len(shown) - limit} more trial(s) in {TABLE_CSV}")
    return "\n".join(lines)


def plot_trials(rows: list[dict], path: str | os.PathLike) -> Path:
    """Trial value vs trial number (pruned trials at their last epoch) and the best so far."""
    fig = new_figure(7, 4)
    from matplotlib.ticker import MaxNLocator

    ax = fig.add_subplot()
    done = [(r["trial"], r["valid_rmse"]) for r in rows if r["valid_rmse"] is not None]
    pruned = [(r["trial"], r["valid_rmse_by_epoch"][-1]) for r in rows
              if r["state"] == "pruned" and r["valid_rmse_by_epoch"]]
    if done:
        ax.scatter(*zip(*done, strict=True), label="complete", zorder=3)
        best, line = math.inf, []
        for number, value in sorted(done):
            best = min(best, value)
            line.append((number, best))
        last = max(r["trial"] for r in rows)
        if last > line[-1][0]:
            line.append((last, best))  # the best so far holds to the last trial
        ax.step(*zip(*line, strict=True), where="post", color="C1", label="best so far")
    if pruned:
        ax.scatter(*zip(*pruned, strict=True), marker="x", color="C3",
                   label="pruned (last epoch)", zorder=3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trial numbers, never 0.5
    return save_line_plot(fig, ax, path, xlabel="trial (as in trials.csv)", ylabel="validation RMSE")


def write_csv(rows: list[dict], path: Path) -> None:
    buffer = io.StringIO()
    columns = [c for c in (rows[0] if rows else {}) if c != "valid_rmse_by_epoch"]
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
