"""Score (user, item) pairs with a bundle: arrays, frames, Arrow batches, files (torch-free).

Every input kind goes through the same three steps on Arrow batches: the id mapping and the graph
(:class:`~recmodels.scoring.pairs.batches.BatchPath`, steps 1 and 2), then :meth:`Scorer.assemble`
(step 3). Files are opened and written by :mod:`recmodels.scoring.pairs.files`.
"""

from __future__ import annotations

import itertools
import os
import time
import warnings
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from ...errors import DataError
from ...fileio import write_json
from ...ids import as_arrow
from ..checks import positive_int
from ..defaults import DEFAULT_BATCH_SIZE, DEFAULT_CUDA_BATCH_SIZE, DEFAULT_PART_ROWS
from ..history import DEFAULT_MIN_RATINGS, FoldIn, fold_in
from ..output.stream import numbered
from ..output.writers import check_output_options
from ..runtime.session import ScoringSession, load_bundle
from ..unknown_ids import DEFAULT_MAX_UNKNOWN_SHARE, empty_counts, likely_cause, over_share
from .batches import BatchPath, MappedBatch
from .columns import (
    KNOWN_COLUMN,
    SCORE_COLUMN,
    as_id_type,
    bundle_id_types,
    check_score_options,
    keep_columns,
    scored_schema,
)
from .files import open_input, open_output, write_scores
from .report import ScoreReport


