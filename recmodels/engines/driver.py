"""The driver side of distributed scoring and recommending, shared by Spark and Dask (torch-free).

The driver checks everything it can before any task runs (the bundle, the id columns and their
types, the options, the output path), builds the picklable task, and afterwards turns the
workers' part records into the output: part files renamed into place and ``_SUCCESS`` (or one
file, concatenated in part order), plus the same :class:`~recmodels.scoring.pairs.report.ScoreReport`
/ :class:`~recmodels.scoring.recommendation.report.RecommendReport` as a local run. Workers write
their parts under temporary names (:mod:`recmodels.engines.worker`); only the files whose
records the engine delivered are renamed, so retried or killed attempts leave nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError, DataError, EngineError, MissingEngineError
from ..fileio import write_json
from ..scoring.checks import positive_int
from ..scoring.output.writers import FileOutput, PartsOutput, check_output_options
from ..scoring.pairs.report import ScoreReport
from ..scoring.pairs.scorer import Scorer
from ..scoring.runtime.session import load_bundle
from ..scoring.unknown_ids import COUNT_KEYS, likely_cause, unknown_share_error
from .worker import ScoreTask, files_token

ENGINES = ("local", "dask", "spark")
CONNECT_TIMEOUT_S = 10.0
"""How long the driver waits for a cluster address to answer before giving up with one line."""
_EXTRA = {"dask": "dask", "spark": "pyspark"}


def missing_engine(engine: str, exc: ImportError) -> MissingEngineError:
    """The one line for an engine that is not installed."""
    return MissingEngineError(
        f"--engine {engine} needs {_EXTRA[engine]} ({exc}); install it with pip install 'recmodels[{engine}]'"
    )


def probe_address(address: str, what: str, default_port: int, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail with one line unless ``host:port`` of a cluster address accepts a TCP connection in time.

    Addresses that are not TCP (Dask's ``inproc://`` of a cluster in this process, ``ucx://``,
    ``ws://``..., Spark's ``yarn`` or ``k8s://``) are left to the engine's own connect timeout.
    """
    scheme = address.split("://", 1)[0].lower() if "://" in address else "tcp"
    if scheme not in ("tcp", "tls", "spark"):
        return
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    host, port = parsed.hostname, parsed.port or default_port
    if not host:
        raise ConfigError(f"{what} {address!r}: not an address (expected e.g. tcp://host:8786)")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise EngineError(
            f"{what} {address}: no answer from {host}:{port} within {timeout:g} s ({reason}); "
            "check the address or start the cluster"
        ) from None


# -- scoring: the driver's checks ------------------------------------------------------------------
def _id_type_ok(typ: pa.DataType) -> bool:
    if pa.types.is_dictionary(typ):
        typ = typ.value_type
    return (
        pa.types.is_integer(typ)
        or pa.types.is_floating(typ)
        or pa.types.is_string(typ)
        or pa.types.is_large_string(typ)
        or pa.types.is_string_view(typ)
        or pa.types.is_null(typ)
    )


def score_task(
    bundle,
    input_schema: pa.Schema,
    where: str,
    *,
    keep=None,
    bundle_path: str | None = None,
    device: str = "auto",
    user_col: str | None = None,
    item_col: str | None = None,
    unknown: str = "fallback",
    clip: bool = False,
    batch_size: int | None = None,
    threads: int | None = 1,
    max_unknown_share: float | None = None,
) -> tuple[ScoreTask, Scorer]:
    """Check a distributed frame's schema against the bundle and build the task for its partitions.

    Returns the task and a driver-side :class:`Scorer` (CPU) that validated the options.

    Raises
    ------
    DataError
        A missing id column, or an id column of a type ids cannot have.
    ConfigError
        Bad options (``keep``, ``unknown``, ...).
    """
    options = {} if max_unknown_share is None else {"max_unknown_share": max_unknown_share}
    scorer = Scorer(
        bundle,
        device="cpu",
        user_col=user_col,
        item_col=item_col,
        unknown=unknown,
        clip=clip,
        batch_size=batch_size,
        threads=1,
        **options,
    )
    keep = scorer.resolve_keep(list(input_schema.names), keep, where)
    encoders = (
        ("user", scorer.user_col, scorer.user_encoder),
        ("item", scorer.item_col, scorer.item_encoder),
    )
    for role, col, encoder in encoders:
        typ = input_schema.field(col).type
        if not _id_type_ok(typ):
            want = "integers" if encoder.kind_ == "int64" else "text"
            raise DataError(
                f"{where}: {role} id column {col!r} is {typ}, which cannot hold ids; the bundle's "
                f"{role} ids are {want} (convert the column, or pass --{role}-col)"
            )
    task = ScoreTask(
        bundle_path=os.fspath(bundle_path or scorer.bundle.path),
        digest=scorer.bundle.digest,
        device=device,
        user_col=scorer.user_col,
        item_col=scorer.item_col,
        unknown=unknown,
        clip=bool(clip),
        batch_size=batch_size,
        threads=threads,
        keep=tuple(keep),
        schema=scorer.output_schema(input_schema, keep),
    )
    return task, scorer


