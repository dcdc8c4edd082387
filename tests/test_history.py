"""Fold-in from recent history (issue 22, part 2): numpy solves, the scorer's --history, bad input, resume."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bundle_factory import make_bundle, prior_weights, reference_scores
from test_torch_free import BLOCKER

from recmodels.errors import BundleError, ConfigError, DataError
from recmodels.scoring import Scorer
from recmodels.scoring.history import gradient_solve, ridge_solve

REPO = Path(__file__).resolve().parents[1]
N_USERS, N_ITEMS = 50, 300
EXACT = {"valid": {"mse": 1e-4}}  # a small noise: empirical precisions that barely shrink


def _train_rows(seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, N_USERS, 3000), rng.integers(0, N_ITEMS, 3000)


@pytest.fixture(scope="module")
def mf(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("mf") / "b", kind="mf", folded=True, prior=True,
                       n_users=N_USERS, n_items=N_ITEMS, metrics=EXACT, train_rows=_train_rows(),
                       rating_range=(-10.0, 10.0))


@pytest.fixture(scope="module")
def neumf(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("neumf") / "b", kind="neumf", folded=True, prior=True,
                       n_users=N_USERS, n_items=N_ITEMS, train_rows=_train_rows(), rating_range=(-10.0, 10.0))


def _quiet_scorer(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Scorer(path, device="cpu", max_unknown_share=1.0, **kw)


def _score(scorer, users, items):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return scorer.score_arrays(np.asarray(users), np.asarray(items))[0]


# -- the solves ----------------------------------------------------------------------------------
def test_ridge_solve_matches_per_owner_normal_equations():
    rng = np.random.default_rng(0)
    owner = rng.integers(0, 30, 500)
    x, y = rng.normal(size=(500, 4)), rng.normal(size=500)
    prec = np.array([1.0, 2.0, 0.5, 3.0, 0.1])
    counts = rng.integers(0, 20, 30).astype(float)
    moment = np.eye(5) * 0.3
    got = ridge_solve(owner, x, y, prec, 30, counts=counts, moment=moment)
    for o in range(30):
        xo = np.c_[x[owner == o], np.ones((owner == o).sum())]
        want = np.linalg.solve(xo.T @ xo + np.diag(prec) + counts[o] * moment, xo.T @ y[owner == o])
        np.testing.assert_allclose(got[o], want, atol=1e-10)
    near = gradient_solve(owner, x, y, prec, 30, steps=2000, counts=counts, moment=moment)
    np.testing.assert_allclose(near, got, atol=1e-4)


@pytest.mark.parametrize("weighted", [False, True])
def test_ridge_solve_with_fewer_ratings_than_coefficients(weighted):
    """Owners with 1..5 ratings and 9 coefficients: the dual form (no training weight) or the
    normal equations (a training weight) give the per-owner normal equations' solution."""
    rng = np.random.default_rng(2)
    owner = np.repeat(np.arange(40), rng.integers(1, 6, 40))
    x, y = rng.normal(size=(owner.size, 8)), rng.normal(size=owner.size)
    prec = rng.uniform(0.1, 5.0, 9)
    counts = np.where(np.arange(40) % 3 == 0, 7.0, 0.0) if weighted else None
    moment = np.eye(9) * 0.2 + 0.05 if weighted else None
    got = ridge_solve(owner, x, y, prec, 40, counts=counts, moment=moment)
    for o in range(40):
        xo = np.c_[x[owner == o], np.ones((owner == o).sum())]
        lhs = xo.T @ xo + np.diag(prec) + (counts[o] * moment if weighted else 0)
        np.testing.assert_allclose(got[o], np.linalg.solve(lhs, xo.T @ y[owner == o]), atol=1e-10)


def test_ridge_solve_in_blocks_equals_one_block(monkeypatch):
    from recmodels.scoring.history import solve

    rng = np.random.default_rng(1)
    owner = np.repeat(np.arange(200), rng.integers(1, 9, 200))
    x, y = rng.normal(size=(owner.size, 3)), rng.normal(size=owner.size)
    whole = ridge_solve(owner, x, y, [1.0] * 4, 200)
    monkeypatch.setattr(solve, "BLOCK_BYTES", 8 * 16 * 10)  # 10 rows a block
    np.testing.assert_allclose(ridge_solve(owner, x, y, [1.0] * 4, 200), whole, atol=1e-12)


# -- a planted user -----------------------------------------------------------------------------
def test_fold_in_recovers_a_planted_user(mf):
    """Ratings made by a known vector and bias: the folded-in row approaches them as k grows."""
    w = prior_weights(mf.weights)
    rng = np.random.default_rng(3)
    p_true, b_true = rng.normal(0, 0.3, w["P"].shape[1]), 0.4
    order = rng.permutation(N_ITEMS)
    errors = []
    for k in (2, 8, 32, 128):
        items = order[:k]
        ratings = w["Q"][items] @ p_true + w["bi"][items] + b_true + w["mu"][0]
        history = pd.DataFrame({"user_id": 1, "item_id": mf.item_ids[items], "rating": ratings})
        scorer = _quiet_scorer(mf.path, history=history)
        assert scorer.fold.stats["users_folded_in"] == 1
        delta = scorer.fold.users.delta[0]
        p_hat = w["P"][N_USERS] + delta[:-1]
        errors.append(np.linalg.norm(p_hat - p_true) + abs(w["bu"][N_USERS] + delta[-1] - b_true))
        test = order[200:]
        want = w["Q"][test] @ p_true + w["bi"][test] + b_true + w["mu"][0]
        got = _score(scorer, np.full(test.size, 1), mf.item_ids[test])
        if k == 128:
            np.testing.assert_allclose(got, want, atol=0.05)
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.1 * errors[0], errors


