"""Build the ONNX scoring graph directly with ``onnx.helper`` (no torch needed here).

The graphs only use Gather, Mul, Add, Relu, Concat, MatMul, Gemm, ReduceSum and Reshape,
so the opset is simply pinned (:data:`DEFAULT_OPSET`); names, initializers and external
data are fully under our control. Both graphs take ``user_index`` and ``item_index``
(int64 [batch]) and return ``score`` (float32 [batch]).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..bundle.graph_contract import ITEM_ID, ITEM_INDEX, KNOWN, SCORE, USER_ID, USER_INDEX
from ..errors import ConfigError
from .folding import FoldedSpec, ScoreSpec, fold

DEFAULT_OPSET = 17
MAX_OPSET = 23
MIN_OPSET = 13  # ReduceSum/Squeeze take axes as an input from 13 on; the graphs rely on that
EXTERNAL_DATA_THRESHOLD = (1 << 31) - (1 << 26)
"""Initializer bytes above which the weights go to ``model.onnx.data`` (protobuf caps at 2 GiB)."""

INPUTS = (
    {"name": USER_INDEX, "dtype": "int64", "shape": ["batch"]},
    {"name": ITEM_INDEX, "dtype": "int64", "shape": ["batch"]},
)
OUTPUTS = ({"name": SCORE, "dtype": "float32", "shape": ["batch"]},)
PRODUCER = "recmodels"

ML_DOMAIN = "ai.onnx.ml"
ML_OPSET = 2
"""ai.onnx.ml opset of the raw-id graph: LabelEncoder-2 takes ``keys_int64s``/``keys_strings`` with
``values_int64s`` and ``default_int64`` (onnxruntime's CPU EP implements 2-3 and 4+)."""
RAW_OUTPUTS = (
    {"name": SCORE, "dtype": "float32", "shape": ["batch"]},
    {"name": KNOWN, "dtype": "bool", "shape": ["batch"]},
)


def check_opset(opset: int) -> int:
    """Return ``opset`` if this onnx and onnxruntime support it, else raise :class:`ConfigError`."""
    import onnx

    # onnxruntime trails onnx; 23 is what onnxruntime 1.2x+ implements for these ops
    highest = min(onnx.defs.onnx_opset_version(), MAX_OPSET)
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= highest:
        raise ConfigError(
            f"--opset {opset} is not supported; choose an opset from {MIN_OPSET} to {highest} "
            f"(default {DEFAULT_OPSET})"
        )
    return opset


_ELEMENT_TYPES = {"int64": "INT64", "float32": "FLOAT", "bool": "BOOL", "string": "STRING"}


def _value_info(io: dict):
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(io["name"], getattr(TensorProto, _ELEMENT_TYPES[io["dtype"]]),
                                         list(io["shape"]))


class _Builder:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self, reserved=None):
        self.nodes = []
        self.initializers = []
        self._used: set[str] = set(reserved or (USER_INDEX, ITEM_INDEX, SCORE))

    def _name(self, hint: str) -> str:
        name, n = hint, 1
        while name in self._used:
            n += 1
            name = f"{hint}_{n}"
        self._used.add(name)
        return name

    def init(self, name: str, array, dtype=np.float32) -> str:
        from onnx import numpy_helper

        name = self._name(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, output: str | None = None, **attrs) -> str:
        from onnx import helper

        out = output or self._name(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"{op_type}_{out}", **attrs))
        return out

    def multi(self, op_type: str, inputs: list[str], hints: tuple[str, ...], outputs=None,
              **attrs) -> list[str]:
        """A node with several outputs: ``outputs[k]`` names one exactly, else ``hints[k]`` is made unique."""
        from onnx import helper

        outputs = outputs or (None,) * len(hints)
        names = [out or self._name(hint) for hint, out in zip(hints, outputs, strict=True)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=f"{op_type}_{names[-1]}", **attrs))
        return names

    def gather(self, table: str, index: str, hint: str) -> str:
        return self.op("Gather", [table, index], hint, axis=0)

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray, hint: str) -> str:
        w = self.init(f"{hint}.weight", weight)
        b = self.init(f"{hint}.bias", bias)
        return self.op("Gemm", [x, w, b], hint, transB=1)

    def model(self, name: str, opset: int, doc: str, inputs=INPUTS, outputs=OUTPUTS):
        """The ``ModelProto``; ``inputs``/``outputs`` as ``{"name", "dtype", "shape"}`` dicts."""
        from onnx import helper

        inputs = [_value_info(io) for io in inputs]
        outputs = [_value_info(io) for io in outputs]
        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.initializers)
        from .. import __version__

        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", opset)],
            producer_name=PRODUCER,
            producer_version=__version__,
            doc_string=doc,
        )
        # the lowest IR version that carries this opset, so older runtimes load the graph
        model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
        return model


