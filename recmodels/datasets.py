"""Synthetic explicit ratings with a planted answer (torch-free).

:func:`make_ratings` draws a ratings table from a known low-rank model, so a trained
model's test RMSE can be judged against the best RMSE any model could reach on that data
(:attr:`SyntheticRatings.best_rmse`) and against predicting the global mean
(:attr:`SyntheticRatings.global_mean_rmse`). It also draws a pretrained item-embedding table
that carries information about the true item factors, so the hybrid model has something
to gain from it. :func:`sample_data` writes a small default dataset (``make demo``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .errors import ConfigError
from .fileio import atomic_path, write_json

__all__ = ["PlantedModel", "SyntheticRatings", "expected_rating", "make_ratings", "sample_data"]

RATING_MIN = 1
RATING_MAX = 5
GLOBAL_MEAN = 3.6
USER_BIAS_STD = 0.35
ITEM_BIAS_STD = 0.45
INTERACTION_STD = 0.7  # std of the factor dot product p_u . q_i
TIME_START = 1_325_376_000  # 2012-01-01 UTC
TIME_END = 1_577_836_800  # 2020-01-01 UTC
_CHUNK = 1 << 20

_erf = np.frompyfunc(math.erf, 1, 1)


def expected_rating(latent, noise_sigma: float) -> np.ndarray:
    """E[clip(round(latent + eps), 1, 5)] for eps ~ N(0, noise_sigma^2), elementwise.

    ``clip(round(y), 1, 5) = 1 + #{k in 1..4 : y >= k + 0.5}``, so the expectation is
    ``1 + sum_k Phi((latent - k - 0.5) / noise_sigma)`` with ``Phi`` the standard normal CDF
    (computed with :func:`math.erf`). With ``noise_sigma == 0`` it is the rounded, clipped
    latent value itself.

    Parameters
    ----------
    latent : array-like of float
    noise_sigma : float

    Returns
    -------
    ndarray of float64
    """
    latent = np.asarray(latent, dtype=np.float64)
    if noise_sigma <= 0:
        return np.clip(np.rint(latent), RATING_MIN, RATING_MAX)
    out = np.full(latent.shape, float(RATING_MIN))
    scale = 1.0 / (noise_sigma * math.sqrt(2.0))
    for k in range(RATING_MIN, RATING_MAX):
        z = (latent - (k + 0.5)) * scale
        out += 0.5 * (1.0 + _erf(z).astype(np.float64))
    return out


@dataclass
class PlantedModel:
    """The parameters the ratings were drawn from.

    ``latent(u, i) = global_mean + user_bias[u] + item_bias[i] + user_factors[u] . item_factors[i]``
    and ``rating = clip(round(latent + N(0, noise_sigma^2)), 1, 5)``; index ``k`` has raw id
    ``user_ids[k]`` / ``item_ids[k]``.
    """

    global_mean: float
    user_ids: np.ndarray
    item_ids: np.ndarray
    user_bias: np.ndarray
    item_bias: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    noise_sigma: float

    def latent(self, user_index, item_index) -> np.ndarray:
        """Noise-free latent score of (user index, item index) pairs (chunked, float64)."""
        u = np.asarray(user_index, dtype=np.int64)
        i = np.asarray(item_index, dtype=np.int64)
        out = np.empty(u.shape[0], dtype=np.float64)
        for start in range(0, u.shape[0], _CHUNK):
            su, si = u[start : start + _CHUNK], i[start : start + _CHUNK]
            dot = np.einsum("ij,ij->i", self.user_factors[su], self.item_factors[si])
            out[start : start + _CHUNK] = self.global_mean + self.user_bias[su] + self.item_bias[si] + dot
        return out

    def expected_rating(self, user_index, item_index) -> np.ndarray:
        """The best possible prediction, E[rating | planted parameters]."""
        return expected_rating(self.latent(user_index, item_index), self.noise_sigma)

    def index_of(self, user_ids, item_ids) -> tuple[np.ndarray, np.ndarray]:
        """Planted indices of raw ids (ids must exist)."""
        return _lookup(self.user_ids, user_ids), _lookup(self.item_ids, item_ids)


def _lookup(classes: np.ndarray, ids) -> np.ndarray:
    ids = np.asarray(ids)
    order = np.argsort(classes, kind="stable")
    pos = np.searchsorted(classes[order], ids)
    pos = np.clip(pos, 0, classes.size - 1)
    found = order[pos]
    if not np.all(classes[found] == ids):
        raise KeyError("some ids are not in the planted model")
    return found


@dataclass
class SyntheticRatings:
    """A synthetic dataset and the figures a model should be judged against.

    Attributes
    ----------
    ratings : pandas.DataFrame
        Columns ``user_id``, ``item_id``, ``rating`` (int64, 1..5) and ``timestamp`` (int64
        epoch seconds); one row per (user, item), rows ordered by user then time.
    item_embeddings : pandas.DataFrame
        Column ``item_id`` plus vector columns ``e0`` .. ``e{d-1}`` (float32), rows shuffled.
    noise_sigma : float
        Standard deviation of the Gaussian rating noise.
    best_rmse : float
        RMSE, over all rows, of the best possible predictor E[rating | planted parameters]
        (which accounts for the rounding and clipping of the noisy latent score). No model
        can be expected to beat it on fresh data; a model close to it has learned the data.
    global_mean_rmse : float
        RMSE of predicting the mean rating for every row (the ratings' standard deviation).
    planted : PlantedModel
        The parameters the data was drawn from.
    params : dict
        The arguments of :func:`make_ratings` (JSON-able).
    """

    ratings: pd.DataFrame
    item_embeddings: pd.DataFrame
    noise_sigma: float
    best_rmse: float
    global_mean_rmse: float
    planted: PlantedModel | None = field(default=None, repr=False)
    params: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-able description: parameters, sizes and the reference RMSEs."""
        return {
            **self.params,
            "interactions": int(len(self.ratings)),
            "users_with_ratings": int(self.ratings["user_id"].nunique()),
            "items_with_ratings": int(self.ratings["item_id"].nunique()),
            "embedding_rows": int(len(self.item_embeddings)),
            "best_rmse": self.best_rmse,
            "global_mean_rmse": self.global_mean_rmse,
        }

    def save(self, directory: str | os.PathLike, *, format: str = "csv") -> dict[str, Path]:
        """Write the dataset into ``directory`` (created if needed), each file atomically.

        Parameters
        ----------
        directory : path-like
        format : {"csv", "parquet"}
            Format of the ratings file; the embedding table is always CSV.

        Returns
        -------
        dict
            ``{"ratings": .../ratings.csv|parquet, "item_embeddings": .../item_embeddings.csv,
            "meta": .../synthetic.json}`` (the meta file holds :meth:`summary`).
        """
        if format not in ("csv", "parquet"):
            raise ConfigError(f"format must be 'csv' or 'parquet', got {format!r}")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = {
            "ratings": directory / f"ratings.{format}",
            "item_embeddings": directory / "item_embeddings.csv",
            "meta": directory / "synthetic.json",
        }
        ratings = pa.Table.from_pandas(self.ratings, preserve_index=False)
        with atomic_path(paths["ratings"]) as tmp:
            if format == "csv":
                pacsv.write_csv(ratings, tmp)
            else:
                pq.write_table(ratings, tmp)
        embeddings = pa.Table.from_pandas(self.item_embeddings, preserve_index=False)
        with atomic_path(paths["item_embeddings"]) as tmp:
            pacsv.write_csv(embeddings, tmp)
        write_json(paths["meta"], self.summary())
        return paths


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _zipf_probabilities(n: int, skew: float, cap: float, rng: np.random.Generator) -> np.ndarray:
    """Zipf-like probabilities (rank ** -skew, ranks shuffled), none above ``cap``."""
    p = np.arange(1, n + 1, dtype=np.float64) ** -float(skew)
    p /= p.sum()
    # Water-filling: clip the heads to the cap and spread the excess over the rest, so that
    # no user/item is expected to need more distinct partners than exist.
    for _ in range(100):
        over = p > cap
        if not over.any():
            break
        free = ~over
        p[over] = cap
        rest = 1.0 - cap * over.sum()
        p[free] *= rest / p[free].sum()
    return rng.permutation(p)


def _raw_ids(n: int, rng: np.random.Generator, sparse: bool, prefix: str, string_ids: bool):
    if sparse:
        # strictly increasing, mean gap ~100: ids are far larger than the count
        ids = np.cumsum(rng.integers(1, 200, size=n, dtype=np.int64)) + int(rng.integers(0, 100))
    else:
        ids = np.arange(n, dtype=np.int64)
    if string_ids:
        return np.array([f"{prefix}{v}" for v in ids.tolist()], dtype=object)
    return ids


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    # np.unique in numpy >= 2.3 hashes first, which is several times slower here than a sort
    values = np.sort(values)
    if values.size < 2:
        return values
    keep = np.empty(values.size, dtype=bool)
    keep[0] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


def _sample_pairs(n_users, n_items, n_ratings, skew, rng) -> np.ndarray:
    """Unique (user * n_items + item) keys, popularity-skewed, sorted."""
    total = n_users * n_items
    if n_ratings > 0.3 * total:
        return np.sort(rng.choice(total, size=n_ratings, replace=False))
    pu = _zipf_probabilities(n_users, skew, 0.5 * n_items / n_ratings, rng)
    pi = _zipf_probabilities(n_items, skew, 0.5 * n_users / n_ratings, rng)
    keys = np.zeros(0, dtype=np.int64)
    accept = 1.0  # fraction of the last draw that was new; sizes the next draw
    for _ in range(200):
        deficit = n_ratings - keys.size
        if deficit <= 0:
            break
        m = int(deficit / max(accept, 0.05) * 1.05) + 64
        users = rng.choice(n_users, size=m, p=pu)
        items = rng.choice(n_items, size=m, p=pi)
        before = keys.size
        keys = _sorted_unique(np.concatenate([keys, users.astype(np.int64) * n_items + items]))
        accept = (keys.size - before) / m
    else:  # pragma: no cover - the caps make this practically unreachable
        raise ConfigError(
            f"could not draw {n_ratings} distinct pairs; lower popularity_skew or n_ratings"
        )
    if keys.size > n_ratings:
        keys = np.sort(keys[rng.permutation(keys.size)[:n_ratings]])
    return keys


def make_ratings(
    n_users: int = 1000,
    n_items: int = 500,
    n_ratings: int = 20000,
    *,
    rank: int = 8,
    noise_sigma: float = 0.5,
    embedding_dim: int = 16,
    embedding_noise: float = 0.3,
    popularity_skew: float = 1.0,
    seed: int = 0,
    id_offset: bool = True,
    string_ids: bool = False,
    embedding_coverage: float = 1.0,
) -> SyntheticRatings:
    """Draw explicit 1..5 ratings from a planted biased low-rank model.

    The model of the data:

    - user ``u`` has bias ``b_u ~ N(0, 0.35^2)`` and factors ``p_u ~ N(0, s^2 I_rank)``; item
      ``i`` has ``b_i ~ N(0, 0.45^2)`` and ``q_i ~ N(0, s^2 I_rank)``, with ``s`` chosen so that
      ``p_u . q_i`` has standard deviation 0.7;
    - the latent score is ``x_ui = 3.6 + b_u + b_i + p_u . q_i``;
    - the observed rating is ``r_ui = clip(round(x_ui + e_ui), 1, 5)``, ``e_ui ~ N(0,
      noise_sigma^2)`` independent;
    - which pairs are observed: users and items are drawn independently with Zipf-like
      probabilities ``rank ** -popularity_skew`` (ranks shuffled, heads capped so no user or
      item needs more distinct partners than half of those that exist), duplicates removed
      and topped up until there are exactly ``n_ratings`` distinct pairs (uniform without
      replacement when more than 30 % of all pairs are asked for). Users or items that
      draw no pair do not appear in the ratings;
    - timestamps are uniform integer epoch seconds in 2012..2019;
    - raw ids are sorted random integers with gaps averaging 100 (so ids far exceed the
      counts, like the notebook's book ids), ``0..n-1`` with ``id_offset=False``, or strings
      ``"u<id>"`` / ``"i<id>"`` with ``string_ids=True``;
    - the pretrained item table is ``[q_i / s, b_i / 0.45] W + embedding_noise * N(0, I_d)``
      for a random ``W ~ N(0, 1/(rank + 1))`` of shape ``(rank + 1, embedding_dim)``: a noisy
      random linear view of the true item factors and bias, covering a random
      ``embedding_coverage`` fraction of the ``n_items`` items (including unrated ones).

    ``best_rmse`` is the RMSE over all rows of ``E[r_ui | x_ui] = 1 + sum_{k=1..4}
    Phi((x_ui - k - 0.5) / noise_sigma)``, the best possible predictor under squared error;
    ``global_mean_rmse`` that of predicting the mean rating.

    Parameters
    ----------
    n_users, n_items : int
        Number of users and items in the planted model.
    n_ratings : int
        Number of distinct (user, item) rows; at most ``n_users * n_items``.
    rank : int
        Rank of the factor model.
    noise_sigma : float
        Standard deviation of the rating noise (0 gives noise-free ratings).
    embedding_dim : int
        Width of the pretrained item table.
    embedding_noise : float
        Noise added to the table (signal has unit variance per dimension).
    popularity_skew : float
        Zipf exponent of user activity and item popularity (0 = uniform).
    seed : int
        Seed of everything; same arguments give the same data.
    id_offset : bool
        Sparse large raw ids (default) instead of ``0..n-1``.
    string_ids : bool
        String ids instead of integers.
    embedding_coverage : float
        Fraction of items (in ``(0, 1]``) with a row in the pretrained table.

    Returns
    -------
    SyntheticRatings

    Examples
    --------
    >>> data = make_ratings(200, 100, 3000, seed=1)
    >>> data.best_rmse < data.global_mean_rmse
    True
    """
    _check(n_users >= 1 and n_items >= 1, "n_users and n_items must be at least 1")
    _check(1 <= n_ratings <= n_users * n_items,
           f"n_ratings must be between 1 and n_users * n_items = {n_users * n_items}")
    _check(rank >= 1, "rank must be at least 1")
    _check(embedding_dim >= 1, "embedding_dim must be at least 1")
    _check(noise_sigma >= 0 and math.isfinite(noise_sigma), "noise_sigma must be >= 0")
    _check(embedding_noise >= 0 and math.isfinite(embedding_noise), "embedding_noise must be >= 0")
    _check(popularity_skew >= 0 and math.isfinite(popularity_skew), "popularity_skew must be >= 0")
    _check(0 < embedding_coverage <= 1, "embedding_coverage must be in (0, 1]")
    rng = np.random.default_rng(seed)

    scale = (INTERACTION_STD**2 / rank) ** 0.25
    user_factors = rng.normal(0.0, scale, size=(n_users, rank))
    item_factors = rng.normal(0.0, scale, size=(n_items, rank))
    user_bias = rng.normal(0.0, USER_BIAS_STD, size=n_users)
    item_bias = rng.normal(0.0, ITEM_BIAS_STD, size=n_items)
    user_ids = _raw_ids(n_users, rng, id_offset, "u", string_ids)
    item_ids = _raw_ids(n_items, rng, id_offset, "i", string_ids)
    planted = PlantedModel(GLOBAL_MEAN, user_ids, item_ids, user_bias, item_bias, user_factors,
                           item_factors, float(noise_sigma))

    keys = _sample_pairs(n_users, n_items, n_ratings, popularity_skew, rng)
    users = keys // n_items
    items = keys % n_items
    timestamps = rng.integers(TIME_START, TIME_END, size=keys.size, dtype=np.int64)
    order = np.lexsort((timestamps, users))
    users, items, timestamps = users[order], items[order], timestamps[order]

    latent = planted.latent(users, items)
    noisy = latent + rng.normal(0.0, noise_sigma, size=latent.size) if noise_sigma > 0 else latent
    rating = np.clip(np.rint(noisy), RATING_MIN, RATING_MAX).astype(np.int64)
    best = expected_rating(latent, noise_sigma)
    best_rmse = float(np.sqrt(np.mean((rating - best) ** 2)))
    global_mean_rmse = float(rating.std())

    ratings = pd.DataFrame(
        {"user_id": user_ids[users], "item_id": item_ids[items], "rating": rating,
         "timestamp": timestamps}
    )

    truth = np.column_stack([item_factors / scale, item_bias / ITEM_BIAS_STD])
    mapping = rng.normal(0.0, 1.0 / math.sqrt(rank + 1), size=(rank + 1, embedding_dim))
    vectors = truth @ mapping + rng.normal(0.0, 1.0, size=(n_items, embedding_dim)) * embedding_noise
    n_rows = max(1, int(round(embedding_coverage * n_items)))
    rows = rng.permutation(n_items)[:n_rows]
    embeddings = pd.DataFrame({"item_id": item_ids[rows]})
    vectors = vectors[rows].astype(np.float32)
    for j in range(embedding_dim):
        embeddings[f"e{j}"] = vectors[:, j]

    params = {
        "n_users": n_users, "n_items": n_items, "n_ratings": n_ratings, "rank": rank,
        "noise_sigma": float(noise_sigma), "embedding_dim": embedding_dim,
        "embedding_noise": float(embedding_noise), "popularity_skew": float(popularity_skew),
        "seed": seed, "id_offset": id_offset, "string_ids": string_ids,
        "embedding_coverage": float(embedding_coverage), "rating_min": RATING_MIN,
        "rating_max": RATING_MAX,
    }
    return SyntheticRatings(
        ratings=ratings,
        item_embeddings=embeddings,
        noise_sigma=float(noise_sigma),
        best_rmse=best_rmse,
        global_mean_rmse=global_mean_rmse,
        planted=planted,
        params=params,
    )


def sample_data(directory: str | os.PathLike, *, seed: int = 0, format: str = "csv") -> dict[str, Path]:
    """Write the default demo dataset (2,000 users, 1,000 items, 60,000 ratings, d=16).

    Parameters
    ----------
    directory : path-like
        Created if needed; receives ``ratings.csv``, ``item_embeddings.csv`` and
        ``synthetic.json``.
    seed : int
    format : {"csv", "parquet"}
        Format of the ratings file.

    Returns
    -------
    dict
        Paths as from :meth:`SyntheticRatings.save`.
    """
    data = make_ratings(n_users=2000, n_items=1000, n_ratings=60_000, seed=seed)
    return data.save(directory, format=format)
