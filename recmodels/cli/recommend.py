"""``recmodels recommend BUNDLE OUTPUT --top-k K``: every user's top-K items (torch-free)."""

from __future__ import annotations

import sys

import click

from ..scoring.defaults import DEFAULT_PART_USERS, DEFAULT_TOP_K
from . import options, table_options


@click.command("recommend")
@click.argument("bundle", type=click.Path(file_okay=False, path_type=str))
@click.argument("output", type=click.Path(path_type=str))
@click.option(
    "--top-k", "-k", "top_k", type=int, default=DEFAULT_TOP_K, show_default=True, help="Items per user."
)
@click.option(
    "--users",
    "users",
    default=None,
    metavar="FILE",
    help="CSV/Parquet with one user id column: recommend for these users only (default: all).",
)
@click.option(
    "--items",
    "items",
    default=None,
    metavar="FILE",
    help="CSV/Parquet with one item id column: the candidate items (default: all).",
)
@click.option(
    "--exclude-seen",
    default=None,
    metavar="INTERACTIONS",
    help="CSV/Parquet of (user, item) pairs never to recommend, e.g. the training ratings.",
)
@click.option("--user-col", default=None, help="User id column of the inputs (default: the bundle's).")
@click.option("--item-col", default=None, help="Item id column of the inputs (default: the bundle's).")
@click.option("--users-col", default=None, help="--users file's id column (default: --user-col's rule).")
@click.option("--items-col", default=None, help="--items file's id column (default: --item-col's rule).")
@table_options.csv_options
@click.option(
    "--candidates",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="NeuMF/hybrid: retrieve N items per user by the dot-product part, re-rank them "
    "with the full model (fast, approximate).",
)
@options.history
@options.max_unknown_share
@options.output_format
@options.device
@options.threads
@options.count("--part-users", f"Directory output: users per part file (default {DEFAULT_PART_USERS}).")
@options.count("--block-users", "Tuning: users per graph call (default by model and device).")
@options.count("--tile-items", "Tuning: items per graph call (default by model and device).")
@options.resume
@options.overwrite
@options.report("users, rows, exclusions, provider, speed")
@options.cluster
@options.quiet
def recommend(
    bundle,
    output,
    top_k,
    users,
    items,
    exclude_seen,
    user_col,
    item_col,
    users_col,
    items_col,
    sep,
    header,
    columns,
    candidates,
    folding,
    max_unknown_share,
    fmt,
    device,
    threads,
    part_users,
    block_users,
    tile_items,
    resume,
    overwrite,
    report_path,
    cluster,
    quiet,
):
    """Write the top-K items of every user in BUNDLE (or of --users) to OUTPUT.

    \b
    OUTPUT  out.parquet / out.csv: one file (renamed into place when complete);
            a path without extension: part files + _SUCCESS (resumable with --resume).
    Rows: user id, rank, item id, score; the ids as the bundle names and types them.
    With --engine dask|spark: one task per part of --part-users users (docs/distributed.md).
    """
    import warnings

    from ..errors import ConfigError
    from ..scoring.recommendation.recommender import Recommender, check_top_k

    check_top_k(top_k)
    dialect = table_options.dialect(sep, header, columns, engine=cluster.engine)
    ranking = dict(device=device, candidates=candidates, block_users=block_users, tile_items=tile_items,
                   **folding)
    inputs = dict(k=top_k, users=users, items=items, exclude_seen=exclude_seen, user_col=user_col,
                  item_col=item_col, max_unknown_share=max_unknown_share)
    writing = dict(format=fmt, part_users=part_users, overwrite=overwrite, report=report_path)
    if not cluster.local:
        from ..engines.driver import check_engine_options

        check_engine_options(cluster.engine, resume=resume, command="recommend")
        if users_col is not None or items_col is not None:
            raise ConfigError("--users-col / --items-col run with --engine local only for now; "
                              "rename the list's column to --user-col / --item-col")
        options.check_bundle(bundle)
        options.claim_output(output, fmt, resume=resume, overwrite=overwrite, command="recommend")
        options.run_on_engine(cluster, "recommend_file", bundle, output, quiet=quiet,
                              threads=threads or 1, **ranking, **inputs, **writing)
        return
    options.check_bundle(bundle)
    options.claim_output(output, fmt, resume=resume, overwrite=overwrite, command="recommend")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # printed below from recommender.warnings
        recommender = Recommender(bundle, threads=threads, **ranking)
    # every input is read and checked before the warnings: a bad input is one line, nothing else
    job = recommender.prepare(users_col=users_col, items_col=items_col, dialect=dialect, **inputs)
    if not quiet:
        options.echo_warnings(recommender.warnings)
    report = recommender.recommend_file(output, resume=resume, progress=not quiet and sys.stderr.isatty(),
                                        job=job, **writing)
    recommender.close()
    if not quiet:
        click.echo(report.summary())
