"""The engine-agnostic worker side of distributed scoring and recommending (torch-free).

Spark and Dask (``recmodels.engines.spark``, ``recmodels.engines.dask``) only move data; what
runs on a worker is here, and it is the local path:
:class:`~recmodels.scoring.pairs.scorer.Scorer` (same id mapping, unknown-id policy, device
choice and output schema as ``recmodels score``) and
:class:`~recmodels.scoring.recommendation.recommender.Recommender`.

A task carries only picklable settings (:mod:`recmodels.engines.contract`: a bundle path, its
digest and options), never a session. On a worker the bundle is loaded and its
checksums verified **once per process** (:func:`worker_bundle`, keyed by digest), and one
``Scorer`` / ``Recommender`` is built once per process and setting (:func:`worker_scorer`), so an
onnxruntime session is created once per worker process, not per batch or per partition. Each
call works on a shallow copy of the cached scorer (its own unknown-id counts, the one shared
session), so threads of one worker can score concurrently.
"""

from __future__ import annotations

import copy
import os
import socket
import threading
import uuid
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import astuple, replace
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ..bundle import Bundle
from ..errors import BundleError, EngineError, RecmodelsError, first_line
from ..scoring.history import FoldIn
from ..scoring.output.stream import as_batches, numbered, rebatch
from ..scoring.output.writers import BatchFile
from ..scoring.pairs.scorer import Scorer
from ..scoring.recommendation.job import RecommendJob
from ..scoring.recommendation.recommender import Recommender
from ..scoring.runtime.pipeline import pipelined
from ..scoring.unknown_ids import COUNT_KEYS
from ..tables import TableSource, open_table
from .contract import (
    RECOMMEND_RECORD,
    SCORE_INPUT_RECORD,
    SCORE_RECORD,
    RecommendTask,
    ScoreTask,
    error_record,
    part_temp_name,
    read_fold,
)

__all__ = [
    "STATS",
    "clear_caches",
    "recommend_part",
    "recommend_users",
    "score_frame_task",
    "score_input_part",
    "score_stream",
    "score_to_part",
    "share_bundle",
    "worker_bundle",
    "worker_fold",
    "worker_recommender",
    "worker_scorer",
    "worker_source",
]


_LOCK = threading.Lock()
_BUNDLES: dict[str, Bundle] = {}
_SCORERS: dict[tuple, Scorer] = {}
_RECOMMENDERS: dict[tuple, Recommender] = {}
_JOBS: dict[tuple, RecommendJob] = {}
_SOURCES: dict[tuple, TableSource] = {}
_FOLDS: dict[str, FoldIn] = {}
STATS = {"bundle_loads": 0, "scorers": 0, "recommenders": 0, "folds": 0}
"""How often this process loaded a bundle / built a scorer or recommender / read a fold-in
(tests read it)."""


# -- the per-process caches ----------------------------------------------------------------------
def worker_bundle(path: str | os.PathLike, digest: str) -> Bundle:
    """The verified bundle ``digest`` in this process, loaded (checksums and all) on first use.

    Raises
    ------
    BundleError
        The path cannot be read on this worker, or holds another bundle than the driver's.
    """
    with _LOCK:
        bundle = _BUNDLES.get(digest)
        if bundle is not None:
            return bundle
        host = socket.gethostname()
        try:
            bundle = Bundle.load(path)
        except (BundleError, OSError) as exc:
            raise BundleError(
                f"bundle {os.fspath(path)} cannot be read on worker {host} ({first_line(exc)}); put it on "
                "storage every worker can read, or ship it with SparkContext.addFile"
            ) from None
        if bundle.digest != digest:
            raise BundleError(
                f"bundle {os.fspath(path)} on worker {host} is not the driver's bundle (digest "
                f"{bundle.digest[:12]} != {digest[:12]}); give every worker the same bundle"
            )
        _BUNDLES[digest] = bundle
        STATS["bundle_loads"] += 1
        return bundle


def share_bundle(bundle: Bundle) -> None:
    """Make the driver's verified ``bundle`` this process's copy: workers that are threads of the
    driver's process (Dask's default local cluster) then neither read nor verify it again."""
    with _LOCK:
        _BUNDLES.setdefault(bundle.digest, bundle)


def _cached(cache: dict, key: tuple, needs, build, stat: str | None = None):
    """``cache[key]``, built once per process as ``build(needs())``.

    ``needs()`` (the bundle, the recommender: cached themselves) runs outside the lock; ``build``
    runs under it after a second look, so the threads of one worker wait for one build instead
    of each doing it.
    """
    with _LOCK:
        found = cache.get(key)
    if found is not None:
        return found
    needed = needs()
    with _LOCK:
        found = cache.get(key)
        if found is None:
            with warnings.catch_warnings():  # the reasons land in .warnings -> the report
                warnings.simplefilter("ignore", RuntimeWarning)
                found = build(needed)
            cache[key] = found
            if stat is not None:
                STATS[stat] += 1
    return found


