"""What :func:`recmodels.scoring.evaluate` measured: the report, its table and its plot."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import ConfigError
from ...fileio import new_figure, save_png, write_json

BUCKETS = ("cold", "medium", "heavy")
"""User activity buckets, by the user's number of training ratings."""
PREDICTORS = ("model", "bias", "global_mean")
LABELS = {"model": "model", "bias": "user+item bias", "global_mean": "global mean"}
GROUPS = ("all", "known", *BUCKETS, "unknown_ids")
"""Rating-metric groups: every row, rows the model knows (and by bucket), rows with an unknown id."""
_TRAIN_EXTRA = "install the training extra: pip install 'recmodels[train]'"


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _fmt(value, digits: int = 4) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


@dataclass
class EvaluationReport:
    """What :func:`evaluate` measured (``--json`` writes :meth:`to_dict`).

    Attributes
    ----------
    model : dict
        ``path``, ``kind``, ``provider``, ``fallback_score``.
    data : dict
        ``source``, ``columns``, ``rows``, ``known_rows`` and the unknown-id counts
        (``unknown_rows``, ``unknown_users``, ``unknown_items``, ``null_ids``); with ranking,
        ``ranked_rows`` and ``rows_with_fewer_candidates``.
    train : dict or None
        ``source``, ``rows``, ``used_rows`` (ids the model knows), ``users_by_bucket``.
    protocol : dict
        ``k``, ``negatives``, ``all_items``, ``seed``, ``ties``, ``buckets`` (labels), ``clip``.
    rating : dict
        Predictor (``model``, ``bias``, ``global_mean``) -> group (:data:`GROUPS`) ->
        ``{"mse", "rmse", "mae", "hit_accuracy", "n"}`` (metrics None when ``n`` is 0).
    ranking : dict or None
        Predictor -> group (``all`` and the buckets) -> ``{"hr", "ndcg", "n"}``.
    notes : list of str
        What was left out and why (no training data, rows ranked among fewer candidates).
    warnings : list of str
        From the scorer (why CUDA was not used).
    seconds : float
    arrays : dict
        ``rating`` (true ratings) and ``predictions`` (predictor -> array), ``group`` (per row:
        0-2 bucket, 3 known without bucket, -1 unknown id): for :func:`plot_evaluation`; not
        in :meth:`to_dict`.
    """

    model: dict
    data: dict
    train: dict | None
    protocol: dict
    rating: dict
    ranking: dict | None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    arrays: dict = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict:
        """The report as a JSON-able dict (non-finite numbers become None)."""
        keys = ("model", "data", "train", "protocol", "rating", "ranking", "notes", "warnings", "seconds")
        return _finite({key: getattr(self, key) for key in keys})

    def write_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON, atomically."""
        return write_json(path, self.to_dict())

    def format_table(self) -> str:
        """The readable summary ``recmodels evaluate`` prints."""
        d, p, names = self.data, self.protocol, list(self.rating)
        lines = [f"evaluate {self.model['path']} ({self.model['kind']}) on {d['source']}"]
        line = f"rows        {d['rows']:,}: {d['known_rows']:,} scored by the model"
        if d["unknown_rows"]:
            line += (f", {d['unknown_rows']:,} with ids it does not know ({d['unknown_users']:,} users, "
                     f"{d['unknown_items']:,} items, {d['null_ids']:,} null) -> fallback "
                     f"{self.model['fallback_score']:.4g}")
        lines.append(line)
        if self.train is not None:
            t, labels = self.train, p["buckets"]
            by = ", ".join(f"{t['users_by_bucket'][b]:,} {b} ({labels[b]})" for b in BUCKETS)
            lines.append(f"training    {t['used_rows']:,} ratings from {t['source']}; users: {by}")
        if self.ranking is not None:
            against = ("all items the user never rated" if p["all_items"]
                       else f"{p['negatives']} sampled items the user never rated (seed {p['seed']})")
            lines.append(f"ranking     each of {d['ranked_rows']:,} held-out items among {against}; "
                         f"ties {p['ties']}")
        lines += [f"note        {n}" for n in self.notes]
        width = max(13, *(len(LABELS[n]) for n in names)) + 2
        head = "".join(f"{LABELS[n]:>{width}}" for n in names)
        lines += ["", " " * 26 + head]

        def cells(section, group, key):
            return "".join(f"{_fmt(section[n][group][key]):>{width}}" for n in names)

        step = p.get("rating_step", 1.0)  # hit accuracy rounds to the bundle's rating step
        hit = "hit accuracy" + (f" (step {step:g})" if step != 1.0 else "")
        metrics = (("RMSE", "rmse"), ("MAE", "mae"), ("MSE", "mse"), (hit, "hit_accuracy"))
        for label, key in metrics:
            lines.append(f"{label:<26}{cells(self.rating, 'all', key)}")
        if self.ranking is not None:
            for label, key in ((f"HR@{p['k']}", "hr"), (f"NDCG@{p['k']}", "ndcg")):
                lines.append(f"{label:<26}{cells(self.ranking, 'all', key)}")
        lines += ["", f"{'RMSE by group':<18}{'rows':>8}{head}"]
        groups = [("known ids", "known")]
        if self.train is not None:
            groups += [(f"  {b} ({p['buckets'][b]})", b) for b in BUCKETS]
        groups.append(("unknown ids", "unknown_ids"))
        for label, group in groups:
            n_rows = self.rating[names[0]][group]["n"]
            lines.append(f"{label:<18}{n_rows:>8,}{cells(self.rating, group, 'rmse')}")
        return "\n".join(lines)



def require_matplotlib() -> None:
    """Raise :class:`ConfigError` (one line naming the extra) when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"--plot needs matplotlib, which the base install leaves out; {_TRAIN_EXTRA}"
        ) from None


