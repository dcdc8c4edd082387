"""``train_run``: data files -> validated, encoded splits -> trained model -> run directory.

Everything ``recmodels train`` does, as one function. All input is read and validated
before the run directory is created, so bad input never leaves a directory behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import runs
from ..errors import ConfigError, DataError, RunDirError
from .config import TrainConfig

LogFn = Callable[[str], None]


@dataclass
class PreparedData:
    """Validated, encoded input of a run (nothing written yet)."""

    train: object  # EncodedRatings
    valid: object
    test: object
    user_encoder: object
    item_encoder: object
    stats: dict
    data_section: dict
    pretrained: np.ndarray | None


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


def _source_name(source) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__


def prepare_data(*, data=None, train=None, valid=None, test=None, columns=None,
                 rating_range=(1.0, 5.0), duplicates: str = "last", split: str = "random",
                 fractions=(0.7, 0.2, 0.1), seed: int = 0, kind: str = "neumf",
                 item_embeddings=None, embedding_fill: str = "zeros",
                 log: LogFn | None = None) -> PreparedData:
    """Read, validate, split and encode the input (and align the pretrained table).

    Raises
    ------
    DataError, ConfigError
        Bad files, columns, values, too few rows, or inconsistent options.
    """
    from .. import data as D
    from ..embeddings import align_item_embeddings, read_item_embeddings

    log = log or (lambda line, show=True: None)
    columns = columns or D.Columns()
    if data is not None and any(x is not None for x in (train, valid, test)):
        raise ConfigError("give either --data or --train/--valid/--test, not both")
    if kind == "hybrid" and item_embeddings is None:
        raise ConfigError("--model hybrid needs --item-embeddings FILE (the pretrained item table)")
    if kind != "hybrid" and item_embeddings is not None:
        raise ConfigError(f"--item-embeddings is only used by --model hybrid, not {kind}")
    read = dict(rating_range=rating_range, duplicates=duplicates)
    if data is not None:
        df = D.read_interactions(data, columns, **read)
        parts = D.split_interactions(df, method=split, fractions=fractions, seed=seed,
                                     columns=columns)
        split_info = parts.to_dict()
        train_df, valid_df, test_df = parts.train, parts.valid, parts.test
        sources = [_source_name(data)]
    elif train is not None:
        if valid is None or test is None:
            raise ConfigError("--train needs --valid and --test too (or use --data to split one file)")
        train_df = D.read_interactions(train, columns, **read)
        valid_df = D.read_interactions(valid, columns, **read)
        test_df = D.read_interactions(test, columns, **read)
        df = pd.concat([train_df, valid_df, test_df], ignore_index=True)
        split_info = {"method": "given", "train": len(train_df), "valid": len(valid_df),
                      "test": len(test_df)}
        sources = [_source_name(s) for s in (train, valid, test)]
    else:
        raise ConfigError("no input: give --data FILE (or --train/--valid/--test)")
    stats = D.describe(df, columns)
    log(D.format_stats(stats))

    user_encoder, item_encoder = D.fit_encoders(train_df, columns)
    train_enc, _ = D.encode(train_df, user_encoder, item_encoder, columns)
    valid_enc, valid_report = D.encode(valid_df, user_encoder, item_encoder, columns)
    test_enc, test_report = D.encode(test_df, user_encoder, item_encoder, columns)
    for name, enc, report in (("validation", valid_enc, valid_report),
                              ("test", test_enc, test_report)):
        dropped = report["rows"] - report["kept"]
        if dropped:
            log(f"{name}: dropped {dropped} of {report['rows']} rows whose user or item is not "
                "in the training part")
        if len(enc) == 0:
            raise DataError(f"too few rows: the {name} part has no rows with users and items "
                            "seen in training; give more data")
    if len(train_enc) < 2:
        raise DataError("too few rows: the training part has fewer than 2 rows; give more data")

    pretrained = None
    data_section = {
        **columns.to_dict(),
        "rating_min": None if rating_range is None else float(rating_range[0]),
        "rating_max": None if rating_range is None else float(rating_range[1]),
        "global_mean": float(np.mean(train_enc.rating, dtype=np.float64)),
        "sources": sources,
        "split": split_info,
        "duplicates": duplicates,
        "encode": {"valid": valid_report, "test": test_report},
    }
    if item_embeddings is not None:
        ids, vectors = read_item_embeddings(item_embeddings, id_col=columns.item)
        aligned = align_item_embeddings(ids, vectors, item_encoder, fill=embedding_fill)
        if aligned.n_matched == 0:
            raise DataError(f"{_source_name(item_embeddings)}: no row matches an item of the "
                            f"training data (column {columns.item!r}); check the ids")
        log(aligned.summary())
        pretrained = aligned.matrix
        data_section["item_embeddings"] = {"source": _source_name(item_embeddings),
                                           **aligned.to_dict()}
    return PreparedData(train_enc, valid_enc, test_enc, user_encoder, item_encoder, stats,
                        data_section, pretrained)


def _metrics_object(history, best_epoch, valid_metrics, test_metrics, stats) -> dict:
    return {"history": history, "best_epoch": best_epoch, "valid": valid_metrics,
            "test": test_metrics, "data": stats}


def _rating_metrics(model, enc, device, batch_size) -> dict:
    import torch

    from ..metrics import rating_metrics
    from .trainer import predict_tensors

    users = torch.from_numpy(np.array(enc.user_index, dtype=np.int64)).to(device)
    items = torch.from_numpy(np.array(enc.item_index, dtype=np.int64)).to(device)
    pred = predict_tensors(model, users, items, batch_size).cpu().numpy()
    return rating_metrics(enc.rating, pred)


def train_run(out: str | os.PathLike, *, data=None, train=None, valid=None, test=None,
              model: str = "neumf", model_options: dict | None = None,
              train_config: TrainConfig | None = None, columns=None,
              rating_range=(1.0, 5.0), duplicates: str = "last", split: str = "random",
              fractions=(0.7, 0.2, 0.1), item_embeddings=None, embedding_fill: str = "zeros",
              resume: bool = False, overwrite: bool = False, quiet: bool = False,
              echo: LogFn | None = print, resume_overrides: dict | None = None) -> runs.Run:
    """Train a model and write a complete run directory at ``out``.

    Parameters
    ----------
    out : path-like
        The run directory (see ``docs/architecture.md``).
    data : path-like or DataFrame, optional
        One interaction table, split into train/valid/test by ``split``/``fractions``.
    train, valid, test : path-like or DataFrame, optional
        Pre-split tables (instead of ``data``).
    model : {"mf", "neumf", "hybrid"}
    model_options : dict, optional
        Other :class:`~recmodels.models.ModelConfig` fields (``embedding_dim``,
        ``num_layers``, ``dropouts``, ``use_bias``, ...).
    train_config : TrainConfig, optional
    columns : recmodels.data.Columns, optional
    rating_range, duplicates, split, fractions
        Passed to :func:`recmodels.data.read_interactions` / ``split_interactions``.
    item_embeddings : path-like or DataFrame, optional
        The pretrained item table (hybrid only), id column = the item column.
    embedding_fill : {"zeros", "mean"}
        Vector for items the table lacks.
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
        With ``resume``: TrainConfig fields to change (e.g. ``{"epochs": 20}``).

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
    from ..models import ModelConfig, build_model

    train_config = train_config or TrainConfig()
    log = RunLog(echo)
    device = resolve_device(train_config.device)
    prepared = prepare_data(
        data=data, train=train, valid=valid, test=test, columns=columns,
        rating_range=rating_range, duplicates=duplicates, split=split, fractions=fractions,
        seed=train_config.seed, kind=model, item_embeddings=item_embeddings,
        embedding_fill=embedding_fill, log=lambda line, show=True: log(line, show=not quiet),
    )
    options = dict(model_options or {})
    if prepared.pretrained is not None:
        options["pretrained_dim"] = int(prepared.pretrained.shape[1])
    model_config = ModelConfig(model, n_users=len(prepared.user_encoder),
                               n_items=len(prepared.item_encoder),
                               global_mean=prepared.data_section["global_mean"], **options)

    # Input is valid: from here on the run directory exists.
    runs.check_out_dir(out, resume=False, overwrite=overwrite)
    runs.prepare_run_dir(out, overwrite=overwrite)
    from ..fileio import write_json

    write_json(out / runs.CONFIG_FILE,
               runs.run_config(model_config, train_config, prepared.data_section))
    prepared.user_encoder.save(out / runs.USER_IDS_FILE)
    prepared.item_encoder.save(out / runs.ITEM_IDS_FILE)
    for part in runs.SPLIT_PARTS:
        save_encoded(getattr(prepared, part), runs.split_path(out, part))
    torch.manual_seed(train_config.seed)
    network = build_model(model_config, pretrained=prepared.pretrained)
    log(f"model {model}: {sum(p.numel() for p in network.parameters()):,} parameters, "
        f"device {device}, optimizer {train_config.optimizer}, batch {train_config.batch_size}")
    return _train_and_finish(out, network, train_config, device, prepared.train, prepared.valid,
                             prepared.test, prepared.stats, log, quiet, resume_state=None)


