"""Scoring a file, directory or glob into one file or resumable part files (torch-free).

Batches stream from :mod:`recmodels.tables` through the scorer's one path
(:meth:`Scorer.mapped <recmodels.scoring.pairs.scorer.Scorer.mapped>`) into a writer from
:mod:`recmodels.scoring.output.writers`. Nothing is half-written: a single file is renamed into place
when complete; parts carry sidecars; a failed run removes what it wrote.
"""

from __future__ import annotations

import os
import time

from ...errors import ConfigError, DataError
from ...fileio import write_json
from ...tables import DEFAULT_DIALECT, open_table
from ..checks import positive_int
from ..defaults import DEFAULT_PART_ROWS
from ..output.parts import PartLoop, progress_bar, resume_start
from ..output.stream import rebatch
from ..output.writers import FileOutput, PartsOutput, job_settings, resolve_output
from ..unknown_ids import likely_cause, over_share, unknown_share_error
from .report import ScoreReport


def score_file(
    scorer,
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
    """Score ``input`` into ``output`` with ``scorer``.

    Parameters
    ----------
    scorer : Scorer
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
    resume : bool
        Directory output: keep parts already complete and write only the rest.
    overwrite : bool
        Replace an existing output.
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
        ``scorer.max_unknown_share`` allows (then nothing is left behind).
    """

    t0 = time.perf_counter()
    mode, fmt = resolve_output(output, format)
    if resume and mode != "dir":
        raise ConfigError("--resume needs a directory output (a path without an extension)")
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    part_rows = positive_int("--part-rows", part_rows or None, DEFAULT_PART_ROWS)
    source = open_table(input, text_columns=(scorer.user_col, scorer.item_col), what="input",
                        dialect=dialect)
    if source.total_rows == 0:
        raise DataError(f"{source.path}: input has no rows")
    ids = [scorer.user_col, scorer.item_col]
    if source.header_looks_like_data and not set(ids) <= set(source.schema.names):
        raise source.missing_columns_error(ids, "pass --user-col / --item-col")
    keep = scorer.resolve_keep(source.schema.names, keep, source.path)
    columns = [c for c in source.schema.names if c in set(keep) | {scorer.user_col, scorer.item_col}]
    schema = scorer.output_schema(source.schema, keep)
    if mode == "file":
        writer = FileOutput(output, fmt, schema, overwrite=overwrite)
    else:
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
        writer = PartsOutput(
            output, fmt, schema, part_rows=part_rows, job=job, resume=resume, overwrite=overwrite
        )
    rep = ScoreReport(
        input=os.fspath(input),
        output=os.fspath(output),
        output_mode=mode,
        format=fmt,
        unknown_policy=scorer.unknown,
        max_unknown_share=scorer.max_unknown_share,
        provider=scorer.provider,
        batch_size=scorer.batch_size,
        warnings=list(scorer.warnings),
    )
    scorer.reset_counts()
    try:
        _run(scorer, source, columns, keep, writer, part_rows, progress, rep)
    except BaseException as exc:
        if isinstance(exc, DataError) and mode == "dir":
            writer.remove_all()
        else:
            writer.abort()
        raise
    rep.seconds = time.perf_counter() - t0
    rep.rows_per_s = rep.rows_read / rep.seconds if rep.seconds > 0 else 0.0
    for key, value in scorer.counts.items():
        setattr(rep, key, value)
    if scorer.fold is not None:
        rep.history = dict(scorer.fold.stats)
    if report is not None:
        write_json(report, rep.to_dict())
    return rep


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
