"""Score and recommend on Spark: ``mapInArrow`` over the torch-free scoring core.

``pip install 'recmodels[spark]'``. Each partition's Arrow batches run through
:mod:`recmodels.engines.worker` (the local ``Scorer`` / ``Recommender``; one onnxruntime session
per Python worker process, cached by bundle digest, checksums verified once per worker). Only
paths and options are shipped with the tasks. The bundle reaches the executors as a path on
shared storage, or with ``ship=True`` through ``SparkContext.addFile``. See
``docs/distributed.md``.

>>> from recmodels import spark as rspark                                    # doctest: +SKIP
>>> scores = rspark.score(spark.read.parquet("pairs/"), "bundles/neumf")     # doctest: +SKIP
>>> scores.write.parquet("scores/")                                          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import pyarrow as pa

from .. import errors as _errors
from ..errors import DataError, EngineError, RecmodelsError, first_line
from ..scoring.recommendation.recommender import Recommender
from ..scoring.runtime.session import load_bundle
from ..tables import expand_input
from .driver import (
    CONNECT_TIMEOUT_S,
    StagedOutput,
    missing_engine,
    probe_address,
    score_report,
    score_task,
)
from .recommend_driver import check_candidate_k, run_recommend_job
from .worker import (
    RECOMMEND_RECORD,
    SCORE_INPUT_RECORD,
    SCORE_RECORD,
    recommend_part,
    recommend_users,
    score_input_part,
    score_stream,
    score_to_part,
    worker_bundle,
)

try:
    import pyspark
    from pyspark.sql import SparkSession
    from pyspark.sql import types as T
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
except ImportError as _exc:  # pragma: no cover - exercised with the extra missing
    raise missing_engine("spark", _exc) from None

__all__ = ["local_session", "read_input", "recommend", "recommend_file", "score", "score_file", "score_to"]

DEFAULT_MASTER_PORT = 7077
SESSION_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    # rows per Arrow batch handed to Python (default 10,000): fewer, larger batches for the scorer
    "spark.sql.execution.arrow.maxRecordsPerBatch": "262144",
}
"""What :func:`local_session` sets on a session it creates (``conf`` adds to it)."""
LOCAL_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
"""Driver JVM options of a ``local[...]`` session this module starts: C1-only JIT and the serial GC
start the JVM and the first tasks in about half the time on a small machine (measured on 2 cores:
~6-10 s instead of ~13-15 s for the JVM), and the driver does little Java work here (the tasks read
and score in Python)."""
_RECORD_SCHEMA = from_arrow_schema(SCORE_RECORD)
_PART_RECORD_SCHEMA = from_arrow_schema(SCORE_INPUT_RECORD)
_RECOMMEND_RECORD_SCHEMA = from_arrow_schema(RECOMMEND_RECORD)
_WORKER_ERROR = re.compile(r"recmodels\.errors\.(\w+): (.+)")


# -- the bundle on the executors -------------------------------------------------------------------
def _ship(spark, bundle) -> str:
    """Send the bundle directory to every executor with ``SparkContext.addFile``; its name there."""
    path = Path(bundle.path).resolve()
    spark.sparkContext.addFile(str(path), recursive=True)
    return f"sparkfiles:{path.name}"


def _resolve(task):
    """On an executor: a ``sparkfiles:NAME`` bundle path -> ``SparkFiles.get(NAME)``; and on a GPU
    executor (``spark.task.resource.gpu.amount``), ``device`` auto/cuda -> ``cuda:<the task's GPU>``."""
    from pyspark import TaskContext

    if task.bundle_path.startswith("sparkfiles:"):
        from pyspark import SparkFiles

        task = replace(task, bundle_path=SparkFiles.get(task.bundle_path.split(":", 1)[1]))
    ctx = TaskContext.get()
    gpus = ctx.resources().get("gpu") if ctx is not None else None
    if gpus is not None and gpus.addresses and task.device in ("auto", "cuda", "gpu"):
        task = replace(task, device=f"cuda:{gpus.addresses[0]}")
    return task


def _arrow_schema(df) -> pa.Schema:
    return to_arrow_schema(df.schema)


