"""The one driver of distributed scoring and recommending, for every engine (torch-free).

The driver checks everything it can before any task runs (the bundle, the id columns and their
types, the options), connects to the cluster, and only then creates the output; it builds the
picklable task (:mod:`recmodels.engines.contract`), hands the engine's map step the work, and
turns the workers' part records into the output (:class:`~recmodels.engines.staging.StagedOutput`)
with the same :class:`~recmodels.scoring.pairs.report.ScoreReport` /
:class:`~recmodels.scoring.recommendation.report.RecommendReport` as a local run.

An engine gives the driver two things (:class:`Engine`): ``connect()``, a context manager
yielding its cluster (its address checked, one line when it does not answer), and
``map_items(cluster, task, items, fn, record)``, which runs ``fn(task, item)`` as one task per
item and returns the records. :func:`score_to` takes the engine's frame map instead.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Protocol

import pyarrow as pa

from ..errors import ConfigError, DataError
from ..fileio import write_json
from ..scoring.checks import positive_int
from ..scoring.defaults import DEFAULT_BATCH_SIZE, DEFAULT_PART_ROWS, DEFAULT_PART_USERS
from ..scoring.history import FoldIn
from ..scoring.pairs.columns import bundle_id_types, check_score_options, keep_columns, scored_schema
from ..scoring.pairs.report import ScoreReport
from ..scoring.pairs.scorer import Scorer
from ..scoring.recommendation.job import check_k_fits, check_top_k
from ..scoring.recommendation.recommender import Recommender, recommend_schema
from ..scoring.runtime.session import load_bundle
from ..scoring.unknown_ids import COUNT_KEYS, DEFAULT_MAX_UNKNOWN_SHARE, likely_cause, unknown_share_error
from ..tables import open_table
from .connect import check_engine_options
from .contract import (
    HISTORY_OPTIONS,
    RECOMMEND_COUNTS,
    RECOMMEND_RECORD,
    SCORE_INPUT_RECORD,
    RecommendTask,
    ScoreTask,
    files_token,
    recommend_settings,
    score_settings,
)
from .staging import StagedOutput, worker_notes
from .worker import recommend_part, score_input_part

__all__ = [
    "ENGINE_API",
    "Engine",
    "check_candidate_k",
    "check_engine_options",
    "pop_history",
    "recommend_fold",
    "run_recommend_job",
    "run_score_parts",
    "recommend_task",
    "score_file",
    "score_fold",
    "score_report",
    "score_task",
    "score_to",
]


ENGINE_API = ("read_input", "recommend", "recommend_file", "score", "score_file", "score_to")
"""What every engine module offers (docs/distributed.md), besides its own cluster helpers."""


class Engine(Protocol):
    """What an engine gives the driver: its cluster, one task per item on it, and its own frames."""

    name: str

    def connect(self, bundle=None) -> AbstractContextManager:
        """The cluster (a Dask client, a SparkSession), its address checked first; workers that are
        threads of this process are given the driver's verified ``bundle``
        (:func:`~recmodels.engines.worker.share_bundle`)."""

    def map_items(self, cluster, task, items: list, fn: Callable, record: pa.Schema) -> list[dict]:
        """``fn(task, item)`` as one task per item; the records (``record`` schema), any order."""

    def read_csv(self, cluster, input, text_columns: tuple):
        """A CSV input as the engine's frame (the id columns as text)."""

    def score_frame(self, cluster, frame, bundle, output, **options) -> ScoreReport:
        """The engine's ``score_to``: its frame scored into ``output``, one part per partition."""


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


