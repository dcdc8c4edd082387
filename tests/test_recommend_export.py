"""The recommend graphs in exported bundles: torch as the judge, the manifest section, parity, tampering."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from bundle_factory import make_bundle  # noqa: E402
from test_export import KINDS, N_ITEMS, N_USERS, export_small, leftovers, make_encoders, make_model  # noqa: E402

from recmodels.bundle import Bundle, Manifest  # noqa: E402
from recmodels.errors import BundleError, ParityError  # noqa: E402
from recmodels.export.parity import torch_scores  # noqa: E402
from recmodels.export.recommend_graph import RECOMMEND_INPUTS, RECOMMEND_OUTPUTS, SELECT_GROUP  # noqa: E402
from recmodels.scoring import recommend  # noqa: E402


def _key_paths(obj, prefix="") -> set[str]:
    out = set()
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.add(prefix + key)
            out |= _key_paths(value, prefix + key + ".")
    return out


@pytest.mark.parametrize("folded", [True, False], ids=["folded", "unfolded"])
@pytest.mark.parametrize("kind", KINDS)
def test_exported_bundle_recommends_what_torch_ranks_first(tmp_path, kind, folded):
    model = make_model(kind, seed=2)
    path = export_small(model, tmp_path / "b", fold=folded)
    bundle = Bundle.load(path)
    section = bundle.manifest.graph_recommend
    assert bundle.recommend_model_path == path / "recommend.onnx"
    assert (bundle.retrieve_model_path is None) == (kind == "mf")
    assert section.parity.passed and section.parity.max_abs_diff <= 1e-5
    assert section.item_multiple == SELECT_GROUP
    users, items = make_encoders()
    seen = pd.DataFrame({"user_id": users.classes_[[0, 0, 5]], "book_id": items.classes_[[3, 4, 3]]})
    got = recommend(path, k=5, exclude_seen=seen, device="cpu")
    u = np.repeat(np.arange(N_USERS), N_ITEMS)
    i = np.tile(np.arange(N_ITEMS), N_USERS)
    scores = torch_scores(model, u, i).astype(np.float64).reshape(N_USERS, N_ITEMS)
    scores[[0, 0, 5], [3, 4, 3]] = -np.inf
    want = np.sort(scores, axis=1)[:, ::-1][:, :5]
    np.testing.assert_allclose(got["score"].to_numpy().reshape(N_USERS, 5), want, atol=1e-5, rtol=0)
    picked = items.transform(got[bundle.item_column]).reshape(N_USERS, 5)
    np.testing.assert_allclose(np.take_along_axis(scores, picked, axis=1), want, atol=1e-5, rtol=0)


def test_factory_and_exporter_write_the_same_recommend_section(tmp_path):
    exported = Bundle.load(export_small(make_model("neumf"), tmp_path / "e")).manifest.to_dict()
    made = Bundle.load(make_bundle(tmp_path / "f", kind="neumf", folded=True).path).manifest.to_dict()
    assert _key_paths(exported["graph_recommend"]) == _key_paths(made["graph_recommend"])
    section = exported["graph_recommend"]
    assert section["inputs"] == [dict(io) for io in RECOMMEND_INPUTS]
    assert section["outputs"] == [dict(io) for io in RECOMMEND_OUTPUTS]
    assert section["file"] == "recommend.onnx" and section["retrieve"]["file"] == "retrieve.onnx"
    assert {"recommend.onnx", "retrieve.onnx"} <= set(exported["files"])
    assert section["parity"]["retrieve_max_abs_diff"] <= 1e-5
    assert "recommend" not in exported["parity"]  # the scoring graph's parity is unchanged
    assert Manifest.from_dict(exported).to_dict() == exported


def test_rank_all_graph_is_listed_checked_and_its_parity_can_fail(tmp_path):
    from recmodels.export.recommend_parity import check_rank_all_parity

    path = export_small(make_model("mf"), tmp_path / "b")
    bundle = Bundle.load(path)
    section = bundle.manifest.graph_recommend
    assert section.rank_all.file == "rank_all.onnx" and "rank_all.onnx" in bundle.manifest.files
    assert 0 <= section.parity.rank_all_max_abs_diff <= 1e-5
    model = make_model("mf")
    reference = lambda u, i: torch_scores(model, u, i).astype(np.float64)  # noqa: E731
    assert check_rank_all_parity(path / "rank_all.onnx", reference, N_USERS, N_ITEMS) <= 1e-5
    other = make_model("mf", seed=7)
    wrong = lambda u, i: torch_scores(other, u, i).astype(np.float64)  # noqa: E731
    with pytest.raises(ParityError, match="rank_all parity check failed"):
        check_rank_all_parity(path / "rank_all.onnx", wrong, N_USERS, N_ITEMS)
    (path / "rank_all.onnx").unlink()
    with pytest.raises(BundleError, match="rank_all.onnx: missing from bundle"):
        Bundle.load(path)


def test_a_tampered_recommend_graph_is_refused(tmp_path):
    path = export_small(make_model("mf"), tmp_path / "b")
    graph = path / "recommend.onnx"
    raw = bytearray(graph.read_bytes())
    raw[-5] ^= 0xFF
    graph.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="recommend.onnx: sha256 mismatch"):
        Bundle.load(path)
    graph.unlink()
    with pytest.raises(BundleError, match="recommend.onnx: missing from bundle"):
        Bundle.load(path)


def test_manifest_must_list_the_recommend_graph(tmp_path):
    path = export_small(make_model("mf"), tmp_path / "b")
    data = json.loads((path / "manifest.json").read_text())
    del data["graph_recommend"]["parity"]
    with pytest.raises(BundleError, match=r"manifest field 'graph_recommend.parity' is missing"):
        Manifest.from_dict(data, where="m.json")
    data = json.loads((path / "manifest.json").read_text())
    data["graph_recommend"]["item_multiple"] = "64"
    with pytest.raises(BundleError, match=r"'graph_recommend.item_multiple' must be an integer"):
        Manifest.from_dict(data, where="m.json")


def test_recommend_parity_failure_leaves_nothing(tmp_path, monkeypatch):
    import recmodels.export.api as export

    other = make_model("neumf", seed=99)
    real = export.build_recommend_graphs
    monkeypatch.setattr(export, "build_recommend_graphs", lambda model, **kw: real(other, **kw))
    with pytest.raises(ParityError, match="recommend parity check failed") as info:
        export_small(make_model("neumf"), tmp_path / "b")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "b").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("opset", [13, 18, 23])
def test_recommend_graph_at_other_opsets(tmp_path, opset):
    model = make_model("hybrid", seed=4)
    path = export_small(model, tmp_path / "b", opset=opset)
    m = Bundle.load(path).manifest.graph_recommend
    assert m.opset == opset and m.parity.passed
    onnx.checker.check_model(str(path / "recommend.onnx"), full_check=True)
    got = recommend(path, k=3, device="cpu", candidates=10)
    assert len(got) == 3 * N_USERS


def test_recommend_graph_as_external_data(tmp_path):
    model = make_model("neumf", seed=3)
    path = export_small(model, tmp_path / "ext", external_data_threshold=0)
    bundle = Bundle.load(path)
    section = bundle.manifest.graph_recommend
    assert (
        section.external_data == "recommend.onnx.data"
        and section.retrieve.external_data == "retrieve.onnx.data"
    )
    assert {"recommend.onnx.data", "retrieve.onnx.data"} <= set(bundle.manifest.files)
    small = export_small(model, tmp_path / "inline")
    pd.testing.assert_frame_equal(
        recommend(path, k=4, device="cpu"), recommend(small, k=4, device="cpu")
    )
