"""Rating networks (``nn.Module`` only: no I/O, no training loop).

Every model maps ``(user_index LongTensor[B], item_index LongTensor[B])`` to
``FloatTensor[B]`` predicted ratings and is rebuilt exactly from its
:class:`ModelConfig` plus state dict::

    model = build_model(config)
    model.load_state_dict(state_dict)
"""

from __future__ import annotations

from torch import nn

from .config import MODEL_KINDS, ModelConfig
from .hybrid import HybridNeuMF
from .layers import RatingModelBase
from .mf import MF
from .neumf import NeuMF

_CLASSES = {"mf": MF, "neumf": NeuMF, "hybrid": HybridNeuMF}


def build_model(config: ModelConfig, pretrained=None) -> nn.Module:
    """Build the network ``config`` describes (freshly initialised).

    Parameters
    ----------
    config : ModelConfig
    pretrained : array-like of shape (n_items, pretrained_dim), optional
        Hybrid only: the aligned pretrained item matrix to copy into ``item_pretrained``.

    Returns
    -------
    nn.Module
        An :class:`MF`, :class:`NeuMF` or :class:`HybridNeuMF`.
    """
    model = _CLASSES[config.kind](config)
    if pretrained is not None:
        if config.kind != "hybrid":
            raise ValueError(f"pretrained item vectors are only for hybrid models, not {config.kind!r}")
        model.set_pretrained(pretrained)
    return model


__all__ = [
    "MF", "MODEL_KINDS", "HybridNeuMF", "ModelConfig", "NeuMF", "RatingModelBase", "build_model",
]
