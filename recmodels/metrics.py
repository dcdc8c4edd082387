"""Rating and ranking metrics in plain numpy (torch-free)."""

from __future__ import annotations

import numpy as np


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


def hit_accuracy(y_true, y_pred) -> float:
    """Share of predictions that round to the true rating (the notebook's "hit accuracy").

    Rounds half away from zero, like Python's ``round`` on the notebook's values
    would for ratings (x.5 -> x+1), rather than numpy's banker's rounding.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    rounded = np.floor(y_pred + 0.5)
    return float(np.mean(rounded == y_true))


def rating_metrics(y_true, y_pred) -> dict[str, float]:
    """All rating metrics at once.

    Returns
    -------
    dict
        ``{"mse", "rmse", "mae", "hit_accuracy", "n"}``.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    err = y_true - y_pred
    m = float(np.mean(err**2))
    return {
        "mse": m,
        "rmse": float(np.sqrt(m)),
        "mae": float(np.mean(np.abs(err))),
        "hit_accuracy": float(np.mean(np.floor(y_pred + 0.5) == y_true)),
        "n": int(y_true.size),
    }


def hit_rate_at_k(ranked_items: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """HR@K: share of rows whose relevant item appears in the first ``k`` ranked items.

    Parameters
    ----------
    ranked_items : ndarray of shape (n_rows, >= k)
        Item indices ranked best first.
    relevant : ndarray of shape (n_rows,)
        The held-out relevant item per row.
    """
    top = np.asarray(ranked_items)[:, :k]
    return float(np.mean((top == np.asarray(relevant)[:, None]).any(axis=1)))


def ndcg_at_k(ranked_items: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """NDCG@K with one relevant item per row (ideal DCG is 1)."""
    top = np.asarray(ranked_items)[:, :k]
    hits = top == np.asarray(relevant)[:, None]
    gains = hits / np.log2(np.arange(2, k + 2))[None, : top.shape[1]]
    return float(np.mean(gains.sum(axis=1)))
