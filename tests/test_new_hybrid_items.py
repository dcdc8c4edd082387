"""New hybrid items from their pretrained vectors (issue 22, part 3): ``--item-embeddings`` at scoring.

A new item of a hybrid bundle scores ``score(u, prior item) + change``. The exact change
``w_e . (e - e_prior)`` (``read_item_content(..., exact=True)``) is checked against the torch model
with the vector appended as a row (the other item-side rows at the prior item) and against the numpy
oracle of the factory's weights in ``recommend``, with ``--history`` (the solve starts from the
content) and ``--exclude-seen``; the calibrated change ``g . (e - e_prior)`` (the default) against
explicit leave-one-item-out ridge refits, and on planted data where the trained items' rows took up
part of the content's effect; bad input, old bundles, resume, and torch-free.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import bundle_factory
import numpy as np
import pandas as pd
import pytest
from bundle_factory import make_bundle, prior_weights, reference_scores
from click.testing import CliRunner
from test_torch_free import BLOCKER

from recmodels.bundle import Bundle
from recmodels.bundle.layout import FOLD_FILES
from recmodels.cli import cli
from recmodels.errors import BundleError, ConfigError
from recmodels.export.prior import RIDGE_GRID
from recmodels.scoring import Scorer
from recmodels.scoring.history import read_item_content
from recmodels.scoring.recommendation.recommender import Recommender

CONTENT_FILE = FOLD_FILES["item_content"]

REPO = Path(__file__).resolve().parents[1]
N_USERS, N_ITEMS, DIM = 30, 50, 4
NEW = [9001, 9002, 9003]  # item ids the bundle does not know (its ids are 5 + 3k)


@pytest.fixture(scope="module")
def fb(tmp_path_factory):
    rng = np.random.default_rng(1)
    train = rng.integers(0, N_USERS, 1500), rng.integers(0, N_ITEMS, 1500)
    return make_bundle(tmp_path_factory.mktemp("hybrid") / "b", kind="hybrid", folded=True, prior=True,
                       n_users=N_USERS, n_items=N_ITEMS, pretrained_dim=DIM, train_rows=train,
                       rating_range=(-10.0, 10.0))


def _content_weights(fb):
    """``(w_e, e_prior)`` from the factory's raw weights: the head's rows on ``E``, the mean vector."""
    w = fb.weights
    return w["Wo"][-DIM:, 0].astype(np.float64), w["E"].astype(np.float64).mean(axis=0)


def _vectors(fb, changes):
    """A table of the new items whose content changes are ``changes`` (plus a row of a known item)."""
    w_e, e_prior = _content_weights(fb)
    rng = np.random.default_rng(4)
    rows = []
    for change in changes:
        noise = rng.normal(size=DIM)
        noise -= (noise @ w_e) / (w_e @ w_e) * w_e  # no effect on the score
        rows.append(e_prior + noise + change / (w_e @ w_e) * w_e)
    rows.append(np.zeros(DIM))  # a known item: its trained vector stays
    frame = pd.DataFrame(np.asarray(rows, dtype=np.float32), columns=[str(c) for c in range(DIM)])
    frame.insert(0, "item_id", NEW[: len(changes)] + [int(fb.item_ids[0])])
    return frame


def _oracle(fb, table, users, items):
    """Scores from the raw weights with the new items appended: prior rows, their own vectors."""
    w = prior_weights(fb.weights)
    for name in ("Q", "Mi", "E"):
        w[name] = np.concatenate([w[name]] + [w[name][N_ITEMS : N_ITEMS + 1]] * len(NEW))
    vectors = table.set_index("item_id").loc[[i for i in NEW if i in set(table["item_id"])]]
    w["E"][N_ITEMS + 1 : N_ITEMS + 1 + len(vectors)] = vectors.to_numpy(dtype=np.float64)
    index = {int(v): k for k, v in enumerate(fb.item_ids)} | {v: N_ITEMS + 1 + k for k, v in enumerate(NEW)}
    user_index = {int(v): k for k, v in enumerate(fb.user_ids)}
    return reference_scores(w, "hybrid", [user_index[u] for u in users], [index[int(i)] for i in items])


def _exact(path, table):
    """The table's new items with the exact content change (the model's own score of such an item)."""
    return read_item_content(Bundle.load(path), table, item_col="item_id", exact=True)


def _scorer(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Scorer(path, device="cpu", max_unknown_share=1.0, **kw)


# -- scores --------------------------------------------------------------------------------------
def test_new_item_score_equals_the_torch_reference(tmp_path):
    """The hybrid torch model with the vectors appended as rows (other item rows at the prior item)."""
    torch = pytest.importorskip("torch")
    from recmodels.encoders import IdEncoder
    from recmodels.export import export_model
    from recmodels.models import ModelConfig, build_model

    torch.manual_seed(0)
    config = ModelConfig("hybrid", n_users=20, n_items=15, embedding_dim=8, num_layers=2, dropouts=(0.5, 0.3),
                         pretrained_dim=5, use_bias=True, global_mean=3.5, implicit="none")
    model = build_model(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
        model.item_pretrained.normal_()
    model.eval()
    users = IdEncoder("user").fit(np.arange(20) + 100)
    items = IdEncoder("item").fit(np.arange(15) + 500)
    data = {"user_col": "user_id", "item_col": "item_id", "rating_col": "rating", "rating_min": 1.0,
            "rating_max": 5.0, "global_mean": 3.5}
    path = export_model(model, users, items, tmp_path / "b", data=data, parity_pairs=2000)
    vectors = np.random.default_rng(3).normal(size=(2, 5)).astype(np.float32) * 2
    table = pd.DataFrame(vectors, columns=list("abcde")).assign(item_id=[900, 901])
    scorer = _scorer(path, item_embeddings=_exact(path, table))
    user_ids = np.repeat(users.classes_, 2)
    got, known = scorer.score_arrays(user_ids, np.tile([900, 901], 20))
    assert known.all()

    grown = build_model(dataclasses.replace(config, n_items=17))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for name in ("item_gmf.weight", "item_mlp.weight", "item_bias.weight"):
        mean = state[name].mean(dim=0, keepdim=True)
        state[name] = torch.cat([state[name], mean, mean])
    state["item_pretrained"] = torch.cat([state["item_pretrained"], torch.from_numpy(vectors)])
    grown.load_state_dict(state)
    grown.eval()
    with torch.no_grad():
        want = grown(torch.arange(20).repeat_interleave(2), torch.tensor([15, 16] * 20)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    # a known pair is the graph's score, untouched by the new items
    plain = _scorer(path).score_arrays(users.classes_[:3], items.classes_[:3])[0]
    np.testing.assert_array_equal(scorer.score_arrays(users.classes_[:3], items.classes_[:3])[0], plain)


def test_scores_of_new_items_equal_the_oracle_and_the_stats(fb):
    table = _vectors(fb, [1.5, -0.5, 0.0])
    scorer = _scorer(fb.path, item_embeddings=_exact(fb.path, table))
    users = np.repeat(fb.user_ids[:6], 4)
    items = np.tile(NEW + [int(fb.item_ids[3])], 6)
    got, known = scorer.score_arrays(users, items)
    assert known.all()
    np.testing.assert_allclose(got, _oracle(fb, table, users, items), atol=1e-5, rtol=0)
    # the content change is the score above the prior item's, for every user
    prior = _scorer(fb.path).score_arrays(fb.user_ids[:6], np.full(6, 777777))[0]
    np.testing.assert_allclose(got.reshape(6, 4)[:, :3] - prior[:, None], [[1.5, -0.5, 0.0]] * 6, atol=1e-5)
    stats = scorer.fold.stats
    assert stats["items_from_vectors"] == 3 and stats["items_folded_in"] == 3
    assert stats["vector_rows_known"] == 1 and stats["history_rows"] == 0


def test_history_ratings_start_from_the_content(fb):
    """Ratings equal to the content-based scores leave the change where the vector put it; without the
    vector the same ratings move the new item from the prior item to (nearly) there."""
    table = _vectors(fb, [2.0])
    users = fb.user_ids[:8]
    ratings = _oracle(fb, table, users, [NEW[0]] * 8)
    history = pd.DataFrame({"user_id": users, "item_id": NEW[0], "rating": ratings})
    with_vector = _scorer(fb.path, history=history, item_embeddings=_exact(fb.path, table))
    delta = with_vector.fold.items.delta[0]
    np.testing.assert_allclose(delta[:-1], 0, atol=1e-5)
    assert delta[-1] == pytest.approx(2.0, abs=1e-5)
    ratings_only = _scorer(fb.path, history=history).fold.items.delta[0]
    assert abs(ratings_only[-1] - 2.0) > 1e-3 or np.abs(ratings_only[:-1]).max() > 1e-3
    assert with_vector.fold.stats["items_folded_in"] == 1


def _loo_reference(x, y, w):
    """``g`` of the strength in ``RIDGE_GRID`` with the least weighted error of explicit refits that
    each leave one item out (no closed form)."""
    gram = (x * w[:, None]).T @ x
    grid = RIDGE_GRID * np.linalg.eigvalsh(gram).clip(0).mean()
    errors = []
    for ridge in grid:
        error = 0.0
        for i in range(x.shape[0]):
            keep = np.arange(x.shape[0]) != i
            xk, wk = x[keep], w[keep]
            xw = (xk * wk[:, None]).T
            g = np.linalg.solve(xw @ xk + ridge * np.eye(x.shape[1]), xw @ y[keep])
            error += w[i] * (y[i] - x[i] @ g) ** 2
        errors.append(error)
    ridge = grid[int(np.argmin(errors))]
    return np.linalg.solve(gram + ridge * np.eye(x.shape[1]), (x * w[:, None]).T @ y)


def test_calibrated_change_equals_a_leave_one_out_reference(fb):
    """``g`` fitted to the prior user's scores of the trained items (numpy oracle, training counts as
    weights), the ridge by explicit leave-one-item-out refits; the default change is ``g . (e - e_prior)``."""
    w = prior_weights(fb.weights)
    scores = reference_scores(w, "hybrid", [N_USERS] * (N_ITEMS + 1), np.arange(N_ITEMS + 1))
    offsets = scores[:N_ITEMS] - scores[N_ITEMS]
    e_prior = fb.weights["E"].astype(np.float64).mean(axis=0).astype(np.float32).astype(np.float64)
    x = fb.weights["E"].astype(np.float64) - e_prior
    counts = np.bincount(np.random.default_rng(1).integers(0, N_ITEMS, (2, 1500))[1], minlength=N_ITEMS)
    g = _loo_reference(x, offsets, counts.astype(np.float64))
    stored = np.load(fb.path / CONTENT_FILE)
    assert stored.shape == (3, DIM)
    np.testing.assert_allclose(stored[2], g, rtol=1e-6, atol=1e-9)
    table = _vectors(fb, [1.5, -0.5, 0.0])
    got = _scorer(fb.path, item_embeddings=table).score_arrays(np.repeat(fb.user_ids[:4], 3), NEW * 4)[0]
    prior = _scorer(fb.path).score_arrays(fb.user_ids[:4], np.full(4, 777777))[0]
    change = (table.set_index("item_id").loc[NEW].to_numpy(dtype=np.float64) - e_prior) @ g
    np.testing.assert_allclose(got.reshape(4, 3) - prior[:, None], [change] * 4, atol=1e-5)
    exact = _scorer(fb.path, item_embeddings=_exact(fb.path, table)).score_arrays(fb.user_ids[:1], NEW[:1])[0]
    assert abs(exact[0] - got[0]) > 1e-3  # the two changes differ on these weights


def test_calibrated_change_recovers_what_the_rows_left_to_the_content(tmp_path):
    """Planted: the head gives the content ``w_e``, but each trained item's GMF row takes back 60 % of
    it (plus noise), so items score ``0.4 w_e . (e - e_prior)`` above the prior item. New items of that
    truth are scored better by the calibrated change than by the exact one or the prior item alone."""
    n_items, rng = 200, np.random.default_rng(7)
    w = bundle_factory.make_weights("hybrid", N_USERS, n_items, pretrained_dim=DIM, seed=3)
    w["Mi"][:] = w["Mi"][0]  # the MLP part is the same for every item: only the GMF rows and E differ
    w_e = w["Wo"][-DIM:, 0].astype(np.float64)
    e = w["E"].astype(np.float64)
    taken = -0.6 * (e - e.mean(axis=0)) @ w_e + 0.05 * rng.normal(size=n_items)
    taken -= taken.mean()  # the prior item's GMF row stays the base row
    gmf = w["Wo"][:8, 0].astype(np.float64) * w["P"].astype(np.float64).mean(axis=0)
    w["Q"][:] = (w["Q"][0] + taken[:, None] * gmf / (gmf @ gmf)).astype(np.float32)
    train = rng.integers(0, N_USERS, 3000), rng.integers(0, n_items, 3000)
    planted = make_bundle(tmp_path / "b", kind="hybrid", folded=True, prior=True, n_users=N_USERS,
                          n_items=n_items, weights=w, train_rows=train, rating_range=(-10.0, 10.0))
    new = rng.normal(size=(len(NEW), DIM)).astype(np.float32)
    table = pd.DataFrame(new, columns=[str(c) for c in range(DIM)]).assign(item_id=NEW)
    truth = 0.4 * (new.astype(np.float64) - e.mean(axis=0)) @ w_e
    user = [planted.user_ids[0]] * len(NEW)  # a content change is the same for every user
    base = _scorer(planted.path).score_arrays(user[:1], [777777])[0][0]
    calibrated = _scorer(planted.path, item_embeddings=table).score_arrays(user, NEW)[0] - base
    exact = _scorer(planted.path, item_embeddings=_exact(planted.path, table))
    exact = exact.score_arrays(user, NEW)[0]
    errors = {name: float(np.sqrt(np.mean((got - truth) ** 2)))
              for name, got in {"calibrated": calibrated, "exact": exact - base, "prior": 0 * truth}.items()}
    assert errors["calibrated"] < 0.2 * min(errors["exact"], errors["prior"]), errors


# -- recommend -----------------------------------------------------------------------------------
def _recommend(fb, users, k, **kw):
    """Recommend with the exact content change (the oracle's), unless ``item_embeddings`` is read."""
    options = {o: kw.pop(o) for o in ("history", "item_embeddings", "candidates") if o in kw}
    if isinstance(options.get("item_embeddings"), pd.DataFrame):
        options["item_embeddings"] = _exact(fb.path, options["item_embeddings"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = Recommender(fb.path, device="cpu", **options)
        try:
            return rec.recommend_frame(users, k=k, max_unknown_share=1.0, **kw), rec
        finally:
            rec.close()


def _brute_force(fb, table, user, k, excluded=()):
    items = np.concatenate([fb.item_ids, [i for i in NEW if i in set(table["item_id"])]])
    scores = _oracle(fb, table, [user] * items.size, items)
    order = np.lexsort((np.arange(items.size), -scores))
    order = order[~np.isin(items[order], list(excluded))][:k]
    return items[order], scores[order]


def test_recommend_ranks_new_items_by_their_content(fb):
    table = _vectors(fb, [50.0, -50.0, 0.3])
    users = list(fb.user_ids[:5])
    got, rec = _recommend(fb, users, 6, item_embeddings=table)
    for user in users:
        mine = got[got["user_id"] == user]
        assert mine["item_id"].iloc[0] == NEW[0] and NEW[1] not in set(mine["item_id"])
        items, scores = _brute_force(fb, table, user, 6)
        np.testing.assert_array_equal(mine["item_id"].to_numpy(), items)
        np.testing.assert_allclose(mine["score"].to_numpy(), scores, atol=2e-5, rtol=0)
    everything, _ = _recommend(fb, users[:1], N_ITEMS, item_embeddings=table)  # 53 items, 50 shown
    ranked = [i for i in everything["item_id"] if i in NEW]
    assert ranked == [NEW[0], NEW[2]]  # by content change: 50 > 0.3 > -50 (last of all, left out)
    assert rec.last_report.history["items_from_vectors"] == 3


def test_recommend_item_list_and_two_stage_with_new_items(fb):
    table = _vectors(fb, [50.0, -50.0, 0.3])
    listed = list(fb.item_ids[::5]) + [NEW[2]]  # NEW[0] (the best) is not listed
    got, _ = _recommend(fb, [fb.user_ids[1]], 4, item_embeddings=table, items=listed)
    items, _ = _brute_force(fb, table, fb.user_ids[1], N_ITEMS + 3)
    np.testing.assert_array_equal(got["item_id"], [i for i in items if i in set(listed)][:4])
    got, _ = _recommend(fb, [fb.user_ids[2]], 5, item_embeddings=table, candidates=20)
    assert got["item_id"].iloc[0] == NEW[0] and NEW[1] not in set(got["item_id"])


def test_exclude_seen_with_new_items(fb):
    """A history's new item is excluded for its rater with --exclude-seen; seen bundle items still are."""
    table = _vectors(fb, [5.0, 4.0])
    rater, other = fb.user_ids[0], fb.user_ids[1]
    # the rater's rating is the content-based score: NEW[0] keeps its change; 77 is a new user
    rating = _oracle(fb, table, [rater], [NEW[0]])[0]
    history = pd.DataFrame({"user_id": [rater, 77, 77], "item_id": [NEW[0], NEW[1], fb.item_ids[5]],
                            "rating": [rating, 2.0, 2.0]})
    seen = pd.DataFrame({"user_id": [rater] * 3, "item_id": fb.item_ids[:3]})
    got, rec = _recommend(fb, [rater, other, 77], 5, history=history, item_embeddings=table,
                          exclude_seen=seen)
    mine = got[got["user_id"] == rater]
    assert NEW[0] not in set(mine["item_id"]) and mine["item_id"].iloc[0] == NEW[1]
    assert not set(fb.item_ids[:3]) & set(mine["item_id"])
    assert got[got["user_id"] == other]["item_id"].iloc[0] == NEW[0]
    assert NEW[1] not in set(got.loc[got["user_id"] == 77, "item_id"])  # a new user's history item
    assert rec.last_report.history["users_folded_in"] == 1
    plain, _ = _recommend(fb, [rater], 5, history=history, item_embeddings=table)
    assert plain["item_id"].iloc[0] == NEW[0]  # not excluded without --exclude-seen


def test_exclude_seen_table_pairs_of_new_items_are_excluded(fb):
    """An --exclude-seen row naming a new item (from the vectors, or a history's new item) excludes it
    for that user, and for that user only."""
    table = _vectors(fb, [50.0, 40.0, 30.0])
    rater, other = fb.user_ids[0], fb.user_ids[1]
    history = pd.DataFrame({"user_id": fb.user_ids[2:5], "item_id": 9004, "rating": 9.0})
    seen = pd.DataFrame({"user_id": [rater, rater, rater, 77],
                         "item_id": [NEW[0], 9004, fb.item_ids[0], NEW[1]]})
    got, rec = _recommend(fb, [rater, other], N_ITEMS, history=history, item_embeddings=table,
                          exclude_seen=seen)
    mine = set(got.loc[got["user_id"] == rater, "item_id"])
    assert NEW[0] not in mine and 9004 not in mine and fb.item_ids[0] not in mine
    assert {NEW[1], NEW[2]} <= mine
    theirs = set(got.loc[got["user_id"] == other, "item_id"])
    assert {NEW[0], NEW[1], 9004} <= theirs  # another user's seen rows exclude nothing here
    report = rec.last_report
    assert report.seen_pairs == 3 + 3 and report.exclude_unknown_rows == 1  # + the history's; 77: unknown


# -- bad input ------------------------------------------------------------------------------------
def _old_hybrid(path, rows=0):
    """A hybrid bundle as exported before ``fold_item_content.npy`` existed (prior rows and fold-in),
    or with its first ``rows`` rows only."""
    original = bundle_factory.prior_export

    def without_content(*args, **kwargs):
        out = original(*args, **kwargs)
        if rows:
            out.arrays[CONTENT_FILE] = out.arrays[CONTENT_FILE][:rows]
        else:
            out.arrays.pop(CONTENT_FILE)
        return out

    bundle_factory.prior_export = without_content
    try:
        return make_bundle(path, kind="hybrid", folded=True, prior=True, pretrained_dim=DIM)
    finally:
        bundle_factory.prior_export = original


BAD_TABLES = {
    "width": ("item_id,0,1,2\n9001,1,2,3\n", "3 vector column(s) besides 'item_id'"),
    "nan": ("item_id,0,1,2,3\n9001,1,2,3,4\n9002,1,nan,3,4\n",  # read as a null
            "data row 2 in column '1' is empty, not a number"),
    "empty": ("item_id,0,1,2,3\n9001,1,2,3,4\n9002,1,,3,4\n", "data row 2 in column '1' is empty"),
    "inf": ("item_id,0,1,2,3\n9001,1,2,inf,4\n", "data row 1 in column '2' is inf"),
    "text": ("item_id,0,1,2,3\n9001,1,2,x,4\n", "data row 1 in column '2' is 'x'"),
    "duplicate": ("item_id,0,1,2,3\n9001,1,2,3,4\n9002,1,2,3,4\n9001,0,0,0,0\n",
                  "item id 9001 at data row 3 is listed before, at data row 1"),
    "null id": ("item_id,0,1,2,3\n9001,1,2,3,4\n,1,2,3,4\n", "item id ('item_id') at data row 2 is empty"),
    "bad id": ("item_id,0,1,2,3\nabc,1,2,3,4\n", "data row 1 cannot be a int64 item id"),
    "id column": ("book,0,1,2,3\n9001,1,2,3,4\n", "no item id column 'item_id'"),
    "no rows": ("item_id,0,1,2,3\n", "header but no rows"),
}


@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_bad_tables_are_one_line_and_write_nothing(fb, tmp_path, case):
    text, message = BAD_TABLES[case]
    (tmp_path / "e.csv").write_text(text)
    pairs = pd.DataFrame({"user_id": fb.user_ids[:2], "item_id": [9001, 9002]})
    pairs.to_csv(tmp_path / "in.csv", index=False)
    for command in ("score", "recommend"):
        args = [command, str(fb.path), *([str(tmp_path / "in.csv")] if command == "score" else []),
                str(tmp_path / f"{command}.parquet"), "--item-embeddings", str(tmp_path / "e.csv"),
                "--device", "cpu"]
        res = CliRunner().invoke(cli, args)
        assert res.exit_code != 0, res.output
        assert message in res.output and "e.csv" in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.csv", "in.csv"]


def test_non_hybrid_and_old_bundles_are_refused(fb, tmp_path):
    table = _vectors(fb, [1.0])
    neumf = make_bundle(tmp_path / "neumf", kind="neumf", folded=True, prior=True)
    for make in (lambda: _scorer(neumf.path, item_embeddings=table),
                 lambda: Recommender(neumf.path, device="cpu", item_embeddings=table)):
        with pytest.raises(ConfigError, match="needs a hybrid bundle.*neumf bundle") as info:
            make()
        assert "\n" not in str(info.value)
    old = _old_hybrid(tmp_path / "old")
    before_prior = make_bundle(tmp_path / "older", kind="hybrid", pretrained_dim=DIM)
    for path in (old.path, before_prior.path):
        for make in (_scorer, lambda p, **kw: Recommender(p, device="cpu", **kw)):
            with pytest.raises(BundleError, match="exported before --item-embeddings existed.*re-export"):
                make(path, item_embeddings=table)


def test_a_bundle_without_the_calibrated_row_is_refused_unless_exact(fb, tmp_path):
    """A hybrid bundle of the first ``fold_item_content.npy`` ([w_e, e_prior]): the default (calibrated)
    change is refused in one line saying to re-export; the exact change still reads."""
    first = _old_hybrid(tmp_path / "first", rows=2)
    table = _vectors(fb, [1.0])
    for make in (_scorer, lambda p, **kw: Recommender(p, device="cpu", **kw)):
        with pytest.raises(BundleError, match="used the calibrated .*re-export") as info:
            make(first.path, item_embeddings=table)
        assert "\n" not in str(info.value)
    exact = read_item_content(Bundle.load(first.path), table, item_col="item_id", exact=True)
    assert _scorer(first.path, item_embeddings=exact).fold.stats["items_from_vectors"] == 1


def test_history_item_without_a_vector_is_counted_and_folded_from_the_prior(fb):
    table = _vectors(fb, [1.0])
    history = pd.DataFrame({"user_id": fb.user_ids[:3], "item_id": [NEW[0], NEW[1], NEW[1]],
                            "rating": [3.0, 4.0, 2.0]})
    scorer = _scorer(fb.path, history=history, item_embeddings=table)
    stats = scorer.fold.stats
    assert stats["items_without_vector"] == 1 and stats["items_folded_in"] == 2
    alone = _scorer(fb.path, history=history[history["item_id"] == NEW[1]])
    users = fb.user_ids[5:8]
    np.testing.assert_allclose(scorer.score_arrays(users, [NEW[1]] * 3)[0],
                               alone.score_arrays(users, [NEW[1]] * 3)[0], atol=1e-6)


# -- the CLI: resume, torch-free ---------------------------------------------------------------------
def test_resume_with_item_embeddings_equals_a_clean_run(fb, tmp_path):
    rng = np.random.default_rng(5)
    pairs = pd.DataFrame({"user_id": rng.choice(fb.user_ids, 400), "item_id": rng.choice(
        np.r_[fb.item_ids, NEW], 400)})
    pairs.to_parquet(tmp_path / "in.parquet")
    _vectors(fb, [1.0, -1.0, 0.5]).to_csv(tmp_path / "e.csv", index=False)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    opts = ["--device", "cpu", "--part-rows", "50", "--batch-size", "25", "-q", "--item-embeddings",
            str(tmp_path / "e.csv")]
    cli_score = [sys.executable, "-m", "recmodels", "score", str(fb.path), str(tmp_path / "in.parquet")]
    clean, out = tmp_path / "clean", tmp_path / "out"
    subprocess.run(cli_score + [str(clean)] + opts, check=True, env=env, timeout=120)
    subprocess.run(cli_score + [str(out)] + opts, check=True, env=env, timeout=120)
    for part in sorted(out.glob("part-*"))[4:]:  # as if killed after four parts
        part.unlink()
    (out / "_SUCCESS").unlink()
    _vectors(fb, [1.0, -1.0, 0.6]).to_csv(tmp_path / "e2.csv", index=False)
    other = [o if o != str(tmp_path / "e.csv") else str(tmp_path / "e2.csv") for o in opts]
    refused = subprocess.run(cli_score + [str(out), "--resume"] + other, env=env, capture_output=True,
                             text=True)
    assert refused.returncode == 1 and "different" in refused.stderr, refused.stderr
    subprocess.run(cli_score + [str(out), "--resume"] + opts, check=True, env=env, timeout=120)
    result = pd.read_parquet(out)
    pd.testing.assert_frame_equal(result, pd.read_parquet(clean))
    assert result.loc[result["item_id"].isin(NEW), "known"].all()


def test_recommend_resume_with_item_embeddings_equals_a_clean_run(fb, tmp_path):
    _vectors(fb, [3.0, -1.0, 0.5]).to_csv(tmp_path / "e.csv", index=False)
    _vectors(fb, [3.0, -1.0, 0.6]).to_csv(tmp_path / "e2.csv", index=False)
    opts = ["-k", "4", "--part-users", "3", "--device", "cpu", "-q", "--item-embeddings",
            str(tmp_path / "e.csv")]
    clean, out = tmp_path / "clean", tmp_path / "out"
    for target in (clean, out):
        done = CliRunner().invoke(cli, ["recommend", str(fb.path), str(target), *opts])
        assert done.exit_code == 0, done.output
    for part in sorted(out.glob("part-*"))[3:]:  # as if killed after three parts
        part.unlink()
    (out / "_SUCCESS").unlink()
    changed = [str(tmp_path / "e2.csv") if o == str(tmp_path / "e.csv") else o for o in opts]
    refused = CliRunner().invoke(cli, ["recommend", str(fb.path), str(out), "--resume", *changed])
    assert refused.exit_code != 0 and "different" in refused.output, refused.output
    done = CliRunner().invoke(cli, ["recommend", str(fb.path), str(out), "--resume", *opts])
    assert done.exit_code == 0, done.output
    result = pd.read_parquet(out)
    pd.testing.assert_frame_equal(result, pd.read_parquet(clean))
    assert NEW[0] in set(result["item_id"])


SCRIPT = BLOCKER + textwrap.dedent("""
    import pandas as pd
    from recmodels.cli import main
    bundle, folder = sys.argv[1], sys.argv[2]
    pd.DataFrame({"item_id": [9001], "0": [1.0], "1": [0.5], "2": [0.0], "3": [2.0]}).to_csv(
        folder + "/e.csv", index=False)
    pd.DataFrame({"user_id": [1000, 1007], "item_id": [9001, 5]}).to_csv(folder + "/in.csv", index=False)
    for command in (["score", bundle, folder + "/in.csv", folder + "/o.parquet"],
                    ["recommend", bundle, folder + "/r.parquet", "-k", "3"]):
        try:
            main([*command, "--device", "cpu", "-q", "--item-embeddings", folder + "/e.csv"])
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
    assert pd.read_parquet(folder + "/o.parquet")["known"].tolist() == [True, True]
    bad = [m for m in sys.modules if m.split(".")[0] in ("torch", "sklearn")]
    assert not bad, bad
    print("ok")
""")


def test_item_embeddings_are_torch_free(tmp_path):
    fb = make_bundle(tmp_path / "b", kind="hybrid", folded=True, prior=True, pretrained_dim=DIM)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(fb.path), str(tmp_path)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok")
