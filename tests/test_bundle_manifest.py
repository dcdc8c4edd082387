"""The typed manifest: bundles written before it still load and score; validation; round trips.

``tests/data/bundles/`` holds two tiny bundles written by the exporter as it was before the
manifest was typed (``v1-neumf-folded-raw-ids``: folded NeuMF, int ids, with ``model_ids.onnx``;
``v1-hybrid-unfolded``: unfolded hybrid, string item ids), with the torch model's scores for a
few pairs in ``<name>.expected.json``. They must load, round-trip and score unchanged.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recmodels.bundle import Bundle, Manifest, finalize_bundle, manifest_digest
from recmodels.errors import BundleError

DATA = Path(__file__).resolve().parent / "data" / "bundles"
OLD_BUNDLES = ("v1-neumf-folded-raw-ids", "v1-hybrid-unfolded")


def old_manifest(name: str = "v1-neumf-folded-raw-ids") -> dict:
    return json.loads((DATA / name / "manifest.json").read_text())


def copy_old(tmp_path: Path, name: str = "v1-neumf-folded-raw-ids") -> Path:
    return Path(shutil.copytree(DATA / name, tmp_path / name))


def rewrite(path: Path, manifest: dict, *, redigest: bool = True) -> None:
    if redigest:
        manifest["manifest_sha256"] = manifest_digest(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


# -- bundles written before the typed manifest ------------------------------------------------------
@pytest.mark.parametrize("name", OLD_BUNDLES)
def test_old_bundle_loads_round_trips_and_summarises(name):
    on_disk = old_manifest(name)
    bundle = Bundle.load(DATA / name)
    assert bundle.manifest.to_dict() == on_disk
    assert bundle.digest == on_disk["manifest_sha256"] == bundle.manifest.compute_digest()
    assert bundle.model_kind == on_disk["model"]["kind"]
    assert (bundle.user_column, bundle.item_column) == ("user_id", "book_id")
    assert bundle.fallback_score == 3.625 and bundle.rating_range == (1.0, 5.0)
    assert bundle.manifest.graph.opset == 17 and bundle.manifest.parity.passed
    text = bundle.summary()
    assert "parity        max |onnx - torch| = " in text and "global mean 3.6250" in text
    assert ("(folded)" in text) == on_disk["model"]["folded"]


@pytest.mark.parametrize("name", OLD_BUNDLES)
def test_old_bundle_scores_as_the_torch_model_did(name):
    from recmodels.scoring import score_frame

    expected = json.loads((DATA / f"{name}.expected.json").read_text())
    frame = pd.DataFrame({"user_id": expected["user_id"], "book_id": expected["item_id"]})
    out = score_frame(DATA / name, frame, device="cpu")
    known = np.array(expected["known"])
    assert out["known"].tolist() == known.tolist()
    want = np.array([3.625 if s is None else s for s in expected["score"]], dtype=np.float64)
    np.testing.assert_allclose(out["score"].to_numpy(np.float64), want, atol=1e-5, rtol=0)


def test_old_raw_id_graph_scores_as_the_torch_model_did():
    from recmodels.export.parity import cpu_session

    name = "v1-neumf-folded-raw-ids"
    expected = json.loads((DATA / f"{name}.expected.json").read_text())
    bundle = Bundle.load(DATA / name)
    assert bundle.raw_ids_model_path == DATA / name / "model_ids.onnx"
    assert bundle.manifest.graph_raw_ids.opset_import == {"ai.onnx": 17, "ai.onnx.ml": 2}
    assert bundle.manifest.parity.raw_ids.n_unknown == 62
    score, known = cpu_session(bundle.raw_ids_model_path).run(
        ["score", "known"],
        {"user_id": np.array(expected["user_id"], dtype=np.int64),
         "item_id": np.array(expected["item_id"], dtype=np.int64)},
    )
    assert known.tolist() == expected["known"]
    want = np.array([3.625 if s is None else s for s in expected["score"]], dtype=np.float64)
    np.testing.assert_allclose(score, want, atol=1e-5, rtol=0)


# -- validation ---------------------------------------------------------------------------------
REQUIRED = [
    ("format",), ("format_version",), ("manifest_sha256",), ("files",), ("created_at",),
    ("files", "model.onnx", "sha256"), ("files", "model.onnx", "bytes"),
    ("model",), ("model", "kind"), ("model", "config"), ("model", "folded"), ("model", "folding"),
    ("graph",), ("graph", "file"), ("graph", "opset"), ("graph", "ir_version"), ("graph", "inputs"),
    ("graph", "inputs", 0, "name"), ("graph", "inputs", 1, "dtype"), ("graph", "outputs", 0, "shape"),
    ("graph", "outputs"), ("graph", "external_data"), ("graph", "initializer_bytes"),
    ("graph", "initializers"), ("graph", "initializers", 2, "name"), ("graph", "initializers", 0, "shape"),
    ("graph_raw_ids", "file"), ("graph_raw_ids", "opset"), ("graph_raw_ids", "opset_import"),
    ("graph_raw_ids", "ir_version"), ("graph_raw_ids", "inputs"), ("graph_raw_ids", "outputs"),
    ("graph_raw_ids", "outputs", 1, "dtype"), ("graph_raw_ids", "external_data"),
    ("graph_raw_ids", "fallback_score"),
    ("ids",), ("ids", "user"), ("ids", "item"), ("ids", "user", "column"), ("ids", "user", "dtype"),
    ("ids", "item", "count"), ("ids", "item", "file"),
    ("rating",), ("rating", "column"), ("rating", "min"), ("rating", "max"), ("rating", "global_mean"),
    ("fallback_score",), ("metrics",), ("versions",), ("source",),
    ("parity",), ("parity", "passed"), ("parity", "max_abs_diff"), ("parity", "tolerance"),
    ("parity", "n_pairs"), ("parity", "batch_sizes"), ("parity", "max_abs_diff_by_batch"),
    ("parity", "provider"), ("parity", "seed"),
    ("parity", "raw_ids", "passed"), ("parity", "raw_ids", "max_abs_diff"),
    ("parity", "raw_ids", "n_unknown"),
    ("parity", "raw_ids", "tolerance"), ("parity", "raw_ids", "n_pairs"), ("parity", "raw_ids", "seed"),
    ("parity", "raw_ids", "batch_sizes"), ("parity", "raw_ids", "max_abs_diff_by_batch"),
    ("parity", "raw_ids", "provider"),
]


def _label(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _parent(manifest: dict, path: tuple):
    node = manifest
    for part in path[:-1]:
        node = node[part]
    return node


@pytest.mark.parametrize("path", REQUIRED, ids=_label)
def test_a_missing_required_field_is_named(path):
    manifest = old_manifest()
    del _parent(manifest, path)[path[-1]]
    with pytest.raises(BundleError) as info:
        Manifest.from_dict(manifest, where="some/manifest.json")
    assert str(info.value) == f"some/manifest.json: manifest field '{_label(path)}' is missing"


WRONG_TYPES = [
    (("graph", "opset"), "17", "must be an integer; got '17'"),
    (("ids", "user", "count"), 3.5, "must be an integer"),
    (("ids", "user", "count"), True, "must be an integer"),
    (("model", "folded"), "yes", "must be true or false"),
    (("model", "folding", 1), 7, "must be a string"),
    (("fallback_score",), "3.5", "must be a finite number"),
    (("rating", "global_mean"), None, "must be a finite number"),
    (("rating", "min"), "1", "must be a finite number"),
    (("graph", "inputs"), {}, "must be a list"),
    (("graph", "inputs", 0), "user_index", "must be an object"),
    (("graph", "inputs", 0, "shape", 0), 1.5, "must be a dimension name or size"),
    (("graph", "external_data"), 0, "must be a string"),
    (("graph", "initializers", 1, "shape", 0), "12", "must be an integer"),
    (("files", "model.onnx", "bytes"), "2555", "must be an integer"),
    (("files", "model.onnx"), "abc", "must be an object"),
    (("versions", "onnx"), 1, "must be a string"),
    (("metrics",), [], "must be an object"),
    (("model", "config"), None, "must be an object"),
    (("parity", "max_abs_diff_by_batch", "7"), "0", "must be a finite number"),
    (("parity", "raw_ids"), [], "must be an object"),
    (("parity", "reference"), 1, "must be a string"),
    (("graph_raw_ids", "opset_import", "ai.onnx.ml"), "2", "must be an integer"),
    (("created_at",), 0, "must be a string"),
]


@pytest.mark.parametrize(
    "path, value, problem", WRONG_TYPES, ids=lambda x: _label(x) if isinstance(x, tuple) else ""
)
def test_an_ill_typed_field_is_named(path, value, problem):
    manifest = old_manifest()
    _parent(manifest, path)[path[-1]] = value
    with pytest.raises(BundleError) as info:
        Manifest.from_dict(manifest, where="m.json")
    message = str(info.value)
    assert message.startswith(f"m.json: manifest field '{_label(path)}' {problem}"), message
    assert "\n" not in message


def test_not_an_object():
    with pytest.raises(BundleError, match="^m.json: manifest is not a JSON object$"):
        Manifest.from_dict([], where="m.json")


def test_bundle_load_names_the_field_and_the_file(tmp_path):
    path = copy_old(tmp_path)
    manifest = old_manifest()
    del manifest["ids"]["item"]["count"]
    rewrite(path, manifest)
    with pytest.raises(BundleError) as info:
        Bundle.load(path)
    assert str(info.value) == f"{path / 'manifest.json'}: manifest field 'ids.item.count' is missing"


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m["graph"].update(file="other.onnx"), "manifest lists no other.onnx"),
        (lambda m: m["graph_raw_ids"].update(file="raw.onnx"), "manifest lists no raw.onnx"),
        (lambda m: m["files"].update({"../x.onnx": m["files"]["model.onnx"]}), "not a file in the bundle"),
        (lambda m: m["ids"]["user"].update(count=13), "12 user ids but manifest says 13"),
        (lambda m: m.update(format_version=True), "format version True is not supported"),
        (lambda m: m.update(format="something-else"), "not a recmodels bundle manifest"),
    ],
)
def test_inconsistent_manifests_are_refused(tmp_path, change, message):
    path = copy_old(tmp_path)
    manifest = old_manifest()
    change(manifest)
    rewrite(path, manifest)
    with pytest.raises(BundleError, match="^[^\n]*$") as info:
        Bundle.load(path)
    assert message in str(info.value)


def test_nulls_where_the_format_allows_them(tmp_path):
    path = copy_old(tmp_path)
    manifest = old_manifest()
    manifest["rating"].update(min=None, max=None)
    manifest["graph_raw_ids"] = None  # an explicit null reads as "no raw-id graph"
    manifest["parity"]["raw_ids"] = None
    rewrite(path, manifest)
    bundle = Bundle.load(path)
    assert bundle.rating_range == (-np.inf, np.inf)
    assert bundle.raw_ids_model_path is None and bundle.manifest.parity.raw_ids is None
    assert bundle.manifest.to_dict() == manifest  # the nulls are written back, the digest holds
    assert "in [None, None]" in bundle.summary()


def test_the_digest_covers_every_field(tmp_path):
    path = copy_old(tmp_path)
    for edit in (
        lambda m: m["parity"].update(max_abs_diff=0.5),
        lambda m: m["model"]["folding"].append("x"),
        lambda m: m.update(unknown_new_field=1),
    ):
        manifest = old_manifest()
        edit(manifest)
        rewrite(path, manifest, redigest=False)
        with pytest.raises(BundleError, match="manifest was modified after export"):
            Bundle.load(path)


# -- unknown keys from newer minor writers --------------------------------------------------------
SECTIONS = [
    (), ("model",), ("graph",), ("graph", "inputs", 0), ("graph", "initializers", 3), ("graph_raw_ids",),
    ("graph_raw_ids", "outputs", 1), ("ids",), ("ids", "item"), ("rating",), ("parity",),
    ("parity", "raw_ids"), ("files", "model.onnx"),
]


def _node(manifest: dict, path: tuple):
    node = manifest
    for part in path:
        node = node[part]
    return node


def test_unknown_keys_are_kept_and_the_digest_still_verifies(tmp_path):
    path = copy_old(tmp_path)
    manifest = old_manifest()
    for n, section in enumerate(SECTIONS):
        _node(manifest, section)[f"zz_new_{n}"] = {"nested": [n, "x", None], "flag": True}
    rewrite(path, manifest)
    bundle = Bundle.load(path)
    assert bundle.manifest.to_dict() == manifest
    assert bundle.manifest.compute_digest() == bundle.digest == manifest["manifest_sha256"]
    assert bundle.manifest.extra == {"zz_new_0": {"nested": [0, "x", None], "flag": True}}
    assert bundle.manifest.graph.inputs[0].extra == {"zz_new_3": {"nested": [3, "x", None], "flag": True}}
    assert bundle.manifest.parity.raw_ids.extra["zz_new_11"]["flag"] is True
    # a writer that re-finalizes keeps them too (files entries are recomputed from the files)
    written = finalize_bundle(path, bundle.manifest)
    again = json.loads((path / "manifest.json").read_text())
    assert again["zz_new_0"] == manifest["zz_new_0"] and again["parity"]["zz_new_10"]
    assert "zz_new_12" not in again["files"]["model.onnx"]
    assert Bundle.load(path).digest == written.digest


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(SECTIONS), st.text(min_size=1, max_size=6), JSON), max_size=6))
def test_round_trip_is_exact_with_any_unknown_keys(additions):
    manifest = old_manifest()
    for section, key, value in additions:
        _node(manifest, section)["x-" + key] = copy.deepcopy(value)
    typed = Manifest.from_dict(manifest)
    assert typed.to_dict() == manifest
    assert manifest_digest(typed.to_dict()) == manifest_digest(manifest)
    assert Manifest.from_dict(typed.to_dict()) == typed


def test_to_dict_is_a_fresh_copy():
    typed = Manifest.from_dict(old_manifest())
    out = typed.to_dict()
    out["model"]["config"]["kind"] = "changed"
    out["graph"]["inputs"][0]["name"] = "changed"
    assert typed.model.config["kind"] == "neumf" and typed.graph.inputs[0].name == "user_index"
    assert typed.to_dict() == old_manifest()
