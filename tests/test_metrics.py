import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

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


# -- ranking from rank counts (ties) --------------------------------------------------------------
def test_rank_counts_by_hand_with_ties_nan_and_padding():
    positive = [0.5, 0.2, np.nan, 0.7]
    candidates = [[0.9, 0.5, 0.1], [0.1, 0.0, 0.2], [0.3, 0.4, 0.1], [0.7, 0.8, 0.9]]
    valid = [[True] * 3, [True] * 3, [True, True, False], [True, False, False]]
    greater, tied = metrics.rank_counts(positive, candidates, valid)
    # row 0: 0.9 above, 0.5 level; row 1: 0.2 level; row 2: NaN ranks last among its 2 valid;
    # row 3: only the first slot is real and it ties
    assert greater.tolist() == [1, 0, 2, 0]
    assert tied.tolist() == [1, 1, 0, 1]


def test_rank_counts_rejects_misshapen_input():
    with pytest.raises(ValueError, match="n_rows = 2"):
        metrics.rank_counts([0.1, 0.2], [[0.3, 0.4]])
    with pytest.raises(ValueError, match="valid has shape"):
        metrics.rank_counts([0.1], [[0.3, 0.4]], [[True]])


def test_tie_rules_by_hand():
    # one candidate above, two level, k = 3: ranks 2, 3 or 4
    g, t = np.array([1]), np.array([2])
    d = {r: 1 / math.log2(r + 1) for r in (2, 3, 4)}
    assert metrics.hits_at_k(g, t, 3, "pessimistic").tolist() == [0.0]  # rank 4
    assert metrics.ndcg_gains_at_k(g, t, 3, "pessimistic").tolist() == [0.0]
    assert metrics.hits_at_k(g, t, 3, "optimistic").tolist() == [1.0]  # rank 2
    assert metrics.ndcg_gains_at_k(g, t, 3, "optimistic")[0] == pytest.approx(d[2])
    assert metrics.hits_at_k(g, t, 3, "average")[0] == pytest.approx(2 / 3)  # ranks 2, 3 of 2, 3, 4
    assert metrics.ndcg_gains_at_k(g, t, 3, "average")[0] == pytest.approx((d[2] + d[3]) / 3)
    # pessimistic, k = 4: rank 4 is a hit with gain 1 / log2(5)
    assert metrics.ndcg_gains_at_k(g, t, 4)[0] == pytest.approx(d[4])


def test_ranking_metrics_by_hand():
    # ranks 1, 2 (tied: pessimistic 3), 11: HR@10 = 2/3, NDCG@10 = (1 + 1/log2(4)) / 3
    got = metrics.ranking_metrics([0, 1, 10], [0, 1, 0], k=10)
    assert got == {"hr": pytest.approx(2 / 3), "ndcg": pytest.approx((1 + 0.5) / 3), "n": 3}
    assert metrics.ranking_metrics([], [], k=10) == {"hr": None, "ndcg": None, "n": 0}


def test_a_constant_model_under_each_tie_rule():
    """99 negatives all tied with the held-out item: HR@10 is 0, 1 or 10/100."""
    g, t = np.zeros(5, np.int64), np.full(5, 99)
    assert metrics.ranking_metrics(g, t, 10, "pessimistic")["hr"] == 0.0
    assert metrics.ranking_metrics(g, t, 10, "optimistic")["hr"] == 1.0
    assert metrics.ranking_metrics(g, t, 10, "average")["hr"] == pytest.approx(0.1)


@given(st.integers(0, 30), st.integers(0, 30), st.integers(1, 40))
def test_average_ties_is_the_mean_over_the_tied_ranks(greater, tied, k):
    ranks = np.arange(greater + 1, greater + tied + 2)
    hits = np.mean(ranks <= k)
    gains = np.mean(np.where(ranks <= k, 1 / np.log2(ranks + 1.0), 0.0))
    assert metrics.hits_at_k([greater], [tied], k, "average")[0] == pytest.approx(hits)
    assert metrics.ndcg_gains_at_k([greater], [tied], k, "average")[0] == pytest.approx(gains)


