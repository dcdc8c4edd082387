"""Hybrid NeuMF: NeuMF plus a frozen pretrained item table."""

from __future__ import annotations

import torch

from .config import ModelConfig
from .neumf import NeuMF


class HybridNeuMF(NeuMF):
    """NeuMF whose predict layer also sees the item's pretrained vector.

    ``predict(cat(gmf, mlp, item_pretrained[i])) + global_mean (+ biases)``. The pretrained
    table is the buffer ``item_pretrained`` [n_items, pretrained_dim]: saved in the state dict,
    never a parameter, never updated by training. Fill it with :meth:`set_pretrained` (or by
    loading a state dict); it starts as zeros.
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.register_buffer(
            "item_pretrained", torch.zeros(config.n_items, config.pretrained_dim)
        )

    def predict_width(self) -> int:
        return super().predict_width() + self.config.pretrained_dim

    def set_pretrained(self, matrix) -> HybridNeuMF:
        """Copy an aligned [n_items, pretrained_dim] float matrix into ``item_pretrained``."""
        matrix = torch.as_tensor(matrix, dtype=torch.float32)
        if tuple(matrix.shape) != tuple(self.item_pretrained.shape):
            raise ValueError(
                f"pretrained item matrix must have shape {tuple(self.item_pretrained.shape)}, "
                f"got {tuple(matrix.shape)}"
            )
        with torch.no_grad():
            self.item_pretrained.copy_(matrix)
        return self

    def features(self, user_index: torch.Tensor, item_index: torch.Tensor) -> torch.Tensor:
        return torch.cat([super().features(user_index, item_index),
                          self.item_pretrained[item_index]], dim=1)
