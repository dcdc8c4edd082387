"""The columns of ``recmodels score``'s output and the options that decide them (torch-free).

What the output of scoring an input looks like (the kept input columns, the id columns in the
bundle's id types, ``known`` and ``score``) and the checks of the scorer's options, none of which
needs an onnxruntime session: :class:`~recmodels.scoring.pairs.scorer.Scorer` uses them, and so
does the engines' driver (:mod:`recmodels.engines.driver`), which announces the schema to its
workers without loading one.
"""

from __future__ import annotations

import pyarrow as pa

from ...errors import ConfigError, DataError
from ...ids import as_arrow, to_kind
from ..checks import positive_int
from ..defaults import POLICIES
from ..unknown_ids import DEFAULT_MAX_UNKNOWN_SHARE, check_share

__all__ = [
    "ID_TYPES",
    "KNOWN_COLUMN",
    "SCORE_COLUMN",
    "as_id_type",
    "bundle_id_types",
    "check_score_options",
    "keep_columns",
    "scored_schema",
]

SCORE_COLUMN = "score"
KNOWN_COLUMN = "known"


def check_score_options(bundle, *, user_col: str | None = None, item_col: str | None = None,
                        unknown: str = "fallback", batch_size: int | None = None,
                        max_unknown_share: float = DEFAULT_MAX_UNKNOWN_SHARE) -> tuple[str, str, float]:
    """The :class:`Scorer`'s option checks, without a session (the engines' driver runs them too).

    Returns the id columns (default: ``bundle``'s) and the checked ``max_unknown_share``.

    Raises
    ------
    ConfigError
        An unknown policy, a batch size below 1, a share outside [0, 1], one column for both ids.
    """
    if unknown not in POLICIES:
        raise ConfigError(f"--unknown {unknown!r}: choose one of {', '.join(POLICIES)}")
    positive_int("--batch-size", batch_size)
    share = check_share(max_unknown_share)
    user_col = user_col or bundle.user_column
    item_col = item_col or bundle.item_column
    if user_col == item_col:
        raise ConfigError(f"user and item id columns are both {user_col!r}")
    return user_col, item_col, share


ID_TYPES = {"int64": pa.int64(), "string": pa.string()}
"""The Arrow type of each id kind (:data:`recmodels.ids.ID_KINDS`): what ``score`` and ``recommend``
write ids as."""


def bundle_id_types(bundle, user_col: str, item_col: str) -> dict[str, pa.DataType]:
    """``{user_col: type, item_col: type}``: the bundle's id types, as the output writes them."""
    return {user_col: ID_TYPES[bundle.user_encoder.kind_], item_col: ID_TYPES[bundle.item_encoder.kind_]}


def as_id_type(column, typ: pa.DataType) -> pa.Array:
    """An id column as ``typ`` (:data:`ID_TYPES`) by the id rules of :mod:`recmodels.ids`: CSV text
    ``"204"`` is integer 204 for an integer bundle. A value that cannot be an id of that type
    (``"abc"`` for integer ids: an unknown id) becomes null, as do nulls."""
    column = as_arrow(column)
    if column.type == typ:
        return column
    kind = "int64" if typ == pa.int64() else "string"
    values, invalid, nulls = to_kind(column, kind)
    mask = nulls if invalid is None else (invalid if nulls is None else invalid | nulls)
    return pa.array(values, type=typ, mask=mask)


def scored_schema(input_schema: pa.Schema, keep: list[str], unknown: str,
                  id_types: dict[str, pa.DataType] | None = None) -> pa.Schema:
    """The schema of scored batches: the ``keep`` columns of ``input_schema``, ``known`` (policy
    ``fallback``) and ``score`` (float32). Needs no session (the engines' driver announces it).

    ``id_types`` (:func:`bundle_id_types`): the id columns' types in the output, which are the
    bundle's, whatever the input's (CSV ids are read as text)."""
    id_types = id_types or {}
    fields = [pa.field(name, id_types[name]) if name in id_types else input_schema.field(name)
              for name in keep]
    if unknown == "fallback":
        fields.append(pa.field(KNOWN_COLUMN, pa.bool_()))
    fields.append(pa.field(SCORE_COLUMN, pa.float32()))
    return pa.schema(fields)


def keep_columns(names: list[str], keep, where: str, *, user_col: str, item_col: str,
                 unknown: str) -> list[str]:
    """The input columns to pass through (``keep``: list, ``"a,b"`` or None for all), checked
    against the input's ``names`` and the id columns (``where`` names the input in messages)."""
    for role, col in (("user", user_col), ("item", item_col)):
        if col not in names:
            raise DataError(
                f"{where}: no {role} id column {col!r} (columns: {', '.join(map(str, names))}); "
                f"pass --{role}-col"
            )
    if keep is None:
        keep = list(names)
    else:
        if isinstance(keep, str):
            keep = [c.strip() for c in keep.split(",") if c.strip()]
        missing = [c for c in keep if c not in names]
        if missing:
            raise ConfigError(
                f"--keep: {where} has no column {missing[0]!r} (columns: {', '.join(map(str, names))})"
            )
        keep = [c for c in names if c in set(keep)]
    outputs = {SCORE_COLUMN} | ({KNOWN_COLUMN} if unknown == "fallback" else set())
    clash = [c for c in keep if c in outputs]
    if clash:
        raise ConfigError(
            f"{where}: input column {clash[0]!r} clashes with the output column of that name; "
            "leave it out with --keep"
        )
    return keep
