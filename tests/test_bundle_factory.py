"""The test factory makes bundles the way the exporter does (same graph code, same manifest), no torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

import bundle_factory  # noqa: E402
from bundle_factory import KINDS, make_bundle, reference_scores, score_spec  # noqa: E402

from recmodels.bundle import Bundle  # noqa: E402
from recmodels.errors import ParityError  # noqa: E402
from recmodels.export.parity import cpu_session  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EXPORTED = REPO / "tests" / "data" / "bundles" / "v1-neumf-folded-raw-ids"  # written by the exporter


def _key_paths(obj, prefix="", depth=2) -> set[str]:
    out = set()
    if isinstance(obj, dict) and depth:
        for key, value in obj.items():
            out.add(prefix + key)
            out |= _key_paths(value, prefix + key + ".", depth - 1)
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_manifest_has_the_exporters_fields(tmp_path, kind):
    fb = make_bundle(tmp_path / "b", kind=kind, embed_encoders=True, folded=True)
    made = Bundle.load(fb.path).manifest.to_dict()
    exported = json.loads((EXPORTED / "manifest.json").read_text())
    skip_files = {p for p in _key_paths(exported) | _key_paths(made) if p.startswith("files.")}
    only_exporter = {"source.run_dir", "versions.torch"}
    only_factory = {"parity.reference"}
    # written since the stored bundle was exported (tests/test_recommend_export.py compares them with a
    # fresh export)
    newer = {p for p in _key_paths(made) if p.split(".")[0] == "graph_recommend"}
    assert _key_paths(made) - skip_files - newer == (
        (_key_paths(exported) - skip_files - only_exporter) | only_factory
    )
    assert set(made["model"]["config"]) == set(exported["model"]["config"])
    assert set(made["graph_raw_ids"]) == set(exported["graph_raw_ids"])
    assert set(made["parity"]["raw_ids"]) == set(exported["parity"]["raw_ids"])
    assert made["parity"]["passed"] and made["parity"]["max_abs_diff"] <= 1e-5
    assert made["parity"]["n_pairs"] == 10_000 and made["parity"]["batch_sizes"] == [1, 2, 7, 4096]
    assert made["parity"]["reference"] == "numpy" and made["parity"]["raw_ids"]["passed"]
    assert set(made["versions"]) == {"recmodels", "onnx", "onnxruntime", "numpy"}
    assert made["metrics"]["test"]["rmse"] > 0 and made["metrics"]["best_epoch"] == 1
    assert made["model"]["kind"] == kind and made["model"]["folded"] is True
    assert made["ids"]["user"]["file"] == "user_ids.parquet"


def test_folded_graph_is_the_exporters_graph(tmp_path):
    """Same folding and graph code: the exported folded NeuMF and the factory's have the same ops."""
    fb = make_bundle(tmp_path / "b", kind="neumf", folded=True, layers=(8, 4))
    made = onnx.load(str(fb.path / "model.onnx")).graph
    exported = onnx.load(str(EXPORTED / "model.onnx")).graph
    assert [n.op_type for n in made.node] == [n.op_type for n in exported.node]
    assert [t.name for t in made.initializer] == [t.name for t in exported.initializer]
    assert {n.op_type for n in made.node} >= {"ReduceSum", "MatMul", "Reshape"}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("folded", [False, True])
def test_graph_scores_the_oracle(tmp_path, kind, folded):
    fb = make_bundle(tmp_path / "b", kind=kind, folded=folded, n_users=23, n_items=17, seed=4)
    assert fb.folded is folded and Bundle.load(fb.path).manifest.model.folded is folded
    rng = np.random.default_rng(0)
    u, i = rng.integers(0, 23, 400), rng.integers(0, 17, 400)
    got = cpu_session(fb.path / "model.onnx").run(["score"], {"user_index": u, "item_index": i})[0]
    np.testing.assert_allclose(got, fb.reference(u, i), atol=1e-5, rtol=0)
    # the spec the exporter's code folds computes what the oracle computes
    spec = score_spec(fb.weights, kind)
    np.testing.assert_allclose(spec.score(u, i), fb.reference(u, i), atol=1e-9, rtol=0)


def test_raw_id_graph(tmp_path):
    fb = make_bundle(tmp_path / "b", kind="neumf", id_kind="string", embed_encoders=True, fallback_score=2.0)
    bundle = Bundle.load(fb.path)
    users = np.array(["u3", "nobody", "u0", "u9"], dtype=object)
    items = np.array(["i1", "i2", "nothing", "i39"], dtype=object)
    score, known = cpu_session(bundle.raw_ids_model_path).run(["score", "known"],
                                                             {"user_id": users, "item_id": items})
    want, want_known = fb.reference_ids(users, items)
    assert known.tolist() == want_known.tolist() == [True, False, False, True]
    np.testing.assert_allclose(score, want, atol=1e-5, rtol=0)


def test_parity_is_checked_against_the_oracle(tmp_path, monkeypatch):
    real = bundle_factory.reference_scores
    monkeypatch.setattr(bundle_factory, "reference_scores", lambda *a: real(*a) + 1e-3)
    with pytest.raises(ParityError, match=r"max \|onnx - numpy\|"):
        make_bundle(tmp_path / "b", kind="mf")
    assert not (tmp_path / "b").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_remaking_a_bundle_replaces_it(tmp_path):
    first = Bundle.load(make_bundle(tmp_path / "b", kind="mf", seed=1).path).digest
    (tmp_path / "b" / "stray.txt").write_text("x")
    second = make_bundle(tmp_path / "b", kind="mf", seed=2)
    assert not (tmp_path / "b" / "stray.txt").exists()
    assert Bundle.load(second.path).digest != first
    oracle = reference_scores(second.weights, "mf", [0], [0])
    np.testing.assert_array_equal(oracle, second.reference([0], [0]))


SCRIPT = textwrap.dedent("""
    import sys

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "sklearn"):
                raise ImportError(f"blocked import of {name}")
            return None

    sys.meta_path.insert(0, Block())
    sys.path.insert(0, sys.argv[2])
    from bundle_factory import KINDS, make_bundle
    from recmodels.bundle import Bundle

    for kind in KINDS:
        fb = make_bundle(f"{sys.argv[1]}/{kind}", kind=kind, folded=kind != "mf", embed_encoders=True)
        assert Bundle.load(fb.path).manifest.parity.passed
    bad = [m for m in sys.modules if m.split(".")[0] in ("torch", "sklearn")]
    assert not bad, bad
    print("ok")
""")


def test_factory_needs_no_torch(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(REPO / "tests")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "ok"
