"""Build small scoring bundles without torch, through the exporter's own code, with a numpy oracle.

The weights are random numpy arrays (:func:`make_weights`). :func:`score_spec` reads them into the
exporter's :class:`~recmodels.export.folding.ScoreSpec`; the graph comes from the exporter's
folding and graph code (:func:`recmodels.export.graph.graph_for`: ``fold`` + ``build_folded``, or
``build_unfolded``) and the recommend graphs from the exporter's
:func:`~recmodels.export.recommend_graph.recommend_graphs`, and
:func:`recmodels.export.writer.write_bundle` writes the bundle as ``recmodels export`` does:
``onnx.checker``, the parity check in onnxruntime (CPU) against :func:`reference_scores`,
optionally ``model_ids.onnx`` and its parity check, ``recommend.onnx`` (+ ``retrieve.onnx``)
checked against ``model.onnx``, the id maps, and the ``Manifest`` (``build_manifest`` +
``finalize_bundle``) with parity, metrics and versions.

:func:`reference_scores` is the oracle: float64 numpy straight from the raw weights, written
independently of the spec and the folding. Three kinds:

* ``mf``: ``score = sum(P[u] * Q[i]) + bu[u] + bi[i] + mu``
* ``neumf``: GMF (``P[u] * Q[i]``) beside an MLP over ``concat(Mu[u], Mi[i])`` (ReLU layers
  ``2*mlp_dim -> layers...``), then a linear head ``Wo, bo`` over ``concat(gmf, mlp)`` plus ``mu``
* ``hybrid``: ``neumf`` with a pretrained item table ``E`` appended to the head's input

``model.config`` in the manifest has ``ModelConfig``'s keys, but the widths follow the factory's
arguments (``mlp_dim``, ``layers``), which a ``ModelConfig`` may not reproduce; the metrics are
stand-in figures (nothing is trained). Used by the scoring tests and by
``benchmarks/score_throughput.py``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recmodels.encoders import IdEncoder
from recmodels.export.folding import Layer, ScoreSpec, with_prior
from recmodels.export.graph import DEFAULT_OPSET, graph_for
from recmodels.export.manifest import library_versions
from recmodels.export.prior import prior_export
from recmodels.export.recommend_graph import recommend_graphs
from recmodels.export.writer import write_bundle

OPSET = DEFAULT_OPSET
KINDS = ("mf", "neumf", "hybrid")
REFERENCE = "numpy"
"""What the factory's parity check compares the graph with (``parity.reference``)."""

STAND_IN_METRICS = {
    "history": [{"epoch": 1, "train_mse": 0.64, "train_rmse": 0.8}],
    "best_epoch": 1,
    "valid": {"rmse": 0.9, "mae": 0.7, "mse": 0.81, "hit_accuracy": 0.5, "n": 1000},
    "test": {"rmse": 0.91, "mae": 0.71, "mse": 0.8281, "hit_accuracy": 0.49, "n": 1000},
}
"""A run's ``metrics.json`` as the factory records it (made-up figures of the right shape)."""


@dataclass
class FactoryBundle:
    path: Path
    user_ids: np.ndarray  # classes (row position = index)
    item_ids: np.ndarray
    weights: dict
    kind: str
    folded: bool
    fallback_score: float
    rating_range: tuple[float, float]
    prior: bool = False

    def reference(self, user_index, item_index) -> np.ndarray:
        """float64 numpy scores for index pairs (the oracle, never the folded tables); with the
        prior rows, index ``n_users`` (``n_items``) is the mean of the trained rows."""
        return reference_scores(prior_weights(self.weights) if self.prior else self.weights, self.kind,
                                user_index, item_index)

    def reference_ids(self, user_ids, item_ids, *, clip=False):
        """Reference ``(scores float32, known)`` for raw ids (unknown -> fallback; with the prior
        rows only pairs with both sides unknown, the other side's prior row otherwise)."""
        ue = IdEncoder.from_classes(self.user_ids, "user")
        ie = IdEncoder.from_classes(self.item_ids, "item")
        u, i = ue.transform(user_ids), ie.transform(item_ids)
        known = (u >= 0) & (i >= 0)
        scored = known
        if self.prior:
            scored = (u >= 0) | (i >= 0)
            u = np.where(u >= 0, u, len(self.user_ids))
            i = np.where(i >= 0, i, len(self.item_ids))
        out = np.full(u.size, self.fallback_score, dtype=np.float64)
        if scored.any():
            out[scored] = self.reference(u[scored], i[scored])
        if clip:
            out = np.clip(out, *self.rating_range)
        return out.astype(np.float32), known


def _relu(x):
    return np.maximum(x, 0)


def _n_layers(w) -> int:
    return sum(1 for k in w if k[0] == "W" and k[1:].isdigit())


