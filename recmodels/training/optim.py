"""Optimizers: row-wise Adagrad for sparse embedding gradients, and the named recipes."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import NOTEBOOK_SGD_LR, TrainConfig

# The implicit tables' optimizer (OptimizerSet key) and their windows per epoch (models/implicit.py):
# each window costs two sparse products over all of N (~0.2 s each at the notebook's scale).
IMPLICIT = "implicit"
IMPLICIT_WINDOWS = 8
# The implicit tables' L2 (in place of TrainConfig.l2; per epoch, with the frequency scaling of
# their side's GMF rows, see row_decay_scales). Screened on both real sets with the item part: NeuMF
# (l2 0.05) was best at 0.3 x its l2 and MF (l2 0.16-0.2 there) at 0.1 x its own, both ~0.015-0.02.
IMPLICIT_L2 = 0.015


class RowwiseAdagrad(torch.optim.Optimizer):
    """Adagrad with one accumulator per embedding row (as torchrec/FBGEMM use for tables).

    For each looked-up row ``r`` with gradient ``g`` (shape [d])::

        sum[r] += mean(g ** 2)
        weight[r] -= alpha * lr * g / (sqrt(sum[r]) + eps)

    Works directly on the uncoalesced sparse gradients of ``nn.Embedding(sparse=True)``
    (no sort, no dense pass over the table), and on dense gradients too.

    ``alpha`` is 1 unless :meth:`step` is given the batch ``loss`` the gradients come from.
    Then the step is capped at the stochastic Polyak step (Loizou et al. 2021, SPS_max with
    c = 1/2, in the Adagrad metric): ``alpha = min(1, 2 * loss / (g . d))``, where ``g . d``
    is the loss decrease the whole step predicts at first order. Why: Adagrad normalises
    each row's step by the gradients it has seen, so a step is about ``lr`` long per element
    whatever the size of the error (the first one is ``lr * g / rms(g)``). When the error is
    small that overshoots: on ratings that are all equal, one step at the default lr 0.1
    moved every row 10x its initial scale and left the model far worse than the constant.
    For a squared loss ``2 * loss / (g . d)`` is never shorter than the exact line-search
    step along the direction (Cauchy-Schwarz), so the cap removes only overshoot; on
    ordinary data it binds in the first step or two. It costs a few passes over the batch's
    1-D per-row values per step: a cheap upper bound of ``g . d`` decides, and the exact
    value (read off the rows' change) is computed only when the bound exceeds ``2 * loss``.

    Parameters
    ----------
    params : iterable of 2-D tensors
    lr : float
    eps : float
    initial_accumulator : float
    weight_decay : float
        Added to each looked-up row's gradient as ``weight_decay * weight[r]``, once per
        occurrence in the batch: the gradient of an L2 penalty on the looked-up rows, without
        a second pass of lookups through autograd.

    :meth:`set_row_decay` scales the decay per row (e.g. by the inverse of the row's
    training frequency, so that the penalty a row gets per epoch does not grow with its
    count).
    """

    def __init__(self, params, lr: float = 0.05, eps: float = 1e-8,
                 initial_accumulator: float = 0.0, weight_decay: float = 0.0):
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        super().__init__(params, {"lr": lr, "eps": eps, "initial_accumulator": initial_accumulator,
                                  "weight_decay": weight_decay})

    def set_row_decay(self, param: torch.Tensor, scale: torch.Tensor | None) -> None:
        """Multiply ``weight_decay`` for each row of ``param`` by ``scale[row]`` (None: 1)."""
        self._row_decay = getattr(self, "_row_decay", {})
        if scale is None:
            self._row_decay.pop(id(param), None)
        else:
            self._row_decay[id(param)] = scale.to(device=param.device, dtype=param.dtype)

    @torch.no_grad()
    def step(self, closure=None, *, loss: torch.Tensor | float | None = None):
        """One update of every parameter that has a gradient.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the loss (the ``torch.optim`` convention).
        loss : Tensor or float, optional
            The batch's mean squared error these gradients come from; caps the step at the
            Polyak step (class docstring). The ``weight_decay`` term adds to the gradient but
            not to ``loss``, which only makes the cap stricter. ``None``: no cap.
        """
        result = None
        if closure is not None:
            with torch.enable_grad():
                result = closure()
        row_decay = getattr(self, "_row_decay", {})
        taken = []  # capped steps: (param, rows or None, weights before the step, decay, lr)
        bound = 0.0  # an upper bound of the decrease the step predicts (capped steps only)
        for group in self.param_groups:
            lr, eps, decay = group["lr"], group["eps"], group.get("weight_decay", 0.0)
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "sum" not in state:
                    state["sum"] = torch.full((p.shape[0],), float(group["initial_accumulator"]),
                                              dtype=p.dtype, device=p.device)
                acc = state["sum"]
                rows, grad, weights = None, p.grad, p
                if grad.is_sparse:
                    rows, grad = grad._indices()[0], grad._values()
                    if decay or loss is not None:
                        weights = p.index_select(0, rows)
                elif loss is not None:
                    weights = p.clone()
                if decay:
                    grad = _with_decay(grad, weights, _row_scale(row_decay.get(id(p)), rows), decay)
                mean_square = grad.pow(2).mean(dim=1)
                if rows is None:
                    acc.add_(mean_square)
                    step_scale = acc.sqrt().add_(eps).reciprocal_()
                    p.addcmul_(grad, step_scale.unsqueeze(1), value=-lr)
                else:
                    acc.index_add_(0, rows, mean_square)
                    step_scale = acc.index_select(0, rows).sqrt_().add_(eps).reciprocal_()
                    p.index_add_(0, rows, grad * step_scale.unsqueeze(1), alpha=-lr)
                if loss is not None:
                    if p.device.type == "cpu":  # elsewhere the exact check runs every step
                        bound = bound + lr * _decrease_bound(p, rows, mean_square, step_scale)
                    taken.append((p, rows, weights, decay))
        if taken and not (taken[0][0].device.type == "cpu" and not float(bound) > 2.0 * float(loss)):
            _cap_step(taken, loss, row_decay)
        return result


def _row_scale(scale: torch.Tensor | None, rows: torch.Tensor | None) -> torch.Tensor | None:
    return scale if scale is None or rows is None else scale.index_select(0, rows)


def _with_decay(grad: torch.Tensor, weights: torch.Tensor, scale: torch.Tensor | None,
                decay: float) -> torch.Tensor:
    """``grad + decay * scale[row] * weight[row]`` (``weights``: the looked-up rows)."""
    if scale is None:
        return torch.add(grad, weights, alpha=decay)
    return torch.addcmul(grad, weights, scale.unsqueeze(1), value=decay)


def _cap_step(taken: list, loss, row_decay: dict) -> None:
    """Shrink the step just taken to ``alpha = min(1, 2 * loss / decrease)``.

    The exact decrease is read off the rows' actual change: each occurrence of a row sees the
    row's whole change, so ``sum_k g_k . change_k`` is ``g . change`` of the coalesced gradient.
    """
    moves, decrease = [], 0.0
    for p, rows, before, decay in taken:
        grad = p.grad if rows is None else p.grad._values()
        if decay:  # the gradient the step used, rebuilt from the weights before it
            grad = _with_decay(grad, before, _row_scale(row_decay.get(id(p)), rows), decay)
        change = (p if rows is None else p.index_select(0, rows)).sub(before)
        decrease = decrease - torch.dot(grad.reshape(-1), change.reshape(-1))
        moves.append((p, rows, before, change))
    loss = torch.as_tensor(loss, dtype=decrease.dtype, device=decrease.device)
    if decrease.device.type == "cpu" and not float(decrease) > 2.0 * float(loss):
        return  # the usual case; on the CPU there is no host sync to avoid
    alpha = torch.where(decrease > 2.0 * loss, 2.0 * loss / decrease, torch.ones_like(decrease))
    for p, rows, before, change in moves:
        target = before.add(change * alpha)
        if rows is None:
            p.copy_(target)
        else:  # duplicate rows carry identical values, so the copy is deterministic
            p.index_copy_(0, rows, target)


def _decrease_bound(p, rows, mean_square, step_scale) -> torch.Tensor:
    """``sum_r s_r ||g_r||^2`` for a dense gradient (exact), or an upper bound of it for
    sparse occurrences: ``||sum_k g_k||^2 <= (sum_k ||g_k||)^2`` per row, in 1-D passes."""
    if rows is None:
        return torch.dot(step_scale, mean_square) * p.shape[1]
    norms = mean_square.sqrt()
    per_row = torch.zeros(p.shape[0], dtype=norms.dtype, device=norms.device).index_add_(0, rows, norms)
    return torch.dot(norms.mul_(step_scale), per_row.index_select(0, rows)) * p.shape[1]


class OptimizerSet:
    """One or two optimizers stepped together, with a combined state dict."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer]):
        self.optimizers = optimizers

    def zero_grad(self) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)

    def step(self, loss: torch.Tensor | None = None) -> None:
        """Step every optimizer but the implicit tables'; ``loss`` (the batch MSE) caps the
        row-wise Adagrad step."""
        for name, opt in self.optimizers.items():
            if name == IMPLICIT:
                continue
            if isinstance(opt, RowwiseAdagrad):
                opt.step(loss=loss)
            else:
                opt.step()

    def step_implicit(self) -> None:
        """Step the implicit tables' optimizer (at the end of a window) and clear their gradients."""
        opt = self.optimizers.get(IMPLICIT)
        if opt is not None:
            opt.step()
            opt.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state: dict) -> None:
        if set(state) != set(self.optimizers):
            raise ValueError(f"optimizer state has {sorted(state)}, expected {sorted(self.optimizers)}")
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state[name])