def worker_notes(records: list[dict]) -> list[str]:
    """The workers' warnings (e.g. why CUDA was not used), each once."""
    return sorted({r["note"] for r in records if r.get("note")})


# -- the output --------------------------------------------------------------------------------------
class StagedOutput:
    """Where workers write temporary parts, and how the driver turns them into the output.

    A directory output gets ``part-0000k.<fmt>`` per partition, ``_scoring.json`` and
    ``_SUCCESS`` (written last); a one-file output is concatenated from the parts in order.
    Nothing is left behind when the job fails.
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
        else:
            self.writer = FileOutput(output, self.fmt, schema, overwrite=overwrite)
            final = self.writer.path
            self.directory = final.with_name(f".{final.name}.{os.getpid()}.parts")
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory.mkdir()
            self.part_fmt = "parquet"

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
                os.replace(tmp, self.writer.part_path(r["part"]))
            self._remove_temporaries()
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

    def _remove_temporaries(self) -> None:
        for entry in Path(self.directory).iterdir():
            if entry.name.startswith(".part-") and entry.name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    entry.unlink()

    def abort(self) -> None:
        """Remove what this job wrote."""
        if self.mode == "dir":
            self._remove_temporaries()
            if self.writer.created:
                self.writer.remove_all()
            else:
                self.writer._clear()
        else:
            self.writer.abort()
            shutil.rmtree(self.directory, ignore_errors=True)


def score_report(
    records: list[dict],
    scorer: Scorer,
    task: ScoreTask,
    where: str,
    limit: float,
    resumed: dict | None = None,
    **fields,
) -> ScoreReport:
    """The job's :class:`ScoreReport` from the part records; the unknown-id guard over the whole job.

    ``resumed``: the sidecars of parts kept by ``--resume`` (their rows and unknown rows count
    for the guard, as locally).

    Raises
    ------
    DataError
        More than ``limit`` of the rows have unknown ids (then the caller writes nothing).
    """
    resumed = resumed or {}
    counts = {key: sum(int(r.get(key, 0)) for r in records) for key in COUNT_KEYS}
    rows = sum(int(r["rows_read"]) for r in records)
    rows_resumed = sum(int(m["input_rows"]) for m in resumed.values())
    unknown = counts["unknown_rows"] + sum(int(m.get("unknown_rows", 0)) for m in resumed.values())
    if rows + rows_resumed == 0:
        raise DataError(f"{where}: input has no rows")
    if limit < 1 and unknown > limit * (rows + rows_resumed):
        types = {
            c: task.schema.field(c).type for c in (task.user_col, task.item_col) if c in task.schema.names
        }
        cause = likely_cause(scorer.bundle, task.user_col, task.item_col, types)
        raise unknown_share_error(
            where, dict(counts, unknown_rows=unknown), rows + rows_resumed, limit, cause
        )
    providers = sorted({r.get("provider", "cpu") for r in records})
    rep = ScoreReport(
        rows_read=rows,
        rows_written=sum(int(r["rows_written"]) for r in records),
        unknown_policy=task.unknown,
        max_unknown_share=limit,
        provider=",".join(providers),
        batch_size=scorer.batch_size if task.batch_size is None else task.batch_size,
        parts_written=len(records),
        parts_resumed=len(resumed),
        rows_resumed=rows_resumed,
        warnings=worker_notes(records),
        **fields,
    )
    for key, value in counts.items():
        setattr(rep, key, value)
    return rep


def check_engine_options(engine: str, *, resume: bool = False, part_rows=None) -> None:
    """The CLI rules that tie options to an engine, as one-line :class:`ConfigError` s."""
    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if engine == "local":
        return
    if resume:
        raise ConfigError(
            f"--resume with --engine {engine} needs a Parquet input; rerun the job with --overwrite"
        )
    if part_rows is not None:
        raise ConfigError(
            f"--part-rows with --engine {engine} needs a Parquet input; a CSV input is written one part "
            "per partition"
        )


def run_score_parts(
    bundle,
    input,
    output,
    run,
    *,
    engine: str,
    keep=None,
    format=None,
    part_rows=None,
    resume=False,
    overwrite=False,
    report=None,
    max_unknown_share=None,
    bundle_path=None,
    **options,
) -> ScoreReport | None:
    """``recmodels score --engine ...`` on a Parquet input: part ``k`` (input rows ``[k * part_rows,
    (k + 1) * part_rows)``) is one task that reads its own rows, so the output is that of a local run
    (parts, sidecars, ``_scoring.json``: ``--resume`` works, with either engine or locally).

    ``run(parts, task, input, part_rows, directory, fmt)`` is the engine's part: it runs
    :func:`~recmodels.engines.worker.score_input_part` for each part number and returns the records.
    Returns None for a CSV input (which the engine reads itself, one part per partition).
    """
    import time

    from ..scoring.pairs.files import DEFAULT_PART_ROWS
    from ..tables import open_table

    t0 = time.perf_counter()
    b = load_bundle(bundle)
    user_col = options.pop("user_col", None) or b.user_column
    item_col = options.pop("item_col", None) or b.item_column
    source = open_table(input, text_columns=(user_col, item_col), what="input")
    if source.kind != "parquet":
        return None
    if source.total_rows == 0:
        raise DataError(f"{source.path}: input has no rows")
    part_rows = positive_int("--part-rows", part_rows or None, DEFAULT_PART_ROWS)
    extra = {} if max_unknown_share is None else {"max_unknown_share": max_unknown_share}
    task, scorer = score_task(
        b,
        source.schema,
        source.path,
        keep=keep,
        bundle_path=bundle_path,
        user_col=user_col,
        item_col=item_col,
        **extra,
        **options,
    )
    # the workers' cached view of the input is keyed by its files' sizes and times, listed here once
    task = replace(task, input_token=files_token(input, source.files))
    job = {  # as scoring.files.score_file writes it: a local run and an engine run resume each other
        "bundle": task.digest,
        "input": os.path.abspath(os.fspath(input)),
        "input_rows": source.total_rows,
        "unknown": task.unknown,
        "clip": task.clip,
        "user_col": task.user_col,
        "item_col": task.item_col,
    }
    staged = StagedOutput(
        output,
        format,
        task.schema,
        overwrite=overwrite,
        job=job,
        command="score",
        part_rows=part_rows,
        resume=resume,
    )
    resumed = dict(staged.writer.complete) if staged.mode == "dir" else {}
    n_parts = -(-source.total_rows // part_rows)
    parts = [k for k in range(n_parts) if k not in resumed]
    try:
        records = (
            run(
                parts,
                task,
                os.path.abspath(os.fspath(input)),
                part_rows,
                os.fspath(staged.directory),
                staged.part_fmt,
            )
            if parts
            else []
        )
        rep = score_report(records, scorer, task, source.path, scorer.max_unknown_share, resumed)
        staged.commit(records)
    except BaseException as exc:
        if isinstance(exc, DataError) or not resume:
            staged.abort()
        else:
            staged._remove_temporaries()
        raise
    rep.input, rep.output, rep.output_mode, rep.format = (
        os.fspath(input),
        os.fspath(output),
        staged.mode,
        staged.fmt,
    )
    rep.seconds = time.perf_counter() - t0
    rep.rows_per_s = rep.rows_read / rep.seconds if rep.seconds > 0 else 0.0
    if report is not None:
        write_json(report, rep.to_dict())
    return rep