def reference_scores(w, kind, u, i):
    """The oracle: float64 scores of index pairs ``(u, i)`` from the raw weights ``w``."""
    u = np.asarray(u, dtype=np.int64)
    i = np.asarray(i, dtype=np.int64)
    f64 = {k: np.asarray(v, dtype=np.float64) for k, v in w.items()}
    if kind == "mf":
        return (f64["P"][u] * f64["Q"][i]).sum(1) + f64["bu"][u] + f64["bi"][i] + f64["mu"][0]
    gmf = f64["P"][u] * f64["Q"][i]
    h = _relu(np.concatenate([f64["Mu"][u], f64["Mi"][i]], 1) @ f64["W0"] + f64["b0"])
    for layer in range(1, _n_layers(f64)):
        h = _relu(h @ f64[f"W{layer}"] + f64[f"b{layer}"])
    parts = [gmf, h] + ([f64["E"][i]] if kind == "hybrid" else [])
    return (np.concatenate(parts, 1) @ f64["Wo"])[:, 0] + f64["bo"][0] + f64["mu"][0]


USER_TABLES = ("P", "bu", "Mu")
ITEM_TABLES = ("Q", "bi", "Mi", "E")


def prior_weights(w: dict) -> dict:
    """``w`` with the mean row appended to every user and item table (the bundle's prior rows)."""
    out = dict(w)
    for name in USER_TABLES + ITEM_TABLES:
        if name in w:
            table = np.asarray(w[name], dtype=np.float64)
            out[name] = np.concatenate([table, table.mean(axis=0, keepdims=True)], axis=0)
    return out


def make_weights(
    kind, n_users, n_items, *, dim=8, mlp_dim=8, layers=(16, 8, 4), pretrained_dim=4, seed=0, mu=3.5,
    scale=0.3,
):
    """Random float32 weights: ``P``, ``Q``, ``mu``; mf ``bu``, ``bi``; neumf/hybrid ``Mu``, ``Mi``,
    ``W{k}`` ([in, out]), ``b{k}``, ``Wo`` ([features, 1]), ``bo``; hybrid ``E``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    rng = np.random.default_rng(seed)

    def r(*shape):
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    w = {"P": r(n_users, dim), "Q": r(n_items, dim), "mu": np.array([mu], np.float32)}
    if kind == "mf":
        w.update(bu=r(n_users), bi=r(n_items))
        return w
    w.update(Mu=r(n_users, mlp_dim), Mi=r(n_items, mlp_dim))
    prev = 2 * mlp_dim
    for k, width in enumerate(layers):
        w[f"W{k}"] = (rng.standard_normal((prev, width)) / np.sqrt(prev)).astype(np.float32)
        w[f"b{k}"] = r(width)
        prev = width
    extra = pretrained_dim if kind == "hybrid" else 0
    w["Wo"] = (rng.standard_normal((dim + prev + extra, 1)) / np.sqrt(dim + prev + extra)).astype(np.float32)
    w["bo"] = r(1)
    if kind == "hybrid":
        w["E"] = rng.standard_normal((n_items, pretrained_dim)).astype(np.float32)
    return w


def score_spec(w, kind) -> ScoreSpec:
    """The exporter's :class:`ScoreSpec` of the weights (float64 copies, as ``extract_spec`` makes)."""
    f64 = {k: np.asarray(v, dtype=np.float64) for k, v in w.items()}
    n_users, n_items = f64["P"].shape[0], f64["Q"].shape[0]
    if kind == "mf":
        spec = ScoreSpec(
            kind="mf", n_users=n_users, n_items=n_items, segments=("gmf",),
            predict_w=np.ones(f64["P"].shape[1]), global_mean=float(f64["mu"][0]),
            user_gmf=f64["P"], item_gmf=f64["Q"], user_bias=f64["bu"], item_bias=f64["bi"],
        )
    else:
        spec = ScoreSpec(
            kind=kind, n_users=n_users, n_items=n_items,
            segments=("gmf", "mlp", "pretrained") if kind == "hybrid" else ("gmf", "mlp"),
            predict_w=f64["Wo"][:, 0], predict_b=float(f64["bo"][0]), global_mean=float(f64["mu"][0]),
            user_gmf=f64["P"], item_gmf=f64["Q"], user_mlp=f64["Mu"], item_mlp=f64["Mi"],
            mlp_layers=[Layer(f64[f"W{k}"].T.copy(), f64[f"b{k}"], relu=True) for k in range(_n_layers(w))],
            item_pretrained=f64.get("E") if kind == "hybrid" else None,
        )
    spec.validate()
    return spec


