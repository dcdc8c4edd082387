"""What every job that writes an output records: where, how much, how fast, what was unknown."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..unknown_ids import DEFAULT_MAX_UNKNOWN_SHARE


@dataclass
class JobReport:
    """The fields ``score`` and ``recommend`` reports share (``--report`` writes :meth:`to_dict`).

    Attributes
    ----------
    output, output_mode, format : str or None
        The output path, ``"file"`` or ``"dir"``, and ``"parquet"`` or ``"csv"``.
    rows_written : int
        Output rows written by this run.
    unknown_users, unknown_items, null_ids : int
        Ids the bundle does not know, and null ids (counted as unknown too).
    max_unknown_share : float
        The unknown-id guard's limit (1: off).
    provider : str
        The onnxruntime provider that ran the graph: ``cpu`` or ``cuda:N``.
    seconds : float
        Wall time of the run.
    parts_written, parts_resumed : int
        Directory output: parts written now, and parts found complete and kept.
    history : dict or None
        With ``--history``: what was folded in (:attr:`recmodels.scoring.history.FoldIn.stats`).
    warnings : list of str
        E.g. why CUDA was not used.
    """

    output: str | None = None
    output_mode: str | None = None
    format: str | None = None
    rows_written: int = 0
    unknown_users: int = 0
    unknown_items: int = 0
    null_ids: int = 0
    max_unknown_share: float = DEFAULT_MAX_UNKNOWN_SHARE
    provider: str = "cpu"
    seconds: float = 0.0
    parts_written: int = 0
    parts_resumed: int = 0
    history: dict | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Every field, JSON-able."""
        return asdict(self)