def test_known_user_unchanged_by_an_empty_history(neumf):
    users, items = np.repeat(neumf.user_ids[:4], 5), np.tile(neumf.item_ids[:5], 4)
    plain = _score(_quiet_scorer(neumf.path), users, items)
    empty = pd.DataFrame({"user_id": pd.Series([], dtype="int64"), "item_id": pd.Series([], dtype="int64"),
                          "rating": pd.Series([], dtype="float64")})
    scorer = _quiet_scorer(neumf.path, history=empty)
    np.testing.assert_array_equal(_score(scorer, users, items), plain)
    assert scorer.fold.stats["users_updated"] == 0 and scorer.fold.stats["history_rows"] == 0


def test_onnx_path_equals_numpy_reference_for_folded_in_rows(neumf):
    """New user, new item, a known user updated; the reference extends the raw weights."""
    new_user, new_item, known = 7, 99999, neumf.user_ids[3]
    history = pd.DataFrame({
        "user_id": [new_user] * 6 + [known] * 3 + list(neumf.user_ids[:4]),
        "item_id": list(neumf.item_ids[:6]) + list(neumf.item_ids[10:13]) + [new_item] * 4,
        "rating": [1.0, 2.0, 5.0, 3.0, 4.0, 2.5, 4.0, 1.0, 3.0, 5.0, 4.0, 1.0, 2.0],
    })
    scorer = _quiet_scorer(neumf.path, history=history)
    fold = scorer.fold
    stats = fold.stats
    assert (stats["users_folded_in"], stats["items_folded_in"], stats["users_updated"]) == (1, 1, 1)
    w = prior_weights(neumf.weights)
    rank = w["P"].shape[1]
    gmf_w = w["Wo"][:rank, 0].astype(np.float64)
    du = fold.users.delta[fold.users.slot[N_USERS + 1]]
    dk = fold.users.delta[fold.users.slot[3]]
    di = fold.items.delta[fold.items.slot[N_ITEMS + 1]]
    ext = dict(w)  # rows: N_USERS + 1 the new user, N_ITEMS + 1 the new item
    ext["P"] = np.vstack([w["P"], w["P"][N_USERS] + du[:rank] / gmf_w])
    ext["Mu"] = np.vstack([w["Mu"], w["Mu"][N_USERS]])
    ext["P"][3] = w["P"][3] + dk[:rank] / gmf_w
    ext["Q"] = np.vstack([w["Q"], w["Q"][N_ITEMS] + di[:rank]])
    ext["Mi"] = np.vstack([w["Mi"], w["Mi"][N_ITEMS]])
    users = np.array([N_USERS + 1] * 3 + [3, 3, 0, N_USERS + 1])
    items = np.array([20, 21, N_ITEMS + 1, 20, N_ITEMS + 1, N_ITEMS + 1, 22])
    want = reference_scores(ext, "neumf", users, items)
    want += np.where(users == N_USERS + 1, du[-1], 0) + np.where(users == 3, dk[-1], 0)
    want += np.where(items == N_ITEMS + 1, di[-1], 0)
    ids_u = np.where(users == N_USERS + 1, new_user, neumf.user_ids[np.minimum(users, N_USERS - 1)])
    ids_i = np.where(items == N_ITEMS + 1, new_item, neumf.item_ids[np.minimum(items, N_ITEMS - 1)])
    np.testing.assert_allclose(_score(scorer, ids_u, ids_i), want, atol=2e-5)


def test_update_known_off_and_min_ratings(neumf):
    history = pd.DataFrame({"user_id": [neumf.user_ids[0], 7, 8, 8], "item_id": list(neumf.item_ids[:4]),
                            "rating": [4.0, 3.0, 2.0, 5.0]})
    stats = _quiet_scorer(neumf.path, history=history, history_update_known=False,
                          history_min_ratings=2).fold.stats
    assert (stats["users_updated"], stats["users_folded_in"], stats["users_too_few"]) == (0, 1, 1)
    plain = _score(_quiet_scorer(neumf.path), [7], neumf.item_ids[:1])
    scorer = _quiet_scorer(neumf.path, history=history, history_min_ratings=2)
    assert _score(scorer, [7], neumf.item_ids[:1]) == plain  # user 7 keeps the prior row


