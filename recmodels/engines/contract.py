"""The driver <-> worker contract of the engines (torch-free): what crosses between them.

A driver (:mod:`recmodels.engines.driver`, on behalf of :mod:`~recmodels.engines.dask` or
:mod:`~recmodels.engines.spark`) ships a task (:class:`ScoreTask`, :class:`RecommendTask`:
picklable settings, never a session) to every partition; the worker
(:mod:`recmodels.engines.worker`) writes the partition's part under a temporary name
(:func:`part_temp_name`) and sends back one small record per part (:data:`SCORE_RECORD`,
:data:`SCORE_INPUT_RECORD`, :data:`RECOMMEND_RECORD`). The resume settings a directory output
records in ``_scoring.json`` come from :func:`score_settings` / :func:`recommend_settings`,
through the one writer of the local commands
(:func:`recmodels.scoring.output.writers.job_settings`), so a local run and an engine run on the
same Parquet input resume each other.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import partial

import numpy as np
import pyarrow as pa

from .. import errors
from ..encoders import IdEncoder
from ..errors import BundleError, DataError, RecmodelsError
from ..scoring.history import FoldIn, Side
from ..scoring.output.writers import job_settings
from ..scoring.unknown_ids import COUNT_KEYS
from ..tables import expand_input

__all__ = [
    "HISTORY_OPTIONS",
    "RECOMMEND_COUNTS",
    "RECOMMEND_RECORD",
    "SCORE_INPUT_RECORD",
    "SCORE_RECORD",
    "RecommendTask",
    "ScoreTask",
    "error_record",
    "files_token",
    "fold_bytes",
    "history_temp_name",
    "is_part_temp",
    "pandas_dtypes",
    "part_temp_name",
    "raise_recorded_error",
    "read_fold",
    "recommend_settings",
    "score_settings",
]


def _part_record(counts: tuple[str, ...]) -> pa.Schema:
    """One part's record: its number and temporary file, its counts, the provider, a note, an error."""
    head = [("part", pa.int64()), ("tmp", pa.string())]
    tail = [("provider", pa.string()), ("note", pa.string()), ("error", pa.string())]
    return pa.schema([*head, *((key, pa.int64()) for key in counts), *tail])


SCORE_RECORD = _part_record(("rows_read", "rows_written", *COUNT_KEYS))
"""The record a worker returns for a scored partition (one row back to the driver)."""
SCORE_INPUT_RECORD = SCORE_RECORD.append(pa.field("input_start", pa.int64()))
"""The record of a part of a Parquet input: :data:`SCORE_RECORD` and the part's first input row."""
RECOMMEND_COUNTS = ("users_processed", "users_written", "users_short", "rows_written", "pairs_scored")
"""The counts of a part of users, summed by the driver into the job's report."""
RECOMMEND_RECORD = _part_record(RECOMMEND_COUNTS)
"""The record a worker returns for a part of users."""


def error_record(record: pa.Schema, part: int, exc: RecmodelsError) -> dict:
    """The record of a part whose task failed on bad input or options (a :class:`RecmodelsError`).

    The task returns it instead of raising, so the engine neither logs an executor traceback nor
    retries a task that would fail the same way; the driver raises it
    (:func:`raise_recorded_error`) as the one line of a local run.
    """
    out = {f.name: (0 if pa.types.is_integer(f.type) else "") for f in record}
    out.update(part=int(part), error=f"{type(exc).__name__}: {exc}")
    return out


def raise_recorded_error(records: list[dict]) -> None:
    """Raise the error of the first failed part (lowest part number), with its recmodels type."""
    failed = sorted((r for r in records if r.get("error")), key=lambda r: r["part"])
    if not failed:
        return
    name, _, message = failed[0]["error"].partition(": ")
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, RecmodelsError)):
        cls, message = errors.EngineError, failed[0]["error"]
    raise cls(message)


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
    input_token : tuple
        :func:`files_token` of the input the tasks read themselves (Parquet parts), else ``()``.
    history, history_token : str
        ``--history`` / ``--item-embeddings``: the fold-in the driver computed, as a file every
        worker reads once (:func:`fold_bytes`, staged beside the parts), and its
        :attr:`FoldIn.token`; else None and ``""``.
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
    history: str | None = None
    history_token: str = ""

    def scorer_options(self) -> dict:
        """The task's :class:`~recmodels.scoring.pairs.scorer.Scorer` options."""
        return {"device": self.device, "user_col": self.user_col, "item_col": self.item_col,
                "unknown": self.unknown, "clip": self.clip, "batch_size": self.batch_size,
                "threads": self.threads}

    def scorer_key(self) -> tuple:
        """What a worker's cached scorer depends on: the bundle, the scorer options, the fold-in."""
        return (self.digest, *self.scorer_options().values(), self.history_token)


