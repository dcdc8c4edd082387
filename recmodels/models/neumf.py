"""Neural matrix factorisation (GMF branch + MLP tower)."""

from __future__ import annotations

import torch

from .config import ModelConfig
from .layers import RatingModelBase, embedding, mlp_tower, xavier_linear


class NeuMF(RatingModelBase):
    """NeuMF: ``predict(cat(gmf, mlp)) + global_mean (+ biases)``.

    ``gmf = user_gmf[u] * item_gmf[i]`` and ``mlp = mlp(cat(user_mlp[u], item_mlp[i]))``.

    Submodules: ``user_gmf``, ``item_gmf`` (Embedding [n, embedding_dim]); ``user_mlp``,
    ``item_mlp`` (Embedding [n, mlp_embedding_dim]); ``mlp`` (Sequential of
    ``[Dropout, Linear, ReLU] * num_layers``); ``predict`` (Linear(2 * embedding_dim, 1));
    optional ``user_bias`` / ``item_bias``; buffer ``global_mean``.
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        d, d_mlp = config.embedding_dim, config.mlp_embedding_dim
        self.user_gmf = embedding(config.n_users, d, config.init_std)
        self.item_gmf = embedding(config.n_items, d, config.init_std)
        self.user_mlp = embedding(config.n_users, d_mlp, config.init_std)
        self.item_mlp = embedding(config.n_items, d_mlp, config.init_std)
        self.mlp = mlp_tower(config)
        self.predict = xavier_linear(self.predict_width(), 1)

    def predict_width(self) -> int:
        return self.config.embedding_dim + self.config.mlp_layer_sizes[-1]

    def features(self, user_index: torch.Tensor, item_index: torch.Tensor) -> torch.Tensor:
        user, item = self.gmf_rows(user_index, item_index)
        gmf = user * item
        mlp = self.mlp(torch.cat([self.user_mlp(user_index), self.item_mlp(item_index)], dim=1))
        return torch.cat([gmf, mlp], dim=1)
