"""recmodels.export: folding, the ONNX graph, parity, the bundle it writes and tampering."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
ort.set_default_logger_severity(3)

from recmodels.bundle import FORMAT_VERSION, Bundle, Manifest, manifest_digest  # noqa: E402
from recmodels.encoders import IdEncoder  # noqa: E402
from recmodels.errors import BundleError, ConfigError, OutputError, ParityError  # noqa: E402
from recmodels.export import export_model, fold  # noqa: E402
from recmodels.export.parity import cpu_session, torch_scores  # noqa: E402
from recmodels.export.spec import extract_spec  # noqa: E402
from recmodels.models import ModelConfig, build_model  # noqa: E402

KINDS = ("mf", "neumf", "hybrid")
N_USERS, N_ITEMS = 37, 23
DATA = {
    "user_col": "user_id", "item_col": "book_id", "rating_col": "rating",
    "rating_min": 1.0, "rating_max": 5.0, "global_mean": 3.75,
}
FAST = {"parity_pairs": 2000}  # the default 10,000 is exercised by the CLI tests


def make_model(kind: str, seed: int = 0, n_users: int = N_USERS, n_items: int = N_ITEMS, **kw):
    """A small model with non-trivial weights everywhere (biases, pretrained table)."""
    torch.manual_seed(seed)
    config = ModelConfig(
        kind, n_users=n_users, n_items=n_items, embedding_dim=8, num_layers=3,
        dropouts=(0.5, 0.3, 0.3), pretrained_dim=6 if kind == "hybrid" else 0,
        global_mean=DATA["global_mean"], **kw,
    )
    model = build_model(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
        if kind == "hybrid":
            model.item_pretrained.normal_()
    return model.eval()


def make_encoders(n_users: int = N_USERS, n_items: int = N_ITEMS):
    users = IdEncoder("user").fit(np.arange(n_users, dtype=np.int64) * 7 + 1000)
    items = IdEncoder("item").fit([f"book-{i:03d}" for i in range(n_items)])
    return users, items


def export_small(model, out, **kw) -> Path:
    users, items = make_encoders(model.config.n_users, model.config.n_items)
    return export_model(model, users, items, out, data=DATA, **{**FAST, **kw})


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def averaged_model(model):
    """``model`` with one more user and item: the mean of the trained rows of every table.

    The torch reference of the bundle's prior rows (index ``n_users`` / ``n_items``), built
    without the exporter's code.
    """
    c = model.config
    bigger = make_model(c.kind, n_users=c.n_users + 1, n_items=c.n_items + 1)
    state = {}
    for name, value in model.state_dict().items():
        n = {"user": c.n_users, "item": c.n_items}.get(name.split("_")[0])
        if n is not None and value.ndim == 2 and value.shape[0] == n:
            value = torch.cat([value, value.double().mean(0, keepdim=True).to(value.dtype)])
        state[name] = value
    bigger.load_state_dict(state)
    return bigger.eval()


# -- folding (numpy) -----------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_spec_reproduces_torch_and_fold_is_exact(kind):
    model = make_model(kind)
    spec = extract_spec(model)
    rng = np.random.default_rng(1)
    u = rng.integers(0, N_USERS, 500)
    i = rng.integers(0, N_ITEMS, 500)
    expected = torch_scores(model, u, i).astype(np.float64)
    assert np.max(np.abs(spec.score(u, i) - expected)) < 1e-5
    folded = fold(spec)
    assert np.max(np.abs(folded.score(u, i) - spec.score(u, i))) < 1e-10
    if kind != "mf":
        first_out = model.config.mlp_layer_sizes[1]
        assert folded.user_first.shape == (N_USERS, first_out)
        assert folded.item_first.shape == (N_ITEMS, first_out)
        assert first_out <= model.config.mlp_embedding_dim
        assert len(folded.rest_layers) == model.config.num_layers - 1


def test_fold_without_biases():
    model = make_model("neumf", use_bias=False)
    spec = extract_spec(model)
    folded = fold(spec)
    # no user bias: only the GMF columns and the (user 1 x item scalar) column
    assert folded.user_dot.shape[1] == model.config.embedding_dim + 1
    u, i = np.arange(N_USERS) % N_USERS, np.arange(N_USERS) % N_ITEMS
    assert np.max(np.abs(folded.score(u, i) - spec.score(u, i))) < 1e-10


# -- round trip ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """One folded and one unfolded bundle per kind, with the models that made them."""
    root = tmp_path_factory.mktemp("bundles")
    out = {}
    for kind in KINDS:
        model = make_model(kind)
        for folded in (True, False):
            path = export_small(model, root / f"{kind}-{'f' if folded else 'u'}", fold=folded)
            out[kind, folded] = (model, path)
    return out


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("folded", [True, False])
def test_round_trip_scores_match_torch(bundles, kind, folded):
    model, path = bundles[kind, folded]
    bundle = Bundle.load(path)
    m = bundle.manifest
    assert isinstance(m, Manifest)
    assert m.model.kind == kind and m.model.folded is folded
    assert m.parity.passed and m.parity.max_abs_diff <= 1e-5
    assert m.parity.batch_sizes == [1, 2, 7, 4096] and m.parity.reference is None
    session = cpu_session(bundle.model_path)
    rng = np.random.default_rng(7)
    u = rng.integers(0, N_USERS, 300)
    i = rng.integers(0, N_ITEMS, 300)
    expected = torch_scores(model, u, i)
    for batch in (1, 2, 7, 64, 300):
        got = np.concatenate([
            session.run(["score"], {"user_index": u[s:s + batch], "item_index": i[s:s + batch]})[0]
            for s in range(0, 300, batch)
        ])
        assert got.dtype == np.float32 and got.shape == (300,)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_check_parity_is_what_the_manifest_records(bundles):
    from recmodels.export import check_parity

    model, path = bundles["neumf", True]
    result = check_parity(model, path / "model.onnx", n_pairs=2000)
    assert result == Bundle.load(path).manifest.parity.to_dict()
    other = make_model("neumf", seed=5)
    with pytest.raises(ParityError, match=r"max \|onnx - torch\| = .* exceeds tolerance"):
        check_parity(other, path / "model.onnx", n_pairs=50)


def test_graph_interface_and_manifest(bundles):
    _, path = bundles["hybrid", True]
    graph = onnx.load(str(path / "model.onnx"))
    onnx.checker.check_model(graph, full_check=True)
    assert [x.name for x in graph.graph.input] == ["user_index", "item_index"]
    assert [x.name for x in graph.graph.output] == ["score"]
    for value in list(graph.graph.input) + list(graph.graph.output):
        dims = value.type.tensor_type.shape.dim
        assert len(dims) == 1 and dims[0].dim_param == "batch"
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert graph.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {o.domain: o.version for o in graph.opset_import} == {"": 17}
    assert not any(n.op_type == "Dropout" for n in graph.graph.node)

    bundle = Bundle.load(path)
    m = bundle.manifest.to_dict()
    assert m["graph"]["opset"] == 17 and m["graph"]["file"] == "model.onnx"
    assert m["graph"]["inputs"][0] == {"name": "user_index", "dtype": "int64", "shape": ["batch"]}
    assert m["graph"]["outputs"] == [{"name": "score", "dtype": "float32", "shape": ["batch"]}]
    assert m["graph"]["external_data"] is None
    assert m["graph"]["initializers"] == [
        {"name": t.name, "shape": list(t.dims)} for t in graph.graph.initializer
    ]
    assert m["ids"]["user"] == {
        "column": "user_id", "dtype": "int64", "count": N_USERS, "file": "user_ids.parquet",
    }
    assert m["ids"]["item"]["dtype"] == "string" and m["ids"]["item"]["column"] == "book_id"
    assert m["rating"] == {"column": "rating", "min": 1.0, "max": 5.0, "global_mean": 3.75}
    assert m["fallback_score"] == 3.75
    assert set(m["versions"]) >= {"recmodels", "torch", "onnx", "onnxruntime"}
    assert m["created_at"].endswith("+00:00")
    assert sorted(m["files"]) == [  # hybrid: fold_item_content.npy (new items from their vectors)
        "fold_item_content.npy", "fold_item_vectors.npy", "fold_user_vectors.npy", "item_ids.parquet",
        "model.onnx",
        "rank_all.onnx", "recommend.onnx", "retrieve.onnx", "user_ids.parquet",
    ]
    # the prior rows follow the trained ones; no training rows were given, so no counts
    prior = m["prior"]
    assert (prior["user_row"], prior["item_row"]) == (N_USERS, N_ITEMS)
    assert prior["definition"] == "mean of the trained rows" and 0 <= prior["max_abs_diff"] <= 1e-5
    assert prior["fold_in"]["files"] == {"user_vectors": "fold_user_vectors.npy",
                                         "item_vectors": "fold_item_vectors.npy",
                                         "item_content": "fold_item_content.npy"}
    assert prior["fold_in"]["rank"] == 8 and prior["fold_in"]["source"] == "empirical"
    assert len(prior["fold_in"]["user_precision"]) == len(prior["fold_in"]["item_precision"]) == 9
    assert all(x > 0 for x in prior["fold_in"]["user_precision"] + prior["fold_in"]["item_precision"])
    assert np.load(path / "fold_user_vectors.npy").shape == (N_USERS + 1, 8)
    assert np.load(path / "fold_item_vectors.npy").shape == (N_ITEMS + 1, 8)
    assert "graph_raw_ids" not in m and "reference" not in m["parity"]
    # the typed view reads the same values, and the manifest's digest is the bundle's
    assert bundle.manifest.graph.inputs[0].name == "user_index" and bundle.manifest.ids.user.count == N_USERS
    assert bundle.digest == m["manifest_sha256"] == manifest_digest(m)
    on_disk = json.loads((path / "manifest.json").read_text())
    assert on_disk == m


@pytest.mark.parametrize("folded", [False, True])
def test_hybrid_pretrained_table_is_in_the_graph(bundles, folded):
    from onnx import numpy_helper

    model, path = bundles["hybrid", folded]
    graph = onnx.load(str(path / "model.onnx")).graph
    tables = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    trained = model.item_pretrained.numpy()
    assert tables["item_pretrained"].shape == (N_ITEMS + 1, trained.shape[1])
    np.testing.assert_array_equal(tables["item_pretrained"][:N_ITEMS], trained)
    # the prior item's pretrained vector is the mean of the trained items'
    np.testing.assert_allclose(tables["item_pretrained"][N_ITEMS], trained.astype(np.float64).mean(0),
                               rtol=0, atol=1e-7)


def test_folded_hybrid_tables(bundles):
    _, folded = bundles["hybrid", True]
    m = Bundle.load(folded).manifest
    assert any("item_pretrained" in note for note in m.model.folding)
    init = {t.name: list(t.dims) for t in onnx.load(str(folded / "model.onnx")).graph.initializer}
    # one prior row after the trained rows of every table
    assert init["item_table"][0] == N_ITEMS + 1 and init["user_table"][0] == N_USERS + 1
    assert init["user_mlp_table"] == [N_USERS + 1, 32]  # width of the first MLP layer's output
    assert init["item_mlp_table"] == [N_ITEMS + 1, 32]
    # the recommend graphs rank real items only: a user prior row, no item prior row
    for name in ("recommend.onnx", "retrieve.onnx"):
        init = {t.name: list(t.dims) for t in onnx.load(str(folded / name)).graph.initializer}
        assert init["user_table"][0] == N_USERS + 1 and init["item_table"][0] == N_ITEMS, name


def test_bundle_loads_without_torch_or_sklearn(bundles, tmp_path):
    """A fresh interpreter that cannot import torch/sklearn opens and scores every bundle."""
    paths = {f"{k}-{f}": str(p) for (k, f), (_, p) in bundles.items()}
    script = textwrap.dedent(
        f"""
        import sys, json
        sys.modules["torch"] = None
        sys.modules["sklearn"] = None
        import numpy as np, onnxruntime as ort
        ort.set_default_logger_severity(3)
        from recmodels.bundle import Bundle
        out = {{}}
        for key, path in {paths!r}.items():
            b = Bundle.load(path)
            s = ort.InferenceSession(str(b.model_path), providers=["CPUExecutionProvider"])
            u = b.user_encoder.transform(b.user_encoder.classes_[:5])
            i = b.item_encoder.transform(b.item_encoder.classes_[-5:])
            out[key] = s.run(["score"], {{"user_index": u, "item_index": i}})[0].tolist()
        assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
        print(json.dumps(out))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    scores = json.loads(proc.stdout.strip().splitlines()[-1])
    for (kind, folded), (model, _) in bundles.items():
        expected = torch_scores(model, np.arange(5), np.arange(N_ITEMS - 5, N_ITEMS))
        np.testing.assert_allclose(scores[f"{kind}-{folded}"], expected, atol=1e-5, rtol=0)