@dataclass(frozen=True)
class RecommendTask:
    """What a worker needs to rank a partition of users (picklable settings only).

    ``users``, ``items`` and ``exclude_seen`` are paths every worker can read (the CLI's files)
    or None; :func:`~recmodels.engines.worker.recommend_users` takes the users and seen pairs as
    data instead. ``inputs_token``: :func:`files_token` of each of the three paths. ``history``,
    ``history_token``: as for :class:`ScoreTask`.
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
    history: str | None = None
    history_token: str = ""

    def recommender_options(self) -> dict:
        """The task's :class:`~recmodels.scoring.recommendation.recommender.Recommender` options."""
        return {"device": self.device, "threads": self.threads, "candidates": self.candidates,
                "block_users": self.block_users, "tile_items": self.tile_items}

    def recommender_key(self) -> tuple:
        """What a worker's cached recommender depends on: the bundle, its options, the fold-in."""
        return (self.digest, *self.recommender_options().values(), self.history_token)


# -- the parts' temporary files ------------------------------------------------------------------
def part_temp_name(part: int, fmt: str, token: str) -> str:
    """The temporary name of one attempt at part ``part`` (``.part-0000k.<fmt>.<token>.tmp``).

    Unique to the attempt: a retried or speculative attempt writes its own file, and the driver
    renames only the one whose record the engine delivered.
    """
    return f".part-{part:05d}.{fmt}.{token}.tmp"


def is_part_temp(name: str) -> bool:
    """Whether a file name is a part's temporary (:func:`part_temp_name`)."""
    return name.startswith(".part-") and name.endswith(".tmp")


# -- the fold-in of --history, computed on the driver, read once per worker process ---------------
HISTORY_OPTIONS = ("history", "rating_col", "history_update_known", "history_min_ratings", "item_embeddings")
"""The ``--history`` and ``--item-embeddings`` keywords of the engines' entry points (those of the
local ``Scorer``): what the driver folds in once."""


