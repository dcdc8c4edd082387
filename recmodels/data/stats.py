"""Describe interactions: the notebook's statistics plus activity quantiles, and their text form."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd

from ..metrics import rating_step
from .columns import Columns
from .validate import codes

QUANTILES = {"min": 0.0, "p10": 0.1, "p25": 0.25, "median": 0.5, "p75": 0.75, "p90": 0.9, "p99": 0.99,
             "max": 1.0}
MAX_HISTOGRAM_VALUES = 50
NOT_RATED_SHARE = 0.2
"""A rating value at an end of the scale holding at least this share of the rows may mean "not
rated" (:func:`rating_warnings`)."""
NOT_RATED_SPIKE = 5.0
"""... when it also holds this many times the rows of the next value (or sits more than a step
away from the rest of the scale and holds the most rows)."""
NOT_RATED_MIN_ROWS = 100
"""Fewer rows say too little about the scale to warn."""
# Numeric timestamps in these ranges are epoch seconds / milliseconds (1973-2286), shown as dates.
EPOCH_SECONDS = (1e8, 1e10)
EPOCH_MILLISECONDS = (1e11, 1e13)


def _number(value: float):
    value = float(value)
    return int(value) if value.is_integer() else value


def _step(value):
    return None if value is None else _number(value)


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
        distinct values), ``rating_step`` (the grid all ratings lie on from ``rating_min``,
        :func:`recmodels.metrics.rating_step`), ``per_user`` and ``per_item`` (count quantiles
        ``min``, ``p10`` ... ``max``, ``mean`` and ``with_one``, the number with a single
        interaction), ``duplicates_dropped`` (from ``df.attrs``), ``missing_rating`` and
        ``missing_rating_dropped`` (from ``df.attrs``, when a "not rated" value was given),
        and ``timestamp_min``/``timestamp_max`` when a timestamp column is configured.
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
            rating_step=_step(rating_step(rating, default=None)),
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
                     rating_step=None, rating_histogram={})
    stats["per_user"] = _count_quantiles(np.bincount(users, minlength=n_users) if n else np.zeros(0))
    stats["per_item"] = _count_quantiles(np.bincount(items, minlength=n_items) if n else np.zeros(0))
    stats["duplicates_dropped"] = int(df.attrs.get("duplicates_dropped", 0))
    if df.attrs.get("missing_rating") is not None:
        stats["missing_rating"] = _number(df.attrs["missing_rating"])
        stats["missing_rating_dropped"] = int(df.attrs.get("missing_rating_dropped", 0))
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


def _timestamp_text(value) -> str:
    """Epoch seconds or milliseconds as a UTC date and time; anything else as it is."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for (low, high), scale in ((EPOCH_SECONDS, 1), (EPOCH_MILLISECONDS, 1000)):
            if low <= value < high:
                moment = datetime.fromtimestamp(value / scale, tz=timezone.utc)
                return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _timestamps_line(low, high) -> str:
    shown = f"{_timestamp_text(low)} .. {_timestamp_text(high)}"
    if shown == f"{low} .. {high}":
        return shown
    unit = "seconds" if EPOCH_SECONDS[0] <= low < EPOCH_SECONDS[1] else "milliseconds"
    return f"{shown} (epoch {unit} {low} .. {high})"


def rating_warnings(stats: dict) -> list[str]:
    """Warnings about the ratings :func:`describe` found: a value that may mean "not rated".

    A value at an end of the rating scale that holds at least :data:`NOT_RATED_SHARE` of the
    rows (of at least :data:`NOT_RATED_MIN_ROWS`), while the other values form a contiguous
    scale (every step present), and that sits apart from it: more than one step away while
    holding more rows than any other value, or (at the low end) :data:`NOT_RATED_SPIKE` times
    as many rows as the next value. Goodreads' 0 ("shelved, not rated": 51.5 % of the rows,
    beside 0.8 % of 1s) is one; a top-heavy 1..5 scale (60 % of 5s) is not.

    Returns
    -------
    list of str
        One line each, saying what to do (``--missing-rating VALUE``); empty when nothing is odd.
    """
    hist = stats.get("rating_histogram") or {}
    if len(hist) < 4 or any(isinstance(value, str) for value in hist):
        return []
    n = sum(hist.values())
    if n < NOT_RATED_MIN_ROWS:
        return []
    values = sorted(hist)
    warnings = []
    for value, rest, low_end in ((values[0], values[1:], True), (values[-1], values[:-1], False)):
        share = hist[value] / n
        step = rating_step(rest)
        if share < NOT_RATED_SHARE or round((rest[-1] - rest[0]) / step) + 1 != len(rest):
            continue
        neighbour = rest[0] if low_end else rest[-1]
        far = abs(neighbour - value) > step * 1.001 and hist[value] >= max(hist[v] for v in rest)
        if not (far or (low_end and hist[value] >= NOT_RATED_SPIKE * hist[neighbour])):
            continue
        warnings.append(
            f"rating {value} holds {100 * share:.1f} % of the rows, apart from the "
            f"{rest[0]}..{rest[-1]} scale of the others ({neighbour}: {100 * hist[neighbour] / n:.1f} %); "
            f"if {value} means \"not rated\" (as Goodreads' 0 does), drop those rows with "
            f"--missing-rating {value} (missing_rating={value} in Python)"
        )
    return warnings


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.3g} %"


def format_stats(stats: dict) -> str:
    """Render :func:`describe` output as readable lines (like the notebook's prints)."""
    users, items, n = stats["users"], stats["items"], stats["interactions"]
    lines = [
        f"Users:         {users:,}",
        f"Items:         {items:,}",
        f"Interactions:  {n:,}",
        f"Density:       {_percent(stats['density'])} of the {users * items:,} (user, item) pairs",
    ]
    if stats.get("duplicates_dropped"):
        lines.append(f"Duplicates:    {stats['duplicates_dropped']:,} repeated (user, item) rows dropped")
    if stats.get("missing_rating") is not None:
        lines.append(f"Not rated:     {stats.get('missing_rating_dropped', 0):,} rows with rating "
                     f"{stats['missing_rating']} dropped (--missing-rating)")
    if n:
        step = f", step {stats['rating_step']}" if stats.get("rating_step") is not None else ""
        lines.append(
            f"Ratings:       mean {stats['rating_mean']:.4f}, std {stats['rating_std']:.4f}, "
            f"min {stats['rating_min']}, max {stats['rating_max']}{step}"
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
        lines.append(f"Timestamps:    {_timestamps_line(stats['timestamp_min'], stats['timestamp_max'])}")
    return "\n".join(lines)
