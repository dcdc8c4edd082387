"""The run directory: its layout, writing it during training, and loading it back.

Layout (see ``docs/architecture.md``)::

    RUN_DIR/
      config.json  model.pt  last.pt  user_ids.parquet  item_ids.parquet
      split/{train,valid,test}.parquet  metrics.json  loss.png  train.log  COMPLETE

Every file is written under a temporary name and renamed into place. ``.pt`` files hold
plain dicts of tensors and numbers, so ``torch.load(path, weights_only=True)`` reads them.
``COMPLETE`` is written last; :func:`load_run` refuses a directory without it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .bundle.layout import RUN_CONFIG_FILE
from .encoders import IdEncoder
from .errors import RunDirError, first_line
from .fileio import atomic_path, new_figure, read_json, save_line_plot, write_json

CONFIG_FILE = RUN_CONFIG_FILE  # the torch-free side tells runs from bundles by it
MODEL_FILE = "model.pt"
LAST_FILE = "last.pt"
USER_IDS_FILE = "user_ids.parquet"
ITEM_IDS_FILE = "item_ids.parquet"
SPLIT_DIR = "split"
SPLIT_PARTS = ("train", "valid", "test")
METRICS_FILE = "metrics.json"
LOSS_PLOT_FILE = "loss.png"
LOG_FILE = "train.log"
COMPLETE_FILE = "COMPLETE"


def split_path(run_dir: str | os.PathLike, part: str) -> Path:
    """``RUN_DIR/split/<part>.parquet``."""
    return Path(run_dir) / SPLIT_DIR / f"{part}.parquet"


def save_torch(obj: dict, path: str | os.PathLike) -> Path:
    """``torch.save`` a plain dict atomically."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def load_torch(path: str | os.PathLike) -> dict:
    """``torch.load(path, weights_only=True)`` on the CPU; unreadable -> :class:`RunDirError`."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path}: missing; the run did not write it")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, unpickling refused, truncated file
        raise RunDirError(f"{path}: cannot read checkpoint ({first_line(exc)})") from None


def load_weights(model, state, path: str | os.PathLike, config_path: str | os.PathLike) -> None:
    """``model.load_state_dict(state)``, or one :class:`RunDirError` line when they do not fit.

    Parameters
    ----------
    model : nn.Module
        Built from the run's ``config.json``.
    state : dict
        The weights read from ``path`` (``model.pt``, or ``last.pt["model"]``).
    path, config_path : path-like
        Named in the message.

    Raises
    ------
    RunDirError
        Missing, unexpected or differently shaped tensors (torch's multi-line RuntimeError
        summarised as its first difference), e.g. a checkpoint of another model shape.
    """
    problem = None
    if not isinstance(state, dict):
        problem = f"it holds a {type(state).__name__}, not a state dict"
    else:
        expected = model.state_dict()
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        resizable = getattr(model, "resizable_buffers", set)()
        shapes = [k for k in expected if k in state and hasattr(state[k], "shape") and k not in resizable
                  and tuple(state[k].shape) != tuple(expected[k].shape)]
        if shapes:
            k = shapes[0]
            problem = (f"{k} is {list(state[k].shape)} there but {list(expected[k].shape)} in the "
                       f"model ({len(shapes)} tensor(s) differ)")
        elif missing:
            problem = f"it lacks {missing[0]} ({len(missing)} missing tensor(s))"
        elif unexpected:
            problem = f"it has {unexpected[0]}, which the model lacks ({len(unexpected)} extra)"
    if problem is None:
        try:
            model.load_state_dict(state)
            return
        except (RuntimeError, TypeError, ValueError) as exc:
            problem = first_line(exc)
    raise RunDirError(f"{path} does not fit {config_path}: {problem}; the checkpoint belongs to "
                      "another model shape (start a new run with --overwrite, or use its own run directory)")


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return Path(path)


def is_run_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like a recmodels run directory (has ``config.json``)."""
    return (Path(path) / CONFIG_FILE).is_file()