def _resume(out: Path, *, overrides: dict, quiet: bool, echo: LogFn | None) -> runs.Run:
    from ..data import load_encoded
    from ..devices import resolve_device
    from ..models import ModelConfig, build_model

    config = runs.load_config(out)
    try:
        model_config = ModelConfig.from_dict(config["model"])
        train_config = TrainConfig.from_dict(config.get("train", {}))
        if overrides:
            train_config = train_config.replace(**overrides)
    except ConfigError as exc:
        raise RunDirError(f"{out / runs.CONFIG_FILE}: {exc}") from None
    device = resolve_device(train_config.device)
    try:
        parts = {part: load_encoded(runs.split_path(out, part)) for part in runs.SPLIT_PARTS}
    except DataError as exc:
        raise RunDirError(f"{out}: cannot resume, split data unreadable ({exc})") from None
    last = runs.load_torch(out / runs.LAST_FILE)
    best = runs.load_torch(out / runs.MODEL_FILE) if (out / runs.MODEL_FILE).is_file() else None
    log = RunLog(echo)
    old_log = out / runs.LOG_FILE
    if old_log.is_file():
        log.lines.extend(old_log.read_text(encoding="utf-8").splitlines())
    if overrides:
        from ..fileio import write_json

        write_json(out / runs.CONFIG_FILE, {**config, "train": train_config.to_dict()})
    log(f"resuming {out} after epoch {int(last['epoch'])}")
    network = build_model(model_config)
    stats = {}
    if (out / runs.METRICS_FILE).is_file():
        from ..fileio import read_json

        stats = read_json(out / runs.METRICS_FILE).get("data", {})
    return _train_and_finish(out, network, train_config, device, parts["train"], parts["valid"],
                             parts["test"], stats, log, quiet, resume_state=(last, best))


