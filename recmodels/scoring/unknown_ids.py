"""Ids the bundle does not know: counting them, and the guard for nightly jobs (torch-free).

Every reader of ids (pair scoring, ``--exclude-seen``, ``--users`` / ``--items`` lists, evaluation,
the engines' drivers) counts unknown and null ids the same way (:func:`count_unknown`), and stops
with the same one line (:func:`unknown_share_error`) whose hint (:func:`likely_cause`) says why most
ids may be unknown.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..errors import ConfigError, DataError
from ..ids import to_kind
from .defaults import DEFAULT_MAX_UNKNOWN_SHARE as DEFAULT_MAX_UNKNOWN_SHARE

COUNT_KEYS = ("unknown_users", "unknown_items", "unknown_rows", "null_ids", "skipped", "unknown_both")
"""The counters every id reader keeps (a run's report and the engines' per-part records)."""
_SAMPLE = 1000  # ids looked at to tell "another id space" from "another id type"


def empty_counts() -> dict[str, int]:
    """``COUNT_KEYS`` set to zero."""
    return dict.fromkeys(COUNT_KEYS, 0)


def check_share(value) -> float:
    """Validate a ``--max-unknown-share`` value (0 to 1; 1 turns the guard off)."""
    try:
        share = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--max-unknown-share must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"--max-unknown-share must be in [0, 1] (1 turns the guard off), got {value!r}")
    return share


def over_share(unknown: int, rows: int, limit: float) -> bool:
    """Whether ``unknown`` of ``rows`` rows exceed the guard's ``limit`` (1: never)."""
    return limit < 1 and unknown > limit * rows


def null_mask(*masks: np.ndarray | None) -> np.ndarray | None:
    """Rows where any of the sides' null masks is set (None when no side has a mask)."""
    present = [m for m in masks if m is not None]
    if not present:
        return None
    return np.logical_or.reduce(present) if len(present) > 1 else present[0]


def count_unknown(counts: dict, user_index: np.ndarray, item_index: np.ndarray,
                  user_nulls: np.ndarray | None = None, item_nulls: np.ndarray | None = None) -> np.ndarray:
    """Add one batch's unknown and null ids to ``counts``; return the mask of rows with both known.

    Parameters
    ----------
    counts : dict
        ``COUNT_KEYS`` counters, updated in place.
    user_index, item_index : numpy.ndarray of int64, shape (rows,)
        Bundle indices from ``IdEncoder.lookup`` (``-1``: unknown or null).
    user_nulls, item_nulls : numpy.ndarray of bool or None
        The null masks ``IdEncoder.lookup`` returned.

    Returns
    -------
    numpy.ndarray of bool, shape (rows,)
        True where both ids are known.
    """
    bad_user = user_index < 0
    bad_item = item_index < 0
    known = ~(bad_user | bad_item)
    counts["unknown_users"] += int(np.count_nonzero(bad_user))
    counts["unknown_items"] += int(np.count_nonzero(bad_item))
    counts["unknown_rows"] += int(known.size - np.count_nonzero(known))
    counts["unknown_both"] += int(np.count_nonzero(bad_user & bad_item))
    nulls = null_mask(user_nulls, item_nulls)
    if nulls is not None:
        counts["null_ids"] += int(np.count_nonzero(nulls))
    return known


def _kind_of(typ: pa.DataType | None) -> str | None:
    if typ is None:
        return None
    if pa.types.is_dictionary(typ):
        typ = typ.value_type
    if pa.types.is_integer(typ):
        return "integer"
    if pa.types.is_floating(typ):
        return "float"
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "text"
    return str(typ)


def _reads_as_integers(sample) -> bool:
    """Whether text ids spell integers (a CSV's ids arrive as text; the id rules map them)."""
    try:
        values = pa.array(sample) if not isinstance(sample, pa.Array | pa.ChunkedArray) else sample
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        values = values.slice(0, _SAMPLE).drop_null()
        if len(values) == 0:
            return False
        _, invalid, _ = to_kind(values, "int64")
    except (TypeError, ValueError, pa.ArrowException):
        return False
    return invalid is None or not bool(np.any(invalid))


def likely_cause(bundle, user_col: str, item_col: str, types: dict, samples: dict | None = None) -> str:
    """A hint at why most ids are unknown: id type, or columns, differing from training.

    Parameters
    ----------
    bundle : Bundle
        Its encoders' kinds are what the ids should be.
    user_col, item_col : str
        The id columns read.
    types : dict
        Column name -> Arrow type as read.
    samples : dict, optional
        Column name -> some of its ids. Text ids that all spell integers (every CSV's ids are read
        as text first) are not blamed on their type.
    """
    hints = []
    samples = samples or {}
    sides = (("user", user_col, bundle.user_encoder), ("item", item_col, bundle.item_encoder))
    for role, col, encoder in sides:
        have = _kind_of(types.get(col))
        want = "integer" if encoder.kind_ == "int64" else "text"
        if have is None or have == want or (have == "float" and want == "integer"):
            continue
        if have == "text" and want == "integer" and col in samples and _reads_as_integers(samples[col]):
            continue
        hints.append(f"the input's {role} ids ({col!r}) are {have} but the bundle's are {want}")
    if hints:
        return "; ".join(hints) + " (retrain on ids of the same type, or convert the column)"
    return (
        f"wrong id columns (--user-col {user_col!r}, --item-col {item_col!r}) or ids from another "
        "id space than the training data"
    )


def unknown_share_error(
    where: str, unknown: dict, read: int, limit: float, cause: str, total: int | None = None
) -> DataError:
    """The guard's one line: how many rows were unknown, the limit, the likely cause.

    ``read`` rows were read; ``total`` is the input's row count when the run stopped early.
    """
    n = unknown["unknown_rows"]
    if total is not None and read < total:
        counted = f"{n:,} of the first {read:,} of {total:,} rows"
        over = f"already more than --max-unknown-share {limit:g} of the input"
    else:
        counted = f"{n:,} of {read:,} rows ({100 * n / max(read, 1):.1f} %)"
        over = f"over --max-unknown-share {limit:g}"
    return DataError(
        f"{where}: {counted} have ids the bundle does not know ({unknown['unknown_users']:,} users, "
        f"{unknown['unknown_items']:,} items, {unknown['null_ids']:,} null), {over}; likely {cause}; "
        "nothing was written (pass --max-unknown-share 1 to score anyway)"
    )
