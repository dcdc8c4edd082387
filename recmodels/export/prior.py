"""The prior side of a bundle: the "average" user and item rows, and the fold-in arrays (numpy only).

:func:`prior_export` describes what the writer adds to a bundle so that a pair with one unknown
side is scored with what the model knows about the other side, and so that new users and items
can be folded in from their ratings (:mod:`recmodels.scoring.history`):

* row ``n_users`` of every user-side table of ``model.onnx`` and ``recommend.onnx`` is the prior
  user (:func:`~recmodels.export.folding.with_prior`), row ``n_items`` of every item-side table of
  ``model.onnx`` the prior item (the recommend graphs rank real items only and get no item row);
* ``fold_user_vectors.npy`` / ``fold_item_vectors.npy``: the effective GMF rows ``P`` and ``Q``
  (:func:`~recmodels.export.folding.effective_vectors`), prior rows included, float32;
* ``fold_user_counts.npy`` / ``fold_item_counts.npy``: each row's training ratings (int64, 0 for
  the prior rows), only when the exporter had the training rows: they weigh a known user's
  trained values against their new ratings;
* ``fold_item_content.npy`` (hybrid only): ``[w_e, e_prior, g]``, float64 ``[3, pretrained_dim]``:
  the predict layer's weights on the pretrained vector, the prior item's pretrained vector and the
  calibrated weights (:func:`calibrated_content`). The vector enters the linear predict layer and
  nothing follows it but the additions of the biases and the global mean, so an item with the prior
  row's other parameters and pretrained vector ``e`` scores exactly ``w_e . (e - e_prior)`` above the
  prior item for every user: a new item's content is an item-bias change. ``recmodels score
  --item-embeddings`` uses ``g . (e - e_prior)`` instead: what the whole model (the trained items'
  own rows included, which take up part of the content's effect) gives trained items whose vectors
  differ from the prior's so;
* the prior precisions of a row's ``[P or Q, bias]`` coefficients, recorded in the manifest:
  the refit's ridge weight when the run was refitted (``source: "refit"``), else the noise
  (validation MSE) over the trained rows' variance per coefficient (``source: "empirical"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..bundle.layout import FOLD_FILES
from ..errors import ParityError
from .folding import ScoreSpec, effective_vectors, implicit_fold_array, with_prior

DEFAULT_NOISE = 1.0
"""Noise variance of the empirical precisions when the run's metrics have no validation MSE."""
MAX_PRECISION = 1e12
"""Precision of a coefficient no trained row varies in (its features are zero anyway)."""
PRIOR_TOLERANCE = 1e-5
RIDGE_GRID = np.logspace(-6, 2, 33)
"""The calibration's ridge strengths, times the mean eigenvalue of its weighted Gram matrix."""
SCORE_BLOCK = 1 << 16
"""Items scored at once for the calibration (the MLP's activations of a block stay small)."""


@dataclass
class PriorExport:
    """What the writer needs to add the prior rows and the fold-in arrays to a bundle.

    Attributes
    ----------
    spec : ScoreSpec
        The model's spec with the prior rows (its ``score`` is the prior rows' parity judge).
    n_users, n_items : int
        The trained rows (the prior rows' indices).
    arrays : dict of str to ndarray
        File name -> array (:data:`~recmodels.bundle.layout.FOLD_FILES`).
    user_precision, item_precision : list of float
        Prior precision of ``[vector..., bias]`` of a folded-in user / item.
    source : str
        ``"refit"`` or ``"empirical"``.
    """

    spec: ScoreSpec
    n_users: int
    n_items: int
    arrays: dict
    user_precision: list
    item_precision: list
    source: str

    def section(self, max_abs_diff: float) -> dict:
        """The manifest's ``prior`` section (:class:`~recmodels.bundle.manifest.PriorSection`), with
        the prior rows' parity result."""
        files = {role: name for role, name in FOLD_FILES.items() if name in self.arrays}
        return {
            "user_row": self.n_users,
            "item_row": self.n_items,
            "definition": "mean of the trained rows",
            "max_abs_diff": float(max_abs_diff),
            "fold_in": {
                "files": files,
                "rank": int(self.arrays[FOLD_FILES["user_vectors"]].shape[1]),
                "user_precision": [float(x) for x in self.user_precision],
                "item_precision": [float(x) for x in self.item_precision],
                "source": self.source,
            },
        }


