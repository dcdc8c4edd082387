"""Score and recommend on Dask: ``map_partitions`` over the torch-free scoring core.

``pip install 'recmodels[dask]'``. Every partition runs :mod:`recmodels.engines.worker` (the
local ``Scorer`` / ``Recommender``, one onnxruntime session per worker process, cached by bundle
digest); the task graph holds only paths and options. See ``docs/distributed.md``.

>>> import dask.dataframe as dd                                              # doctest: +SKIP
>>> from recmodels import dask as rdask                                      # doctest: +SKIP
>>> pairs = dd.read_parquet("pairs/", split_row_groups=True)                 # doctest: +SKIP
>>> rdask.score(pairs, "bundles/neumf").to_parquet("scores/")                # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import time
from functools import partial

import numpy as np
import pandas as pd
import pyarrow as pa

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
    RecommendTask,
    pandas_dtypes,
    recommend_part,
    recommend_users,
    score_frame_task,
    score_input_part,
    score_to_part,
)

try:
    import dask
    import dask.dataframe as dd
except ImportError as _exc:  # pragma: no cover - exercised with the extra missing
    raise missing_engine("dask", _exc) from None

__all__ = ["local_client", "read_input", "recommend", "recommend_file", "score", "score_file", "score_to"]

DEFAULT_SCHEDULER_PORT = 8786
_RECORD_COLUMNS = pandas_dtypes(SCORE_RECORD)
_PART_COLUMNS = pandas_dtypes(SCORE_INPUT_RECORD)
_RECOMMEND_COLUMNS = pandas_dtypes(RECOMMEND_RECORD)


def _meta_schema(frame) -> pa.Schema:
    return pa.Schema.from_pandas(frame._meta, preserve_index=False)


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
        ``device``, ``user_col``, ``item_col``, ``unknown``, ``clip``, ``batch_size``: as for
        :class:`recmodels.scoring.Scorer`.

    Returns
    -------
    dask.dataframe.DataFrame
        The kept columns, ``known`` (``unknown="fallback"``) and ``score`` (float32); index kept.

    Raises
    ------
    DataError
        A missing id column, or one of a type ids cannot have (checked before any task runs).
    """
    task, _ = score_task(
        load_bundle(bundle),
        _meta_schema(ddf),
        "dask DataFrame",
        keep=keep,
        bundle_path=bundle_path,
        threads=threads,
        **options,
    )
    meta = ddf._meta[list(task.keep)].copy()
    if task.unknown == "fallback":
        meta["known"] = np.array([], dtype=bool)
    meta["score"] = np.array([], dtype=np.float32)
    return ddf.map_partitions(partial(score_frame_task, task=task), meta=meta)


def _write_partition(frame: pd.DataFrame, task, directory, fmt, partition_info=None) -> pd.DataFrame:
    number = 0 if partition_info is None else int(partition_info["number"])
    batch = pa.RecordBatch.from_pandas(frame, preserve_index=False)
    record = score_to_part([batch], task, directory, number, fmt)
    return pd.DataFrame([record])[list(_RECORD_COLUMNS)].astype(_RECORD_COLUMNS)


def score_to(
    ddf,
    bundle,
    output,
    *,
    format=None,
    overwrite=False,
    max_unknown_share=None,
    report=None,
    bundle_path=None,
    client=None,
    where="dask DataFrame",
    **options,
):
    """Score ``ddf`` into ``output`` (part files + ``_SUCCESS``, or one file); returns a ScoreReport.

    Each partition is written by its task under a temporary name; the driver renames the parts
    the engine delivered, applies the unknown-id guard (``max_unknown_share``, default 0.5) to
    the whole job and writes ``_SUCCESS``. Nothing is left behind when it fails.
    """
    from ..fileio import write_json

    t0 = time.perf_counter()
    extra = {} if max_unknown_share is None else {"max_unknown_share": max_unknown_share}
    task, scorer = score_task(
        load_bundle(bundle), _meta_schema(ddf), where, bundle_path=bundle_path, **extra, **options
    )
    staged = StagedOutput(
        output,
        format,
        task.schema,
        overwrite=overwrite,
        command="score",
        job={
            "engine": "dask",
            "bundle": task.digest,
            "input": where,
            "unknown": task.unknown,
            "clip": task.clip,
            "user_col": task.user_col,
            "item_col": task.item_col,
        },
    )
    meta = pd.DataFrame({k: pd.Series(dtype=v) for k, v in _RECORD_COLUMNS.items()})
    try:
        records_ddf = ddf.map_partitions(
            _write_partition, task, os.fspath(staged.directory), staged.part_fmt, meta=meta
        )
        records = _compute(records_ddf, client).to_dict("records")
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


