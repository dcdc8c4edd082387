"""The torch-free floor: atomic writes and bundle verification (with a stand-in graph file)."""

import json

import pytest

from recmodels.bundle import (
    FORMAT_VERSION,
    Bundle,
    GraphSection,
    IdMap,
    IdsSection,
    Manifest,
    ModelSection,
    ParitySection,
    RatingSection,
    TensorInfo,
    finalize_bundle,
)
from recmodels.encoders import IdEncoder
from recmodels.errors import BundleError, OutputError
from recmodels.fileio import _UMASK, atomic_directory, atomic_path, write_json


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole"
    assert target.stat().st_mode & 0o777 == 0o666 & ~_UMASK  # not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_directory_refuses_existing_and_overwrites_on_request(tmp_path):
    dest = tmp_path / "bundle"
    with atomic_directory(dest) as staging:
        (staging / "a").write_text("1")
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        with atomic_directory(dest):
            pass
    with pytest.raises(ValueError):
        with atomic_directory(dest, overwrite=True) as staging:
            (staging / "b").write_text("2")
            raise ValueError
    assert sorted(p.name for p in dest.iterdir()) == ["a"]
    with atomic_directory(dest, overwrite=True) as staging:
        (staging / "b").write_text("2")
    assert sorted(p.name for p in dest.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_write_json_rejects_nan(tmp_path):
    with pytest.raises(ValueError):
        write_json(tmp_path / "x.json", {"a": float("nan")})
    assert list(tmp_path.iterdir()) == []


def stand_in_manifest(**changes) -> Manifest:
    """A complete manifest for the stand-in bundle below (3 int users, 2 string items)."""
    tensor = {"dtype": "int64", "shape": ["batch"]}
    fields = dict(
        model=ModelSection(kind="mf", config={}, folded=False, folding=[]),
        graph=GraphSection(
            file="model.onnx", opset=17, ir_version=8,
            inputs=[TensorInfo(name="user_index", **tensor), TensorInfo(name="item_index", **tensor)],
            outputs=[TensorInfo(name="score", dtype="float32", shape=["batch"])],
            external_data=None, initializer_bytes=0, initializers=[],
        ),
        ids=IdsSection(
            user=IdMap(column="user_id", dtype="int64", count=3, file="user_ids.parquet"),
            item=IdMap(column="item_id", dtype="string", count=2, file="item_ids.parquet"),
        ),
        rating=RatingSection(column="rating", min=1.0, max=5.0, global_mean=3.5),
        fallback_score=3.5,
        metrics={},
        versions={"recmodels": "0"},
        parity=ParitySection(
            passed=True, max_abs_diff=0.0, tolerance=1e-5, n_pairs=1, batch_sizes=[1],
            max_abs_diff_by_batch={"1": 0.0}, provider="CPUExecutionProvider", seed=0,
        ),
        source={},
        created_at="2025-01-31T12:00:00+00:00",
    )
    return Manifest(**{**fields, **changes})


@pytest.fixture
def bundle_dir(tmp_path):
    d = tmp_path / "b"
    d.mkdir()
    (d / "model.onnx").write_bytes(b"stand-in graph bytes")
    IdEncoder("user").fit([10, 20, 30]).save(d / "user_ids.parquet")
    IdEncoder("item").fit(["x", "y"]).save(d / "item_ids.parquet")
    written = finalize_bundle(d, stand_in_manifest())
    assert written.digest == json.loads((d / "manifest.json").read_text())["manifest_sha256"]
    return d


def test_bundle_loads_and_exposes_manifest(bundle_dir):
    b = Bundle.load(bundle_dir)
    assert b.fallback_score == 3.5 and b.rating_range == (1.0, 5.0)
    assert len(b.user_encoder) == 3 and b.item_encoder.kind_ == "string"
    assert "fallback      3.5000 for unknown ids" in b.summary()
    assert b.model_path == bundle_dir / "model.onnx" and b.raw_ids_model_path is None
    assert b.model_kind == "mf" and (b.user_column, b.item_column) == ("user_id", "item_id")
    assert b.digest == json.loads((bundle_dir / "manifest.json").read_text())["manifest_sha256"]
    assert b.manifest == stand_in_manifest(files=b.manifest.files, manifest_sha256=b.digest)


def test_finalize_fills_files_and_digest_and_refuses_a_dict(bundle_dir):
    m = Bundle.load(bundle_dir).manifest
    assert sorted(m.files) == ["item_ids.parquet", "model.onnx", "user_ids.parquet"]
    assert m.files["model.onnx"].bytes == len(b"stand-in graph bytes")
    assert m.format == "recmodels-bundle" and m.format_version == FORMAT_VERSION
    assert m.compute_digest() == m.digest
    with pytest.raises(TypeError, match="Manifest"):
        finalize_bundle(bundle_dir, m.to_dict())
    (bundle_dir / "model.onnx").unlink()
    with pytest.raises(BundleError, match="missing model.onnx"):
        finalize_bundle(bundle_dir, m)


def _edit_manifest(d, **changes):
    m = json.loads((d / "manifest.json").read_text())
    m.update(changes)
    (d / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda d: (d / "model.onnx").write_bytes(b"stand-in graph byteZ"), "sha256 mismatch"),
        (lambda d: (d / "model.onnx").write_bytes(b"short"), "truncated or replaced"),
        (lambda d: (d / "item_ids.parquet").unlink(), "missing from bundle"),
        (lambda d: _edit_manifest(d, fallback_score=4.0), "modified after export"),
        (lambda d: _edit_manifest(d, format_version=FORMAT_VERSION + 1), "not supported"),
        (lambda d: (d / "manifest.json").write_text("{"), "unreadable manifest"),
        (lambda d: (d / "manifest.json").unlink(), "not a recmodels bundle"),
    ],
)
def test_tampered_bundle_is_one_clear_error(bundle_dir, tamper, message):
    tamper(bundle_dir)
    with pytest.raises(BundleError, match=message) as info:
        Bundle.load(bundle_dir)
    assert "\n" not in str(info.value)


def test_missing_bundle_dir(tmp_path):
    with pytest.raises(BundleError, match="bundle directory not found"):
        Bundle.load(tmp_path / "nope")
