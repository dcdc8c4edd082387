"""``recmodels train``: train a rating model and write a run directory.

One table (:data:`OPTIONS`) says which config field each option sets; the defaults and their
``[default: ...]`` help come from the config dataclasses (``ModelConfig``, ``TrainConfig``,
``DataConfig``'s light base ``DataFields``; ``--sep``/``--no-header``/``--columns`` take their
flags, help and defaults, ``CsvDialect``'s, from :mod:`recmodels.cli.table_options`), and a
``--config`` TOML file fills the same options (click's ``default_map``), with flags overriding it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import click
from click.core import ParameterSource

from ..data.settings import DUPLICATE_POLICIES, FILL_MODES, SPLIT_METHODS, DataFields
from ..models.config import DEFAULT_KIND, IMPLICIT_PARTS, MODEL_KINDS, ModelConfig, default_dropouts
from ..training.config import (
    DEFAULT_EMBEDDING_LR,
    DEFAULT_LR,
    OPTIMIZERS,
    PRECISIONS,
    RESUMABLE_FIELDS,
    TrainConfig,
)
from . import table_options


class FloatList(table_options.CommaList):
    """Comma-separated numbers (``0.5,0.3,0.3``); a TOML file gives a list."""

    name = "N,N,..."
    what = "numbers"
    allow_empty = True

    def split(self, value) -> list:
        return [v for v in super().split(value) if v != ""]

    def item(self, value):
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)


@dataclass(frozen=True)
class Option:
    """One ``recmodels train`` option and the config field it sets."""

    flags: tuple[str, ...]
    section: str  # "model", "train", "data", "csv": a config dataclass; "input", "run": none
    field: str
    type: object = None
    help: str = ""
    nargs: int = 1
    metavar: str | None = None
    is_flag: bool = False

    @property
    def name(self) -> str:
        """The parameter (and TOML key) name: the long flag in snake_case."""
        return self.flags[0].split("/")[0].lstrip("-").replace("-", "_")


_PATH = click.Path()
_POSITIVE = click.FloatRange(min=0, min_open=True)
OPTIONS = (
    Option(("--data",), "input", "data", _PATH, "Interactions (CSV/Parquet) split into train/valid/test."),
    Option(("--train",), "input", "train", _PATH, "Pre-split training interactions."),
    Option(("--valid",), "input", "valid", _PATH, "Pre-split validation interactions."),
    Option(("--test",), "input", "test", _PATH, "Pre-split test interactions."),
    Option(("--model",), "model", "kind", click.Choice(MODEL_KINDS), "Architecture."),
    Option(("--item-embeddings",), "input", "item_embeddings", _PATH,
           "Pretrained item table (hybrid): the item id column plus numeric columns."),
    Option(("--embedding-fill",), "data", "embedding_fill", click.Choice(FILL_MODES),
           "Vector for items missing from --item-embeddings."),
    Option(("--user-col",), "data", "user_col", None, "User id column."),
    Option(("--item-col",), "data", "item_col", None, "Item id column."),
    Option(("--rating-col",), "data", "rating_col", None, "Rating column."),
    Option(("--timestamp-col",), "data", "timestamp_col", None,
           "Timestamp column (needed by --split leave-last-out)."),
    Option(("--rating-range",), "data", "rating_range", float,
           "Allowed ratings (others are an error); scores are clipped to this range.", nargs=2,
           metavar="MIN MAX"),
    Option(("--split",), "data", "split", click.Choice(SPLIT_METHODS),
           "How --data is split: random by --fractions, or each user's last rating to test and the "
           "one before to valid."),
    Option(("--fractions",), "data", "fractions", float, "Train/valid/test fractions of a random split.",
           nargs=3, metavar="TRAIN VALID TEST"),
    Option(("--duplicates",), "data", "duplicates", click.Choice(DUPLICATE_POLICIES),
           "Repeated (user, item) pairs: keep the last/first, or fail."),
    Option(table_options.MISSING_RATING[0], "data", "missing_rating", float,
           table_options.MISSING_RATING[2], metavar=table_options.MISSING_RATING[1]),
    Option(table_options.SEP[0], "csv", "sep", None, table_options.SEP[2], metavar=table_options.SEP[1]),
    Option(table_options.HEADER[0], "csv", "header", None, table_options.HEADER[2], is_flag=True),
    Option(table_options.COLUMNS[0], "csv", "columns", table_options.NameList(), table_options.COLUMNS[2],
           metavar=table_options.COLUMNS[1]),
    Option(("--epochs",), "train", "epochs", click.IntRange(min=1), "Maximum epochs."),
    Option(("--batch-size",), "train", "batch_size", click.IntRange(min=1),
           "Rows per step; none: from the data, n_train // 100 within [256, 16384] (config.json "
           "records it)."),
    Option(("--lr",), "train", "lr", _POSITIVE,
           "Learning rate of the dense layers (all layers for adam/sgd/notebook)."),
    Option(("--embedding-lr",), "train", "embedding_lr", _POSITIVE,
           "Row-wise Adagrad learning rate of the embeddings."),
    Option(("--optimizer",), "train", "optimizer", click.Choice(OPTIMIZERS),
           "Optimizer recipe; notebook = Adam for epoch 1, then SGD lr 5e-4."),
    Option(("--l2",), "train", "l2", click.FloatRange(min=0),
           "L2 penalty on looked-up embedding rows; none: from the model and data (NeuMF/hybrid "
           "0.05, MF 5.44 / sqrt(ratings per user x ratings per item) within [0.03, 0.2])."),
    Option(("--l2-frequency-exponent",), "train", "l2_frequency_exponent", click.FloatRange(0, 2),
           "Row-wise Adagrad: a row seen c times per epoch gets l2 * (c / c_mean) ** this."),
    Option(("--l2-bias",), "train", "l2_bias", click.FloatRange(min=0),
           "Row-wise Adagrad: L2 weight of the bias tables."),
    Option(("--patience",), "train", "patience", click.IntRange(min=1),
           "Early stop after this many epochs without a better validation MSE."),
    Option(("--average-decay",), "train", "average_decay", click.FloatRange(0, 1, max_open=True),
           "Weight averaging: EMA of the weights over epochs with this decay (0 = off); "
           "validation, model.pt and export use the average."),
    Option(("--refit/--no-refit",), "train", "refit", None,
           "After the epochs, truncate the GMF tables to the best validated rank and refit them "
           "(and the biases) by ridge regression; needs validation rows.", is_flag=True),
    Option(("--refit-tables/--no-refit-tables",), "train", "refit_tables", None,
           "With implicit parts, the refit also re-solves the implicit tables (off: cheaper on "
           "large sets, less accurate).", is_flag=True),
    Option(("--embedding-dim",), "model", "embedding_dim", click.IntRange(min=1), "GMF width."),
    Option(("--num-layers",), "model", "num_layers", click.IntRange(min=1), "MLP layers."),
    Option(("--dropouts",), "model", "dropouts", FloatList(), "Dropout before each MLP layer."),
    Option(("--init-std",), "model", "init_std", _POSITIVE, "Embeddings start from N(0, init-std)."),
    Option(("--use-bias/--no-bias",), "model", "use_bias", None, "User/item bias terms.", is_flag=True),
    Option(("--implicit",), "model", "implicit", click.Choice(IMPLICIT_PARTS),
           "The implicit signal (SVD++): add to an item's GMF row the raters' vectors (item), to a "
           "user's the rated items' (user), both, or none."),
    Option(("--device",), "train", "device", None, "auto, cpu, cuda, cuda:N (gpu = cuda)."),
    Option(("--threads",), "train", "num_threads", click.IntRange(min=1),
           "CPU threads for torch; none: the cores other processes leave free when the run "
           "starts, kept by its resume (give N for bit-for-bit repeatable runs)."),
    Option(("--eval-batch-size",), "train", "eval_batch_size", click.IntRange(min=1),
           "Rows per forward pass when evaluating."),
    Option(("--precision",), "train", "precision", click.Choice(PRECISIONS),
           "Training forward of the MLP tower in bf16 autocast or fp32 (evaluation is always fp32)."),
    Option(("--seed",), "train", "seed", int, "Seed of split, initialisation, shuffling, dropout."),
    Option(("--out",), "input", "out", _PATH, "Run directory to write (required)."),
    Option(("--resume",), "run", "resume", None, "Continue the interrupted run in --out from last.pt.",
           is_flag=True),
    Option(("--overwrite",), "run", "overwrite", None, "Replace an existing run directory.", is_flag=True),
    Option(("--quiet", "-q"), "run", "quiet", None, "No progress bar and no data statistics.",
           is_flag=True),
)
BY_NAME = {opt.name: opt for opt in OPTIONS}
# DataFields: DataConfig's fields and defaults, light (DataConfig and CsvDialect load the table
# readers, so they are imported only when a command runs)
_CONFIGS = {"model": ModelConfig, "train": TrainConfig, "data": DataFields}


def default(opt: Option):
    """The option's default: its config dataclass field's default (``None``/``False`` otherwise)."""
    if opt.section == "model" and opt.field == "kind":
        return DEFAULT_KIND
    if opt.section == "csv":
        return table_options.DEFAULTS[opt.field]
    if opt.section in _CONFIGS:
        return {f.name: f.default for f in dataclasses.fields(_CONFIGS[opt.section])}[opt.field]
    return False if opt.is_flag else None


def _text(opt: Option, value) -> str:
    """``value`` as it is spelled on the command line (a flag pair names the side)."""
    if opt.is_flag:
        return opt.flags[0].split("/")[0 if value else -1]
    if value is None:
        return "none"
    values = value if isinstance(value, (tuple, list)) else (value,)
    return " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def default_text(opt: Option) -> str | None:
    """How the help shows the option's default (``None``: no default to show)."""
    value = default(opt)
    if opt.section not in _CONFIGS:
        return None
    special = {
        "lr": lambda: "the optimizer's: " + ", ".join(
            f"{lr:g} ({', '.join(k for k, v in DEFAULT_LR.items() if v == lr)})"
            for lr in sorted(set(DEFAULT_LR.values()))),
        "embedding_lr": lambda: f"{DEFAULT_EMBEDDING_LR:g}",
        "l2_bias": lambda: "--l2",
        "num_threads": lambda: "the free cores",
        "rating_range": lambda: "min and max of the training ratings",
        "dropouts": lambda: "{:g}, then {:g} for each later layer".format(*default_dropouts(2)),
    }
    if opt.field in special:
        return special[opt.field]()
    return None if value is None else _text(opt, value)


