"""Rating networks (``nn.Module`` only: no I/O, no training loop).

Every model maps ``(user_index LongTensor[B], item_index LongTensor[B])`` to
``FloatTensor[B]`` predicted ratings and is rebuilt exactly from its
:class:`ModelConfig` plus state dict::

    model = build_model(config)
    model.load_state_dict(state_dict)

:class:`ModelConfig` needs no torch; the network classes (and :func:`build_model`) import it
on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _lazy
from .config import DEFAULT_KIND, IMPLICIT_PARTS, MODEL_KINDS, ModelConfig, default_dropouts

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

_CLASS_MODULES = {"MF": ".mf", "NeuMF": ".neumf", "HybridNeuMF": ".hybrid", "RatingModelBase": ".layers"}
_KIND_CLASSES = {"mf": "MF", "neumf": "NeuMF", "hybrid": "HybridNeuMF"}
__getattr__, __dir__ = _lazy.lazy_exports(globals(), _CLASS_MODULES)


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
    model = __getattr__(_KIND_CLASSES[config.kind])(config)
    if pretrained is not None:
        if config.kind != "hybrid":
            raise ValueError(f"pretrained item vectors are only for hybrid models, not {config.kind!r}")
        model.set_pretrained(pretrained)
    return model


__all__ = [
    "DEFAULT_KIND", "IMPLICIT_PARTS", "MF", "MODEL_KINDS", "HybridNeuMF", "ModelConfig", "NeuMF",
    "RatingModelBase", "build_model", "default_dropouts",
]