def _finish_score(b: _Builder, x: str) -> str:
    """Reshape a [batch, 1] tensor to the [batch] output ``score``."""
    shape = b.init("flat_shape", np.array([-1], dtype=np.int64), dtype=np.int64)
    return b.op("Reshape", [x, shape], "score", output=SCORE)


def build_unfolded(spec: ScoreSpec, opset: int = DEFAULT_OPSET):
    """The model's computation as is (minus dropout): one Gather per table, MLP on the concat."""
    spec.validate()
    b = _Builder()
    parts = []
    for seg in spec.segments:
        if seg == "pretrained":
            table = b.init("item_pretrained", spec.item_pretrained)
            parts.append(b.gather(table, ITEM_INDEX, "pretrained"))
        elif seg == "gmf":
            ut = b.gather(b.init("user_gmf", spec.user_gmf), USER_INDEX, "user_gmf_row")
            it = b.gather(b.init("item_gmf", spec.item_gmf), ITEM_INDEX, "item_gmf_row")
            parts.append(b.op("Mul", [ut, it], "gmf"))
        else:
            ut = b.gather(b.init("user_mlp", spec.user_mlp), USER_INDEX, "user_mlp_row")
            it = b.gather(b.init("item_mlp", spec.item_mlp), ITEM_INDEX, "item_mlp_row")
            h = b.op("Concat", [ut, it], "mlp_in", axis=1)
            for n, layer in enumerate(spec.mlp_layers):
                h = b.linear(h, layer.weight, layer.bias, f"mlp.{n}")
                if layer.relu:
                    h = b.op("Relu", [h], f"mlp.{n}.relu")
            parts.append(h)
    x = parts[0] if len(parts) == 1 else b.op("Concat", parts, "predict_in", axis=1)
    y = b.linear(x, spec.predict_w[None, :], np.array([spec.predict_b]), "predict")
    if spec.global_mean:
        y = b.op("Add", [y, b.init("global_mean", np.array([[spec.global_mean]]))], "plus_mean")
    for side, bias in (("user", spec.user_bias), ("item", spec.item_bias)):
        if bias is not None:
            row = b.gather(b.init(f"{side}_bias", bias[:, None]), f"{side}_index", f"{side}_bias_row")
            y = b.op("Add", [y, row], f"plus_{side}_bias")
    _finish_score(b, y)
    return b.model(f"recmodels_{spec.kind}", opset, f"recmodels {spec.kind} (unfolded)")


