"""Options that every writing command shares (``score``, ``recommend``): one definition each.

Each is a click decorator; the help texts say what the option means for any command.
"""

from __future__ import annotations

import click

from ..scoring.defaults import DEFAULT_MAX_UNKNOWN_SHARE, ENGINES

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


def engine_options(engine_name: str, scheduler_address, master_url, workers) -> dict:
    """Check that --scheduler / --master / --dask-workers go with their engine; the keyword
    arguments that choose the cluster of ``recmodels.<engine>.score_file`` / ``recommend_file``."""
    from ..errors import ConfigError

    if scheduler_address is not None and engine_name != "dask":
        raise ConfigError("--scheduler needs --engine dask")
    if master_url is not None and engine_name != "spark":
        raise ConfigError("--master needs --engine spark")
    if workers is not None and (engine_name != "dask" or scheduler_address is not None):
        raise ConfigError("--dask-workers needs --engine dask without --scheduler (a local cluster)")
    if engine_name == "dask":
        return {"scheduler": scheduler_address, "processes": workers == "processes"}
    return {"master": master_url} if engine_name == "spark" else {}


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


def run_on_engine(engine_name: str, cluster: dict, entry: str, *args, quiet: bool, **kwargs):
    """``recmodels.<engine>.<entry>(*args, **cluster, **kwargs)``; its warnings and summary are
    printed unless ``quiet``. Returns its report."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # printed below from report.warnings
        report = getattr(engine_module(engine_name), entry)(*args, **cluster, **kwargs)
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
