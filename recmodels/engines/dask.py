"""Score and recommend on Dask: ``map_partitions`` over the torch-free scoring core.

``pip install 'recmodels[dask]'``. Every partition runs :mod:`recmodels.engines.worker` (the
local ``Scorer`` / ``Recommender``, one onnxruntime session per worker process, cached by bundle
digest); the task graph holds only paths and options. What is not Dask's own (the checks, the
output, the report) is :mod:`recmodels.engines.driver`'s. See ``docs/distributed.md``.

>>> import dask.dataframe as dd                                              # doctest: +SKIP
>>> from recmodels import dask as rdask                                      # doctest: +SKIP
>>> pairs = dd.read_parquet("pairs/", split_row_groups=True)                 # doctest: +SKIP
>>> rdask.score(pairs, "bundles/neumf").to_parquet("scores/")                # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import pyarrow as pa

from ..errors import DataError, EngineError, RecmodelsError, first_line
from ..scoring.recommendation.recommender import recommend_schema
from ..scoring.runtime.session import load_bundle
from ..tables import DEFAULT_DIALECT, expand_input
from . import driver
from .connect import CONNECT_TIMEOUT_S, check_scheduler, missing_engine
from .contract import SCORE_RECORD, RecommendTask, fold_bytes, pandas_dtypes
from .worker import (
    clear_caches,
    recommend_users,
    score_frame_task,
    score_to_part,
    share_bundle,
    worker_bundle,
    worker_fold,
)

try:
    import dask
except ImportError as _exc:  # pragma: no cover - exercised with the extra missing
    raise missing_engine("dask", _exc) from None

__all__ = ["CSV_BLOCKSIZE", "DaskEngine", "check_scheduler", "local_client", *driver.ENGINE_API]

CSV_BLOCKSIZE = "64MB"
"""Bytes of CSV per partition of :func:`read_input`."""
_LOG = logging.getLogger(__name__)


def _dataframe():
    """``dask.dataframe``, imported when a frame is needed: it costs ~0.9 s of start-up (it imports
    dask.array and scipy), which ``score_file`` on Parquet and ``recommend_file`` never use."""
    try:
        import dask.dataframe
    except ImportError as exc:  # pragma: no cover - exercised with the extra missing
        raise missing_engine("dask", exc) from None
    return dask.dataframe


def __getattr__(name: str):
    if name == "dd":  # the module's ``dd``, as before the import became lazy
        return _dataframe()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _meta_schema(frame) -> pa.Schema:
    return pa.Schema.from_pandas(frame._meta, preserve_index=False)


def _records_frame(records: list[dict], record: pa.Schema) -> pd.DataFrame:
    dtypes = pandas_dtypes(record)
    return pd.DataFrame(records, columns=list(dtypes)).astype(dtypes)


# -- the cluster ----------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_distributed():
    """distributed's own log lines (a worker's failed task, a slow event loop) stay out of the
    command's output; recmodels reports a failure in one line and logs the cause at debug level."""
    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def local_client(
    scheduler: str | None = None,
    *,
    n_workers: int | None = None,
    processes: bool = False,
    timeout: float = CONNECT_TIMEOUT_S,
):
    """A ``distributed.Client``: to ``scheduler``, or to a LocalCluster that is stopped at the end.

    Parameters
    ----------
    scheduler : str, optional
        A scheduler address, checked first (:func:`check_scheduler`): one that does not answer as
        a scheduler in ``timeout`` seconds is one :class:`EngineError` line.
    n_workers : int, optional
        Workers of the local cluster (default one per core), one thread each.
    processes : bool, default False
        Local cluster only (ignored with ``scheduler``). False: the workers are threads of this
        process, sharing one copy of the bundle and one onnxruntime session (onnxruntime, Arrow
        and the integer id lookups release the GIL; text ids hold it longer); start-up is well
        under a second, and the worker caches (:mod:`recmodels.engines.worker`) are emptied when
        the cluster stops. True: one worker process per worker, on 127.0.0.1, each loading its
        own copy of the bundle (isolation, and the killed-worker retry of a real cluster), at
        ~2-4 s more start-up on this kind of machine.
    timeout : float
        Seconds to wait for ``scheduler``.

    Yields
    ------
    distributed.Client
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise missing_engine("dask", exc) from None
    if scheduler is not None:
        check_scheduler(scheduler, timeout)
        try:
            client = Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise EngineError(
                f"--scheduler {scheduler}: no answer within {timeout:g} s ({first_line(exc)})"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    from ..scoring.runtime.providers import available_cpus

    # in-process workers talk over inproc://, worker processes over TCP on the loopback
    where = {"host": "127.0.0.1"} if processes else {}
    with _quiet_distributed():
        cluster = LocalCluster(
            n_workers=n_workers or available_cpus(),
            threads_per_worker=1,
            processes=processes,
            dashboard_address=None,
            # its HTTP routes on a free loopback port: no "port 8787 is in use" warning
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            **where,
        )
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
            cluster.close()
            if not processes:  # the workers' bundles, sessions and inputs lived in this process
                clear_caches()


def _gather(futures, client) -> list[dict]:
    """The records of every task, once all have ended: a part's recorded error or a crash is
    raised only then, so no task still writes while the driver removes the job's files."""
    from distributed import wait

    try:
        wait(futures)
    except BaseException:
        client.cancel(futures)
        raise
    records: list[dict] = []
    for future in futures:
        if future.status != "finished":
            exc = future.exception()
            if isinstance(exc, RecmodelsError):
                raise exc
            _LOG.debug("dask task failed", exc_info=exc)  # a crash: one line, the traceback at debug
            raise EngineError(f"dask job failed: {type(exc).__name__}: {first_line(exc)}") from None
        got = future.result()
        records.extend(got.to_dict("records") if isinstance(got, pd.DataFrame) else [got])
    return records


