"""Rating accuracy: recmodels' default ``train`` vs Bayesian MF (myfm) on the same planted data.

Each size draws ratings with :func:`recmodels.datasets.make_ratings` (seed 0), shuffles them with
seed 2026 and splits them 80/10/10 into train/valid/test by position (issue 12's protocol). Then,
in this process and on that one split:

* **myfm BMF**: ``myfm.MyFMRegressor(rank=10)`` on one-hot user + item columns, 300 Gibbs
  iterations (a benchmark-only dependency; skipped with a note when it is not installed);
* **recmodels** ``train`` with its defaults, once per model (``--models``, default MF and
  NeuMF), through :func:`recmodels.training.train_run` with ``--train/--valid/--test`` exactly
  as ``recmodels train`` runs it; "best of" is the model with the better *validation* RMSE;
* optionally ``--tune TRIALS``: :func:`recmodels.tuning.tune` (if importable) over MF and NeuMF.

Test RMSE is on the test rows whose user and item are in the training part (the rows
``recmodels train`` evaluates; myfm is scored on the same rows). Not a test: run it by hand::

    python benchmarks/accuracy.py                      # the two small sizes (~5 min on 2 cores)
    python benchmarks/accuracy.py --sizes small        # 943 x 1,682 x 100k only
    python benchmarks/accuracy.py --notebook           # + 100,950 x 59,196 x 4.4M (long)
    python benchmarks/accuracy.py --sizes notebook     # the notebook's scale only
    python benchmarks/accuracy.py --tune 20 --json out.json
    python benchmarks/accuracy.py --sizes small --sweep '[{"kind": "mf", "l2": 0.1}]'

``--sweep`` (the screening in docs/models.md) trains each ``{"kind", "model": {ModelConfig
fields}, TrainConfig fields}`` entry with :class:`~recmodels.training.Trainer` in this process
(up to 300 epochs, patience 4 unless given, one thread) and prints its validation and test RMSE
(predictions clipped to 1..5) instead of the comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

SIZES = {
    "small": (943, 1_682, 100_000),
    "medium": (12_600, 7_400, 550_000),
    "notebook": (100_950, 59_196, 4_400_000),
}
SHUFFLE_SEED = 2026
FRACTIONS = (0.8, 0.1, 0.1)


def planted_split(size: str, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The train/valid/test frames of one size (issue 12's protocol)."""
    from recmodels.datasets import make_ratings

    n_users, n_items, n_ratings = SIZES[size]
    ratings = make_ratings(n_users, n_items, n_ratings, seed=seed).ratings
    ratings = ratings.sample(frac=1.0, random_state=SHUFFLE_SEED).reset_index(drop=True)
    cut_a = int(FRACTIONS[0] * len(ratings))
    cut_b = int((FRACTIONS[0] + FRACTIONS[1]) * len(ratings))
    cols = ["user_id", "item_id", "rating"]
    return ratings.iloc[:cut_a][cols], ratings.iloc[cut_a:cut_b][cols], ratings.iloc[cut_b:][cols]


