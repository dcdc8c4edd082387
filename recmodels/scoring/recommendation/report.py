"""What a ``recmodels recommend`` run did (``--report`` writes it as JSON)."""

from __future__ import annotations

from dataclasses import dataclass

from ..output.report import JobReport


@dataclass
class RecommendReport(JobReport):
    """What a recommend run did.

    The fields every job records (output, provider, unknown ids, parts, history, warnings) are
    :class:`~recmodels.scoring.output.report.JobReport`'s; a recommend run adds:

    Attributes
    ----------
    k : int
        ``--top-k``.
    mode : {"exact", "two-stage"}
        Exact top-K over every candidate, or ``--candidates`` retrieval + re-ranking.
    users_requested : int
        Users asked for: the ``--users`` list's rows, or every user of the bundle.
    unknown_users, null_ids : int
        Listed users the bundle does not know (no rows for them), of which null.
    users_processed : int
        List positions handled by this run (resumed parts excluded).
    users_written : int
        Users with at least one row written by this run.
    users_short : int
        Users given fewer than ``k`` rows: fewer unseen candidates were left.
    rows_written : int
        Output rows written by this run.
    candidate_items, unknown_items : int
        Items ranked for every user (``--items`` or all), and listed items the bundle lacks.
    exclude_rows, seen_pairs, exclude_unknown_rows : int
        ``--exclude-seen``: rows read, distinct known pairs excluded, rows with an unknown id.
    pairs_scored, pairs_per_s : int, float
        Known users x candidate items ranked by this run, and per second of the ranking loop.
    graph : str
        The graph that ranked every candidate (``rank_all.onnx`` when every item is a candidate
        and the bundle has it; else ``recommend.onnx``, or ``retrieve.onnx`` in two-stage mode).
    users_resumed : int
        Directory output: the users of the parts resumed from disk.
    threads, block_users, tile_items : int
        The ranking's CPU threads, users per graph call and items per tile.
    """

    k: int = 0
    mode: str = "exact"
    retrieve_candidates: int | None = None
    users: str | None = None
    items: str | None = None
    exclude_seen: str | None = None
    users_requested: int = 0
    users_processed: int = 0
    users_written: int = 0
    users_short: int = 0
    candidate_items: int = 0
    exclude_rows: int = 0
    seen_pairs: int = 0
    exclude_unknown_rows: int = 0
    pairs_scored: int = 0
    pairs_per_s: float = 0.0
    threads: int = 1
    graph: str = ""
    block_users: int = 0
    tile_items: int = 0
    users_resumed: int = 0

    def summary(self) -> str:
        """One line: users, destination, speed, provider, exclusions and what was left out."""
        where = f" -> {self.output}" if self.output else ""
        if self.parts_resumed and not self.users_processed:
            return (
                f"{self.output} is already complete: top-{self.k} for {self.users_resumed:,} users in "
                f"{self.parts_resumed} parts; nothing to do (--overwrite recomputes it)"
            )
        rate = self.users_processed / self.seconds if self.seconds > 0 else 0.0
        mode = "" if self.mode == "exact" else f", two-stage from {self.retrieve_candidates:,} candidates"
        line = (
            f"recommended top-{self.k} for {self.users_processed:,} users{where} in {self.seconds:.1f} s "
            f"({rate:,.0f} users/s, {self.pairs_per_s / 1e6:,.1f}M pairs/s, {self.provider}{mode}); "
            f"wrote {self.rows_written:,} rows"
        )
        if self.seen_pairs:
            line += f"; excluded {self.seen_pairs:,} seen pairs"
        if self.unknown_users:
            line += f"; {self.unknown_users:,} unknown users skipped"
        if self.unknown_items:
            line += f"; {self.unknown_items:,} unknown items left out"
        if self.users_short:
            line += f"; {self.users_short:,} users had fewer than {self.k} unseen candidates"
        if self.history:
            h = self.history
            line += (f"; history: {h['users_folded_in']:,} new users folded in, {h['users_updated']:,} known "
                     "users updated")
        if self.parts_resumed:
            line += f"; resumed {self.parts_resumed} complete parts ({self.users_resumed:,} users)"
        return line