def _split_params(model: nn.Module) -> tuple[list, list, list]:
    """The embedding tables' weights, the dense parameters, and the implicit tables' weights."""
    implicit = [t.weight for t in getattr(model, "implicit_tables", [])]
    implicit_ids = {id(w) for w in implicit}
    tables = [m for m in model.modules() if isinstance(m, nn.Embedding) and id(m.weight) not in implicit_ids]
    table_ids = {id(m.weight) for m in tables} | implicit_ids
    dense = [p for p in model.parameters() if id(p) not in table_ids and p.requires_grad]
    return [m.weight for m in tables], dense, implicit


def set_sparse_embeddings(model: nn.Module, sparse: bool) -> None:
    """Make every ``nn.Embedding`` in ``model`` produce sparse (or dense) gradients."""
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            module.sparse = sparse


def l2_in_optimizer(config: TrainConfig) -> bool:
    """Whether the optimizer applies ``config.l2`` itself (no penalty term in the loss)."""
    return config.optimizer == "rowwise-adagrad"


def uses_sparse_gradients(config: TrainConfig, epoch: int) -> bool:
    """Whether the embeddings should produce sparse gradients in ``epoch`` (1-based)."""
    if config.optimizer in ("rowwise-adagrad", "sparse-adam", "sgd"):
        return True
    return config.optimizer == "notebook" and epoch > 1