def _refit_precision(refit: Mapping | None, rank: int) -> tuple[list, list] | None:
    """The refit's last user and item ridge weights as precisions (``bias_scale`` 1), or None."""
    if not isinstance(refit, Mapping) or not refit.get("changed"):
        return None
    lambdas = [float(x) for x in refit.get("lambdas") or []]
    if len(lambdas) < 2:
        return None
    user, item = lambdas[0::2][-1], lambdas[1::2][-1]
    return [user] * (rank + 1), [item] * (rank + 1)


def _empirical_precision(vectors: np.ndarray, bias: np.ndarray, noise: float) -> list:
    """``noise / variance`` of each coefficient over the trained rows."""
    x = np.concatenate([vectors, bias[:, None]], axis=1)
    var = x.var(axis=0) if x.shape[0] > 1 else np.zeros(x.shape[1])
    with np.errstate(divide="ignore"):
        precision = np.where(var > 0, noise / np.maximum(var, 1e-300), MAX_PRECISION)
    return np.minimum(precision, MAX_PRECISION).tolist()


def _biases(spec: ScoreSpec, role: str, n: int) -> np.ndarray:
    bias = spec.user_bias if role == "user" else spec.item_bias
    return np.zeros(n) if bias is None else np.asarray(bias, dtype=np.float64)


def prior_export(spec: ScoreSpec, *, metrics: Mapping | None = None,
                 train_rows: tuple[np.ndarray, np.ndarray] | None = None) -> PriorExport:
    """The prior rows and fold-in arrays of ``spec`` (a trained model's spec, no prior rows yet).

    Parameters
    ----------
    spec : ScoreSpec
        :func:`~recmodels.export.spec.extract_spec` of the model.
    metrics : mapping, optional
        The run's ``metrics.json``: its ``refit`` report gives the ridge weights, its validation
        MSE the empirical precisions' noise.
    train_rows : (user_index, item_index), optional
        The training rows; without them the bundle has no counts and ``--history`` cannot
        update known users or items (new ones still fold in).
    """
    metrics = metrics or {}
    P, Q = effective_vectors(spec)
    rank = P.shape[1]
    precision = _refit_precision(metrics.get("refit"), rank)
    source = "refit"
    if precision is None:
        valid = metrics.get("valid") if isinstance(metrics.get("valid"), Mapping) else {}
        noise = float(valid.get("mse", DEFAULT_NOISE) or DEFAULT_NOISE)
        precision = (_empirical_precision(P, _biases(spec, "user", spec.n_users), noise),
                     _empirical_precision(Q, _biases(spec, "item", spec.n_items), noise))
        source = "empirical"
    grown = with_prior(spec)
    P_all, Q_all = effective_vectors(grown)
    arrays = {FOLD_FILES["user_vectors"]: P_all.astype(np.float32),
              FOLD_FILES["item_vectors"]: Q_all.astype(np.float32)}
    item_counts = None
    if train_rows is not None:
        users, items = (np.asarray(a, dtype=np.int64) for a in train_rows)
        arrays[FOLD_FILES["user_counts"]] = np.bincount(users, minlength=spec.n_users + 1).astype(np.int64)
        item_counts = np.bincount(items, minlength=spec.n_items + 1).astype(np.int64)
        arrays[FOLD_FILES["item_counts"]] = item_counts
    if "pretrained" in spec.segments:
        arrays[FOLD_FILES["item_content"]] = content_array(spec, grown, item_counts)
    for side in ("user", "item"):
        array = implicit_fold_array(spec, side)
        if array is not None:
            arrays[FOLD_FILES[f"{side}_implicit"]] = array
    return PriorExport(grown, spec.n_users, spec.n_items, arrays, precision[0], precision[1], source)


