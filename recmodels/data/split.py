"""Split interactions into train, validation and test parts (random or leave-last-out)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError
from .columns import Columns
from .settings import SPLIT_METHODS
from .validate import codes, timestamp_column


@dataclass
class Split:
    """Train/validation/test partition of interactions.

    Attributes
    ----------
    train, valid, test : pandas.DataFrame
        The parts (rows keep their original relative order, fresh index).
    method : str
        ``"random"`` or ``"leave-last-out"``.
    seed : int
        Seed of the permutation (recorded for leave-last-out too, which does not use it).
    fractions : tuple of float or None
        Train/valid/test fractions of a random split; ``None`` for leave-last-out.
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    method: str
    seed: int
    fractions: tuple | None

    def sizes(self) -> dict[str, int]:
        """``{"train": n, "valid": n, "test": n}``."""
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}

    def to_dict(self) -> dict:
        """JSON-able description (the run config's ``data.split``)."""
        return {
            "method": self.method,
            "seed": int(self.seed),
            "fractions": list(self.fractions) if self.fractions is not None else None,
            **self.sizes(),
        }


def _check_fractions(fractions) -> tuple[float, float, float]:
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise ConfigError(f"split fractions must be three numbers, got {fractions!r}") from None
    if len(values) != 3 or any(not math.isfinite(f) or f <= 0 for f in values):
        raise ConfigError(
            f"split fractions must be three positive numbers (train, valid, test), got {fractions!r}"
        )
    if abs(math.fsum(values) - 1.0) > 1e-6:
        raise ConfigError(f"split fractions must sum to 1, got {fractions!r} (sum {math.fsum(values):g})")
    return values


def _cuts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int]:
    # The small epsilon keeps 0.7 + 0.2 from flooring 0.8999999 * 10 to 8.
    a = int(math.floor(fractions[0] * n + 1e-9))
    b = int(math.floor((fractions[0] + fractions[1]) * n + 1e-9))
    return a, b


def _rows_needed(fractions: tuple[float, float, float]) -> int:
    for n in range(3, 10_000_000):
        a, b = _cuts(n, fractions)
        if a >= 1 and b - a >= 1 and n - b >= 1:
            return n
    return 10_000_000  # pragma: no cover


def split_interactions(
    df: pd.DataFrame,
    *,
    method: str = "random",
    fractions=(0.7, 0.2, 0.1),
    seed: int = 0,
    columns: Columns = Columns(),
) -> Split:
    """Split interactions into train, validation and test parts.

    Parameters
    ----------
    df : pandas.DataFrame
        Interactions as returned by :func:`read_interactions`.
    method : {"random", "leave-last-out"}
        ``"random"``: a seeded permutation cut at the cumulative ``fractions`` (as the
        notebook's ``np.split(df.sample(frac=1), ...)``). ``"leave-last-out"``: per user, the
        latest interaction by ``columns.timestamp`` goes to test and the one before it to
        valid; users with fewer than 3 interactions keep all of theirs in train. Timestamp
        ties are broken by row order.
    fractions : (float, float, float)
        Train/valid/test fractions of a random split; positive, summing to 1.
    seed : int
        Seed of the random permutation; the same seed gives the same split.
    columns : Columns
        Column names (``columns.timestamp`` is required for leave-last-out).

    Returns
    -------
    Split

    Raises
    ------
    ConfigError
        Unknown method, bad fractions, or leave-last-out without a timestamp column.
    DataError
        Too few rows (or users with 3+ interactions) for every part to be non-empty.
    """
    if method not in SPLIT_METHODS:
        raise ConfigError(f"split method must be one of {', '.join(SPLIT_METHODS)}, got {method!r}")
    n = len(df)
    if method == "random":
        fr = _check_fractions(fractions)
        a, b = _cuts(n, fr)
        if a < 1 or b - a < 1 or n - b < 1:
            raise DataError(
                f"{n} interaction(s) are too few for a {fr[0]:g}/{fr[1]:g}/{fr[2]:g} split: at least "
                f"{_rows_needed(fr)} rows are needed so that train, valid and test are all non-empty"
            )
        perm = np.random.default_rng(seed).permutation(n)
        parts = [np.sort(perm[:a]), np.sort(perm[a:b]), np.sort(perm[b:])]
        return Split(*(_take(df, p) for p in parts), method=method, seed=int(seed), fractions=fr)

    if columns.timestamp is None:
        raise ConfigError(
            "leave-last-out split needs a timestamp column; set one (--timestamp-col) or use "
            "the random split"
        )
    for col in (columns.user, columns.timestamp):
        if col not in df.columns:
            raise DataError(f"leave-last-out split: column {col!r} not in the data ({list(df.columns)})")
    if n == 0:
        raise DataError("leave-last-out split: no interactions; at least 3 rows of one user are needed")
    users, _ = codes(df[columns.user])
    ts = _sortable(df[columns.timestamp], columns.timestamp)
    order = np.lexsort((np.arange(n), ts, users))
    sorted_users = users[order]
    counts = np.bincount(users)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(n) - starts[sorted_users]
    from_end = counts[sorted_users] - 1 - rank
    eligible = counts[sorted_users] >= 3
    part = np.zeros(n, dtype=np.int8)
    part[order[eligible & (from_end == 0)]] = 2
    part[order[eligible & (from_end == 1)]] = 1
    if not (part == 2).any() or not (part == 0).any():
        raise DataError(
            f"leave-last-out split needs at least one user with 3 or more interactions; "
            f"the {n} row(s) have none (most per user: {int(counts.max())})"
        )
    parts = [np.flatnonzero(part == k) for k in range(3)]
    return Split(*(_take(df, p) for p in parts), method=method, seed=int(seed), fractions=None)


def _sortable(values: pd.Series, column: str) -> np.ndarray:
    if values.isna().any():
        raise DataError(f"timestamp column {column!r} has empty values; fill or drop them")
    if not pd.api.types.is_datetime64_any_dtype(values.dtype):
        values = timestamp_column(values, "data", column)
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64)
    if isinstance(values.dtype, pd.DatetimeTZDtype):  # tz-aware: compare as UTC instants
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values.to_numpy().astype("datetime64[ns]").astype(np.int64)


def _take(df: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    part = df.iloc[rows].reset_index(drop=True)
    part.attrs = dict(df.attrs)
    return part


