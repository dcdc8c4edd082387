"""``recommend --history`` (issue 22): folded-in users ranked exactly, seen pairs, resume, torch-free."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bundle_factory import make_bundle, prior_weights, reference_scores
from click.testing import CliRunner
from test_torch_free import BLOCKER

from recmodels.cli import cli
from recmodels.errors import BundleError
from recmodels.scoring import Scorer
from recmodels.scoring.history.rank import top_positions
from recmodels.scoring.recommendation.recommender import Recommender

REPO = Path(__file__).resolve().parents[1]
N_USERS, N_ITEMS = 40, 120
NEW = [7, 8, 9]  # user ids the bundle does not know (its ids are 1000 + 7k)


def _bundle(root, kind):
    rng = np.random.default_rng(1)
    train = rng.integers(0, N_USERS, 2000), rng.integers(0, N_ITEMS, 2000)
    return make_bundle(root / kind, kind=kind, folded=True, prior=True, n_users=N_USERS, n_items=N_ITEMS,
                       train_rows=train, rating_range=(-10.0, 10.0))


@pytest.fixture(scope="module", params=["mf", "neumf"])
def fb(request, tmp_path_factory):
    return _bundle(tmp_path_factory.mktemp("b"), request.param)


def _history(fb, seed=2):
    """New users 7 (12 ratings), 8 (3), 9 (1) and two known users with 6 ratings each."""
    rng = np.random.default_rng(seed)
    users = [7] * 12 + [8] * 3 + [9] + [fb.user_ids[0]] * 6 + [fb.user_ids[3]] * 6
    items = np.concatenate([rng.choice(fb.item_ids, n, replace=False) for n in (12, 3, 1, 6, 6)])
    return pd.DataFrame({"user_id": users, "item_id": items, "rating": rng.uniform(-2, 8, len(users))})


def _seen(fb):
    """Training-like pairs to exclude: a few per known user, and one for new user 7."""
    return pd.DataFrame({"user_id": list(np.repeat(fb.user_ids[:5], 4)) + [7],
                         "item_id": list(fb.item_ids[10:30]) + [fb.item_ids[99]]})


def _recommend(fb, users, k, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        options = {o: kw.pop(o) for o in ("history", "history_update_known", "candidates") if o in kw}
        rec = Recommender(fb.path, device="cpu", **options)
        try:
            return rec.recommend_frame(users, k=k, max_unknown_share=1.0, **kw), rec
        finally:
            rec.close()


def _oracle(fb, user_id, k, history, seen, *, update_known=True):
    """Brute force: every item's score from the raw weights plus the fold-in's change, seen items out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fold = Scorer(fb.path, device="cpu", history=history, history_update_known=update_known,
                      max_unknown_share=1.0).fold
    w = prior_weights(fb.weights)
    items = np.arange(N_ITEMS)
    known = np.flatnonzero(fb.user_ids == user_id)
    row = known[0] if known.size else N_USERS
    scores = reference_scores(w, fb.kind, np.full(N_ITEMS, row), items)
    ext = np.array([row if known.size else N_USERS + 1 + fold.users.new_ids.transform([user_id])[0]])
    if fold.users.folded(ext)[0]:
        d = fold.users.delta[fold.users.slot[ext[0]]]
        scores = scores + w["Q"][:N_ITEMS] @ d[:-1] + d[-1]
    out = [*history.loc[history["user_id"] == user_id, "item_id"],
           *seen.loc[seen["user_id"] == user_id, "item_id"]]
    allowed = ~np.isin(fb.item_ids, out)
    order = np.lexsort((items, -scores))
    order = order[allowed[order]][:k]
    return fb.item_ids[order], scores[order]


def test_top_positions_ties_go_to_the_lower_column():
    scores = np.array([[1, 3, 3, 2, 3, -np.inf], [0, 0, 0, 0, 0, 0], [-np.inf] * 6], dtype=np.float32)
    cols, values = top_positions(scores, 2)
    assert cols.tolist() == [[1, 2], [0, 1], [0, 1]]
    assert values[:2].tolist() == [[3, 3], [0, 0]] and np.isneginf(values[2]).all()
    rng = np.random.default_rng(0)
    many = rng.integers(0, 5, (50, 40)).astype(np.float32)  # many ties
    cols, values = top_positions(many, 7)
    want = np.lexsort((np.broadcast_to(np.arange(40), many.shape), -many), axis=-1)[:, :7]
    np.testing.assert_array_equal(cols, want)


