"""What a scoring run did, and the unknown-id guard for nightly jobs (torch-free)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pyarrow as pa

from ...errors import ConfigError, DataError

DEFAULT_MAX_UNKNOWN_SHARE = 0.5
"""Above this share of rows with unknown ids, file scoring stops (``--max-unknown-share``)."""
COUNT_KEYS = ("unknown_users", "unknown_items", "unknown_rows", "null_ids", "skipped")


def check_share(value) -> float:
    """Validate a ``--max-unknown-share`` value (0 to 1; 1 turns the guard off)."""
    try:
        share = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--max-unknown-share must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"--max-unknown-share must be in [0, 1] (1 turns the guard off), got {value!r}")
    return share


@dataclass
class ScoreReport:
    """What a scoring run did (``--report`` writes :meth:`to_dict` as JSON).

    Attributes
    ----------
    rows_read : int
        Input rows read and scored by this run (rows of parts resumed from disk excluded).
    rows_written : int
        Rows written by this run (``rows_read - skipped``).
    unknown_users, unknown_items : int
        Rows whose user (item) id is not in the bundle or is null.
    unknown_rows : int
        Rows with an unknown user or item (scored with the fallback, skipped, or an error).
    null_ids : int
        Rows with a null user or item id (counted as unknown too).
    skipped : int
        Rows dropped by ``unknown="skip"``.
    max_unknown_share : float
        The guard's limit (1: off).
    provider : str
        The onnxruntime provider that ran the graph: ``cpu`` or ``cuda:N``.
    seconds, rows_per_s : float
        Wall time of the run and ``rows_read / seconds``.
    parts_written, parts_resumed, rows_resumed : int
        Directory output: parts written now, parts found complete and kept, and their input rows.
    warnings : list of str
        E.g. why CUDA was not used.
    """

    input: str | None = None
    output: str | None = None
    output_mode: str | None = None
    format: str | None = None
    rows_read: int = 0
    rows_written: int = 0
    unknown_users: int = 0
    unknown_items: int = 0
    unknown_rows: int = 0
    null_ids: int = 0
    skipped: int = 0
    unknown_policy: str = "fallback"
    max_unknown_share: float = DEFAULT_MAX_UNKNOWN_SHARE
    provider: str = "cpu"
    batch_size: int = 0
    seconds: float = 0.0
    rows_per_s: float = 0.0
    parts_written: int = 0
    parts_resumed: int = 0
    rows_resumed: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line: rows, destination, speed, provider and unknown-id counts."""
        where = f" -> {self.output}" if self.output else ""
        line = (
            f"scored {self.rows_read:,} rows{where} in {self.seconds:.1f} s "
            f"({self.rows_per_s:,.0f} rows/s, {self.provider}); wrote {self.rows_written:,}"
        )
        if self.unknown_rows:
            line += (
                f"; {self.unknown_rows:,} rows with unknown ids ({self.unknown_users:,} users, "
                f"{self.unknown_items:,} items, {self.null_ids:,} null) -> {self.unknown_policy}"
            )
        if self.parts_resumed:
            line += f"; resumed {self.parts_resumed} complete parts ({self.rows_resumed:,} rows)"
        return line


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


def likely_cause(bundle, user_col: str, item_col: str, types: dict) -> str:
    """A hint at why most ids are unknown: id type, or columns, differing from training."""
    hints = []
    sides = (("user", user_col, bundle.user_encoder), ("item", item_col, bundle.item_encoder))
    for role, col, encoder in sides:
        have = _kind_of(types.get(col))
        want = "integer" if encoder.kind_ == "int64" else "text"
        if have is not None and have != want and not (have == "float" and want == "integer"):
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