def score_task(bundle, input_schema: pa.Schema, where: str, *, keep=None, bundle_path: str | None = None,
               max_unknown_share: float | None = None, **options) -> tuple[ScoreTask, float]:
    """Check a distributed frame's schema and the options against the bundle; the task for its
    partitions (output schema included, learned without an onnxruntime session) and the checked
    ``max_unknown_share``.

    Parameters
    ----------
    bundle : path-like or Bundle
    input_schema : pyarrow.Schema
        The engine's frame (or the input file) as Arrow sees it.
    where : str
        The input's name in messages.
    keep : list of str or "a,b", optional
        Columns to pass through (default: all).
    bundle_path : str, optional
        The bundle as the workers see it (default: its path here).
    max_unknown_share : float, optional
        The guard the driver applies to the whole job (default 0.5; the workers' is off).
    **options
        The :class:`~recmodels.engines.contract.ScoreTask`'s scorer options: ``device``,
        ``user_col``, ``item_col``, ``unknown``, ``clip``, ``batch_size``, ``threads``.

    Raises
    ------
    DataError
        A missing id column, or an id column of a type ids cannot have.
    ConfigError
        Bad options (``keep``, ``unknown``, ...).
    """
    bundle = load_bundle(bundle)
    unknown = options.get("unknown", "fallback")
    user_col, item_col, share = check_score_options(
        bundle, user_col=options.pop("user_col", None), item_col=options.pop("item_col", None),
        unknown=unknown, batch_size=options.get("batch_size"),
        max_unknown_share=DEFAULT_MAX_UNKNOWN_SHARE if max_unknown_share is None else max_unknown_share)
    keep = keep_columns(list(input_schema.names), keep, where, user_col=user_col, item_col=item_col,
                        unknown=unknown)
    id_columns = (("user", user_col, bundle.user_encoder), ("item", item_col, bundle.item_encoder))
    for role, col, encoder in id_columns:
        typ = input_schema.field(col).type
        if not _id_type_ok(typ):
            want = "integers" if encoder.kind_ == "int64" else "text"
            raise DataError(
                f"{where}: {role} id column {col!r} is {typ}, which cannot hold ids; the bundle's "
                f"{role} ids are {want} (convert the column, or pass --{role}-col)"
            )
    schema = scored_schema(input_schema, keep, unknown, id_types=bundle_id_types(bundle, user_col, item_col))
    options["clip"] = bool(options.get("clip", False))
    task = ScoreTask(bundle_path=os.fspath(bundle_path or bundle.path), digest=bundle.digest,
                     user_col=user_col, item_col=item_col, keep=tuple(keep), schema=schema, **options)
    return task, share


def pop_history(options: dict) -> dict:
    """The ``--history`` and ``--item-embeddings`` keywords
    (:data:`~recmodels.engines.contract.HISTORY_OPTIONS`), taken out of an entry point's ``options``;
    those that fold nothing in (None) are left out."""
    return {key: value for key in HISTORY_OPTIONS if (value := options.pop(key, None)) is not None}


def score_fold(bundle, task: ScoreTask, history=None, **history_options) -> tuple[ScoreTask, FoldIn | None]:
    """Fold ``history`` (and ``item_embeddings``) in once, on the driver, as the local ``Scorer``
    with ``task``'s options does; ``task`` with the fold-in's token, and the fold-in (None without
    either).

    ``history_options``: ``rating_col``, ``history_update_known``, ``history_min_ratings``,
    ``item_embeddings``.

    Raises
    ------
    DataError, BundleError, ConfigError
        A bad history or embeddings table, a bundle exported before ``--history``, or
        ``item_embeddings`` on a bundle that is not hybrid (one line, before any task).
    """
    if history is None and history_options.get("item_embeddings") is None:
        return task, None
    with warnings.catch_warnings():  # the workers' scorers report the provider's notes
        warnings.simplefilter("ignore", RuntimeWarning)
        scorer = Scorer(bundle, **task.scorer_options(), max_unknown_share=1.0, history=history,
                        **history_options)
    scorer.close()
    return replace(task, history_token=scorer.fold.token), scorer.fold


