"""The one part loop: batches -> a writer, opening and closing part files on part boundaries.

``recmodels score`` (rows of pairs) and ``recmodels recommend`` (users) both cut their input into
parts of a fixed size, skip the parts a killed run already completed, and write the rest through a
:class:`~recmodels.scoring.output.writers.FileOutput` (one file: no parts) or
:class:`~recmodels.scoring.output.writers.PartsOutput` (a directory of parts).
"""

from __future__ import annotations

import sys


def resume_start(writer, part_size: int | None, stop: int | None = None) -> int:
    """The first input position of the first part ``writer`` has not completed.

    Parameters
    ----------
    writer : FileOutput or PartsOutput
        A fresh ``FileOutput`` (or ``part_size`` None) starts at 0.
    part_size : int or None
        Input rows (users) per part.
    stop : int, optional
        The input's length: the result never passes it.
    """
    start = 0
    if not part_size or writer.mode != "dir":
        return start
    while writer.is_complete(start // part_size) and (stop is None or start < stop):
        start += part_size
    return start if stop is None else min(start, stop)


class PartLoop:
    """Feed batches to ``writer``, beginning and ending its parts where the input crosses them.

    Parameters
    ----------
    writer : FileOutput or PartsOutput
        Where the batches go.
    part_size : int or None
        Input rows per part (directory output); None or a one-file writer: no parts.

    Examples
    --------
    >>> loop = PartLoop(writer, part_rows)                      # doctest: +SKIP
    >>> for start, n, batch in work:                            # doctest: +SKIP
    ...     loop.write(start, n, batch, unknown_rows=0)
    >>> loop.commit()                                           # doctest: +SKIP
    """

    def __init__(self, writer, part_size: int | None):
        self.writer = writer
        self.part_size = part_size if writer.mode == "dir" else None
        self.parts_written = 0
        self._part: int | None = None
        self._rows = 0
        self._counts: dict[str, int] = {}

    def skip(self, start: int) -> bool:
        """Whether the part holding input position ``start`` was completed by an earlier run."""
        return bool(self.part_size) and self.writer.is_complete(start // self.part_size)

    def write(self, start: int, input_rows: int, batch, **counts: int) -> None:
        """Write ``batch``, made from ``input_rows`` input rows beginning at position ``start``;
        ``counts`` are added up per part and recorded in its sidecar."""
        if self.part_size:
            part = start // self.part_size
            if part != self._part:
                self.end_part()
                self.writer.begin_part(part)
                self._part, self._rows, self._counts = part, 0, {}
            self._rows += input_rows
            for key, value in counts.items():
                self._counts[key] = self._counts.get(key, 0) + int(value)
        self.writer.write(batch)

    def end_part(self) -> None:
        """Close the open part, if any (its sidecar marks it complete)."""
        if self._part is not None:
            self.writer.end_part(self._rows, **self._counts)
            self.parts_written += 1
            self._part = None

    def commit(self) -> None:
        """Close the last part and commit the output (rename into place, ``_SUCCESS``)."""
        self.end_part()
        self.writer.commit()


def progress_bar(enabled: bool, total: int | None, initial: int, unit: str = " rows"):
    """A tqdm bar on stderr, or None when ``enabled`` is false."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit=unit,
        unit_scale=True,
        dynamic_ncols=True,
        file=sys.stderr,
        smoothing=0.1,
    )
