"""The synthetic generator: shape, ids, reproducibility and an honest best_rmse."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from recmodels.data import Columns, fit_encoders, read_interactions
from recmodels.datasets import expected_rating, make_ratings, sample_data
from recmodels.embeddings import align_item_embeddings, read_item_embeddings
from recmodels.errors import ConfigError


@pytest.fixture(scope="module")
def data():
    return make_ratings(n_users=400, n_items=250, n_ratings=6000, seed=7)


def test_shape_uniqueness_and_rating_scale(data):
    df = data.ratings
    assert list(df.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert len(df) == 6000
    assert not df.duplicated(["user_id", "item_id"]).any()
    assert set(df["rating"].unique()) <= {1, 2, 3, 4, 5}
    assert df["rating"].nunique() == 5
    assert df["timestamp"].dtype == np.int64
    assert df["user_id"].nunique() <= 400 and df["item_id"].nunique() <= 250


def test_ids_are_sparse_and_larger_than_the_counts(data):
    for col, n in (("user_id", 400), ("item_id", 250)):
        ids = np.unique(data.ratings[col])
        assert ids.dtype == np.int64
        assert ids.max() > 10 * n  # like the notebook's book ids: index errors without encoding
        assert np.all(np.diff(data.planted.user_ids if col == "user_id" else data.planted.item_ids) > 0)
    dense = make_ratings(50, 40, 300, id_offset=False, seed=1)
    assert dense.ratings["user_id"].max() < 50 and dense.ratings["item_id"].min() >= 0
    text = make_ratings(50, 40, 300, string_ids=True, seed=1)
    assert text.ratings["user_id"].str.startswith("u").all()
    assert text.item_embeddings["item_id"].str.startswith("i").all()


def test_reproducible_for_a_seed():
    a = make_ratings(100, 80, 1500, seed=3)
    b = make_ratings(100, 80, 1500, seed=3)
    c = make_ratings(100, 80, 1500, seed=4)
    assert a.ratings.equals(b.ratings) and a.item_embeddings.equals(b.item_embeddings)
    assert a.best_rmse == b.best_rmse
    assert not a.ratings.equals(c.ratings)


def test_popularity_is_skewed():
    skewed = make_ratings(500, 300, 8000, popularity_skew=1.0, seed=2).ratings
    flat = make_ratings(500, 300, 8000, popularity_skew=0.0, seed=2).ratings
    ratio = lambda df: df.groupby("item_id").size().max() / df.groupby("item_id").size().median()  # noqa: E731
    assert ratio(skewed) > 3 * ratio(flat)


def test_best_rmse_is_the_oracle_rmse_computed_independently(data):
    # Recompute E[rating | planted parameters] row by row with math.erf from the planted model.
    p = data.planted
    df = data.ratings
    u = np.searchsorted(p.user_ids, df["user_id"].to_numpy())
    i = np.searchsorted(p.item_ids, df["item_id"].to_numpy())
    sigma = data.noise_sigma
    errors = []
    for uu, ii, r in zip(u, i, df["rating"].to_numpy(), strict=True):
        x = p.global_mean + p.user_bias[uu] + p.item_bias[ii] + float(p.user_factors[uu] @ p.item_factors[ii])
        cdf = [0.5 * (1 + math.erf((x - t) / (sigma * math.sqrt(2)))) for t in (1.5, 2.5, 3.5, 4.5)]
        # P(rating = k) from the CDF of the noisy latent score, then the expectation
        probs = [1 - cdf[0], cdf[0] - cdf[1], cdf[1] - cdf[2], cdf[2] - cdf[3], cdf[3]]
        expectation = sum(k * q for k, q in zip(range(1, 6), probs, strict=True))
        errors.append((r - expectation) ** 2)
    assert data.best_rmse == pytest.approx(math.sqrt(np.mean(errors)), rel=1e-9)


def test_best_rmse_is_noise_driven_and_beats_the_baselines(data):
    assert data.best_rmse < 0.8 * data.global_mean_rmse
    p = data.planted
    u, i = p.index_of(data.ratings["user_id"], data.ratings["item_id"])
    latent = p.latent(u, i)
    ratings = data.ratings["rating"].to_numpy()
    # The planted expectation beats the naive "clip the noise-free latent score" predictor.
    naive = np.sqrt(np.mean((ratings - np.clip(latent, 1, 5)) ** 2))
    assert data.best_rmse < naive
    # On fresh noise around the same latent scores the oracle scores about the same RMSE:
    # the figure is a property of the noise, not of this particular draw.
    rng = np.random.default_rng(123)
    fresh = np.clip(np.rint(latent + rng.normal(0, data.noise_sigma, latent.size)), 1, 5)
    fresh_rmse = np.sqrt(np.mean((fresh - expected_rating(latent, data.noise_sigma)) ** 2))
    assert fresh_rmse == pytest.approx(data.best_rmse, abs=0.03)
    # More noise -> a higher floor; no noise -> a perfect oracle.
    noisier = make_ratings(400, 250, 6000, seed=7, noise_sigma=1.0)
    assert noisier.best_rmse > data.best_rmse + 0.1
    exact = make_ratings(100, 80, 1000, seed=7, noise_sigma=0.0)
    assert exact.best_rmse == 0.0


def test_embeddings_carry_the_item_factors(data):
    emb = data.item_embeddings
    assert list(emb.columns) == ["item_id"] + [f"e{j}" for j in range(16)]
    assert len(emb) == 250 and emb["item_id"].is_unique
    assert not emb["item_id"].is_monotonic_increasing  # shuffled rows: alignment must use ids
    p = data.planted
    rows = np.searchsorted(p.item_ids, emb["item_id"].to_numpy())
    x = np.column_stack([emb.iloc[:, 1:].to_numpy(np.float64), np.ones(len(emb))])
    target = p.item_bias[rows]
    coef, *_ = np.linalg.lstsq(x, target, rcond=None)
    r2 = 1 - np.var(target - x @ coef) / np.var(target)
    assert r2 > 0.7
    partial = make_ratings(100, 80, 1000, seed=2, embedding_coverage=0.5)
    assert len(partial.item_embeddings) == 40


def test_save_round_trips_through_the_readers(tmp_path, data):
    paths = data.save(tmp_path / "synthetic")
    assert sorted(p.name for p in (tmp_path / "synthetic").iterdir()) == [
        "item_embeddings.csv", "ratings.csv", "synthetic.json"
    ]
    df = read_interactions(paths["ratings"], Columns(timestamp="timestamp"))
    assert len(df) == 6000 and df["rating"].dtype == np.float32
    users, items = fit_encoders(df)
    ids, vectors = read_item_embeddings(paths["item_embeddings"])
    aligned = align_item_embeddings(ids, vectors, items, expected_dim=16)
    assert aligned.n_matched == len(items) and aligned.n_missing == 0
    assert aligned.n_ignored == 250 - len(items)
    meta = json.loads(paths["meta"].read_text())
    assert meta["best_rmse"] == pytest.approx(data.best_rmse)
    parquet = data.save(tmp_path / "pq", format="parquet")
    assert read_interactions(parquet["ratings"]).shape == (6000, 3)
    with pytest.raises(ConfigError):
        data.save(tmp_path / "x", format="xlsx")


def test_sample_data_writes_the_demo_dataset(tmp_path):
    paths = sample_data(tmp_path / "demo")
    meta = json.loads(paths["meta"].read_text())
    assert (meta["n_users"], meta["n_items"], meta["interactions"]) == (2000, 1000, 60_000)
    assert paths["ratings"].is_file() and paths["item_embeddings"].is_file()


@pytest.mark.parametrize(
    "kwargs",
    [dict(n_ratings=0), dict(n_users=2, n_items=2, n_ratings=5), dict(rank=0),
     dict(noise_sigma=-1.0), dict(embedding_coverage=0.0), dict(popularity_skew=-1)],
)
def test_bad_arguments_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        make_ratings(**kwargs)


def test_dense_requests_work():
    dense = make_ratings(20, 10, 200, seed=0)  # every pair
    assert len(dense.ratings) == 200 and not dense.ratings.duplicated(["user_id", "item_id"]).any()