def _toml_kind(opt: Option) -> tuple[str, object]:
    """What a TOML value of ``opt`` must be: (description, check)."""
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    if opt.nargs > 1:
        shape = "[" + ", ".join(opt.metavar.split()) + "]"
        return (f"{shape} ({opt.nargs} numbers)",
                lambda v: isinstance(v, list) and len(v) == opt.nargs and all(map(number, v)))
    if opt.is_flag:
        return "true or false", lambda v: isinstance(v, bool)
    if isinstance(opt.type, FloatList):
        return "a list of numbers", lambda v: isinstance(v, list) and all(map(number, v))
    if isinstance(opt.type, table_options.NameList):
        return ("a list of column names (or one string NAME,NAME,...)",
                lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(n, str) for n in v)))
    if opt.type is int or isinstance(opt.type, click.types.IntParamType):
        return "an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)
    if opt.type is float or isinstance(opt.type, click.types.FloatParamType):
        return "a number", number
    if isinstance(opt.type, click.Path):
        return "a string (a path)", lambda v: isinstance(v, str)
    return "a string", lambda v: isinstance(v, str)


def _load_toml(ctx: click.Context, param: click.Parameter, path: str | None, *,
               by_name: dict | None = None, command: str = "train") -> str | None:
    """``--config``: read the TOML file into ``ctx.default_map`` (checked, paths made absolute).

    ``by_name`` is the command's option table by name (default: ``train``'s :data:`BY_NAME`).
    """
    by_name = BY_NAME if by_name is None else by_name
    if path is None:
        return None
    import tomllib

    from ..errors import ConfigError

    try:
        with open(path, "rb") as fh:
            table = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    table = {key.replace("-", "_"): value for key, value in table.items()}
    unknown = sorted(set(table) - set(by_name))
    if unknown:
        raise ConfigError(f"{path}: unknown option(s) {', '.join(unknown)}; "
                          f"see `recmodels {command} --help`")
    params = {p.name: p for p in ctx.command.params}
    folder = Path(path).resolve().parent
    defaults = {}
    for key, value in table.items():
        opt = by_name[key]
        what, check = _toml_kind(opt)
        if not check(value):
            raise ConfigError(f"{path}: {key} must be {what}, got {value!r}")
        try:
            value = params[key].type_cast_value(ctx, tuple(value) if opt.nargs > 1 else value)
        except click.BadParameter as exc:
            raise ConfigError(f"{path}: {key}: {exc.message}") from None
        if isinstance(opt.type, click.Path) and not os.path.isabs(value):
            value = str(folder / value)  # relative to the file, not to where the command runs
        defaults[key] = value
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return path