def _compute(collection, client) -> list[dict]:
    """The records of a collection of record frames, on ``client`` (or the current scheduler)."""
    if client is not None:
        return _gather(client.compute(collection.to_delayed()), client)
    try:
        return collection.compute().to_dict("records")
    except RecmodelsError:
        raise
    except Exception as exc:  # noqa: BLE001 - one line on the driver, not a worker traceback
        _LOG.debug("dask task failed", exc_info=exc)
        raise EngineError(f"dask job failed: {type(exc).__name__}: {first_line(exc)}") from None


@dataclass
class DaskEngine:
    """The driver's view of Dask (:class:`recmodels.engines.driver.Engine`): a client from
    :func:`local_client`, and one ``client.map`` task per item."""

    scheduler: str | None = None
    n_workers: int | None = None
    processes: bool = False
    name: str = "dask"

    @contextlib.contextmanager
    def connect(self, bundle=None):
        with local_client(self.scheduler, n_workers=self.n_workers, processes=self.processes) as client:
            if bundle is not None and self.scheduler is None and not self.processes:
                share_bundle(bundle)  # in-process workers (emptied when the cluster stops)
            yield client

    def map_items(self, client, task, items, fn, record) -> list[dict]:
        return _gather(client.map(partial(fn, task), items, pure=False), client)

    def read_csv(self, client, input, text_columns):
        return read_input(input, text_columns)

    def score_frame(self, client, frame, bundle, output, **options):
        return score_to(frame, bundle, output, client=client, **options)


# -- scoring ---------------------------------------------------------------------------------------
def score(ddf, bundle, *, keep=None, bundle_path: str | None = None, threads: int | None = 1, **options):
    """Score a Dask DataFrame of (user, item) pairs; lazy, one task per partition.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        Holds the id columns (default: the bundle's names).
    bundle : path-like or Bundle
        Verified here, on the driver; the workers load it from ``bundle_path`` (default: the same
        path), which must be readable by every worker.
    keep : list of str or "a,b", optional
        Columns to pass through (default: all).
    threads : int, optional
        Inference threads per task (default 1: one task per worker thread).
    **options
        ``device``, ``user_col``, ``item_col``, ``unknown``, ``clip``, ``batch_size``, and
        ``history``, ``rating_col``, ``history_update_known``, ``history_min_ratings``,
        ``item_embeddings`` (folded in once, here; the result is one object of the graph, sent to
        each worker once): as for :class:`recmodels.scoring.Scorer`.

    Returns
    -------
    dask.dataframe.DataFrame
        The kept columns, ``known`` (``unknown="fallback"``) and ``score`` (float32); index kept.

    Raises
    ------
    DataError
        A missing id column, or one of a type ids cannot have (checked before any task runs).
    """
    b = load_bundle(bundle)
    folding = driver.pop_history(options)
    task, _ = driver.score_task(
        b, _meta_schema(ddf), "dask DataFrame", keep=keep, bundle_path=bundle_path, threads=threads,
        **options,
    )
    task, fold = driver.score_fold(b, task, **folding)
    meta = ddf._meta[list(task.keep)].copy()
    if task.unknown == "fallback":
        meta["known"] = np.array([], dtype=bool)
    meta["score"] = np.array([], dtype=np.float32)
    return ddf.map_partitions(_score_partition, task, _shared_fold(fold), meta=meta)