def test_folded_users_top_k_equals_the_brute_force_oracle(fb):
    history, seen = _history(fb), _seen(fb)
    users = [7, 8, 9, fb.user_ids[0], fb.user_ids[1], fb.user_ids[3], 12345]
    got, rec = _recommend(fb, users, 8, history=history, exclude_seen=seen)
    assert list(dict.fromkeys(got["user_id"])) == users[:-1]  # 12345: unknown, no history
    for user in users[:-1]:
        mine = got[got["user_id"] == user]
        items, scores = _oracle(fb, user, 8, history, seen)
        assert mine["rank"].tolist() == list(range(1, 9))
        np.testing.assert_array_equal(mine["item_id"].to_numpy(), items, err_msg=str(user))
        np.testing.assert_allclose(mine["score"].to_numpy(), scores, atol=2e-5, rtol=0)
    report = rec.last_report
    assert report.history["users_folded_in"] == 3 and report.history["users_updated"] == 2
    assert "3 new users folded in, 2 known users updated" in report.summary()


def test_exclude_seen_never_returns_a_history_item(fb):
    history, seen = _history(fb), _seen(fb)
    k = N_ITEMS - 12  # every item left to user 7 but its 12 history items and one seen item (13)
    got, _ = _recommend(fb, [7, fb.user_ids[0]], k, history=history, exclude_seen=seen)
    for user in (7, fb.user_ids[0]):
        theirs = set(got.loc[got["user_id"] == user, "item_id"])
        rated = set(history.loc[history["user_id"] == user, "item_id"])
        assert not theirs & rated and not theirs & set(seen.loc[seen["user_id"] == user, "item_id"])
    assert (got["user_id"] == 7).sum() == N_ITEMS - 13
    # without --exclude-seen the history items may be recommended (they are not excluded)
    plain, _ = _recommend(fb, [7], N_ITEMS, history=history)
    assert set(history.loc[history["user_id"] == 7, "item_id"]) <= set(plain["item_id"])


def test_candidate_list_with_history(fb):
    """``--items``: a folded user's top-K over the listed items only, seen ones left out."""
    history, seen = _history(fb), _seen(fb)
    listed = fb.item_ids[::3]
    got, _ = _recommend(fb, [7, fb.user_ids[0]], 6, history=history, exclude_seen=seen, items=listed)
    for user in (7, fb.user_ids[0]):
        items, _ = _oracle(fb, user, N_ITEMS, history, seen)
        want = [i for i in items if i in set(listed)][:6]
        np.testing.assert_array_equal(got.loc[got["user_id"] == user, "item_id"], want)


def test_every_user_by_default_then_the_folded_in_ones(fb):
    history = _history(fb)
    got, _ = _recommend(fb, None, 3, history=history)
    order = list(dict.fromkeys(got["user_id"]))
    assert order == list(fb.user_ids) + NEW


def test_known_users_kept_without_update_and_unchanged_by_others_history(fb):
    history = _history(fb)
    users = list(fb.user_ids[:5])
    plain, _ = _recommend(fb, users, 6)
    kept, rec = _recommend(fb, users, 6, history=history, history_update_known=False)
    pd.testing.assert_frame_equal(kept, plain)
    assert rec.last_report.history["users_updated"] == 0
    updated, _ = _recommend(fb, users, 6, history=history)
    untouched = ~updated["user_id"].isin([fb.user_ids[0], fb.user_ids[3]])
    pd.testing.assert_frame_equal(updated[untouched].reset_index(drop=True),
                                  plain[untouched.to_numpy()].reset_index(drop=True))
    changed = updated[~untouched]
    items, _ = _oracle(fb, fb.user_ids[0], 6, history, pd.DataFrame({"user_id": [], "item_id": []}))
    np.testing.assert_array_equal(changed.loc[changed["user_id"] == fb.user_ids[0], "item_id"], items)


def test_two_stage_ranks_folded_users_exactly(tmp_path):
    fb = _bundle(tmp_path, "neumf")
    history, seen = _history(fb), _seen(fb)
    got, _ = _recommend(fb, [7, 8], 5, history=history, exclude_seen=seen, candidates=20)
    for user in (7, 8):
        items, _ = _oracle(fb, user, 5, history, seen)
        np.testing.assert_array_equal(got.loc[got["user_id"] == user, "item_id"], items)


def test_old_bundle_refused_with_one_line(tmp_path):
    old = make_bundle(tmp_path / "old", kind="mf")
    with pytest.raises(BundleError, match="re-export") as info:
        Recommender(old.path, device="cpu", history=pd.DataFrame({"user_id": [7], "item_id": [5],
                                                                   "rating": [3.0]}))
    assert "\n" not in str(info.value)