def add_options(options: tuple[Option, ...] = OPTIONS, *, command: str = "train"):
    """A decorator adding ``options`` (one click option each, defaults and help from the config
    dataclasses) and ``--config FILE.toml`` filling them, to a click command.

    ``recmodels train`` uses :data:`OPTIONS`; ``recmodels tune`` the same table with its own
    additions, so the two commands share every data, column, model and training option.
    """
    import functools

    by_name = {opt.name: opt for opt in options}
    load = functools.partial(_load_toml, by_name=by_name, command=command)

    def decorate(cmd):
        return _add_options(cmd, options, load)

    return decorate


def _add_options(command, options=OPTIONS, load=_load_toml):
    for opt in reversed(options):
        shown = default_text(opt)
        kwargs = dict(help=opt.help + (f"  [default: {shown}]" if shown is not None else ""),
                      default=default(opt))
        if opt.is_flag:
            kwargs.update(is_flag=True)
        else:
            kwargs.update(type=opt.type, nargs=opt.nargs, metavar=opt.metavar)
        command = click.option(*opt.flags, opt.name, **kwargs)(command)
    return click.option("--config", "config_file", type=click.Path(dir_okay=False), is_eager=True,
                        expose_value=False, callback=load,
                        help="TOML file with any of these options (snake_case or kebab-case keys; "
                             "relative paths from the file's folder); flags override it.")(command)


