"""Score and recommend on Spark: ``mapInArrow`` over the torch-free scoring core for frames, one
Python task per part (the RDD API) for the jobs that read and write their own parts.

``pip install 'recmodels[spark]'``. Each partition's Arrow batches run through
:mod:`recmodels.engines.worker` (the local ``Scorer`` / ``Recommender``; one onnxruntime session
per Python worker process, cached by bundle digest, checksums verified once per worker). Only
paths and options are shipped with the tasks. The bundle reaches the executors as a path on
shared storage, or with ``ship=True`` through ``SparkContext.addFile``. What is not Spark's own
(the checks, the output, the report) is :mod:`recmodels.engines.driver`'s. See
``docs/distributed.md``.

>>> from recmodels import spark as rspark                                    # doctest: +SKIP
>>> scores = rspark.score(spark.read.parquet("pairs/"), "bundles/neumf")     # doctest: +SKIP
>>> scores.write.parquet("scores/")                                          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa

from .. import errors as _errors
from ..errors import DataError, EngineError, RecmodelsError, first_line
from ..scoring.recommendation.recommender import recommend_schema
from ..scoring.runtime.session import load_bundle
from ..tables import expand_input
from . import driver
from .connect import CONNECT_TIMEOUT_S, check_master, missing_engine
from .contract import SCORE_RECORD, fold_bytes
from .worker import recommend_users, score_stream, score_to_part, worker_bundle, worker_fold

try:
    with warnings.catch_warnings():  # "PySpark does not yet fully support pandas >= 3" on import
        warnings.simplefilter("ignore", FutureWarning)
        import pyspark
        from pyspark.sql import SparkSession
        from pyspark.sql import types as T
        from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
except ImportError as _exc:  # pragma: no cover - exercised with the extra missing
    raise missing_engine("spark", _exc) from None

__all__ = ["SparkEngine", "check_master", "local_session", *driver.ENGINE_API]

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
_WORKER_ERROR = re.compile(r"recmodels\.errors\.(\w+): (.+)")
_LOG = logging.getLogger(__name__)


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


def _broadcast(spark, fold):
    """The fold-in's bytes as a broadcast variable (each executor fetches it once), or None."""
    return None if fold is None else spark.sparkContext.broadcast(fold_bytes(fold))


def _on_executor(task, fold):
    """:func:`_resolve`, after reading the broadcast fold-in into this worker's cache."""
    task = _resolve(task)
    if fold is not None:
        worker_fold(task, fold.value)
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
    return EngineError(f"spark job failed: {line[:300]}{_log_hint()}")


def _collect(data) -> list[dict]:
    """The records of a DataFrame (its rows) or an RDD (dicts); a failed job as one line."""
    try:
        return [row if isinstance(row, dict) else row.asDict() for row in data.collect()]
    except RecmodelsError:
        raise
    except Exception as exc:  # noqa: BLE001 - py4j / PySpark errors carry the executor traceback
        _LOG.debug("spark job failed", exc_info=exc)
        raise _worker_errors(exc) from None


# -- the cluster ----------------------------------------------------------------------------------
_LOG_FILE: dict = {}


def _log_hint() -> str:
    path = _LOG_FILE.get("path")
    return f" (Spark's log: {path})" if path else ""


def _start(master: str, settings: dict):
    """A new SparkSession whose JVM writes its console (warnings, executor errors, the Python
    workers' stderr) to a log file instead of this command's output; kept when the job fails."""
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    conf = SparkConf().setMaster(master).setAppName("recmodels").setAll(list(settings.items()))
    if "PYSPARK_GATEWAY_PORT" in os.environ:  # under spark-submit: its JVM is already there
        return SparkSession.builder.config(conf=conf).getOrCreate()
    fd, log = tempfile.mkstemp(prefix="recmodels-spark-", suffix=".log")
    _LOG_FILE["path"] = log
    with os.fdopen(fd, "ab") as fh:
        gateway = launch_gateway(conf, popen_kwargs={"stdout": fh, "stderr": fh})
    SparkContext(conf=conf, gateway=gateway)
    return SparkSession.builder.getOrCreate()