def plot_evaluation(report: EvaluationReport, path: str | os.PathLike) -> Path:
    """Draw the report to a PNG (matplotlib, Agg), atomically.

    Left: the distribution of the true ratings beside the model's (and the bias baseline's)
    predictions. Right: RMSE of each predictor by group (known ids, activity buckets, unknown ids);
    a report without training data has no activity buckets, and the plot leaves them out.
    """
    require_matplotlib()
    y, predictions = report.arrays["rating"], report.arrays["predictions"]
    fig = new_figure(11, 4.2)
    left, right = fig.subplots(1, 2)
    values = np.concatenate([y, *predictions.values()])
    finite = values[np.isfinite(values)]
    bins = np.arange(math.floor(finite.min()) - 0.625, math.ceil(finite.max()) + 0.626, 0.25)  # centred
    left.hist(y, bins=bins, alpha=0.45, label="true rating", color="grey")
    for name in ("model", "bias"):
        if name in predictions:
            left.hist(predictions[name], bins=bins, histtype="step", linewidth=1.6, label=LABELS[name])
    left.set_xlabel("rating")
    left.set_ylabel("rows")
    left.set_title("true vs predicted ratings")
    left.legend()
    model = report.rating["model"]  # without training data there are no activity buckets
    groups = [g for g in ("known", *BUCKETS, "unknown_ids") if model.get(g, {}).get("n")]
    width = 0.8 / len(report.rating)
    for n, (name, by_group) in enumerate(report.rating.items()):
        heights = [by_group[g]["rmse"] for g in groups]
        left_edges = np.arange(len(groups)) + (n - (len(report.rating) - 1) / 2) * width
        right.bar(left_edges, heights, width=width, label=LABELS[name])
    right.set_xticks(np.arange(len(groups)))
    right.set_xticklabels([g.replace("_", " ") for g in groups])
    right.set_ylabel("RMSE")
    with_buckets = report.train is not None
    right.set_title("error by user activity" if with_buckets else "error by group (no training data)")
    top = max((v["rmse"] or 0.0) for by_group in report.rating.values() for v in by_group.values())
    right.set_ylim(0, 1.3 * top if top > 0 else 1.0)
    right.legend(loc="upper left", ncol=len(report.rating), fontsize="small")
    right.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return save_png(fig, path)