class Scorer(BatchPath):
    """Scores (user, item) pairs with a bundle's ONNX graph on onnxruntime.

    Parameters
    ----------
    bundle : Bundle or path-like
        A bundle written by ``recmodels export`` (verified on load).
    device : {"auto", "cpu", "cuda", "cuda:N"}
        ``auto``: CUDA if the session really gets it, else CPU (one warning per process).
    user_col, item_col : str, optional
        Id columns of the input; default: the names in the bundle's manifest.
    unknown : {"fallback", "skip", "error"}
        Pairs with an unknown (or null) user or item id are never sent to the graph. ``fallback``
        scores them with the manifest's ``fallback_score`` and adds a boolean ``known`` column;
        ``skip`` drops them; ``error`` raises :class:`DataError` at the first, naming id and row.
        Ids are read by the rules of :mod:`recmodels.ids` whatever the input's type.
    clip : bool
        Clip scores to the bundle's rating range.
    batch_size : int, optional
        Rows per pipeline batch (on CPU scored in sub-batches, see :class:`ScoringSession`);
        default :data:`DEFAULT_BATCH_SIZE` on CPU, :data:`DEFAULT_CUDA_BATCH_SIZE` on CUDA.
    threads : int, optional
        CPU threads running sub-batches concurrently (default: the CPUs this process may use).
    max_unknown_share : float
        The guard for nightly jobs: when more than this share of the rows has an unknown id,
        :meth:`score_file` stops with one line and writes nothing, and :meth:`score_frame` /
        :meth:`score_arrays` / :meth:`score_batches` warn. 1 turns it off.
    history, history_update_known, history_min_ratings, rating_col, item_embeddings
        Ratings made after training (or a :class:`~recmodels.scoring.history.FoldIn`) and, for a
        hybrid bundle, new items' pretrained vectors, folded in first (docs/scoring.md, "New users").

    Attributes
    ----------
    counts : dict
        Unknown-id counts of the last call (``unknown_users``, ``unknown_items``,
        ``unknown_rows``, ``null_ids``, ``skipped``), for every input kind.
    warnings : list of str
        E.g. why CUDA was not used.

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
        max_unknown_share: float = DEFAULT_MAX_UNKNOWN_SHARE,
        history=None,
        history_update_known: bool = True,
        history_min_ratings: int = DEFAULT_MIN_RATINGS,
        rating_col: str | None = None,
        item_embeddings=None,
    ):
        self.bundle = load_bundle(bundle)
        self.user_col, self.item_col, self.max_unknown_share = check_score_options(
            self.bundle, user_col=user_col, item_col=item_col, unknown=unknown, batch_size=batch_size,
            max_unknown_share=max_unknown_share)
        self.unknown = unknown
        self.clip = bool(clip)
        self.user_encoder = self.bundle.user_encoder
        self.item_encoder = self.bundle.item_encoder
        self.fallback_score = np.float32(self.bundle.fallback_score)
        self.rating_range = self.bundle.rating_range
        self._session = ScoringSession(self.bundle, device, threads=threads)
        self.warnings = list(self._session.notes)
        self.provider = self._session.provider
        if batch_size is None:
            batch_size = DEFAULT_BATCH_SIZE if self.provider == "cpu" else DEFAULT_CUDA_BATCH_SIZE
        self.batch_size = int(batch_size)
        prior = self.bundle.manifest.prior
        self.prior_rows = None if prior is None else (prior.user_row, prior.item_row)
        self.fold = None
        if history is not None or item_embeddings is not None:
            self.fold = history if isinstance(history, FoldIn) else fold_in(
                self.bundle, history, self.score_graph_rows, user_col=self.user_col, item_col=self.item_col,
                rating_col=rating_col, update_known=history_update_known, min_ratings=history_min_ratings,
                item_embeddings=item_embeddings)
        self.reset_counts()

    def score_graph_rows(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        """``model.onnx``'s float32 scores of graph rows (prior rows included), unchecked."""
        users = np.ascontiguousarray(user_index, dtype=np.int64)
        items = np.ascontiguousarray(item_index, dtype=np.int64)
        out = np.empty(users.size, dtype=np.float32)
        for lo in range(0, users.size, self.batch_size):
            out[lo : lo + self.batch_size] = self._session.run(users[lo : lo + self.batch_size],
                                                               items[lo : lo + self.batch_size])
        return out

    # -- counting ------------------------------------------------------------------------------
    def reset_counts(self) -> None:
        """Zero the unknown-id counters (``self.counts``) before a new input."""
        self.counts = empty_counts()

    def _warn_share(self, rows: int, where: str, types: dict) -> None:
        """The in-memory APIs cannot undo their output, so the guard warns there."""
        if rows and over_share(self.counts["unknown_rows"], rows, self.max_unknown_share):
            c = self.counts
            outcome = f"and got the fallback {float(self.fallback_score):g}"
            if self.prior_rows is not None and self.unknown == "fallback":  # one side known: prior row
                outcome = (f"({c['unknown_both']:,} with both unknown got the fallback "
                           f"{float(self.fallback_score):g}, the others the prior row's score)")
            warnings.warn(
                f"{where}: {c['unknown_rows']:,} of {rows:,} rows have ids the bundle does not know "
                f"{outcome}; likely "
                f"{likely_cause(self.bundle, self.user_col, self.item_col, types)}",
                UserWarning,
                stacklevel=3,
            )

    def assemble(self, m: MappedBatch, keep: list[str]) -> pa.RecordBatch:
        """The output batch: kept columns, ``known`` (fallback policy) and ``score`` (step 3).

        The id columns are written in the bundle's id type (:func:`as_id_type`)."""
        types = bundle_id_types(self.bundle, self.user_col, self.item_col)
        arrays = [as_id_type(m.batch.column(name), types[name]) if name in types else m.batch.column(name)
                  for name in keep]
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
        """The schema of the output batches for an input schema and kept columns."""
        return scored_schema(input_schema, keep, self.unknown,
                             id_types=bundle_id_types(self.bundle, self.user_col, self.item_col))

    def resolve_keep(self, names: list[str], keep, where: str) -> list[str]:
        """The input columns to pass through (``keep``: list, ``"a,b"`` or None for all)."""
        return keep_columns(names, keep, where, user_col=self.user_col, item_col=self.item_col,
                            unknown=self.unknown)

    # -- arrays and frames ---------------------------------------------------------------------
    def _score_ids(self, user_ids, item_ids, where: str) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, known)`` for two id containers, through the batch path."""
        users, items = as_arrow(user_ids), as_arrow(item_ids)
        if len(users) != len(items):
            raise DataError(f"{where}: {len(users)} user ids but {len(items)} item ids")
        ids = pa.RecordBatch.from_arrays([users, items], names=[self.user_col, self.item_col])
        n = ids.num_rows
        scores = np.empty(n, dtype=np.float32)
        known = np.ones(n, dtype=bool)
        self.reset_counts()
        pieces = ((lo, ids.slice(lo, self.batch_size)) for lo in range(0, n, self.batch_size))
        for m in self.mapped(pieces):
            hi = m.start + m.batch.num_rows
            scores[m.start : hi] = m.scores
            if m.known is not None:
                known[m.start : hi] = m.known
        if self.unknown == "skip":  # rows stay aligned with the input here: skip counts nothing
            self.counts["skipped"] = 0
        self._warn_share(n, where, {self.user_col: users.type, self.item_col: items.type})
        return scores, known

    def score_arrays(self, user_ids, item_ids) -> tuple[np.ndarray, np.ndarray]:
        """Score raw id arrays. Returns ``(scores float32, known bool)``; policy ``skip`` is
        treated as ``fallback`` here (the rows stay aligned with the input)."""
        return self._score_ids(user_ids, item_ids, "arrays")

    def score_frame(self, frame: pd.DataFrame, *, keep=None) -> pd.DataFrame:
        """Score a DataFrame; returns its (kept) columns plus ``known`` (fallback) and ``score``.

        The index is kept; with ``unknown="skip"`` rows with unknown ids are dropped. The counts
        of unknown ids are in :attr:`counts`.
        """
        keep = self.resolve_keep(list(frame.columns), keep, "DataFrame")
        scores, known = self._score_ids(frame[self.user_col], frame[self.item_col], "DataFrame")
        out = frame[keep].copy()
        if self.unknown == "fallback":
            out[KNOWN_COLUMN] = known
        out[SCORE_COLUMN] = scores
        if self.unknown == "skip":
            out = out[known]
            self.counts["skipped"] = int((~known).sum())
        return out

    def score_indices(self, user_index, item_index) -> np.ndarray:
        """Scores (float32) for pairs of *indices* into the bundle's id maps, without id mapping.

        For callers that already hold indices (evaluation candidates, recommend re-ranking).
        Every index must be valid: this is checked, since the CUDA provider does not.
        """
        users = np.ascontiguousarray(user_index, dtype=np.int64)
        items = np.ascontiguousarray(item_index, dtype=np.int64)
        if users.shape != items.shape or users.ndim != 1:
            raise DataError(
                f"user and item indices must be 1-D of one length, got {users.shape} and {items.shape}"
            )
        sizes = (("user", users, len(self.user_encoder)), ("item", items, len(self.item_encoder)))
        for role, index, n in sizes:
            if index.size and (index.min() < 0 or index.max() >= n):
                raise DataError(f"{role} index out of range 0..{n - 1}")
        scores = self.score_graph_rows(users, items)
        if self.clip:
            np.clip(scores, self.rating_range[0], self.rating_range[1], out=scores)
        return scores

    # -- Arrow streams ----------------------------------------------------------------------------
    def score_batches(self, batches: Iterable, *, keep=None) -> Iterator[pa.RecordBatch]:
        """Score a stream of Arrow RecordBatches (or Tables, or DataFrames), pipelined; one output
        batch per input batch, in order (with ``skip`` a batch may shrink, even to zero rows)."""
        self.reset_counts()
        stream = numbered(batches)
        try:
            first = next(stream)
        except StopIteration:
            return
        schema = first[1].schema
        keep = self.resolve_keep(schema.names, keep, "input batches")
        rows = 0
        for m in self.mapped(itertools.chain([first], stream)):
            rows += m.batch.num_rows
            yield self.assemble(m, keep)
        types = {c: schema.field(c).type for c in (self.user_col, self.item_col)}
        self._warn_share(rows, "input batches", types)

    # -- files ------------------------------------------------------------------------------------
    def score_file(
        self,
        input,
        output,
        *,
        keep=None,
        format: str | None = None,
        part_rows: int | None = None,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = False,
        report: str | os.PathLike | None = None,
        dialect=None,
    ) -> ScoreReport:
        """Score a file (or directory, or glob) into one file or a directory of part files.

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
        part_rows : int, optional
            Directory output: input rows per part (part ``k`` holds input rows
            ``[k * part_rows, (k + 1) * part_rows)``); default ``DEFAULT_PART_ROWS``.
        resume, overwrite : bool
            Directory output: keep parts already complete and write only the rest; replace an
            existing output.
        progress : bool
            Show a tqdm progress bar on stderr.
        report : path-like, optional
            Also write the :class:`ScoreReport` there as JSON.
        dialect : recmodels.tables.CsvDialect, optional
            How a delimited text input is read (separator, header row or column names).

        Returns
        -------
        ScoreReport

        Raises
        ------
        DataError
            Bad input, an unknown id under ``unknown="error"``, or more unknown rows than
            ``max_unknown_share`` allows (then nothing is left behind).
        """
        t0 = time.perf_counter()
        mode, fmt = check_output_options(output, format, resume=resume, overwrite=overwrite)
        part_rows = positive_int("--part-rows", part_rows or None, DEFAULT_PART_ROWS)
        source = open_input(self, input, dialect)
        keep = self.resolve_keep(source.schema.names, keep, source.path)
        rep = ScoreReport(
            input=os.fspath(input),
            output=os.fspath(output),
            output_mode=mode,
            format=fmt,
            unknown_policy=self.unknown,
            max_unknown_share=self.max_unknown_share,
            provider=self.provider,
            batch_size=self.batch_size,
            warnings=list(self.warnings),
        )
        # nothing between opening the output (its temporary file) and the cleanup write_scores owns
        writer = open_output(self, input, source, output, keep, mode=mode, fmt=fmt, part_rows=part_rows,
                             resume=resume, overwrite=overwrite)
        write_scores(self, source, keep, writer, progress, rep)
        rep.seconds = time.perf_counter() - t0
        rep.rows_per_s = rep.rows_read / rep.seconds if rep.seconds > 0 else 0.0
        if report is not None:
            write_json(report, rep.to_dict())
        return rep

    def close(self) -> None:
        """Release the inference threads."""
        self._session.close()


def score(
    bundle,
    input,
    output,
    *,
    device: str = "auto",
    user_col: str | None = None,
    item_col: str | None = None,
    unknown: str = "fallback",
    clip: bool = False,
    batch_size: int | None = None,
    threads: int | None = None,
    max_unknown_share: float = DEFAULT_MAX_UNKNOWN_SHARE,
    history=None,
    history_update_known: bool = True,
    history_min_ratings: int = DEFAULT_MIN_RATINGS,
    rating_col: str | None = None,
    item_embeddings=None,
    keep=None,
    format: str | None = None,
    part_rows: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    report=None,
    dialect=None,
) -> ScoreReport:
    """Score the (user, item) pairs of ``input`` into ``output`` with ``bundle``: ``recmodels score``.

    A :class:`Scorer` with the scorer options, then :meth:`Scorer.score_file` with the file options.

    Parameters
    ----------
    bundle : Bundle or path-like
        A bundle written by ``recmodels export``.
    input : path-like
        CSV, ``.csv.gz`` or Parquet file, a directory of Parquet files, or a glob.
    output : path-like
        ``out.parquet`` / ``out.csv``: one file, renamed into place when complete; a path without
        an extension: a directory of part files plus ``_SUCCESS``.
    device, user_col, item_col, unknown, clip, batch_size, threads, max_unknown_share
        As for :class:`Scorer`: the device, the input's id columns (default: the bundle's), the
        unknown-id policy (``fallback``, ``skip``, ``error``), clipping to the rating range, rows
        per batch, CPU threads, and the unknown-id guard (1 turns it off).
    history, history_update_known, history_min_ratings, rating_col, item_embeddings
        As for :class:`Scorer`: ratings made after training and new hybrid items' vectors, folded in.
    keep, format, part_rows, resume, overwrite, progress, report, dialect
        As for :meth:`Scorer.score_file`: the input columns to pass through, the output format,
        input rows per part file, continuing an interrupted directory output, replacing an existing
        output, a progress bar, a JSON report path, and how delimited text is read.

    Returns
    -------
    ScoreReport

    Examples
    --------
    >>> score("bundles/neumf", "pairs.parquet", "scores/", unknown="skip")   # doctest: +SKIP
    """
    scorer = Scorer(bundle, device=device, user_col=user_col, item_col=item_col, unknown=unknown, clip=clip,
                    batch_size=batch_size, threads=threads, max_unknown_share=max_unknown_share,
                    history=history, history_update_known=history_update_known,
                    history_min_ratings=history_min_ratings, rating_col=rating_col,
                    item_embeddings=item_embeddings)
    try:
        return scorer.score_file(input, output, keep=keep, format=format, part_rows=part_rows, resume=resume,
                                 overwrite=overwrite, progress=progress, report=report, dialect=dialect)
    finally:
        scorer.close()


def score_frame(
    bundle,
    frame: pd.DataFrame,
    *,
    device: str = "auto",
    user_col: str | None = None,
    item_col: str | None = None,
    unknown: str = "fallback",
    clip: bool = False,
    batch_size: int | None = None,
    threads: int | None = None,
    max_unknown_share: float = DEFAULT_MAX_UNKNOWN_SHARE,
    history=None,
    history_update_known: bool = True,
    history_min_ratings: int = DEFAULT_MIN_RATINGS,
    rating_col: str | None = None,
    item_embeddings=None,
    keep=None,
) -> pd.DataFrame:
    """Score a DataFrame with ``bundle``: a :class:`Scorer`, then :meth:`Scorer.score_frame`.

    Parameters
    ----------
    bundle : Bundle or path-like
    frame : pandas.DataFrame
        The (user, item) pairs, with any other columns.
    device, user_col, item_col, unknown, clip, batch_size, threads, max_unknown_share
        As for :class:`Scorer`: the device, the input's id columns (default: the bundle's), the
        unknown-id policy (``fallback``, ``skip``, ``error``), clipping to the rating range, rows
        per batch, CPU threads, and the unknown-id guard (1 turns it off).
    history, history_update_known, history_min_ratings, rating_col, item_embeddings
        As for :class:`Scorer`: ratings made after training and new hybrid items' vectors, folded in.
    keep : list of str or str, optional
        The columns of ``frame`` to pass through (default: all).

    Returns
    -------
    pandas.DataFrame
        The kept columns, ``known`` (policy ``fallback``) and ``score``; ``frame``'s index.
    """
    scorer = Scorer(bundle, device=device, user_col=user_col, item_col=item_col, unknown=unknown, clip=clip,
                    batch_size=batch_size, threads=threads, max_unknown_share=max_unknown_share,
                    history=history, history_update_known=history_update_known,
                    history_min_ratings=history_min_ratings, rating_col=rating_col,
                    item_embeddings=item_embeddings)
    try:
        return scorer.score_frame(frame, keep=keep)
    finally:
        scorer.close()
