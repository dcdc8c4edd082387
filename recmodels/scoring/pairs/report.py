"""What a scoring run did (torch-free); the unknown-id guard is :mod:`..unknown_ids`."""

from __future__ import annotations

from dataclasses import dataclass

from ..output.report import JobReport


@dataclass
class ScoreReport(JobReport):
    """What a scoring run did (``--report`` writes :meth:`to_dict` as JSON).

    The fields every job records (output, provider, unknown ids, parts, history, warnings) are
    :class:`~recmodels.scoring.output.report.JobReport`'s; a scoring run adds:

    Attributes
    ----------
    input : str or None
        The input path.
    rows_read : int
        Input rows read and scored by this run (rows of parts resumed from disk excluded).
    rows_written : int
        Rows written by this run (``rows_read - skipped``).
    unknown_users, unknown_items : int
        Rows whose user (item) id is not in the bundle or is null.
    unknown_rows : int
        Rows with an unknown user or item (scored with the fallback, skipped, or an error).
    unknown_both : int
        Rows with both ids unknown: the only ones scored ``fallback_score`` by a bundle with prior
        rows (the others are scored with the unknown side's prior row).
    skipped : int
        Rows dropped by ``unknown="skip"``.
    unknown_policy : str
        ``fallback``, ``skip`` or ``error``.
    batch_size : int
        Rows per graph call.
    rows_per_s : float
        ``rows_read / seconds``.
    rows_resumed : int
        Directory output: the input rows of the parts resumed from disk.
    """

    input: str | None = None
    rows_read: int = 0
    unknown_rows: int = 0
    unknown_both: int = 0
    skipped: int = 0
    unknown_policy: str = "fallback"
    batch_size: int = 0
    rows_per_s: float = 0.0
    rows_resumed: int = 0

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
