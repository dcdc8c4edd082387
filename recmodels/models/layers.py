"""Building blocks shared by the rating models."""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .implicit import Cache, implicit_sums, normalised_matrix, parts_of, rated_csr, sparse_product, transposed


def embedding(n: int, dim: int, std: float) -> nn.Embedding:
    """An ``nn.Embedding(n, dim)`` initialised from N(0, std)."""
    table = nn.Embedding(n, dim)
    nn.init.normal_(table.weight, std=std)
    return table


def xavier_linear(n_in: int, n_out: int) -> nn.Linear:
    """An ``nn.Linear`` with Xavier-uniform weights and a zero bias."""
    layer = nn.Linear(n_in, n_out)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a cheap mask on the CPU; identical in eval mode and on CUDA.

    ``torch.bernoulli`` draws one Mersenne-Twister number per element and dominated CPU
    training time; this draws 64 random bits per 8 elements and compares each byte with
    ``round(256 * p)``, so the drop rate is ``p`` rounded to a multiple of 1/256 (0.3 ->
    0.3008). Draws come from torch's default generator, so ``torch.manual_seed`` makes them
    reproducible.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        threshold = int(round(256 * self.p))
        if threshold >= 256:
            return torch.zeros_like(x)
        n = x.numel()
        words = torch.empty((n + 7) // 8, dtype=torch.int64).random_(-(2**63), None)
        keep = words.view(torch.uint8)[:n].view(x.shape) >= threshold
        return x * keep.to(x.dtype).mul_(256.0 / (256 - threshold))


def mlp_tower(config: ModelConfig) -> nn.Sequential:
    """``[Dropout, Linear, ReLU] * num_layers``, halving the width at each Linear.

    The first Linear (index 1) sees ``cat(user_mlp, item_mlp)``; the exporter folds it
    into per-user / per-item tables.
    """
    sizes = config.mlp_layer_sizes
    layers: list[nn.Module] = []
    for i in range(config.num_layers):
        layers += [Dropout(p=config.dropouts[i]), xavier_linear(sizes[i], sizes[i + 1]), nn.ReLU()]
    return nn.Sequential(*layers)


class RatingModelBase(nn.Module):
    """Shared parts: the ``global_mean`` buffer and optional user/item biases.

    Subclasses implement ``features(user_index, item_index) -> FloatTensor[B, F]`` (the input
    of ``predict``) and list their embedding tables in ``embedding_tables()``.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.register_buffer("global_mean", torch.tensor(float(config.global_mean)))
        if config.use_bias:
            self.user_bias = nn.Embedding(config.n_users, 1)
            self.item_bias = nn.Embedding(config.n_items, 1)
            nn.init.zeros_(self.user_bias.weight)
            nn.init.zeros_(self.item_bias.weight)
        for table, prefix, side in parts_of(config.implicit):
            n_table = config.n_items if side == "user" else config.n_users
            n_own = config.n_users if side == "user" else config.n_items
            setattr(self, table, embedding(n_table, config.embedding_dim, config.init_std))
            self.register_buffer(f"{prefix}_indptr", torch.zeros(n_own + 1, dtype=torch.int64))
            self.register_buffer(f"{prefix}_indices", torch.zeros(config.rated_pairs, dtype=torch.int64))

    # -- the implicit signal (models/implicit.py) ------------------------------
    @property
    def implicit_tables(self) -> list[nn.Embedding]:
        """The tables of implicit vectors (empty without ``config.implicit``)."""
        return [getattr(self, table) for table, _, _ in parts_of(self.config.implicit)]

    def set_rated(self, user_index: torch.Tensor, item_index: torch.Tensor) -> RatingModelBase:
        """Record ``N`` (who rated what) from the training rows, for the implicit parts (if any)."""
        n_users, n_items = self.config.n_users, self.config.n_items
        user_index, item_index = torch.as_tensor(user_index), torch.as_tensor(item_index)
        for _, prefix, side in parts_of(self.config.implicit):
            own, other, n_own, n_other = ((user_index, item_index, n_users, n_items) if side == "user"
                                          else (item_index, user_index, n_items, n_users))
            indptr, indices = rated_csr(own, other, n_own, n_other)
            device = getattr(self, f"{prefix}_indptr").device
            setattr(self, f"{prefix}_indptr", indptr.to(device))
            setattr(self, f"{prefix}_indices", indices.to(device))
        self._implicit_state().clear()
        return self

    def _implicit_state(self) -> dict:
        """Caches of the implicit parts (not saved): matrices, whole tables, open windows."""
        if "_implicit" not in self.__dict__:
            self.__dict__["_implicit"] = Cache()
        return self.__dict__["_implicit"]

    def _part(self, side: str):
        for table, prefix, part_side in parts_of(self.config.implicit):
            if part_side == side:
                return getattr(self, table), prefix
        return None, None

    def implicit_table(self, side: str) -> nn.Embedding | None:
        """The table of vectors behind the ``side`` GMF rows' implicit parts (None: not configured)."""
        return self._part(side)[0]

    def implicit_matrix(self, side: str, transpose: bool = False) -> torch.Tensor:
        """``A`` of a part (or ``A.T``), float32 sparse CSR on the CPU, built from the CSR buffers
        once: the part of every ``side`` row is ``A @ implicit_table(side).weight``."""
        state = self._implicit_state()
        key = ("matrix", side, transpose)
        if key not in state:
            table, prefix = self._part(side)
            matrix = normalised_matrix(getattr(self, f"{prefix}_indptr").cpu(),
                                       getattr(self, f"{prefix}_indices").cpu(), table.num_embeddings)
            state[key] = transposed(matrix) if transpose else matrix
        return state[key]

    def implicit_rows(self, side: str) -> torch.Tensor | None:
        """The implicit part of every ``side`` GMF row, ``(n, embedding_dim)``, no autograd
        (None: no part). Kept until the table changes."""
        if not self.has_implicit_part(side):
            return None
        weight = self._part(side)[0].weight
        state = self._implicit_state()
        key = self._rows_key(weight)
        cached = state.get(("rows", side))
        if cached is None or cached[0] != key:
            cached = (key, sparse_product(self.implicit_matrix(side), weight.detach()))
            state[("rows", side)] = cached
        return cached[1]

    @staticmethod
    def _rows_key(weight: torch.Tensor) -> tuple:
        """What the cached whole-table rows were computed from (a step bumps ``_version``)."""
        return weight.data_ptr(), weight._version, weight.device

    def start_implicit_window(self) -> None:
        """Open a training window (module docstring of models/implicit.py): every part's sums as a
        leaf tensor whose gradient the batches accumulate."""
        state = self._implicit_state()
        for _, _, side in parts_of(self.config.implicit):
            if self.has_implicit_part(side):
                state[("window", side)] = self.implicit_rows(side).clone().requires_grad_()

    def close_implicit_window(self) -> bool:
        """Close the window: each implicit table's ``.grad`` becomes ``A.T @`` its sums' gradient.
        Returns whether any table got a gradient."""
        state = self._implicit_state()
        got = False
        for _, _, side in parts_of(self.config.implicit):
            sums = state.pop(("window", side), None)
            if sums is None or sums.grad is None:
                continue
            table, _ = self._part(side)
            table.weight.grad = sparse_product(self.implicit_matrix(side, transpose=True), sums.grad)
            # the table has not changed since the window opened: its sums are the whole-table rows
            state[("rows", side)] = (self._rows_key(table.weight), sums.detach())
            got = True
        return got

    def resizable_buffers(self) -> set[str]:
        """State-dict keys whose length a checkpoint may change: ``N``'s indices (``config.rated_pairs``
        long, empty where training dropped the parts, :mod:`recmodels.training.implicit_probe`)."""
        return {f"{prefix}_indices" for _, prefix, _ in parts_of(self.config.implicit)}

    def has_implicit_part(self, side: str) -> bool:
        """Whether ``side`` has an implicit part: configured, and ``N`` not empty (training empties
        it where the parts were dropped, :mod:`recmodels.training.implicit_probe`)."""
        table, prefix = self._part(side)
        return table is not None and getattr(self, f"{prefix}_indices").numel() > 0

    def implicit_offset(self, side: str, index: torch.Tensor) -> torch.Tensor | None:
        """The implicit part of the ``side`` ("user"/"item") GMF rows of ``index`` (None: no part)."""
        if not self.has_implicit_part(side):
            return None
        table, prefix = self._part(side)
        window = self._implicit_state().get(("window", side))
        if window is not None and torch.is_grad_enabled():
            return window.index_select(0, index)
        if torch.is_grad_enabled():
            return implicit_sums(table, getattr(self, f"{prefix}_indptr"), getattr(self, f"{prefix}_indices"),
                                 index)
        return self.implicit_rows(side).index_select(0, index)

    def gmf_rows(self, user_index: torch.Tensor, item_index: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """The effective GMF rows of a batch: the tables' rows plus their implicit parts."""
        user, item = self.user_gmf(user_index), self.item_gmf(item_index)
        user_part = self.implicit_offset("user", user_index)
        item_part = self.implicit_offset("item", item_index)
        return (user if user_part is None else user + user_part,
                item if item_part is None else item + item_part)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self._implicit_state().clear()
        for _, name, _ in parts_of(self.config.implicit):
            # N's CSR indices are as long as the training pairs: take the saved length
            key = f"{prefix}{name}_indices"
            if key in state_dict:
                setattr(self, f"{name}_indices", torch.zeros_like(
                    state_dict[key], device=getattr(self, f"{name}_indices").device))
            # a table grown by rows (e.g. a prior row appended): the new rows rated nothing
            key = f"{prefix}{name}_indptr"
            saved, own = state_dict.get(key), getattr(self, f"{name}_indptr")
            if saved is not None and 0 < saved.shape[0] < own.shape[0]:
                state_dict[key] = torch.cat([saved, saved[-1:].expand(own.shape[0] - saved.shape[0])])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def features(self, user_index: torch.Tensor, item_index: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, user_index: torch.Tensor, item_index: torch.Tensor) -> torch.Tensor:
        """Predicted ratings.

        Parameters
        ----------
        user_index, item_index : LongTensor of shape (B,)

        Returns
        -------
        FloatTensor of shape (B,)
        """
        features = self.features(user_index, item_index)
        device_type = features.device.type
        if torch.is_autocast_enabled(device_type):
            # Mixed-precision training autocasts the MLP tower only; the predict layer (one
            # output, negligible cost) stays fp32 so predictions are not rounded to bf16.
            with torch.autocast(device_type, enabled=False):
                out = self.predict(features.float()).squeeze(-1) + self.global_mean
        else:
            out = self.predict(features).squeeze(-1) + self.global_mean
        if self.config.use_bias:
            out = out + self.user_bias(user_index).squeeze(-1) + self.item_bias(item_index).squeeze(-1)
        return out

    def embedding_tables(self) -> list[tuple[nn.Embedding, str]]:
        """``(table, "user"|"item")`` for every learned embedding table (biases included)."""
        tables = [(m, "user" if name.startswith("user") else "item")
                  for name, m in self.named_children() if isinstance(m, nn.Embedding)]
        return tables

    def l2_tables(self) -> list[tuple[nn.Embedding, str]]:
        """:meth:`embedding_tables` less the implicit ones (their penalty is their optimizer's)."""
        implicit = {id(t) for t in self.implicit_tables}
        return [(t, side) for t, side in self.embedding_tables() if id(t) not in implicit]

    def l2_penalty(self, user_index: torch.Tensor, item_index: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of the squared norms of the rows the batch looks up."""
        total = user_index.new_zeros((), dtype=torch.float32)
        for table, side in self.l2_tables():
            rows = table(user_index if side == "user" else item_index)
            total = total + rows.pow(2).sum(dim=1).mean()
        return total

    def extra_repr(self) -> str:
        return f"kind={self.config.kind!r}"