def _task_bundle(task) -> Bundle:
    return worker_bundle(task.bundle_path, task.digest)


def worker_fold(task: ScoreTask | RecommendTask, data: bytes | None = None) -> FoldIn | None:
    """The ``--history`` / ``--item-embeddings`` fold-in of ``task`` in this process (None without
    one), read once per process and token: from ``data`` (the bytes an engine broadcast) or the
    file ``task.history``.

    Raises
    ------
    EngineError
        The staged file cannot be read on this worker.
    """
    if not task.history_token:
        return None
    with _LOCK:
        found = _FOLDS.get(task.history_token)
    if found is not None:
        return found
    bundle = _task_bundle(task)
    if data is None and task.history is None:
        raise EngineError("--history/--item-embeddings: this worker was given neither the fold-in nor "
                          "its file")
    if data is None:
        try:
            with open(task.history, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise EngineError(
                f"--history/--item-embeddings: the fold-in {task.history} cannot be read on worker "
                f"{socket.gethostname()} ({exc.strerror}); the output must be on storage every worker "
                "can read"
            ) from None
    fold = read_fold(data, bundle)
    with _LOCK:
        found = _FOLDS.setdefault(task.history_token, fold)
        STATS["folds"] += found is fold
    return found


def _task_needs(task) -> tuple[Bundle, FoldIn | None]:
    return _task_bundle(task), worker_fold(task)


def worker_scorer(task: ScoreTask) -> Scorer:
    """A :class:`Scorer` for ``task`` sharing this process's one session (a fresh shallow copy).

    Its unknown-id guard is off (``max_unknown_share=1``): the driver applies it to the whole job.
    With ``--history``, it scores with the driver's fold-in (:func:`worker_fold`).
    """

    def build(needed: tuple[Bundle, FoldIn | None]) -> Scorer:
        bundle, fold = needed
        return Scorer(bundle, **task.scorer_options(), max_unknown_share=1.0, history=fold)

    mine = copy.copy(_cached(_SCORERS, task.scorer_key(), lambda: _task_needs(task), build, "scorers"))
    mine.reset_counts()
    return mine


def worker_recommender(task: RecommendTask) -> Recommender:
    """The :class:`Recommender` for ``task`` in this process (built once per process and setting;
    with ``--history``, with the driver's fold-in, :func:`worker_fold`)."""

    def build(needed: tuple[Bundle, FoldIn | None]) -> Recommender:
        bundle, fold = needed
        return Recommender(bundle, **task.recommender_options(), history=fold)

    return _cached(_RECOMMENDERS, task.recommender_key(), lambda: _task_needs(task), build, "recommenders")


def clear_caches() -> None:
    """Forget this process's bundles, scorers, recommenders, jobs and inputs (tests, and
    :func:`recmodels.engines.dask.local_client` when its in-process workers stop)."""
    with _LOCK:
        for cached in (*_SCORERS.values(), *_RECOMMENDERS.values()):
            cached.close()
        _BUNDLES.clear()
        _SCORERS.clear()
        _RECOMMENDERS.clear()
        _JOBS.clear()
        _SOURCES.clear()
        _FOLDS.clear()
        for key in STATS:
            STATS[key] = 0


# -- scoring -------------------------------------------------------------------------------------
def _conform(batch: pa.RecordBatch, schema: pa.Schema | None) -> pa.RecordBatch:
    if schema is None or batch.schema.equals(schema):
        return batch
    return batch.cast(schema)


def score_stream(
    batches: Iterable, task: ScoreTask, *, counts: dict | None = None, recut: bool = True
) -> Iterator[pa.RecordBatch]:
    """Score a partition: an iterator of Arrow batches (or pandas frames) -> scored Arrow batches.

    The one path of ``recmodels score`` (:meth:`Scorer.score_batches`), on the input re-cut into
    batches of the scorer's batch size (rows keep their order); the output has the kept
    columns, ``known`` (fallback policy) and ``score``, cast to ``task.schema`` when given.
    ``counts``, when given, receives the unknown-id counts of this partition. ``recut=False``:
    the batches are already those of a local run (:func:`score_input_part`); they are scored as
    they come.
    """
    scorer = worker_scorer(task)
    # engines hand over small batches (Spark: 10,000 rows): re-cut them to the scorer's batch size
    stream = (b for _, b in rebatch(numbered(batches), scorer.batch_size)) if recut else batches
    for out in scorer.score_batches(stream, keep=list(task.keep)):
        yield _conform(out, task.schema)
    if counts is not None:
        for key in COUNT_KEYS:
            counts[key] = counts.get(key, 0) + scorer.counts[key]


def score_frame_task(frame: pd.DataFrame, task: ScoreTask) -> pd.DataFrame:
    """Score one pandas partition (Dask): its kept columns plus ``known`` / ``score``, index kept."""
    scorer = worker_scorer(task)
    return scorer.score_frame(frame, keep=list(task.keep))


def _write_part(batches: Iterable[pa.RecordBatch], schema: pa.Schema, directory: str, part: int,
                fmt: str) -> tuple[str, int]:
    """Write one attempt at part ``part`` under its own temporary name (:func:`part_temp_name`);
    returns ``(name, rows)``. A failed attempt removes its file."""
    path = Path(directory) / part_temp_name(part, fmt, uuid.uuid4().hex)
    writer = BatchFile(path, fmt, schema, path)
    try:
        for batch in batches:
            writer.write(batch)
        writer.close()
    except BaseException:
        try:
            writer.close()
        finally:
            path.unlink(missing_ok=True)
        raise
    return path.name, writer.rows


def _score_part(batches: Iterable, task: ScoreTask, directory: str, part: int, fmt: str,
                recut: bool = True) -> dict:
    counts: dict = {}
    rows_read = 0

    def counted():
        nonlocal rows_read
        for item in batches:
            for b in as_batches(item):
                rows_read += b.num_rows
                yield b

    scored = score_stream(counted(), task, counts=counts, recut=recut)
    name, rows = _write_part(scored, task.schema, directory, part, fmt)
    scorer = worker_scorer(task)
    meta = {
        "part": int(part),
        "tmp": name,
        "rows_read": rows_read,
        "rows_written": rows,
        "provider": scorer.provider,
        "note": "; ".join(scorer.warnings),
        "error": "",
    }
    meta.update({key: int(counts.get(key, 0)) for key in COUNT_KEYS})
    return meta


def score_to_part(
    batches: Iterable, task: ScoreTask, directory: str, part: int, fmt: str = "parquet"
) -> dict:
    """Score a partition into a temporary part file in ``directory``; return its record.

    ``batches``: Arrow batches, tables or pandas frames (pyarrow-backed columns in several chunks
    too). The file's name is unique to this attempt (``.part-0000k.<fmt>.<token>.tmp``): a retried
    or speculative attempt writes its own, and the driver renames only the file whose record the
    engine delivered. Returns a :data:`~recmodels.engines.contract.SCORE_RECORD` (its ``error``
    set, and nothing written, when the input or options were bad: the task returns it instead of
    raising, so the engine neither logs a traceback nor retries what would fail again).
    """
    try:
        return _score_part(batches, task, directory, part, fmt)
    except RecmodelsError as exc:
        return error_record(SCORE_RECORD, part, exc)


def worker_source(input: str, text_columns: tuple, token: tuple = ()) -> TableSource:
    """The input as :func:`recmodels.tables.open_table` opens it, once per process and ``token``
    (:func:`~recmodels.engines.contract.files_token` of the input, from the driver): the file
    list and Parquet footers are read once, not per task."""
    key = (os.fspath(input), tuple(text_columns), tuple(token))
    with _LOCK:
        source = _SOURCES.get(key)
    if source is None:
        source = open_table(input, text_columns=text_columns, what="input")
        with _LOCK:
            _SOURCES[key] = source
    return source


def score_input_part(
    task: ScoreTask, input: str, part: int, part_rows: int, directory: str, fmt: str
) -> dict:
    """Score part ``part`` of a Parquet input: input rows ``[part * part_rows, (part + 1) * part_rows)``.

    The worker reads its rows itself (:mod:`recmodels.tables`, skipping the row groups before
    them), so the parts are exactly those of a local ``recmodels score`` run, in input order.
    The batches are the local run's too (cut at multiples of the batch size counted from the
    input's first row, and at part boundaries): onnxruntime's scores depend in the last bit on
    which pairs share a batch, so only the same batches give the same bytes. They stream through
    the local pipeline (:meth:`Scorer.mapped`: reading, id mapping and inference in threads) and
    are written one by one: a task holds a few batches, never its whole part.
    Returns a :data:`~recmodels.engines.contract.SCORE_INPUT_RECORD`: that of
    :func:`score_to_part` plus ``input_start``.
    """
    try:
        return _score_input_part(task, input, part, part_rows, directory, fmt)
    except RecmodelsError as exc:
        return error_record(SCORE_INPUT_RECORD, part, exc)


def _score_input_part(task: ScoreTask, input: str, part: int, part_rows: int, directory: str,
                      fmt: str) -> dict:
    scorer = worker_scorer(task)
    source = worker_source(input, (task.user_col, task.item_col), task.input_token)
    wanted = set(task.keep) | {task.user_col, task.item_col}
    columns = [c for c in source.schema.names if c in wanted]
    lo, hi = part * part_rows, (part + 1) * part_rows

    def rows():
        raw = source.batches(columns, scorer.batch_size, start_row=lo)
        for start, batch in rebatch(raw, scorer.batch_size, part_rows):
            if start >= lo:
                yield batch
            if start + batch.num_rows >= hi:  # the part's last batch: read nothing of the next part
                break

    record = _score_part(rows(), task, directory, part, fmt, recut=False)
    record["input_start"] = lo
    return record


# -- recommending --------------------------------------------------------------------------------
def recommend_users(users, seen, task: RecommendTask) -> pa.Table:
    """Top-``k`` for one partition of users: ``user_id, rank, item_id, score`` (Arrow table).

    ``users`` holds this partition's user ids (array-like, each once); ``seen`` the (user, item)
    pairs to exclude for them (a DataFrame or Arrow table with the id columns) or None. Runs
    :meth:`Recommender.recommend_table`, the local path.
    """
    rec = worker_recommender(task)
    ids = users if isinstance(users, pa.Array | pa.ChunkedArray) else pa.array(users)
    if len(ids) == 0:
        return rec.output_schema().empty_table()
    if seen is not None and len(seen) == 0:
        seen = None
    return rec.recommend_table(
        users=ids,
        k=task.k,
        items=task.items,
        exclude_seen=seen,
        user_col=task.user_col,
        item_col=task.item_col,
        max_unknown_share=1.0,
    )


def _worker_job(task: RecommendTask) -> RecommendJob:
    """The prepared job of ``task`` (its files read once per process and version of the files:
    ``astuple(task)`` holds ``inputs_token``, their sizes and times as the driver listed them)."""

    def build(rec: Recommender) -> RecommendJob:
        return rec.prepare(
            users=task.users,
            k=task.k,
            items=task.items,
            exclude_seen=task.exclude_seen,
            user_col=task.user_col,
            item_col=task.item_col,
            max_unknown_share=task.max_unknown_share,
        )

    return _cached(_JOBS, astuple(task), lambda: worker_recommender(task), build)


def recommend_part(
    task: RecommendTask, part: int, lo: int, hi: int, directory: str, fmt: str = "parquet"
) -> dict:
    """Rank user-list positions ``[lo, hi)`` of ``task``'s job into a temporary part file.

    Part ``k`` holds the same users as part ``k`` of a local ``recmodels recommend`` run. Returns
    a :data:`~recmodels.engines.contract.RECOMMEND_RECORD` (``part``, ``tmp``, the counts of
    :data:`~recmodels.engines.contract.RECOMMEND_COUNTS`, ``provider``, ``note``, ``error``), as
    :func:`score_to_part` does.
    """
    try:
        return _recommend_part(task, part, lo, hi, directory, fmt)
    except RecmodelsError as exc:
        return error_record(RECOMMEND_RECORD, part, exc)


def _recommend_part(task: RecommendTask, part: int, lo: int, hi: int, directory: str, fmt: str) -> dict:
    rec = worker_recommender(task)
    job = _worker_job(task)
    counts = {"users_written": 0, "users_short": 0}

    def ranked(span: tuple[int, int]):
        report = copy.copy(job.report)
        for name in (*counts, "rows_written", "users_processed"):
            setattr(report, name, 0)
        sub = replace(job, user_index=job.user_index[span[0] : span[1]], report=report)
        return rec.recommend_table(job=sub), report

    def batches():
        # the local run's chunks (chunk_users from the part's start), rec.threads of them at a time,
        # the next group ranked while this one is written, as the local run overlaps them
        step = rec.chunk_users * rec.threads
        spans = ((a, min(a + step, hi)) for a in range(lo, hi, step))
        for table, report in pipelined(spans, [ranked], name="recmodels-recommend"):
            for name in counts:
                counts[name] += int(getattr(report, name))
            yield from table.to_batches()

    name, rows = _write_part(batches(), rec.output_schema(), directory, part, fmt)
    known = int((job.user_index[lo:hi] >= 0).sum())
    return {
        "part": int(part),
        "tmp": name,
        "users_processed": int(hi - lo),
        "users_written": counts["users_written"],
        "users_short": counts["users_short"],
        "rows_written": rows,
        "pairs_scored": known * int(job.candidates.size),
        "provider": rec.provider,
        "note": "; ".join(rec.warnings),
        "error": "",
    }
