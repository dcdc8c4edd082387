"""The torch-free floor: atomic writes and bundle verification (with a stand-in graph file)."""

import json

import pytest

from recmodels.bundle import FORMAT_VERSION, Bundle, finalize_bundle
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


@pytest.fixture
def bundle_dir(tmp_path):
    d = tmp_path / "b"
    d.mkdir()
    (d / "model.onnx").write_bytes(b"stand-in graph bytes")
    IdEncoder("user").fit([10, 20, 30]).save(d / "user_ids.parquet")
    IdEncoder("item").fit(["x", "y"]).save(d / "item_ids.parquet")
    finalize_bundle(
        d,
        {
            "model": {"kind": "mf", "config": {}},
            "ids": {"user": {"column": "user_id", "count": 3}, "item": {"column": "item_id", "count": 2}},
            "rating": {"column": "rating", "min": 1.0, "max": 5.0, "global_mean": 3.5},
            "fallback_score": 3.5,
        },
    )
    return d


def test_bundle_loads_and_exposes_manifest(bundle_dir):
    b = Bundle.load(bundle_dir)
    assert b.fallback_score == 3.5 and b.rating_range == (1.0, 5.0)
    assert len(b.user_encoder) == 3 and b.item_encoder.kind_ == "string"
    assert "fallback      3.5000 for unknown ids" in b.summary()


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