def content_array(spec: ScoreSpec, grown: ScoreSpec, item_counts: np.ndarray | None = None) -> np.ndarray:
    """``[w_e, e_prior, g]`` of a hybrid spec (float64; ``w_e`` and ``e_prior`` are float32 values as
    the graph holds them).

    ``grown``: ``spec`` with the prior rows (:func:`~recmodels.export.folding.with_prior`); its last
    pretrained row is the prior item's, the mean of the trained items' vectors. ``g``: the
    calibrated weights (:func:`calibrated_content`), each trained item weighed by its training
    ratings ``item_counts`` (``[n_items + 1]``), or equally without them.
    """
    as_graph = np.float32
    w_e = np.asarray(spec.predict_slices()["pretrained"], dtype=as_graph).astype(np.float64)
    e_prior = np.asarray(grown.item_pretrained[-1], dtype=as_graph).astype(np.float64)
    n = spec.n_items
    offsets = np.empty(n)
    for lo in range(0, n, SCORE_BLOCK):  # the prior user's score of each trained item
        items = np.arange(lo, min(n, lo + SCORE_BLOCK))
        offsets[lo : lo + items.size] = grown.score(np.full(items.size, spec.n_users), items)
    offsets -= grown.score(np.array([spec.n_users]), np.array([n]))[0]
    x = np.asarray(spec.item_pretrained, dtype=as_graph).astype(np.float64) - e_prior
    weights = np.ones(n) if item_counts is None else np.asarray(item_counts[:n], dtype=np.float64)
    return np.stack([w_e, e_prior, calibrated_content(x, offsets, weights)[0]])


def calibrated_content(x: np.ndarray, offsets: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, float]:
    """``(g, ridge)``: the weighted ridge regression of the trained items' ``offsets`` on ``x``.

    Parameters
    ----------
    x : ndarray ``[n_items, pretrained_dim]``
        Each trained item's pretrained vector minus the prior item's.
    offsets : ndarray ``[n_items]``
        Each trained item's score above the prior item's, for the prior user: what the whole model
        (the item's own rows included) gives it.
    weights : ndarray ``[n_items]``
        Each item's weight (its training ratings: a rarely rated item's rows barely moved from
        where training started, and say little about what its content is worth).

    Returns
    -------
    g : ndarray ``[pretrained_dim]``
        ``argmin sum w_i (offset_i - g . x_i)^2 + ridge |g|^2``, no intercept (an item with the
        prior's vector keeps the prior item's score).
    ridge : float
        The strength of :data:`RIDGE_GRID` (times the mean eigenvalue of ``X^T W X``) with the least
        weighted leave-one-item-out error ``sum w_i (r_i / (1 - h_i))^2``, in closed form from one
        eigendecomposition (``h_i = w_i x_i^T (X^T W X + ridge I)^-1 x_i``).
    """
    weights = np.asarray(weights, dtype=np.float64)
    gram = (x * weights[:, None]).T @ x
    eig, basis = np.linalg.eigh(gram)
    eig = np.maximum(eig, 0.0)
    scale = float(eig.mean()) if eig.size and eig.mean() > 0 else 1.0
    grid = scale * RIDGE_GRID
    inverse = 1.0 / (eig[:, None] + grid[None, :])  # [dim, grid]
    coef = (basis.T @ ((x * weights[:, None]).T @ offsets))[:, None] * inverse  # g per strength, rotated
    error = np.zeros(grid.size)
    for lo in range(0, x.shape[0], SCORE_BLOCK):
        z = x[lo : lo + SCORE_BLOCK] @ basis
        w = weights[lo : lo + SCORE_BLOCK, None]
        leverage = w * ((z * z) @ inverse)
        residual = offsets[lo : lo + SCORE_BLOCK, None] - z @ coef
        error += (w * (residual / np.maximum(1.0 - leverage, 1e-12)) ** 2).sum(axis=0)
    best = int(np.argmin(error))
    return basis @ coef[:, best], float(grid[best])


def check_prior_parity(session_run, prior: PriorExport, *, n: int = 64, seed: int = 0,
                       tolerance: float = PRIOR_TOLERANCE) -> float:
    """``model.onnx``'s scores of pairs with a prior row against ``prior.spec.score`` (float64).

    ``session_run(users, items) -> float32 scores``. Checks the prior user with random items, random
    users with the prior item, and the two prior rows together.

    Raises
    ------
    ParityError
        A score off by more than ``tolerance``.
    """
    rng = np.random.default_rng(seed + 3)
    items = rng.integers(0, prior.n_items, n)
    users = rng.integers(0, prior.n_users, n)
    u = np.concatenate([np.full(n, prior.n_users), users, [prior.n_users]]).astype(np.int64)
    i = np.concatenate([items, np.full(n, prior.n_items), [prior.n_items]]).astype(np.int64)
    got = np.asarray(session_run(u, i), dtype=np.float64)
    worst = float(np.max(np.abs(got - prior.spec.score(u, i))))
    if not np.isfinite(worst) or worst > tolerance:
        raise ParityError(f"parity check failed: max |onnx - reference| = {worst:.3g} on the prior rows "
                          f"exceeds tolerance {tolerance:g}; no bundle was written")
    return worst
