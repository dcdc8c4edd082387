"""One trial of ``tune``: sample the parameters, train through ``train_run`` into the trial's run
directory, report the validation RMSE every epoch (Optuna prunes on it); the enqueued first trial
of each model kind is the configuration ``recmodels train`` would use."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from .. import runs
from ..errors import first_line
from ..fileio import atomic_directory
from ..training.config import TrainConfig
from .layout import (
    TRIALS_DIR,
)
from .results import (
    params_text,
)
from .settings import (
    jsonable,
)
from .space import (
    Param,
    decode_choice,
    model_fields,
    train_fields,
)

# a trial is pruned when its best validation RMSE so far is worse than this percentile of the
# earlier trials' at the same epoch (75: the worst quarter), once PRUNE_STARTUP trials finished
PRUNE_PERCENTILE = 75.0
PRUNE_STARTUP = 4
EXTRA_HINT = "install the tuning extra: pip install 'recmodels[tune]'"
LogFn = Callable[[str], None]


def _base_value(name: str, setup, train_config: TrainConfig):
    if name == "lr":
        return train_config.resolved_lr
    if name == "embedding_lr":
        return train_config.resolved_embedding_lr
    if name == "dropout":
        drops = set(setup.model_config.dropouts)
        return drops.pop() if len(drops) == 1 else None
    if name in train_fields():
        return getattr(train_config, name)
    return getattr(setup.model_config, name)


def start_params(space: dict[str, Param], kind: str, kinds, setup, train_config) -> dict:
    """The enqueued first trial of ``kind``: the starting values that lie in the space.

    A parameter whose starting value is outside the space is drawn; one left to the data
    (``None``, e.g. ``batch_size`` and ``l2`` by default) is not set at all in that trial, so
    the trial is the configuration ``recmodels train`` would use.
    """
    params = {"model": kind} if len(kinds) > 1 else {}
    for name, param in space.items():
        if param.kind == "fixed" or not param.applies_to(kind):
            continue
        value = _base_value(name, setup, train_config)
        if value is None or isinstance(value, bool):
            continue
        if param.kind == "choice":
            if value in param.choices:
                params[name] = value
        elif param.low <= value <= param.high and (param.step is None or param.kind == "int"):
            params[name] = int(value) if param.kind == "int" else float(value)
    return params


class Objective:
    """One trial: sample, train through ``train_run`` into a run dir, report every epoch."""

    def __init__(self, out, kinds, space, setups, train_config, base_model, optuna, say, total,
                 prune, counted):
        self.out, self.kinds, self.space, self.setups = out, kinds, space, setups
        self.train_config, self.base_model, self.optuna = train_config, base_model, optuna
        self.say, self.total, self.prune = say, total, prune
        self.counted = counted  # trials counted towards --trials so far

    def configs(self, trial):
        kind = (trial.suggest_categorical("model", list(self.kinds)) if len(self.kinds) > 1
                else self.kinds[0])
        start = trial.user_attrs.get("start")  # the starting configuration: only its values
        values = {name: decode_choice(p, p.suggest(trial)) for name, p in self.space.items()
                  if p.applies_to(kind) and (start is None or name in start
                                             or _base_value(name, self.setups[kind],
                                                            self.train_config) is not None)}
        train_values = {k: v for k, v in values.items() if k in train_fields()}
        model_values = {k: v for k, v in values.items() if k in model_fields()}
        setup = self.setups[kind]
        layers = model_values.get("num_layers", setup.model_config.num_layers)
        if "dropout" in model_values:
            model_values["dropouts"] = (float(model_values.pop("dropout")),) * layers
        elif "num_layers" in model_values and "dropouts" not in model_values \
                and "dropouts" not in self.base_model:
            model_values["dropouts"] = None  # the default for that many layers
        model_config = setup.model_config.replace(**model_values)
        return kind, dataclasses.replace(setup, model_config=model_config), \
            self.train_config.replace(**train_values)

    def __call__(self, trial) -> float:
        from ..training.pipeline import train_run
        from ..training.trainer import format_record

        kind, setup, train_config = self.configs(trial)
        trial.set_user_attr("model", kind)
        started = time.perf_counter()
        self.counted += 1
        # the trial's number (its row in the table, trials/NNNN) and its place in the budget
        label = f"trial {trial.number} ({self.counted}/{self.total}) {kind}"

        def report(trainer, record, improved) -> None:
            self.say(f"  trial {trial.number} {format_record(record, train_config.epochs, improved)}")
            if trainer.state.epoch < record.epoch:  # discarded: training starts again (implicit probe)
                return
            trial.report(float(record.valid_rmse), record.epoch)
            if self.prune and trial.should_prune():
                trial.set_user_attr("epochs", record.epoch)
                trial.set_user_attr("seconds", time.perf_counter() - started)
                raise self.optuna.TrialPruned(f"pruned at epoch {record.epoch}")

        name = f"{trial.number:04d}"
        try:
            with atomic_directory(self.out / TRIALS_DIR / name) as tmp:
                run = train_run(tmp, setup=setup, train_config=train_config, overwrite=True,
                                quiet=True, echo=None, on_epoch=report)
        except self.optuna.TrialPruned:
            self.say(f"{label}: pruned at epoch {trial.user_attrs.get('epochs')}  "
                     f"{params_text(trial.params)}")
            raise
        except Exception as exc:
            trial.set_user_attr("error", first_line(exc))  # failed, not interrupted: it counts
            self.say(f"{label}: failed ({first_line(exc)})")
            raise
        final = self.out / TRIALS_DIR / name
        log_file = final / runs.LOG_FILE  # it names the temporary directory it was written in
        if log_file.is_file():
            runs.write_text(log_file, log_file.read_text(encoding="utf-8").replace(str(tmp), str(final)))
        metrics = run.metrics
        value = float(metrics["valid"]["rmse"])
        trial.set_user_attr("run_dir", f"{TRIALS_DIR}/{name}")
        trial.set_user_attr("epochs", len(metrics.get("history") or []))
        trial.set_user_attr("best_epoch", metrics.get("best_epoch"))
        trial.set_user_attr("test_rmse", (metrics.get("test") or {}).get("rmse"))
        trial.set_user_attr("seconds", time.perf_counter() - started)
        sections = {**run.config.get("model", {}), **run.config.get("train", {})}
        trial.set_user_attr("defaults", jsonable({  # the values a trial left to the config
            name: sections[name] for name in self.space if name not in trial.params
            and name in sections and self.space[name].applies_to(kind)}))
        best = best_value(trial.study, value)
        self.say(f"{label}: valid_rmse {value:.4f} "
                 f"(best {best:.4f})  {len(metrics.get('history') or [])} epochs  "
                 f"{time.perf_counter() - started:.1f}s  {params_text(trial.params)}")
        return value


def best_value(study, value: float) -> float:
    """The best validation RMSE so far, counting ``value`` (a trial just finished)."""
    try:
        return min(value, study.best_value)
    except ValueError:  # no completed trial yet
        return value
