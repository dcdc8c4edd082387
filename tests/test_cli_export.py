"""``recmodels export``: a good run exports; each bad input is one line, non-zero, no bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import assert_one_line_failure

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
runs = pytest.importorskip("recmodels.runs", reason="recmodels.runs (load_run) not available yet")

from recmodels.bundle import Bundle  # noqa: E402
from recmodels.cli import cli  # noqa: E402
from recmodels.encoders import IdEncoder  # noqa: E402
from recmodels.models import ModelConfig, build_model  # noqa: E402

N_USERS, N_ITEMS = 29, 17


def write_run(path: Path, kind: str = "neumf", *, embedding_dim: int = 8, seed: int = 0) -> Path:
    """A finished run directory written by hand (layout of docs/architecture.md)."""
    torch.manual_seed(seed)
    config = ModelConfig(
        kind, n_users=N_USERS, n_items=N_ITEMS, embedding_dim=embedding_dim, num_layers=2,
        dropouts=(0.5, 0.3), global_mean=3.5, pretrained_dim=4 if kind == "hybrid" else 0,
    )
    model = build_model(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({
        "recmodels_version": "0.1.0",
        "model": config.to_dict(),
        "train": {},
        "data": {
            "user_col": "user_id", "item_col": "book_id", "rating_col": "rating",
            "timestamp_col": None, "rating_min": 1.0, "rating_max": 5.0, "global_mean": 3.5,
            "sources": [], "split": {},
        },
    }))
    torch.save(model.state_dict(), path / "model.pt")
    IdEncoder("user").fit(np.arange(N_USERS) * 3).save(path / "user_ids.parquet")
    IdEncoder("item").fit([f"b{i}" for i in range(N_ITEMS)]).save(path / "item_ids.parquet")
    (path / "metrics.json").write_text(json.dumps({
        "history": [{"epoch": 1, "train_mse": 1.0, "train_rmse": 1.0, "valid_mse": 1.1,
                     "valid_rmse": 1.05, "seconds": 1.0, "samples_per_s": 10.0}],
        "best_epoch": 1,
        "valid": {"rmse": 1.05, "mse": 1.1},
        "test": {"rmse": 1.1, "mae": 0.9, "mse": 1.21, "hit_accuracy": 0.4, "n": 10},
    }))
    (path / "COMPLETE").write_text("")
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("runs") / "neumf")


def invoke(*args):
    return CliRunner().invoke(cli, ["export", *map(str, args)])



def test_export_writes_a_verified_bundle(run_dir, tmp_path):
    out = tmp_path / "bundle"
    result = invoke(run_dir, "--format", "onnx", "--out", out)
    assert result.exit_code == 0, result.output
    assert "parity max |onnx - torch|" in result.output
    bundle = Bundle.load(out)
    m = bundle.manifest
    assert m.model.folded is True and m.parity.n_pairs == 10_000
    assert m.parity.max_abs_diff <= 1e-5
    assert m.metrics["test"]["rmse"] == 1.1 and m.metrics["train"]["rmse"] == 1.0
    assert m.source["run_dir"] == str(run_dir.resolve())
    assert m.model.config == json.loads((run_dir / "config.json").read_text())["model"]
    # the id maps are the run's files, byte for byte
    for name in ("user_ids.parquet", "item_ids.parquet"):
        assert (out / name).read_bytes() == (run_dir / name).read_bytes()


def test_no_fold_opset_and_overwrite(run_dir, tmp_path):
    out = tmp_path / "bundle"
    assert invoke(run_dir, "--out", out).exit_code == 0
    result = invoke(run_dir, "--out", out)
    assert_one_line_failure(result, "already exists", "--overwrite")
    result = invoke(run_dir, "--out", out, "--overwrite", "--no-fold", "--opset", "15")
    assert result.exit_code == 0, result.output
    m = Bundle.load(out).manifest
    assert m.model.folded is False and m.graph.opset == 15
    assert "unfolded" in result.output and "opset 15" in result.output


def test_hybrid_run(tmp_path):
    run = write_run(tmp_path / "hybrid", "hybrid")
    result = invoke(run, "--out", tmp_path / "b", "--fallback-score", "3")
    assert result.exit_code == 0, result.output
    bundle = Bundle.load(tmp_path / "b")
    assert bundle.model_kind == "hybrid" and bundle.fallback_score == 3.0


def test_unsupported_format(run_dir, tmp_path):
    result = invoke(run_dir, "--format", "torchscript", "--out", tmp_path / "b")
    assert_one_line_failure(result, "unsupported --format", "onnx")
    assert not (tmp_path / "b").exists()


def test_missing_run_dir(tmp_path):
    result = invoke(tmp_path / "nope", "--out", tmp_path / "b")
    assert_one_line_failure(result, "nope")
    assert not (tmp_path / "b").exists()


def test_incomplete_run_dir(tmp_path):
    run = write_run(tmp_path / "run")
    (run / "COMPLETE").unlink()
    result = invoke(run, "--out", tmp_path / "b")
    assert_one_line_failure(result, "run")
    assert not (tmp_path / "b").exists()


def test_checkpoint_from_another_config(tmp_path):
    run = write_run(tmp_path / "run", embedding_dim=8)
    other = write_run(tmp_path / "other", embedding_dim=4)
    (run / "model.pt").write_bytes((other / "model.pt").read_bytes())
    result = invoke(run, "--out", tmp_path / "b")
    assert_one_line_failure(result, "model.pt")
    assert not (tmp_path / "b").exists()


def test_unwritable_destination(run_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = invoke(run_dir, "--out", blocker / "b")
    assert_one_line_failure(result, str(blocker))
    assert blocker.read_text() == "not a directory"


def test_out_inside_itself_refused(run_dir):
    result = invoke(run_dir, "--out", run_dir, "--overwrite")
    assert_one_line_failure(result, "run directory")
    assert (run_dir / "COMPLETE").exists()


def test_bad_opset(run_dir, tmp_path):
    result = invoke(run_dir, "--out", tmp_path / "b", "--opset", "9")
    assert_one_line_failure(result, "opset")
    assert not (tmp_path / "b").exists()


def test_embed_encoders_flag(run_dir, tmp_path):
    import onnxruntime as ort

    out = tmp_path / "bundle"
    result = invoke(run_dir, "--out", out, "--embed-encoders")
    assert result.exit_code == 0, result.output
    assert "model_ids.onnx" in result.output
    bundle = Bundle.load(out)
    raw = bundle.manifest.graph_raw_ids
    assert [io.dtype for io in raw.inputs] == ["int64", "string"]
    assert bundle.manifest.parity.raw_ids.n_pairs == 10_000
    session = ort.InferenceSession(str(bundle.raw_ids_model_path), providers=["CPUExecutionProvider"])
    score, known = session.run(
        ["score", "known"],
        {
            "user_id": np.array([0, 1, 3, 1], dtype=np.int64),
            "item_id": np.array(["b0", "b1", "zz", "zz"], dtype=object),
        },
    )
    assert known.tolist() == [True, False, False, False]  # user 1 and item "zz" are unknown
    assert score[3] == np.float32(3.5)  # both unknown: the training mean
    # one side unknown: model.onnx with that side's prior row
    prior, ue, ie = bundle.manifest.prior, bundle.user_encoder, bundle.item_encoder
    users = [ue.transform([0])[0], prior.user_row, ue.transform([3])[0]]
    items = [ie.transform(["b0"])[0], ie.transform(["b1"])[0], prior.item_row]
    plain = ort.InferenceSession(str(bundle.model_path), providers=["CPUExecutionProvider"])
    expected = plain.run(["score"], {"user_index": np.array(users), "item_index": np.array(items)})[0]
    np.testing.assert_allclose(score[:3], expected, atol=1e-6, rtol=0)
    # without the flag: no raw-id graph
    assert invoke(run_dir, "--out", tmp_path / "plain").exit_code == 0
    assert not (tmp_path / "plain" / "model_ids.onnx").exists()