# -- options ---------------------------------------------------------------------------------
def test_external_data(tmp_path):
    model = make_model("hybrid", seed=3)
    path = export_small(model, tmp_path / "ext", external_data_threshold=0)
    assert (path / "model.onnx.data").is_file()
    bundle = Bundle.load(path)
    assert bundle.manifest.graph.external_data == "model.onnx.data"
    assert "model.onnx.data" in bundle.manifest.files
    assert (path / "model.onnx").stat().st_size < (path / "model.onnx.data").stat().st_size
    u, i = np.arange(N_USERS) % N_USERS, np.arange(N_USERS) % N_ITEMS
    got = cpu_session(bundle.model_path).run(["score"], {"user_index": u, "item_index": i})[0]
    np.testing.assert_allclose(got, torch_scores(model, u, i), atol=1e-5, rtol=0)
    # the data file is covered by the checksums
    data = path / "model.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[10] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="model.onnx.data: sha256 mismatch"):
        Bundle.load(path)


@pytest.mark.parametrize("opset", [13, 21])
def test_other_opsets(tmp_path, opset):
    path = export_small(make_model("neumf"), tmp_path / "b", opset=opset)
    graph = onnx.load(str(path / "model.onnx"))
    assert {o.domain: o.version for o in graph.opset_import} == {"": opset}
    assert Bundle.load(path).manifest.graph.opset == opset


