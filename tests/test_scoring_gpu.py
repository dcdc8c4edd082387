"""CUDA scoring (skipped cleanly without a GPU; see conftest.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bundle_factory import make_bundle

from recmodels.errors import DeviceError
from recmodels.scoring import Scorer

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda_scorer(tmp_path_factory):
    fb = make_bundle(tmp_path_factory.mktemp("gpu") / "b", kind="neumf", folded=True)
    try:
        return fb, Scorer(fb.path, device="cuda")
    except DeviceError as exc:  # a GPU torch can see, but onnxruntime's CUDA libraries missing
        pytest.skip(str(exc))


def test_cuda_matches_cpu_and_reports_provider(cuda_scorer):
    fb, scorer = cuda_scorer
    assert scorer.provider == "cuda:0"
    rng = np.random.default_rng(0)
    n = 50_000
    df = pd.DataFrame({
        "user_id": np.where(rng.random(n) < 0.05, -1, fb.user_ids[rng.integers(0, 50, n)]),
        "item_id": np.where(rng.random(n) < 0.05, 10**9, fb.item_ids[rng.integers(0, 40, n)]),
    })
    got = scorer.score_frame(df)  # unknown ids must never reach the (unchecked) CUDA Gather
    ref, known = fb.reference_ids(df["user_id"], df["item_id"])
    np.testing.assert_allclose(got["score"], ref, atol=1e-5)
    assert got["known"].tolist() == known.tolist()
    cpu = Scorer(fb.path, device="cpu").score_frame(df)
    np.testing.assert_allclose(got["score"], cpu["score"], atol=1e-5)


def test_cuda_file_path_matches_cpu(cuda_scorer, tmp_path):
    """The path `recmodels score` runs: Parquet in, Parquet out, CUDA vs CPU."""
    fb, scorer = cuda_scorer
    rng = np.random.default_rng(1)
    n = 300_000
    df = pd.DataFrame({
        "user_id": np.where(rng.random(n) < 0.05, -1, fb.user_ids[rng.integers(0, 50, n)]),
        "item_id": np.where(rng.random(n) < 0.05, 10**9, fb.item_ids[rng.integers(0, 40, n)]),
    })
    df.to_parquet(tmp_path / "in.parquet", row_group_size=50_000)
    rep = scorer.score_file(tmp_path / "in.parquet", tmp_path / "cuda.parquet")
    assert rep.provider == "cuda:0" and rep.rows_written == n
    Scorer(fb.path, device="cpu").score_file(tmp_path / "in.parquet", tmp_path / "cpu.parquet")
    got, cpu = pd.read_parquet(tmp_path / "cuda.parquet"), pd.read_parquet(tmp_path / "cpu.parquet")
    np.testing.assert_allclose(got["score"], cpu["score"], atol=1e-5)
    ref, known = fb.reference_ids(df["user_id"], df["item_id"])
    np.testing.assert_allclose(got["score"], ref, atol=1e-5)
    assert got["known"].tolist() == known.tolist()


def test_auto_picks_cuda(cuda_scorer):
    fb, _ = cuda_scorer
    assert Scorer(fb.path, device="auto").provider.startswith("cuda")
