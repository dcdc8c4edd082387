"""Score (user, item) pairs with a bundle: arrays, frames, Arrow batches, files (torch-free)."""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from ..errors import ConfigError, DataError
from ..fileio import write_json
from .idmap import IndexMap
from .pipeline import pipelined
from .readers import id_arrow_type, open_input
from .session import ScoringSession, load_bundle
from .writers import FileOutput, PartsOutput, resolve_output

DEFAULT_BATCH_SIZE = 1 << 18
"""Rows per pipeline batch (262,144). On CPU each batch is ordered by table index and scored in
sub-batches (see :mod:`recmodels.scoring.session`); larger batches order more pairs together
but gained little past 256k rows (docs/benchmarks.md), while the memory in flight grows with
batch size x queue depth."""
DEFAULT_CUDA_BATCH_SIZE = 1 << 20
"""Rows per batch on CUDA (1,048,576): one graph call per batch, so larger amortizes the launch
and transfer overheads."""
DEFAULT_PART_ROWS = 1 << 20
"""Input rows per part file in directory output (1,048,576)."""
POLICIES = ("fallback", "skip", "error")
SCORE_COLUMN = "score"
KNOWN_COLUMN = "known"
THROTTLE_ENV = "RECMODELS_SCORE_THROTTLE_S"  # test-only: sleep after each part (kill/resume tests)


