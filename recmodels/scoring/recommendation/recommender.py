"""Top-K items for every user (or a list of users) from a bundle (torch- and scikit-learn-free).

:class:`Recommender` prepares a job once (the user list, the candidate items, the seen pairs as a
:class:`~recmodels.scoring.recommendation.seen.SeenItems` CSR, the checks), then runs chunks of users in
threads (:class:`~recmodels.scoring.recommendation.ranking.RankingPath`) through
:class:`~recmodels.scoring.recommendation.topk.TopKSession` (the bundle's ``recommend.onnx``) and
writes rows ``user_id, rank, item_id, score`` in the bundle's original ids through the same writers
as ``score`` (:mod:`recmodels.scoring.output.writers`: one file renamed into place, or part files of
``part_users`` users each, ``_SUCCESS`` last, resumable). ``candidates=N`` (NeuMF and hybrid) first
retrieves ``N`` items a user with ``retrieve.onnx`` (the dot-product part) and re-ranks them with
``model.onnx`` through the pair-scoring path
(:class:`~recmodels.scoring.runtime.session.ScoringSession`). :func:`recommend` does it all in one
call. See ``docs/recommend.md``.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ...errors import BundleError, ConfigError
from ...fileio import write_json
from ..checks import positive_int
from ..defaults import DEFAULT_MAX_UNKNOWN_SHARE, DEFAULT_MIN_RATINGS, DEFAULT_PART_USERS, DEFAULT_TOP_K
from ..history import FoldIn, check_bundle, fold_in
from ..history.content import content_weights
from ..history.rank import FoldedRanking
from ..output.parts import PartLoop, progress_bar, resume_start
from ..output.writers import FileOutput, PartsOutput, check_output_options, cleanup_on_error
from ..runtime.session import load_bundle
from ..unknown_ids import check_share
from .job import (
    RecommendJob,
    candidate_items,
    check_candidates,
    check_k_fits,
    check_top_k,
    job_digest,
    seen_pairs,
    user_positions,
)
from .ranking import RankingPath, recommend_schema
from .report import RecommendReport

__all__ = [
    "DEFAULT_PART_USERS",
    "DEFAULT_TOP_K",
    "Recommender",
    "check_candidates",
    "check_top_k",
    "recommend",
    "recommend_schema",
]

OLD_BUNDLE = (
    "{path} was exported before recommend existed; re-export it with "
    "`recmodels export RUN --format onnx --out DIR`"
)


class Recommender(RankingPath):
    """Ranks candidate items for users with a bundle's recommend graph on onnxruntime.

    Parameters
    ----------
    bundle : Bundle or path-like
        Exported by a recmodels with ``recommend`` (``graph_recommend`` in its manifest).
    device : {"auto", "cpu", "cuda", "cuda:N"}
        As for ``score``: ``auto`` uses CUDA only if the session really gets it.
    threads : int, optional
        CPU worker threads, each running whole chunks of users (default: the CPUs this process
        may use; one on CUDA).
    candidates : int, optional
        Two-stage mode (NeuMF/hybrid): retrieve this many items a user by the dot-product part,
        re-rank them with the full model. None: exact top-K over every candidate.
    block_users, tile_items : int, optional
        Users per graph call and items per tile (see :data:`recmodels.scoring.recommendation.topk.TILING`).
    history, history_update_known, history_min_ratings, rating_col
        As for :class:`~recmodels.scoring.Scorer`: ratings made after training. Folded-in new users
        are recommended like known users, updated known users with their new rows
        (:mod:`recmodels.scoring.history.rank`); ``exclude_seen`` also excludes the history's pairs.
        New items folded in from the history are candidates beside the bundle's.
    item_embeddings : path-like, DataFrame or pyarrow.Table, optional
        Hybrid bundles: pretrained vectors of items the bundle does not know (id column
        ``item_col``), as for :class:`~recmodels.scoring.Scorer`; those items are candidates too,
        ranked by their content (and their ``history`` ratings).

    Attributes
    ----------
    provider : str
        ``"cpu"`` or ``"cuda:N"``.
    warnings : list of str
        E.g. why CUDA was not used.

    Examples
    --------
    >>> rec = Recommender("bundles/neumf", device="cpu")                      # doctest: +SKIP
    >>> rec.recommend_frame(users=[1, 2], k=5, exclude_seen="ratings.csv")     # doctest: +SKIP
    >>> rec.recommend_file("recs/", k=10, exclude_seen="ratings.parquet")      # doctest: +SKIP
    """

    def __init__(
        self,
        bundle,
        *,
        device: str = "auto",
        threads: int | None = None,
        candidates: int | None = None,
        block_users: int | None = None,
        tile_items: int | None = None,
        history=None,
        history_update_known: bool = True,
        history_min_ratings: int = DEFAULT_MIN_RATINGS,
        rating_col: str | None = None,
        item_embeddings=None,
    ):
        self.bundle = load_bundle(bundle)
        if item_embeddings is not None:
            content_weights(self.bundle)
        if history is not None:
            check_bundle(self.bundle)
        self.history, self.item_embeddings = history, item_embeddings
        self.history_options = {"update_known": history_update_known, "min_ratings": history_min_ratings,
                                "rating_col": rating_col}
        section = self.bundle.manifest.graph_recommend
        if section is None:
            raise BundleError(OLD_BUNDLE.format(path=self.bundle.path))
        positive_int("--threads", threads)
        has_mlp = section.retrieve is not None
        if candidates is not None:
            positive_int("--candidates", candidates)
            if not has_mlp:
                raise ConfigError(
                    f"--candidates needs a NeuMF or hybrid bundle; {self.bundle.path} is "
                    f"{self.bundle.model_kind}, whose exact top-K is already a dot product "
                    "(drop --candidates)"
                )
        self.candidates = None if candidates is None else int(candidates)
        self.warnings: list[str] = []
        self._open_sessions(device, section, threads, block_users, tile_items,
                            pair_scores=history is not None or item_embeddings is not None)

    # -- preparing a job ----------------------------------------------------------------------------
    def prepare(
        self,
        *,
        users=None,
        k: int = DEFAULT_TOP_K,
        items=None,
        exclude_seen=None,
        user_col: str | None = None,
        item_col: str | None = None,
        users_col: str | None = None,
        items_col: str | None = None,
        max_unknown_share: float = DEFAULT_MAX_UNKNOWN_SHARE,
        dialect=None,
    ) -> RecommendJob:
        """Read and check a run's inputs without ranking anything (every input error is raised here).

        Parameters
        ----------
        users, items : path-like or array-like, optional
            A one-column CSV/Parquet file, or the ids: the users (default: every user of the
            bundle) and the candidate items (default: every item).
        k : int
            Items per user.
        exclude_seen : path-like, DataFrame or pyarrow.Table, optional
            (user, item) pairs never to recommend.
        user_col, item_col : str, optional
            Id columns of those inputs (default: the bundle's).
        users_col, items_col : str, optional
            The id column of the ``users`` / ``items`` file when it differs from ``user_col`` /
            ``item_col`` (default: those, then the file's only column).
        max_unknown_share : float
            The ``score`` guard, per list and for the seen pairs.
        dialect : recmodels.tables.CsvDialect, optional
            How delimited text inputs are read.

        Returns
        -------
        RecommendJob
            For :meth:`recommend_file` / :meth:`recommend_table` as ``job``.

        Raises
        ------
        DataError, ConfigError
            ``k`` not positive or above the candidates, an empty list, an id listed twice, no known
            candidate, missing columns, too many unknown ids.
        """
        check_candidates(self.candidates, k)
        report = RecommendReport(
            provider=self.provider,
            mode="exact" if self.candidates is None else "two-stage",
            retrieve_candidates=self.candidates,
            threads=self.threads,
            block_users=self._exact.block_users,
            tile_items=self._exact.tile_items,
            warnings=list(self.warnings),
        )
        fold, b = None, self.bundle
        if self.history is not None or self.item_embeddings is not None:
            fold = self.history if isinstance(self.history, FoldIn) else fold_in(
                b, self.history, self._pairs.run, user_col=user_col or b.user_column,
                item_col=item_col or b.item_column, item_embeddings=self.item_embeddings,
                **self.history_options)
            report.history = dict(fold.stats)
        limit = report.max_unknown_share = check_share(max_unknown_share)
        report.k = k = check_top_k(k)
        user_index = user_positions(b, users, users_col or user_col, dialect, fold, limit, report)
        candidates, new_items = candidate_items(b, items, items_col or item_col, dialect, fold, limit, report)
        check_k_fits(k, candidates.size)
        seen = seen_pairs(b, exclude_seen, user_col, item_col, dialect, fold, limit, report)
        report.users_requested = int(user_index.size)
        job = RecommendJob(user_index, candidates, seen, k, report,
                           job_digest(user_index, candidates, seen, fold, new_items), new_items=new_items)
        if fold is not None:
            schema = self.output_schema()
            job.folded = FoldedRanking(fold, self._pairs.run, job.candidates, b.user_encoder.classes_,
                                       schema.field(0).type, item_classes=b.item_encoder.classes_,
                                       item_type=schema.field(2).type, new_items=job.new_items)
        first = self._first_stage(job)
        report.graph = Path(first.path).name
        if first.whole_catalogue:
            report.block_users, report.tile_items = first.block_users, job.candidates.size
        return job

    # -- public entry points ------------------------------------------------------------------------
    def recommend_table(self, users=None, *, job: RecommendJob | None = None, **inputs) -> pa.Table:
        """Top-``k`` in memory: a ``pyarrow.Table`` with ``user_id, rank, item_id, score``.

        Parameters
        ----------
        users : path-like or array-like, optional
            A one-column CSV/Parquet file or the ids themselves (default: every user).
        job : RecommendJob, optional
            What :meth:`prepare` returned (then no other input is read).
        **inputs
            The other inputs of :meth:`prepare` (``k``, ``items``, ``exclude_seen``, ...).

        Returns
        -------
        pyarrow.Table
            ``k`` rows per known user (fewer when fewer unseen candidates are left), in list
            order, ranks 1..k by score descending, ties by item index. ``last_report`` holds
            the counts.
        """
        job = job or self.prepare(users=users, **inputs)
        batches = []
        for *_, (batch, _known, with_rows, short) in self._run_chunks(
            job, self._spans(0, job.user_index.size, None)
        ):
            batches.append(batch)
            job.report.users_written += with_rows
            job.report.users_short += short
            job.report.rows_written += batch.num_rows
        job.report.users_processed = int(job.user_index.size)
        self.last_report = job.report
        return pa.Table.from_batches(batches, schema=self.output_schema())

    def recommend_frame(self, users=None, **options) -> pd.DataFrame:
        """:meth:`recommend_table` as a pandas DataFrame."""
        return self.recommend_table(users, **options).to_pandas()

    def recommend_file(
        self,
        output,
        *,
        format: str | None = None,
        part_users: int | None = None,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = False,
        report=None,
        job: RecommendJob | None = None,
        **inputs,
    ) -> RecommendReport:
        """Write the top-``k`` of every listed user to ``output``; inputs as :meth:`recommend_table`.

        ``output``: ``*.parquet`` / ``*.csv`` is one file (temporary name, renamed when
        complete); a path without an extension is a directory of part files of ``part_users``
        users (default :data:`DEFAULT_PART_USERS`) plus ``_SUCCESS``, which ``resume`` continues
        after a crash (refused when the inputs or settings differ). ``format`` overrides the
        extension; ``progress`` shows a tqdm bar on stderr; ``report`` also writes the
        :class:`RecommendReport` there as JSON.

        Returns
        -------
        RecommendReport

        Raises
        ------
        DataError, ConfigError, OutputError, BundleError
            One line each; nothing is left behind.
        """
        t0 = time.perf_counter()
        mode, fmt = check_output_options(output, format, resume=resume, overwrite=overwrite)
        part_users = positive_int("--part-users", part_users or None, DEFAULT_PART_USERS)
        job = job or self.prepare(**inputs)
        rep = job.report
        rep.output, rep.output_mode, rep.format = os.fspath(output), mode, fmt
        if mode == "file":
            writer = FileOutput(output, fmt, self.output_schema(), overwrite=overwrite)
        else:
            spec = {
                "bundle": self.bundle.digest,
                "inputs": job.digest,
                "top_k": job.k,
                "candidates": self.candidates,
                "users": job.user_index.size,
            }
            writer = PartsOutput(
                output,
                fmt,
                self.output_schema(),
                part_rows=part_users,
                job=spec,
                resume=resume,
                overwrite=overwrite,
                command="recommend",
            )
        with cleanup_on_error(writer):
            self._write(job, writer, part_users if mode == "dir" else None, progress)
        rep.seconds = time.perf_counter() - t0
        if report is not None:
            write_json(report, rep.to_dict())
        return rep

    def _write(self, job: RecommendJob, writer, part_users: int | None, progress: bool) -> None:
        rep, n = job.report, job.user_index.size
        loop = PartLoop(writer, part_users)
        start = resume_start(writer, part_users, stop=n)
        if loop.part_size:
            rep.parts_resumed = len(writer.complete)
            rep.users_resumed = sum(m["input_rows"] for m in writer.complete.values())
        spans = ((lo, hi) for lo, hi in self._spans(start, n, part_users) if not loop.skip(lo))
        bar = progress_bar(progress, n, rep.users_resumed, unit=" users")
        t0 = time.perf_counter()
        try:
            for lo, hi, (batch, known, with_rows, short) in self._run_chunks(job, spans):
                loop.write(lo, hi - lo, batch)
                rep.users_processed += hi - lo
                rep.pairs_scored += known * job.candidates.size
                rep.users_written += with_rows
                rep.users_short += short
                rep.rows_written += batch.num_rows
                if bar is not None:
                    bar.update(hi - lo)
        finally:
            if bar is not None:
                bar.close()
        loop.commit()
        rep.parts_written += loop.parts_written
        compute = time.perf_counter() - t0
        rep.pairs_per_s = rep.pairs_scored / compute if compute > 0 else 0.0

    def close(self) -> None:
        """Release the pair-scoring threads (two-stage mode)."""
        if self._pairs is not None:
            with contextlib.suppress(Exception):
                self._pairs.close()


def recommend(
    bundle,
    output=None,
    *,
    device: str = "auto",
    threads: int | None = None,
    candidates: int | None = None,
    block_users: int | None = None,
    tile_items: int | None = None,
    history=None,
    history_update_known: bool = True,
    history_min_ratings: int = DEFAULT_MIN_RATINGS,
    rating_col: str | None = None,
    item_embeddings=None,
    k: int = DEFAULT_TOP_K,
    users=None,
    items=None,
    exclude_seen=None,
    user_col: str | None = None,
    item_col: str | None = None,
    users_col: str | None = None,
    items_col: str | None = None,
    max_unknown_share: float = DEFAULT_MAX_UNKNOWN_SHARE,
    dialect=None,
    format: str | None = None,
    part_users: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    report=None,
) -> RecommendReport | pd.DataFrame:
    """Every (listed) user's top-``k`` from ``bundle``: into ``output`` (``recmodels recommend``), or
    in memory as a DataFrame when ``output`` is None.

    A :class:`Recommender` with its options, then :meth:`Recommender.recommend_file` (or
    :meth:`Recommender.recommend_frame` without ``output``).

    Parameters
    ----------
    bundle : Bundle or path-like
        A bundle written by ``recmodels export``.
    output : path-like, optional
        ``out.parquet`` / ``out.csv``: one file, renamed into place when complete; a path without
        an extension: part files of ``part_users`` users plus ``_SUCCESS``. None: return the rows
        (then the output options below must keep their defaults).
    device, threads, candidates, block_users, tile_items
        As for :class:`Recommender`: the device, CPU threads, two-stage retrieval of
        ``candidates`` items per user (NeuMF/hybrid), and the graph-call tiling.
    history, history_update_known, history_min_ratings, rating_col
        As for :class:`Recommender`: ratings made after training, folded in before ranking.
    item_embeddings : path-like, DataFrame or pyarrow.Table, optional
        As for :class:`Recommender`: hybrid bundles' new items from their pretrained vectors.
    k : int
        Items per user.
    items : path-like or array-like, optional
        The candidate items: a one-column CSV/Parquet file or the ids (default: every item).
    exclude_seen : path-like, DataFrame or pyarrow.Table, optional
        (user, item) pairs never to recommend, e.g. the training ratings.
    user_col, item_col : str, optional
        Id columns of those inputs (default: the bundle's).
    users_col, items_col : str, optional
        The id column of the ``users`` / ``items`` file when it differs from ``user_col`` /
        ``item_col``.
    max_unknown_share : float
        The unknown-id guard, per list and for the seen pairs (1 turns it off).
    dialect : recmodels.tables.CsvDialect, optional
        How delimited text inputs are read.
    users : path-like or array-like, optional
        The users: a one-column CSV/Parquet file or the ids (default: every user).
    format, part_users, resume, overwrite, progress, report
        As for :meth:`Recommender.recommend_file`: the output format, users per part file,
        continuing an interrupted directory output, replacing an existing output, a progress bar,
        a JSON report path.

    Returns
    -------
    RecommendReport or pandas.DataFrame
        The report of the written output; without ``output``, the rows ``user_id, rank, item_id,
        score`` (``k`` per known user, fewer when fewer unseen candidates are left, in list order).

    Raises
    ------
    ConfigError
        Output options given without ``output``.

    Examples
    --------
    >>> rep = recommend("bundles/mf", "recs/", k=10, exclude_seen="ratings.parquet")   # doctest: +SKIP
    >>> print(rep.summary())                                                        # doctest: +SKIP
    >>> recommend("bundles/mf", users=[1, 2], k=5).head()                           # doctest: +SKIP
    """
    if output is None:
        given = [name for name, value, default in (
            ("format", format, None), ("part_users", part_users, None), ("resume", resume, False),
            ("overwrite", overwrite, False), ("progress", progress, False), ("report", report, None),
        ) if value is not default]
        if given:
            raise ConfigError(f"recommend: {', '.join(given)} need an output path; give one, or leave "
                              "them out to get the rows as a DataFrame")
    rec = Recommender(bundle, device=device, threads=threads, candidates=candidates,
                      block_users=block_users, tile_items=tile_items, history=history,
                      history_update_known=history_update_known, history_min_ratings=history_min_ratings,
                      rating_col=rating_col, item_embeddings=item_embeddings)
    inputs = dict(k=k, users=users, items=items, exclude_seen=exclude_seen, user_col=user_col,
                  item_col=item_col, users_col=users_col, items_col=items_col,
                  max_unknown_share=max_unknown_share, dialect=dialect)
    try:
        if output is None:
            return rec.recommend_frame(**inputs)
        return rec.recommend_file(output, format=format, part_users=part_users, resume=resume,
                                  overwrite=overwrite, progress=progress, report=report, **inputs)
    finally:
        rec.close()