def _shared_fold(fold):
    """The fold-in's bytes as one object of the task graph (each worker fetches it once), or None."""
    return None if fold is None else dask.delayed(fold_bytes(fold), pure=True)


def _score_partition(frame: pd.DataFrame, task, fold: bytes | None) -> pd.DataFrame:
    if fold is not None:
        worker_fold(task, fold)
    return score_frame_task(frame, task)


def _write_partition(frame: pd.DataFrame, task, directory, fmt, partition_info=None) -> pd.DataFrame:
    number = 0 if partition_info is None else int(partition_info["number"])
    # the frame as it is: pyarrow-backed columns may come in several chunks (pandas' CSV reader)
    record = score_to_part([frame], task, directory, number, fmt)
    return _records_frame([record], SCORE_RECORD)


def score_to(ddf, bundle, output, *, client=None, where="dask DataFrame", **options):
    """Score ``ddf`` into ``output`` (part files + ``_SUCCESS``, or one file); returns a ScoreReport.

    Each partition is written by its task under a temporary name; the driver renames the parts
    the engine delivered, applies the unknown-id guard (``max_unknown_share``, default 0.5) to
    the whole job and writes ``_SUCCESS``. Nothing is left behind when it fails. ``options``:
    those of :func:`recmodels.engines.driver.score_to` (``format``, ``overwrite``,
    ``max_unknown_share``, ``report``, ``bundle_path``) and of :func:`score`.
    """

    def write(task, directory, fmt):
        meta = _records_frame([], SCORE_RECORD)
        records = ddf.map_partitions(_write_partition, task, directory, fmt, meta=meta)
        return _compute(records, client)

    return driver.score_to(bundle, _meta_schema(ddf), output, write, engine="dask", where=where, **options)


def read_input(input, columns_as_text=(), dialect=None):
    """A CSV/Parquet file, directory or glob as a Dask DataFrame, in the local reader's file order.

    Parquet is split by row group (``split_row_groups=True``), so one big file still
    parallelises; CSV is read in :data:`CSV_BLOCKSIZE` blocks with the id columns as text (the id
    rules) and the tables' null rule (:mod:`recmodels.tables`: only an empty cell is missing;
    ``NA``, ``null``, ``nan`` are text, maybe real ids). ``dialect``: a
    :class:`~recmodels.tables.CsvDialect` (separator, header row).
    """
    dialect = dialect or DEFAULT_DIALECT
    kind, files = expand_input(input, dialect=dialect)
    dd = _dataframe()
    try:
        if kind == "parquet":
            return dd.read_parquet(files, split_row_groups=True)
        names = {} if dialect.header else {"header": None, "names": list(dialect.columns)}
        return dd.read_csv(
            files,
            dtype={c: "string" for c in columns_as_text},
            blocksize=CSV_BLOCKSIZE,
            sep=dialect.delimiter(files[0]),
            keep_default_na=False,
            na_values=[""],
            **names,
        )
    except Exception as exc:  # noqa: BLE001 - truncated or unreadable files: one line
        raise DataError(f"{os.fspath(input)}: cannot read {kind} input ({first_line(exc)})") from None


def score_file(
    bundle,
    input,
    output,
    *,
    scheduler=None,
    n_workers=None,
    processes=False,
    resume=False,
    part_rows=None,
    **options,
):
    """``recmodels score --engine dask``: score ``input`` into ``output`` on a Dask cluster.

    A Parquet input is cut into the parts of a local run (``part_rows`` input rows each), one task
    per part reading its own rows: the output (parts, sidecars, ``_scoring.json``) is the local
    one, and ``resume`` works. A CSV input is read with :func:`read_input` (one part per block).
    ``scheduler``, ``n_workers`` and ``processes`` choose the cluster (:func:`local_client`).
    """
    engine = DaskEngine(scheduler, n_workers, processes)
    return driver.score_file(bundle, input, output, engine, resume=resume, part_rows=part_rows, **options)


