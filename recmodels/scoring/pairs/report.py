"""What a scoring run did (torch-free); the unknown-id guard is :mod:`..unknown_ids`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..unknown_ids import DEFAULT_MAX_UNKNOWN_SHARE


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
    unknown_both : int
        Rows with both ids unknown: the only ones scored ``fallback_score`` by a bundle with prior
        rows (the others are scored with the unknown side's prior row).
    history : dict or None
        With ``--history``: what was folded in (:attr:`recmodels.scoring.history.FoldIn.stats`).
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
    unknown_both: int = 0
    history: dict | None = None
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
            both = self.unknown_both
            line += (
                f"; {self.unknown_rows:,} rows with unknown ids ({self.unknown_users - both:,} user only, "
                f"{self.unknown_items - both:,} item only, {both:,} both; {self.null_ids:,} null) -> "
                f"{self.unknown_policy}"
            )
        if self.history:
            h = self.history
            line += (f"; history: {h['users_folded_in']:,} new users and {h['items_folded_in']:,} new items "
                     f"folded in, {h['users_updated']:,} known users updated")
        if self.parts_resumed:
            line += f"; resumed {self.parts_resumed} complete parts ({self.rows_resumed:,} rows)"
        return line
