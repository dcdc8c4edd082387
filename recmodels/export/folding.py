"""The scoring function as plain arrays, and its exact inference-time folding (numpy only).

Every recmodels model computes, for a user ``u`` and an item ``i``::

    x      = concat[segment for segment in segments]          # segments from below, in order
    score  = predict_w . x + predict_b + global_mean + user_bias[u] + item_bias[i]

    "pretrained"  item_pretrained[i]
    "gmf"         user_gmf[u] * item_gmf[i]      (with the implicit signal: the effective rows)
    "mlp"         tower(concat[user_mlp[u], item_mlp[i]]),  tower = (Linear, ReLU?)*

:class:`ScoreSpec` holds those arrays (float64 copies of the float32 weights, so that the
folding arithmetic below is done in double precision and cast to float32 once).
:func:`fold` rewrites a spec into a :class:`FoldedSpec` that computes the same score with
fewer operations per row:

* dropout is the identity at inference and never appears;
* ``predict_w``'s GMF slice multiplies into the user GMF table;
* every per-item linear term (item bias) becomes one per-item scalar, every per-user term
  one per-user scalar, and the constants
  (``predict_b + global_mean``) join the per-item scalar; these scalars ride along as two
  extra columns of the GMF tables (``[.., s_u, 1] * [.., 1, s_i]``) so no separate gathers
  or adds are needed;
* the MLP's first Linear over ``[user_mlp; item_mlp]`` splits as ``W_u user_mlp + W_i item_mlp + b``,
  so it becomes per-user and per-item tables of the layer's output width;
* the hybrid's pretrained table is kept as it is (the bundle carries the raw table, so a
  reader of the graph finds the exact vectors the model was trained with); its predict
  weights join the final MatMul.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SEGMENTS = ("pretrained", "gmf", "mlp")


@dataclass
class Layer:
    """One ``Linear`` (``weight`` [out, in], ``bias`` [out]) optionally followed by ReLU."""

    weight: np.ndarray
    bias: np.ndarray
    relu: bool = True


@dataclass
class ScoreSpec:
    """A model's scoring function as arrays (see the module docstring for the formula)."""

    kind: str
    n_users: int
    n_items: int
    segments: tuple[str, ...]
    predict_w: np.ndarray
    predict_b: float = 0.0
    global_mean: float = 0.0
    user_gmf: np.ndarray | None = None
    item_gmf: np.ndarray | None = None
    user_mlp: np.ndarray | None = None
    item_mlp: np.ndarray | None = None
    mlp_layers: list[Layer] = field(default_factory=list)
    item_pretrained: np.ndarray | None = None
    user_bias: np.ndarray | None = None
    item_bias: np.ndarray | None = None
    user_implicit: np.ndarray | None = None
    """With the implicit signal's user part (``ModelConfig.implicit``): the "items this user rated"
    vectors ``y`` [n_items, gmf width] and, as row ``n_items``, the mean of the trained users'
    parts ``|N(u)|^-1/2 sum y``. Not in the score (the known users' parts are already in
    ``user_gmf``): what a user folded in from a history gets its part from
    (:func:`implicit_fold_array`)."""
    item_implicit: np.ndarray | None = None
    """With the implicit signal's item part: the "users who rated this item" vectors ``z``
    [n_users, gmf width] and, as row ``n_users``, the mean of the trained items' parts: what an
    item folded in from a history gets its part from, as :attr:`user_implicit` for users."""

    def segment_width(self, name: str) -> int:
        if name == "pretrained":
            return self.item_pretrained.shape[1]
        if name == "gmf":
            return self.user_gmf.shape[1]
        if name == "mlp":
            if self.mlp_layers:
                return self.mlp_layers[-1].weight.shape[0]
            return self.user_mlp.shape[1] + self.item_mlp.shape[1]
        raise ValueError(f"unknown segment {name!r}")

    def predict_slices(self) -> dict[str, np.ndarray]:
        """``predict_w`` split by segment."""
        out, start = {}, 0
        for name in self.segments:
            width = self.segment_width(name)
            out[name] = self.predict_w[start : start + width]
            start += width
        if start != self.predict_w.size:
            raise ValueError(f"predict layer has {self.predict_w.size} inputs, segments give {start}")
        return out

    def validate(self) -> None:
        """Raise ``ValueError`` if the arrays do not fit together."""
        for name in self.segments:
            if name not in SEGMENTS:
                raise ValueError(f"unknown segment {name!r}")
        self.predict_slices()
        if "gmf" in self.segments:
            assert self.user_gmf.shape[0] == self.n_users and self.item_gmf.shape[0] == self.n_items
        if "mlp" in self.segments:
            assert self.user_mlp.shape[0] == self.n_users and self.item_mlp.shape[0] == self.n_items
            width = self.user_mlp.shape[1] + self.item_mlp.shape[1]
            for layer in self.mlp_layers:
                assert layer.weight.shape[1] == width, "MLP layer widths do not chain"
                width = layer.weight.shape[0]
        if "pretrained" in self.segments:
            assert self.item_pretrained.shape[0] == self.n_items

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Reference scores in float64 (tests and debugging)."""
        parts = []
        for name in self.segments:
            if name == "pretrained":
                parts.append(self.item_pretrained[items])
            elif name == "gmf":
                parts.append(self.user_gmf[users] * self.item_gmf[items])
            else:
                h = np.concatenate([self.user_mlp[users], self.item_mlp[items]], axis=1)
                for layer in self.mlp_layers:
                    h = h @ layer.weight.T + layer.bias
                    if layer.relu:
                        h = np.maximum(h, 0.0)
                parts.append(h)
        x = np.concatenate(parts, axis=1)
        out = x @ self.predict_w + self.predict_b + self.global_mean
        if self.user_bias is not None:
            out = out + self.user_bias[users]
        if self.item_bias is not None:
            out = out + self.item_bias[items]
        return out


@dataclass
class FoldedSpec:
    """The folded scoring function::

        d      = user_dot[u] * item_dot[i]                     # [k]
        h      = relu(user_first[u] + item_first[i])           # only with an MLP tower
        h      = relu?(h @ W.T + b) for the remaining layers
        score  = sum(d) + out_w . h

    ``user_dot``/``item_dot`` carry the (weighted) GMF product plus the folded per-user and
    per-item scalars as trailing columns.
    """

    kind: str
    n_users: int
    n_items: int
    user_dot: np.ndarray
    item_dot: np.ndarray
    user_first: np.ndarray | None = None
    item_first: np.ndarray | None = None
    first_relu: bool = True
    rest_layers: list[Layer] = field(default_factory=list)
    out_w: np.ndarray | None = None
    item_pretrained: np.ndarray | None = None
    pretrained_w: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    def score(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        out = np.sum(self.user_dot[users] * self.item_dot[items], axis=1)
        if self.item_pretrained is not None:
            out = out + self.item_pretrained[items] @ self.pretrained_w
        if self.user_first is not None:
            h = self.user_first[users] + self.item_first[items]
            if self.first_relu:
                h = np.maximum(h, 0.0)
            for layer in self.rest_layers:
                h = h @ layer.weight.T + layer.bias
                if layer.relu:
                    h = np.maximum(h, 0.0)
            out = out + h @ self.out_w
        return out


def fold(spec: ScoreSpec) -> FoldedSpec:
    """Fold ``spec`` exactly (in float64) into a :class:`FoldedSpec`."""
    spec.validate()
    f64 = np.float64
    w = {k: np.asarray(v, dtype=f64) for k, v in spec.predict_slices().items()}
    notes = ["dropout removed (identity at inference)"]

    item_scalar = np.full(spec.n_items, float(spec.predict_b) + float(spec.global_mean), dtype=f64)
    notes.append("predict bias and global mean folded into the per-item scalar")
    user_scalar = None
    if spec.user_bias is not None:
        user_scalar = np.asarray(spec.user_bias, dtype=f64).copy()
        notes.append("user bias folded into the per-user scalar")
    if spec.item_bias is not None:
        item_scalar += np.asarray(spec.item_bias, dtype=f64)
        notes.append("item bias folded into the per-item scalar")
    item_pretrained = pretrained_w = None
    if "pretrained" in w:
        item_pretrained = np.asarray(spec.item_pretrained, dtype=f64)
        pretrained_w = w["pretrained"]
        notes.append("item_pretrained kept as is; its predict weights join the final MatMul")

    user_first = item_first = None
    rest: list[Layer] = []
    first_relu = True
    out_w = None
    if "mlp" in w:
        um = np.asarray(spec.user_mlp, dtype=f64)
        im = np.asarray(spec.item_mlp, dtype=f64)
        du = um.shape[1]
        if spec.mlp_layers:
            first = spec.mlp_layers[0]
            weight = np.asarray(first.weight, dtype=f64)
            user_first = um @ weight[:, :du].T + np.asarray(first.bias, dtype=f64)
            item_first = im @ weight[:, du:].T
            first_relu = first.relu
            rest = [
                Layer(np.asarray(x.weight, dtype=f64), np.asarray(x.bias, dtype=f64), x.relu)
                for x in spec.mlp_layers[1:]
            ]
            out_w = w["mlp"]
            notes.append(
                f"first MLP Linear folded into per-user/per-item tables of width {weight.shape[0]}"
            )
            if not first_relu and not rest:
                # a purely linear tower: its output . out_w is a per-user plus a per-item scalar
                user_add = user_first @ out_w
                item_scalar += item_first @ out_w
                user_scalar = user_add if user_scalar is None else user_scalar + user_add
                user_first = item_first = out_w = None
        else:
            user_add = um @ w["mlp"][:du]
            item_scalar += im @ w["mlp"][du:]
            user_scalar = user_add if user_scalar is None else user_scalar + user_add
            notes.append("linear MLP branch folded into per-user/per-item scalars")

    user_cols, item_cols = [], []
    if "gmf" in w:
        user_cols.append(np.asarray(spec.user_gmf, dtype=f64) * w["gmf"])
        item_cols.append(np.asarray(spec.item_gmf, dtype=f64))
        notes.append("predict weights of the GMF branch folded into the user GMF table")
    if user_scalar is not None:
        user_cols.append(user_scalar[:, None])
        item_cols.append(np.ones((spec.n_items, 1), dtype=f64))
    user_cols.append(np.ones((spec.n_users, 1), dtype=f64))
    item_cols.append(item_scalar[:, None])
    return FoldedSpec(
        kind=spec.kind,
        n_users=spec.n_users,
        n_items=spec.n_items,
        user_dot=np.concatenate(user_cols, axis=1),
        item_dot=np.concatenate(item_cols, axis=1),
        user_first=user_first,
        item_first=item_first,
        first_relu=first_relu,
        rest_layers=rest,
        out_w=out_w,
        item_pretrained=item_pretrained,
        pretrained_w=pretrained_w,
        notes=notes,
    )


def with_prior(spec: ScoreSpec, *, user: bool = True, item: bool = True) -> ScoreSpec:
    """``spec`` with one "average" row appended to each user-side (and item-side) table.

    The prior user is the mean of the trained users' rows of every user-side table (GMF, MLP
    embedding, bias), and symmetrically for the prior item (the hybrid's pretrained vector
    included). Its score for an item is the model's score, computed exactly through the same
    graph, for a user whose parameters are the trained users' average; the prior row's index is
    ``n_users`` (``n_items``). Known rows are unchanged, so their scores are too.
    """
    spec.validate()
    out = ScoreSpec(**{f: getattr(spec, f) for f in spec.__dataclass_fields__})

    def grow(table):
        if table is None:
            return None
        table = np.asarray(table, dtype=np.float64)
        return np.concatenate([table, table.mean(axis=0, keepdims=True)], axis=0)

    if user:
        out.n_users = spec.n_users + 1
        out.user_gmf, out.user_mlp, out.user_bias = map(grow, (spec.user_gmf, spec.user_mlp, spec.user_bias))
    if item:
        out.n_items = spec.n_items + 1
        out.item_gmf, out.item_mlp, out.item_bias, out.item_pretrained = map(
            grow, (spec.item_gmf, spec.item_mlp, spec.item_bias, spec.item_pretrained)
        )
    out.validate()
    return out


def effective_vectors(spec: ScoreSpec) -> tuple[np.ndarray, np.ndarray]:
    """``(P, Q)``: the rows whose dot product is the model's GMF term, ``P = user_gmf * w_gmf``.

    With the user's (item's) MLP input held fixed, the score is linear in its row of ``P``
    (``Q``) and its bias: the fold-in regresses on these (:mod:`recmodels.scoring.history`).
    Models without a GMF segment give zero-width arrays.
    """
    w = spec.predict_slices().get("gmf")
    if w is None:
        return np.zeros((spec.n_users, 0)), np.zeros((spec.n_items, 0))
    return (np.asarray(spec.user_gmf, dtype=np.float64) * np.asarray(w, dtype=np.float64),
            np.asarray(spec.item_gmf, dtype=np.float64))


def implicit_fold_array(spec: ScoreSpec, side: str = "user") -> np.ndarray | None:
    """The fold-in array of the implicit ``side`` part, in the coordinates of
    :func:`effective_vectors`' ``P`` / ``Q``: for the user part ``y * w_gmf`` per item, then the
    trained users' mean part times ``w_gmf`` ([n_items + 1, width]); for the item part ``z`` per
    user, then the trained items' mean part (``Q`` is the table itself: [n_users + 1, width]).
    float32; None without the part."""
    vectors = spec.user_implicit if side == "user" else spec.item_implicit
    if vectors is None:
        return None
    vectors = np.asarray(vectors, dtype=np.float64)
    if side == "user":
        vectors = vectors * np.asarray(spec.predict_slices()["gmf"], dtype=np.float64)
    return vectors.astype(np.float32)