@contextlib.contextmanager
def local_session(master: str | None = None, *, timeout: float = CONNECT_TIMEOUT_S, conf: dict | None = None):
    """A SparkSession: on ``master`` (``spark://host:port``, ``yarn``, ...) or ``local[*]``; stopped at
    the end when this call created it.

    A ``spark://`` master is checked first (:func:`check_master`): one that does not answer as
    Spark within ``timeout`` seconds is one :class:`EngineError` line. A session created here
    writes the JVM's console to a temporary log file (named in a failed job's message, removed
    after a job that worked), so the command prints only its own lines.
    """
    master = master or "local[*]"
    check_master(master, timeout)
    existing = SparkSession.getActiveSession()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings = dict(SESSION_CONF)
    if master.startswith("local"):
        settings["spark.driver.extraJavaOptions"] = LOCAL_JAVA_OPTIONS
    settings.update(conf or {})
    with warnings.catch_warnings():  # pyspark's "pandas >= 3 not fully supported" notes
        warnings.filterwarnings("ignore", category=FutureWarning, module="pyspark")
        yield from _session(existing, master, settings)


def _session(existing, master: str, settings: dict):
    if existing is not None:
        spark = existing
    else:
        try:
            spark = _start(master, settings)
        except Exception as exc:  # noqa: BLE001 - JVM start-up failures
            reason, hint = first_line(exc), _log_hint()
            _LOG_FILE.pop("path", None)
            raise EngineError(f"--master {master}: cannot start Spark ({reason}){hint}") from None
        spark.sparkContext.setLogLevel("ERROR")
    crashed = False
    try:
        yield spark
    except BaseException as exc:
        crashed = isinstance(exc, EngineError) or not isinstance(exc, RecmodelsError)
        raise
    finally:
        if existing is None:
            spark.stop()
            log = _LOG_FILE.pop("path", None)
            if log and not crashed:  # kept for a crash: its message names it
                with contextlib.suppress(OSError):
                    os.unlink(log)


@dataclass
class SparkEngine:
    """The driver's view of Spark (:class:`recmodels.engines.driver.Engine`): a session from
    :func:`local_session`, and one Python task per item."""

    master: str | None = None
    ship: bool = False
    name: str = "spark"

    def connect(self, bundle=None):
        return local_session(self.master)  # Python workers are processes of their own

    def map_items(self, spark, task, items, fn, record) -> list[dict]:
        if self.ship:
            task = replace(task, bundle_path=_ship(spark, load_bundle(task.bundle_path)))

        def work(i: int) -> dict:
            return fn(_resolve(task), items[i])

        if not items:
            return []
        # the RDD API: a task that reads and writes its own part needs no SQL plan and no Arrow
        # round trip, and the first job starts ~4 s sooner on 2 cores (docs/benchmarks.md)
        return _collect(spark.sparkContext.parallelize(range(len(items)), len(items)).map(work))

    def read_csv(self, spark, input, text_columns):
        return read_input(spark, input, text_columns)

    def score_frame(self, spark, frame, bundle, output, **options):
        return score_to(frame, bundle, output, ship=self.ship, **options)


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
        ``device``, ``user_col``, ``item_col``, ``unknown``, ``clip``, ``batch_size``, and
        ``history``, ``rating_col``, ``history_update_known``, ``history_min_ratings``,
        ``item_embeddings`` (folded in once, here, and broadcast): as for
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
    folding = driver.pop_history(options)
    task, _ = driver.score_task(
        b, _arrow_schema(df), "spark DataFrame", keep=keep, bundle_path=bundle_path, threads=threads,
        **options,
    )
    task, fold = driver.score_fold(b, task, **folding)
    fold = _broadcast(df.sparkSession, fold)
    out_schema = from_arrow_schema(task.schema)
    task = replace(task, schema=to_arrow_schema(out_schema))

    def run(batches):
        yield from score_stream(batches, _on_executor(task, fold))

    return df.mapInArrow(run, out_schema)


def score_to(df, bundle, output, *, ship=False, bundle_path=None, where="spark DataFrame", **options):
    """Score ``df`` into ``output`` (part files + ``_SUCCESS``, or one file); returns a ScoreReport.

    Each task writes its partition under a temporary name; the driver renames the parts of the
    attempts Spark delivered, applies the unknown-id guard (``max_unknown_share``, default 0.5) to
    the whole job and writes ``_SUCCESS``. A task that fails is retried by Spark (with
    ``spark.task.maxFailures`` > 1); nothing is left behind when the job fails. ``options``:
    those of :func:`recmodels.engines.driver.score_to` (``format``, ``overwrite``,
    ``max_unknown_share``, ``report``) and of :func:`score`.
    """
    b = load_bundle(bundle)
    if ship:
        bundle_path = _ship(df.sparkSession, b)

    def write(task, directory, fmt):
        def run(batches):
            from pyspark import TaskContext

            part = TaskContext.get().partitionId()
            yield pa.RecordBatch.from_pylist([score_to_part(batches, _resolve(task), directory, part, fmt)],
                                             schema=SCORE_RECORD)

        return _collect(df.mapInArrow(run, from_arrow_schema(SCORE_RECORD)))

    return driver.score_to(b, _arrow_schema(df), output, write, engine="spark", where=where,
                           bundle_path=bundle_path, **options)


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


