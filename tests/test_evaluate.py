"""recmodels.scoring.evaluation: rating metrics, the NCF ranking protocol and the baselines, on bundles
made by the test factory (a planted model, a random one) with a numpy oracle."""

from __future__ import annotations

import bundle_factory
import numpy as np
import pandas as pd
import pytest
from bundle_factory import make_bundle

from recmodels.datasets import make_ratings
from recmodels.errors import BundleError, ConfigError, DataError
from recmodels.metrics import rmse
from recmodels.scoring.evaluation.baselines import BiasBaseline, GlobalMeanBaseline
from recmodels.scoring.evaluation.candidates import rated_keys, sample_negatives
from recmodels.scoring.evaluation.evaluator import activity_buckets, evaluate

RANK = 4


@pytest.fixture(scope="module")
def planted():
    """Synthetic ratings (ids sorted, so bundle index k = planted index k) and a train/test split."""
    data = make_ratings(n_users=200, n_items=150, n_ratings=6000, rank=RANK, seed=3)
    assert np.all(np.diff(data.planted.user_ids) > 0) and np.all(np.diff(data.planted.item_ids) > 0)
    ratings = data.ratings[["user_id", "item_id", "rating"]]
    order = np.random.default_rng(0).permutation(len(ratings))
    train = ratings.iloc[order[:4800]].reset_index(drop=True)
    test = ratings.iloc[order[4800:]].reset_index(drop=True)
    return data, train, test


@pytest.fixture(scope="module")
def uniform():
    """Uniform activity over 400 items: every user keeps more than 99 unrated items."""
    return make_ratings(n_users=200, n_items=400, n_ratings=4000, rank=RANK, popularity_skew=0.0, seed=4)


def _planted_bundle(path, data, monkeypatch):
    """A factory MF bundle whose weights are the planted model (score = the planted latent)."""
    p = data.planted
    weights = {"P": p.user_factors.astype(np.float32), "Q": p.item_factors.astype(np.float32),
               "mu": np.array([p.global_mean], np.float32), "bu": p.user_bias.astype(np.float32),
               "bi": p.item_bias.astype(np.float32)}
    monkeypatch.setattr(bundle_factory, "make_weights", lambda *a, **k: weights)
    return make_bundle(path, kind="mf", user_ids=p.user_ids, item_ids=p.item_ids, dim=RANK,
                       fallback_score=3.6)


def _held_out_unrated(data, train, rng, *, best: bool, per_user: int = 1):
    """Held-out rows of items each user did not rate in ``train``: the planted favourite, or random."""
    p = data.planted
    n_users, n_items = p.user_ids.size, p.item_ids.size
    tu, ti = p.index_of(train.user_id, train.item_id)
    rated = np.zeros((n_users, n_items), dtype=bool)
    rated[tu, ti] = True
    users, items = [], []
    for u in range(n_users):
        free = np.flatnonzero(~rated[u])
        if best:
            latent = p.latent(np.full(free.size, u), free)
            chosen = free[np.argsort(-latent)[:per_user]]
        else:
            chosen = rng.choice(free, per_user, replace=False)
        users += [u] * chosen.size
        items += list(chosen)
    users, items = np.array(users), np.array(items)
    rating = np.clip(np.rint(p.latent(users, items)), 1, 5)
    return pd.DataFrame({"user_id": p.user_ids[users], "item_id": p.item_ids[items], "rating": rating})


def test_planted_model_hits_nearly_always(tmp_path, planted, monkeypatch):
    data, train, _ = planted
    fb = _planted_bundle(tmp_path / "b", data, monkeypatch)
    test = _held_out_unrated(data, train, np.random.default_rng(1), best=True)
    report = evaluate(fb.path, test, train=train, device="cpu")
    assert report.ranking["model"]["all"]["n"] == len(test)
    assert report.ranking["model"]["all"]["hr"] >= 0.97
    assert report.ranking["model"]["all"]["ndcg"] >= 0.9
    # the bias model only knows item biases for ranking: far better than chance, far from perfect
    assert 0.15 < report.ranking["bias"]["all"]["hr"] < report.ranking["model"]["all"]["hr"]


def test_random_model_hits_at_chance(tmp_path, uniform):
    data = uniform
    train = data.ratings
    fb = make_bundle(tmp_path / "b", kind="neumf", user_ids=data.planted.user_ids,
                     item_ids=data.planted.item_ids, seed=5)
    test = _held_out_unrated(data, train, np.random.default_rng(2), best=False, per_user=10)
    report = evaluate(fb.path, test, train=train, device="cpu", k=10, negatives=99, seed=0)
    got = report.ranking["model"]["all"]
    assert got["n"] == 2000
    assert got["hr"] == pytest.approx(10 / 100, abs=0.025)  # std of the mean ~0.007
    assert report.data["rows_with_fewer_candidates"] == 0