def _compute(collection, client):
    """Compute on ``client`` (or the current scheduler); worker errors of recmodels pass through."""
    try:
        if client is not None:
            return client.compute(collection).result()
        return collection.compute()
    except RecmodelsError:
        raise
    except Exception as exc:  # noqa: BLE001 - one line on the driver, not a worker traceback
        raise EngineError(f"dask job failed: {type(exc).__name__}: {first_line(exc)}") from None


def read_input(input, columns_as_text=()):
    """A CSV/Parquet file, directory or glob as a Dask DataFrame, in the local reader's file order.

    Parquet is split by row group (``split_row_groups=True``), so one big file still
    parallelises; CSV is read in 64 MB blocks with the id columns as text (the id rules).
    """
    kind, files = expand_input(input)
    try:
        if kind == "parquet":
            return dd.read_parquet(files, split_row_groups=True)
        dtype = {c: "string" for c in columns_as_text}
        sep = "\t" if files[0].endswith((".tsv", ".tsv.gz")) else ","
        return dd.read_csv(files, dtype=dtype, blocksize="64MB", sep=sep)
    except Exception as exc:  # noqa: BLE001 - truncated or unreadable files: one line
        raise DataError(f"{os.fspath(input)}: cannot read {kind} input ({first_line(exc)})") from None


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
        A scheduler address; one that does not answer in ``timeout`` seconds is one
        :class:`EngineError` line.
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
        probe_address(scheduler, "--scheduler", DEFAULT_SCHEDULER_PORT, timeout)
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
    cluster = LocalCluster(
        n_workers=n_workers or available_cpus(),
        threads_per_worker=1,
        processes=processes,
        dashboard_address=None,
        **where,
    )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
        if not processes:  # the workers' bundles, sessions and inputs lived in this process
            from .worker import clear_caches

            clear_caches()


def _score_parts(parts: pd.DataFrame, task, input, part_rows, directory, fmt) -> pd.DataFrame:
    records = [score_input_part(task, input, int(k), part_rows, directory, fmt) for k in parts["part"]]
    return pd.DataFrame(records, columns=list(_PART_COLUMNS)).astype(_PART_COLUMNS)


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
    from .driver import check_engine_options, run_score_parts

    def run(parts, task, input_path, rows_per_part, directory, fmt):  # after every check on the driver
        with local_client(scheduler, n_workers=n_workers, processes=processes) as client:
            frame = dd.from_pandas(pd.DataFrame({"part": parts}), npartitions=len(parts), sort=False)
            meta = pd.DataFrame({c: pd.Series(dtype=t) for c, t in _PART_COLUMNS.items()})
            out = frame.map_partitions(
                _score_parts, task, input_path, rows_per_part, directory, fmt, meta=meta
            )
            return _compute(out, client).to_dict("records")

    rep = run_score_parts(
        bundle, input, output, run, engine="dask", resume=resume, part_rows=part_rows, **options
    )
    if rep is not None:
        return rep
    check_engine_options("dask", resume=resume, part_rows=part_rows)
    b = load_bundle(bundle)
    user_col = options.pop("user_col", None) or b.user_column
    item_col = options.pop("item_col", None) or b.item_column
    ddf = read_input(input, (user_col, item_col))
    with local_client(scheduler, n_workers=n_workers, processes=processes) as client:
        return score_to(
            ddf,
            b,
            output,
            client=client,
            where=os.fspath(input),
            user_col=user_col,
            item_col=item_col,
            **options,
        )


# -- recommending --------------------------------------------------------------------------------------
def _bucket_frame(frame: pd.DataFrame, column: str, encoder_task, n: int) -> pd.DataFrame:
    from .worker import worker_bundle

    bundle = worker_bundle(encoder_task.bundle_path, encoder_task.digest)
    index, _ = bundle.user_encoder.lookup(pa.array(frame[column]) if len(frame) else pa.array([], pa.int64()))
    out = frame.copy()
    out["_bucket"] = (
        np.where(index >= 0, index % n, 0).astype(np.int64) if len(frame) else np.array([], np.int64)
    )
    return out


