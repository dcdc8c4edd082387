"""Options that every writing command shares (``score``, ``recommend``): one definition each.

Each is a click decorator; the help texts say what the option means for any command. Options that
only mean something together come as a group (:func:`option_group`): :data:`history` hands the
command one ``folding`` value, :data:`cluster` one ``cluster`` value.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import click

from ..scoring.defaults import DEFAULT_MAX_UNKNOWN_SHARE, DEFAULT_MIN_RATINGS, ENGINES


def option_group(name: str, build, *decorators):
    """A decorator adding the click options ``decorators`` to a command whose callback takes them
    as ONE parameter, ``name``: ``build(**their values)``, keyed by the options' parameter names.

    ``build`` runs when the command does, before its body, so an error it raises is reported as
    the body's are (one line). The options keep their place in ``--help``.
    """

    def decorate(command):
        params = list(getattr(command, "__click_params__", ()))
        first = len(params)

        @functools.wraps(command)
        def callback(*args, **kwargs):
            values = {param: kwargs.pop(param) for param in grouped}
            return command(*args, **kwargs, **{name: build(**values)})

        callback.__click_params__ = params  # wraps() would share the command's list
        for decorator in reversed(decorators):
            callback = decorator(callback)
        grouped = [param.name for param in params[first:]]
        return callback

    return decorate


output_format = click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet", "csv"]),
    default=None,
    help="Output format (default: from the extension; parquet for a directory).",
)
device = click.option(
    "--device",
    default="auto",
    show_default=True,
    metavar="auto|cpu|cuda[:N]",
    help="auto uses CUDA only if onnxruntime really gets it.",
)
threads = click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU inference threads (default: available CPUs).",
)
max_unknown_share = click.option(
    "--max-unknown-share",
    type=click.FloatRange(0, 1),
    default=DEFAULT_MAX_UNKNOWN_SHARE,
    show_default=True,
    help="Fail (writing nothing) when more than this share of the rows has unknown ids; 1 turns it off.",
)
resume = click.option(
    "--resume",
    is_flag=True,
    help="Directory output: keep complete parts of an interrupted run, write the rest.",
)
overwrite = click.option("--overwrite", is_flag=True, help="Replace an existing output.")
quiet = click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary line.")


def report(what: str):
    """``--report FILE`` (stored as ``report_path``); ``what`` lists what the JSON holds."""
    return click.option(
        "--report",
        "report_path",
        type=click.Path(dir_okay=False, path_type=str),
        default=None,
        help=f"Write a JSON report ({what}).",
    )


engine = click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="local",
    show_default=True,
    help="Where to run: this process, or Dask / Spark (a local cluster unless --scheduler / --master "
    "is given). Needs pip install 'recmodels[dask]' / 'recmodels[spark]'.",
)
scheduler = click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="--engine dask: the scheduler, e.g. tcp://10.0.0.5:8786 (default: a LocalCluster, one "
    "worker per core, stopped at the end).",
)
master = click.option(
    "--master",
    default=None,
    metavar="URL",
    help="--engine spark: the master, e.g. spark://10.0.0.5:7077 or yarn (default: local[*]).",
)


dask_workers = click.option(
    "--dask-workers",
    type=click.Choice(("threads", "processes")),
    default=None,
    help="--engine dask without --scheduler: the local cluster's workers are threads of this "
    "process (default: one copy of the bundle, fast start) or worker processes.",
)


class Cluster(NamedTuple):
    """Where a command runs (``--engine``) and the keyword arguments that choose the cluster of
    ``recmodels.<engine>.score_file`` / ``recommend_file`` (``--scheduler``, ``--dask-workers``,
    ``--master``)."""

    engine: str
    options: dict

    @property
    def local(self) -> bool:
        """Whether the command runs in this process (``--engine local``)."""
        return self.engine == "local"


def engine_options(engine: str, scheduler, dask_workers, master) -> Cluster:
    """Check that --scheduler / --master / --dask-workers go with their engine; the :class:`Cluster`."""
    from ..errors import ConfigError

    if scheduler is not None and engine != "dask":
        raise ConfigError("--scheduler needs --engine dask")
    if master is not None and engine != "spark":
        raise ConfigError("--master needs --engine spark")
    if dask_workers is not None and (engine != "dask" or scheduler is not None):
        raise ConfigError("--dask-workers needs --engine dask without --scheduler (a local cluster)")
    if engine == "dask":
        return Cluster(engine, {"scheduler": scheduler, "processes": dask_workers == "processes"})
    return Cluster(engine, {"master": master} if engine == "spark" else {})


def history_kwargs(history, rating_col, history_update_known, history_min_ratings, item_embeddings) -> dict:
    """The Scorer/Recommender keywords of the history options and ``--item-embeddings`` (every
    engine takes them); only those given, so a bundle without folding support is not asked for it."""
    out = {} if item_embeddings is None else {"item_embeddings": item_embeddings}
    if history is not None:
        out.update(history=history, rating_col=rating_col, history_update_known=history_update_known,
                   history_min_ratings=history_min_ratings)
    return out


history = option_group(
    "folding",
    history_kwargs,
    click.option("--history", "history", default=None, metavar="FILE",
                 help="Ratings made after training (CSV/Parquet, --user-col/--item-col/--rating-col): "
                      "fold new users and items in, update known users (docs/scoring.md)."),
    click.option("--rating-col", default=None, help="--history's rating column (default: the bundle's)."),
    click.option("--history-update-known/--no-history-update-known", default=True, show_default=True,
                 help="Move known users toward their --history ratings."),
    click.option("--history-min-ratings", type=click.IntRange(min=1), default=DEFAULT_MIN_RATINGS,
                 show_default=True, help="New users/items with fewer --history ratings keep the fallback."),
    click.option("--item-embeddings", "item_embeddings", default=None, metavar="FILE",
                 help="Hybrid bundles: pretrained vectors of new items (--item-col + one column per "
                      "dimension, as training's): score/rank them by content (docs/scoring.md)."),
)
"""``--history FILE``, ``--rating-col``, ``--history-update-known/--no-...``, ``--history-min-ratings``,
``--item-embeddings``: the callback takes ``folding``, the Scorer/Recommender keywords
(:func:`history_kwargs`)."""
cluster = option_group("cluster", engine_options, engine, scheduler, dask_workers, master)
"""``--engine``, ``--scheduler``, ``--dask-workers``, ``--master``: the callback takes ``cluster``, a
checked :class:`Cluster`."""


def claim_output(output, fmt, *, resume: bool, overwrite: bool, command: str) -> tuple[str, str]:
    """Before any work: refuse an output the writer would refuse, and hold its lock until the
    command ends (a second run on it refuses in one line). Returns ``(mode, format)``."""
    from ..scoring.output.writers import claim_output as claim

    return click.get_current_context().with_resource(
        claim(output, fmt, resume=resume, overwrite=overwrite, command=command)
    )


def check_bundle(bundle) -> None:
    """A training run given where a bundle is needed: one line saying how to export it."""
    from ..bundle import path_kind  # here, not at import: --help stays light
    from ..errors import BundleError

    if path_kind(bundle) == "run":
        raise BundleError(
            f"{bundle} is a training run, not a bundle; export it first with "
            f"`recmodels export {bundle} --format onnx --out DIR` and give DIR"
        )


def echo_warnings(messages) -> None:
    """Each message as one ``warning: ...`` line on stderr."""
    for message in messages:
        click.echo(f"warning: {message}", err=True)


def run_on_engine(cluster: Cluster, entry: str, *args, quiet: bool, **kwargs):
    """``recmodels.<engine>.<entry>(*args, **cluster.options, **kwargs)``; its warnings and summary
    are printed unless ``quiet``. Returns its report."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # printed below from report.warnings
        report = getattr(engine_module(cluster.engine), entry)(*args, **cluster.options, **kwargs)
    if not quiet:
        echo_warnings(report.warnings)
        click.echo(report.summary())
    return report


def engine_module(engine_name: str):
    """``recmodels.engines.dask`` or ``recmodels.engines.spark``; a missing extra is one line naming it."""
    import importlib

    return importlib.import_module(f"recmodels.{engine_name}")


def count(flag: str, help: str):
    """A positive-integer option whose default the library decides (None when not given)."""
    return click.option(flag, type=click.IntRange(min=1), default=None, help=help)
