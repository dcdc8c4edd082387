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
* ``fold_item_content.npy`` (hybrid only): ``[w_e, e_prior]``, float64 ``[2, pretrained_dim]``, the
  predict layer's weights on the pretrained vector and the prior item's pretrained vector. The
  vector enters the linear predict layer and nothing follows it but the additions of the biases and
  the global mean, so an item with the prior row's other parameters and pretrained vector ``e``
  scores ``w_e . (e - e_prior)`` above the prior item for every user: a new item's content is an
  item-bias change (``recmodels score --item-embeddings``);
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
CONTENT_ROLE = "item_content"
CONTENT_FILE = "fold_item_content.npy"
"""``prior.fold_in.files``'s role and file of a hybrid bundle's ``[w_e, e_prior]`` (see above)."""
IMPLICIT_ROLE = "user_implicit"
IMPLICIT_FILE = "fold_user_implicit.npy"
"""Role and file of the implicit user part's vectors (:func:`~recmodels.export.folding.implicit_fold_array`):
a user folded in from a history gets ``|H|^-1/2 sum y`` of its history items ``H``."""


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
        files = {role: name for role, name in {**FOLD_FILES, CONTENT_ROLE: CONTENT_FILE,
                                               IMPLICIT_ROLE: IMPLICIT_FILE}.items()
                 if name in self.arrays}
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
    if train_rows is not None:
        users, items = (np.asarray(a, dtype=np.int64) for a in train_rows)
        arrays[FOLD_FILES["user_counts"]] = np.bincount(users, minlength=spec.n_users + 1).astype(np.int64)
        arrays[FOLD_FILES["item_counts"]] = np.bincount(items, minlength=spec.n_items + 1).astype(np.int64)
    if "pretrained" in spec.segments:
        arrays[CONTENT_FILE] = content_array(spec, grown)
    if spec.user_implicit is not None:
        arrays[IMPLICIT_FILE] = implicit_fold_array(spec)
    return PriorExport(grown, spec.n_users, spec.n_items, arrays, precision[0], precision[1], source)


def content_array(spec: ScoreSpec, grown: ScoreSpec) -> np.ndarray:
    """``[w_e, e_prior]`` of a hybrid spec (float64, each value a float32 as the graph holds it).

    ``grown``: ``spec`` with the prior rows (:func:`~recmodels.export.folding.with_prior`); its last
    pretrained row is the prior item's, the mean of the trained items' vectors.
    """
    as_graph = np.float32
    w_e = np.asarray(spec.predict_slices()["pretrained"], dtype=as_graph)
    e_prior = np.asarray(grown.item_pretrained[-1], dtype=as_graph)
    return np.stack([w_e, e_prior]).astype(np.float64)


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