def score_file(bundle, input, output, *, master=None, resume=False, part_rows=None, ship=False, **options):
    """``recmodels score --engine spark``: score ``input`` into ``output`` with Spark.

    A Parquet input is cut into the parts of a local run (``part_rows`` input rows each), one task
    per part reading its own rows (no JVM-side decoding): the output (parts, sidecars,
    ``_scoring.json``) is the local one, and ``resume`` works. A CSV input is read with
    :func:`read_input` and scored with :func:`score_to` (one part per input split).
    """
    engine = SparkEngine(master, ship)
    return driver.score_file(bundle, input, output, engine, resume=resume, part_rows=part_rows, **options)


# -- recommending ------------------------------------------------------------------------------------
def recommend(users_df, bundle, k: int = 10, *, exclude_seen=None, partitions: int | None = None, ship=False,
              bundle_path=None, user_col=None, item_col=None, device="auto", threads=1, candidates=None,
              **history):
    """Top-``k`` items for the users of a Spark DataFrame, partitioned by user.

    Users and their seen pairs are bucketed by the user's index in the bundle's id map and
    cogrouped (``applyInArrow``), so each task ranks one bucket of users with the local
    ``Recommender``.

    Parameters
    ----------
    users_df : pyspark.sql.DataFrame
        One row per user (column ``user_col``, default the bundle's).
    bundle : path-like or Bundle
        Verified on the driver; shipped with ``ship=True``, else read by the executors at
        ``bundle_path`` (default: the driver's path).
    k : int
        Items per user.
    exclude_seen : pyspark.sql.DataFrame, optional
        (user, item) pairs never to recommend.
    partitions : int, optional
        User buckets (default: ``spark.sql.shuffle.partitions``).
    user_col, item_col, device, threads, candidates
        As for :class:`recmodels.scoring.Recommender` and ``recmodels recommend``.
    **history
        ``history``, ``rating_col``, ``history_update_known``, ``history_min_ratings``,
        ``item_embeddings``: as for :class:`recmodels.scoring.Recommender` (folded in once, here,
        and broadcast; folded-in new users are in the first bucket).

    Returns
    -------
    pyspark.sql.DataFrame
        ``user_id, rank, item_id, score`` as ``recmodels recommend`` writes them.
    """
    b = load_bundle(bundle)
    spark = users_df.sparkSession
    if ship:
        bundle_path = _ship(spark, b)
    task = driver.recommend_task(
        b, k, users_df.columns, None if exclude_seen is None else exclude_seen.columns,
        bundle_path=bundle_path, user_col=user_col, item_col=item_col, device=device, threads=threads,
        candidates=candidates,
    )
    task, fold = driver.recommend_fold(b, task, **history)
    fold = _broadcast(spark, fold)
    user_col, item_col = task.user_col, task.item_col
    n = int(partitions or spark.conf.get("spark.sql.shuffle.partitions"))
    out_schema = from_arrow_schema(recommend_schema(b))

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
            return recommend_users(table.column(user_col), None, _on_executor(task, fold))

        return users_b.groupBy("_bucket").applyInArrow(rank, out_schema)
    seen_b = bucketed(exclude_seen, [user_col, item_col])

    def rank_with_seen(users, seen):
        seen_part = seen.drop_columns(["_bucket"])
        return recommend_users(users.column(user_col), seen_part, _on_executor(task, fold))

    return (
        users_b.groupBy("_bucket").cogroup(seen_b.groupBy("_bucket")).applyInArrow(rank_with_seen, out_schema)
    )


def recommend_file(bundle, output, *, master=None, ship=False, **kwargs):
    """``recmodels recommend --engine spark``: one task per part of users (the local part boundaries).

    ``kwargs``: those of :func:`recmodels.engines.driver.run_recommend_job`.
    """
    return driver.run_recommend_job(bundle, output, SparkEngine(master, ship), **kwargs)


_ = pyspark  # the real pyspark package
