"""`recmodels.scoring.recommendation`: exact top-K against a numpy oracle, ties, lists, exclusions.

The oracle scores every (user, item) pair with the factory's float64 reference (never the folded
tables or a graph), masks the seen pairs and sorts stably; the recommender must return the same
items (near-ties, closer than float32 can tell apart, may swap), never a seen or excluded one,
K distinct items per user in descending score order.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bundle_factory import KINDS, make_bundle, make_weights

from recmodels.bundle import Bundle
from recmodels.encoders import IdEncoder
from recmodels.errors import BundleError, ConfigError, DataError
from recmodels.scoring import Recommender, SeenItems, recommend

N_USERS, N_ITEMS, K = 23, 150, 7
TILINGS = [dict(block_users=5, tile_items=64), dict()]  # several tiles + padding + merge; the defaults


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("recommend")
    return {
        (kind, folded): make_bundle(
            root / f"{kind}-{folded}", kind=kind, folded=folded, n_users=N_USERS, n_items=N_ITEMS, seed=3
        )
        for kind in KINDS
        for folded in (False, True)
    }


def seen_pairs(fb, n=600, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "user_id": fb.user_ids[rng.integers(0, len(fb.user_ids), n)],
            "item_id": fb.item_ids[rng.integers(0, len(fb.item_ids), n)],
        }
    )
    return frame


def oracle(fb, seen: pd.DataFrame | None, users=None, items=None):
    """Brute force: float64 scores of all pairs, seen ones at -inf; (scores [U, I], item columns)."""
    users = np.arange(len(fb.user_ids)) if users is None else users
    items = np.arange(len(fb.item_ids)) if items is None else items
    scores = fb.reference(np.repeat(users, items.size), np.tile(items, users.size)).reshape(users.size, -1)
    if seen is not None:
        ue, ie = IdEncoder.from_classes(fb.user_ids), IdEncoder.from_classes(fb.item_ids)
        su, si = ue.transform(seen["user_id"]), ie.transform(seen["item_id"])
        row = {u: r for r, u in enumerate(users)}
        col = {i: c for c, i in enumerate(items)}
        for u, i in zip(su, si, strict=True):
            if u in row and i in col:
                scores[row[u], col[i]] = -np.inf
    return scores, items


def assert_top_k(got: pd.DataFrame, fb, scores, items, users, k=K, tol=1e-5):
    """Each user's rows: ranks 1..n, distinct unseen items, descending, = the oracle's top-k."""
    ie = IdEncoder.from_classes(fb.item_ids)
    assert list(got.columns) == ["user_id", "rank", "item_id", "score"]
    assert got["score"].dtype == np.float32 and got["rank"].dtype == np.int32
    expected_users = fb.user_ids[users]
    assert got["user_id"].drop_duplicates().tolist() == list(expected_users)
    col = {i: c for c, i in enumerate(items)}
    for r, (uid, rows) in enumerate(got.groupby("user_id", sort=False)):
        row_scores = scores[r]
        available = int(np.isfinite(row_scores).sum())
        n = min(k, available)
        assert rows["rank"].tolist() == list(range(1, n + 1)), uid
        cols = np.array([col[i] for i in ie.transform(rows["item_id"])])
        assert np.unique(cols).size == n
        assert np.all(np.isfinite(row_scores[cols])), f"user {uid} got a seen or excluded item"
        np.testing.assert_allclose(rows["score"], row_scores[cols], atol=tol, rtol=0)
        assert np.all(np.diff(rows["score"].to_numpy()) <= 0)
        best = np.sort(row_scores)[::-1][:n]
        np.testing.assert_allclose(row_scores[cols], best, atol=tol, rtol=0)  # the top-k, up to near-ties
        order = np.argsort(-row_scores, kind="stable")[:n]
        gaps = np.abs(np.diff(np.sort(row_scores[np.isfinite(row_scores)])))
        if gaps.size and gaps.min() > 10 * tol:  # well separated: exactly the oracle's items
            assert cols.tolist() == order.tolist()


@pytest.mark.parametrize("tiling", TILINGS, ids=["tiles", "defaults"])
@pytest.mark.parametrize("folded", [False, True], ids=["unfolded", "folded"])
@pytest.mark.parametrize("kind", KINDS)
def test_equals_brute_force_top_k(bundles, kind, folded, tiling):
    fb = bundles[kind, folded]
    seen = seen_pairs(fb)
    got = recommend(fb.path, k=K, exclude_seen=seen, device="cpu", **tiling)
    scores, items = oracle(fb, seen)
    assert len(got) == N_USERS * K
    assert_top_k(got, fb, scores, items, np.arange(N_USERS))


@pytest.mark.parametrize("kind", KINDS)
def test_tiling_and_threads_do_not_change_the_output(bundles, kind):
    fb = bundles[kind, True]
    seen = seen_pairs(fb, seed=1)
    runs = [
        recommend(fb.path, k=K, exclude_seen=seen, device="cpu", threads=t, block_users=b, tile_items=m)
        for t, b, m in ((1, 1, 64), (2, 4, 128), (2, 64, 8192), (1, None, None))
    ]
    for other in runs[1:]:
        pd.testing.assert_frame_equal(runs[0], other)


@pytest.mark.parametrize("kind", KINDS)
def test_ties_go_to_the_lower_item_index(tmp_path, kind):
    """Every item scores the same for a user: the top-K are the K lowest unseen item indices."""
    w = make_weights(kind, 9, 140, seed=5)
    w["Q"][:] = w["Q"][0]
    if kind == "mf":
        w["bi"][:] = 0.25
    else:
        w["Mi"][:] = w["Mi"][0]
    if kind == "hybrid":
        w["E"][:] = w["E"][0]
    fb = make_bundle(tmp_path / "b", kind=kind, n_users=9, n_items=140, weights=w, folded=True)
    seen = pd.DataFrame({"user_id": fb.user_ids[[0, 0, 3]], "item_id": fb.item_ids[[0, 2, 1]]})
    for tiling in ({"tile_items": 64, "block_users": 2}, {}):
        got = recommend(fb.path, k=10, exclude_seen=seen, device="cpu", **tiling)
        first = IdEncoder.from_classes(fb.item_ids).transform(got["item_id"]).reshape(9, 10)
        assert first[0].tolist() == [1] + list(range(3, 12))
        assert first[3].tolist() == [0] + list(range(2, 11))
        assert all(row.tolist() == list(range(10)) for row in first[[1, 2, 4, 5, 6, 7, 8]])
        assert got.groupby("user_id")["score"].nunique().max() == 1  # really tied


def test_users_list_keeps_its_order_and_counts_unknown_ones(bundles, tmp_path):
    fb = bundles["neumf", True]
    seen = seen_pairs(fb)
    full = recommend(fb.path, k=K, exclude_seen=seen, device="cpu")
    pick = [7, 2, 19]
    path = tmp_path / "users.csv"
    pd.DataFrame({"reader": [fb.user_ids[7], 424242, fb.user_ids[2], fb.user_ids[19]]}).to_csv(
        path, index=False
    )
    rec = Recommender(fb.path, device="cpu")
    got = rec.recommend_frame(str(path), k=K, exclude_seen=seen)
    assert rec.last_report.unknown_users == 1 and rec.last_report.users_written == 3
    want = pd.concat([full[full["user_id"] == fb.user_ids[u]] for u in pick], ignore_index=True)
    pd.testing.assert_frame_equal(got, want)
    # ids in memory, any container
    pd.testing.assert_frame_equal(
        rec.recommend_frame(pd.Series(fb.user_ids[pick]), k=K, exclude_seen=seen), want
    )


def test_items_list_restricts_the_candidates(bundles, tmp_path):
    fb = bundles["hybrid", True]
    seen = seen_pairs(fb)
    items = np.array(sorted({5, 17, 3, 80, 81, 82, 120, 149, 64, 63, 9}))
    path = tmp_path / "items.parquet"
    ids = np.concatenate([fb.item_ids[items[::-1]], [999_999]])  # any order, one unknown id
    pq.write_table(pa.table({"item_id": ids}), path)
    rec = Recommender(fb.path, device="cpu", block_users=3, tile_items=64)
    got = rec.recommend_frame(k=5, items=str(path), exclude_seen=seen)
    assert rec.last_report.unknown_items == 1 and rec.last_report.candidate_items == items.size
    scores, cols = oracle(fb, seen, items=items)
    assert_top_k(got, fb, scores, cols, np.arange(N_USERS), k=5)


def test_a_user_who_has_seen_almost_everything_gets_fewer_rows(bundles):
    fb = bundles["mf", True]
    keep = {4, 90, 133}
    seen = pd.DataFrame(
        {"user_id": fb.user_ids[0], "item_id": [fb.item_ids[i] for i in range(N_ITEMS) if i not in keep]}
    )
    rec = Recommender(fb.path, device="cpu", tile_items=64)
    got = rec.recommend_frame(k=K, exclude_seen=seen)
    mine = got[got["user_id"] == fb.user_ids[0]]
    assert sorted(IdEncoder.from_classes(fb.item_ids).transform(mine["item_id"])) == sorted(keep)
    assert rec.last_report.users_short == 1 and len(got) == (N_USERS - 1) * K + 3


@pytest.mark.parametrize("kind", KINDS)
def test_whole_catalogue_graph_ranks_alike_and_serves_only_every_item_jobs(bundles, tmp_path, kind):
    """rank_all.onnx (MF exact, NeuMF/hybrid first stage) = the tiled graphs; a --items list or a
    bundle without it takes the tiled graph."""
    fb = bundles[kind, True]
    seen = seen_pairs(fb, seed=4)
    options = {} if kind == "mf" else {"candidates": 30}
    first = "recommend.onnx" if kind == "mf" else "retrieve.onnx"
    rec = Recommender(fb.path, device="cpu", **options)
    got = rec.recommend_frame(k=K, exclude_seen=seen)
    assert rec.last_report.graph == "rank_all.onnx"
    old = make_bundle(tmp_path / "old", kind=kind, folded=True, n_users=N_USERS, n_items=N_ITEMS, seed=3,
                      rank_all=False)
    assert Bundle.load(old.path).rank_all_model_path is None
    rec_old = Recommender(old.path, device="cpu", **options)
    want = rec_old.recommend_frame(k=K, exclude_seen=seen)
    assert rec_old.last_report.graph == first
    pd.testing.assert_frame_equal(got, want, check_exact=False, atol=1e-5)
    if kind == "mf":
        scores, items = oracle(fb, seen)
        assert_top_k(got, fb, scores, items, np.arange(N_USERS))
    some = np.arange(0, N_ITEMS, 3)
    rec.recommend_frame(k=K, exclude_seen=seen, items=fb.item_ids[some])
    assert rec.last_report.graph == first


def test_whole_catalogue_padding_is_never_recommended(tmp_path):
    """150 items pad to 192 in rank_all.onnx; asking for every item returns the 150 real ones."""
    fb = make_bundle(tmp_path / "b", kind="mf", n_users=4, n_items=150, seed=1)
    got = Recommender(fb.path, device="cpu").recommend_frame(k=150)
    assert len(got) == 4 * 150
    assert got.groupby("user_id")["item_id"].nunique().eq(150).all()
    assert set(got["item_id"]) == set(fb.item_ids) and np.isfinite(got["score"]).all()


def test_string_ids_keep_their_type(tmp_path):
    fb = make_bundle(tmp_path / "s", kind="neumf", id_kind="string", n_users=12, n_items=70)
    seen = pd.DataFrame({"user_id": ["u1", "u1", "nobody"], "item_id": ["i3", "i4", "i5"]})
    got = recommend(fb.path, tmp_path / "r.parquet", k=3, exclude_seen=seen, users=["u1", "u0"], device="cpu")
    table = pq.read_table(tmp_path / "r.parquet")
    assert got.rows_written == 6 and table.schema.field("user_id").type == pa.string()
    assert table.schema.field("item_id").type == pa.string()
    assert not {"i3", "i4"} & set(table.to_pandas().query("user_id == 'u1'")["item_id"])
    ints = make_bundle(tmp_path / "i", kind="mf", n_users=5, n_items=64)
    table = Recommender(ints.path, device="cpu").recommend_table(k=2)
    assert (
        table.schema.field("user_id").type == pa.int64() and table.schema.field("item_id").type == pa.int64()
    )


def test_exclude_seen_file_with_text_ids_and_other_columns(bundles, tmp_path):
    fb = bundles["mf", True]
    seen = seen_pairs(fb)
    path = tmp_path / "seen.csv"
    seen.rename(columns={"user_id": "reader", "item_id": "book"}).assign(rating=4).to_csv(path, index=False)
    want = recommend(fb.path, k=K, exclude_seen=seen, device="cpu")
    got = recommend(
        fb.path, k=K, exclude_seen=str(path), user_col="reader", item_col="book", device="cpu"
    )
    pd.testing.assert_frame_equal(got, want)
    with pytest.raises(DataError, match=r"missing exclude-seen column\(s\) 'user_id', 'item_id'.*--user-col"):
        recommend(fb.path, k=K, exclude_seen=str(path), device="cpu")


def test_two_stage_reranks_the_retrieved_candidates(bundles):
    fb = bundles["neumf", True]
    seen = seen_pairs(fb)
    exact = recommend(fb.path, k=K, exclude_seen=seen, device="cpu")
    everything = recommend(fb.path, k=K, exclude_seen=seen, device="cpu", candidates=N_ITEMS)
    pd.testing.assert_frame_equal(everything, exact, atol=1e-5, check_exact=False)
    few = recommend(fb.path, k=K, exclude_seen=seen, device="cpu", candidates=20)
    ue, ie = IdEncoder.from_classes(fb.user_ids), IdEncoder.from_classes(fb.item_ids)
    ref = fb.reference(ue.transform(few["user_id"]), ie.transform(few["item_id"]))
    np.testing.assert_allclose(few["score"], ref, atol=1e-5)  # re-ranked by the full model
    assert few.groupby("user_id")["score"].apply(lambda s: bool(np.all(np.diff(s) <= 0))).all()
    scores, _ = oracle(fb, seen)
    assert np.all(np.isfinite(scores[ue.transform(few["user_id"]), ie.transform(few["item_id"])]))
    with pytest.raises(ConfigError, match="--candidates needs a NeuMF or hybrid bundle"):
        Recommender(bundles["mf", True].path, candidates=10)


@pytest.mark.parametrize("bad", ["empty", "duplicated", "k0", "k_big", "unknown", "no_column"])
def test_bad_inputs_raise_one_line(bundles, tmp_path, bad):
    fb = bundles["mf", True]
    rec = Recommender(fb.path, device="cpu")
    users, k = None, K
    if bad == "empty":
        users = tmp_path / "u.csv"
        users.write_text("user_id\n")
    elif bad == "duplicated":
        users = [fb.user_ids[1], fb.user_ids[4], fb.user_ids[1]]
    elif bad in ("k0", "k_big"):
        k = 0 if bad == "k0" else N_ITEMS + 1
    elif bad == "unknown":
        users = [1, 2, 3, fb.user_ids[0]]
    else:
        users = tmp_path / "u.csv"
        pd.DataFrame({"a": [1], "b": [2]}).to_csv(users, index=False)
    match = {
        "empty": "user list is empty",
        "duplicated": r"user id 1007 is listed more than once \(data row 1 "
        r"and data row 3\)",
        "k0": "--top-k must be a positive integer",
        "k_big": "larger than the 150",
        "unknown": "3 of 4 rows .* over --max-unknown-share 0.5",
        "no_column": "cannot tell which column",
    }[bad]
    with pytest.raises((DataError, ConfigError)) as info:
        rec.recommend_table(str(users) if isinstance(users, Path) else users, k=k)
    assert "\n" not in str(info.value)
    assert re.search(match, str(info.value)), str(info.value)


def test_bundles_from_before_recommend_are_refused_in_one_line(tmp_path):
    old = Path(__file__).parent / "data" / "bundles" / "v1-neumf-folded-raw-ids"
    fb = make_bundle(tmp_path / "b", kind="mf", recommend=False)
    for path in (old, fb.path):
        with pytest.raises(BundleError) as info:
            Recommender(path)
        assert str(info.value) == (
            f"{path} was exported before recommend existed; re-export it with "
            "`recmodels export RUN --format onnx --out DIR`"
        )


def test_seen_items_csr():
    seen = SeenItems.from_indices([2, 0, 2, 2, 0], [5, 1, 5, 0, 1], n_users=4, n_items=6)
    assert seen.indptr.tolist() == [0, 1, 1, 3, 3] and seen.items.tolist() == [1, 0, 5]
    assert seen.items.dtype == np.int32 and seen.n_pairs == 3
    rows, items = seen.block(np.array([2, 1, 0]))
    assert rows.tolist() == [0, 0, 2] and items.tolist() == [0, 5, 1]
    assert seen.block(np.array([1, 3]))[1].size == 0