def build_optimizers(model: nn.Module, config: TrainConfig, epoch: int) -> OptimizerSet:
    """The optimizers ``config.optimizer`` names, for ``epoch`` (1-based).

    ``"notebook"`` returns Adam for epoch 1 and SGD(lr=5e-4) afterwards; the other recipes
    return the same optimizers for every epoch.
    """
    tables, dense, implicit = _split_params(model)
    # l2 * mean_batch ||row||^2 has gradient (2 * l2 / B) * row per occurrence of the row
    decay = 2.0 * config.l2 / config.batch_size
    # The implicit tables are stepped once per window (models/implicit.py), by row-wise Adagrad
    # whatever the recipe, their L2 in the optimizer (row_decay_scales).
    extra = ({IMPLICIT: RowwiseAdagrad(implicit, lr=config.resolved_embedding_lr, weight_decay=decay)}
             if implicit else {})
    lr = config.resolved_lr
    name = config.optimizer
    if name == "notebook":
        if epoch <= 1:
            return OptimizerSet({"all": torch.optim.Adam(tables + dense, lr=lr), **extra})
        return OptimizerSet({"all": torch.optim.SGD(tables + dense, lr=NOTEBOOK_SGD_LR), **extra})
    if name == "adam":
        return OptimizerSet({"all": torch.optim.Adam(tables + dense, lr=lr), **extra})
    if name == "sgd":
        return OptimizerSet({"all": torch.optim.SGD(tables + dense, lr=lr), **extra})
    if name == "sparse-adam":
        return OptimizerSet({"embeddings": torch.optim.SparseAdam(tables, lr=lr),
                             "dense": torch.optim.Adam(dense, lr=lr), **extra})
    return OptimizerSet({"embeddings": RowwiseAdagrad(tables, lr=config.resolved_embedding_lr,
                                                      weight_decay=decay),
                         "dense": torch.optim.Adam(dense, lr=lr), **extra})