def build_folded(folded: FoldedSpec, opset: int = DEFAULT_OPSET):
    """The folded computation (see :class:`~recmodels.export.folding.FoldedSpec`).

    Layout (measured on CPU, docs/benchmarks.md "Scoring throughput"): one Gather per table (a
    combined per-side table gathered once and split again was slower: the Split copies cost more
    than the Gathers saved), and the dot product as ``ReduceSum`` added to one MatMul over the
    MLP output (and the pretrained vector): ~7% less CPU per row than one Concat + MatMul over
    ``[dot, pretrained, h]``, which copied every row once more.
    """
    b = _Builder()
    ud = b.gather(b.init("user_table", folded.user_dot), USER_INDEX, "user_row")
    idt = b.gather(b.init("item_table", folded.item_dot), ITEM_INDEX, "item_row")
    d = b.op("Mul", [ud, idt], "dot")
    # predict = sum(dot) + pretrained_w . item_pretrained[i] + out_w . h
    #         = ReduceSum(dot) + concat[pretrained, h] @ [pretrained_w, out_w]
    parts, weights = [], []
    if folded.item_pretrained is not None:
        table = b.init("item_pretrained", folded.item_pretrained)
        parts.append(b.gather(table, ITEM_INDEX, "pretrained"))
        weights.append(folded.pretrained_w)
    if folded.user_first is not None:
        uf = b.gather(b.init("user_mlp_table", folded.user_first), USER_INDEX, "user_mlp_row")
        itf = b.gather(b.init("item_mlp_table", folded.item_first), ITEM_INDEX, "item_mlp_row")
        h = b.op("Add", [uf, itf], "mlp.0")
        if folded.first_relu:
            h = b.op("Relu", [h], "mlp.0.relu")
        for n, layer in enumerate(folded.rest_layers, start=1):
            h = b.linear(h, layer.weight, layer.bias, f"mlp.{n}")
            if layer.relu:
                h = b.op("Relu", [h], f"mlp.{n}.relu")
        parts.append(h)
        weights.append(folded.out_w)
    axes = b.init("sum_axes", np.array([1], dtype=np.int64), dtype=np.int64)
    if not parts:
        b.op("ReduceSum", [d, axes], "score", output=SCORE, keepdims=0)
    else:
        dot_sum = b.op("ReduceSum", [d, axes], "dot_sum", keepdims=1)
        x = parts[0] if len(parts) == 1 else b.op("Concat", parts, "predict_in", axis=1)
        w = np.concatenate(weights)[:, None]
        y = b.op("MatMul", [x, b.init("predict.weight", w)], "predict")
        y = b.op("Add", [y, dot_sum], "plus_dot")
        _finish_score(b, y)
    return b.model(f"recmodels_{folded.kind}_folded", opset, f"recmodels {folded.kind} (folded)")


def graph_for(spec: ScoreSpec, *, fold_graph: bool = True, opset: int = DEFAULT_OPSET):
    """The scoring graph of ``spec``, folded (:func:`~recmodels.export.folding.fold`) or as is.

    Returns
    -------
    (onnx.ModelProto, list of str)
        The graph and the notes on what was folded (the manifest's ``model.folding``).
    """
    if fold_graph:
        folded = fold(spec)
        return build_folded(folded, opset), folded.notes
    return build_unfolded(spec, opset), ["dropout removed (identity at inference)"]


def raw_id_inputs(user_kind: str, item_kind: str) -> tuple[dict, dict]:
    """The raw-id graph's inputs: ``user_id``/``item_id`` in the training ids' dtype."""
    return (
        {"name": USER_ID, "dtype": user_kind, "shape": ["batch"]},
        {"name": ITEM_ID, "dtype": item_kind, "shape": ["batch"]},
    )


def _label_encoder_attrs(classes, kind: str) -> dict:
    values = np.arange(len(classes), dtype=np.int64).tolist()
    if kind == "int64":
        keys = {"keys_int64s": np.asarray(classes, dtype=np.int64).tolist()}
    elif kind == "string":
        keys = {"keys_strings": [str(c) for c in classes]}
    else:
        raise ConfigError(f"cannot embed a {kind!r} id map; ids must be int64 or string")
    return {**keys, "values_int64s": values, "default_int64": -1}


