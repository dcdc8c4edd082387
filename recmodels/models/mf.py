"""Matrix factorisation: the notebook's GMF baseline."""

from __future__ import annotations

import torch

from .config import ModelConfig
from .layers import RatingModelBase, embedding, xavier_linear


class MF(RatingModelBase):
    """``predict(user_gmf[u] * item_gmf[i]) + global_mean (+ user_bias[u] + item_bias[i])``.

    Submodules: ``user_gmf``, ``item_gmf`` (Embedding [n, embedding_dim]), ``predict``
    (Linear(embedding_dim, 1)), optional ``user_bias`` / ``item_bias`` (Embedding [n, 1]);
    buffer ``global_mean`` (scalar).
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        d = config.embedding_dim
        self.user_gmf = embedding(config.n_users, d, config.init_std)
        self.item_gmf = embedding(config.n_items, d, config.init_std)
        self.predict = xavier_linear(d, 1)

    def features(self, user_index: torch.Tensor, item_index: torch.Tensor) -> torch.Tensor:
        user, item = self.gmf_rows(user_index, item_index)
        return user * item
