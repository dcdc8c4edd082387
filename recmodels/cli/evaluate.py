"""``recmodels evaluate MODEL [DATA]``: rating and ranking metrics of a bundle or a run, with baselines.

A bundle is evaluated torch-free. A run directory is first exported to a temporary bundle (which
needs the ``train`` extra, as ``recmodels export`` does), so both go through the same scoring path;
its training split fits the baselines and its test split is the default DATA.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import click

from ..errors import ConfigError, OutputError
from ..metrics import TIE_RULES
from ..scoring.evaluation.evaluator import DEFAULT_K, DEFAULT_NEGATIVES
from . import options

_BUNDLE_MARKER = "manifest.json"  # recmodels.bundle.MANIFEST_FILE, not imported: --help stays light
_RUN_MARKER = "config.json"  # recmodels.runs.CONFIG_FILE


def _check_output(path: str | None, option: str) -> None:
    """Refuse an output that cannot be written, before any work (nothing is created here)."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{option} {path}: is a directory; give a file name")
    existing = target.resolve().parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: {existing} is not a writable directory; choose another location")


def _split_frame(run_dir: Path, part: str, columns: tuple[str, str, str]):
    """A run's encoded split as raw ids (through the run's own id maps), named by its file."""
    import pandas as pd

    from ..data import load_encoded
    from ..encoders import IdEncoder
    from ..runs import ITEM_IDS_FILE, USER_IDS_FILE, split_path

    path = split_path(run_dir, part)
    encoded = load_encoded(path)
    users = IdEncoder.load(run_dir / USER_IDS_FILE, name="user")
    items = IdEncoder.load(run_dir / ITEM_IDS_FILE, name="item")
    frame = pd.DataFrame({
        columns[0]: users.inverse_transform(encoded.user_index),
        columns[1]: items.inverse_transform(encoded.item_index),
        columns[2]: encoded.rating,
    })
    frame.attrs["source"] = str(path)
    return frame


def evaluate_model(model, data=None, *, train=None, **options):
    """Evaluate a bundle, or a run directory through a temporary bundle.

    Parameters
    ----------
    model : path-like
        A bundle (``manifest.json``) or a finished run directory (``config.json``).
    data : path-like or DataFrame, optional
        Held-out ratings; required for a bundle, the run's ``split/test.parquet`` by default.
    train : path-like or DataFrame, optional
        Training ratings; for a run directory its ``split/train.parquet`` by default.
    **options
        As for :func:`recmodels.scoring.evaluation.evaluator.evaluate`.

    Returns
    -------
    EvaluationReport
    """
    from ..scoring.evaluation.evaluator import evaluate

    path = Path(model)
    if (path / _BUNDLE_MARKER).is_file():
        if data is None:
            raise ConfigError(f"{path} is a bundle: give DATA (only a run directory has a test split "
                              "to default to)")
        return evaluate(path, data, train=train, **options)
    if not (path / _RUN_MARKER).is_file():
        what = "does not exist" if not path.exists() else (
            f"is neither a run directory (no {_RUN_MARKER}) nor a bundle (no {_BUNDLE_MARKER})")
        raise ConfigError(f"{path} {what}; give what `recmodels train` (a run) or `recmodels export` "
                          "(a bundle) wrote")
    from ..export import export_onnx  # needs torch and onnx (the train extra)
    from ..scoring import Bundle

    with tempfile.TemporaryDirectory(prefix="recmodels-evaluate-") as tmp:
        bundle = Bundle.load(export_onnx(path, Path(tmp) / "bundle"))
        defaults = {"user_col": bundle.user_column, "item_col": bundle.item_column,
                    "rating_col": bundle.manifest.rating.column}
        columns = tuple(options.get(name) or default for name, default in defaults.items())
        data = _split_frame(path, "test", columns) if data is None else data
        train = _split_frame(path, "train", columns) if train is None else train
        report = evaluate(bundle, data, train=train, **options)
    report.model.update(path=str(path), exported_from_run=True)
    return report


@click.command("evaluate")
@click.argument("model", type=click.Path(path_type=str))
@click.argument("data", required=False, default=None)
@click.option("--train", default=None, metavar="FILE",
              help="Training ratings (raw ids) for the baselines, buckets and negatives "
                   "[default for a run: its split/train.parquet].")
@click.option("--user-col", default=None, help="User id column [default: the model's].")
@click.option("--item-col", default=None, help="Item id column [default: the model's].")
@click.option("--rating-col", default=None, help="Rating column [default: the model's].")
@click.option("--top-k", "-k", "k", type=int, default=DEFAULT_K, show_default=True,
              help="Cut-off K of HR@K and NDCG@K.")
@click.option("--negatives", type=int, default=DEFAULT_NEGATIVES, show_default=True,
              help="Sampled items the user never rated, ranked with each held-out item.")
@click.option("--all-items", is_flag=True, help="Rank against every item the user never rated instead.")
@click.option("--no-ranking", is_flag=True, help="Rating metrics only.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the negative sampling.")
@click.option("--ties", type=click.Choice(TIE_RULES), default="pessimistic", show_default=True,
              help="How candidates scoring exactly as the held-out item count.")
@click.option("--buckets", default="5,50", show_default=True, metavar="LOW,HIGH",
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
def evaluate(model, data, train, user_col, item_col, rating_col, k, negatives, all_items, no_ranking, seed,
             ties, buckets, no_baselines, clip, device, threads, batch_size, json_path, plot_path, quiet):
    """Evaluate MODEL (a run directory or a bundle) on held-out ratings in DATA.

    \b
    Rating metrics (RMSE, MAE, MSE, hit accuracy) overall, by user activity and for
    unknown ids; HR@K and NDCG@K with each held-out item ranked among sampled items the user
    never rated (the NCF protocol); a global-mean and a user + item bias baseline beside the
    model. DATA defaults to a run directory's test split. See docs/evaluate.md.
    """
    from ..fileio import atomic_path
    from ..scoring.evaluation.evaluator import plot_evaluation, require_matplotlib

    _check_output(json_path, "--json")
    _check_output(plot_path, "--plot")
    if plot_path is not None:
        require_matplotlib()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # CUDA fallback: in the report's notes
        report = evaluate_model(
            model, data, train=train, user_col=user_col, item_col=item_col, rating_col=rating_col, k=k,
            negatives=negatives, all_items=all_items, ranking=not no_ranking, seed=seed, ties=ties,
            buckets=tuple(b.strip() for b in buckets.split(",")), baselines=not no_baselines, clip=clip,
            device=device, threads=threads, batch_size=batch_size,
        )
    if plot_path is not None:
        with atomic_path(plot_path) as tmp:  # the plot is renamed into place only if the JSON is written
            plot_evaluation(report, tmp)
            if json_path is not None:
                report.write_json(json_path)
    elif json_path is not None:
        report.write_json(json_path)
    if not quiet:
        options.echo_warnings(report.warnings)
        click.echo(report.format_table())
        for path in (json_path, plot_path):
            if path is not None:
                click.echo(f"wrote {path}")
