"""``train_run``: input -> :func:`~recmodels.training.setup.build_setup` -> trained model -> run dir.

Everything ``recmodels train`` does, as one function. All input is read and validated
(by the one training set-up) before the run directory is created, so bad input never leaves
a directory behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import runs
from ..errors import ConfigError, DataError, RunDirError
from ..models.config import DEFAULT_KIND
from .config import RESUMABLE_FIELDS, TrainConfig
from .setup import DataConfig, build_setup

LogFn = Callable[[str], None]


class RunLog:
    """Collects printed lines for ``train.log`` and echoes them."""

    def __init__(self, echo: LogFn | None):
        self.echo = echo
        self.lines: list[str] = []

    def __call__(self, line: str, *, show: bool = True) -> None:
        self.lines.append(line)
        if show and self.echo is not None:
            self.echo(line)

    def save(self, run_dir: Path) -> None:
        runs.write_text(run_dir / runs.LOG_FILE, "\n".join(self.lines) + "\n")


def rating_metrics(model, encoded, device, batch_size: int,
                   grid: tuple[float, float] | None = None) -> dict | None:
    """:func:`recmodels.metrics.rating_metrics` of ``model`` on encoded ratings (None: no part).

    ``grid``: the ``(step, origin)`` hit accuracy rounds to (:func:`recmodels.metrics.rating_grid`
    of the run's ``rating_step`` and ``rating_min``); ``None``: read from the part's ratings.
    """
    if encoded is None:
        return None
    import torch

    from ..metrics import rating_metrics as metrics
    from ..metrics import rating_step
    from .trainer import predict_tensors

    if grid is None:
        ratings = np.asarray(encoded.rating)
        grid = (rating_step(ratings), float(ratings.min()) if ratings.size else 0.0)

    users = torch.from_numpy(np.array(encoded.user_index, dtype=np.int64)).to(device)
    items = torch.from_numpy(np.array(encoded.item_index, dtype=np.int64)).to(device)
    pred = predict_tensors(model, users, items, batch_size).cpu().numpy()
    return metrics(encoded.rating, pred, *grid)


def data_config_from(data_config: DataConfig | None, columns=None, **data_options) -> DataConfig:
    """``data_config`` with ``columns`` (a :class:`recmodels.data.Columns`) and
    :class:`DataConfig` fields given as keywords applied on top."""
    config = data_config or DataConfig()
    if columns is not None:
        config = config.replace(user_col=columns.user, item_col=columns.item,
                                rating_col=columns.rating, timestamp_col=columns.timestamp)
    if data_options:
        try:
            config = config.replace(**data_options)
        except TypeError as exc:
            raise ConfigError(f"unknown data option ({exc})") from None
    return config


def train_run(out: str | os.PathLike, *, data=None, train=None, valid=None, test=None,
              model: str = DEFAULT_KIND, model_options: dict | None = None,
              train_config: TrainConfig | None = None, data_config: DataConfig | None = None,
              columns=None, item_embeddings=None, resume: bool = False, overwrite: bool = False,
              quiet: bool = False, echo: LogFn | None = print, resume_overrides: dict | None = None,
              setup=None, on_epoch: Callable | None = None, **data_options) -> runs.Run:
    """Train a model and write a complete run directory at ``out``.

    Parameters
    ----------
    out : path-like
        The run directory (see ``docs/architecture.md``).
    data : path-like or DataFrame, optional
        One interaction table, split into train/valid/test by ``split``/``fractions``.
    train, valid, test : path-like or DataFrame, optional
        Pre-split tables (instead of ``data``; all three).
    model : {"mf", "neumf", "hybrid"}
    model_options : dict, optional
        The other :class:`~recmodels.models.ModelConfig` fields a user sets (``embedding_dim``,
        ``num_layers``, ``dropouts``, ``init_std``, ``use_bias``).
    train_config : TrainConfig, optional
    data_config : DataConfig, optional
        Columns, rating range, duplicates policy, split, fractions, embedding fill.
    columns : recmodels.data.Columns, optional
        The column names (overrides ``data_config``'s).
    item_embeddings : path-like or DataFrame, optional
        The pretrained item table (hybrid only), id column = the item column.
    resume : bool
        Continue the interrupted run in ``out`` from ``last.pt`` (the data comes from its
        ``split/`` files; the other data arguments are ignored).
    overwrite : bool
        Replace an existing run directory.
    quiet : bool
        No progress bar and no data statistics on screen (still in ``train.log``).
    echo : callable or None
        Where printed lines go.
    resume_overrides : dict, optional
        With ``resume``: new values of ``epochs``, ``patience``, ``device`` or
        ``num_threads`` (:data:`~recmodels.training.config.RESUMABLE_FIELDS`), e.g.
        ``{"epochs": 20}``.
    setup : TrainingSetup, optional
        An already built :func:`~recmodels.training.setup.build_setup` result (its
        ``model_config`` decides the model); the data, model and data-config arguments are
        then not used. ``recmodels tune`` builds the set-up once for all its trials.
    on_epoch : callable, optional
        ``on_epoch(trainer, record, improved)`` after each epoch, once its checkpoints are
        written (the tuner reports the validation RMSE here, and may raise to stop the run).
    **data_options
        :class:`DataConfig` fields (``rating_range=None``, ``split="leave-last-out"``, ...),
        applied over ``data_config``.

    Returns
    -------
    Run
        The finished run, as :func:`recmodels.runs.load_run` returns it.
    """
    out = Path(out)
    runs.check_out_dir(out, resume=resume, overwrite=overwrite)
    if resume:
        return _resume(out, overrides=resume_overrides or {}, quiet=quiet, echo=echo)
    import torch

    from ..data import save_encoded
    from ..devices import resolve_device
    from ..fileio import write_json
    from ..models import build_model

    train_config = train_config or TrainConfig()
    data_config = data_config_from(data_config, columns, **data_options)
    log = RunLog(echo)
    device = resolve_device(train_config.device)
    if setup is None:
        if train is not None and (valid is None or test is None):
            raise ConfigError("--train needs --valid and --test too (or use --data to split one file)")
        setup = build_setup(data=data, train=train, valid=valid, test=test, model=model,
                            model_options=model_options, data_config=data_config,
                            item_embeddings=item_embeddings, seed=train_config.seed,
                            log=lambda line, show=True: log(line, show=not quiet))
    model = setup.model_config.kind

    from .tensors import resolve_for_data

    # batch_size / l2 None: from the data and model, recorded in config.json
    train_config = resolve_for_data(train_config, setup.train, setup.model_config.kind)
    # Input is valid: from here on the run directory exists.
    runs.check_out_dir(out, resume=False, overwrite=overwrite)
    runs.prepare_run_dir(out, overwrite=overwrite)
    write_json(out / runs.CONFIG_FILE,
               runs.run_config(setup.model_config, train_config, setup.data_section))
    setup.user_encoder.save(out / runs.USER_IDS_FILE)
    setup.item_encoder.save(out / runs.ITEM_IDS_FILE)
    for part in runs.SPLIT_PARTS:
        save_encoded(getattr(setup, part), runs.split_path(out, part))
    torch.manual_seed(train_config.seed)
    network = build_model(setup.model_config, pretrained=setup.pretrained)
    log(f"model {model}: {sum(p.numel() for p in network.parameters()):,} parameters, "
        f"device {device}, optimizer {train_config.optimizer}, batch {train_config.batch_size}")
    return _train_and_finish(out, network, train_config, device, setup.train, setup.valid,
                             setup.test, setup.stats, log, quiet, resume_state=None,
                             on_epoch=on_epoch, grid=_rating_grid(setup.data_section))


def resume_config(config: dict, overrides: dict, where: Path) -> TrainConfig:
    """The run's TrainConfig with ``overrides`` applied; only RESUMABLE_FIELDS may change."""
    try:
        train_config = TrainConfig.from_dict(config.get("train", {}))
    except ConfigError as exc:
        raise RunDirError(f"{where}: {exc}") from None
    fixed = {k: v for k, v in overrides.items() if k not in RESUMABLE_FIELDS
             and getattr(train_config, k, object()) != v}
    if fixed:
        name = sorted(fixed)[0]
        raise ConfigError(f"{name}={fixed[name]!r} differs from the run's "
                          f"{getattr(train_config, name, None)!r}; only "
                          f"{', '.join(RESUMABLE_FIELDS)} may change on resume")
    return train_config.replace(**overrides) if overrides else train_config


def _resume(out: Path, *, overrides: dict, quiet: bool, echo: LogFn | None) -> runs.Run:
    from ..data import load_encoded
    from ..devices import resolve_device
    from ..fileio import read_json, write_json
    from ..models import ModelConfig, build_model

    config = runs.load_config(out)
    try:
        model_config = ModelConfig.from_dict(config["model"])
    except ConfigError as exc:
        raise RunDirError(f"{out / runs.CONFIG_FILE}: {exc}") from None
    train_config = resume_config(config, overrides, out / runs.CONFIG_FILE)
    device = resolve_device(train_config.device)
    try:
        parts = {part: load_encoded(runs.split_path(out, part)) for part in runs.SPLIT_PARTS}
    except DataError as exc:
        raise RunDirError(f"{out}: cannot resume, split data unreadable ({exc})") from None
    network = build_model(model_config)
    last = runs.load_torch(out / runs.LAST_FILE)
    if not isinstance(last, dict) or "model" not in last:
        raise RunDirError(f"{out / runs.LAST_FILE}: not a recmodels resume checkpoint; "
                          "pass --overwrite to start again")
    runs.load_weights(network, last["model"], out / runs.LAST_FILE, out / runs.CONFIG_FILE)
    best = None
    if (out / runs.MODEL_FILE).is_file():
        best = runs.load_torch(out / runs.MODEL_FILE)
        runs.load_weights(build_model(model_config), best, out / runs.MODEL_FILE,
                          out / runs.CONFIG_FILE)
    log = RunLog(echo)
    old_log = out / runs.LOG_FILE
    if old_log.is_file():
        log.lines.extend(old_log.read_text(encoding="utf-8").splitlines())
    if overrides:
        write_json(out / runs.CONFIG_FILE, {**config, "train": train_config.to_dict()})
    log(f"resuming {out} after epoch {int(last['epoch'])}")
    stats = {}
    if (out / runs.METRICS_FILE).is_file():
        stats = read_json(out / runs.METRICS_FILE).get("data", {})
    return _train_and_finish(out, network, train_config, device, parts["train"], parts["valid"],
                             parts["test"], stats, log, quiet, resume_state=(last, best),
                             grid=_rating_grid(config.get("data") or {}))


def _rating_grid(data_section: dict) -> tuple[float, float]:
    """What hit accuracy rounds to, from a run's ``config.json["data"]`` (runs made before the
    step was recorded: whole numbers)."""
    from ..metrics import rating_grid

    return rating_grid(data_section.get("rating_step"), data_section.get("rating_min"))


def _train_and_finish(out: Path, network, train_config: TrainConfig, device, train_enc, valid_enc,
                      test_enc, stats, log: RunLog, quiet: bool, resume_state,
                      on_epoch: Callable | None = None,
                      grid: tuple[float, float] = (1.0, 0.0)) -> runs.Run:
    from .trainer import Trainer

    def on_epoch_end(trainer: Trainer, record, improved: bool) -> None:
        if improved:
            runs.save_torch(trainer.best_state_dict, out / runs.MODEL_FILE)
        runs.save_torch(trainer.state_dict(), out / runs.LAST_FILE)
        runs.write_metrics(out, runs.metrics_object(trainer.state.history, trainer.state.best_epoch,
                                                    None, None, stats, **trainer.fit_reports))
        log.save(out)
        if on_epoch is not None:
            on_epoch(trainer, record, improved)

    trainer = Trainer(network, train_config, device, log=log,
                      progress=False if quiet else None, on_epoch_end=on_epoch_end)
    if resume_state is not None:
        last, best = resume_state
        try:
            trainer.load_state_dict(last, best_state_dict=best)
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            from ..errors import first_line

            raise RunDirError(f"{out / runs.LAST_FILE}: cannot resume from it ({first_line(exc)}); "
                              "pass --overwrite to start again") from None
        if not trainer.finished:  # a finished run trained on is in progress again until it ends
            (out / runs.COMPLETE_FILE).unlink(missing_ok=True)
    try:
        trainer.fit(train_enc, valid_enc)
    finally:
        log.save(out)
    if trainer.refit is not None:
        # last.pt first: a run killed in between resumes with the refit done, not redone.
        runs.save_torch(trainer.state_dict(), out / runs.LAST_FILE)
        runs.save_torch(trainer.final_state_dict(), out / runs.MODEL_FILE)
        log.save(out)
    elif not (out / runs.MODEL_FILE).is_file():
        runs.save_torch(trainer.best_state_dict, out / runs.MODEL_FILE)
    network.load_state_dict(trainer.final_state_dict())
    network.eval()
    valid_metrics = rating_metrics(network, valid_enc, device, train_config.eval_batch_size, grid)
    test_metrics = rating_metrics(network, test_enc, device, train_config.eval_batch_size, grid)
    st = trainer.state
    runs.write_metrics(out, runs.metrics_object(st.history, st.best_epoch, valid_metrics,
                                                test_metrics, stats, **trainer.fit_reports))
    runs.plot_loss(st.history, out / runs.LOSS_PLOT_FILE)
    refit = " after the refit" if (trainer.refit_report or {}).get("changed") else ""
    log(f"best epoch {st.best_epoch}{refit}: valid rmse {valid_metrics['rmse']:.4f}")
    log("test: " + "  ".join(f"{k} {test_metrics[k]:.4f}"
                             for k in ("rmse", "mae", "mse", "hit_accuracy"))
        + f"  (n={test_metrics['n']:,})")
    log(f"run directory: {out}")
    log.save(out)
    runs.write_text(out / runs.COMPLETE_FILE, "")
    return runs.load_run(out)


__all__ = ["RunLog", "data_config_from", "rating_metrics", "resume_config", "train_run"]
