"""Scoring a file, directory or glob into one file or resumable part files (torch-free).

:meth:`Scorer.score_file <recmodels.scoring.pairs.scorer.Scorer.score_file>` opens the input
(:func:`open_input`) and the output (:func:`open_output`), then :func:`write_scores` streams the
batches from :mod:`recmodels.tables` through the scorer's one path
(:meth:`Scorer.mapped <recmodels.scoring.pairs.batches.BatchPath.mapped>`) into a writer from
:mod:`recmodels.scoring.output.writers`. Nothing is half-written: a single file is renamed into place
when complete; parts carry sidecars; a failed run removes what it wrote.
"""

from __future__ import annotations

import os

from ...errors import DataError
from ...tables import DEFAULT_DIALECT, open_table
from ..output.parts import PartLoop, progress_bar, resume_start
from ..output.stream import rebatch
from ..output.writers import FileOutput, PartsOutput, cleanup_on_error, job_settings
from ..unknown_ids import likely_cause, over_share, unknown_share_error
from .report import ScoreReport


def open_input(scorer, input, dialect):
    """``input`` opened for ``scorer`` (:func:`recmodels.tables.open_table`, the id columns read as
    text where they are); refuses an input with no rows, and a header row that looks like data
    without the id columns."""
    source = open_table(input, text_columns=(scorer.user_col, scorer.item_col), what="input",
                        dialect=dialect)
    if source.total_rows == 0:
        raise DataError(f"{source.path}: input has no rows")
    ids = [scorer.user_col, scorer.item_col]
    if source.header_looks_like_data and not set(ids) <= set(source.schema.names):
        raise source.missing_columns_error(ids, "pass --user-col / --item-col")
    return source


def open_output(scorer, input, source, output, keep: list[str], *, mode: str, fmt: str, part_rows: int,
                resume: bool, overwrite: bool):
    """The writer of ``output`` (``mode`` ``"file"`` or ``"dir"``, from
    :func:`~recmodels.scoring.output.writers.check_output_options`); a directory records the
    settings a ``--resume`` must match."""
    schema = scorer.output_schema(source.schema, keep)
    if mode == "file":
        return FileOutput(output, fmt, schema, overwrite=overwrite)
    job = job_settings(
        scorer.bundle.digest,
        os.path.abspath(os.fspath(input)),
        input_rows=source.total_rows,
        unknown=scorer.unknown,
        clip=scorer.clip,
        user_col=scorer.user_col,
        item_col=scorer.item_col,
    )
    if scorer.fold is not None:  # a resume must fold in the same history the same way
        job["history"] = scorer.fold.token
    if source.dialect != DEFAULT_DIALECT:  # a resume must count the rows the same way
        job["csv"] = source.dialect.to_dict()
    return PartsOutput(output, fmt, schema, part_rows=part_rows, job=job, resume=resume, overwrite=overwrite)


def write_scores(scorer, source, keep: list[str], writer, progress: bool, rep: ScoreReport) -> None:
    """Score ``source`` into ``writer``, passing the ``keep`` columns through; counts go to ``rep``.

    Raises :class:`DataError` for bad input, an unknown id under ``unknown="error"`` or more unknown
    rows than ``scorer.max_unknown_share`` allows; then nothing is left behind
    (:func:`~recmodels.scoring.output.writers.cleanup_on_error`).
    """
    with cleanup_on_error(writer):
        columns = [c for c in source.schema.names if c in set(keep) | {scorer.user_col, scorer.item_col}]
        part_rows = writer.part_rows if writer.mode == "dir" else None
        scorer.reset_counts()
        _run(scorer, source, columns, keep, writer, part_rows, progress, rep)
    for key, value in scorer.counts.items():
        setattr(rep, key, value)
    if scorer.fold is not None:
        rep.history = dict(scorer.fold.stats)


def _run(scorer, source, columns, keep, writer, part_rows, progress, rep) -> None:
    loop = PartLoop(writer, part_rows)
    start_row = resume_start(writer, part_rows)
    resumed_unknown = 0
    if loop.part_size:
        rep.parts_resumed = len(writer.complete)
        rep.rows_resumed = sum(m["input_rows"] for m in writer.complete.values())
        resumed_unknown = sum(m.get("unknown_rows", 0) for m in writer.complete.values())
    limit = scorer.max_unknown_share
    total = source.total_rows
    id_cols = (scorer.user_col, scorer.item_col)
    types = {c: source.schema.field(c).type for c in id_cols}
    samples: dict = {}

    def guard(rows: int, final: bool) -> None:
        # Early only when the limit is already certain to be exceeded over the whole input.
        unknown = scorer.counts["unknown_rows"] + resumed_unknown
        if over_share(unknown, rows, limit) and (final or (total is not None and unknown > limit * total)):
            counts = dict(scorer.counts, unknown_rows=unknown)
            cause = likely_cause(scorer.bundle, *id_cols, types, samples)
            raise unknown_share_error(source.path, counts, rows, limit, cause, total)

    def batches():
        raw = source.batches(columns, scorer.batch_size, start_row=start_row)
        for start, batch in rebatch(raw, scorer.batch_size, loop.part_size):
            if not loop.skip(start):
                if not samples:
                    samples.update({c: batch.column(c) for c in id_cols})
                yield start, batch

    bar = progress_bar(progress, source.total_rows, rep.rows_resumed)
    try:
        for m in scorer.mapped(batches()):
            out = scorer.assemble(m, keep)
            unknown = 0 if m.known is None else int((~m.known).sum())
            loop.write(m.start, m.batch.num_rows, out, unknown_rows=unknown)
            rep.rows_read += m.batch.num_rows
            rep.rows_written += out.num_rows
            guard(rep.rows_read + rep.rows_resumed, final=False)
            if bar is not None:
                bar.update(m.batch.num_rows)
    finally:
        if bar is not None:
            bar.close()
    if rep.rows_read == 0 and rep.rows_resumed == 0:
        raise DataError(f"{source.path}: input has no rows")
    guard(rep.rows_read + rep.rows_resumed, final=True)
    loop.commit()
    rep.parts_written += loop.parts_written
