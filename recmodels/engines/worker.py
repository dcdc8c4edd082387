"""The engine-agnostic worker side of distributed scoring and recommending (torch-free).

Spark and Dask (``recmodels.engines.spark``, ``recmodels.engines.dask``) only move data; what runs on a worker
is here, and it is the local path: :class:`~recmodels.scoring.pairs.scorer.Scorer` (same id mapping,
unknown-id policy, device choice and output schema as ``recmodels score``) and
:class:`~recmodels.scoring.recommendation.recommender.Recommender`.

A task carries only picklable settings (:class:`ScoreTask`, :class:`RecommendTask`: a bundle
path, its digest and options), never a session. On a worker the bundle is loaded and its
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
from dataclasses import astuple, dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ..bundle import Bundle
from ..errors import BundleError, DataError, first_line
from ..scoring.output.stream import as_batches, numbered, rebatch
from ..scoring.output.writers import _BatchFile
from ..scoring.pairs.scorer import Scorer
from ..scoring.recommendation.job import RecommendJob
from ..scoring.recommendation.recommender import Recommender
from ..scoring.unknown_ids import COUNT_KEYS
from ..tables import TableSource, expand_input, open_table

__all__ = [
    "RECOMMEND_RECORD",
    "SCORE_INPUT_RECORD",
    "SCORE_RECORD",
    "RecommendTask",
    "ScoreTask",
    "files_token",
    "pandas_dtypes",
    "recommend_part",
    "recommend_users",
    "score_frame_task",
    "score_input_part",
    "score_stream",
    "score_to_part",
    "worker_bundle",
    "worker_recommender",
    "worker_scorer",
]


def _record(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, kind) for name, kind in fields])


SCORE_RECORD = _record(
    ("part", pa.int64()),
    ("tmp", pa.string()),
    ("rows_read", pa.int64()),
    ("rows_written", pa.int64()),
    *((key, pa.int64()) for key in COUNT_KEYS),
    ("provider", pa.string()),
    ("note", pa.string()),
)
"""The record :func:`score_to_part` returns for a part (one row back to the driver)."""
SCORE_INPUT_RECORD = SCORE_RECORD.append(pa.field("input_start", pa.int64()))
"""The record of :func:`score_input_part`: :data:`SCORE_RECORD` and the part's first input row."""
RECOMMEND_RECORD = _record(
    ("part", pa.int64()),
    ("tmp", pa.string()),
    *((key, pa.int64()) for key in ("users_processed", "users_written", "users_short", "rows_written",
                                    "pairs_scored")),
    ("provider", pa.string()),
    ("note", pa.string()),
)
"""The record :func:`recommend_part` returns for a part of users."""


def pandas_dtypes(record: pa.Schema) -> dict[str, str]:
    """A record schema as pandas dtypes (Dask's ``meta``).

    Parameters
    ----------
    record : pyarrow.Schema
        One of the record schemas above: int64 and string fields only.

    Returns
    -------
    dict of str to str
        ``"int64"`` or ``"object"`` (strings) by field name, in the schema's order.
    """
    out = {}
    for f in record:
        if pa.types.is_int64(f.type):
            out[f.name] = "int64"
        elif pa.types.is_string(f.type):
            out[f.name] = "object"
        else:
            raise TypeError(f"record field {f.name}: {f.type} has no pandas dtype here")
    return out


_LOCK = threading.Lock()
_BUNDLES: dict[str, Bundle] = {}
_SCORERS: dict[tuple, Scorer] = {}
_RECOMMENDERS: dict[tuple, Recommender] = {}
_JOBS: dict[tuple, RecommendJob] = {}
_SOURCES: dict[tuple, TableSource] = {}
STATS = {"bundle_loads": 0, "scorers": 0, "recommenders": 0}
"""How often this process loaded a bundle / built a scorer or recommender (tests read it)."""


@dataclass(frozen=True)
class ScoreTask:
    """What a worker needs to score a partition: picklable settings only.

    Parameters
    ----------
    bundle_path : str
        The bundle directory as the workers see it (shared storage, or a ``SparkFiles`` path).
    digest : str
        The bundle's digest as the driver read it; a worker seeing another bundle fails.
    device, user_col, item_col, unknown, clip, batch_size, threads
        :class:`~recmodels.scoring.pairs.scorer.Scorer` options.
    keep : tuple of str
        Input columns passed through, in order (resolved on the driver).
    schema : pyarrow.Schema, optional
        The output schema the driver announced; output batches are cast to it.
    """

    bundle_path: str
    digest: str
    device: str = "auto"
    user_col: str | None = None
    item_col: str | None = None
    unknown: str = "fallback"
    clip: bool = False
    batch_size: int | None = None
    threads: int | None = 1
    keep: tuple[str, ...] = ()
    schema: pa.Schema | None = field(default=None, compare=False)
    input_token: tuple = ()

    def scorer_key(self) -> tuple:
        return (
            self.digest,
            self.device,
            self.user_col,
            self.item_col,
            self.unknown,
            self.clip,
            self.batch_size,
            self.threads,
        )