@pytest.mark.parametrize("opset", [7, 12, 99])
def test_unsupported_opset(tmp_path, opset):
    with pytest.raises(ConfigError, match="opset"):
        export_small(make_model("mf"), tmp_path / "b", opset=opset)
    assert not (tmp_path / "b").exists()


def test_fallback_score_and_metrics(tmp_path):
    users, items = make_encoders()
    metrics = {
        "history": [
            {"epoch": 1, "train_mse": 1.0, "train_rmse": 1.0, "valid_mse": 1.2, "valid_rmse": 1.1},
            {"epoch": 2, "train_mse": 0.81, "train_rmse": 0.9, "valid_mse": 1.0, "valid_rmse": 1.0},
        ],
        "best_epoch": 2,
        "valid": {"rmse": 1.0, "mse": 1.0},
        "test": {"rmse": 1.01, "mae": 0.8, "mse": 1.0201, "hit_accuracy": 0.5, "n": 100},
    }
    path = export_model(make_model("mf"), users, items, tmp_path / "b", data=DATA, metrics=metrics,
                        fallback_score=4.0, **FAST)
    bundle = Bundle.load(path)
    assert bundle.fallback_score == 4.0
    assert bundle.manifest.metrics["train"] == {"mse": 0.81, "rmse": 0.9}
    assert bundle.manifest.metrics["test"]["rmse"] == 1.01
    assert bundle.manifest.metrics["best_epoch"] == 2
    text = bundle.summary()
    assert "rmse 1.0100" in text and "fallback      4.0" in text
    assert "parity        max |onnx - torch|" in text and "(folded)" in text


