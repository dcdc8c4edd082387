"""Encoded ratings as device tensors, predictions for them in batches, and the training
config's values that come from them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import DataError
from .config import TrainConfig


@dataclass
class RatingTensors:
    """The three columns of encoded ratings as tensors on one device."""

    user_index: torch.Tensor
    item_index: torch.Tensor
    rating: torch.Tensor

    def __len__(self) -> int:
        return int(self.user_index.shape[0])

    @classmethod
    def from_arrays(cls, data, device: torch.device) -> RatingTensors:
        """From an object with ``user_index``/``item_index``/``rating`` (e.g. EncodedRatings)
        or a ``(user_index, item_index, rating)`` tuple."""
        if isinstance(data, RatingTensors):
            return cls(data.user_index.to(device), data.item_index.to(device),
                       data.rating.to(device))
        if isinstance(data, (tuple, list)):
            users, items, ratings = data
        else:
            users, items, ratings = data.user_index, data.item_index, data.rating
        users = torch.from_numpy(np.array(users, dtype=np.int64)).to(device)
        items = torch.from_numpy(np.array(items, dtype=np.int64)).to(device)
        ratings = torch.from_numpy(np.array(ratings, dtype=np.float32)).to(device)
        if not (users.shape == items.shape == ratings.shape) or users.ndim != 1:
            raise DataError("user_index, item_index and rating must be 1-D arrays of one length")
        return cls(users, items, ratings)


@torch.inference_mode()
def predict_tensors(model: nn.Module, users: torch.Tensor, items: torch.Tensor,
                    batch_size: int = 65536) -> torch.Tensor:
    """Predictions for index tensors in eval mode, in batches (restores the model's mode).

    Returns
    -------
    FloatTensor of shape (n,) on the tensors' device
    """
    was_training = model.training
    model.eval()
    try:
        out = [model(users[s:s + batch_size], items[s:s + batch_size])
               for s in range(0, users.shape[0], batch_size)]
    finally:
        model.train(was_training)
    if not out:
        return torch.empty(0, device=users.device)
    return torch.cat(out)


def resolve_for_data(config: TrainConfig, train, kind: str = "neumf") -> TrainConfig:
    """``config`` with its "from the data" fields (``batch_size``, ``l2``) set for ``train``.

    Parameters
    ----------
    config : TrainConfig
    train : RatingTensors, EncodedRatings or (user_index, item_index, rating) arrays
    kind : str
        The model kind (picks the ``l2`` rule).
    """
    if config.is_resolved:
        return config
    if isinstance(train, (tuple, list)):
        users, items = train[0], train[1]
    else:
        users, items = train.user_index, train.item_index
    distinct = [int(torch.unique(x).numel()) if isinstance(x, torch.Tensor) else int(np.unique(x).size)
                for x in (users, items)]
    return config.resolve(len(users), kind=kind, n_users=distinct[0], n_items=distinct[1])
