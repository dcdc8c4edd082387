"""``recmodels evaluate MODEL [DATA]``: rating and ranking metrics of a bundle or a run, with baselines.

A bundle is evaluated torch-free. A run directory is first exported to a temporary bundle (which
needs the ``train`` extra, as ``recmodels export`` does), so both go through the same scoring path;
its training split fits the baselines and its test split is the default DATA. The library function
is :func:`recmodels.export.evaluate_run.evaluate_model`; this module only parses the options.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import click

from ..errors import OutputError
from ..metrics import TIE_RULES
from ..scoring.defaults import DEFAULT_BUCKETS, DEFAULT_K, DEFAULT_NEGATIVES
from . import options, table_options


def _write_outputs(report, json_path: str | None, plot_path: str | None) -> None:
    """The JSON first (a failed plot never loses it), then the plot; a failure names the file."""
    from ..scoring.evaluation import evaluator

    if json_path is not None:
        report.write_json(json_path)
    if plot_path is not None:
        try:
            evaluator.plot_evaluation(report, plot_path)
        except OSError as exc:
            raise OutputError(f"--plot {plot_path}: cannot write the plot ({exc.strerror or exc})") from None


@click.command("evaluate")
@click.argument("model", type=click.Path(path_type=str))
@click.argument("data", required=False, default=None)
@click.option("--train", default=None, metavar="FILE",
              help="Training ratings (raw ids) for the baselines, buckets and negatives "
                   "[default for a run: its split/train.parquet].")
@click.option("--user-col", default=None, help="User id column [default: the model's].")
@click.option("--item-col", default=None, help="Item id column [default: the model's].")
@click.option("--rating-col", default=None, help="Rating column [default: the model's].")
@table_options.csv_options
@click.option("--top-k", "-k", "k", type=int, default=DEFAULT_K, show_default=True,
              help="Cut-off K of HR@K and NDCG@K.")
@click.option("--negatives", type=int, default=DEFAULT_NEGATIVES, show_default=True,
              help="Sampled items the user never rated, ranked with each held-out item.")
@click.option("--all-items", is_flag=True, help="Rank against every item the user never rated instead.")
@click.option("--no-ranking", is_flag=True, help="Rating metrics only.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the negative sampling.")
@click.option("--ties", type=click.Choice(TIE_RULES), default="pessimistic", show_default=True,
              help="How candidates scoring exactly as the held-out item count.")
@click.option("--buckets", default=",".join(map(str, DEFAULT_BUCKETS)), show_default=True, metavar="LOW,HIGH",
              help="User activity buckets by training ratings: cold < LOW <= medium < HIGH <= heavy.")
@click.option("--no-baselines", is_flag=True, help="Leave out the global-mean and bias baselines.")
@click.option("--clip/--no-clip", default=False, show_default=True,
              help="Clip rating predictions to the model's rating range (ranking uses raw scores).")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]",
              help="auto uses CUDA only if onnxruntime really gets it.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU inference threads.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Rows per scoring batch.")
@click.option("--json", "json_path", default=None, metavar="FILE", help="Write the report as JSON.")
@click.option("--plot", "plot_path", default=None, metavar="FILE.png",
              help="Draw predicted vs true ratings and error by activity bucket (needs matplotlib).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing (use with --json).")
def evaluate(model, data, train, user_col, item_col, rating_col, sep, header, columns, k, negatives,
             all_items, no_ranking, seed, ties, buckets, no_baselines, clip, device, threads, batch_size,
             json_path, plot_path, quiet):
    """Evaluate MODEL (a run directory or a bundle) on held-out ratings in DATA.

    \b
    Rating metrics (RMSE, MAE, MSE, hit accuracy) overall, by user activity and for
    unknown ids; HR@K and NDCG@K with each held-out item ranked among sampled items the user
    never rated (the NCF protocol); a global-mean and a user + item bias baseline beside the
    model. DATA defaults to a run directory's test split. See docs/evaluate.md.
    """
    from ..export.evaluate_run import evaluate_model
    from ..scoring.evaluation.evaluator import require_matplotlib
    from ..scoring.output.lock import output_lock
    from ..scoring.output.paths import check_file_output

    dialect = table_options.dialect(sep, header, columns)
    check_file_output(json_path, "--json")
    check_file_output(plot_path, "--plot", (".png",), "a PNG image")
    if plot_path is not None:
        require_matplotlib()
    with contextlib.ExitStack() as held:  # another run writing the same file: refused before the work
        for path in {json_path, plot_path} - {None}:
            if Path(path).resolve().parent.is_dir():
                held.enter_context(output_lock(path))
        report = _evaluate(evaluate_model, model, data, train=train, user_col=user_col, item_col=item_col,
                           rating_col=rating_col, k=k, negatives=negatives, all_items=all_items,
                           ranking=not no_ranking, seed=seed, ties=ties, buckets=buckets,
                           baselines=not no_baselines, clip=clip, device=device, threads=threads,
                           batch_size=batch_size, dialect=dialect)
        _write_outputs(report, json_path, plot_path)
    if not quiet:
        options.echo_warnings(report.warnings)
        click.echo(report.format_table())
        for path in (json_path, plot_path):
            if path is not None:
                click.echo(f"wrote {path}")


def _evaluate(evaluate_model, model, data, *, buckets: str, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # CUDA fallback: in the report's notes
        return evaluate_model(model, data, buckets=tuple(b.strip() for b in buckets.split(",")), **options)