def _worker_errors(exc: BaseException) -> RecmodelsError:
    """A failed Spark job as one line: a recmodels error raised on an executor keeps its type."""
    text = str(exc)
    match = _WORKER_ERROR.search(text)
    if match:
        cls = getattr(_errors, match.group(1), None)
        if isinstance(cls, type) and issubclass(cls, RecmodelsError):
            return cls(match.group(2).strip())
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    return EngineError(f"spark job failed: {line[:300]}")


def _collect(df) -> list[dict]:
    try:
        return [row.asDict() for row in df.collect()]
    except RecmodelsError:
        raise
    except Exception as exc:  # noqa: BLE001 - py4j / PySpark errors carry the executor traceback
        raise _worker_errors(exc) from None


# -- scoring ---------------------------------------------------------------------------------------
def score(
    df,
    bundle,
    *,
    keep=None,
    ship: bool = False,
    bundle_path: str | None = None,
    threads: int | None = 1,
    **options,
):
    """Score a Spark DataFrame of (user, item) pairs with ``mapInArrow``; lazy.

    Parameters
    ----------
    df : pyspark.sql.DataFrame
        Holds the id columns (default: the bundle's names).
    bundle : path-like or Bundle
        Verified here, on the driver.
    keep : list of str or "a,b", optional
        Columns to pass through (default: all).
    ship : bool
        Send the bundle to the executors with ``SparkContext.addFile`` (else ``bundle_path``, by
        default the driver's path, must be readable on every executor).
    threads : int, optional
        Inference threads per task (default 1: one task per core).
    **options
        ``device``, ``user_col``, ``item_col``, ``unknown``, ``clip``, ``batch_size``: as for
        :class:`recmodels.scoring.Scorer`.

    Returns
    -------
    pyspark.sql.DataFrame
        The kept columns, ``known`` (``unknown="fallback"``) and ``score`` (float).

    Raises
    ------
    DataError
        A missing id column, or one of a type ids cannot have (checked before any task runs).
    """
    b = load_bundle(bundle)
    if ship:
        bundle_path = _ship(df.sparkSession, b)
    task, _ = score_task(
        b,
        _arrow_schema(df),
        "spark DataFrame",
        keep=keep,
        bundle_path=bundle_path,
        threads=threads,
        **options,
    )
    out_schema = from_arrow_schema(task.schema)
    task = replace(task, schema=to_arrow_schema(out_schema))

    def run(batches):
        yield from score_stream(batches, _resolve(task))

    return df.mapInArrow(run, out_schema)


def score_to(
    df,
    bundle,
    output,
    *,
    format=None,
    overwrite=False,
    max_unknown_share=None,
    report=None,
    ship=False,
    bundle_path=None,
    where="spark DataFrame",
    **options,
):
    """Score ``df`` into ``output`` (part files + ``_SUCCESS``, or one file); returns a ScoreReport.

    Each task writes its partition under a temporary name; the driver renames the parts of the
    attempts Spark delivered, applies the unknown-id guard (``max_unknown_share``, default 0.5) to
    the whole job and writes ``_SUCCESS``. A task that fails is retried by Spark (with
    ``spark.task.maxFailures`` > 1); nothing is left behind when the job fails.
    """
    from ..fileio import write_json

    t0 = time.perf_counter()
    b = load_bundle(bundle)
    if ship:
        bundle_path = _ship(df.sparkSession, b)
    extra = {} if max_unknown_share is None else {"max_unknown_share": max_unknown_share}
    task, scorer = score_task(b, _arrow_schema(df), where, bundle_path=bundle_path, **extra, **options)
    staged = StagedOutput(
        output,
        format,
        task.schema,
        overwrite=overwrite,
        command="score",
        job={
            "engine": "spark",
            "bundle": task.digest,
            "input": where,
            "unknown": task.unknown,
            "clip": task.clip,
            "user_col": task.user_col,
            "item_col": task.item_col,
        },
    )
    directory, fmt = os.fspath(staged.directory), staged.part_fmt

    def run(batches):
        from pyspark import TaskContext

        record = score_to_part(batches, _resolve(task), directory, TaskContext.get().partitionId(), fmt)
        yield pa.RecordBatch.from_pylist([record], schema=SCORE_RECORD)

    try:
        records = _collect(df.mapInArrow(run, _RECORD_SCHEMA))
        rep = score_report(records, scorer, task, where, scorer.max_unknown_share)
        staged.commit(records)
    except BaseException:
        staged.abort()
        raise
    rep.input, rep.output, rep.output_mode, rep.format = where, os.fspath(output), staged.mode, staged.fmt
    rep.seconds = time.perf_counter() - t0
    rep.rows_per_s = rep.rows_read / rep.seconds if rep.seconds > 0 else 0.0
    if report is not None:
        write_json(report, rep.to_dict())
    return rep


