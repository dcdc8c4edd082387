"""The training loop: device-resident index tensors, seeded shuffles, big batches.

No per-sample ``Dataset``/``DataLoader``: the three columns live on the device as
tensors, each epoch draws one seeded permutation and every batch is a slice of it.
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from ..devices import supports_bf16
from ..errors import DataError, DivergedError
from .config import TrainConfig
from .implicit_probe import probe_due, probe_implicit, remove_parts
from .implicit_step import implicit_step
from .optim import (
    IMPLICIT,
    OptimizerSet,
    build_optimizers,
    implicit_window,
    l2_in_optimizer,
    row_decay_scales,
    set_sparse_embeddings,
    uses_sparse_gradients,
)
from .refit import MIN_VALID_ROWS, REFIT_TENSORS, refit_low_rank, supports_refit
from .refit_implicit import IMPLICIT_LAMBDAS
from .state import EpochRecord, TrainState, format_record
from .tensors import RatingTensors, predict_tensors, resolve_for_data
from .threads import CpuLoad


def _refit_of(refit: dict, best: dict) -> tuple[dict | None, dict]:
    """The refit recorded in ``last.pt`` if it is of ``best`` (``model.pt``), and the SGD best.

    ``model.pt`` holds the refitted tensors (a finished run), or the SGD best they came from (a run
    killed before writing them), or a newer SGD best than the refit's: a run killed between
    writing ``model.pt`` and ``last.pt`` on an improving epoch. That refit is then dropped.
    """
    after, before = refit["after"], refit["before"]
    if all(torch.equal(best[name].cpu(), tensor) for name, tensor in after.items()):
        return refit, {**best, **before}
    if all(torch.equal(best[name].cpu(), tensor) for name, tensor in before.items()):
        return refit, best
    return None, best


def _mse(model: nn.Module, data: RatingTensors, batch_size: int) -> float:
    pred = predict_tensors(model, data.user_index, data.item_index, batch_size)
    return float(torch.mean((pred.double() - data.rating.double()) ** 2))


def _progress(total: int, epoch: int, epochs: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    # On a terminal the bar is redrawn in place and cleared at the end. Elsewhere (a log
    # file, a notebook's captured stderr) nothing can be cleared, so the bar is left at its
    # final state instead of at the last throttled redraw.
    stream = sys.stderr
    on_terminal = bool(getattr(stream, "isatty", lambda: False)())
    return tqdm(total=total, desc=f"epoch {epoch}/{epochs}", unit="samples", unit_scale=True,
                leave=not on_terminal, dynamic_ncols=on_terminal, mininterval=0.5, file=stream)


class Trainer:
    """Fit a rating model with MSE loss, early stopping and resumable state.

    Parameters
    ----------
    model : nn.Module
        Built by :func:`recmodels.models.build_model`; moved to ``device``.
    config : TrainConfig
    device : torch.device
        Already resolved (:func:`recmodels.devices.resolve_device`).
    log : callable, optional
        Receives one line of text per epoch (default: print).
    progress : bool or None
        Show a tqdm bar; ``None`` shows it only when stdout is a terminal.
    on_epoch_end : callable, optional
        ``on_epoch_end(trainer, record: EpochRecord, improved: bool)``, called after each
        epoch once the state is updated (the run directory writes its checkpoints here).

    Attributes
    ----------
    state : TrainState
    config : TrainConfig
        The config given, with ``batch_size`` and ``l2`` resolved from the model and the
        training rows by :meth:`fit` where they were ``None`` (:func:`resolve_for_data`).
    best_state_dict : dict
        A CPU copy of the model's best-validation state dict (the averaged weights with
        ``config.average_decay > 0``), before any refit.
    average : dict or None
        The running weight average (``config.average_decay > 0``, after the first epoch).
    refit : dict or None
        After :meth:`fit` with ``config.refit`` and validation rows: ``{"report": ...,
        "before": ..., "after": ...}``, the :class:`~recmodels.training.refit.RefitReport` as
        a dict and the refitted tensors' values in :attr:`best_state_dict` and after the
        refit. :meth:`final_state_dict` applies them.
    """

    def __init__(self, model: nn.Module, config: TrainConfig, device: torch.device, *,
                 log: Callable[[str], None] | None = print, progress: bool | None = None,
                 on_epoch_end: Callable | None = None):
        self.model = model.to(device)
        self.config = config
        self.device = device
        self.log = log or (lambda line: None)
        self.progress = sys.stdout.isatty() if progress is None else progress
        self.on_epoch_end = on_epoch_end
        self.state = TrainState(patience_left=config.patience)
        self.shuffle_generator = torch.Generator(device="cpu")
        self.shuffle_generator.manual_seed(config.seed)
        # Built once the batch size is known (here, or in fit() when it comes from the data).
        self.optimizers: OptimizerSet | None = (
            self._optimizers_for(1) if config.is_resolved else None)
        self.best_state_dict: dict | None = None
        self._start: dict | None = None  # the weights before epoch 1 (fit), for the implicit probe
        self.average: dict | None = None
        self.refit: dict | None = None

    # -- precision -----------------------------------------------------------
    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype of the training forward (``None``: plain fp32)."""
        if self.config.precision != "bf16" or not supports_bf16(self.device):
            return None
        return torch.bfloat16

    def _autocast(self):
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    # -- state ---------------------------------------------------------------
    def _optimizers_for(self, epoch: int) -> OptimizerSet:
        set_sparse_embeddings(self.model, uses_sparse_gradients(self.config, epoch))
        return build_optimizers(self.model, self.config, epoch)

    def state_dict(self) -> dict:
        """Everything needed to continue exactly: model, optimizer, RNGs, history."""
        rng = {"torch": torch.get_rng_state(), "shuffle": self.shuffle_generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "model": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizers.state_dict(),
            "epoch": self.state.epoch,
            "best": self.state.best,
            "best_epoch": self.state.best_epoch,
            "patience_left": -1 if self.state.patience_left is None else self.state.patience_left,
            "stopped_early": self.state.stopped_early,
            "threads": -1 if self.state.threads is None else self.state.threads,
            "rng": rng,
            "history": [dict(h) for h in self.state.history],
            "resolved": {"batch_size": self.config.batch_size, "l2": self.config.l2},
            **({"average": {k: v.detach().cpu().clone() for k, v in self.average.items()}}
               if self.average is not None else {}),
            **({"refit": self.refit} if self.refit is not None else {}),
            **({"implicit_probe": self.state.implicit_probe} if self.state.implicit_probe else {}),
        }

    def load_state_dict(self, state: dict, best_state_dict: dict | None = None) -> None:
        """Restore a :meth:`state_dict` (and the best weights so far, for ``model.pt``)."""
        if not self.config.is_resolved:  # take the values the interrupted fit resolved
            recorded = state.get("resolved") or {}
            self.config = self.config.replace(**{k: v for k, v in recorded.items()
                                                 if getattr(self.config, k) is None})
        if not self.config.is_resolved:
            raise ValueError("cannot resume with batch_size or l2 None: give the run's values "
                             "(config.json records them)")
        self.model.load_state_dict(state["model"])
        self.optimizers = self._optimizers_for(max(int(state["epoch"]), 1))
        self.optimizers.load_state_dict(state["optimizer"])
        patience_left = int(state["patience_left"])
        self.state = TrainState(
            epoch=int(state["epoch"]), best=float(state["best"]),
            best_epoch=int(state["best_epoch"]),
            patience_left=None if patience_left < 0 else patience_left,
            history=[dict(h) for h in state["history"]],
            stopped_early=bool(state.get("stopped_early", False)),
            threads=None if int(state.get("threads", -1)) < 1 else int(state["threads"]),
            implicit_probe=state.get("implicit_probe"),
        )
        torch.set_rng_state(state["rng"]["torch"])
        self.shuffle_generator.set_state(state["rng"]["shuffle"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.refit = state.get("refit")
        if self.refit is not None and best_state_dict is not None:
            self.refit, best_state_dict = _refit_of(self.refit, best_state_dict)
        self.best_state_dict = best_state_dict
        average = state.get("average")
        self.average = None if average is None else {k: v.to(self.device) for k, v in average.items()}

    @property
    def finished(self) -> bool:
        """True once all epochs ran or early stopping triggered."""
        return self.state.stopped_early or self.state.epoch >= self.config.epochs

    # -- loop ----------------------------------------------------------------
    def fit(self, train, valid=None) -> TrainState:
        """Train until ``config.epochs`` or early stopping.

        Parameters
        ----------
        train : EncodedRatings, RatingTensors or (user_index, item_index, rating) arrays
        valid : same, optional
            Without it there is no early stopping and the last epoch is the best.

        Returns
        -------
        TrainState

        Raises
        ------
        DivergedError
            The training loss became NaN or infinite.
        """
        train = RatingTensors.from_arrays(train, self.device)
        if len(train) == 0:
            raise DataError("no training rows")
        valid = RatingTensors.from_arrays(valid, self.device) if valid is not None else None
        if valid is not None and len(valid) == 0:
            valid = None
        if hasattr(self.model, "set_rated"):  # the implicit parts' N (models/implicit.py)
            if self._implicit_dropped:  # a resume: the checkpoint's tables are zero already
                remove_parts(self.model)
            else:
                self.model.set_rated(train.user_index, train.item_index)
        if not self.config.is_resolved or self.optimizers is None:
            kind = getattr(getattr(self.model, "config", None), "kind", "neumf")
            self.config = resolve_for_data(self.config, train, kind)
            self.optimizers = self._optimizers_for(max(self.state.epoch, 1))
        self._set_row_decay(train)
        # the weights to start again from if the implicit probe drops the parts after epoch 1
        self._start = self._cpu_state() if self._probe_pending(self.state.epoch + 1, valid) else None
        threads = torch.get_num_threads()
        self._start_threads(threads)
        try:
            while not self.finished:
                self._run_epoch(train, valid)
            if self.best_state_dict is None:
                self.best_state_dict = self._cpu_state(averaged=True)
            if (self.refit is None and self.config.refit and valid is not None
                    and supports_refit(self.model)):
                if len(valid) >= MIN_VALID_ROWS:
                    self._refit(train, valid)
                else:
                    self.log(f"refit: skipped, {len(valid):,} validation rows are too few to choose "
                             f"a rank on (it needs {MIN_VALID_ROWS:,})")
        finally:
            torch.set_num_threads(threads)
        return self.state

    def _start_threads(self, threads: int) -> None:
        """Set torch's threads for this fit: ``config.num_threads``; else on CPU the count this
        fit chose when it started (a resume keeps it: the weights depend on it), or, at the start,
        the cores other processes leave free (at most ``threads``, torch's setting)."""
        if self.config.num_threads or self.device.type != "cpu":
            if self.config.num_threads:
                torch.set_num_threads(self.config.num_threads)
            return
        if self.state.threads is None:
            load = CpuLoad(threads)
            count, others = load.start()
            self.state.threads = count
            if count < load.limit:
                self.log(f"threads: {count} of {load.limit}; other processes take {others:.1f} of the "
                         f"{len(load.cpus)} cores (--threads N to choose; kept for this run and its resume)")
        torch.set_num_threads(self.state.threads)

    def final_state_dict(self) -> dict:
        """The weights a run keeps: :attr:`best_state_dict` with the refit applied, if any."""
        if self.refit is None:
            return self.best_state_dict
        return {**self.best_state_dict, **self.refit["after"]}

    @property
    def refit_report(self) -> dict | None:
        """The refit's :class:`~recmodels.training.refit.RefitReport` as a dict (``None``: none)."""
        return None if self.refit is None else self.refit["report"]

    @property
    def fit_reports(self) -> dict:
        """``{"refit": ..., "implicit_probe": ...}``: what the refit and the implicit probe did
        (``None`` where they did not run), as ``metrics.json`` holds them."""
        return {"refit": self.refit_report, "implicit_probe": self.state.implicit_probe}

    def _refit(self, train: RatingTensors, valid: RatingTensors) -> None:
        """Refit a copy of the best weights (the live ones stay, so training could go on)."""
        model = copy.deepcopy(self.model)
        model.load_state_dict(self.best_state_dict)
        report = refit_low_rank(model, train, valid, batch_size=self.config.eval_batch_size, log=self.log,
                                try_without_implicit=self.state.implicit_probe is None,  # judged
                                implicit_lambdas=IMPLICIT_LAMBDAS if self.config.refit_tables else ())
        after = model.state_dict()
        names = [name for name in REFIT_TENSORS if name in after] if report.changed else []
        self.refit = {"report": report.to_dict(),
                      "before": {name: self.best_state_dict[name].clone() for name in names},
                      "after": {name: after[name].detach().to("cpu", copy=True) for name in names}}
        self.log(report.describe())

    @property
    def _implicit_dropped(self) -> bool:
        probe = self.state.implicit_probe
        return probe is not None and not probe["kept"]

    def _probe_pending(self, epoch: int, valid: RatingTensors | None) -> bool:
        """Whether the implicit probe runs after ``epoch`` (it runs once)."""
        return self.state.implicit_probe is None and probe_due(self.model, epoch, valid)

    def _probe_implicit(self, train: RatingTensors, valid: RatingTensors, epoch: int) -> bool:
        """Keep the implicit parts, or start again without them (:mod:`.implicit_probe`): the
        epoch trained the rows beside parts that only fit noise, so it does not count (the
        history drops it; ``train.log`` keeps its line). Returns whether it started again (the
        start weights, the best so far, then go to ``model.pt``)."""
        with self._averaged_weights():  # the weights validation judges
            probe = probe_implicit(self.model, train, valid, epoch, self.config.eval_batch_size)
        self.state.implicit_probe = probe.to_dict()
        if probe.kept:
            self.log(probe.describe())
            self._start = None
            return False
        self.log(probe.describe() + "; training starts again from the initial weights")
        self.model.load_state_dict(self._start)
        remove_parts(self.model)
        self.optimizers = self._optimizers_for(1)
        self._set_row_decay(train)
        self.average, self.refit, self._start = None, None, None
        st = self.state
        st.history.pop()
        st.epoch, st.best, st.best_epoch, st.patience_left = 0, math.inf, 0, self.config.patience
        self.best_state_dict = self._cpu_state()
        return True

    def _set_row_decay(self, train: RatingTensors) -> None:
        cfg = self.config
        chosen = []
        opt = self.optimizers.optimizers.get("embeddings")
        if (l2_in_optimizer(cfg) and hasattr(opt, "set_row_decay")
                and not (cfg.l2_frequency_exponent == 1.0 and cfg.l2_bias is None)):
            chosen.append(opt)
        if IMPLICIT in self.optimizers.optimizers:  # always: one update per window, not per lookup
            chosen.append(self.optimizers.optimizers[IMPLICIT])
        if not chosen:
            return
        for weight, scale in row_decay_scales(self.model, cfg, train.user_index,
                                              train.item_index).items():
            for opt in chosen:
                opt.set_row_decay(weight, scale)

    def _cpu_state(self, averaged: bool = False) -> dict:
        """A CPU copy of the state dict (``averaged``: with :attr:`average` where there is one)."""
        average = self.average if averaged and self.average is not None else {}
        return {k: average.get(k, v).detach().to("cpu", copy=True)
                for k, v in self.model.state_dict().items()}

    def _run_epoch(self, train: RatingTensors, valid: RatingTensors | None) -> None:
        cfg = self.config
        epoch = self.state.epoch + 1
        if cfg.optimizer == "notebook" and epoch == 2:
            self.optimizers = self._optimizers_for(epoch)
            self._set_row_decay(train)  # the implicit tables' optimizer is a new one too
        model, optimizers = self.model, self.optimizers
        model.train()
        n, batch = len(train), cfg.batch_size
        check_every = 1 if self.device.type == "cpu" else 50
        penalty = cfg.l2 if not l2_in_optimizer(cfg) else 0.0
        order = torch.randperm(n, generator=self.shuffle_generator).to(self.device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        bar = _progress(n, epoch, cfg.epochs, self.progress)
        start = time.perf_counter()
        implicit = IMPLICIT in optimizers.optimizers
        window = implicit_window(n, batch)[0] if implicit else 0
        for step, lo in enumerate(range(0, n, batch)):
            if implicit and step % window == 0:
                model.start_implicit_window()
            rows = order[lo:lo + batch]
            users, items = train.user_index[rows], train.item_index[rows]
            ratings = train.rating[rows]
            with self._autocast():
                pred = model(users, items)
            loss = nn.functional.mse_loss(pred.float(), ratings)
            mse = loss.detach()
            loss_sum += mse * rows.shape[0]
            if penalty:
                loss = loss + penalty * model.l2_penalty(users, items)
            optimizers.zero_grad()
            loss.backward()
            if step % check_every == 0 and not math.isfinite(float(loss.detach())):
                self._diverged(epoch, step)
            optimizers.step(loss=mse)
            if implicit and ((step + 1) % window == 0 or lo + batch >= n):
                if model.close_implicit_window():
                    implicit_step(model, optimizers, users, items, step % window + 1)
            if bar is not None:
                bar.update(int(rows.shape[0]))
        train_mse = float(loss_sum) / n
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
        if not math.isfinite(train_mse):
            self._diverged(epoch, None)
        self._update_average()
        with self._averaged_weights():
            valid_mse = _mse(model, valid, cfg.eval_batch_size) if valid is not None else None
        record = EpochRecord(
            epoch=epoch, train_mse=train_mse, train_rmse=math.sqrt(train_mse),
            valid_mse=valid_mse,
            valid_rmse=math.sqrt(valid_mse) if valid_mse is not None else None,
            seconds=seconds, samples_per_s=n / seconds if seconds > 0 else float("inf"),
        )
        st = self.state
        st.epoch = epoch
        st.history.append(record.to_dict())
        score = valid_mse if valid_mse is not None else train_mse
        improved = valid_mse is None or score < st.best
        if improved:
            st.best, st.best_epoch = score, epoch
            st.patience_left = cfg.patience
            self.best_state_dict = self._cpu_state(averaged=True)
            self.refit = None  # it was of the old best (a resumed run that trains on)
        elif st.patience_left is not None:
            st.patience_left -= 1
            if st.patience_left <= 0:
                st.stopped_early = True
        self.log(format_record(record, cfg.epochs, improved and valid_mse is not None))
        if st.stopped_early:
            self.log(f"early stop: no better validation MSE for {cfg.patience} epoch(s); "
                     f"best epoch {st.best_epoch}")
        if self._probe_pending(epoch, valid) and self._probe_implicit(train, valid, epoch):
            improved = True
        if self.on_epoch_end is not None:
            self.on_epoch_end(self, record, improved)

    # -- weight averaging ----------------------------------------------------
    def _update_average(self) -> None:
        """Fold the weights at the end of this epoch into :attr:`average` (``average_decay``)."""
        decay = float(self.config.average_decay)
        if not decay:
            return
        with torch.no_grad():
            current = {k: v for k, v in self.model.state_dict().items() if v.is_floating_point()}
            if self.average is None:
                self.average = {k: v.detach().clone() for k, v in current.items()}
                return
            for name, value in current.items():
                self.average[name].mul_(decay).add_(value, alpha=1.0 - decay)

    @contextlib.contextmanager
    def _averaged_weights(self):
        """Within the block the model holds :attr:`average` (if any); the live weights after."""
        if self.average is None:
            yield
            return
        params = self.model.state_dict()
        live = {}
        with torch.no_grad():
            for name, value in self.average.items():
                live[name] = params[name].detach().clone()
                params[name].copy_(value)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in live.items():
                    params[name].copy_(value)

    def _diverged(self, epoch: int, step: int | None) -> None:
        where = f"epoch {epoch}" + (f", step {step}" if step is not None else "")
        raise DivergedError(
            f"training diverged at {where}: the loss is NaN or infinite; "
            "lower --lr / embedding lr or check the ratings"
        )