# -- bad input -------------------------------------------------------------------------------------
def test_bad_history_is_one_line(neumf, tmp_path):
    good = {"user_id": [1, 2], "item_id": list(neumf.item_ids[:2]), "rating": [3.0, 4.0]}
    cases = [
        ({**good, "rating": [3.0, 11.0]}, "row 2: rating 11 is outside the bundle's rating range"),
        ({**good, "rating": [3.0, None]}, "row 2: rating ('rating') is missing"),
        ({**good, "user_id": [1, None]}, "row 2: user id ('user_id') is null"),
        ({"user_id": [1], "item_id": [5], "stars": [3.0]}, "no column 'rating'"),
    ]
    for frame, message in cases:
        with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
            _quiet_scorer(neumf.path, history=pd.DataFrame(frame))
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="at least 1"):
        _quiet_scorer(neumf.path, history=pd.DataFrame(good), history_min_ratings=0)


def test_duplicates_last_wins_and_are_counted(neumf):
    history = pd.DataFrame({"user_id": [7, 7, 7], "item_id": [neumf.item_ids[0]] * 2 + [neumf.item_ids[1]],
                            "rating": [1.0, 5.0, 4.0]})
    once = history.iloc[1:]
    a, b = _quiet_scorer(neumf.path, history=history), _quiet_scorer(neumf.path, history=once)
    assert a.fold.stats["duplicates"] == 1
    np.testing.assert_array_equal(a.fold.users.delta, b.fold.users.delta)


def test_history_on_an_old_bundle_says_re_export(tmp_path):
    old = make_bundle(tmp_path / "old", kind="mf")
    with pytest.raises(BundleError, match="re-export it with `recmodels export` to use --history"):
        _quiet_scorer(old.path, history=pd.DataFrame({"user_id": [1], "item_id": [5], "rating": [3.0]}))


# -- the CLI: resume, torch-free -------------------------------------------------------------------
CLI = [sys.executable, "-m", "recmodels", "score"]


def test_resume_with_history_equals_a_clean_run(neumf, tmp_path):
    rng = np.random.default_rng(5)
    pairs = pd.DataFrame({"user_id": rng.choice(np.r_[neumf.user_ids, [7, 8]], 400),
                          "item_id": rng.choice(neumf.item_ids, 400)})
    pairs.to_parquet(tmp_path / "in.parquet")
    history = pd.DataFrame({"user_id": [7, 7, 8, neumf.user_ids[0]], "item_id": list(neumf.item_ids[:4]),
                            "rating": [4.0, 3.0, 2.0, 5.0]})
    history.to_csv(tmp_path / "h.csv", index=False)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    opts = ["--device", "cpu", "--part-rows", "50", "--batch-size", "25", "-q", "--history",
            str(tmp_path / "h.csv"), "--max-unknown-share", "1"]
    clean, out = tmp_path / "clean", tmp_path / "out"
    args = [str(neumf.path), str(tmp_path / "in.parquet")]
    subprocess.run(CLI + args + [str(clean)] + opts, check=True, env=env, timeout=120)
    subprocess.run(CLI + args + [str(out)] + opts, check=True, env=env, timeout=120)
    parts = sorted(out.glob("part-*"))
    for part in parts[4:]:  # as if killed after four parts
        part.unlink()
    (out / "_SUCCESS").unlink()
    history.assign(rating=[1.0, 3.0, 2.0, 5.0]).to_csv(tmp_path / "h2.csv", index=False)
    other = [o if o != str(tmp_path / "h.csv") else str(tmp_path / "h2.csv") for o in opts]
    refused = subprocess.run(CLI + args + [str(out), "--resume"] + other, env=env, capture_output=True,
                             text=True)
    assert refused.returncode == 1
    subprocess.run(CLI + args + [str(out), "--resume"] + opts, check=True, env=env, timeout=120)
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(clean))
    plain = tmp_path / "plain.parquet"
    subprocess.run(CLI + args + [str(plain)] + opts[:6] + ["--max-unknown-share", "1"], check=True, env=env)
    assert not np.array_equal(pd.read_parquet(plain)["score"], pd.read_parquet(clean)["score"])


SCRIPT = BLOCKER + textwrap.dedent("""
    import pandas as pd
    from recmodels.cli import main
    bundle, folder = sys.argv[1], sys.argv[2]
    history = pd.DataFrame({"user_id": [7, 7], "item_id": [5, 8], "rating": [4.0, 2.0]})
    history.to_csv(folder + "/h.csv", index=False)
    pd.DataFrame({"user_id": [7, 1000], "item_id": [11, 5]}).to_csv(folder + "/in.csv", index=False)
    try:
        main(["score", bundle, folder + "/in.csv", folder + "/o.parquet", "--device", "cpu", "-q",
              "--history", folder + "/h.csv", "--max-unknown-share", "1"])
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code
    assert pd.read_parquet(folder + "/o.parquet")["known"].tolist() == [True, True]
    bad = [m for m in sys.modules if m.split(".")[0] in ("torch", "sklearn")]
    assert not bad, bad
    print("ok")
""")


def test_history_is_torch_free(tmp_path):
    fb = make_bundle(tmp_path / "b", kind="neumf", folded=True, prior=True)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(fb.path), str(tmp_path)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok")
