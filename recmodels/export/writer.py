"""Write a bundle from a built graph: save, check parity, copy the id maps, write the manifest.

:func:`write_bundle` is the one path from an ONNX scoring graph to a bundle directory. The
exporter (:func:`~recmodels.export.api.export_model`) calls it with the torch model as the
parity judge; the test factory (``tests/bundle_factory.py``) with its numpy oracle, so the
bundles the scoring tests read are made exactly as exported ones are.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from ..bundle import (
    ITEM_IDS_FILE,
    MODEL_FILE,
    RANK_ALL_FILE,
    RAW_IDS_FILE,
    RECOMMEND_FILE,
    RETRIEVE_FILE,
    USER_IDS_FILE,
    finalize_bundle,
)
from ..encoders import IdEncoder
from ..errors import ConfigError
from ..fileio import atomic_directory
from .graph import EXTERNAL_DATA_THRESHOLD, build_raw_ids, initializer_bytes, save_graph
from .manifest import build_manifest
from .parity import (
    ParityCheck,
    check_raw_id_parity,
    check_reference_parity,
    cpu_session,
    run_pairs,
)
from .prior import PriorExport, check_prior_parity
from .recommend_graph import RecommendGraphs
from .recommend_parity import check_rank_all_parity, check_recommend_parity


def _finite(value, what: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number; got {value!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{what} must be finite; got {value!r}")
    return value


def resolve_scores(data: Mapping, model_config: Mapping, fallback_score: float | None) -> tuple[float, float]:
    """``(global_mean, fallback)``: the data's (else the config's) mean, and the unknown-id score.

    Raises
    ------
    ConfigError
        Either is not a finite number.
    """
    global_mean = _finite(data.get("global_mean", model_config.get("global_mean", 0.0)), "global mean")
    fallback = global_mean if fallback_score is None else _finite(fallback_score, "--fallback-score")
    return global_mean, fallback


def _write_ids(encoder: IdEncoder, source: Path | None, dest: Path) -> None:
    """Copy the run's id map byte for byte (original dtype kept) or write the encoder's."""
    if source is not None and source.is_file():
        shutil.copyfile(source, dest)
        loaded = IdEncoder.load(dest, name=encoder.name)
        if len(loaded) != len(encoder):
            raise ConfigError(f"{source}: {len(loaded)} ids but the model has {len(encoder)}")
    else:
        encoder.save(dest)


def _save_recommend(staging: Path, graphs: RecommendGraphs, threshold: int) -> dict:
    """Save the recommend graph(s); what the manifest records of them."""
    saved = {"graph": graphs.recommend, "bytes": initializer_bytes(graphs.recommend),
             "item_multiple": graphs.item_multiple, "retrieve": None}
    saved["external_data"] = save_graph(graphs.recommend, staging / RECOMMEND_FILE,
                                        external_data_threshold=threshold)
    if graphs.retrieve is not None:
        retrieve_bytes = initializer_bytes(graphs.retrieve)
        external = save_graph(graphs.retrieve, staging / RETRIEVE_FILE, external_data_threshold=threshold)
        saved["retrieve"] = {"bytes": retrieve_bytes, "external_data": external}
    if graphs.rank_all is not None:
        rank_all_bytes = initializer_bytes(graphs.rank_all)
        external = save_graph(graphs.rank_all, staging / RANK_ALL_FILE, external_data_threshold=threshold)
        saved["rank_all"] = {"bytes": rank_all_bytes, "external_data": external}
    return saved


def write_bundle(
    out_dir: str | os.PathLike,
    graph,
    *,
    folded: bool,
    folding: list[str],
    reference: Callable[[np.ndarray, np.ndarray], np.ndarray],
    model_config: Mapping,
    user_encoder: IdEncoder,
    item_encoder: IdEncoder,
    versions: Mapping[str, str],
    reference_name: str = "torch",
    data: Mapping | None = None,
    metrics: Mapping | None = None,
    source: Mapping | None = None,
    fallback_score: float | None = None,
    overwrite: bool = False,
    embed_encoders: bool = False,
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD,
    check: ParityCheck = ParityCheck(),
    id_files: tuple[Path, Path] | None = None,
    recommend: RecommendGraphs | None = None,
    prior: PriorExport | None = None,
) -> Path:
    """Write a verified bundle for ``graph`` into ``out_dir`` (atomically: all or nothing).

    In a staging directory beside ``out_dir``: save ``graph`` (``onnx.checker`` on the path,
    external data over ``external_data_threshold``), check it against ``reference`` in
    onnxruntime, with ``embed_encoders`` also build, save and check ``model_ids.onnx``, write
    the id maps, assemble the manifest (:func:`~recmodels.export.manifest.build_manifest`) and
    finalize it; then rename the staging directory onto ``out_dir``.

    Parameters
    ----------
    out_dir : path-like
        The bundle directory (an existing one only with ``overwrite``).
    graph : onnx.ModelProto
        The scoring graph (:func:`~recmodels.export.graph.build_folded` / ``build_unfolded``).
    folded, folding
        Recorded as ``model.folded`` / ``model.folding``.
    reference : callable
        ``(user_index, item_index) -> scores``: the parity judge.
    model_config : mapping
        ``ModelConfig.to_dict()`` (``model.config``; its ``global_mean`` is the default mean).
    user_encoder, item_encoder : IdEncoder
        The id maps (their sizes are the graph's tables').
    versions : mapping
        ``versions`` (:func:`~recmodels.export.manifest.library_versions`).
    reference_name : str
        What ``reference`` is (``"torch"``: recorded as nothing, the default).
    data, metrics, source
        The run's ``data`` config section, ``metrics.json`` and origin.
    fallback_score : float, optional
        Score for unknown ids; default the global mean.
    overwrite, embed_encoders, external_data_threshold
        See :func:`~recmodels.export.api.export_model`.
    check : ParityCheck
        The parity checks' pairs, batch sizes, tolerance and seed
        (:func:`~recmodels.export.parity.check_reference_parity` and the others).
    id_files : (Path, Path), optional
        The run's id maps, copied byte for byte (else the encoders are written).
    recommend : RecommendGraphs, optional
        The recommend graphs (:func:`~recmodels.export.recommend_graph.recommend_graphs`), saved as
        ``recommend.onnx`` (+ ``retrieve.onnx``) and checked against ``model.onnx``
        (:func:`~recmodels.export.parity.check_recommend_parity`). Without them the bundle is what
        exports before ``recmodels recommend`` wrote (the tests of that error use it).
    prior : PriorExport, optional
        The prior rows (already in ``graph`` and ``recommend``'s user tables) and the fold-in
        arrays (:func:`~recmodels.export.prior.prior_export`): the arrays are saved, the prior
        rows' scores checked against ``prior.spec`` and the manifest's ``prior`` section written.
        Without it the bundle is what exports before the prior rows wrote.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    ParityError, OutputError, ConfigError
        Nothing is left behind.
    """
    data = dict(data or {})
    global_mean, fallback = resolve_scores(data, model_config, fallback_score)
    raw_graph = None
    if embed_encoders:  # built before model.onnx is saved: saving as external data empties the tensors
        raw_graph = build_raw_ids(
            graph, user_encoder.classes_, item_encoder.classes_, fallback,
            user_kind=user_encoder.kind_, item_kind=item_encoder.kind_,
            prior_rows=None if prior is None else (prior.n_users, prior.n_items),
        )
    with atomic_directory(out_dir, overwrite=overwrite) as staging:
        graph_bytes = initializer_bytes(graph)
        external = save_graph(graph, staging / MODEL_FILE, external_data_threshold=external_data_threshold)
        parity = check_reference_parity(
            reference,
            len(user_encoder),
            len(item_encoder),
            staging / MODEL_FILE,
            reference_name=reference_name,
            n_pairs=check.pairs,
            batch_sizes=check.batch_sizes,
            tolerance=check.tolerance,
            seed=check.seed,
        )
        raw_external = None
        if raw_graph is not None:
            raw_external = save_graph(
                raw_graph, staging / RAW_IDS_FILE, external_data_threshold=external_data_threshold
            )
            parity["raw_ids"] = check_raw_id_parity(
                staging / MODEL_FILE,
                staging / RAW_IDS_FILE,
                user_encoder.classes_,
                item_encoder.classes_,
                fallback,
                user_kind=user_encoder.kind_,
                item_kind=item_encoder.kind_,
                prior_rows=None if prior is None else (prior.n_users, prior.n_items),
                n_pairs=check.pairs,
                batch_sizes=check.batch_sizes,
                seed=check.seed,
            )
        recommend_saved = None
        if recommend is not None:
            recommend_saved = _save_recommend(staging, recommend, external_data_threshold)
            recommend_saved["parity"] = check_recommend_parity(
                staging / MODEL_FILE,
                staging / RECOMMEND_FILE,
                len(user_encoder),
                len(item_encoder),
                item_multiple=recommend.item_multiple,
                retrieve_path=staging / RETRIEVE_FILE if recommend.retrieve is not None else None,
                retrieve_reference=recommend.retrieve_reference,
                tolerance=check.tolerance,
                seed=check.seed,
            )
            if recommend.rank_all is not None:
                recommend_saved["parity"]["rank_all_max_abs_diff"] = check_rank_all_parity(
                    staging / RANK_ALL_FILE,
                    recommend.dot_reference,
                    len(user_encoder),
                    len(item_encoder),
                    tolerance=check.tolerance,
                    seed=check.seed,
                )
        if prior is not None:
            session = cpu_session(staging / MODEL_FILE)
            prior_diff = check_prior_parity(
                lambda u, i: run_pairs(session, u, i, 4096), prior, seed=check.seed, tolerance=check.tolerance
            )
            for name, array in prior.arrays.items():
                np.save(staging / name, np.ascontiguousarray(array), allow_pickle=False)
        user_src, item_src = id_files if id_files else (None, None)
        _write_ids(user_encoder, user_src, staging / USER_IDS_FILE)
        _write_ids(item_encoder, item_src, staging / ITEM_IDS_FILE)
        manifest = build_manifest(
            model_config=model_config,
            folded=folded,
            folding=folding,
            graph=graph,
            graph_bytes=graph_bytes,
            external_data=external,
            raw_graph=raw_graph,
            raw_external_data=raw_external,
            user_encoder=user_encoder,
            item_encoder=item_encoder,
            data=data,
            global_mean=global_mean,
            fallback_score=fallback,
            parity=parity,
            metrics=metrics,
            versions=versions,
            source=source,
            recommend=recommend_saved,
            prior=None if prior is None else prior.section(prior_diff),
        )
        finalize_bundle(staging, manifest)
    return Path(out_dir)