def implicit_window(n_rows: int, batch_size: int) -> tuple[int, int]:
    """``(batches per window, windows per epoch)`` of the implicit tables (models/implicit.py):
    about :data:`IMPLICIT_WINDOWS` windows per epoch, the last one cut at the epoch's end."""
    batches = max(1, math.ceil(n_rows / batch_size))
    steps = max(1, math.ceil(batches / IMPLICIT_WINDOWS))
    return steps, math.ceil(batches / steps)


def row_decay_scales(model: nn.Module, config: TrainConfig, user_index: torch.Tensor,
                     item_index: torch.Tensor) -> dict:
    """Per-row L2 multipliers ``{table weight: FloatTensor[n]}`` from training frequencies.

    A row looked up ``c`` times per epoch (mean over the table's rows ``c_mean``) gets
    ``(c / c_mean) ** (l2_frequency_exponent - 1)`` per lookup, so its penalty per epoch is
    ``l2 * (c / c_mean) ** l2_frequency_exponent`` (exponent 1: plain per-lookup L2; 0: the same
    for every row, as a Gaussian prior gives). Bias tables also get ``l2_bias / l2``.
    """
    power = config.l2_frequency_exponent - 1.0
    counts = {}
    out = {}
    for table, side in model.embedding_tables():
        if side not in counts:
            index = user_index if side == "user" else item_index
            c = torch.bincount(index, minlength=table.num_embeddings).to(torch.float64)
            c = c[:table.num_embeddings]
            counts[side] = (c / c[c > 0].mean()).clamp_(min=1.0 / max(float(c.max()), 1.0))
        scale = counts[side].pow(power) if power else torch.ones_like(counts[side])
        if table.embedding_dim == 1 and config.l2_bias is not None and config.l2 > 0:
            scale = scale * (config.l2_bias / config.l2)
        implicit = _implicit_lookups(model, table, config.batch_size, user_index, item_index)
        if implicit is not None:  # per epoch, IMPLICIT_L2 scaled as the side's GMF rows are
            raw = torch.bincount(user_index if side == "user" else item_index,
                                 minlength=table.num_embeddings)[:table.num_embeddings].double()
            share = IMPLICIT_L2 / config.l2 if config.l2 > 0 else 0.0
            scale = scale * raw / implicit.clamp(min=1e-12) * share
        out[table.weight] = scale.to(torch.float32)
    return out


def _implicit_lookups(model: nn.Module, table: nn.Embedding, batch_size: int, user_index: torch.Tensor,
                      item_index: torch.Tensor) -> torch.Tensor | None:
    """For an implicit table (``models/implicit.py``), each row's updates per epoch (float64): one
    per window, whether its owners were in the window's batches or not (a dense step)."""
    if not any(t is table for t in getattr(model, "implicit_tables", [])):
        return None
    _, windows = implicit_window(int(user_index.shape[0]), batch_size)
    return torch.full((table.num_embeddings,), float(windows), dtype=torch.float64, device=user_index.device)
