"""Rating and ranking metrics in plain numpy (torch-free).

Rating metrics compare predicted with true ratings (:func:`rating_metrics`). Hit accuracy rounds
each prediction to the data's own rating grid: ``origin + k * step`` (half stars: step 0.5), the
step read from the training ratings (:func:`rating_step`) and recorded in the run and the bundle
(:func:`rating_grid`: whole numbers for runs and bundles from before). Ranking metrics
follow the NCF protocol (He et al. 2017): each held-out item is ranked among candidate items,
and only how many candidates score above it (``greater``) and level with it (``tied``) matters
(:func:`rank_counts`). How ties count is a rule of its own (:data:`TIE_RULES`):

* ``pessimistic`` (the default): every tied candidate ranks above the held-out item, so a model
  that scores all items alike (a constant) gets HR@K = 0 unless ``K`` covers every candidate;
* ``optimistic``: every tied candidate ranks below it;
* ``average``: the expected HR / NDCG over a uniformly random order of the tied items (a constant
  model gets ``K / n_candidates``, as random guessing does).
"""

from __future__ import annotations

import numpy as np

TIE_RULES = ("pessimistic", "optimistic", "average")
"""How candidates scoring exactly as the held-out item count (see the module docstring)."""


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} values but y_pred has {y_pred.size}")
    if y_true.size == 0:
        raise ValueError("metrics need at least one rating")
    return y_true, y_pred


def mse(y_true, y_pred) -> float:
    """Mean squared error."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float(np.mean((y_true - y_pred) ** 2))


def rmse(y_true, y_pred) -> float:
    """Root mean squared error."""
    return float(np.sqrt(mse(y_true, y_pred)))


def mae(y_true, y_pred) -> float:
    """Mean absolute error."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float(np.mean(np.abs(y_true - y_pred)))


STEP_RESOLUTION = 1000
""":func:`rating_step` finds steps that are multiples of ``1 / STEP_RESOLUTION`` (0.001)."""
DEFAULT_STEP = 1.0
"""The step when none can be read from the ratings (and of runs and bundles that record none)."""


def rating_step(ratings, origin: float | None = None, default: float | None = DEFAULT_STEP) -> float | None:
    """The rating grid's step: the largest step all ratings are whole multiples of, from ``origin``.

    Parameters
    ----------
    ratings : array-like of float
    origin : float, optional
        Where the grid starts (the run's ``rating_min``); default the smallest rating.
    default : float or None
        What to return when there is no grid at that resolution (continuous ratings) or fewer
        than two distinct values.

    Returns
    -------
    float or None
        A multiple of 0.001 (:data:`STEP_RESOLUTION`): 1.0 for whole stars, 0.5 for half stars;
        ``default`` (:data:`DEFAULT_STEP`) when there is none.

    Examples
    --------
    >>> rating_step([1, 2, 5]), rating_step([0.5, 3.0, 4.5]), rating_step([1.0, 3.0], origin=0.5)
    (1.0, 0.5, 0.5)
    >>> rating_step([0.1234, 0.5]), rating_step([3.0])
    (1.0, 1.0)
    """
    values = np.unique(np.asarray(ratings, dtype=np.float64).ravel())
    values = values[np.isfinite(values)]
    if values.size == 0:
        return default
    start = float(values.min()) if origin is None else float(origin)
    scaled = (values - start) * STEP_RESOLUTION
    whole = np.rint(scaled)
    # float32 ratings (0.1 is 0.10000000149) sit within a few float32 ulps of the grid
    if np.any(np.abs(scaled - whole) > 1e-3 + np.abs(scaled) * 2.4e-7):
        return default
    units = int(np.gcd.reduce(np.abs(whole).astype(np.int64)))
    return default if units == 0 else units / STEP_RESOLUTION


def rating_grid(step: float | None, rating_min: float | None) -> tuple[float, float]:
    """``(step, origin)`` for :func:`hit_accuracy` from what a run or bundle records.

    A recorded ``step`` counts from ``rating_min``; without one (runs and bundles made before
    the step was recorded) predictions round to whole numbers, as they always did.

    Examples
    --------
    >>> rating_grid(0.5, 0.5), rating_grid(None, 0.5)
    ((0.5, 0.5), (1.0, 0.0))
    """
    if step is None:
        return DEFAULT_STEP, 0.0
    return float(step), 0.0 if rating_min is None else float(rating_min)


