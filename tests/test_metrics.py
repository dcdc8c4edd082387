import numpy as np
import pytest

from recmodels import metrics


def test_rating_metrics_known_values():
    y = np.array([1, 2, 3, 4])
    p = np.array([1.5, 2.0, 2.4, 5.0])
    got = metrics.rating_metrics(y, p)
    assert got["mse"] == pytest.approx((0.25 + 0 + 0.36 + 1) / 4)
    assert got["rmse"] == pytest.approx(np.sqrt(got["mse"]))
    assert got["mae"] == pytest.approx((0.5 + 0 + 0.6 + 1) / 4)
    # 1.5 rounds up to 2 (miss), 2.0 hit, 2.4 -> 2 (miss), 5.0 miss
    assert got["hit_accuracy"] == pytest.approx(0.25)
    assert metrics.rmse(y, p) == pytest.approx(got["rmse"])
    assert metrics.mae(y, p) == pytest.approx(got["mae"])


def test_mismatched_or_empty_inputs_raise():
    with pytest.raises(ValueError, match="3 values but y_pred has 2"):
        metrics.mse([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least one"):
        metrics.mse([], [])


def test_ranking_metrics():
    ranked = np.array([[3, 1, 2], [0, 2, 1]])
    relevant = np.array([1, 5])
    assert metrics.hit_rate_at_k(ranked, relevant, 2) == 0.5
    assert metrics.ndcg_at_k(ranked, relevant, 3) == pytest.approx(0.5 / np.log2(3))
