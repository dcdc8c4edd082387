"""Read a trained ``recmodels.models`` network into a :class:`~recmodels.export.folding.ScoreSpec`.

This is the one place that knows the models' submodule names (see ``recmodels/models``):
``user_gmf``/``item_gmf``, ``user_mlp``/``item_mlp``, ``mlp`` (Sequential of Dropout/Linear/ReLU),
``predict`` (Linear(F, 1)), optional ``user_bias``/``item_bias`` (Embedding [n, 1]), buffers
``global_mean`` and (hybrid) ``item_pretrained``; with ``config.implicit`` the GMF rows are the
effective ones (``implicit_rows``: the known rows' implicit parts folded in), and the user part's
vectors ``item_implicit`` go to the fold-in. ``features()`` concatenates
``[gmf, mlp, item_pretrained]`` in that order. The parity check is the judge that this
reading is right.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..models.implicit import parts_of
from .folding import Layer, ScoreSpec


def _np(tensor) -> np.ndarray:
    return tensor.detach().cpu().double().numpy()


def _tower(mlp) -> list[Layer]:
    from torch import nn

    layers: list[Layer] = []
    for module in mlp:
        if isinstance(module, nn.Dropout):
            continue  # identity at inference
        if isinstance(module, nn.Linear):
            bias = _np(module.bias) if module.bias is not None else np.zeros(module.out_features)
            layers.append(Layer(_np(module.weight), bias, relu=False))
        elif isinstance(module, nn.ReLU) and layers and not layers[-1].relu:
            layers[-1].relu = True
        else:
            raise ConfigError(f"cannot export MLP layer {module!r}: only Dropout, Linear and ReLU")
    return layers


def _gmf_rows(model, side: str) -> np.ndarray:
    """The GMF table of ``side`` with the known rows' implicit parts folded in (the effective rows)."""
    rows = _np((model.user_gmf if side == "user" else model.item_gmf).weight)
    implicit = model.implicit_rows(side) if hasattr(model, "implicit_rows") else None
    return rows if implicit is None else rows + _np(implicit)


def extract_spec(model) -> ScoreSpec:
    """The scoring function of ``model`` (an MF, NeuMF or HybridNeuMF) as float64 arrays."""
    config = model.config
    segments = ["gmf"]
    spec = ScoreSpec(
        kind=config.kind,
        n_users=config.n_users,
        n_items=config.n_items,
        segments=(),
        predict_w=_np(model.predict.weight).reshape(-1),
        predict_b=float(_np(model.predict.bias).reshape(-1)[0]) if model.predict.bias is not None else 0.0,
        global_mean=float(_np(model.global_mean)) if hasattr(model, "global_mean") else 0.0,
        user_gmf=_gmf_rows(model, "user"),
        item_gmf=_gmf_rows(model, "item"),
    )
    # what users / items folded in from a history get their implicit parts from (a model whose N
    # is empty, never given its training pairs or its parts dropped in training, has none to give)
    for table, _, side in parts_of(config.implicit):
        if model.has_implicit_part(side):
            mean_part = _np(model.implicit_rows(side)).mean(axis=0, keepdims=True)
            setattr(spec, f"{side}_implicit", np.concatenate([_np(getattr(model, table).weight), mean_part]))
    if getattr(model.predict, "out_features", 1) != 1:
        raise ConfigError("cannot export: the predict layer must have one output")
    if hasattr(model, "user_mlp"):
        segments.append("mlp")
        spec.user_mlp = _np(model.user_mlp.weight)
        spec.item_mlp = _np(model.item_mlp.weight)
        spec.mlp_layers = _tower(model.mlp)
    if hasattr(model, "item_pretrained"):
        segments.append("pretrained")
        spec.item_pretrained = _np(model.item_pretrained)
    if getattr(config, "use_bias", False):
        spec.user_bias = _np(model.user_bias.weight).reshape(-1)
        spec.item_bias = _np(model.item_bias.weight).reshape(-1)
    spec.segments = tuple(segments)
    try:
        spec.validate()
    except (AssertionError, ValueError) as exc:
        raise ConfigError(f"cannot export this {config.kind} model: {exc}") from None
    return spec
