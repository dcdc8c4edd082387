"""Describe interactions: the notebook's statistics plus activity quantiles, and their text form."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .columns import Columns
from .validate import codes

QUANTILES = {"min": 0.0, "p10": 0.1, "p25": 0.25, "median": 0.5, "p75": 0.75, "p90": 0.9, "p99": 0.99,
             "max": 1.0}
MAX_HISTOGRAM_VALUES = 50


def _number(value: float):
    value = float(value)
    return int(value) if value.is_integer() else value


def _count_quantiles(counts: np.ndarray) -> dict:
    if counts.size == 0:
        return {name: 0 for name in QUANTILES} | {"mean": 0.0, "with_one": 0}
    q = np.quantile(counts, list(QUANTILES.values()), method="linear")
    out = {name: _number(round(float(v), 2)) for name, v in zip(QUANTILES, q, strict=True)}
    out["mean"] = round(float(counts.mean()), 3)
    out["with_one"] = int((counts == 1).sum())
    return out


def describe(df: pd.DataFrame, columns: Columns = Columns()) -> dict:
    """The notebook's statistics plus activity quantiles, as a JSON-able dict.

    Returns
    -------
    dict
        ``users``, ``items``, ``interactions``, ``density`` (interactions / (users * items)),
        ``rating_mean``, ``rating_std``, ``rating_min``, ``rating_max``, ``rating_histogram``
        (``{rating value: count}``, or ``{"[lo, hi)": count}`` bins when there are more than 50
        distinct values), ``per_user`` and ``per_item`` (count quantiles ``min``, ``p10`` ...
        ``max``, ``mean`` and ``with_one``, the number with a single interaction),
        ``duplicates_dropped`` (from ``df.attrs``), and ``timestamp_min``/``timestamp_max``
        when a timestamp column is configured.
    """
    n = int(len(df))
    users, n_users = codes(df[columns.user]) if n else (np.zeros(0, np.int64), 0)
    items, n_items = codes(df[columns.item]) if n else (np.zeros(0, np.int64), 0)
    rating = df[columns.rating].to_numpy(dtype=np.float64) if n else np.zeros(0)
    stats: dict = {
        "users": n_users,
        "items": n_items,
        "interactions": n,
        "density": (n / (n_users * n_items)) if n_users and n_items else 0.0,
    }
    if n:
        stats.update(
            rating_mean=float(rating.mean()),
            rating_std=float(rating.std()),
            rating_min=_number(rating.min()),
            rating_max=_number(rating.max()),
        )
        values, counts = np.unique(rating, return_counts=True)
        if values.size <= MAX_HISTOGRAM_VALUES:
            stats["rating_histogram"] = {_number(v): int(c) for v, c in zip(values, counts, strict=True)}
        else:
            edges = np.linspace(rating.min(), rating.max(), 11)
            binned, _ = np.histogram(rating, bins=edges)
            stats["rating_histogram"] = {
                f"[{lo:.3g}, {hi:.3g}{']' if k == 9 else ')'}": int(c)
                for k, (lo, hi, c) in enumerate(zip(edges[:-1], edges[1:], binned, strict=True))
            }
    else:
        stats.update(rating_mean=None, rating_std=None, rating_min=None, rating_max=None,
                     rating_histogram={})
    stats["per_user"] = _count_quantiles(np.bincount(users, minlength=n_users) if n else np.zeros(0))
    stats["per_item"] = _count_quantiles(np.bincount(items, minlength=n_items) if n else np.zeros(0))
    stats["duplicates_dropped"] = int(df.attrs.get("duplicates_dropped", 0))
    if columns.timestamp is not None and columns.timestamp in df.columns and n:
        ts = df[columns.timestamp]
        stats["timestamp_min"] = _scalar(ts.min())
        stats["timestamp_max"] = _scalar(ts.max())
    return stats


def _scalar(value):
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def format_stats(stats: dict) -> str:
    """Render :func:`describe` output as readable lines (like the notebook's prints)."""
    users, items, n = stats["users"], stats["items"], stats["interactions"]
    lines = [
        f"Users:         {users:,}",
        f"Items:         {items:,}",
        f"Interactions:  {n:,}",
        f"Density:       {n:,}/{users * items:,} ... {round(100 * stats['density'], 4)} %",
    ]
    if stats.get("duplicates_dropped"):
        lines.append(f"Duplicates:    {stats['duplicates_dropped']:,} repeated (user, item) rows dropped")
    if n:
        lines.append(
            f"Ratings:       mean {stats['rating_mean']:.4f}, std {stats['rating_std']:.4f}, "
            f"min {stats['rating_min']}, max {stats['rating_max']}"
        )
        hist = stats.get("rating_histogram") or {}
        peak = max(hist.values()) if hist else 1
        for value, count in hist.items():
            bar = "#" * max(1, round(30 * count / peak)) if count else ""
            lines.append(f"  {str(value):>10}  {count:>12,}  {100 * count / n:5.1f} %  {bar}")
    for role, key in (("user", "per_user"), ("item", "per_item")):
        q = stats.get(key)
        if not q:
            continue
        lines.append(
            f"Per {role}:      mean {q['mean']}, min {q['min']}, p10 {q['p10']}, p25 {q['p25']}, "
            f"median {q['median']}, p75 {q['p75']}, p90 {q['p90']}, p99 {q['p99']}, max {q['max']}; "
            f"{q['with_one']:,} with one interaction"
        )
    if "timestamp_min" in stats:
        lines.append(f"Timestamps:    {stats['timestamp_min']} .. {stats['timestamp_max']}")
    return "\n".join(lines)