def read_input(spark, input, columns_as_text=()):
    """A CSV/Parquet file, directory or glob as a Spark DataFrame (the local reader's files).

    CSV is read with a header and every column as text (so ids follow the id rules).
    """
    kind, files = expand_input(input)
    try:
        if kind == "parquet":
            return spark.read.parquet(*files)
        sep = "\t" if files[0].endswith((".tsv", ".tsv.gz")) else ","
        return spark.read.csv(files, header=True, inferSchema=False, sep=sep)
    except Exception as exc:  # noqa: BLE001 - truncated or unreadable files: one line
        raise DataError(f"{os.fspath(input)}: cannot read {kind} input ({first_line(exc)})") from None


@contextlib.contextmanager
def local_session(master: str | None = None, *, timeout: float = CONNECT_TIMEOUT_S, conf: dict | None = None):
    """A SparkSession: on ``master`` (``spark://host:port``, ``yarn``, ...) or ``local[*]``; stopped at
    the end when this call created it. A ``spark://`` master that does not answer within
    ``timeout`` seconds is one :class:`EngineError` line."""
    if master and master.startswith("spark://"):
        probe_address(master, "--master", DEFAULT_MASTER_PORT, timeout)
    existing = SparkSession.getActiveSession()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master or "local[*]").appName("recmodels")
    settings = dict(SESSION_CONF)
    if (master or "local[*]").startswith("local"):
        settings["spark.driver.extraJavaOptions"] = LOCAL_JAVA_OPTIONS
    settings.update(conf or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # noqa: BLE001 - JVM start-up failures
        raise EngineError(
            f"--master {master or 'local[*]'}: cannot start Spark ({first_line(exc)})"
        ) from None
    if existing is None:
        spark.sparkContext.setLogLevel("ERROR")
    try:
        with warnings.catch_warnings():  # pyspark's "pandas >= 3 not fully supported" notes
            warnings.filterwarnings("ignore", category=FutureWarning, module="pyspark")
            yield spark
    finally:
        if existing is None:
            spark.stop()


def score_file(bundle, input, output, *, master=None, resume=False, part_rows=None, ship=False, **options):
    """``recmodels score --engine spark``: score ``input`` into ``output`` with Spark.

    A Parquet input is cut into the parts of a local run (``part_rows`` input rows each), one task
    per part reading its own rows (no JVM-side decoding): the output (parts, sidecars,
    ``_scoring.json``) is the local one, and ``resume`` works. A CSV input is read with
    :func:`read_input` and scored with :func:`score_to` (one part per input split).
    """
    from .driver import check_engine_options, run_score_parts

    def run(parts, task, input_path, rows_per_part, directory, fmt):  # after every check on the driver
        with local_session(master) as spark:
            if ship:
                task = replace(task, bundle_path=_ship(spark, load_bundle(task.bundle_path)))
            schema = SCORE_INPUT_RECORD

            def work(batches):
                t = _resolve(task)
                for batch in batches:
                    for k in batch.column(0).to_pylist():
                        record = score_input_part(t, input_path, parts[k], rows_per_part, directory, fmt)
                        yield pa.RecordBatch.from_pylist([record], schema=schema)

            ids = spark.range(0, len(parts), numPartitions=len(parts))
            return _collect(ids.mapInArrow(work, _PART_RECORD_SCHEMA))

    rep = run_score_parts(
        bundle, input, output, run, engine="spark", resume=resume, part_rows=part_rows, **options
    )
    if rep is not None:
        return rep
    check_engine_options("spark", resume=resume, part_rows=part_rows)
    b = load_bundle(bundle)
    user_col = options.pop("user_col", None) or b.user_column
    item_col = options.pop("item_col", None) or b.item_column
    with local_session(master) as spark:
        df = read_input(spark, input, (user_col, item_col))
        return score_to(
            df, b, output, where=os.fspath(input), user_col=user_col, item_col=item_col, ship=ship, **options
        )


# -- recommending ------------------------------------------------------------------------------------
def recommend(
    users_df,
    bundle,
    k: int = 10,
    *,
    exclude_seen=None,
    partitions: int | None = None,
    ship=False,
    bundle_path=None,
    user_col=None,
    item_col=None,
    device="auto",
    threads=1,
    candidates=None,
):
    """Top-``k`` items for the users of a Spark DataFrame, partitioned by user.

    Users and their seen pairs are bucketed by the user's index in the bundle's id map and
    cogrouped, so each task ranks one bucket of users with the local ``Recommender``.

    Parameters
    ----------
    users_df : pyspark.sql.DataFrame
        One row per user (column ``user_col``, default the bundle's).
    bundle : path-like or Bundle
    k : int
    exclude_seen : pyspark.sql.DataFrame, optional
        (user, item) pairs never to recommend.
    partitions : int, optional
        User buckets (default: ``spark.sql.shuffle.partitions``).

    Returns
    -------
    pyspark.sql.DataFrame
        ``user_id, rank, item_id, score`` as ``recmodels recommend`` writes them.
    """
    from .worker import RecommendTask

    b = load_bundle(bundle)
    rec = Recommender(b, device="cpu", threads=1, candidates=candidates)
    check_candidate_k(k, b)
    user_col, item_col = user_col or b.user_column, item_col or b.item_column
    spark = users_df.sparkSession
    if ship:
        bundle_path = _ship(spark, b)
    if user_col not in users_df.columns:
        raise DataError(f"users: no user id column {user_col!r} (columns: {', '.join(users_df.columns)})")
    task = RecommendTask(
        bundle_path=os.fspath(bundle_path or b.path),
        digest=b.digest,
        k=int(k),
        device=device,
        threads=threads,
        candidates=candidates,
        user_col=user_col,
        item_col=item_col,
    )
    n = int(partitions or spark.conf.get("spark.sql.shuffle.partitions"))
    out_schema = from_arrow_schema(rec.output_schema())

    def bucketed(frame, columns):
        sub = frame.select(*columns)
        schema = T.StructType(list(sub.schema.fields) + [T.StructField("_bucket", T.LongType())])

        def add(batches):
            t = _resolve(task)
            encoder = worker_bundle(t.bundle_path, t.digest).user_encoder
            for batch in batches:
                index, _ = encoder.lookup(batch.column(user_col))
                bucket = pa.array(index.clip(min=0) % n)
                yield pa.RecordBatch.from_arrays(
                    [*batch.columns, bucket], names=[*batch.schema.names, "_bucket"]
                )

        return sub.mapInArrow(add, schema)

    users_b = bucketed(users_df, [user_col])
    if exclude_seen is None:

        def rank(table):
            return recommend_users(table.column(user_col), None, _resolve(task))

        return users_b.groupBy("_bucket").applyInArrow(rank, out_schema)
    for col in (user_col, item_col):
        if col not in exclude_seen.columns:
            raise DataError(
                f"exclude-seen: no id column {col!r} (columns: {', '.join(exclude_seen.columns)})"
            )
    seen_b = bucketed(exclude_seen, [user_col, item_col])

    def rank_with_seen(users, seen):
        return recommend_users(users.column(user_col), seen.drop_columns(["_bucket"]), _resolve(task))

    return (
        users_b.groupBy("_bucket").cogroup(seen_b.groupBy("_bucket")).applyInArrow(rank_with_seen, out_schema)
    )


def recommend_file(bundle, output, *, master=None, ship=False, **kwargs):
    """``recmodels recommend --engine spark``: one task per part of users (the local part boundaries)."""

    def run(spans, task, directory, fmt):
        with local_session(master) as spark:
            if ship:
                task = replace(task, bundle_path=_ship(spark, load_bundle(task.bundle_path)))
            frame = spark.createDataFrame(spans).repartition(len(spans))

            def work(batches):
                t = _resolve(task)
                for batch in batches:
                    for part, lo, hi in zip(
                        *(batch.column(c).to_pylist() for c in ("part", "lo", "hi")), strict=True
                    ):
                        record = recommend_part(t, part, lo, hi, directory, fmt)
                        yield pa.RecordBatch.from_pylist(
                            [record], schema=RECOMMEND_RECORD
                        )

            return _collect(frame.mapInArrow(work, _RECOMMEND_RECORD_SCHEMA))

    return run_recommend_job(bundle, output, run, engine="spark", **kwargs)


_ = pyspark  # the real pyspark package
