"""Build small scoring bundles without torch: an ONNX graph from ``onnx.helper``, id maps and a
manifest, plus a numpy reference scorer for the same weights.

Two graph kinds:

* ``mf``: ``score = sum(P[u] * Q[i]) + bu[u] + bi[i] + mu``
* ``neumf``: GMF (``P[u] * Q[i]``) beside an MLP over ``concat(Mu[u], Mi[i])``, layers
  ``2*mlp_dim -> layers...``, then a linear head over ``concat(gmf, mlp)`` plus ``mu``. With
  ``folded=True`` the first MLP layer is folded into per-user / per-item tables
  (``Tu = Mu @ W1[:d]``, ``Ti = Mi @ W1[d:] + b1``) as the real exporter does.

Used by the scoring tests and by ``benchmarks/score_throughput.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from recmodels.bundle import finalize_bundle
from recmodels.encoders import IdEncoder

OPSET = 17


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

    def reference(self, user_index, item_index) -> np.ndarray:
        """float64 numpy scores for valid index pairs (always the unfolded math)."""
        return reference_scores(self.weights, self.kind, False, user_index, item_index)

    def reference_ids(self, user_ids, item_ids, *, clip=False):
        """Reference ``(scores float32, known)`` for raw ids (unknown -> fallback)."""
        ue = IdEncoder.from_classes(self.user_ids, "user")
        ie = IdEncoder.from_classes(self.item_ids, "item")
        u, i = ue.transform(user_ids), ie.transform(item_ids)
        known = (u >= 0) & (i >= 0)
        out = np.full(u.size, self.fallback_score, dtype=np.float64)
        if known.any():
            out[known] = self.reference(u[known], i[known])
        if clip:
            out = np.clip(out, *self.rating_range)
        return out.astype(np.float32), known


def _relu(x):
    return np.maximum(x, 0)


def reference_scores(w, kind, folded, u, i):
    u = np.asarray(u, dtype=np.int64)
    i = np.asarray(i, dtype=np.int64)
    f64 = {k: np.asarray(v, dtype=np.float64) for k, v in w.items()}
    if kind == "mf":
        return (f64["P"][u] * f64["Q"][i]).sum(1) + f64["bu"][u] + f64["bi"][i] + f64["mu"][0]
    gmf = f64["P"][u] * f64["Q"][i]
    if folded:
        h = _relu(f64["Tu"][u] + f64["Ti"][i])
    else:
        h = _relu(np.concatenate([f64["Mu"][u], f64["Mi"][i]], 1) @ f64["W0"] + f64["b0"])
    n = sum(1 for k in f64 if k.startswith("W") and k != "Wo")
    for layer in range(1, n):
        h = _relu(h @ f64[f"W{layer}"] + f64[f"b{layer}"])
    return (np.concatenate([gmf, h], 1) @ f64["Wo"])[:, 0] + f64["bo"][0] + f64["mu"][0]


def make_weights(
    kind, n_users, n_items, *, dim=8, mlp_dim=8, layers=(16, 8, 4), seed=0, mu=3.5, scale=0.3
):
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
    w["Wo"] = (rng.standard_normal((dim + prev, 1)) / np.sqrt(dim + prev)).astype(np.float32)
    w["bo"] = r(1)
    return w


def fold_weights(w, mlp_dim):
    out = {k: v for k, v in w.items() if k not in ("Mu", "Mi", "W0", "b0")}
    out["Tu"] = (w["Mu"] @ w["W0"][:mlp_dim]).astype(np.float32)
    out["Ti"] = (w["Mi"] @ w["W0"][mlp_dim:] + w["b0"]).astype(np.float32)
    out["W0"] = np.zeros((0,), np.float32)  # placeholder so the layer count stays the same
    return out


def build_graph(w, kind, folded) -> onnx.ModelProto:
    init = []
    nodes = []

    def const(name, array):
        init.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(op, inputs, output, **attrs):
        nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    const("axis1", np.array([1], np.int64))
    const("mu", w["mu"])
    const("P", w["P"])
    const("Q", w["Q"])
    pu = node("Gather", ["P", "user_index"], "pu")
    qi = node("Gather", ["Q", "item_index"], "qi")
    gmf = node("Mul", [pu, qi], "gmf")
    if kind == "mf":
        const("bu", w["bu"])
        const("bi", w["bi"])
        dot = node("ReduceSum", [gmf, "axis1"], "dot", keepdims=0)
        s = node("Add", [dot, node("Gather", ["bu", "user_index"], "gbu")], "s1")
        s = node("Add", [s, node("Gather", ["bi", "item_index"], "gbi")], "s2")
        node("Add", [s, "mu"], "score")
    else:
        n_layers = sum(1 for k in w if k.startswith("W") and k != "Wo")
        if folded:
            const("Tu", w["Tu"])
            const("Ti", w["Ti"])
            h = node(
                "Add",
                [
                    node("Gather", ["Tu", "user_index"], "tu"),
                    node("Gather", ["Ti", "item_index"], "ti"),
                ],
                "h0pre",
            )
            h = node("Relu", [h], "h0")
            first = 1
        else:
            const("Mu", w["Mu"])
            const("Mi", w["Mi"])
            x = node(
                "Concat",
                [
                    node("Gather", ["Mu", "user_index"], "mu_u"),
                    node("Gather", ["Mi", "item_index"], "mi_i"),
                ],
                "x",
                axis=1,
            )
            h = x
            first = 0
        for k in range(first, n_layers):
            const(f"W{k}", w[f"W{k}"])
            const(f"b{k}", w[f"b{k}"])
            h = node("Relu", [node("Gemm", [h, f"W{k}", f"b{k}"], f"g{k}")], f"h{k}")
        const("Wo", w["Wo"])
        const("bo", w["bo"])
        z = node("Concat", [gmf, h], "z", axis=1)
        out = node("Gemm", [z, "Wo", "bo"], "o")
        out = node("Squeeze", [out, "axis1"], "o1")
        node("Add", [out, "mu"], "score")
    graph = helper.make_graph(
        nodes,
        f"recmodels_factory_{kind}",
        [
            helper.make_tensor_value_info("user_index", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("item_index", TensorProto.INT64, ["batch"]),
        ],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


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
    folded: bool = False,
    seed: int = 0,
    user_column: str = "user_id",
    item_column: str = "item_id",
    fallback_score: float = 3.25,
    rating_range=(1.0, 5.0),
) -> FactoryBundle:
    """Write a bundle at ``path`` and return its description with a reference scorer.

    Int ids default to sparse values (``1000 + 7*k``) so dense-LUT and offset logic is exercised;
    string ids are ``"u0", "u1", ...``.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
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
    w = make_weights(kind, len(ue), len(ie), dim=dim, mlp_dim=mlp_dim, layers=layers, seed=seed)
    wg = fold_weights(w, mlp_dim) if (kind == "neumf" and folded) else w
    model = build_graph(wg, kind, folded and kind == "neumf")
    onnx.save(model, path / "model.onnx")
    ue.save(path / "user_ids.parquet")
    ie.save(path / "item_ids.parquet")
    manifest = {
        "ids": {
            "user": {"column": user_column, "dtype": ue.kind_, "count": len(ue)},
            "item": {"column": item_column, "dtype": ie.kind_, "count": len(ie)},
        },
        "rating": {
            "column": "rating",
            "min": rating_range[0],
            "max": rating_range[1],
            "global_mean": 3.5,
        },
        "fallback_score": fallback_score,
        "graph": {
            "file": "model.onnx",
            "opset": OPSET,
            "inputs": [
                {"name": "user_index", "dtype": "int64", "shape": ["batch"]},
                {"name": "item_index", "dtype": "int64", "shape": ["batch"]},
            ],
            "outputs": [{"name": "score", "dtype": "float32", "shape": ["batch"]}],
        },
        "model": {
            "kind": kind,
            "config": {"dim": dim, "mlp_dim": mlp_dim, "layers": list(layers)},
            "folded": bool(folded and kind == "neumf"),
        },
        "versions": {"onnx": onnx.__version__},
    }
    finalize_bundle(path, manifest)
    return FactoryBundle(
        path,
        ue.classes_,
        ie.classes_,
        w,
        kind,
        bool(folded and kind == "neumf"),
        fallback_score,
        tuple(rating_range),
    )
