"""``tune``: a hyper-parameter search on the validation split, with Optuna.

The data are read, validated, split and encoded once (:func:`~recmodels.training.setup.build_setup`,
one set-up per model kind); every trial then trains through the same
:func:`~recmodels.training.train_run` as ``recmodels train`` into its own run directory,
reporting the validation RMSE after each epoch so that Optuna's median pruner can stop a trial
whose curve is worse than the others' at the same epoch. The best trial is copied to
``OUT/best/``, a normal run directory. The study lives in ``OUT/study.db`` (Optuna's SQLite
storage: JSON values, no pickle), so a search can be resumed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__, runs
from ..errors import ConfigError
from ..fileio import atomic_directory, read_json, write_json
from ..models.config import DEFAULT_KIND, MODEL_KINDS
from ..training.config import TrainConfig
from ..training.pipeline import data_config_from
from ..training.setup import DataConfig, build_setup
from .layout import (
    BEST_DIR,
    DEFAULT_PRUNE_WARMUP,
    DEFAULT_TRIALS,
    PLOT_FILE,
    STUDY_FILE,
    TABLE_JSON,
    TRIALS_DIR,
)
from .objective import Objective, start_params
from .results import (
    TABLE_CSV,
    format_table,
    plot_trials,
    trial_rows,
    write_csv,
)
from .settings import (
    SETTINGS_FILE,
    check_out,
    check_same_inputs,
    check_same_settings,
    fingerprint,
    jsonable,
    source_text,
)
from .space import (
    Param,
    default_space,
    parse_space,
    read_space,
    space_to_dict,
)
from .study import (
    STUDY_NAME,
    check_study_file,
    counts_as_done,
    is_storage_error,
    open_study,
    tidy_interrupted,
    unreadable_study,
)

# a trial is pruned when its best validation RMSE so far is worse than this percentile of the
# earlier trials' at the same epoch (75: the worst quarter), once PRUNE_STARTUP trials finished
PRUNE_PERCENTILE = 75.0
PRUNE_STARTUP = 4
EXTRA_HINT = "install the tuning extra: pip install 'recmodels[tune]'"
LogFn = Callable[[str], None]


@dataclass
class TuneResult:
    """What :func:`tune` found.

    Attributes
    ----------
    out : Path
        The output directory.
    best_run : Path
        ``OUT/best``: the best trial's run directory (``recmodels export`` takes it).
    best_trial : int
        Its trial number: 0 for the first, as Optuna counts, in the table and ``trials/NNNN``.
    best_value : float
        Its validation RMSE (the objective).
    best_params : dict
        Its sampled parameters (``model`` included when several kinds are tuned).
    best_metrics : dict
        Its ``metrics.json`` ``valid`` and ``test`` sections.
    trials : list of dict
        One row per trial (the ``trials.csv`` columns).
    n_new : int
        Trials finished by this call (the rest come from a resumed study).
    seconds : float
        Wall time of this call.
    """

    out: Path
    best_run: Path
    best_trial: int
    best_value: float
    best_params: dict
    best_metrics: dict
    trials: list[dict] = field(default_factory=list)
    n_new: int = 0
    seconds: float = 0.0

    def frame(self):
        """The trials as a pandas DataFrame (one row per trial)."""
        import pandas as pd

        return pd.DataFrame(self.trials)


def import_optuna():
    """``import optuna``, or an ImportError naming the ``recmodels[tune]`` extra."""
    try:
        import optuna
    except ImportError as exc:
        raise ImportError(f"recmodels tune needs Optuna, which is not installed; {EXTRA_HINT}",
                          name="optuna") from exc
    return optuna


def parse_kinds(model: str | Iterable[str]) -> tuple[str, ...]:
    """``"mf,neumf"`` or ``["mf", "neumf"]`` -> ``("mf", "neumf")`` (checked, no repeats)."""
    items = model.split(",") if isinstance(model, str) else list(model)
    kinds = tuple(dict.fromkeys(str(k).strip() for k in items if str(k).strip()))
    bad = [k for k in kinds if k not in MODEL_KINDS]
    if bad or not kinds:
        raise ConfigError(f"--model {','.join(map(str, items)) or '(none)'}: give one or more of "
                          f"{', '.join(MODEL_KINDS)}, comma-separated")
    return kinds


def check_budget(trials: int | None, timeout: float | None) -> tuple[int | None, float | None]:
    """The budget: ``trials`` in total (a resumed study's included) and/or ``timeout`` seconds.

    Neither given: :data:`DEFAULT_TRIALS` trials. An empty budget (0 trials, a timeout of 0
    or less) is a :class:`ConfigError`.
    """
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        raise ConfigError(f"--trials {trials}: the budget is empty; give at least 1 trial "
                          "(trials= in Python)")
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0
                                    and math.isfinite(timeout)):
        raise ConfigError(f"--timeout {timeout}: the budget is empty; give a positive number of "
                          "seconds (timeout= in Python)")
    if trials is None and timeout is None:
        trials = DEFAULT_TRIALS
    return trials, timeout


def _space(search_space) -> dict[str, Param] | None:
    if search_space is None:
        return None
    if isinstance(search_space, (str, os.PathLike)):
        return read_space(search_space)
    if isinstance(search_space, dict) and all(isinstance(v, Param) for v in search_space.values()):
        return dict(search_space)
    return parse_space(search_space, "search_space")


def tune(out: str | os.PathLike, *, data=None, train=None, valid=None, test=None,
         model: str | Iterable[str] = DEFAULT_KIND, model_options: dict | None = None,
         train_config: TrainConfig | None = None, data_config: DataConfig | None = None,
         columns=None, item_embeddings=None, search_space=None, trials: int | None = None,
         timeout: float | None = None, prune: bool = True,
         prune_warmup: int = DEFAULT_PRUNE_WARMUP, resume: bool = False, overwrite: bool = False,
         quiet: bool = False, echo: LogFn | None = print, **data_options) -> TuneResult:
    """Search hyper-parameters on the validation split and keep the best run.

    Parameters
    ----------
    out : path-like
        The output directory: ``study.db``, ``tune.json``, ``trials/NNNN/`` (a run directory
        per finished trial), ``best/``, ``trials.csv``, ``trials.json``, ``trials.png``.
    data, train, valid, test, item_embeddings, columns, data_config, **data_options
        The input, exactly as for :func:`~recmodels.training.train_run`; read and split once.
    model : str or iterable of str
        One kind (``"mf"``) or several (``"mf,neumf"`` or ``["mf", "neumf"]``); with several,
        the kind is a parameter of the search.
    model_options : dict, optional
        :class:`~recmodels.models.ModelConfig` fields every trial starts from.
    train_config : TrainConfig, optional
        What every trial starts from (``epochs``, ``patience``, ``optimizer``, ``seed``,
        ``device``, ...); the search space overrides its fields. ``seed`` also seeds the
        split and the sampler.
    search_space : dict, path-like or None
        ``{name: {low, high[, log, step]} | [choices] | {choices} | value}`` or a ``.toml`` /
        ``.json`` file holding it (see :mod:`recmodels.tuning.space`); ``None``:
        :func:`~recmodels.tuning.space.default_space`.
    trials : int, optional
        The study's total number of trials, a resumed study's earlier ones included (3 trials,
        then ``resume=True, trials=5`` runs 2 more). Neither ``trials`` nor ``timeout``: 20.
    timeout : float, optional
        Seconds for this call: no new trial starts after it (a running one finishes).
    prune : bool
        Stop a trial whose best validation RMSE so far is in the worst quarter of the earlier
        trials' at the same epoch (``optuna.pruners.PercentilePruner(75)``, once 4 trials
        finished). A pruned trial counts towards ``trials``.
    prune_warmup : int
        Epochs every trial runs before it may be pruned (a higher L2 starts slower and ends
        better: at 5 on the 100k planted set, trials like the best one were pruned).
    resume : bool
        Continue the study in ``out`` with the same settings (a differing one is an error).
    overwrite : bool
        Replace an existing tune directory.
    quiet : bool
        No data statistics and no line per trial (the results table is still printed).
    echo : callable or None
        Where printed lines go.

    Returns
    -------
    TuneResult

    Raises
    ------
    ImportError
        Optuna is not installed (the message names ``pip install 'recmodels[tune]'``).
    ConfigError
        An empty budget, an unknown or invalid search-space parameter, options that differ
        from a resumed study's.
    RunDirError
        ``out`` exists without ``resume``/``overwrite``, or there is nothing to resume.
    DataError
        Bad input data (checked before anything is written).

    Examples
    --------
    >>> from recmodels.datasets import make_ratings
    >>> data = make_ratings(200, 100, 4000, seed=0).ratings
    >>> result = tune("tuned", data=data, model="mf", trials=3,
    ...               train_config=TrainConfig(epochs=3, batch_size=512))  # doctest: +SKIP
    >>> result.best_run                                                     # doctest: +SKIP
    PosixPath('tuned/best')
    """
    started = time.perf_counter()
    optuna = import_optuna()
    out = Path(out)
    echo = echo or (lambda line: None)
    say = (lambda line: None) if quiet else echo
    trials, timeout = check_budget(trials, timeout)
    kinds = parse_kinds(model)
    if not (isinstance(prune_warmup, int) and not isinstance(prune_warmup, bool) and prune_warmup >= 0):
        raise ConfigError(f"--prune-warmup must be a non-negative integer; got {prune_warmup!r}")
    train_config = train_config or TrainConfig()
    data_config = data_config_from(data_config, columns, **data_options)
    space = _space(search_space)
    space = default_space(kinds, train_config.optimizer) if space is None else space
    base_model = dict(model_options or {})
    check_out(out, resume, overwrite)
    if train is not None and (valid is None or test is None):
        raise ConfigError("--train needs --valid and --test too (or use --data to split one file)")
    if "hybrid" not in kinds and item_embeddings is not None:
        raise ConfigError("--item-embeddings (item_embeddings=) is only used by model 'hybrid'; "
                          f"add it to --model (now {','.join(kinds)})")

    settings = jsonable({
        "model": list(kinds),
        "model_options": base_model,
        "train": train_config.to_dict(),
        "data": dataclasses.asdict(data_config),
        "inputs": {name: source_text(src) for name, src in (
            ("data", data), ("train", train), ("valid", valid), ("test", test),
            ("item_embeddings", item_embeddings))},
        "space": space_to_dict(space),
        "prune": bool(prune),
        "prune_warmup": prune_warmup,
    })
    inputs = {"data": data, "train": train, "valid": valid, "test": test,
              "item_embeddings": item_embeddings}
    fingerprints = jsonable({name: fingerprint(src) for name, src in inputs.items()
                             if src is not None})
    if resume:
        check_same_settings(out, settings, space_from=_space_from(search_space))
        check_same_inputs(out, fingerprints)
        check_study_file(out / STUDY_FILE)

    # Read, check and split the input once per kind (nothing is written before this passes).
    setups = {}
    for i, kind in enumerate(kinds):
        log = (lambda line, show=True: say(line) if show else None) if i == 0 else None
        setups[kind] = build_setup(
            data=data, train=train, valid=valid, test=test, model=kind, model_options=base_model,
            data_config=data_config, item_embeddings=item_embeddings if kind == "hybrid" else None,
            seed=train_config.seed, log=log)

    if out.exists() and overwrite:
        shutil.rmtree(out)
    (out / TRIALS_DIR).mkdir(parents=True, exist_ok=True)
    if not resume:
        write_json(out / SETTINGS_FILE, {"recmodels_version": __version__, "study": STUDY_NAME,
                                         "settings": settings, "fingerprints": fingerprints})

    # Optuna logs a failed trial's traceback as a warning; each trial's line says what failed.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage, study = open_study(out, optuna, resume)
    done = [t for t in study.trials if counts_as_done(t, optuna)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=train_config.seed + len(study.trials),
                                             n_startup_trials=8, multivariate=True, group=True)
    pruner = (optuna.pruners.PercentilePruner(PRUNE_PERCENTILE, n_startup_trials=PRUNE_STARTUP,
                                              n_warmup_steps=prune_warmup)
              if prune else optuna.pruners.NopPruner())
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage, sampler=sampler, pruner=pruner)
    if not study.trials:
        for kind in kinds:  # the first trials: the starting configuration of each kind
            start = start_params(space, kind, kinds, setups[kind], train_config)
            study.enqueue_trial(start, user_attrs={"start": sorted(start)})

    n_run = None if trials is None else trials - len(done)
    if n_run is not None and n_run <= 0:
        raise ConfigError(f"--trials {trials}: the study in {out} already has {len(done)} "
                          "finished trial(s); give a larger --trials (or --timeout) to run more")
    if resume:
        say(f"resuming the study in {out}: {len(done)} trial(s) done")
    total = "?" if trials is None else str(trials)
    objective = Objective(out, kinds, space, setups, train_config, base_model, optuna, say,
                           total, prune, len(done))
    from ..errors import DivergedError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.optimize(objective, n_trials=n_run, timeout=timeout, catch=(DivergedError,))
    except KeyboardInterrupt:
        # Optuna has marked the running trial failed (no "error": interrupted, not counted);
        # its partial run directory went with atomic_directory. A later --resume reruns it.
        tidy_interrupted(study, out, optuna)
        raise
    except Exception as exc:
        if is_storage_error(exc):
            raise unreadable_study(out / STUDY_FILE, exc) from None
        raise
    n_new = sum(counts_as_done(t, optuna) for t in study.trials) - len(done)
    result = _finish(out, study, optuna, n_new, time.perf_counter() - started)
    for line in format_table(result.trials, best=result.best_trial).splitlines():
        echo(line)
    echo(f"best trial {result.best_trial}: valid rmse {result.best_value:.4f}, test rmse "
         f"{result.best_metrics.get('test', {}).get('rmse', float('nan')):.4f}; run directory "
         f"{result.best_run} (recmodels export {result.best_run} ...)")
    echo(f"{n_new} trial(s) in {result.seconds:.1f}s; results in {out / TABLE_CSV}, "
         f"{out / TABLE_JSON} and {out / PLOT_FILE}")
    return result


def _space_from(search_space) -> str:
    """Where a call's search space comes from, as messages say it."""
    if search_space is None:
        return "the default space (it follows --model and --optimizer)"
    if isinstance(search_space, (str, os.PathLike)):
        return f"--search-space {search_space}"
    return "search_space="


