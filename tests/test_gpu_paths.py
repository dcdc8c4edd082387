"""The CUDA paths: what can be checked everywhere, and what needs a GPU (marked ``gpu``)."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pandas as pd
import pytest
from bundle_factory import make_bundle
from click.testing import CliRunner
from conftest import cuda_available

from recmodels.cli import cli
from recmodels.datasets import make_ratings
from recmodels.errors import DeviceError
from recmodels.metrics import rmse
from recmodels.scoring import Scorer


@pytest.mark.parametrize("policy", ["fallback", "skip"])
def test_unknown_and_null_ids_never_reach_the_graph(tmp_path, monkeypatch, policy):
    """Every index handed to onnxruntime is in range, whatever the input holds.

    On CUDA an out-of-range Gather index reads garbage instead of failing, so the guard must
    be in recmodels, before the session; this spy checks it on any provider.
    """
    fb = make_bundle(tmp_path / "b", kind="neumf", folded=True, n_users=30, n_items=20)
    seen = []
    original = onnxruntime.InferenceSession.run

    def spy(self, output_names, feeds, *args, **kwargs):
        users, items = feeds["user_index"], feeds["item_index"]
        seen.append(len(users))
        assert users.dtype == np.int64 and items.dtype == np.int64
        assert users.min(initial=0) >= 0 and users.max(initial=0) < 30
        assert items.min(initial=0) >= 0 and items.max(initial=0) < 20
        return original(self, output_names, feeds, *args, **kwargs)

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", spy)
    rng = np.random.default_rng(1)
    n = 5000
    users = fb.user_ids[rng.integers(0, 30, n)].astype("float64")
    items = fb.item_ids[rng.integers(0, 20, n)].astype("float64")
    users[rng.random(n) < 0.1] = -5  # unknown
    items[rng.random(n) < 0.1] = 10**12  # unknown
    users[rng.random(n) < 0.05] = np.nan  # null
    frame = pd.DataFrame({"user_id": pd.array(users).astype("Int64"),
                          "item_id": pd.array(items).astype("Int64")})
    known = frame["user_id"].isin(fb.user_ids) & frame["item_id"].isin(fb.item_ids)
    scorer = Scorer(fb.path, device="cpu", unknown=policy, max_unknown_share=1)
    out = scorer.score_frame(frame)
    assert seen, "the graph was never run"
    assert len(out) == (n if policy == "fallback" else int(known.sum()))
    # the path `recmodels score` runs: files through the streaming reader (CSV ids read as text)
    frame.to_parquet(tmp_path / "in.parquet")
    frame.to_csv(tmp_path / "in.csv", index=False)
    for name in ("in.parquet", "in.csv"):
        seen.clear()
        rep = scorer.score_file(tmp_path / name, tmp_path / f"out-{name}.parquet", overwrite=True)
        assert seen and rep.rows_written == len(out)
        assert rep.unknown_rows == int((~known).sum())


@pytest.mark.skipif(cuda_available(), reason="checks the no-CUDA error path")
def test_train_device_cuda_without_cuda_is_one_line(tmp_path):
    data = make_ratings(60, 40, 1500, seed=0)
    paths = data.save(tmp_path / "data")
    result = CliRunner().invoke(
        cli, ["train", "--data", str(paths["ratings"]), "--device", "cuda", "--epochs", "1",
              "--out", str(tmp_path / "run")], prog_name="recmodels")
    assert result.exit_code != 0
    lines = [line for line in result.output.strip().splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and "CUDA is not available" in lines[0], result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(cuda_available(), reason="checks the no-CUDA error path")
def test_scorer_device_cuda_without_cuda_raises(tmp_path):
    fb = make_bundle(tmp_path / "b")
    with pytest.raises(DeviceError, match="cuda"):
        Scorer(fb.path, device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["mf", "neumf"])
def test_training_on_cuda_matches_cpu(kind):
    """A tiny seeded run gives (nearly) the same model on CUDA as on the CPU."""
    from recmodels.training import RatingModel

    ratings = make_ratings(300, 200, 8000, seed=3).ratings
    shuffled = ratings.sample(frac=1.0, random_state=0)  # make_ratings is sorted by user
    train, test = shuffled.iloc[:7000], shuffled.iloc[7000:]
    kwargs = dict(epochs=2, batch_size=1024, seed=0, patience=None)
    cpu = RatingModel(kind, device="cpu", **kwargs).fit(train, test)
    gpu = RatingModel(kind, device="cuda", **kwargs).fit(train, test)
    p_cpu, p_gpu = cpu.predict(test), gpu.predict(test)
    # float32 reductions run in a different order on the GPU: close, not bit-identical
    np.testing.assert_allclose(p_gpu, p_cpu, atol=2e-3)
    truth = test["rating"].to_numpy()
    assert abs(rmse(truth, p_gpu) - rmse(truth, p_cpu)) < 1e-3