def test_existing_output_refused_then_overwritten(tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(OutputError, match="already exists"):
        export_small(make_model("mf"), out)
    assert (out / "keep.txt").exists()
    export_small(make_model("mf"), out, overwrite=True)
    assert not (out / "keep.txt").exists()
    Bundle.load(out)
    assert leftovers(tmp_path) == []


def test_parity_failure_leaves_nothing(tmp_path, monkeypatch):
    import recmodels.export.api as export

    other = make_model("neumf", seed=99)
    real = export.build_graph
    monkeypatch.setattr(export, "build_graph", lambda model, **kw: real(other, **kw))
    with pytest.raises(ParityError, match="parity check failed") as info:
        export_small(make_model("neumf"), tmp_path / "b")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "b").exists()
    assert leftovers(tmp_path) == []


def test_encoder_size_mismatch(tmp_path):
    users, items = make_encoders(N_USERS + 1, N_ITEMS)
    with pytest.raises(ConfigError, match="encoders have"):
        export_model(make_model("mf"), users, items, tmp_path / "b", data=DATA, **FAST)


# -- tampering -------------------------------------------------------------------------------
def _flip_byte(path: Path, offset: int = 20) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def _edit_manifest(path: Path, change, *, redigest: bool) -> None:
    manifest_path = path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    change(manifest)
    if redigest:
        manifest["manifest_sha256"] = manifest_digest(manifest)
    manifest_path.write_text(json.dumps(manifest))