def test_ranking_arguments_are_checked():
    for bad_k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            metrics.hits_at_k([0], [0], bad_k)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        metrics.hit_rate_at_k(np.array([[1]]), np.array([1]), 0)
    with pytest.raises(ValueError, match="ties must be one of"):
        metrics.hits_at_k([0], [0], 1, "random")
    with pytest.raises(ValueError, match="counts"):
        metrics.hits_at_k([-1], [0], 1)


def test_ranked_list_ndcg_with_a_tie_broken_by_position():
    """The ranked-list form has no ties of its own: position decides (hand-computed)."""
    ranked = np.array([[7, 3, 9], [9, 7, 3]])
    relevant = np.array([3, 3])
    assert metrics.ndcg_at_k(ranked, relevant, 3) == pytest.approx((1 / np.log2(3) + 1 / np.log2(4)) / 2)
    assert metrics.hit_rate_at_k(ranked, relevant, 1) == 0.0


def test_hit_accuracy_rounds_to_the_rating_step():
    # half-star ratings: whole-star rounding can never hit 3.5 (issue 21 #9)
    y = np.array([3.5, 0.5, 4.0, 2.5], dtype=np.float32)
    p = np.array([3.6, 0.74, 4.24, 2.3])
    assert metrics.hit_accuracy(y, p) == pytest.approx(0.25)  # whole numbers: only 4.0
    assert metrics.hit_accuracy(y, p, step=0.5) == 1.0
    assert metrics.rating_metrics(y, p, step=0.5)["hit_accuracy"] == 1.0
    # half way rounds up: 3.75 -> 4.0
    assert metrics.hit_accuracy([4.0, 3.5], [3.75, 3.75], step=0.5) == 0.5
    # a grid that starts at its origin: odd half stars 0.5, 1.5, ... with step 1
    assert metrics.hit_accuracy([1.5, 2.5], [1.9, 2.1], step=1.0, origin=0.5) == 1.0
    assert metrics.hit_accuracy([1.5, 2.5], [1.9, 2.1]) == 0.0
    # a true rating between grid points is never hit; float32 tenths still are
    assert metrics.hit_accuracy([3.25], [3.25], step=0.5) == 0.0
    tenths = np.array([0.1, 0.3, 0.7], dtype=np.float32)
    assert metrics.hit_accuracy(tenths, [0.12, 0.28, 0.71], step=0.1) == 1.0
    with pytest.raises(ValueError, match="step must be a positive number"):
        metrics.hit_accuracy([1.0], [1.0], step=0)


def test_rating_step_reads_the_grid_of_the_ratings():
    assert metrics.rating_step([1, 2, 3, 4, 5]) == 1.0
    assert metrics.rating_step(np.arange(1, 11) / 2) == 0.5  # ml-latest-small: 0.5 .. 5.0
    assert metrics.rating_step(np.float32([1, 3, 5])) == 2.0
    assert metrics.rating_step(np.float32([0.1, 0.3, 0.4])) == 0.1
    assert metrics.rating_step([1.5, 2.5, 4.5], origin=0.5) == 1.0
    assert metrics.rating_step([1.0, 2.5], origin=0) == 0.5
    # no grid at 0.001 resolution, or a single value: the fallback
    assert metrics.rating_step([0.123456, 1.0]) == metrics.DEFAULT_STEP == 1.0
    assert metrics.rating_step([4.0, 4.0]) == 1.0 and metrics.rating_step([]) == 1.0
    assert metrics.rating_step([0.123456, 1.0], default=None) is None


def test_rating_grid_keeps_old_runs_on_whole_numbers():
    assert metrics.rating_grid(None, 0.5) == (1.0, 0.0)  # recorded no step: today's rounding
    assert metrics.rating_grid(0.5, 0.5) == (0.5, 0.5)
    assert metrics.rating_grid(1.0, None) == (1.0, 0.0)