def test_rating_metrics_match_the_oracle(tmp_path, planted):
    data, train, test = planted
    fb = make_bundle(tmp_path / "b", kind="neumf", user_ids=data.planted.user_ids,
                     item_ids=data.planted.item_ids, fallback_score=3.25)
    test = test.copy()
    test.loc[:9, "user_id"] = -5  # ten rows with an unknown user: scored by the fallback
    report = evaluate(fb.path, test, train=train, device="cpu", ranking=False)
    expected, known = fb.reference_ids(test.user_id, test.item_id)
    y = test.rating.to_numpy(float)
    model = report.rating["model"]
    assert model["all"]["rmse"] == pytest.approx(rmse(y, expected), rel=1e-5)
    assert model["known"]["rmse"] == pytest.approx(rmse(y[known], expected[known]), rel=1e-5)
    assert model["unknown_ids"]["n"] == 10
    assert model["unknown_ids"]["rmse"] == pytest.approx(rmse(y[:10], np.full(10, 3.25)))
    assert report.data["unknown_rows"] == report.data["unknown_users"] == 10
    assert report.ranking is None
    assert sum(model[b]["n"] for b in ("cold", "medium", "heavy")) == model["known"]["n"] == len(test) - 10


def test_bias_baseline_beats_the_global_mean_on_planted_data(tmp_path, planted):
    data, train, test = planted
    fb = make_bundle(tmp_path / "b", kind="mf", user_ids=data.planted.user_ids,
                     item_ids=data.planted.item_ids)
    report = evaluate(fb.path, test, train=train, device="cpu", ranking=False)
    bias, mean = report.rating["bias"]["all"]["rmse"], report.rating["global_mean"]["all"]["rmse"]
    assert bias < mean - 0.05
    assert mean == pytest.approx(rmse(test.rating, np.full(len(test), train.rating.mean())))


def test_bias_baseline_recovers_planted_biases(planted):
    data, train, _ = planted
    u, i = data.planted.index_of(train.user_id, train.item_id)
    model = BiasBaseline().fit(u, i, train.rating, n_users=200, n_items=150)
    assert np.corrcoef(model.item_bias_, data.planted.item_bias)[0, 1] > 0.8
    assert np.corrcoef(model.user_bias_, data.planted.user_bias)[0, 1] > 0.7
    # unknown indices add no bias
    assert model.predict([-1], [-1])[0] == pytest.approx(model.global_mean_)
    assert model.predict([-1], [3])[0] == pytest.approx(model.global_mean_ + model.item_bias_[3])


def test_baselines_contract():
    with pytest.raises(Exception, match="not fitted"):
        BiasBaseline().predict([0], [0])
    with pytest.raises(Exception, match="not fitted"):
        GlobalMeanBaseline().predict([0], [0])
    with pytest.raises(ValueError, match="reg_user"):
        BiasBaseline(reg_user=-1).fit([0], [0], [3.0])
    with pytest.raises(ValueError, match="unknown ids"):
        BiasBaseline().fit([-1], [0], [3.0])
    b = BiasBaseline(reg_user=2.0)
    assert b.reg_user == 2.0 and b.fit([0, 1], [0, 0], [4.0, 2.0]) is b


def test_sample_negatives_are_unrated_distinct_and_seeded():
    n_items = 30
    users = np.array([0, 0, 1, 2, 3])
    # user 2 rated 25 of 30 items: fewer than 10 unrated -> all 5 of them, then -1 padding
    rated = rated_keys(np.r_[0, 0, 1, np.full(25, 2)], np.r_[3, 4, 7, np.arange(25)], n_items)
    neg = sample_negatives(np.random.default_rng(0), users, rated, n_items, 10)
    assert neg.shape == (5, 10)
    for row, u in enumerate(users):
        items = neg[row][neg[row] >= 0]
        assert len(set(items)) == items.size
        assert not np.isin(u * n_items + items, rated).any()
    assert neg[3].tolist() == [25, 26, 27, 28, 29] + [-1] * 5
    again = sample_negatives(np.random.default_rng(0), users, rated, n_items, 10)
    other = sample_negatives(np.random.default_rng(1), users, rated, n_items, 10)
    assert np.array_equal(neg, again) and not np.array_equal(neg, other)