def _model_config(w, kind, layers, pretrained_dim, scale) -> dict:
    """``ModelConfig.to_dict()``'s keys for the factory's network."""
    n_layers = len(layers) if kind != "mf" else 1
    return {
        "kind": kind,
        "n_users": int(w["P"].shape[0]),
        "n_items": int(w["Q"].shape[0]),
        "embedding_dim": int(w["P"].shape[1]),
        "num_layers": n_layers,
        "dropouts": [0.0] * n_layers if kind != "mf" else [],
        "init_std": float(scale),
        "pretrained_dim": int(pretrained_dim) if kind == "hybrid" else 0,
        "use_bias": kind == "mf",
        "global_mean": float(w["mu"][0]),
    }


def _recommend_graphs(spec, rank_all: bool):
    graphs = recommend_graphs(spec, OPSET)
    return graphs if rank_all else dataclasses.replace(graphs, rank_all=None, dot_reference=None)


def make_bundle(
    path: str | os.PathLike,
    *,
    kind: str = "mf",
    n_users: int = 50,
    n_items: int = 40,
    id_kind: str = "int64",
    user_ids=None,
    item_ids=None,
    dim: int = 8,
    mlp_dim: int = 8,
    layers=(16, 8, 4),
    pretrained_dim: int = 4,
    folded: bool = False,
    embed_encoders: bool = False,
    seed: int = 0,
    user_column: str = "user_id",
    item_column: str = "item_id",
    fallback_score: float = 3.25,
    rating_range=(1.0, 5.0),
    metrics: dict | None = None,
    recommend: bool = True,
    rank_all: bool = True,
    weights: dict | None = None,
    prior: bool = False,
    train_rows=None,
) -> FactoryBundle:
    """Write a bundle at ``path`` (replacing one there) and return its description with the oracle.

    Int ids default to sparse values (``1000 + 7*k`` users, ``5 + 3*k`` items) so dense-LUT and
    offset logic is exercised; string ids are ``"u0", "u1", ...`` / ``"i0", ...``. ``folded``
    folds the graph (any kind) as ``recmodels export`` does by default; ``embed_encoders`` adds
    ``model_ids.onnx``; ``recommend=False`` leaves out the recommend graphs (a bundle as exported
    before ``recmodels recommend`` existed); ``rank_all=False`` only the whole-catalogue graph (a
    bundle from before ``rank_all.onnx``). ``weights`` replaces the random weights
    (:func:`make_weights`'s keys and shapes). The parity check (10,000 pairs against
    :func:`reference_scores`) must pass, as at export. ``prior`` adds the prior rows and the
    fold-in arrays as ``recmodels export`` does (``train_rows``: ``(user_index, item_index)`` of
    made-up training rows, for the counts; ``metrics`` decides the precisions).
    """
    if user_ids is None:
        user_ids = (
            (1000 + 7 * np.arange(n_users))
            if id_kind == "int64"
            else np.array([f"u{k}" for k in range(n_users)], dtype=object)
        )
    if item_ids is None:
        item_ids = (
            (5 + 3 * np.arange(n_items))
            if id_kind == "int64"
            else np.array([f"i{k}" for k in range(n_items)], dtype=object)
        )
    ue = IdEncoder("user").fit(user_ids)
    ie = IdEncoder("item").fit(item_ids)
    w = weights if weights is not None else make_weights(
        kind, len(ue), len(ie), dim=dim, mlp_dim=mlp_dim, layers=layers, pretrained_dim=pretrained_dim,
        seed=seed,
    )
    spec = score_spec(w, kind)
    metrics = STAND_IN_METRICS if metrics is None else metrics
    exported = prior_export(spec, metrics=metrics, train_rows=train_rows) if prior else None
    graph, notes = graph_for(exported.spec if prior else spec, fold_graph=folded, opset=OPSET)
    recommend_spec = with_prior(spec, item=False) if prior else spec
    write_bundle(
        path,
        graph,
        folded=bool(folded),
        folding=notes,
        reference=lambda u, i: reference_scores(w, kind, u, i),
        reference_name=REFERENCE,
        model_config=_model_config(w, kind, layers, pretrained_dim, 0.3),
        user_encoder=ue,
        item_encoder=ie,
        versions=library_versions(torch=False),
        data={
            "user_col": user_column, "item_col": item_column, "rating_col": "rating",
            "rating_min": rating_range[0], "rating_max": rating_range[1], "global_mean": float(w["mu"][0]),
        },
        metrics=metrics,
        fallback_score=fallback_score,
        overwrite=True,
        embed_encoders=embed_encoders,
        recommend=_recommend_graphs(recommend_spec, rank_all) if recommend else None,
        prior=exported,
    )
    return FactoryBundle(
        Path(path),
        ue.classes_,
        ie.classes_,
        w,
        kind,
        bool(folded),
        fallback_score,
        tuple(rating_range),
        bool(prior),
    )