@click.command()
@add_options()
@click.pass_context
def train(ctx: click.Context, **options):
    """Train an MF, NeuMF or hybrid NeuMF rating model and write a run directory.

    \b
    Examples:
      recmodels train --data ratings.csv --model neumf --out runs/neumf
      recmodels train --data ratings.csv --model hybrid \\
          --item-embeddings items.csv --item-col book_id --out runs/hybrid
      recmodels train --config train.toml --epochs 20 --out runs/long
      recmodels train --out runs/neumf --resume
    """
    from ..training.pipeline import train_run

    if not options["out"]:
        raise click.UsageError("--out RUN_DIR is required")
    given = {name for name in options
             if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)}
    sections = {s: {o.field: options[o.name] for o in OPTIONS if o.section == s}
                for s in ("model", "train", "data", "csv", "input", "run")}
    run = sections["run"]
    if run["resume"]:
        overrides = {o.field: options[o.name] for o in OPTIONS
                     if o.section == "train" and o.field in RESUMABLE_FIELDS and o.name in given}
        check_resume(options["out"], options, given)
        train_run(options["out"], resume=True, overwrite=run["overwrite"], quiet=run["quiet"],
                  echo=click.echo, resume_overrides=overrides)
        return
    model = sections["model"]
    kind = model.pop("kind")
    inputs = sections["input"]
    train_run(
        inputs["out"], data=inputs["data"], train=inputs["train"], valid=inputs["valid"],
        test=inputs["test"], model=kind, model_options=model,
        train_config=TrainConfig(**sections["train"]), data_config=data_config(sections),
        item_embeddings=inputs["item_embeddings"], overwrite=run["overwrite"], quiet=run["quiet"],
        echo=click.echo,
    )


def data_config(sections: dict):
    """The :class:`~recmodels.training.setup.DataConfig` of the ``data`` and ``csv`` options
    (``train`` and ``tune``)."""
    from ..training.setup import DataConfig

    return DataConfig(**sections["data"], csv=table_options.dialect(**sections["csv"]))


def _same(a, b) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    if isinstance(a, str) and isinstance(b, str) and a != b and os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return a == b


def check_resume(out: str, options: dict, given: set[str]) -> None:
    """Refuse options given for a resume (flags or TOML) that differ from the run's settings."""
    from .. import runs
    from ..errors import ConfigError, RunDirError
    from ..tables import CsvDialect
    from ..training.setup import run_settings

    runs.check_out_dir(out, resume=True, overwrite=options["overwrite"])
    config = runs.load_config(out)
    try:
        recorded = run_settings(config)
    except ConfigError as exc:
        raise RunDirError(f"{Path(out) / runs.CONFIG_FILE}: {exc}") from None
    may_change = [o for o in OPTIONS if o.section == "train" and o.field in RESUMABLE_FIELDS]
    allowed = ", ".join(o.flags[0] for o in may_change[:-1]) + f" and {may_change[-1].flags[0]}"
    for opt in OPTIONS:
        if opt.name not in given or opt in may_change or opt.section == "run" or opt.name == "out":
            continue
        was, value = recorded[opt.section][opt.field], options[opt.name]
        if opt.field == "sep" and value is not None:
            value = CsvDialect(sep=value).sep  # "tab" is "\t"
        if not _same(value, was):
            now = _text(opt, options[opt.name])
            was = default_text(opt) if was is None and opt.field == "rating_range" else _text(opt, was)
            shown = now if opt.is_flag else f"{opt.flags[0]} {now}"
            raise ConfigError(f"{shown} differs from the run's {was!r}; only {allowed} may change "
                              "on --resume")