# -- the CLI: kill and resume, torch-free ------------------------------------------------------------
CLI = [sys.executable, "-m", "recmodels", "recommend"]
SLOW_PARTS = textwrap.dedent("""
    import sys, time
    from recmodels.cli import main
    from recmodels.scoring.output.writers import PartsOutput
    end_part = PartsOutput.end_part
    def slow_end_part(self, *args, **kwargs):
        end_part(self, *args, **kwargs)
        time.sleep(0.2)
    PartsOutput.end_part = slow_end_part
    sys.exit(main(sys.argv[1:]))
""")


def test_cli_kill_and_resume_with_history_equals_a_clean_run(tmp_path):
    fb = _bundle(tmp_path, "mf")
    _history(fb).to_csv(tmp_path / "h.csv", index=False)
    _seen(fb).to_parquet(tmp_path / "seen.parquet")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    opts = ["-k", "5", "--part-users", "2", "--device", "cpu", "-q", "--history", str(tmp_path / "h.csv"),
            "--exclude-seen", str(tmp_path / "seen.parquet")]
    clean, out = tmp_path / "clean", tmp_path / "out"
    shown = CliRunner().invoke(cli, ["recommend", str(fb.path), str(clean), *[o for o in opts if o != "-q"]])
    assert shown.exit_code == 0, shown.output
    assert "history: 3 new users folded in, 2 known users updated" in shown.output
    slow = [sys.executable, "-c", SLOW_PARTS, "recommend"]
    proc = subprocess.Popen(slow + [str(fb.path), str(out), *opts], env=env)
    deadline = time.monotonic() + 60
    while len(list(out.glob("part-*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 4 <= len(list(out.glob("part-*"))) < 22 and not (out / "_SUCCESS").exists()
    other = _history(fb, seed=3)
    other.to_csv(tmp_path / "h2.csv", index=False)
    changed = [str(tmp_path / "h2.csv") if o == str(tmp_path / "h.csv") else o for o in opts]
    refused = subprocess.run(CLI + [str(fb.path), str(out), "--resume", *changed], env=env,
                             capture_output=True, text=True)
    assert refused.returncode == 1 and "different" in refused.stderr, refused.stderr
    subprocess.run(CLI + [str(fb.path), str(out), "--resume", *opts], check=True, env=env, timeout=120)
    result = pd.read_parquet(out)
    pd.testing.assert_frame_equal(result, pd.read_parquet(clean))
    assert list(dict.fromkeys(result["user_id"]))[-3:] == NEW


def test_cli_history_on_an_engine_gives_the_local_rows(tmp_path):
    """Refused on the engines until they folded in (issue 22); now the same file as locally."""
    pytest.importorskip("distributed")
    fb = _bundle(tmp_path, "mf")
    _history(fb).to_csv(tmp_path / "h.csv", index=False)
    options = ["-k", "3", "--device", "cpu", "--history", str(tmp_path / "h.csv")]
    for out, engine in (("e.parquet", ["--engine", "dask"]), ("o.parquet", [])):
        res = CliRunner().invoke(cli, ["recommend", str(fb.path), str(tmp_path / out), *options, *engine])
        assert res.exit_code == 0, res.output
    assert pd.read_parquet(tmp_path / "e.parquet").equals(pd.read_parquet(tmp_path / "o.parquet"))


SCRIPT = BLOCKER + textwrap.dedent("""
    import pandas as pd
    from recmodels.cli import main
    bundle, folder = sys.argv[1], sys.argv[2]
    pd.DataFrame({"user_id": [7, 7], "item_id": [5, 8], "rating": [4.0, 2.0]}).to_csv(folder + "/h.csv",
                                                                                     index=False)
    try:
        main(["recommend", bundle, folder + "/o.parquet", "--device", "cpu", "-q", "-k", "3",
              "--history", folder + "/h.csv", "--exclude-seen", folder + "/h.csv"])
    except SystemExit as exc:
        assert exc.code in (0, None), exc.code
    got = pd.read_parquet(folder + "/o.parquet")
    mine = got[got["user_id"] == 7]
    assert len(mine) == 3 and not {5, 8} & set(mine["item_id"]), mine
    bad = [m for m in sys.modules if m.split(".")[0] in ("torch", "sklearn")]
    assert not bad, bad
    print("ok")
""")


def test_recommend_history_is_torch_free(tmp_path):
    fb = make_bundle(tmp_path / "b", kind="neumf", folded=True, prior=True)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(fb.path), str(tmp_path)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok")