def build_raw_ids(scoring, user_classes, item_classes, fallback_score: float, *, user_kind: str,
                  item_kind: str, prior_rows: tuple[int, int] | None = None):
    """Wrap a scoring graph (from :func:`build_folded`/:func:`build_unfolded`) to take raw ids.

    ``user_id``/``item_id`` (int64 or string [batch]) go through ai.onnx.ml ``LabelEncoder``
    (id -> position among the sorted classes, ``-1`` when unknown); ``known = (u >= 0) & (i >= 0)``;
    the indices fed to the scoring subgraph are ``Where(known, index, 0)`` so ``-1`` never reaches
    ``Gather`` (which would count it from the end); ``score = Where(known, model_score, fallback)``.
    The scoring subgraph's nodes and initializers are copied unchanged from ``scoring``, which is
    not modified. With ``prior_rows`` (the bundle's prior user and item rows) an unknown side is
    sent as its prior row instead, and only pairs with both sides unknown get the fallback.

    Returns
    -------
    onnx.ModelProto
        Outputs ``score`` (float32 [batch]) and ``known`` (bool [batch]).
    """
    from onnx import NodeProto, TensorProto, helper

    from .. import __version__

    opset = next(o.version for o in scoring.opset_import if o.domain in ("", "ai.onnx"))
    model_score = "raw.model_score"
    nodes = []
    for role, classes, kind in (("user", user_classes, user_kind), ("item", item_classes, item_kind)):
        code = f"raw.{role}_code"
        nodes.append(helper.make_node(
            "LabelEncoder", [f"{role}_id"], [code], name=f"LabelEncoder_{role}", domain=ML_DOMAIN,
            **_label_encoder_attrs(classes, kind),
        ))
        nodes.append(helper.make_node(
            "GreaterOrEqual", [code, "raw.zero"], [f"raw.{role}_known"], name=f"GreaterOrEqual_{role}"
        ))
    nodes.append(helper.make_node("And", ["raw.user_known", "raw.item_known"], [KNOWN], name="And_known"))
    for role in ("user", "item"):
        # the scoring subgraph reads user_index/item_index: only ever valid rows
        inputs = ([KNOWN, f"raw.{role}_code", "raw.zero"] if prior_rows is None
                  else [f"raw.{role}_known", f"raw.{role}_code", f"raw.prior_{role}"])
        nodes.append(helper.make_node("Where", inputs, [f"{role}_index"], name=f"Where_{role}_index"))
    scored = KNOWN
    if prior_rows is not None:
        scored = "raw.any_known"
        nodes.append(helper.make_node("Or", ["raw.user_known", "raw.item_known"], [scored], name="Or_known"))
    for node in scoring.graph.node:
        copy = NodeProto()  # a copy: the scoring graph itself is saved as model.onnx
        copy.CopyFrom(node)
        for k, name in enumerate(copy.output):
            if name == SCORE:
                copy.output[k] = model_score
        for k, name in enumerate(copy.input):
            if name == SCORE:
                copy.input[k] = model_score
        nodes.append(copy)
    nodes.append(
        helper.make_node("Where", [scored, model_score, "raw.fallback"], [SCORE], name="Where_score")
    )

    initializers = [
        helper.make_tensor("raw.zero", TensorProto.INT64, [], [0]),
        helper.make_tensor("raw.fallback", TensorProto.FLOAT, [], [float(np.float32(fallback_score))]),
    ]
    if prior_rows is not None:
        initializers += [helper.make_tensor(f"raw.prior_{role}", TensorProto.INT64, [], [int(row)])
                         for role, row in zip(("user", "item"), prior_rows, strict=True)]
    for tensor in scoring.graph.initializer:
        copy = TensorProto()
        copy.CopyFrom(tensor)
        initializers.append(copy)
    elem = {"int64": TensorProto.INT64, "string": TensorProto.STRING}
    inputs = [
        helper.make_tensor_value_info(io["name"], elem[io["dtype"]], ["batch"])
        for io in raw_id_inputs(user_kind, item_kind)
    ]
    outputs = [
        helper.make_tensor_value_info(SCORE, TensorProto.FLOAT, ["batch"]),
        helper.make_tensor_value_info(KNOWN, TensorProto.BOOL, ["batch"]),
    ]
    name = scoring.graph.name + "_raw_ids"
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(ML_DOMAIN, ML_OPSET)],
        producer_name=PRODUCER,
        producer_version=__version__,
        doc_string=scoring.doc_string + "; raw ids mapped inside (ai.onnx.ml LabelEncoder)",
    )
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    return model


def initializer_bytes(model) -> int:
    """Total bytes of the graph's initializers."""
    return sum(len(t.raw_data) for t in model.graph.initializer)


def save_graph(model, path: str | os.PathLike, *, external_data_threshold: int = EXTERNAL_DATA_THRESHOLD):
    """Check and write ``model`` to ``path``; use external data if the weights are too large.

    Returns
    -------
    str or None
        The external data file name (beside ``path``), or None when everything is inline.
    """
    import onnx

    path = Path(path)
    external = None
    if initializer_bytes(model) > external_data_threshold:
        external = path.name + ".data"
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=external,
            size_threshold=1024,  # small tensors (shapes, axes) stay inline for shape inference
        )
    else:
        onnx.save_model(model, str(path))
    # checking by path handles external data and graphs over 2 GB
    onnx.checker.check_model(str(path), full_check=True)
    return external
