"""The one place a bundle's :class:`~recmodels.bundle.Manifest` is assembled (exporter and test factory).

:func:`build_manifest` turns what a writer knows (the model's config, the saved graph(s), the
encoders, the run's data section and metrics, the parity results) into a ``Manifest``;
:func:`recmodels.bundle.finalize_bundle` then adds the checksums and writes it. Neither torch
nor onnx is imported here: the graphs are read through their ``ModelProto`` attributes.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence

import numpy as np

from .. import __version__
from ..bundle import (
    ID_FILES,
    MODEL_FILE,
    RANK_ALL_FILE,
    RAW_IDS_FILE,
    RECOMMEND_FILE,
    RETRIEVE_FILE,
    GraphSection,
    IdMap,
    IdsSection,
    InitializerInfo,
    Manifest,
    ModelSection,
    ParitySection,
    RankAllGraphSection,
    RatingSection,
    RawIdGraphSection,
    RecommendGraphSection,
    RecommendParity,
    RetrieveGraphSection,
    TensorInfo,
)
from ..bundle.manifest import PriorSection
from ..encoders import IdEncoder
from .graph import INPUTS, ML_DOMAIN, ML_OPSET, OUTPUTS, RAW_OUTPUTS, raw_id_inputs
from .recommend_graph import RECOMMEND_INPUTS, RECOMMEND_OUTPUTS


def library_versions(*, torch: bool = True) -> dict[str, str]:
    """The ``versions`` section: recmodels, onnx, onnxruntime, numpy (and torch unless ``torch=False``)."""
    import onnx
    import onnxruntime

    versions = {
        "recmodels": __version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }
    if torch:
        import torch as _torch

        versions["torch"] = _torch.__version__
    return versions


def metrics_section(metrics: Mapping | None) -> dict:
    """``{"train", "valid", "test", "best_epoch"}`` from a run's ``metrics.json`` (missing parts omitted).

    ``train`` is the best epoch's ``train_*`` figures from ``history`` (the last epoch's when
    ``best_epoch`` is not in it).
    """
    metrics = metrics or {}
    out = {}
    history = metrics.get("history") or []
    best = metrics.get("best_epoch")
    row = next((h for h in history if h.get("epoch") == best), history[-1] if history else None)
    if row:
        train = {k[len("train_") :]: row[k] for k in row if k.startswith("train_")}
        if train:
            out["train"] = train
    for split in ("valid", "test"):
        if isinstance(metrics.get(split), dict):
            out[split] = dict(metrics[split])
    if best is not None:
        out["best_epoch"] = best
    return out


def _opset(graph) -> int:
    return next(int(o.version) for o in graph.opset_import if o.domain in ("", "ai.onnx"))


def _tensors(specs) -> list[TensorInfo]:
    return [TensorInfo(name=io["name"], dtype=io["dtype"], shape=list(io["shape"])) for io in specs]


def build_manifest(
    *,
    model_config: Mapping,
    folded: bool,
    folding: Sequence[str],
    graph,
    graph_bytes: int,
    external_data: str | None,
    user_encoder: IdEncoder,
    item_encoder: IdEncoder,
    data: Mapping,
    global_mean: float,
    fallback_score: float,
    parity: Mapping,
    versions: Mapping[str, str],
    metrics: Mapping | None = None,
    source: Mapping | None = None,
    raw_graph=None,
    raw_external_data: str | None = None,
    recommend: Mapping | None = None,
    created_at: str | None = None,
    prior: Mapping | None = None,
) -> Manifest:
    """Assemble the manifest of a bundle whose graph(s) have been saved and checked.

    Parameters
    ----------
    model_config : mapping
        ``ModelConfig.to_dict()`` (its ``kind`` is ``model.kind``).
    folded : bool
        Whether the graph was folded; ``folding`` the notes on what was done.
    graph : onnx.ModelProto
        The scoring graph as saved (its opset, IR version and initializers are recorded).
    graph_bytes : int
        Total initializer bytes, counted before saving (external data empties the tensors).
    external_data : str or None
        The external-data file :func:`~recmodels.export.graph.save_graph` wrote.
    user_encoder, item_encoder : IdEncoder
        The id maps (dtype and count).
    data : mapping
        The run config's ``data`` section: ``user_col``, ``item_col``, ``rating_col``,
        ``rating_min``, ``rating_max``, ``rating_step`` (missing columns default to ``user_id``,
        ``item_id``, ``rating``; missing bounds to null; a missing step is left out).
    global_mean, fallback_score : float
        ``rating.global_mean`` and the score of unknown ids.
    parity : mapping
        :func:`~recmodels.export.parity.check_parity`'s result, with ``raw_ids`` when there is a
        raw-id graph.
    versions : mapping
        :func:`library_versions`.
    metrics : mapping, optional
        The run's ``metrics.json`` (condensed by :func:`metrics_section`).
    source : mapping, optional
        Where the model came from (``{"run_dir": ...}``).
    raw_graph : onnx.ModelProto, optional
        The raw-id graph (``model_ids.onnx``) as saved, with ``raw_external_data``.
    recommend : mapping, optional
        The saved and checked recommend graphs: ``{"graph", "bytes", "external_data",
        "item_multiple", "retrieve": {"bytes", "external_data"} or None, "parity":
        check_recommend_parity's result}`` (``graph_recommend``).
    created_at : str, optional
        ISO 8601 time; default now (UTC, seconds).
    prior : mapping, optional
        The ``prior`` section (:meth:`~recmodels.export.prior.PriorExport.section`).

    Returns
    -------
    Manifest
        Without ``files`` and ``manifest_sha256`` (:func:`~recmodels.bundle.finalize_bundle`).
    """
    raw_section = None
    if raw_graph is not None:
        raw_section = RawIdGraphSection(
            file=RAW_IDS_FILE,
            opset=_opset(raw_graph),
            opset_import={"ai.onnx": _opset(raw_graph), ML_DOMAIN: ML_OPSET},
            ir_version=int(raw_graph.ir_version),
            inputs=_tensors(raw_id_inputs(user_encoder.kind_, item_encoder.kind_)),
            outputs=_tensors(RAW_OUTPUTS),
            external_data=raw_external_data,
            fallback_score=float(np.float32(fallback_score)),
        )
    recommend_section = None
    if recommend is not None:
        retrieve = recommend["retrieve"]
        recommend_section = RecommendGraphSection(
            file=RECOMMEND_FILE,
            opset=_opset(recommend["graph"]),
            ir_version=int(recommend["graph"].ir_version),
            inputs=_tensors(RECOMMEND_INPUTS),
            outputs=_tensors(RECOMMEND_OUTPUTS),
            external_data=recommend["external_data"],
            initializer_bytes=int(recommend["bytes"]),
            item_multiple=int(recommend["item_multiple"]),
            retrieve=None if retrieve is None else RetrieveGraphSection(
                file=RETRIEVE_FILE, external_data=retrieve["external_data"],
                initializer_bytes=int(retrieve["bytes"]),
            ),
            rank_all=None if recommend.get("rank_all") is None else RankAllGraphSection(
                file=RANK_ALL_FILE, external_data=recommend["rank_all"]["external_data"],
                initializer_bytes=int(recommend["rank_all"]["bytes"]),
            ),
            parity=RecommendParity.from_dict(dict(recommend["parity"]), where="recommend parity result"),
        )
    ids = {
        role: IdMap(column=data.get(f"{role}_col", f"{role}_id"), dtype=encoder.kind_, count=len(encoder),
                    file=ID_FILES[role])
        for role, encoder in (("user", user_encoder), ("item", item_encoder))
    }
    return Manifest(
        model=ModelSection(
            kind=model_config["kind"], config=dict(model_config), folded=bool(folded), folding=list(folding)
        ),
        graph=GraphSection(
            file=MODEL_FILE,
            opset=_opset(graph),
            ir_version=int(graph.ir_version),
            inputs=_tensors(INPUTS),
            outputs=_tensors(OUTPUTS),
            external_data=external_data,
            initializer_bytes=int(graph_bytes),
            initializers=[InitializerInfo(name=t.name, shape=list(t.dims)) for t in graph.graph.initializer],
        ),
        graph_raw_ids=raw_section,
        graph_recommend=recommend_section,
        prior=None if prior is None else PriorSection.from_dict(dict(prior), where="prior section"),
        ids=IdsSection(**ids),
        rating=RatingSection(
            column=data.get("rating_col", "rating"),
            min=data.get("rating_min"),
            max=data.get("rating_max"),
            global_mean=global_mean,
            step=data.get("rating_step"),
        ),
        fallback_score=fallback_score,
        metrics=metrics_section(metrics),
        versions=dict(versions),
        parity=ParitySection.from_dict(dict(parity), where="parity result"),
        source=dict(source or {}),
        created_at=created_at or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
