"""The prior-aware fallback (issue 22, part 1): one unknown side is scored with the other side's prior row."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bundle_factory import make_bundle

from recmodels.bundle import Bundle
from recmodels.errors import BundleError
from recmodels.export.parity import cpu_session, run_pairs
from recmodels.scoring import Scorer

DATA = Path(__file__).parent / "data" / "bundles"


@pytest.fixture(scope="module", params=["mf", "neumf", "hybrid"])
def bundles(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    kind = request.param
    rng = np.random.default_rng(1)
    train = (rng.integers(0, 50, 400), rng.integers(0, 40, 400))
    new = make_bundle(root / "new", kind=kind, folded=kind != "hybrid", prior=True, embed_encoders=True,
                      train_rows=train)
    old = make_bundle(root / "old", kind=kind, folded=kind != "hybrid")
    return new, old


def _pairs(fb):
    users = np.concatenate([fb.user_ids[:5], [1, 2, 3, 4], fb.user_ids[5:8]])
    items = np.concatenate([fb.item_ids[:5], fb.item_ids[10:14], [7777, 7778, 7779]])
    users = np.concatenate([users, [9, 10]])
    items = np.concatenate([items, [7777, 7780]])  # both unknown
    return users, items


def _score(path, users, items):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Scorer(path, device="cpu").score_arrays(users, items)


def test_one_unknown_side_gets_the_prior_row(bundles):
    new, _ = bundles
    users, items = _pairs(new)
    scores, known = _score(new.path, users, items)
    expected, expected_known = new.reference_ids(users, items)
    np.testing.assert_array_equal(known, expected_known)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    # the pairs with one unknown side are model scores, not the fallback; both unknown: the fallback
    assert np.all(scores[5:12] != np.float32(new.fallback_score))
    np.testing.assert_array_equal(scores[12:], np.float32(new.fallback_score))


def test_prior_row_is_the_average_user(bundles):
    """For a GMF+bias model the prior user's score is the mean over trained users' scores."""
    new, _ = bundles
    if new.kind != "mf":
        pytest.skip("exact only for a model linear in the user row")
    items = np.arange(len(new.item_ids))
    per_user = np.stack([new.reference(np.full(items.size, u), items) for u in range(len(new.user_ids))])
    prior = new.reference(np.full(items.size, len(new.user_ids)), items)
    np.testing.assert_allclose(prior, per_user.mean(axis=0), atol=1e-9)


def test_known_scores_unchanged_by_the_prior_rows(bundles):
    new, old = bundles
    users, items = new.user_ids[:5], new.item_ids[:5]
    np.testing.assert_array_equal(_score(new.path, users, items)[0], _score(old.path, users, items)[0])


def test_old_bundle_keeps_the_training_mean(bundles):
    _, old = bundles
    users, items = _pairs(old)
    scores, known = _score(old.path, users, items)
    np.testing.assert_array_equal(scores[~known], np.float32(old.fallback_score))


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.iterdir() if p.is_dir()))
def test_stored_old_bundles_still_score(name):
    path = DATA / name
    expected = json.loads((DATA / f"{name}.expected.json").read_text())
    bundle = Bundle.load(path)
    assert bundle.prior is None
    frame = pd.DataFrame({"user_id": expected["user_id"], "item_id": expected["item_id"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = Scorer(path, device="cpu", user_col="user_id", item_col="item_id").score_frame(frame)
    np.testing.assert_array_equal(got["known"], expected["known"])
    known = np.asarray(expected["known"])
    want = np.array([np.nan if v is None else v for v in expected["score"]], dtype=np.float64)
    np.testing.assert_allclose(got["score"][known], want[known], atol=1e-6)
    np.testing.assert_array_equal(got["score"][~known], np.float32(bundle.fallback_score))


def test_unknown_share_warning_says_what_the_rows_got(bundles):
    """Over the guard, the in-memory warning says which rows got the training mean."""
    new, old = bundles
    users, items = _pairs(new)  # 9 of 14 rows have an unknown id, 2 of them both
    with pytest.warns(UserWarning, match=r"9 of 14 rows .* \(2 with both unknown got the fallback "
                                         r"3\.25, the others the prior row's score\)"):
        Scorer(new.path, device="cpu").score_arrays(users, items)
    with pytest.warns(UserWarning, match=r"9 of 14 rows have ids the bundle does not know and got the "
                                         r"fallback 3\.25;"):
        Scorer(old.path, device="cpu").score_arrays(users, items)


def test_counts_and_report_separate_the_sides(bundles, tmp_path):
    new, _ = bundles
    users, items = _pairs(new)
    frame = pd.DataFrame({"user_id": users, "item_id": items})
    frame.to_parquet(tmp_path / "in.parquet")
    scorer = Scorer(new.path, device="cpu", max_unknown_share=1.0)
    report = scorer.score_file(tmp_path / "in.parquet", tmp_path / "out.parquet")
    assert (report.unknown_users, report.unknown_items, report.unknown_both) == (6, 5, 2)
    assert "4 user only, 3 item only, 2 both" in report.summary()


def test_raw_id_graph_uses_the_prior_rows(bundles):
    new, _ = bundles
    users, items = _pairs(new)
    session = cpu_session(Bundle.load(new.path).raw_ids_model_path)
    score, known = session.run(["score", "known"], {"user_id": users.astype(np.int64),
                                                    "item_id": items.astype(np.int64)})
    expected, expected_known = new.reference_ids(users, items)
    np.testing.assert_array_equal(known, expected_known)
    np.testing.assert_allclose(score, expected, atol=1e-5)


def test_manifest_records_the_prior_and_verifies_the_arrays(bundles, tmp_path):
    new, _ = bundles
    bundle = Bundle.load(new.path)
    prior = bundle.manifest.prior
    assert (prior.user_row, prior.item_row) == (len(new.user_ids), len(new.item_ids))
    assert prior.max_abs_diff < 1e-5
    roles = {"user_vectors", "item_vectors", "user_counts", "item_counts"}
    content = {"item_content"} if new.kind == "hybrid" else set()  # new items from their vectors
    assert set(prior.fold_in.files) == roles | content
    assert len(prior.fold_in.user_precision) == prior.fold_in.rank + 1
    session = cpu_session(bundle.model_path)
    rows = np.array([prior.user_row], dtype=np.int64), np.array([prior.item_row], dtype=np.int64)
    got = run_pairs(session, *rows, 1)
    np.testing.assert_allclose(got, new.reference(np.array([prior.user_row]), np.array([prior.item_row])),
                               atol=1e-5)
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(new.path, copy)
    name = prior.fold_in.files["item_vectors"]
    array = np.load(copy / name)
    array[0, 0] += 1.0
    np.save(copy / name, array)
    with pytest.raises(BundleError, match="sha256 mismatch"):
        Bundle.load(copy)