def _finish(out: Path, study, optuna, n_new: int, seconds: float) -> TuneResult:
    rows = trial_rows(study, optuna)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ConfigError(f"{out}: no trial finished (all pruned or failed; see {TABLE_CSV}); "
                          "check the data and the search space")
    best = study.best_trial
    source = out / best.user_attrs["run_dir"]
    best_dir = out / BEST_DIR
    previous = {}
    if (out / TABLE_JSON).is_file():
        previous = read_json(out / TABLE_JSON).get("best") or {}
    if previous.get("trial") != best.number or not (best_dir / runs.COMPLETE_FILE).is_file():
        with atomic_directory(best_dir, overwrite=True) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
    metrics = runs.load_run(best_dir).metrics
    best_metrics = {"valid": metrics.get("valid"), "test": metrics.get("test"),
                    "best_epoch": metrics.get("best_epoch")}
    best_params = {k: v for k, v in best.params.items()}
    best_params.setdefault("model", best.user_attrs.get("model"))
    write_csv(rows, out / TABLE_CSV)
    write_json(out / TABLE_JSON, jsonable({
        "best": {"trial": best.number, "valid_rmse": best.value, "params": best_params,
                 "run_dir": BEST_DIR, "metrics": best_metrics},
        "trials": rows,
    }))
    plot_trials(rows, out / PLOT_FILE)
    return TuneResult(out=out, best_run=best_dir, best_trial=best.number, best_value=float(best.value),
                      best_params=best_params, best_metrics=best_metrics, trials=rows, n_new=n_new,
                      seconds=seconds)


__all__ = ["TuneResult", "check_budget", "format_table", "import_optuna", "parse_kinds",
           "plot_trials", "trial_rows", "tune"]  # the last three re-exported from .results
