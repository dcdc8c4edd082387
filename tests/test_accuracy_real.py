"""benchmarks/accuracy_real.py: the data rules behind its figures (Goodreads zeros, implicit features)."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

accuracy_real = pytest.importorskip("accuracy_real")
pytest.importorskip("scipy")


def test_goodreads_rating_zero_is_dropped_not_a_rating():
    raw = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "book_id": [10, 11, 10, 12, 11],
                        "is_read": [1, 0, 1, 1, 0], "rating": [5, 0, 3, 0, 1],
                        "is_reviewed": [0, 0, 1, 0, 0]})
    frame, dropped = accuracy_real.rated_rows(raw)
    assert dropped == 2
    assert list(frame.columns) == ["user_id", "item_id", "rating"]
    assert frame["rating"].tolist() == [5, 3, 1]
    assert frame["item_id"].tolist() == [10, 10, 11]


def test_implicit_features_are_one_hot_plus_inverse_sqrt_counts():
    train = pd.DataFrame({"user_id": ["a", "a", "a", "a", "b"], "item_id": [7, 8, 9, 10, 7],
                          "rating": [1.0, 2, 3, 4, 5]})
    users, items, user_rows, item_rows, groups = accuracy_real.implicit_features(train)
    assert groups == [2, 4, 4, 2]
    a, b = users.get_indexer(["a", "b"])
    dense_u = user_rows.toarray()
    np.testing.assert_array_equal(dense_u[:, :2], np.eye(2))
    # user "a" rated 4 items: 1/sqrt(4) in each of their columns; "b" rated one: 1
    np.testing.assert_allclose(dense_u[a, 2:], [0.5] * 4)
    np.testing.assert_allclose(dense_u[b, 2:], (items == 7).astype(float))
    dense_i = item_rows.toarray()
    np.testing.assert_array_equal(dense_i[:, :4], np.eye(4))
    seven = items.get_indexer([7])[0]
    # item 7 was rated by both users: 1/sqrt(2) each; the others by "a" only
    np.testing.assert_allclose(dense_i[seven, 4:], [2 ** -0.5] * 2)
    for other in items.get_indexer([8, 9, 10]):
        np.testing.assert_allclose(dense_i[other, 4 + a], 1.0)
        assert dense_i[other, 4 + b] == 0


def test_implicit_features_one_side_only():
    train = pd.DataFrame({"user_id": [1, 2], "item_id": [3, 3], "rating": [1.0, 2.0]})
    *_, user_rows, item_rows, groups = accuracy_real.implicit_features(train, ("user",))
    assert groups == [2, 1, 1]
    assert user_rows.shape == (2, 3) and item_rows.shape == (1, 1)


def test_genre_table_is_multi_hot_with_the_item_column():
    movies = pd.DataFrame({"movieId": [1, 2, 3], "title": ["x", "y", "z"],
                           "genres": ["Comedy|Drama", "Drama", "(no genres listed)"]})
    table = accuracy_real.genre_table(movies)
    assert list(table.columns) == ["item_id", "Comedy", "Drama"]
    np.testing.assert_array_equal(table[["Comedy", "Drama"]].to_numpy(), [[1, 1], [0, 1], [0, 0]])


def test_goodreads_head_counts_when_shared_data_is_there():
    path = accuracy_real.DATA_DIR / "goodreads-head" / "goodreads_interactions_head.csv"
    if not path.is_file():
        pytest.skip("no ../shared/data/goodreads-head")
    frame, dropped = accuracy_real.rated_rows(pd.read_csv(path))
    assert (len(frame), dropped) == (97_037, 102_963)  # ../shared/data/README.md's counts
    assert frame["rating"].between(1, 5).all()