def test_sampling_a_user_who_rated_nearly_everything():
    """Rejection sampling gives up after a few rounds and draws from the unrated items exactly."""
    n_items = 1000
    rated = rated_keys(np.zeros(985, np.int64), np.arange(985), n_items)
    neg = sample_negatives(np.random.default_rng(0), np.array([0]), rated, n_items, 12)
    assert set(neg[0]) <= set(range(985, 1000)) and len(set(neg[0])) == 12


def test_all_items_ranking_matches_brute_force(tmp_path, planted):
    data, train, _ = planted
    fb = make_bundle(tmp_path / "b", kind="neumf", user_ids=data.planted.user_ids,
                     item_ids=data.planted.item_ids, seed=2)
    test = _held_out_unrated(data, train, np.random.default_rng(4), best=False, per_user=2).iloc[:120]
    report = evaluate(fb.path, test, train=train, device="cpu", all_items=True, k=20)
    tu, ti = data.planted.index_of(train.user_id, train.item_id)
    hu, hi = data.planted.index_of(test.user_id, test.item_id)
    rated = set(zip(tu.tolist(), ti.tolist(), strict=True)) | set(zip(hu.tolist(), hi.tolist(), strict=True))
    hits = []
    for u, i in zip(hu, hi, strict=True):
        scores = fb.reference(np.full(150, u), np.arange(150))
        others = [j for j in range(150) if (u, j) not in rated]
        hits.append(np.sum(scores[others] >= scores[i]) + 1 <= 20)
    assert report.ranking["model"]["all"]["hr"] == pytest.approx(np.mean(hits))


def test_ties_rule_on_the_constant_baseline(tmp_path, uniform):
    data = uniform
    train, test = data.ratings.iloc[:3000], data.ratings.iloc[3000:]
    fb = make_bundle(tmp_path / "b", kind="mf", user_ids=data.planted.user_ids,
                     item_ids=data.planted.item_ids)
    runs = {ties: evaluate(fb.path, test, train=train, device="cpu", ties=ties).ranking["global_mean"]["all"]
            for ties in ("pessimistic", "optimistic", "average")}
    assert runs["pessimistic"]["hr"] == 0.0 and runs["optimistic"]["hr"] == 1.0
    assert runs["average"]["hr"] == pytest.approx(0.1)  # K / (N + 1)


def test_activity_buckets_by_training_ratings(tmp_path):
    fb = make_bundle(tmp_path / "b", kind="mf", n_users=3, n_items=80)
    users, items = fb.user_ids, fb.item_ids
    counts = {users[0]: 2, users[1]: 10, users[2]: 60}  # cold, medium, heavy at (5, 50)
    train = pd.DataFrame([(u, items[j], 3.0) for u, c in counts.items() for j in range(c)],
                         columns=["user_id", "item_id", "rating"])
    test = pd.DataFrame({"user_id": [users[0], users[1], users[1], users[2]],
                         "item_id": items[70:74], "rating": [1.0, 2.0, 3.0, 4.0]})
    report = evaluate(fb.path, test, train=train, device="cpu", negatives=5, k=3)
    assert [report.rating["model"][b]["n"] for b in ("cold", "medium", "heavy")] == [1, 2, 1]
    assert [report.ranking["model"][b]["n"] for b in ("cold", "medium", "heavy")] == [1, 2, 1]
    assert report.train["users_by_bucket"] == {"cold": 1, "medium": 1, "heavy": 1}
    other = evaluate(fb.path, test, train=train, device="cpu", negatives=5, k=3, buckets=(3, 11))
    assert [other.rating["model"][b]["n"] for b in ("cold", "medium", "heavy")] == [1, 2, 1]
    assert other.protocol["buckets"] == {"cold": "< 3", "medium": "3-10", "heavy": ">= 11"}
    assert activity_buckets(np.array([2, 3, 10, 11]), np.arange(4), (3, 11)).tolist() == [0, 1, 1, 2]


def test_without_training_data(tmp_path, planted):
    data, _, test = planted
    fb = make_bundle(tmp_path / "b", kind="mf", user_ids=data.planted.user_ids,
                     item_ids=data.planted.item_ids)
    report = evaluate(fb.path, test, device="cpu")
    assert list(report.rating) == ["model", "global_mean"]
    assert report.train is None and "cold" not in report.rating["model"]
    assert report.rating["global_mean"]["all"]["rmse"] == pytest.approx(
        rmse(test.rating, np.full(len(test), fb.weights["mu"][0])), rel=1e-6)  # the manifest's mean
    assert any("no training data" in note for note in report.notes)
    assert "global mean" in report.format_table()
    assert list(evaluate(fb.path, test, device="cpu", baselines=False, ranking=False).rating) == ["model"]