def _check_step(step, origin) -> tuple[float, float]:
    step, origin = float(step), float(origin)
    if not (np.isfinite(step) and step > 0 and np.isfinite(origin)):
        raise ValueError(f"step must be a positive number and origin finite, got {step!r}, {origin!r}")
    return step, origin


def _hits(y_true: np.ndarray, y_pred: np.ndarray, step: float, origin: float) -> np.ndarray:
    # grid units, rounded half up (x.5 -> x+1), not numpy's banker's rounding
    predicted = np.floor((y_pred - origin) / step + 0.5)
    true = (y_true - origin) / step
    on_grid = np.abs(true - np.rint(true)) < 1e-4  # a rating between grid points is never hit
    return (predicted == np.rint(true)) & on_grid


def hit_accuracy(y_true, y_pred, step: float = DEFAULT_STEP, origin: float = 0.0) -> float:
    """Share of predictions that round to the true rating (the notebook's "hit accuracy").

    Parameters
    ----------
    y_true, y_pred : array-like of float
    step : float
        The rating grid's step (0.5 for half stars; see :func:`rating_step`). Default 1: whole
        numbers, the notebook's rule.
    origin : float
        Where the grid starts (the run's ``rating_min``); predictions round to
        ``origin + k * step``.

    Rounds half up (a prediction half way between two grid points goes to the upper one), as
    Python's ``round`` on the notebook's values would for ratings (x.5 -> x+1), rather than
    numpy's banker's rounding.

    Examples
    --------
    >>> hit_accuracy([3.5, 4.0], [3.4, 4.2]), hit_accuracy([3.5, 4.0], [3.4, 4.2], step=0.5)
    (0.5, 1.0)
    """
    y_true, y_pred = _pair(y_true, y_pred)
    step, origin = _check_step(step, origin)
    return float(np.mean(_hits(y_true, y_pred, step, origin)))


def rating_metrics(y_true, y_pred, step: float = DEFAULT_STEP, origin: float = 0.0) -> dict[str, float]:
    """All rating metrics at once (``step`` and ``origin``: see :func:`hit_accuracy`).

    Returns
    -------
    dict
        ``{"mse", "rmse", "mae", "hit_accuracy", "n"}``.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    step, origin = _check_step(step, origin)
    err = y_true - y_pred
    m = float(np.mean(err**2))
    return {
        "mse": m,
        "rmse": float(np.sqrt(m)),
        "mae": float(np.mean(np.abs(err))),
        "hit_accuracy": float(np.mean(_hits(y_true, y_pred, step, origin))),
        "n": int(y_true.size),
    }


def _check_k(k) -> int:
    if isinstance(k, bool) or int(k) != k or int(k) < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def hit_rate_at_k(ranked_items: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """HR@K: share of rows whose relevant item appears in the first ``k`` ranked items.

    Parameters
    ----------
    ranked_items : ndarray of shape (n_rows, >= k)
        Item indices ranked best first.
    relevant : ndarray of shape (n_rows,)
        The held-out relevant item per row.
    """
    k = _check_k(k)
    top = np.asarray(ranked_items)[:, :k]
    return float(np.mean((top == np.asarray(relevant)[:, None]).any(axis=1)))


def ndcg_at_k(ranked_items: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """NDCG@K with one relevant item per row (ideal DCG is 1)."""
    k = _check_k(k)
    top = np.asarray(ranked_items)[:, :k]
    hits = top == np.asarray(relevant)[:, None]
    gains = hits / np.log2(np.arange(2, k + 2))[None, : top.shape[1]]
    return float(np.mean(gains.sum(axis=1)))


def rank_counts(positive, candidates, valid=None) -> tuple[np.ndarray, np.ndarray]:
    """How many candidates score above, and exactly level with, each row's held-out item.

    Parameters
    ----------
    positive : array-like of shape (n_rows,)
        The held-out item's score per row.
    candidates : array-like of shape (n_rows, n_candidates)
        The other candidates' scores (the held-out item itself not among them).
    valid : array-like of bool, shape (n_rows, n_candidates), optional
        Which candidate slots are real (rows with fewer candidates are padded); all by default.

    Returns
    -------
    (greater, tied) : two int64 ndarrays of shape (n_rows,)
        A NaN candidate score counts as neither; a NaN held-out score ranks last (all valid
        candidates count as greater).

    Examples
    --------
    >>> rank_counts([0.5, 0.2], [[0.9, 0.5, 0.1], [0.1, 0.0, 0.2]])
    (array([1, 0]), array([1, 1]))
    """
    positive = np.asarray(positive, dtype=np.float64).ravel()
    candidates = np.asarray(candidates, dtype=np.float64)
    if candidates.ndim != 2 or candidates.shape[0] != positive.size:
        raise ValueError(
            f"candidates must have shape (n_rows, n_candidates) with n_rows = {positive.size}, "
            f"got {candidates.shape}"
        )
    valid = np.ones(candidates.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if valid.shape != candidates.shape:
        raise ValueError(f"valid has shape {valid.shape} but candidates {candidates.shape}")
    column = positive[:, None]
    greater = np.count_nonzero((candidates > column) & valid, axis=1).astype(np.int64)
    tied = np.count_nonzero((candidates == column) & valid, axis=1).astype(np.int64)
    lost = np.isnan(positive)
    if lost.any():
        greater[lost] = np.count_nonzero(valid[lost], axis=1)
        tied[lost] = 0
    return greater, tied


def _counts(greater, tied, k, ties) -> tuple[np.ndarray, np.ndarray, int]:
    if ties not in TIE_RULES:
        raise ValueError(f"ties must be one of {', '.join(TIE_RULES)}, got {ties!r}")
    greater = np.asarray(greater, dtype=np.int64).ravel()
    tied = np.asarray(tied, dtype=np.int64).ravel()
    if greater.shape != tied.shape:
        raise ValueError(f"greater has {greater.size} values but tied has {tied.size}")
    if (greater < 0).any() or (tied < 0).any():
        raise ValueError("greater and tied must be counts (>= 0)")
    return greater, tied, _check_k(k)


def _discounts(k: int) -> np.ndarray:
    """``D[j] = sum_{r=1..j} 1 / log2(r + 1)``, ``D[0] = 0``: the DCG of ranks 1..j."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])


