"""``recmodels score BUNDLE INPUT OUTPUT``: stream pairs through a bundle's graph (torch-free)."""

from __future__ import annotations

import sys

import click

from ..scoring.defaults import DEFAULT_BATCH_SIZE, DEFAULT_CUDA_BATCH_SIZE, DEFAULT_PART_ROWS, POLICIES
from . import options, table_options


@click.command("score")
@click.argument("bundle", type=click.Path(file_okay=False, path_type=str))
@click.argument("input", type=str)
@click.argument("output", type=click.Path(path_type=str))
@click.option("--user-col", default=None, help="User id column (default: the bundle's).")
@click.option("--item-col", default=None, help="Item id column (default: the bundle's).")
@table_options.csv_options
@click.option(
    "--keep",
    default=None,
    metavar="COL1,COL2",
    help="Input columns to pass through (default: all).",
)
@options.output_format
@click.option(
    "--unknown",
    type=click.Choice(POLICIES),
    default="fallback",
    show_default=True,
    help="Unknown/null ids: fallback score + `known` column, drop the row, or fail.",
)
@options.max_unknown_share
@click.option(
    "--clip/--no-clip",
    default=False,
    show_default=True,
    help="Clip scores to the bundle's rating range.",
)
@options.device
@options.count("--batch-size", f"Rows per pipeline batch (default {DEFAULT_BATCH_SIZE} on CPU, "
               f"{DEFAULT_CUDA_BATCH_SIZE} on CUDA).")
@options.count("--part-rows", f"Directory output: input rows per part file (default {DEFAULT_PART_ROWS}).")
@options.threads
@options.history
@options.resume
@options.overwrite
@options.report("rows, unknown ids, provider, speed")
@options.cluster
@options.quiet
def score(
    bundle,
    input,
    output,
    user_col,
    item_col,
    sep,
    header,
    columns,
    keep,
    fmt,
    unknown,
    max_unknown_share,
    clip,
    device,
    batch_size,
    part_rows,
    threads,
    folding,
    resume,
    overwrite,
    report_path,
    cluster,
    quiet,
):
    """Score (user, item) pairs in INPUT with BUNDLE, writing OUTPUT.

    \b
    INPUT   CSV, .csv.gz, Parquet file, directory of Parquet files, or a quoted glob.
    OUTPUT  out.parquet / out.csv: one file (renamed into place when complete);
            a path without extension: part files + _SUCCESS (resumable with --resume).
    With --engine dask|spark: the same parts, one task each (docs/distributed.md).
    """
    import warnings

    dialect = table_options.dialect(sep, header, columns, engine=cluster.engine)
    options.check_bundle(bundle)
    options.claim_output(output, fmt, resume=resume, overwrite=overwrite, command="score")
    scoring = dict(device=device, user_col=user_col, item_col=item_col, unknown=unknown, clip=clip,
                   batch_size=batch_size, max_unknown_share=max_unknown_share, **folding)
    writing = dict(keep=keep, format=fmt, part_rows=part_rows, resume=resume, overwrite=overwrite,
                   report=report_path)
    if not cluster.local:
        options.run_on_engine(cluster, "score_file", bundle, input, output, quiet=quiet,
                              threads=threads or 1, **scoring, **writing)
        return

    from ..scoring import Scorer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # printed below from scorer.warnings
        scorer = Scorer(bundle, threads=threads, **scoring)
    if not quiet:
        options.echo_warnings(scorer.warnings)
    report = scorer.score_file(input, output, progress=not quiet and sys.stdout.isatty(), dialect=dialect,
                               **writing)
    if not quiet:
        click.echo(report.summary())
