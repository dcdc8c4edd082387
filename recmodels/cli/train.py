"""``recmodels train``: train a rating model and write a run directory."""

from __future__ import annotations

import click

# TOML/CLI option name -> where it goes; flags given on the command line override the file.
_OPTIONS = {
    "data": "path", "train": "path", "valid": "path", "test": "path", "model": "str",
    "item_embeddings": "path", "embedding_fill": "str", "user_col": "str", "item_col": "str",
    "rating_col": "str", "timestamp_col": "str", "rating_range": "range", "split": "str",
    "epochs": "int", "batch_size": "int", "lr": "float", "embedding_lr": "float",
    "optimizer": "str", "l2": "float", "patience": "int", "device": "str", "seed": "int",
    "out": "path", "duplicates": "str", "embedding_dim": "int", "num_layers": "int",
    "use_bias": "bool", "threads": "int", "precision": "str",
}
_DEFAULTS = {"model": "neumf", "embedding_fill": "zeros", "user_col": "user_id",
             "item_col": "item_id", "rating_col": "rating", "rating_range": (1.0, 5.0),
             "split": "random", "duplicates": "last", "device": "auto", "seed": 0}


def _load_toml(path: str) -> dict:
    import tomllib

    from ..errors import ConfigError

    try:
        with open(path, "rb") as fh:
            table = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    table = {key.replace("-", "_"): value for key, value in table.items()}
    unknown = sorted(set(table) - set(_OPTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown option(s) {', '.join(unknown)}; "
                          "see `recmodels train --help`")
    for key, value in table.items():
        kind = _OPTIONS[key]
        if kind == "range":
            if not (isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value)):
                raise ConfigError(f"{path}: rating_range must be [MIN, MAX] (two numbers), got {value!r}")
            table[key] = tuple(float(v) for v in value)
        elif not _TOML_TYPES[kind][1](value):
            raise ConfigError(f"{path}: {key} must be {_TOML_TYPES[kind][0]}, got {value!r}")
    return table


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# option kind -> (description for messages, check of a TOML value)
_TOML_TYPES = {
    "path": ("a string (a path)", lambda v: isinstance(v, str)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "int": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "float": ("a number", _is_number),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
}


@click.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML file with any of these options (snake_case or kebab-case keys); "
                   "flags override it.")
@click.option("--data", type=click.Path(), help="Interactions (CSV/Parquet) split into train/valid/test.")
@click.option("--train", "train_file", type=click.Path(), help="Pre-split training interactions.")
@click.option("--valid", "valid_file", type=click.Path(), help="Pre-split validation interactions.")
@click.option("--test", "test_file", type=click.Path(), help="Pre-split test interactions.")
@click.option("--model", type=click.Choice(["mf", "neumf", "hybrid"]),
              help="Architecture [default: neumf].")
@click.option("--item-embeddings", type=click.Path(),
              help="Pretrained item table (hybrid): the item id column plus numeric columns.")
@click.option("--embedding-fill", type=click.Choice(["zeros", "mean"]),
              help="Vector for items missing from --item-embeddings [default: zeros].")
@click.option("--user-col", help="User id column [default: user_id].")
@click.option("--item-col", help="Item id column [default: item_id].")
@click.option("--rating-col", help="Rating column [default: rating].")
@click.option("--timestamp-col", help="Timestamp column (needed by --split leave-last-out).")
@click.option("--rating-range", nargs=2, type=float, metavar="MIN MAX",
              help="Allowed rating range [default: 1 5].")
@click.option("--split", type=click.Choice(["random", "leave-last-out"]),
              help="How --data is split (70/20/10 random, or each user's last rating) "
                   "[default: random].")
@click.option("--duplicates", type=click.Choice(["last", "first", "error"]),
              help="Repeated (user, item) pairs: keep the last/first, or fail [default: last].")
@click.option("--epochs", type=click.IntRange(min=1), help="Maximum epochs [default: 10].")
@click.option("--batch-size", type=click.IntRange(min=1), help="Rows per step [default: 16384].")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True),
              help="Learning rate of the dense layers (all layers for adam/sgd/notebook).")
@click.option("--embedding-lr", type=click.FloatRange(min=0, min_open=True),
              help="Row-wise Adagrad learning rate of the embeddings [default: 0.1].")
