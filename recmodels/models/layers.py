"""Building blocks shared by the rating models."""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig


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

    def l2_penalty(self, user_index: torch.Tensor, item_index: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of the squared norms of the rows the batch looks up."""
        total = user_index.new_zeros((), dtype=torch.float32)
        for table, side in self.embedding_tables():
            rows = table(user_index if side == "user" else item_index)
            total = total + rows.pow(2).sum(dim=1).mean()
        return total

    def extra_repr(self) -> str:
        return f"kind={self.config.kind!r}"