@dataclass(frozen=True)
class RecommendTask:
    """What a worker needs to rank a partition of users (picklable settings only).

    ``users``, ``items`` and ``exclude_seen`` are paths every worker can read (the CLI's files)
    or None; :func:`recommend_users` takes the users and seen pairs as data instead.
    """

    bundle_path: str
    digest: str
    k: int = 10
    device: str = "auto"
    threads: int | None = 1
    candidates: int | None = None
    block_users: int | None = None
    tile_items: int | None = None
    user_col: str | None = None
    item_col: str | None = None
    users: str | None = None
    items: str | None = None
    exclude_seen: str | None = None
    max_unknown_share: float = 1.0
    inputs_token: tuple = ()

    def recommender_key(self) -> tuple:
        return (self.digest, self.device, self.threads, self.candidates, self.block_users, self.tile_items)


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


def worker_scorer(task: ScoreTask) -> Scorer:
    """A :class:`Scorer` for ``task`` sharing this process's one session (a fresh shallow copy)."""

    def build(bundle: Bundle) -> Scorer:
        return Scorer(
            bundle,
            device=task.device,
            user_col=task.user_col,
            item_col=task.item_col,
            unknown=task.unknown,
            clip=task.clip,
            batch_size=task.batch_size,
            threads=task.threads,
            max_unknown_share=1.0,  # the driver applies the guard to the whole job
        )

    mine = copy.copy(_cached(_SCORERS, task.scorer_key(), lambda: _task_bundle(task), build, "scorers"))
    mine.reset_counts()
    return mine


def worker_recommender(task: RecommendTask) -> Recommender:
    """The :class:`Recommender` for ``task`` in this process (built once per process and setting)."""

    def build(bundle: Bundle) -> Recommender:
        return Recommender(
            bundle,
            device=task.device,
            threads=task.threads,
            candidates=task.candidates,
            block_users=task.block_users,
            tile_items=task.tile_items,
        )

    return _cached(_RECOMMENDERS, task.recommender_key(), lambda: _task_bundle(task), build, "recommenders")


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
        for key in STATS:
            STATS[key] = 0


# -- scoring -------------------------------------------------------------------------------------
def _conform(batch: pa.RecordBatch, schema: pa.Schema | None) -> pa.RecordBatch:
    if schema is None or batch.schema.equals(schema):
        return batch
    return batch.cast(schema)


def score_stream(
    batches: Iterable, task: ScoreTask, *, counts: dict | None = None
) -> Iterator[pa.RecordBatch]:
    """Score a partition: an iterator of Arrow batches (or pandas frames) -> scored Arrow batches.

    The one path of ``recmodels score`` (:meth:`Scorer.score_batches`), on the input re-cut into
    batches of the scorer's batch size (rows keep their order); the output has the kept
    columns, ``known`` (fallback policy) and ``score``, cast to ``task.schema`` when given.
    ``counts``, when given, receives the unknown-id counts of this partition.
    """
    scorer = worker_scorer(task)
    # engines hand over small batches (Spark: 10,000 rows): re-cut them to the scorer's batch size
    stream = (b for _, b in rebatch(numbered(batches), scorer.batch_size))
    for out in scorer.score_batches(stream, keep=list(task.keep)):
        yield _conform(out, task.schema)
    if counts is not None:
        for key in COUNT_KEYS:
            counts[key] = counts.get(key, 0) + scorer.counts[key]


def score_frame_task(frame: pd.DataFrame, task: ScoreTask) -> pd.DataFrame:
    """Score one pandas partition (Dask): its kept columns plus ``known`` / ``score``, index kept."""
    scorer = worker_scorer(task)
    return scorer.score_frame(frame, keep=list(task.keep))


def _part_name(part: int, fmt: str, token: str) -> str:
    return f".part-{part:05d}.{fmt}.{token}.tmp"