def seen_rows(train: pd.DataFrame, part: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``part`` whose user and item appear in ``train``."""
    known = part["user_id"].isin(train["user_id"]) & part["item_id"].isin(train["item_id"])
    return part[known]


def _rmse(y_true, y_pred) -> float:
    err = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    return float(math.sqrt(np.mean(err ** 2)))


def run_myfm(train, test, rank: int, iterations: int, seed: int) -> dict:
    """myfm's Bayesian FM (order 2 = biased MF) on one-hot user + item columns."""
    try:
        import myfm
        from sklearn.preprocessing import OneHotEncoder
    except ImportError as exc:
        return {"name": "myfm BMF", "skipped": f"not installed ({exc.name})"}
    encoder = OneHotEncoder(handle_unknown="ignore")
    start = time.perf_counter()
    x_train = encoder.fit_transform(train[["user_id", "item_id"]].astype(str)).tocsr()
    x_test = encoder.transform(test[["user_id", "item_id"]].astype(str)).tocsr()
    model = myfm.MyFMRegressor(rank=rank, random_seed=seed)
    with contextlib.redirect_stderr(io.StringIO()):  # myfm's per-iteration progress bar
        model.fit(x_train, train["rating"].to_numpy(dtype=np.float64), n_iter=iterations)
    pred = model.predict(x_test)
    low, high = train["rating"].min(), train["rating"].max()
    return {"name": f"myfm BMF (rank {rank}, {iterations} it.)",
            "test_rmse": _rmse(test["rating"], pred),
            "test_rmse_clipped": _rmse(test["rating"], np.clip(pred, low, high)),
            "seconds": time.perf_counter() - start}


def run_train(kind: str, train, valid, test, out: Path, threads: int | None, seed: int = 0) -> dict:
    """Default ``recmodels train --model KIND`` (only ``--threads`` and ``--seed`` set)."""
    from recmodels.training import TrainConfig, train_run

    start = time.perf_counter()
    config = TrainConfig(seed=seed) if threads is None else TrainConfig(num_threads=threads, seed=seed)
    run = train_run(out, train=train, valid=valid, test=test, model=kind, train_config=config,
                    quiet=True, echo=None, overwrite=True)
    metrics = run.metrics
    return {"name": f"recmodels {kind}", "test_rmse": metrics["test"]["rmse"],
            "test_rmse_clipped": _clipped_test_rmse(run),
            "valid_rmse": metrics["valid"]["rmse"], "best_epoch": metrics.get("best_epoch"),
            "epochs": len(metrics.get("history", [])), "seconds": time.perf_counter() - start,
            "batch_size": run.config["train"]["batch_size"]}


def _clipped_test_rmse(run) -> float:
    """Test RMSE of the run's predictions clipped to its rating range (as ``score`` does)."""
    import torch

    from recmodels import runs
    from recmodels.data import load_encoded
    from recmodels.training.trainer import predict_tensors

    test = load_encoded(runs.split_path(run.path, "test"))
    pred = predict_tensors(run.model, torch.as_tensor(np.asarray(test.user_index, dtype=np.int64)),
                           torch.as_tensor(np.asarray(test.item_index, dtype=np.int64)))
    data = run.config["data"]
    return _rmse(test.rating, np.clip(pred.double().numpy(), data["rating_min"], data["rating_max"]))


def run_tune(trials: int, train, valid, test, out: Path) -> dict:
    """``recmodels tune --model mf,neumf --trials TRIALS`` if :mod:`recmodels.tuning` is there."""
    try:
        from recmodels.tuning import tune
    except ImportError as exc:
        return {"name": f"recmodels tune ({trials} trials)", "skipped": f"not available ({exc})"}
    from recmodels.errors import RecmodelsError
    from recmodels.runs import load_run

    start = time.perf_counter()
    try:
        result = tune(out, train=train, valid=valid, test=test, model=["mf", "neumf"],
                      trials=trials, quiet=True, echo=None, overwrite=True)
    except RecmodelsError as exc:  # e.g. Optuna not installed
        return {"name": f"recmodels tune ({trials} trials)", "skipped": str(exc)}
    run = load_run(result.best_run)
    metrics = run.metrics
    return {"name": f"recmodels tune ({trials} trials)", "test_rmse": metrics["test"]["rmse"],
            "test_rmse_clipped": _clipped_test_rmse(run),
            "valid_rmse": metrics["valid"]["rmse"], "seconds": time.perf_counter() - start,
            "params": result.best_params}


def run_size(size: str, args, work: Path) -> list[dict]:
    train, valid, test = planted_split(size)
    test = seen_rows(train, test)
    print(f"\n== {size}: {SIZES[size][0]:,} users x {SIZES[size][1]:,} items x "
          f"{SIZES[size][2]:,} ratings; {len(train):,} train / {len(valid):,} valid / "
          f"{len(test):,} test rows", flush=True)
    rows = []
    if size != "notebook" or not args.no_myfm_notebook:
        rows.append(run_myfm(train, test, args.rank, args.iterations, args.seed))
        _show(rows[-1])
    ours = []
    for kind in args.models:
        ours.append(run_train(kind, train, valid, test, work / f"{size}-{kind}", args.threads))
        _show(ours[-1])
    rows += ours
    if ours:
        best = min(ours, key=lambda r: r["valid_rmse"])
        rows.append({**best, "name": f"recmodels best of ({best['name'].split()[-1]}, by valid)",
                     "seconds": sum(r["seconds"] for r in ours)})
    for kind in args.models if args.train_seeds else ():
        figures = [run_train(kind, train, valid, test, work / f"{size}-{kind}-s{seed}", args.threads,
                             seed)["test_rmse"] for seed in args.train_seeds]
        print(f"  recmodels {kind}, seeds {','.join(map(str, args.train_seeds))}: test rmse "
              + " ".join(f"{f:.4f}" for f in figures)
              + f" (mean {np.mean(figures):.4f}, worst {max(figures):.4f})", flush=True)
    if args.tune:
        rows.append(run_tune(args.tune, train, valid, test, work / f"{size}-tune"))
        _show(rows[-1])
    return rows


def sweep(size: str, grid: list[dict]) -> list[dict]:
    """Screen Trainer configs on one size's split (see the module docstring)."""
    import torch

    from recmodels import data as D
    from recmodels.models import ModelConfig, build_model
    from recmodels.training import TrainConfig, Trainer
    from recmodels.training.trainer import predict_tensors

    torch.set_num_threads(1)
    train, valid, test = planted_split(size)
    users, items = D.fit_encoders(train)
    parts = [D.encode(x, users, items)[0] for x in (train, valid, test)]

    def rmse(model, enc) -> float:
        pred = predict_tensors(model, torch.as_tensor(np.asarray(enc.user_index, dtype=np.int64)),
                               torch.as_tensor(np.asarray(enc.item_index, dtype=np.int64)))
        return _rmse(enc.rating, np.clip(pred.double().numpy(), 1, 5))

    out = []
    for spec in grid:
        spec = dict(spec)
        kind, model_options = spec.pop("kind", "mf"), spec.pop("model", {})
        config = TrainConfig(device="cpu", seed=0, **{"epochs": 300, "patience": 4, **spec})
        torch.manual_seed(0)
        model = build_model(ModelConfig(kind, len(users), len(items),
                                        global_mean=float(np.mean(parts[0].rating)), **model_options))
        trainer = Trainer(model, config, torch.device("cpu"), log=None, progress=False)
        start = time.perf_counter()
        trainer.fit(parts[0], parts[1])
        model.load_state_dict(trainer.final_state_dict())
        row = {"kind": kind, "model": model_options, "spec": spec, "valid_rmse": rmse(model, parts[1]),
               "test_rmse": rmse(model, parts[2]), "best_epoch": trainer.state.best_epoch,
               "batch_size": trainer.config.batch_size, "l2": trainer.config.l2,
               "seconds": time.perf_counter() - start}
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def _show(row: dict) -> None:
    if "skipped" in row:
        print(f"  {row['name']}: skipped, {row['skipped']}", flush=True)
        return
    extra = f", best epoch {row['best_epoch']}/{row['epochs']}" if "best_epoch" in row else ""
    print(f"  {row['name']}: test rmse {row['test_rmse']:.4f} ({row['seconds']:.0f}s{extra})",
          flush=True)


def table(results: dict[str, list[dict]]) -> str:
    """The results as a Markdown table, with each row's gap to myfm (raw and clipped)."""
    lines = ["| data | model | test RMSE | gap to myfm | clipped to the rating range | gap | seconds |",
             "|---|---|---|---|---|---|---|"]
    for size, rows in results.items():
        ref = next((r for r in rows if r["name"].startswith("myfm") and "test_rmse" in r), None)
        for r in rows:
            if "skipped" in r:
                lines.append(f"| {size} | {r['name']} | skipped | | | | |")
                continue
            cells = []
            for key in ("test_rmse", "test_rmse_clipped"):
                gap = "" if ref is None or r is ref else f"{r[key] - ref[key]:+.4f}"
                cells += [f"{r[key]:.4f}", gap]
            lines.append(f"| {size} | {r['name']} | {' | '.join(cells)} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["small", "medium"])
    parser.add_argument("--notebook", action="store_true", help="also the notebook's scale (long)")
    parser.add_argument("--no-myfm-notebook", action="store_true",
                        help="skip myfm at the notebook's scale")
    parser.add_argument("--models", nargs="+", default=["mf", "neumf"], choices=["mf", "neumf"])
    parser.add_argument("--rank", type=int, default=10, help="myfm rank")
    parser.add_argument("--iterations", type=int, default=300, help="myfm Gibbs iterations")
    parser.add_argument("--tune", type=int, default=0, metavar="TRIALS",
                        help="also recmodels.tuning.tune with this many trials (if importable)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for recmodels")
    parser.add_argument("--train-seeds", type=lambda t: [int(x) for x in t.split(",")], default=[],
                        metavar="S,S,...", help="also train each model with these seeds (robustness)")
    parser.add_argument("--seed", type=int, default=42, help="myfm's random seed (its default)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--sweep", metavar="GRID_JSON",
                        help="screen a list of Trainer configs instead (see the docstring)")
    args = parser.parse_args(argv)
    if args.sweep:
        results = {size: sweep(size, json.loads(args.sweep)) for size in args.sizes}
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2, default=str))
        return
    sizes = list(dict.fromkeys(list(args.sizes) + (["notebook"] if args.notebook else [])))
    results = {}
    with tempfile.TemporaryDirectory(prefix="recmodels-accuracy-") as tmp:
        for size in sizes:
            results[size] = run_size(size, args, Path(tmp))
    print("\n" + table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