@click.option("--optimizer",
              type=click.Choice(["rowwise-adagrad", "adam", "sparse-adam", "sgd", "notebook"]),
              help="Optimizer recipe [default: rowwise-adagrad]; notebook = Adam for epoch 1, "
                   "then SGD lr 5e-4.")
@click.option("--l2", type=click.FloatRange(min=0),
              help="L2 penalty on looked-up embedding rows [default: 0.05].")
@click.option("--patience", type=click.IntRange(min=1),
              help="Early stop after this many epochs without a better validation MSE [default: 2].")
@click.option("--embedding-dim", type=click.IntRange(min=1), help="GMF width [default: 32].")
@click.option("--num-layers", type=click.IntRange(min=1), help="MLP layers [default: 3].")
@click.option("--use-bias/--no-bias", default=None, help="User/item bias terms [default: on].")
@click.option("--device", help="auto, cpu, cuda or cuda:N [default: auto].")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for torch.")
@click.option("--precision", type=click.Choice(["bf16", "fp32"]),
              help="Training forward of the MLP tower in bf16 autocast or fp32 (evaluation is "
                   "always fp32) [default: bf16].")
@click.option("--seed", type=int, help="Seed of split, initialisation, shuffling [default: 0].")
@click.option("--out", type=click.Path(), help="Run directory to write (required).")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out from last.pt.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run directory.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no data statistics.")
def train(config_file, **flags):
    """Train an MF, NeuMF or hybrid NeuMF rating model and write a run directory.

    \b
    Examples:
      recmodels train --data ratings.csv --model neumf --out runs/neumf
      recmodels train --data ratings.csv --model hybrid \\
          --item-embeddings items.csv --item-col book_id --out runs/hybrid
      recmodels train --config train.toml --epochs 20 --out runs/long
      recmodels train --out runs/neumf --resume
    """
    from ..errors import ConfigError

    renamed = {"train_file": "train", "valid_file": "valid", "test_file": "test"}
    given = {renamed.get(k, k): v for k, v in flags.items()
             if v is not None and k not in ("resume", "overwrite", "quiet")}
    if given.get("rating_range") == ():
        given.pop("rating_range")
    options = {**_DEFAULTS, **(_load_toml(config_file) if config_file else {}), **given}
    if not options.get("out"):
        raise click.UsageError("--out RUN_DIR is required")
    resume, overwrite, quiet = flags["resume"], flags["overwrite"], flags["quiet"]

    from ..data import Columns
    from ..training import TrainConfig
    from ..training.pipeline import train_run

    train_fields = {"epochs": "epochs", "batch_size": "batch_size", "lr": "lr",
                    "embedding_lr": "embedding_lr", "optimizer": "optimizer", "l2": "l2",
                    "patience": "patience", "device": "device", "seed": "seed",
                    "threads": "num_threads", "precision": "precision"}
    if resume:
        overrides = {train_fields[k]: given[k] for k in ("epochs", "patience", "device", "threads")
                     if k in given}
        train_run(options["out"], resume=True, quiet=quiet, echo=click.echo,
                  resume_overrides=overrides)
        return
    train_kwargs = {field: options[key] for key, field in train_fields.items() if key in options}
    model_options = {k: options[k] for k in ("embedding_dim", "num_layers", "use_bias")
                     if k in options}
    if "num_layers" in model_options and model_options["num_layers"] != 3:
        model_options["dropouts"] = (0.5,) + (0.3,) * (model_options["num_layers"] - 1)
    try:
        train_config = TrainConfig(**train_kwargs)
        columns = Columns(user=options["user_col"], item=options["item_col"],
                          rating=options["rating_col"], timestamp=options.get("timestamp_col"))
    except TypeError as exc:
        raise ConfigError(f"invalid option value ({exc})") from None
    train_run(
        options["out"], data=options.get("data"), train=options.get("train"),
        valid=options.get("valid"), test=options.get("test"), model=options["model"],
        model_options=model_options, train_config=train_config, columns=columns,
        rating_range=tuple(options["rating_range"]), duplicates=options["duplicates"],
        split=options["split"], item_embeddings=options.get("item_embeddings"),
        embedding_fill=options["embedding_fill"], overwrite=overwrite, quiet=quiet,
        echo=click.echo,
    )