def score_to_part(
    batches: Iterable, task: ScoreTask, directory: str, part: int, fmt: str = "parquet"
) -> dict:
    """Score a partition into a temporary part file in ``directory``; return what was written.

    The file's name is unique to this attempt (``.part-0000k.<fmt>.<token>.tmp``): a retried or
    speculative attempt writes its own, and the driver renames only the file whose record the
    engine delivered. Returns ``{"part", "tmp", "rows_read", "rows_written", <unknown counts>}``.
    """
    token = uuid.uuid4().hex
    path = Path(directory) / _part_name(part, fmt, token)
    counts: dict = {}
    rows_read = 0

    def counted():
        nonlocal rows_read
        for item in batches:
            for b in as_batches(item):
                rows_read += b.num_rows
                yield b

    writer = _BatchFile(path, fmt, task.schema, path)
    try:
        for out in score_stream(counted(), task, counts=counts):
            writer.write(out)
        writer.close()
    except BaseException:
        try:
            writer.close()
        finally:
            path.unlink(missing_ok=True)
        raise
    meta = {
        "part": int(part),
        "tmp": path.name,
        "rows_read": rows_read,
        "rows_written": writer.rows,
        "provider": worker_scorer(task).provider,
        "note": "; ".join(worker_scorer(task).warnings),
    }
    meta.update({key: int(counts.get(key, 0)) for key in COUNT_KEYS})
    return meta


def files_token(path, files: list[str] | None = None) -> tuple:
    """What the per-process caches key a file, directory or glob by: its data files' paths, sizes
    and modification times, so an input that changed between two jobs of a long-lived worker (or of
    the in-process Dask workers of one Python session) is read again, never served stale.

    The driver lists the files once per job and ships the token in the task
    (``ScoreTask.input_token``, ``RecommendTask.inputs_token``), so workers never list them.
    ``files``: the path's data files when the caller has listed them already (a
    :class:`~recmodels.tables.TableSource`'s ``files``). ``None`` gives ``()``; a path that cannot
    be listed gives its text (the reader's own error follows).
    """
    if path is None:
        return ()
    try:
        if files is None:
            _, files = expand_input(path)
        token = []
        for f in files:
            st = os.stat(f)
            token.append((f, st.st_size, st.st_mtime_ns))
        return tuple(token)
    except (DataError, OSError):
        return (os.fspath(path),)


def worker_source(input: str, text_columns: tuple, token: tuple = ()) -> TableSource:
    """The input as :func:`recmodels.tables.open_table` opens it, once per process and ``token``
    (:func:`files_token` of the input, from the driver): the file list and Parquet footers are
    read once, not per task."""
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
    Returns the record of :func:`score_to_part` plus ``input_start``.
    """
    scorer = worker_scorer(task)
    source = worker_source(input, (task.user_col, task.item_col), task.input_token)
    wanted = set(task.keep) | {task.user_col, task.item_col}
    columns = [c for c in source.schema.names if c in wanted]
    lo, hi = part * part_rows, (part + 1) * part_rows

    def rows():
        raw = source.batches(columns, scorer.batch_size, start_row=lo)
        for start, batch in rebatch(raw, scorer.batch_size, part_rows):
            if start >= hi:
                break
            if start >= lo:
                yield batch

    record = score_to_part(rows(), task, directory, part, fmt)
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
    ``{"part", "tmp", "users_processed", "users_written", "users_short", "rows_written",
    "pairs_scored"}``.
    """
    rec = worker_recommender(task)
    job = _worker_job(task)
    sub = RecommendJob(
        job.user_index[lo:hi], job.candidates, job.seen, job.k, copy.copy(job.report), job.digest
    )
    for name in ("users_written", "users_short", "rows_written", "users_processed"):
        setattr(sub.report, name, 0)
    table = rec.recommend_table(job=sub)
    token = uuid.uuid4().hex
    path = Path(directory) / _part_name(part, fmt, token)
    writer = _BatchFile(path, fmt, rec.output_schema(), path)
    try:
        for batch in table.to_batches():
            writer.write(batch)
        writer.close()
    except BaseException:
        try:
            writer.close()
        finally:
            path.unlink(missing_ok=True)
        raise
    known = int((sub.user_index >= 0).sum())
    rep = sub.report
    return {
        "part": int(part),
        "tmp": path.name,
        "users_processed": int(hi - lo),
        "users_written": int(rep.users_written),
        "users_short": int(rep.users_short),
        "rows_written": int(table.num_rows),
        "pairs_scored": known * int(job.candidates.size),
        "provider": rec.provider,
        "note": "; ".join(rec.warnings),
    }