def hits_at_k(greater, tied, k: int, ties: str = "pessimistic") -> np.ndarray:
    """Per row: 1 if the held-out item ranks within the first ``k`` (a share for ``average`` ties).

    Parameters
    ----------
    greater, tied : array-like of int, shape (n_rows,)
        From :func:`rank_counts`.
    k : int
    ties : {"pessimistic", "optimistic", "average"}

    Returns
    -------
    ndarray of float64, shape (n_rows,)
    """
    greater, tied, k = _counts(greater, tied, k, ties)
    if ties == "pessimistic":
        return (greater + tied + 1 <= k).astype(np.float64)
    if ties == "optimistic":
        return (greater + 1 <= k).astype(np.float64)
    # ranks greater+1 .. greater+tied+1 equally likely
    return np.clip(k - greater, 0, tied + 1) / (tied + 1.0)


def ndcg_gains_at_k(greater, tied, k: int, ties: str = "pessimistic") -> np.ndarray:
    """Per row: ``1 / log2(rank + 1)`` if the held-out item ranks within ``k``, else 0.

    With one relevant item the ideal DCG is 1, so this is the row's NDCG@K. ``average`` ties give
    its expectation over a random order of the tied items. Same arguments as :func:`hits_at_k`.
    """
    greater, tied, k = _counts(greater, tied, k, ties)
    if ties != "average":
        rank = greater + 1 + (tied if ties == "pessimistic" else 0)
        return np.where(rank <= k, 1.0 / np.log2(rank + 1.0), 0.0)
    d = _discounts(k)
    low = np.minimum(greater, k)
    high = np.minimum(greater + tied + 1, k)
    return (d[high] - d[low]) / (tied + 1.0)


def ranking_metrics(greater, tied, k: int, ties: str = "pessimistic") -> dict:
    """HR@K and NDCG@K from the rank counts of :func:`rank_counts`.

    Returns
    -------
    dict
        ``{"hr", "ndcg", "n"}`` (means over the rows; ``None`` for both when there are no rows).

    Examples
    --------
    >>> ranking_metrics([0, 3, 12], [0, 0, 0], k=10)["hr"]
    0.6666666666666666
    """
    hits = hits_at_k(greater, tied, k, ties)
    if hits.size == 0:
        return {"hr": None, "ndcg": None, "n": 0}
    gains = ndcg_gains_at_k(greater, tied, k, ties)
    return {"hr": float(hits.mean()), "ndcg": float(gains.mean()), "n": int(hits.size)}