# -- recommending --------------------------------------------------------------------------------------
def _bucket_frame(frame: pd.DataFrame, column: str, encoder_task, n: int) -> pd.DataFrame:
    bundle = worker_bundle(encoder_task.bundle_path, encoder_task.digest)
    index, _ = bundle.user_encoder.lookup(pa.array(frame[column]) if len(frame) else pa.array([], pa.int64()))
    out = frame.copy()
    out["_bucket"] = (
        np.where(index >= 0, index % n, 0).astype(np.int64) if len(frame) else np.array([], np.int64)
    )
    return out


def _recommend_bucket(users: pd.DataFrame, seen, task: RecommendTask, user_col: str,
                      fold: bytes | None = None) -> pd.DataFrame:
    if fold is not None:
        worker_fold(task, fold)
    seen_part = None
    if seen is not None:
        seen_part = seen.drop(columns=["_bucket"])
    table = recommend_users(pa.array(users[user_col]) if len(users) else [], seen_part, task)
    return table.to_pandas()


def recommend(users, bundle, k: int = 10, *, exclude_seen=None, partitions: int | None = None,
              bundle_path: str | None = None, user_col: str | None = None, item_col: str | None = None,
              device: str = "auto", threads: int | None = 1, candidates: int | None = None, **history):
    """Top-``k`` items for the users of a Dask DataFrame, partitioned by user.

    Users and their seen pairs are bucketed by the user's index in the bundle's id map and
    shuffled to the same ``partitions`` partitions, each ranked by the local ``Recommender``.

    Parameters
    ----------
    users : dask.dataframe.DataFrame
        One row per user (column ``user_col``, default the bundle's).
    bundle : path-like or Bundle
        Verified on the driver; the workers read it at ``bundle_path`` (default: the same path).
    k : int
        Items per user.
    exclude_seen : dask.dataframe.DataFrame, optional
        (user, item) pairs never to recommend; shuffled to the partition of their user.
    partitions : int, optional
        User partitions (default: ``users.npartitions``).
    user_col, item_col, device, threads, candidates
        As for :class:`recmodels.scoring.Recommender` and ``recmodels recommend``.
    **history
        ``history``, ``rating_col``, ``history_update_known``, ``history_min_ratings``,
        ``item_embeddings``: as for :class:`recmodels.scoring.Recommender` (folded in once, here;
        folded-in new users are in the first partition).

    Returns
    -------
    dask.dataframe.DataFrame
        ``user_id, rank, item_id, score`` as ``recmodels recommend`` writes them (rows grouped by
        user partition, not in list order).
    """
    b = load_bundle(bundle)
    task = driver.recommend_task(
        b, k, list(users.columns), None if exclude_seen is None else list(exclude_seen.columns),
        bundle_path=bundle_path, user_col=user_col, item_col=item_col, device=device, threads=threads,
        candidates=candidates,
    )
    task, fold = driver.recommend_fold(b, task, **history)
    fold = _shared_fold(fold)
    user_col, item_col = task.user_col, task.item_col
    n = int(partitions or users.npartitions)
    ids = users[[user_col]]
    ub = ids.map_partitions(_bucket_frame, user_col, task, n, meta=ids._meta.assign(_bucket=np.int64(0)))
    ub = ub.shuffle("_bucket", npartitions=n)
    meta = recommend_schema(b).empty_table().to_pandas()
    if exclude_seen is None:
        return ub.map_partitions(_recommend_bucket, None, task, user_col, fold, meta=meta)
    pairs = exclude_seen[[user_col, item_col]]
    sb = pairs.map_partitions(_bucket_frame, user_col, task, n, meta=pairs._meta.assign(_bucket=np.int64(0)))
    sb = sb.shuffle("_bucket", npartitions=n)
    return _dataframe().map_partitions(_recommend_bucket, ub, sb, task, user_col, fold, meta=meta,
                             align_dataframes=False)


def recommend_file(bundle, output, *, scheduler=None, n_workers=None, processes=False, **kwargs):
    """``recmodels recommend --engine dask``: one task per part of users (the local part boundaries).

    ``scheduler``, ``n_workers`` and ``processes`` choose the cluster (:func:`local_client`);
    ``kwargs``: those of :func:`recmodels.engines.driver.run_recommend_job`.
    """
    return driver.run_recommend_job(bundle, output, DaskEngine(scheduler, n_workers, processes), **kwargs)


_ = dask  # the real dask package (absolute import), not this module