def _check_replaceable(path: Path, overwrite: bool) -> bool:
    """True if ``path`` exists and may be replaced; raise if it exists and may not."""
    if not path.exists():
        return False
    if not overwrite:
        raise RunDirError(f"{path} already exists; pass --resume to continue it or "
                          "--overwrite to replace it")
    if not path.is_dir() or (any(path.iterdir()) and not is_run_dir(path)):
        raise RunDirError(f"{path} exists and is not a recmodels run directory; "
                          "refusing to overwrite it, choose another --out")
    return True


def prepare_run_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Create an empty run directory (replacing an old *run* directory with ``overwrite``).

    Raises
    ------
    RunDirError
        ``path`` exists and ``overwrite`` is false, or exists but is not a run directory
        (recmodels never deletes a directory it did not write), or cannot be created.
    """
    path = Path(path)
    if _check_replaceable(path, overwrite):
        shutil.rmtree(path)
    try:
        (path / SPLIT_DIR).mkdir(parents=True)
    except OSError as exc:
        raise RunDirError(f"{path}: cannot create run directory ({exc.strerror or exc})") from None
    return path


def check_out_dir(path: str | os.PathLike, *, resume: bool = False,
                  overwrite: bool = False) -> Path:
    """Check (without writing anything) that a run can go to ``path``.

    Raises
    ------
    RunDirError
        ``path`` exists without ``resume``/``overwrite``, ``resume`` names a directory
        that is not a resumable run, or ``path``'s parent is not writable.
    """
    path = Path(path)
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite exclude each other; pick one")
    if resume:
        if not is_run_dir(path):
            raise RunDirError(f"{path}: nothing to resume (no {CONFIG_FILE}); start a new run "
                              "without --resume")
        if not (path / LAST_FILE).is_file():
            raise RunDirError(f"{path}: nothing to resume (no {LAST_FILE}: no epoch finished); "
                              "pass --overwrite to start again")
        return path
    _check_replaceable(path, overwrite)
    parent = path.resolve().parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirError(f"{parent}: output directory is not writable; choose another --out")
    return path


def run_config(model_config, train_config, data: dict) -> dict:
    """The ``config.json`` object."""
    return {"recmodels_version": __version__, "model": model_config.to_dict(),
            "train": train_config.to_dict(), "data": data}


def metrics_object(history: list[dict], best_epoch: int, valid: dict | None, test: dict | None,
                   data: dict, refit: dict | None = None, implicit_probe: dict | None = None) -> dict:
    """The ``metrics.json`` object: per-epoch history, best epoch, valid/test metrics
    (``None`` until evaluated, or when that part is absent), the data statistics, what the
    low-rank refit after the epochs did (``None``: no refit) and whether the implicit parts were
    kept after the probe (``None``: no probe ran)."""
    return {"history": history, "best_epoch": best_epoch, "valid": valid, "test": test, "data": data,
            "refit": refit, "implicit_probe": implicit_probe}


def plot_loss(history: list[dict], path: str | os.PathLike) -> Path:
    """Draw train vs valid RMSE per epoch to a PNG (matplotlib, Agg backend)."""
    fig = new_figure(6, 4)
    ax = fig.add_subplot()
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_rmse"] for h in history], marker="o", label="train")
    valid = [(h["epoch"], h["valid_rmse"]) for h in history if h.get("valid_rmse") is not None]
    if valid:
        ax.plot(*zip(*valid, strict=True), marker="o", label="valid")
    return save_line_plot(fig, ax, path, xlabel="epoch", ylabel="RMSE")


@dataclass
class Run:
    """A finished run directory, loaded.

    Attributes
    ----------
    path : Path
    config : dict
        The whole ``config.json`` (``model``, ``train``, ``data``, ``recmodels_version``).
    model_config : ModelConfig
    user_encoder, item_encoder : IdEncoder
    model : nn.Module
        Rebuilt from ``config["model"]`` and ``model.pt``, in eval mode, on the CPU.
    metrics : dict
        ``metrics.json`` (empty when absent).
    """

    path: Path
    config: dict
    model_config: object
    user_encoder: IdEncoder
    item_encoder: IdEncoder
    model: object
    metrics: dict = field(default_factory=dict)

    @property
    def encoders(self) -> tuple[IdEncoder, IdEncoder]:
        """``(user_encoder, item_encoder)``."""
        return self.user_encoder, self.item_encoder


def load_config(run_dir: str | os.PathLike) -> dict:
    """Read and check ``config.json`` of a run directory."""
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise RunDirError(f"{run_dir}: no such run directory")
    try:
        config = read_json(path)
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing; {run_dir} is not a recmodels run directory") from None
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path}: unreadable ({first_line(exc)})") from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise RunDirError(f"{path}: has no 'model' section; not a recmodels run config")
    return config


def load_run(run_dir: str | os.PathLike, *, require_complete: bool = True) -> Run:
    """Load a finished run: config, encoders, model (eval mode) and metrics.

    Parameters
    ----------
    run_dir : path-like
    require_complete : bool
        Refuse a run without the ``COMPLETE`` marker (training did not finish).

    Returns
    -------
    Run

    Raises
    ------
    RunDirError
        The directory or one of its files is missing, unreadable or inconsistent.

    Examples
    --------
    >>> run = load_run("runs/neumf")                          # doctest: +SKIP
    >>> run.model(torch.tensor([0]), torch.tensor([3]))       # doctest: +SKIP
    """
    from .errors import ConfigError, DataError
    from .models import ModelConfig, build_model

    run_dir = Path(run_dir)
    config = load_config(run_dir)
    if require_complete and not (run_dir / COMPLETE_FILE).is_file():
        raise RunDirError(f"{run_dir}: incomplete run (no {COMPLETE_FILE} marker); finish it "
                          "with `recmodels train --resume --out {run_dir}`".replace("{run_dir}",
                                                                                  str(run_dir)))
    try:
        model_config = ModelConfig.from_dict(config["model"])
    except ConfigError as exc:
        raise RunDirError(f"{run_dir / CONFIG_FILE}: {exc}") from None
    try:
        user_encoder = IdEncoder.load(run_dir / USER_IDS_FILE, name="user")
        item_encoder = IdEncoder.load(run_dir / ITEM_IDS_FILE, name="item")
    except DataError as exc:
        raise RunDirError(str(exc)) from None
    if len(user_encoder) != model_config.n_users or len(item_encoder) != model_config.n_items:
        raise RunDirError(
            f"{run_dir}: id maps have {len(user_encoder)} users / {len(item_encoder)} items but "
            f"the model has {model_config.n_users} / {model_config.n_items}"
        )
    state = load_torch(run_dir / MODEL_FILE)
    model = build_model(model_config)
    load_weights(model, state, run_dir / MODEL_FILE, run_dir / CONFIG_FILE)
    model.eval()
    metrics = {}
    if (run_dir / METRICS_FILE).is_file():
        try:
            metrics = read_json(run_dir / METRICS_FILE)
        except (OSError, ValueError) as exc:
            raise RunDirError(f"{run_dir / METRICS_FILE}: unreadable ({first_line(exc)})") from None
    return Run(run_dir, config, model_config, user_encoder, item_encoder, model, metrics)


def write_metrics(run_dir: str | os.PathLike, metrics: dict) -> Path:
    """Write ``metrics.json`` atomically (NaN/inf become null)."""
    return write_json(Path(run_dir) / METRICS_FILE, _finite(metrics))


def _finite(obj):
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


__all__ = [
    "COMPLETE_FILE", "CONFIG_FILE", "ITEM_IDS_FILE", "LAST_FILE", "LOG_FILE", "LOSS_PLOT_FILE",
    "METRICS_FILE", "MODEL_FILE", "Run", "SPLIT_DIR", "USER_IDS_FILE", "check_out_dir",
    "load_config", "load_run", "load_torch", "load_weights", "metrics_object", "plot_loss",
    "prepare_run_dir", "run_config", "save_torch", "split_path", "write_metrics", "write_text",
]
