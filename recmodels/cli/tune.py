"""``recmodels tune``: a hyper-parameter search (Optuna) over ``recmodels train``'s options.

The data, column, model and training options are ``train``'s own table
(:data:`recmodels.cli.train.OPTIONS`, defaults and ``--config`` TOML included): they set what
every trial starts from, and the search space overrides some of them per trial. ``--model``
takes one kind or several, comma-separated. A thin layer over :func:`recmodels.tuning.tune`.
"""

from __future__ import annotations

import dataclasses

import click

from ..models.config import MODEL_KINDS
from ..tuning.layout import DEFAULT_PRUNE_WARMUP, DEFAULT_TRIALS, SETTINGS_FILE
from ..tuning.space import default_space
from .train import OPTIONS as TRAIN_OPTIONS
from .train import Option, add_options, data_config


def _default_space_help() -> str:
    """The ``--search-space`` default, read from the real default space."""
    mf = list(default_space(("mf",)))
    mlp = [n for n in default_space(("neumf",)) if n not in mf]
    other = list(default_space(("mf",), optimizer="adam"))
    return (f"{', '.join(mf)}; with an MLP (neumf, hybrid) also {', '.join(mlp)}; with an "
            f"--optimizer other than rowwise-adagrad: {', '.join(other)}")


_REPLACED = {
    "kind": Option(("--model",), "model", "kind", None,
                   f"Model kind(s) to tune, comma-separated ({','.join(MODEL_KINDS)}); with "
                   "several, the kind is a parameter of the search.", metavar="KIND[,KIND...]"),
    "out": dataclasses.replace(TRAIN_OPTIONS[[o.field for o in TRAIN_OPTIONS].index("out")],
                               help="Output directory: study.db, trials/, best/, trials.csv/.json/.png "
                                    "(required)."),
    "resume": dataclasses.replace(TRAIN_OPTIONS[[o.field for o in TRAIN_OPTIONS].index("resume")],
                                  help="Continue the study in --out (same options; --trials counts "
                                       "its earlier trials)."),
    "overwrite": dataclasses.replace(TRAIN_OPTIONS[[o.field for o in TRAIN_OPTIONS].index("overwrite")],
                                     help="Replace an existing tune directory."),
    "quiet": dataclasses.replace(TRAIN_OPTIONS[[o.field for o in TRAIN_OPTIONS].index("quiet")],
                                 help="No data statistics and no line per trial (the table is printed)."),
}
OPTIONS = tuple(_REPLACED.get(o.field, o) for o in TRAIN_OPTIONS) + (
    Option(("--trials",), "tune", "trials", int,
           "Trials in the study, earlier ones of a resumed study included  [default: "
           f"{DEFAULT_TRIALS} without --timeout]."),
    Option(("--timeout",), "tune", "timeout", float,
           "Seconds for this call: no trial starts after it."),
    Option(("--search-space",), "tune", "search_space", click.Path(dir_okay=False),
           "TOML/JSON file: {low, high, log}, [choices] or a fixed value per parameter  [default: "
           f"{_default_space_help()}]."),
    Option(("--no-prune",), "tune", "no_prune", None,
           "Never stop a trial early (by default a trial whose best validation RMSE is in the "
           "worst quarter of the earlier trials' at the same epoch is pruned).", is_flag=True),
    Option(("--prune-warmup",), "tune", "prune_warmup", click.IntRange(min=0),
           f"Epochs every trial runs before it may be pruned  [default: {DEFAULT_PRUNE_WARMUP}]."),
)


@click.command()
@add_options(OPTIONS, command="tune")
def tune(**options):
    """Search hyper-parameters on the validation split (Optuna) and keep the best run.

    Every trial trains as `recmodels train` would, starting from the options given here, with
    the search space's parameters drawn per trial; bad trials are pruned by their per-epoch
    validation RMSE. The best run is written to OUT/best, a run directory `recmodels export`
    takes. Needs the tuning extra: pip install 'recmodels[tune]'.

    \b
    Examples:
      recmodels tune --data ratings.csv --model mf --trials 20 --epochs 100 --out tuned/mf
      recmodels tune --data ratings.csv --model mf,neumf --timeout 3600 --out tuned/both
      recmodels tune --config train.toml --search-space space.toml --out tuned/custom
      recmodels tune --data ratings.csv --model mf --trials 40 --epochs 100 --out tuned/mf --resume
      recmodels export tuned/mf/best --out bundles/mf
    """
    from ..training.config import TrainConfig
    from ..tuning import tune as run_tune

    if not options["out"]:
        raise click.UsageError("--out DIR is required")
    sections = {s: {o.field: options[o.name] for o in OPTIONS if o.section == s}
                for s in ("model", "train", "data", "csv", "input", "run", "tune")}
    model, inputs, run, extra = sections["model"], sections["input"], sections["run"], sections["tune"]
    kinds = model.pop("kind")
    try:
        run_tune(
            inputs["out"], data=inputs["data"], train=inputs["train"], valid=inputs["valid"],
            test=inputs["test"], model=kinds, model_options=model,
            train_config=TrainConfig(**sections["train"]), data_config=data_config(sections),
            item_embeddings=inputs["item_embeddings"], search_space=extra["search_space"],
            trials=extra["trials"], timeout=extra["timeout"], prune=not extra["no_prune"],
            prune_warmup=(DEFAULT_PRUNE_WARMUP if extra["prune_warmup"] is None
                          else extra["prune_warmup"]),
            resume=run["resume"], overwrite=run["overwrite"], quiet=run["quiet"], echo=click.echo,
        )
    except KeyboardInterrupt:  # one line, not a traceback: the study is kept for --resume
        from pathlib import Path

        if not (Path(inputs["out"]) / SETTINGS_FILE).is_file():
            click.echo("Interrupted before the search started; nothing was written", err=True)
        else:
            click.echo("Interrupted: the unfinished trial is not counted and leaves nothing "
                       f"behind; the finished ones are kept in {inputs['out']}: continue with "
                       "the same command and --resume", err=True)
        raise click.exceptions.Exit(130) from None