TAMPER = {
    "corrupt onnx": (lambda p: _flip_byte(p / "model.onnx"), "model.onnx: sha256 mismatch"),
    "truncated parquet": (
        lambda p: (p / "item_ids.parquet").write_bytes((p / "item_ids.parquet").read_bytes()[:-9]),
        "item_ids.parquet: size",
    ),
    "edited manifest": (
        lambda p: _edit_manifest(p, lambda m: m.update(fallback_score=5.0), redigest=False),
        "manifest was modified",
    ),
    "missing file": (lambda p: (p / "user_ids.parquet").unlink(), "user_ids.parquet: missing"),
    "newer format": (
        lambda p: _edit_manifest(
            p, lambda m: m.update(format_version=FORMAT_VERSION + 1), redigest=True
        ),
        "format version",
    ),
}


@pytest.mark.parametrize("case", sorted(TAMPER))
def test_tampered_bundle_is_refused(tmp_path, case):
    path = export_small(make_model("mf", n_users=5, n_items=4), tmp_path / "b")
    Bundle.load(path)
    damage, message = TAMPER[case]
    damage(path)
    with pytest.raises(BundleError) as info:
        Bundle.load(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# -- raw-id graph (embed_encoders) ----------------------------------------------------------------
def _raw_session(path: Path):
    bundle = Bundle.load(path)
    return bundle, cpu_session(bundle.raw_ids_model_path)


@pytest.mark.parametrize("kind", KINDS)
def test_embed_encoders_scores_raw_ids(tmp_path, kind):
    model = make_model(kind)
    path = export_small(model, tmp_path / "b", embed_encoders=True, fallback_score=2.5)
    bundle, session = _raw_session(path)
    m = bundle.manifest.to_dict()
    assert "model_ids.onnx" in m["files"] and bundle.raw_ids_model_path == path / "model_ids.onnx"
    raw = m["graph_raw_ids"]
    assert raw["file"] == "model_ids.onnx" and raw["opset_import"] == {"ai.onnx": 17, "ai.onnx.ml": 2}
    assert raw["inputs"] == [
        {"name": "user_id", "dtype": "int64", "shape": ["batch"]},
        {"name": "item_id", "dtype": "string", "shape": ["batch"]},
    ]
    assert [o["name"] for o in raw["outputs"]] == ["score", "known"]
    assert m["parity"]["raw_ids"]["passed"] and m["parity"]["raw_ids"]["max_abs_diff"] <= 1e-6

    graph = onnx.load(str(path / "model_ids.onnx"))
    onnx.checker.check_model(graph, full_check=True)
    assert {o.domain: o.version for o in graph.opset_import} == {"": 17, "ai.onnx.ml": 2}
    types = {x.name: x.type.tensor_type.elem_type for x in list(graph.graph.input) + list(graph.graph.output)}
    assert types == {"user_id": onnx.TensorProto.INT64, "item_id": onnx.TensorProto.STRING,
                     "score": onnx.TensorProto.FLOAT, "known": onnx.TensorProto.BOOL}
    # every Gather reads an index that went through Where(known, ., 0)
    where_out = {n.output[0] for n in graph.graph.node if n.op_type == "Where"}
    assert all(n.input[1] in where_out for n in graph.graph.node if n.op_type == "Gather")

    users, items = bundle.user_encoder.classes_, bundle.item_encoder.classes_
    rng = np.random.default_rng(3)
    u = rng.integers(0, N_USERS, 60)
    i = rng.integers(0, N_ITEMS, 60)
    uid, iid = users[u].astype(np.int64), items[i].astype(object)
    # unknown users (between ids, below, above), unknown items, both
    uid[5], uid[6], uid[7] = 1001, -3, users[-1] + 7
    iid[8], iid[9] = "book-999", ""
    uid[10], iid[10] = 999, "nope"
    unknown = np.zeros(60, dtype=bool)
    unknown[5:11] = True
    both = np.zeros(60, dtype=bool)
    both[10] = True
    # one unknown side: the model's score with that side's prior row (index n); both: the fallback
    prior_u, prior_i = u.copy(), i.copy()
    prior_u[5:8] = N_USERS
    prior_i[8:10] = N_ITEMS
    expected = torch_scores(averaged_model(model), prior_u, prior_i)
    np.testing.assert_allclose(expected[~unknown], torch_scores(model, u, i)[~unknown], atol=1e-6, rtol=0)
    model_session = cpu_session(bundle.model_path)
    for batch in (1, 7, 60):
        got, known = [], []
        for s in range(0, 60, batch):
            feed = {"user_id": uid[s:s + batch], "item_id": iid[s:s + batch]}
            score, k = session.run(["score", "known"], feed)
            got.append(score)
            known.append(k)
        got, known = np.concatenate(got), np.concatenate(known)
        assert got.dtype == np.float32 and known.dtype == bool
        np.testing.assert_array_equal(known, ~unknown)
        np.testing.assert_array_equal(got[both], np.float32(2.5))
        assert np.all(got[unknown & ~both] != np.float32(2.5))
        np.testing.assert_allclose(got[~both], expected[~both], atol=1e-5, rtol=0)
        if batch == 1:  # one pair at a time: the same subgraph on the same index as model.onnx
            plain = np.concatenate([
                model_session.run(["score"], {"user_index": u[s:s + 1], "item_index": i[s:s + 1]})[0]
                for s in range(60)
            ])
            np.testing.assert_allclose(got[~unknown], plain[~unknown], atol=1e-6, rtol=0)


def test_embed_encoders_string_users_int_items(tmp_path):
    model = make_model("neumf", n_users=9, n_items=5)
    users = IdEncoder("user").fit([f"u{k}" for k in range(9)])
    items = IdEncoder("item").fit(np.arange(5, dtype=np.int64) * 100)
    path = export_model(model, users, items, tmp_path / "b", data=DATA, embed_encoders=True, **FAST)
    bundle, session = _raw_session(path)
    assert [io.dtype for io in bundle.manifest.graph_raw_ids.inputs] == ["string", "int64"]
    uid = np.array(["u3", "u99", "u0", "u98"], dtype=object)
    iid = np.array([400, 0, 50, 7], dtype=np.int64)
    score, known = session.run(["score", "known"], {"user_id": uid, "item_id": iid})
    assert known.tolist() == [True, False, False, False]
    assert score[3] == np.float32(3.75)  # both sides unknown: the training mean
    # u99 with item 0: the prior user; u0 with item 50: the prior item (index 5)
    u3, u0 = users.transform(["u3", "u0"])
    expected = torch_scores(averaged_model(model), np.array([u3, 9, u0]), np.array([4, 0, 5]))
    np.testing.assert_allclose(score[:3], expected, atol=1e-5, rtol=0)
    # the plain bundle has no raw-id graph
    plain = export_model(model, users, items, tmp_path / "p", data=DATA, **FAST)
    assert Bundle.load(plain).raw_ids_model_path is None
    assert "model_ids.onnx" not in Bundle.load(plain).manifest.files
    assert Bundle.load(plain).manifest.graph_raw_ids is None


def test_embed_encoders_parity_failure_leaves_nothing(tmp_path, monkeypatch):
    import recmodels.export.writer as export
    from recmodels.export.graph import build_raw_ids

    def off_by_one(scoring, users, items, fallback, **kw):  # unknown ids scored wrong
        return build_raw_ids(scoring, users, items, fallback + 1.0, **kw)

    monkeypatch.setattr(export, "build_raw_ids", off_by_one)
    with pytest.raises(ParityError, match="raw-id parity check failed") as info:
        export_small(make_model("mf"), tmp_path / "b", embed_encoders=True)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "b").exists() and leftovers(tmp_path) == []


def test_embed_encoders_checksummed(tmp_path):
    path = export_small(make_model("mf", n_users=5, n_items=4), tmp_path / "b", embed_encoders=True)
    _flip_byte(path / "model_ids.onnx", offset=40)
    with pytest.raises(BundleError, match="model_ids.onnx: sha256 mismatch"):
        Bundle.load(path)