def test_same_seed_same_report(tmp_path, planted):
    data, train, test = planted
    fb = make_bundle(tmp_path / "b", kind="neumf", user_ids=data.planted.user_ids,
                     item_ids=data.planted.item_ids)
    first, again, other = (evaluate(fb.path, test, train=train, device="cpu", seed=s).to_dict()["ranking"]
                           for s in (7, 7, 8))
    assert first == again and first != other


def test_string_ids_and_files(tmp_path):
    fb = make_bundle(tmp_path / "b", kind="neumf", id_kind="string", n_users=20, n_items=120)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user_id": rng.choice(fb.user_ids, 300), "item_id": rng.choice(fb.item_ids, 300),
                          "rating": rng.integers(1, 6, 300)}).drop_duplicates(["user_id", "item_id"])
    frame.iloc[:200].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[200:].to_parquet(tmp_path / "test.parquet")
    report = evaluate(fb.path, tmp_path / "test.parquet", train=tmp_path / "train.csv", device="cpu")
    assert report.data["source"].endswith("test.parquet") and report.data["unknown_rows"] == 0
    assert report.ranking["model"]["all"]["n"] == len(frame) - 200


# -- bad input --------------------------------------------------------------------------------------
def test_ids_that_do_not_match_the_model(tmp_path):
    fb = make_bundle(tmp_path / "b", kind="mf", n_users=20, n_items=120)
    text_ids = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "rating": [3, 4]})
    with pytest.raises(DataError, match=r"none of the 2 evaluation rows has ids the model knows.*"
                                        r"user ids \('user_id'\) are text but the bundle's are integer"):
        evaluate(fb.path, text_ids, device="cpu")
    good = pd.DataFrame({"user_id": fb.user_ids[:3], "item_id": fb.item_ids[:3], "rating": [3, 4, 5]})
    with pytest.raises(DataError, match="none of the 2 training rows"):
        evaluate(fb.path, good, train=text_ids, device="cpu")


@pytest.mark.parametrize("options, message", [
    ({"k": 0}, "--top-k must be a positive integer, got 0"),
    ({"k": 101}, r"--top-k 101 is larger than the candidate set \(99 negatives \+ the held-out item = 100\)"),
    ({"negatives": 0}, "--negatives must be a positive integer"),
    ({"negatives": 120}, "--negatives 120 needs at least 121 items but the model has 120"),
    ({"all_items": True, "k": 121}, "--top-k 121 is larger than the candidate set: the model has 120 items"),
    ({"ties": "random"}, "--ties 'random'"),
    ({"buckets": (50, 5)}, "--buckets must be two integers"),
    ({"buckets": ("5",)}, "--buckets must be two integers"),
])
def test_bad_protocol_options(tmp_path, options, message):
    fb = make_bundle(tmp_path / "b", kind="mf", n_users=5, n_items=120)
    frame = pd.DataFrame({"user_id": fb.user_ids[:2], "item_id": fb.item_ids[:2], "rating": [3, 4]})
    with pytest.raises(ConfigError, match=message):
        evaluate(fb.path, frame, device="cpu", **options)


def test_bad_data(tmp_path):
    fb = make_bundle(tmp_path / "b", kind="mf", n_users=5, n_items=120)
    frame = pd.DataFrame({"user_id": fb.user_ids[:2], "book_id": fb.item_ids[:2], "rating": [3, 4]})
    with pytest.raises(DataError, match=r"missing evaluation column\(s\) 'item_id'.*--item-col"):
        evaluate(fb.path, frame, device="cpu")
    assert evaluate(fb.path, frame, item_col="book_id", device="cpu").data["known_rows"] == 2
    (tmp_path / "bad.csv").write_text("user_id,item_id,rating\n1000,5,great\n")
    with pytest.raises(DataError, match=r"bad.csv: rating at data row 1 in column 'rating' is 'great', not"):
        evaluate(fb.path, tmp_path / "bad.csv", device="cpu")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="broken.parquet"):
        evaluate(fb.path, tmp_path / "broken.parquet", device="cpu")
    with pytest.raises(DataError, match="not found"):
        evaluate(fb.path, tmp_path / "missing.csv", device="cpu")
    (tmp_path / "empty.csv").write_text("user_id,item_id,rating\n")
    with pytest.raises(DataError, match="no data rows"):
        evaluate(fb.path, tmp_path / "empty.csv", device="cpu")


def test_model_must_be_a_bundle(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    frame = pd.DataFrame({"user_id": [1], "item_id": [2], "rating": [3]})
    with pytest.raises(ConfigError, match="is a run directory.*recmodels export"):
        evaluate(run, frame)
    with pytest.raises(BundleError, match="not a recmodels bundle"):
        evaluate(tmp_path, frame)