@dataclass
class ScoreReport:
    """What a scoring run did (``--report`` writes :meth:`to_dict` as JSON).

    Attributes
    ----------
    rows_read : int
        Input rows read and scored by this run (rows of parts resumed from disk excluded).
    rows_written : int
        Rows written by this run (``rows_read - skipped``).
    unknown_users, unknown_items : int
        Rows whose user (item) id is not in the bundle or is null.
    unknown_rows : int
        Rows with an unknown user or item (scored with the fallback, skipped, or an error).
    null_ids : int
        Rows with a null user or item id (counted as unknown too).
    skipped : int
        Rows dropped by ``unknown="skip"``.
    provider : str
        The onnxruntime provider that ran the graph: ``cpu`` or ``cuda:N``.
    seconds, rows_per_s : float
        Wall time of the run and ``rows_read / seconds``.
    parts_written, parts_resumed, rows_resumed : int
        Directory output: parts written now, parts found complete and kept, and their input rows.
    """

    input: str | None = None
    output: str | None = None
    output_mode: str | None = None
    format: str | None = None
    rows_read: int = 0
    rows_written: int = 0
    unknown_users: int = 0
    unknown_items: int = 0
    unknown_rows: int = 0
    null_ids: int = 0
    skipped: int = 0
    unknown_policy: str = "fallback"
    provider: str = "cpu"
    batch_size: int = DEFAULT_BATCH_SIZE
    seconds: float = 0.0
    rows_per_s: float = 0.0
    parts_written: int = 0
    parts_resumed: int = 0
    rows_resumed: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line: rows, destination, speed, provider and unknown-id counts."""
        where = f" -> {self.output}" if self.output else ""
        line = (
            f"scored {self.rows_read:,} rows{where} in {self.seconds:.1f} s "
            f"({self.rows_per_s:,.0f} rows/s, {self.provider}); wrote {self.rows_written:,}"
        )
        if self.unknown_rows:
            line += (
                f"; {self.unknown_rows:,} rows with unknown ids ({self.unknown_users:,} users, "
                f"{self.unknown_items:,} items, {self.null_ids:,} null) -> {self.unknown_policy}"
            )
        if self.parts_resumed:
            line += f"; resumed {self.parts_resumed} complete parts ({self.rows_resumed:,} rows)"
        return line


@dataclass
class _Mapped:
    start: int
    batch: pa.RecordBatch
    user_index: np.ndarray
    item_index: np.ndarray
    known: np.ndarray | None  # None: every row known
    order: np.ndarray | None = None  # ScoringSession.order of the indices
    scores: np.ndarray | None = None


class Scorer:
    """Scores (user, item) pairs with a bundle's ONNX graph on onnxruntime.

    Parameters
    ----------
    bundle : Bundle or path-like
        A bundle written by ``recmodels export`` (verified on load).
    device : {"auto", "cpu", "cuda", "cuda:N"}
        ``auto``: CUDA if the session really gets it, else CPU (one warning).
    user_col, item_col : str, optional
        Id columns of the input; default: the names in the bundle's manifest.
    unknown : {"fallback", "skip", "error"}
        Pairs with an unknown (or null) user or item id are never sent to the graph. ``fallback``
        scores them with the manifest's ``fallback_score`` and adds a boolean ``known`` column;
        ``skip`` drops them; ``error`` raises :class:`DataError` at the first, naming id and row.
    clip : bool
        Clip scores to the bundle's rating range.
    batch_size : int, optional
        Rows per pipeline batch (on CPU scored in sub-batches, see :class:`ScoringSession`);
        default :data:`DEFAULT_BATCH_SIZE` on CPU, :data:`DEFAULT_CUDA_BATCH_SIZE` on CUDA.
    threads : int, optional
        CPU threads running sub-batches concurrently (default: the CPUs this process may use).
    intra_op_threads : int, optional
        Former name of ``threads`` (still accepted).

    Examples
    --------
    >>> scorer = Scorer("bundles/neumf", device="cpu")             # doctest: +SKIP
    >>> scorer.score_frame(pairs_df)                               # doctest: +SKIP
    >>> scorer.score_file("pairs.parquet", "scores/")              # doctest: +SKIP
    """

    def __init__(
        self,
        bundle,
        *,
        device: str = "auto",
        user_col: str | None = None,
        item_col: str | None = None,
        unknown: str = "fallback",
        clip: bool = False,
        batch_size: int | None = None,
        threads: int | None = None,
        intra_op_threads: int | None = None,
    ):
        if unknown not in POLICIES:
            raise ConfigError(f"--unknown {unknown!r}: choose one of {', '.join(POLICIES)}")
        if batch_size is not None and int(batch_size) < 1:
            raise ConfigError(f"--batch-size must be positive, got {batch_size}")
        self.bundle = load_bundle(bundle)
        self.user_col = user_col or self.bundle.user_column
        self.item_col = item_col or self.bundle.item_column
        if self.user_col == self.item_col:
            raise ConfigError(f"user and item id columns are both {self.user_col!r}")
        self.unknown = unknown
        self.clip = bool(clip)
        self.user_encoder = self.bundle.user_encoder
        self.item_encoder = self.bundle.item_encoder
        self._user_map = IndexMap(self.user_encoder)
        self._item_map = IndexMap(self.item_encoder)
        self.fallback_score = np.float32(self.bundle.fallback_score)
        self.rating_range = self.bundle.rating_range
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self._session = ScoringSession(
                self.bundle, device, threads=threads or intra_op_threads
            )
        self.warnings = [str(w.message) for w in caught]
        for w in caught:  # re-emit to the caller's filters (the CLI prints them as one line each)
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self.provider = self._session.provider
        if batch_size is None:
            batch_size = DEFAULT_BATCH_SIZE if self.provider == "cpu" else DEFAULT_CUDA_BATCH_SIZE
        self.batch_size = int(batch_size)
        self._reset_counts()

    # -- counting ------------------------------------------------------------------------------
    def _reset_counts(self) -> None:
        self._counts = dict(unknown_users=0, unknown_items=0, unknown_rows=0, null_ids=0, skipped=0)

    # -- the three steps -----------------------------------------------------------------------
    def _map(self, start: int, batch: pa.RecordBatch) -> _Mapped:
        """Ids -> indices; count and apply the unknown-id policy (step 1)."""
        users = batch.column(self.user_col)
        items = batch.column(self.item_col)
        user_index = self._user_map.transform(users)
        item_index = self._item_map.transform(items)
        bad_user = user_index < 0
        bad_item = item_index < 0
        unknown = bad_user | bad_item
        n_unknown = int(np.count_nonzero(unknown))
        if n_unknown == 0:
            order = self._session.order(user_index, item_index)
            return _Mapped(start, batch, user_index, item_index, None, order)
        c = self._counts
        c["unknown_users"] += int(np.count_nonzero(bad_user))
        c["unknown_items"] += int(np.count_nonzero(bad_item))
        c["unknown_rows"] += n_unknown
        if users.null_count or items.null_count:
            nulls = np.zeros(batch.num_rows, dtype=bool)
            for column in (users, items):
                if column.null_count:
                    nulls |= column.is_null().to_numpy(zero_copy_only=False)
            c["null_ids"] += int(np.count_nonzero(nulls))
        if self.unknown == "error":
            row = int(np.argmax(unknown))
            role, column = ("user", users) if bad_user[row] else ("item", items)
            value = column[row].as_py()
            shown = "null" if value is None else repr(value)
            raise DataError(
                f"unknown {role} id {shown} at input row {start + row} (0-based, header excluded); "
                "it is not in the bundle's id map (use --unknown fallback or skip to score anyway)"
            )
        if self.unknown == "skip":
            c["skipped"] += n_unknown
        # Unknown pairs get index 0 (always valid) and their scores are overwritten in _infer:
        # the graph never sees an out-of-range index, and the batch keeps its shape.
        np.maximum(user_index, 0, out=user_index)  # UNKNOWN is -1
        np.maximum(item_index, 0, out=item_index)
        order = self._session.order(user_index, item_index)
        return _Mapped(start, batch, user_index, item_index, ~unknown, order)

    def _infer(self, m: _Mapped) -> _Mapped:
        """Run the graph; unknown pairs (index 0 here) get the fallback score (step 2)."""
        scores = self._session.run(m.user_index, m.item_index, m.order)
        m.user_index = m.item_index = m.order = None  # not needed downstream: free them early
        if m.known is not None:
            scores[~m.known] = self.fallback_score
        if self.clip:
            np.clip(scores, self.rating_range[0], self.rating_range[1], out=scores)
        m.scores = scores
        return m

    def _assemble(self, m: _Mapped, keep: list[str]) -> pa.RecordBatch:
        """The output batch: kept columns, ``known`` (fallback policy) and ``score`` (step 3)."""
        arrays = [m.batch.column(name) for name in keep]
        names = list(keep)
        scores = m.scores
        if self.unknown == "fallback":
            known = np.ones(m.batch.num_rows, dtype=bool) if m.known is None else m.known
            arrays.append(pa.array(known))
            names.append(KNOWN_COLUMN)
        elif self.unknown == "skip" and m.known is not None:
            mask = pa.array(m.known)
            arrays = [a.filter(mask) for a in arrays]
            scores = scores[m.known]
        arrays.append(pa.array(scores, type=pa.float32()))
        names.append(SCORE_COLUMN)
        return pa.RecordBatch.from_arrays(arrays, names=names)

    def output_schema(self, input_schema: pa.Schema, keep: list[str]) -> pa.Schema:
        fields = [input_schema.field(name) for name in keep]
        if self.unknown == "fallback":
            fields.append(pa.field(KNOWN_COLUMN, pa.bool_()))
        fields.append(pa.field(SCORE_COLUMN, pa.float32()))
        return pa.schema(fields)

    def _resolve_keep(self, names: list[str], keep, where: str) -> list[str]:
        for role, col in (("user", self.user_col), ("item", self.item_col)):
            if col not in names:
                raise DataError(
                    f"{where}: no {role} id column {col!r} (columns: {', '.join(names)}); "
                    f"pass --{role}-col"
                )
        if keep is None:
            keep = list(names)
        else:
            if isinstance(keep, str):
                keep = [c.strip() for c in keep.split(",") if c.strip()]
            missing = [c for c in keep if c not in names]
            if missing:
                raise ConfigError(
                    f"--keep: {where} has no column {missing[0]!r} (columns: {', '.join(names)})"
                )
            keep = [c for c in names if c in set(keep)]
        outputs = {SCORE_COLUMN} | ({KNOWN_COLUMN} if self.unknown == "fallback" else set())
        clash = [c for c in keep if c in outputs]
        if clash:
            raise ConfigError(
                f"{where}: input column {clash[0]!r} clashes with the output column of that name; "
                "leave it out with --keep"
            )
        return keep

    # -- arrays and frames ---------------------------------------------------------------------
    def score_arrays(self, user_ids, item_ids) -> tuple[np.ndarray, np.ndarray]:
        """Score raw id arrays. Returns ``(scores float32, known bool)``; policy ``skip`` is
        treated as ``fallback`` here (the rows stay aligned with the input)."""
        user_index = self.user_encoder.transform(user_ids)
        item_index = self.item_encoder.transform(item_ids)
        if user_index.shape != item_index.shape:
            raise DataError(f"{user_index.size} user ids but {item_index.size} item ids")
        known = (user_index >= 0) & (item_index >= 0)
        if self.unknown == "error" and not known.all():
            row = int(np.argmin(known))
            role, ids = ("user", user_ids) if user_index[row] < 0 else ("item", item_ids)
            value = ids[row] if not hasattr(ids, "iloc") else ids.iloc[row]
            raise DataError(f"unknown {role} id {value!r} at row {row}; it is not in the bundle")
        scores = np.full(user_index.size, self.fallback_score, dtype=np.float32)
        for lo in range(0, user_index.size, self.batch_size):
            sl = slice(lo, lo + self.batch_size)
            k = known[sl]
            if k.all():
                scores[sl] = self._session.run(user_index[sl], item_index[sl])
            elif k.any():
                part = scores[sl]
                part[k] = self._session.run(user_index[sl][k], item_index[sl][k])
        if self.clip:
            np.clip(scores, *self.rating_range, out=scores)
        return scores, known

    def score_frame(self, frame: pd.DataFrame, *, keep=None) -> pd.DataFrame:
        """Score a DataFrame; returns its (kept) columns plus ``known`` (fallback) and ``score``.

        The index is kept; with ``unknown="skip"`` rows with unknown ids are dropped.
        """
        keep = self._resolve_keep(list(frame.columns), keep, "DataFrame")
        self._reset_counts()
        policy = self.unknown
        scores, known = self.score_arrays(frame[self.user_col], frame[self.item_col])
        out = frame[keep].copy()
        if policy == "fallback":
            out[KNOWN_COLUMN] = known
        out[SCORE_COLUMN] = scores
        if policy == "skip":
            out = out[known]
        return out

    # -- Arrow streams ----------------------------------------------------------------------------
    def score_batches(self, batches: Iterable, *, keep=None) -> Iterator[pa.RecordBatch]:
        """Score a stream of Arrow RecordBatches (or Tables), pipelined; one output batch per
        input batch, in order (with ``skip`` a batch may shrink, even to zero rows)."""
        self._reset_counts()
        iterator = iter(batches)
        try:
            first = next(iterator)
        except StopIteration:
            return
        first_batches = _as_batches(first)

        def source():
            offset = 0
            for batch in first_batches:
                yield offset, batch
                offset += batch.num_rows
            for item in iterator:
                for batch in _as_batches(item):
                    yield offset, batch
                    offset += batch.num_rows

        schema = first_batches[0].schema if first_batches else first.schema
        keep = self._resolve_keep(schema.names, keep, "input batches")
        for m in pipelined(source(), [lambda item: self._map(*item), self._infer]):
            yield self._assemble(m, keep)

    # -- files ------------------------------------------------------------------------------------
    def score_file(
        self,
        input,
        output,
        *,
        keep=None,
        format: str | None = None,
        part_rows: int = DEFAULT_PART_ROWS,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = False,
        report: str | os.PathLike | None = None,
    ) -> ScoreReport:
        """Score a file (or directory, or glob) into a file or a directory of parts.

        Parameters
        ----------
        input : path-like or str
            CSV, ``.csv.gz``, Parquet file, directory of Parquet files, or a glob.
        output : path-like
            ``*.parquet`` / ``*.csv``: one file, written under a temporary name and renamed when
            complete. No extension (or an existing directory): part files plus ``_SUCCESS``.
        keep : list of str or "a,b", optional
            Input columns to pass through (default: all).
        format : {"parquet", "csv"}, optional
            Overrides the output extension (directory output defaults to Parquet).
        part_rows : int
            Directory output: input rows per part (part ``k`` holds input rows
            ``[k * part_rows, (k + 1) * part_rows)``).
        resume : bool
            Directory output: keep parts already complete and write only the rest.
        overwrite : bool
            Replace an existing output.
        progress : bool
            Show a tqdm progress bar on stderr.
        report : path-like, optional
            Also write the :class:`ScoreReport` there as JSON.

        Returns
        -------
        ScoreReport
        """
        t0 = time.perf_counter()
        mode, fmt = resolve_output(output, format)
        if resume and mode != "dir":
            raise ConfigError("--resume needs a directory output (a path without an extension)")
        if resume and overwrite:
            raise ConfigError("--resume and --overwrite exclude each other")
        part_rows = int(part_rows)
        if part_rows < 1:
            raise ConfigError(f"--part-rows must be positive, got {part_rows}")
        source = open_input(
            input,
            user_col=self.user_col,
            item_col=self.item_col,
            user_type=id_arrow_type(self.user_encoder.kind_),
            item_type=id_arrow_type(self.item_encoder.kind_),
        )
        if source.total_rows == 0:
            raise DataError(f"{source.path}: input has no rows")
        keep = self._resolve_keep(source.schema.names, keep, source.path)
        columns = [
            c for c in source.schema.names if c in set(keep) | {self.user_col, self.item_col}
        ]
        schema = self.output_schema(source.schema, keep)
        if mode == "file":
            writer = FileOutput(output, fmt, schema, overwrite=overwrite)
        else:
            job = {
                "bundle": self.bundle.manifest.get("manifest_sha256"),
                "input": os.path.abspath(os.fspath(input)),
                "input_rows": source.total_rows,
                "unknown": self.unknown,
                "clip": self.clip,
                "user_col": self.user_col,
                "item_col": self.item_col,
            }
            writer = PartsOutput(
                output,
                fmt,
                schema,
                part_rows=part_rows,
                job=job,
                resume=resume,
                overwrite=overwrite,
            )
        rep = ScoreReport(
            input=os.fspath(input),
            output=os.fspath(output),
            output_mode=mode,
            format=fmt,
            unknown_policy=self.unknown,
            provider=self.provider,
            batch_size=self.batch_size,
            warnings=list(self.warnings),
        )
        self._reset_counts()
        try:
            self._run_file(source, columns, keep, writer, part_rows, progress, rep)
        except BaseException as exc:
            if isinstance(exc, DataError) and mode == "dir":
                writer.remove_all()
            else:
                writer.abort()
            raise
        rep.seconds = time.perf_counter() - t0
        rep.rows_per_s = rep.rows_read / rep.seconds if rep.seconds > 0 else 0.0
        for key, value in self._counts.items():
            setattr(rep, key, value)
        if report is not None:
            write_json(report, rep.to_dict())
        return rep

    def _run_file(self, source, columns, keep, writer, part_rows, progress, rep) -> None:
        dir_mode = writer.mode == "dir"
        cut = part_rows if dir_mode else None
        start_row = 0
        if dir_mode:
            while writer.is_complete(start_row // part_rows):
                start_row += part_rows
            rep.parts_resumed = len(writer.complete)
            rep.rows_resumed = sum(m["input_rows"] for m in writer.complete.values())
        throttle = float(os.environ.get(THROTTLE_ENV, "0") or 0)

        def batches():
            raw = source.batches(columns, self.batch_size, start_row=start_row)
            for start, batch in rebatch(raw, self.batch_size, cut):
                if dir_mode and writer.is_complete(start // part_rows):
                    continue
                yield start, batch

        bar = _progress_bar(progress, source.total_rows, rep.rows_resumed)
        part, part_input_rows = None, 0
        try:
            for m in pipelined(batches(), [lambda item: self._map(*item), self._infer]):
                out = self._assemble(m, keep)
                if dir_mode:
                    k = m.start // part_rows
                    if k != part:
                        if part is not None:
                            writer.end_part(part_input_rows)
                            rep.parts_written += 1
                            if throttle:
                                time.sleep(throttle)
                        writer.begin_part(k)
                        part, part_input_rows = k, 0
                    part_input_rows += m.batch.num_rows
                writer.write(out)
                rep.rows_read += m.batch.num_rows
                rep.rows_written += out.num_rows
                if bar is not None:
                    bar.update(m.batch.num_rows)
        finally:
            if bar is not None:
                bar.close()
        if rep.rows_read == 0 and rep.rows_resumed == 0:
            raise DataError(f"{source.path}: input has no rows")
        if dir_mode and part is not None:
            writer.end_part(part_input_rows)
            rep.parts_written += 1
        writer.commit()


def _as_batches(item) -> list[pa.RecordBatch]:
    if isinstance(item, pa.RecordBatch):
        return [item]
    if isinstance(item, pa.Table):
        return item.to_batches()
    if isinstance(item, pd.DataFrame):
        return pa.Table.from_pandas(item, preserve_index=False).to_batches()
    raise TypeError(f"expected pyarrow RecordBatch/Table or DataFrame, got {type(item).__name__}")


def rebatch(
    batches: Iterable[tuple[int, pa.RecordBatch]], size: int, cut: int | None = None
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Re-cut a stream of ``(first_row, batch)`` into batches of ``size`` rows that never cross
    a multiple of ``size`` or of ``cut`` (so part boundaries fall between batches).

    The stream must be contiguous, except that it may start at any row.
    """
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    start = None

    def next_boundary(row: int) -> int:
        b = (row // size + 1) * size
        if cut:
            b = min(b, (row // cut + 1) * cut)
        return b

    for first, batch in batches:
        if start is None:
            start = first
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        pending_rows += batch.num_rows
        while pending_rows and start + pending_rows >= next_boundary(start):
            n = next_boundary(start) - start
            head, pending, pending_rows = _take(pending, n), _drop(pending, n), pending_rows - n
            yield start, head
            start += n
    if pending_rows:
        yield start, _take(pending, pending_rows)


def _take(batches: list[pa.RecordBatch], n: int) -> pa.RecordBatch:
    if batches[0].num_rows >= n:
        return batches[0].slice(0, n)
    out, got = [], 0
    for b in batches:
        piece = b.slice(0, min(b.num_rows, n - got))
        out.append(piece)
        got += piece.num_rows
        if got == n:
            break
    return pa.Table.from_batches(out).combine_chunks().to_batches()[0]


def _drop(batches: list[pa.RecordBatch], n: int) -> list[pa.RecordBatch]:
    out = []
    for b in batches:
        if n >= b.num_rows:
            n -= b.num_rows
            continue
        out.append(b.slice(n) if n else b)
        n = 0
    return out


def _progress_bar(enabled: bool, total: int | None, initial: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit=" rows",
        unit_scale=True,
        dynamic_ncols=True,
        file=sys.stderr,
        smoothing=0.1,
    )


def score(bundle, input, output, **kwargs) -> ScoreReport:
    """Score ``input`` into ``output`` with ``bundle`` (see :meth:`Scorer.score_file`).

    Scorer options (``device``, ``user_col``, ``item_col``, ``unknown``, ``clip``, ``batch_size``,
    ``threads``) and :meth:`Scorer.score_file` options may be mixed in ``kwargs``.
    """
    scorer_keys = {
        "device",
        "user_col",
        "item_col",
        "unknown",
        "clip",
        "batch_size",
        "threads",
        "intra_op_threads",
    }
    scorer = Scorer(bundle, **{k: v for k, v in kwargs.items() if k in scorer_keys})
    return scorer.score_file(
        input, output, **{k: v for k, v in kwargs.items() if k not in scorer_keys}
    )


def score_frame(bundle, frame: pd.DataFrame, **kwargs) -> pd.DataFrame:
    """Score a DataFrame with ``bundle`` (see :meth:`Scorer.score_frame`)."""
    keep = kwargs.pop("keep", None)
    return Scorer(bundle, **kwargs).score_frame(frame, keep=keep)