def history_temp_name(token: str) -> str:
    """The staged fold-in's file name: a part's temporary (:func:`is_part_temp`) to every cleanup
    of a job's temporaries (the driver's, a resume's, an ``--overwrite``)."""
    return f".part-history.{token[:16]}.npz.tmp"


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _blob(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


def _ids_blob(encoder: IdEncoder) -> np.ndarray:
    sink = pa.BufferOutputStream()
    table = encoder.to_arrow()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return _blob(sink.getvalue().to_pybytes())


def _ids_of(blob: np.ndarray, name: str) -> IdEncoder:
    column = pa.ipc.open_stream(pa.py_buffer(blob.tobytes())).read_all().column("id")
    classes = (column.to_numpy() if pa.types.is_integer(column.type)
               else np.asarray(column.to_pylist(), dtype=object))
    return IdEncoder.from_classes(classes, name)


def _pack(prefix: str, obj, meta: dict, arrays: dict) -> None:
    """Every dataclass field of ``obj`` into ``meta`` (JSON values, None) or ``arrays``."""
    for f in fields(obj):
        value, key = getattr(obj, f.name), f"{prefix}{f.name}"
        if isinstance(value, Side):
            meta[key] = {}
            _pack(f"{key}.", value, meta[key], arrays)
        elif f.name == "vectors":  # the bundle's fold-in arrays: each worker reads its own
            meta[key] = {"shape": list(value.shape), "sha256": _digest(value)}
        elif isinstance(value, np.ndarray):
            arrays[key] = value
        elif isinstance(value, IdEncoder):
            arrays[key] = _ids_blob(value)
            meta[key] = {"ids": value.name}
        elif isinstance(value, tuple) and all(isinstance(v, np.ndarray) for v in value):
            arrays.update({f"{key}.{j}": v for j, v in enumerate(value)})
            meta[key] = {"arrays": len(value)}
        elif value is None or isinstance(value, str | int | float | bool | dict):
            meta[key] = {"value": value}
        else:
            raise TypeError(f"fold-in field {key}: {type(value).__name__} has no file form here")


def _unpack(prefix: str, cls, meta: dict, arrays: dict, vectors: Callable):
    values = {}
    for f in fields(cls):
        key = f"{prefix}{f.name}"
        m = meta.get(key)
        if m is None:
            values[f.name] = arrays[key]
        elif f.name in ("users", "items"):
            values[f.name] = _unpack(f"{key}.", Side, m, arrays, partial(vectors, f.name[:-1]))
        elif f.name == "vectors":
            values[f.name] = vectors(tuple(m["shape"]), m["sha256"])
        elif "ids" in m:
            values[f.name] = _ids_of(arrays[key], m["ids"])
        elif "arrays" in m:
            values[f.name] = tuple(arrays[f"{key}.{j}"] for j in range(m["arrays"]))
        else:
            values[f.name] = m["value"]
    return cls(**values)


def fold_bytes(fold: FoldIn) -> bytes:
    """A :class:`~recmodels.scoring.history.FoldIn` as ``.npz`` bytes (no pickle) for the workers.

    Every field is written (arrays, new ids as Arrow, counts and token as JSON; a field of
    another type is a ``TypeError``), except the sides' ``vectors``: the bundle's fold-in arrays,
    which :func:`read_fold` reads from the worker's bundle.
    """
    meta: dict = {}
    arrays: dict = {}
    _pack("", fold, meta, arrays)
    out = io.BytesIO()
    np.savez(out, **{".meta": _blob(json.dumps(meta).encode())}, **arrays)
    return out.getvalue()


def read_fold(data: bytes, bundle) -> FoldIn:
    """The :class:`~recmodels.scoring.history.FoldIn` of :func:`fold_bytes`, its ``vectors`` read
    from ``bundle`` (the driver's bundle: same digest) as
    :func:`~recmodels.scoring.history.fold_in` reads them."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    meta = json.loads(arrays.pop(".meta").tobytes())
    files = bundle.manifest.prior.fold_in.files

    def vectors(role: str, shape: tuple, digest: str) -> np.ndarray:
        path = bundle.path / files[f"{role}_vectors"]
        out = np.load(path, allow_pickle=False).astype(np.float64)
        if out.shape != shape or _digest(out) != digest:  # the fold-in's rows must be these
            raise BundleError(f"{path}: the fold-in's {role} vectors differ on this worker from the "
                              "driver's; give every worker the same bundle and recmodels version")
        return out

    return _unpack("", FoldIn, meta, arrays, vectors)


# -- what the workers' caches are keyed by ------------------------------------------------------
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


# -- the resume settings of a directory output -------------------------------------------------
def score_settings(task: ScoreTask, input: str, *, input_rows: int | None = None,
                   engine: str | None = None) -> dict:
    """The ``_scoring.json`` settings of a scoring job run as ``task``.

    ``input``: the input's absolute path (with ``input_rows``: a Parquet input whose parts the
    tasks read themselves, written exactly as a local run writes them, so either resumes the
    other), or what the engine's frame is called (``engine`` is then recorded too).
    """
    job = job_settings(
        task.digest,
        input,
        unknown=task.unknown,
        clip=task.clip,
        user_col=task.user_col,
        item_col=task.item_col,
        input_rows=input_rows,
        engine=engine,
    )
    if task.history_token:  # as a local run records it: a resume must fold in the same history
        job["history"] = task.history_token
    return job


def recommend_settings(task: RecommendTask, *, engine: str, inputs: str, users: int,
                       part_users: int) -> dict:
    """The ``_scoring.json`` settings of a recommend job run as ``task`` on ``engine``.

    ``inputs``: the digest of the prepared job's inputs; ``users``: the users in its list.
    """
    return {
        "engine": engine,
        "bundle": task.digest,
        "inputs": inputs,
        "top_k": task.k,
        "candidates": task.candidates,
        "users": users,
        "part_users": part_users,
    }
