"""Where the workers of an engine job write their parts, and how the driver turns them into the output.

Workers write each part under a temporary name (:func:`~recmodels.engines.contract.part_temp_name`)
and send back its record; :class:`StagedOutput` renames (or concatenates) the parts of the
records the engine delivered, so retried or killed attempts leave nothing behind, and the output
is the layout of a local run (:mod:`recmodels.scoring.output.writers`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError, EngineError
from ..fileio import write_json
from ..scoring.output.writers import JOB_FILE, FileOutput, PartsOutput, check_output_options
from .contract import fold_bytes, history_temp_name, is_part_temp, raise_recorded_error

__all__ = ["StagedOutput", "worker_notes"]


def worker_notes(records: list[dict]) -> list[str]:
    """The workers' warnings (e.g. why CUDA was not used), each once."""
    return sorted({r["note"] for r in records if r.get("note")})


class StagedOutput:
    """The output of an engine job: temporary parts from the workers, renamed in part order.

    A directory output gets ``part-0000k.<fmt>`` per part, ``_scoring.json`` and ``_SUCCESS``
    (written last); a one-file output is concatenated from the parts in order. Nothing is left
    behind when the job fails.

    Parameters
    ----------
    output : path-like
        A file (``.parquet`` / ``.csv``) or a directory of parts.
    fmt : str, optional
        ``--format``.
    schema : pyarrow.Schema
        The parts' schema.
    overwrite, resume : bool
        As for a local run (``resume``: complete parts are kept, :attr:`complete`).
    job : dict
        The ``_scoring.json`` settings (:mod:`recmodels.engines.contract`).
    command : str
        ``score`` or ``recommend``, for messages.
    part_rows : int
        Input rows (or users) per part, recorded in ``_scoring.json``; 0 when the engine's
        partitions make the parts.

    Attributes
    ----------
    mode, fmt : str
        ``"dir"`` or ``"file"``, and the output format.
    directory : Path
        Where the workers write their temporary parts (they must see it).
    part_fmt : str
        The parts' format (Parquet for a one-file output, concatenated at the end).
    complete : dict
        The sidecars of the parts kept by ``resume``, by part number.
    """

    def __init__(
        self,
        output,
        fmt,
        schema: pa.Schema,
        *,
        overwrite: bool,
        job: dict,
        command: str,
        part_rows: int = 0,
        resume: bool = False,
    ):
        self.mode, self.fmt = check_output_options(output, fmt, resume=resume, overwrite=overwrite)
        self.schema = schema
        self.resume = resume
        self._renamed: list[int] = []
        if self.mode == "dir":
            self.writer = PartsOutput(
                output,
                self.fmt,
                schema,
                part_rows=part_rows,
                job=job,
                overwrite=overwrite,
                resume=resume,
                command=command,
            )
            self.directory = self.writer.path
            self.part_fmt = self.fmt
            self.complete = dict(self.writer.complete)
        else:
            self.writer = FileOutput(output, self.fmt, schema, overwrite=overwrite)
            final = self.writer.path
            self.directory = final.with_name(f".{final.name}.{os.getpid()}.parts")
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory.mkdir()
            self.part_fmt = "parquet"
            self.complete = {}

    def with_history(self, task, fold):
        """``task`` reading ``--history``'s fold-in (None: ``task`` as it is) from a file written
        here beside the parts (:func:`~recmodels.engines.contract.fold_bytes`), which every
        worker reads once; removed with the temporaries."""
        if fold is None:
            return task
        path = self.directory / history_temp_name(fold.token)
        path.write_bytes(fold_bytes(fold))
        return replace(task, history=os.fspath(path), history_token=fold.token)

    def run(self, tasks: Callable[[], list[dict]], settle: Callable[[list[dict]], object], *,
            keep_complete: bool = False) -> tuple[object, list[dict]]:
        """The job around the engine's tasks: ``tasks()`` (the records), a part's recorded error
        raised, ``settle(records)`` (the report and the unknown-id guard), then :meth:`commit`.
        Returns ``(settle's result, records)``. On any failure, :meth:`abort` (``keep_complete``:
        an interrupted ``--resume`` keeps its complete parts; bad input never does)."""
        try:
            records = tasks()
            raise_recorded_error(records)
            result = settle(records)
            self.commit(records)
        except BaseException as exc:
            self.abort(keep_complete=keep_complete and not isinstance(exc, DataError))
            raise
        return result, records

    def commit(self, records: list[dict]) -> int:
        """Rename (or concatenate) the delivered parts in part order; returns the parts written."""
        records = sorted(records, key=lambda r: r["part"])
        parts = [r["part"] for r in records]
        if len(set(parts)) != len(parts):
            raise EngineError(f"the engine delivered part {parts} more than once; nothing was written")
        if self.mode == "dir":
            for r in records:
                tmp = self.directory / r["tmp"]
                if "input_start" in r:  # parts of a Parquet input: the sidecar of a local run, then the part
                    meta = {
                        "part": r["part"],
                        "file": self.writer.part_path(r["part"]).name,
                        "input_start": r["input_start"],
                        "input_rows": r["rows_read"],
                        "rows": r["rows_written"],
                        "bytes": tmp.stat().st_size,
                        "unknown_rows": r["unknown_rows"],
                    }
                    write_json(self.writer.sidecar_path(r["part"]), meta)
                self._renamed.append(r["part"])
                os.replace(tmp, self.writer.part_path(r["part"]))
            self.remove_temporaries()
            self.writer.commit()
        else:
            for r in records:
                for batch in pq.ParquetFile(self.directory / r["tmp"]).iter_batches():
                    self.writer.write(
                        batch.cast(self.schema) if not batch.schema.equals(self.schema) else batch
                    )
            self.writer.commit()
            shutil.rmtree(self.directory, ignore_errors=True)
        return len(records)

    def remove_temporaries(self) -> None:
        """Remove the workers' temporary parts (the attempts no record named, or all of them)."""
        for entry in Path(self.directory).iterdir():
            if is_part_temp(entry.name):
                with contextlib.suppress(OSError):
                    entry.unlink()

    def abort(self, *, keep_complete: bool = False) -> None:
        """Remove what this job wrote; ``keep_complete``: keep the complete parts of a resumed
        directory (an interrupted ``--resume`` stays resumable)."""
        if self.mode == "file":
            self.writer.abort()
            shutil.rmtree(self.directory, ignore_errors=True)
            return
        self.remove_temporaries()
        if keep_complete:
            self.writer.abort()
        elif self.writer.created:
            self.writer.remove_all()
        else:  # an existing directory (--overwrite emptied it): the parts and settings this job wrote
            for k in self._renamed:
                for path in (self.writer.part_path(k), self.writer.sidecar_path(k)):
                    with contextlib.suppress(OSError):
                        path.unlink()
            if not self.resume:
                with contextlib.suppress(OSError):
                    (self.directory / JOB_FILE).unlink()
            self.writer.abort()