def score_report(
    records: list[dict],
    bundle,
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
        cause = likely_cause(bundle, task.user_col, task.item_col, types)
        raise unknown_share_error(
            where, dict(counts, unknown_rows=unknown), rows + rows_resumed, limit, cause
        )
    rep = ScoreReport(
        rows_read=rows,
        rows_written=sum(int(r["rows_written"]) for r in records),
        unknown_policy=task.unknown,
        max_unknown_share=limit,
        provider=",".join(sorted({r.get("provider", "cpu") for r in records})),
        batch_size=task.batch_size or DEFAULT_BATCH_SIZE,
        parts_written=len(records),
        parts_resumed=len(resumed),
        rows_resumed=rows_resumed,
        warnings=worker_notes(records),
        **fields,
    )
    for key, value in counts.items():
        setattr(rep, key, value)
    return rep


# -- the job around the engine's tasks -----------------------------------------------------------
def _finish(rep, t0: float, input, output, staged: StagedOutput, report) -> None:
    rep.input, rep.output, rep.output_mode, rep.format = (
        os.fspath(input), os.fspath(output), staged.mode, staged.fmt)
    rep.seconds = time.perf_counter() - t0
    rep.rows_per_s = rep.rows_read / rep.seconds if rep.seconds > 0 else 0.0
    if report is not None:
        write_json(report, rep.to_dict())


def _score_job(b, schema: pa.Schema, where: str, options: dict) -> tuple[ScoreTask, float, FoldIn | None]:
    """The checked task of a scoring job (``options``: :func:`score_task`'s and ``--history``'s),
    its unknown-id limit and its fold-in; everything is checked before any task runs."""
    folding = pop_history(options)
    task, limit = score_task(b, schema, where, **options)
    task, fold = score_fold(b, task, **folding)  # a bad history: one line before any task
    return task, limit, fold


def _run_staged(staged: StagedOutput, b, task: ScoreTask, fold, where: str, limit: float,
                tasks: Callable[[ScoreTask], list[dict]]) -> ScoreReport:
    """``tasks(task)`` (the task reading the staged fold-in), the report and the guard over the
    whole job, then the commit (:meth:`StagedOutput.run`)."""
    rep, _ = staged.run(
        lambda: tasks(staged.with_history(task, fold)),
        lambda records: score_report(records, b, task, where, limit, staged.complete,
                                     history=None if fold is None else fold.stats),
        keep_complete=staged.resume,
    )
    return rep


def score_to(bundle, schema: pa.Schema, output, write: Callable[[ScoreTask, str, str], list[dict]], *,
             engine: str, where: str, format=None, overwrite=False, report=None, **options) -> ScoreReport:
    """Score an engine's frame (``schema``) into ``output``: parts + ``_SUCCESS``, or one file.

    ``write(task, directory, fmt)`` is the engine's map step: each partition runs
    :func:`~recmodels.engines.worker.score_to_part` into ``directory``; it returns the records.
    The driver renames the parts the engine delivered, applies the unknown-id guard
    (``max_unknown_share``, default 0.5) to the whole job and writes ``_SUCCESS``. Nothing is
    left behind when it fails. ``options``: :func:`score_task`'s (``keep``, ``bundle_path``,
    ``max_unknown_share``, the scorer options) and ``--history``'s.
    """
    t0 = time.perf_counter()
    b = load_bundle(bundle)
    task, limit, fold = _score_job(b, schema, where, options)
    staged = StagedOutput(output, format, task.schema, overwrite=overwrite, command="score",
                          job=score_settings(task, where, engine=engine))
    rep = _run_staged(staged, b, task, fold, where, limit,
                      lambda t: write(t, os.fspath(staged.directory), staged.part_fmt))
    _finish(rep, t0, where, output, staged, report)
    return rep


def run_score_parts(bundle, input, output, engine: Engine, *, format=None, part_rows=None, resume=False,
                    overwrite=False, report=None, **options) -> ScoreReport | None:
    """``recmodels score --engine ...`` on a Parquet input: part ``k`` (input rows ``[k * part_rows,
    (k + 1) * part_rows)``) is one task that reads its own rows, so the output is that of a local run
    (parts, sidecars, ``_scoring.json``: ``--resume`` works, with either engine or locally).
    ``options``: as for :func:`score_to`.

    Returns None for a CSV input (which the engine reads itself, one part per partition: see
    :func:`score_to`).
    """
    t0 = time.perf_counter()
    b = load_bundle(bundle)
    user_col = options["user_col"] = options.get("user_col") or b.user_column
    item_col = options["item_col"] = options.get("item_col") or b.item_column
    source = open_table(input, text_columns=(user_col, item_col), what="input")
    if source.kind != "parquet":
        return None
    if source.total_rows == 0:
        raise DataError(f"{source.path}: input has no rows")
    part_rows = positive_int("--part-rows", part_rows or None, DEFAULT_PART_ROWS)
    task, limit, fold = _score_job(b, source.schema, source.path, options)
    # the workers' cached view of the input is keyed by its files' sizes and times, listed here once
    task = replace(task, input_token=files_token(input, source.files))
    path = os.path.abspath(os.fspath(input))
    with engine.connect(b) as cluster:  # a cluster that does not answer: one line, nothing written
        staged = StagedOutput(output, format, task.schema, overwrite=overwrite, command="score",
                              part_rows=part_rows, resume=resume,
                              job=score_settings(task, path, input_rows=source.total_rows))
        n_parts = -(-source.total_rows // part_rows)
        parts = [k for k in range(n_parts) if k not in staged.complete]
        directory, fmt = os.fspath(staged.directory), staged.part_fmt

        def work(t: ScoreTask, k: int) -> dict:
            return score_input_part(t, path, k, part_rows, directory, fmt)

        def tasks(t: ScoreTask) -> list[dict]:
            return engine.map_items(cluster, t, parts, work, SCORE_INPUT_RECORD) if parts else []

        rep = _run_staged(staged, b, task, fold, source.path, limit, tasks)
    _finish(rep, t0, input, output, staged, report)
    return rep


def score_file(bundle, input, output, engine: Engine, *, resume=False, part_rows=None,
               **options) -> ScoreReport:
    """``recmodels score --engine ...``: a Parquet input in the parts of a local run
    (:func:`run_score_parts`); a CSV input read by the engine and scored one part per partition
    (``engine.score_frame``, i.e. :func:`score_to`), where ``--resume`` and ``--part-rows`` are
    refused."""
    rep = run_score_parts(bundle, input, output, engine, resume=resume, part_rows=part_rows, **options)
    if rep is not None:
        return rep
    check_engine_options(engine.name, resume=resume, part_rows=part_rows)
    b = load_bundle(bundle)
    user_col = options.pop("user_col", None) or b.user_column
    item_col = options.pop("item_col", None) or b.item_column
    with engine.connect(b) as cluster:
        frame = engine.read_csv(cluster, input, (user_col, item_col))
        return engine.score_frame(cluster, frame, b, output, where=os.fspath(input), user_col=user_col,
                                  item_col=item_col, **options)


# -- recommending ------------------------------------------------------------------------------------
def check_candidate_k(k, bundle) -> int:
    """``k`` positive and not above the bundle's items, as ``recmodels recommend`` checks it."""
    k = check_top_k(k)
    check_k_fits(k, len(bundle.item_encoder))
    return k


def recommend_task(bundle, k, users_columns, seen_columns=None, *, bundle_path=None, user_col=None,
                   item_col=None, device="auto", threads=1, candidates=None) -> RecommendTask:
    """Check an engine's users (and seen pairs) frame by its columns and build the task that ranks
    its partitions (the Python API's ``recommend``).

    Raises
    ------
    DataError
        A missing id column.
    ConfigError
        ``k`` not positive or above the bundle's items.
    """
    user_col, item_col = user_col or bundle.user_column, item_col or bundle.item_column

    def shown(columns) -> str:
        return ", ".join(map(str, columns))

    if user_col not in users_columns:
        raise DataError(f"users: no user id column {user_col!r} (columns: {shown(users_columns)})")
    for col in (user_col, item_col) if seen_columns is not None else ():
        if col not in seen_columns:
            raise DataError(f"exclude-seen: no id column {col!r} (columns: {shown(seen_columns)})")
    return RecommendTask(
        bundle_path=os.fspath(bundle_path or bundle.path),
        digest=bundle.digest,
        k=check_candidate_k(k, bundle),
        device=device,
        threads=threads,
        candidates=candidates,
        user_col=user_col,
        item_col=item_col,
    )


def recommend_fold(bundle, task: RecommendTask, history=None,
                   **history_options) -> tuple[RecommendTask, FoldIn | None]:
    """Fold ``history`` (and ``item_embeddings``) in once, on the driver, as the local
    ``Recommender`` with ``task``'s options does (the Python API's ``recommend``); ``task`` with its
    token, and the fold-in."""
    if history is None and history_options.get("item_embeddings") is None:
        return task, None
    rec = Recommender(bundle, device=task.device, threads=1, candidates=task.candidates, history=history,
                      **history_options)
    try:
        job = rec.prepare(k=task.k, user_col=task.user_col, item_col=task.item_col)
    finally:
        rec.close()
    return replace(task, history_token=job.folded.fold.token), job.folded.fold


def _abs(path):
    return None if path is None else os.path.abspath(os.fspath(path))


def run_recommend_job(bundle, output, engine: Engine, *, k: int = 10, users=None, items=None,
                      exclude_seen=None, user_col=None, item_col=None, max_unknown_share=None, format=None,
                      part_users=None, overwrite=False, report=None, bundle_path=None, **options):
    """``recmodels recommend --engine ...``: the inputs are read and checked on the driver (the
    same report counts as a local run), then each part of ``part_users`` list positions is one
    task (:func:`~recmodels.engines.worker.recommend_part`). Part ``k`` holds the users of part
    ``k`` of a local run.

    ``options``: the tasks' recommender options (``device``, ``threads`` (default 1),
    ``candidates``, ``block_users``, ``tile_items``) and ``--history``'s (``history``,
    ``rating_col``, ``history_update_known``, ``history_min_ratings``, ``item_embeddings``): they
    are folded in once, on the driver, as the local ``Recommender`` does, and read by each worker process once
    (:meth:`StagedOutput.with_history`)."""
    t0 = time.perf_counter()
    folding = pop_history(options)
    options = {"threads": 1, **options}
    share = DEFAULT_MAX_UNKNOWN_SHARE if max_unknown_share is None else max_unknown_share
    for name, value in (("users", users), ("items", items), ("exclude-seen", exclude_seen)):
        if value is not None and not isinstance(value, str | os.PathLike):
            raise ConfigError(f"--engine {engine.name}: --{name} must be a file every worker can read")
    part_users = positive_int("--part-users", part_users or None, DEFAULT_PART_USERS)
    bundle = load_bundle(bundle)
    with engine.connect(bundle) as cluster:  # a cluster that does not answer: one line, nothing written
        # with a fold-in, its scores come from the device a local run would use
        device = options.get("device", "auto") if folding else "cpu"
        rec = Recommender(bundle, **{**options, "device": device, "threads": 1}, **folding)
        try:
            job = rec.prepare(users=users, k=k, items=items, exclude_seen=exclude_seen, user_col=user_col,
                              item_col=item_col, max_unknown_share=share)
        finally:
            rec.close()
        fold = None if job.folded is None else job.folded.fold
        n = int(job.user_index.size)
        files = {"users": _abs(users), "items": _abs(items), "exclude_seen": _abs(exclude_seen)}
        task = RecommendTask(
            bundle_path=os.fspath(bundle_path or bundle.path), digest=bundle.digest, k=job.k,
            user_col=user_col, item_col=item_col, **options, **files, max_unknown_share=1.0,
            inputs_token=tuple(files_token(path) for path in files.values()),
            history_token="" if fold is None else fold.token,
        )
        settings = recommend_settings(task, engine=engine.name, inputs=job.digest, users=n,
                                      part_users=part_users)
        staged = StagedOutput(output, format, recommend_schema(bundle), overwrite=overwrite,
                              command="recommend", job=settings)
        directory, fmt = os.fspath(staged.directory), staged.part_fmt
        spans = [(p, lo, min(lo + part_users, n)) for p, lo in enumerate(range(0, n, part_users))]

        def work(t: RecommendTask, span: tuple) -> dict:
            return recommend_part(t, *span, directory, fmt)

        rep, records = staged.run(
            lambda: engine.map_items(cluster, staged.with_history(task, fold), spans, work, RECOMMEND_RECORD),
            lambda records: job.report,
        )
    rep.parts_written = len(records)
    for key in RECOMMEND_COUNTS:
        setattr(rep, key, sum(int(r[key]) for r in records))
    rep.provider = ",".join(sorted({r.get("provider", "cpu") for r in records})) or rep.provider
    rep.warnings = worker_notes(records)
    rep.output, rep.output_mode, rep.format = os.fspath(output), staged.mode, staged.fmt
    rep.seconds = time.perf_counter() - t0
    rep.pairs_per_s = rep.pairs_scored / rep.seconds if rep.seconds > 0 else 0.0
    if report is not None:
        write_json(report, rep.to_dict())
    return rep