def _train_and_finish(out: Path, network, train_config: TrainConfig, device, train_enc, valid_enc,
                      test_enc, stats, log: RunLog, quiet: bool, resume_state) -> runs.Run:
    from .trainer import Trainer

    def on_epoch_end(trainer: Trainer, record, improved: bool) -> None:
        if improved:
            runs.save_torch(trainer.best_state_dict, out / runs.MODEL_FILE)
        runs.save_torch(trainer.state_dict(), out / runs.LAST_FILE)
        runs.write_metrics(out, _metrics_object(trainer.state.history, trainer.state.best_epoch,
                                                None, None, stats))
        log.save(out)

    trainer = Trainer(network, train_config, device, log=log,
                      progress=False if quiet else None, on_epoch_end=on_epoch_end)
    if resume_state is not None:
        last, best = resume_state
        trainer.load_state_dict(last, best_state_dict=best)
    try:
        trainer.fit(train_enc, valid_enc)
    finally:
        log.save(out)
    if not (out / runs.MODEL_FILE).is_file():
        runs.save_torch(trainer.best_state_dict, out / runs.MODEL_FILE)
    network.load_state_dict(trainer.best_state_dict)
    network.eval()
    valid_metrics = _rating_metrics(network, valid_enc, device, train_config.eval_batch_size)
    test_metrics = _rating_metrics(network, test_enc, device, train_config.eval_batch_size)
    st = trainer.state
    runs.write_metrics(out, _metrics_object(st.history, st.best_epoch, valid_metrics,
                                            test_metrics, stats))
    runs.plot_loss(st.history, out / runs.LOSS_PLOT_FILE)
    log(f"best epoch {st.best_epoch}: valid rmse {valid_metrics['rmse']:.4f}")
    log("test: " + "  ".join(f"{k} {test_metrics[k]:.4f}"
                             for k in ("rmse", "mae", "mse", "hit_accuracy"))
        + f"  (n={test_metrics['n']:,})")
    log(f"run directory: {out}")
    log.save(out)
    runs.write_text(out / runs.COMPLETE_FILE, "")
    return runs.load_run(out)


__all__ = ["PreparedData", "prepare_data", "train_run"]