def _recommend_bucket(users: pd.DataFrame, seen, task: RecommendTask, user_col: str) -> pd.DataFrame:
    seen_part = None
    if seen is not None:
        seen_part = seen.drop(columns=["_bucket"])
    table = recommend_users(pa.array(users[user_col]) if len(users) else [], seen_part, task)
    return table.to_pandas()


def recommend(
    users,
    bundle,
    k: int = 10,
    *,
    exclude_seen=None,
    partitions: int | None = None,
    bundle_path: str | None = None,
    user_col: str | None = None,
    item_col: str | None = None,
    device: str = "auto",
    threads: int | None = 1,
    candidates: int | None = None,
):
    """Top-``k`` items for the users of a Dask DataFrame, partitioned by user.

    Parameters
    ----------
    users : dask.dataframe.DataFrame
        One row per user (column ``user_col``, default the bundle's).
    bundle : path-like or Bundle
    k : int
    exclude_seen : dask.dataframe.DataFrame, optional
        (user, item) pairs never to recommend; shuffled to the partition of their user.
    partitions : int, optional
        User partitions (default: ``users.npartitions``).

    Returns
    -------
    dask.dataframe.DataFrame
        ``user_id, rank, item_id, score`` as ``recmodels recommend`` writes them (rows grouped by
        user partition, not in list order).
    """
    b = load_bundle(bundle)
    rec = Recommender(b, device="cpu", threads=1, candidates=candidates)
    user_col = user_col or b.user_column
    item_col = item_col or b.item_column
    if user_col not in users.columns:
        raise DataError(
            f"users: no user id column {user_col!r} (columns: {', '.join(map(str, users.columns))})"
        )
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
    check_candidate_k(task.k, b)
    n = int(partitions or users.npartitions)
    ids = users[[user_col]]
    ub = ids.map_partitions(_bucket_frame, user_col, task, n, meta=ids._meta.assign(_bucket=np.int64(0)))
    ub = ub.shuffle("_bucket", npartitions=n)
    schema = rec.output_schema()
    meta = schema.empty_table().to_pandas()
    if exclude_seen is None:
        return ub.map_partitions(_recommend_bucket, None, task, user_col, meta=meta)
    for col in (user_col, item_col):
        if col not in exclude_seen.columns:
            raise DataError(
                f"exclude-seen: no id column {col!r} (columns: {', '.join(map(str, exclude_seen.columns))})"
            )
    pairs = exclude_seen[[user_col, item_col]]
    sb = pairs.map_partitions(_bucket_frame, user_col, task, n, meta=pairs._meta.assign(_bucket=np.int64(0)))
    sb = sb.shuffle("_bucket", npartitions=n)
    return dd.map_partitions(_recommend_bucket, ub, sb, task, user_col, meta=meta, align_dataframes=False)


def _recommend_span(span: pd.DataFrame, task, directory, fmt) -> pd.DataFrame:
    records = [
        recommend_part(task, int(r.part), int(r.lo), int(r.hi), directory, fmt) for r in span.itertuples()
    ]
    return pd.DataFrame(records, columns=list(_RECOMMEND_COLUMNS)).astype(_RECOMMEND_COLUMNS)


def recommend_file(bundle, output, *, scheduler=None, n_workers=None, processes=False, **kwargs):
    """``recmodels recommend --engine dask``: one task per part of users (the local part boundaries).

    ``scheduler``, ``n_workers`` and ``processes`` choose the cluster (:func:`local_client`).
    """

    def run(spans: pd.DataFrame, task, directory, fmt):
        with local_client(scheduler, n_workers=n_workers, processes=processes) as client:
            frame = dd.from_pandas(spans, npartitions=len(spans), sort=False)
            meta = pd.DataFrame({c: pd.Series(dtype=t) for c, t in _RECOMMEND_COLUMNS.items()})
            out = frame.map_partitions(_recommend_span, task, directory, fmt, meta=meta)
            return _compute(out, client).to_dict("records")

    return run_recommend_job(bundle, output, run, engine="dask", **kwargs)


_ = dask  # the real dask package (absolute import), not this module
