"""torch -> ONNX: fold, build the graph, check parity, write a verified bundle.

:func:`export_onnx` turns a finished run directory into a scoring bundle
(``docs/bundle-format.md``); :func:`export_model` does the same from a model and its
encoders in memory. Both write into a staging directory that is renamed into place only
after the graph passed ``onnx.checker`` and the parity check, so a failed export leaves
nothing behind.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import shutil
from pathlib import Path

import numpy as np

from .. import __version__
from ..bundle import ITEM_IDS_FILE, MODEL_FILE, RAW_IDS_FILE, USER_IDS_FILE, finalize_bundle
from ..encoders import IdEncoder
from ..errors import ConfigError, OutputError, RunDirError
from ..fileio import atomic_directory, check_writable_parent
from .fold import FoldedSpec, ScoreSpec, fold
from .graph import (
    DEFAULT_OPSET,
    EXTERNAL_DATA_THRESHOLD,
    INPUTS,
    ML_DOMAIN,
    ML_OPSET,
    OUTPUTS,
    RAW_OUTPUTS,
    build_folded,
    build_raw_ids,
    build_unfolded,
    check_opset,
    initializer_bytes,
    raw_id_inputs,
    save_graph,
)
from .parity import BATCH_SIZES, N_PAIRS, TOLERANCE, check_parity, check_raw_id_parity

FORMATS = ("onnx",)

__all__ = [
    "DEFAULT_OPSET",
    "EXTERNAL_DATA_THRESHOLD",
    "FORMATS",
    "FoldedSpec",
    "ScoreSpec",
    "build_graph",
    "check_parity",
    "check_raw_id_parity",
    "export_model",
    "export_onnx",
    "fold",
]


def build_graph(model, *, fold_graph: bool = True, opset: int = DEFAULT_OPSET):
    """The ONNX ``ModelProto`` scoring ``model`` (folded or as is), plus the folding notes."""
    from .spec import extract_spec

    spec = extract_spec(model)
    if fold_graph:
        folded = fold(spec)
        return build_folded(folded, opset), folded.notes
    return build_unfolded(spec, opset), ["dropout removed (identity at inference)"]


def _check_out_dir(out_dir: Path, overwrite: bool, protect: Path | None = None) -> Path:
    out_dir = Path(out_dir)
    if protect is not None:
        resolved, run = out_dir.resolve(), protect.resolve()
        if resolved == run or run.is_relative_to(resolved):
            raise OutputError(f"{out_dir}: the bundle would replace the run directory; choose another --out")
    if out_dir.exists() and not overwrite:
        raise OutputError(f"{out_dir} already exists; pass --overwrite to replace it")
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir} exists and is not a directory; choose another --out")
    check_writable_parent(out_dir)
    return out_dir


def _versions() -> dict:
    import numpy
    import onnx
    import onnxruntime
    import torch

    return {
        "recmodels": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
    }


def _finite(value, what: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number; got {value!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{what} must be finite; got {value!r}")
    return value


def _metrics_section(metrics: dict | None) -> dict:
    """``{"train", "valid", "test"}`` from a run's ``metrics.json`` (missing parts omitted)."""
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
            out[split] = metrics[split]
    if best is not None:
        out["best_epoch"] = best
    return out


def _write_ids(encoder: IdEncoder, source: Path | None, dest: Path) -> None:
    """Copy the run's id map byte for byte (original dtype kept) or write the encoder's."""
    if source is not None and source.is_file():
        shutil.copyfile(source, dest)
        loaded = IdEncoder.load(dest, name=encoder.name)
        if len(loaded) != len(encoder):
            raise ConfigError(f"{source}: {len(loaded)} ids but the model has {len(encoder)}")
    else:
        encoder.save(dest)


def export_model(
    model,
    user_encoder: IdEncoder,
    item_encoder: IdEncoder,
    out_dir: str | os.PathLike,
    *,
    data: dict | None = None,
    metrics: dict | None = None,
    overwrite: bool = False,
    fold: bool = True,
    opset: int = DEFAULT_OPSET,
    embed_encoders: bool = False,
    fallback_score: float | None = None,
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD,
    parity_pairs: int = N_PAIRS,
    parity_batch_sizes: tuple[int, ...] = BATCH_SIZES,
    tolerance: float = TOLERANCE,
    seed: int = 0,
    id_files: tuple[Path, Path] | None = None,
    source: dict | None = None,
) -> Path:
    """Export an in-memory model with its encoders to a bundle directory.

    Parameters
    ----------
    model : nn.Module
        A ``recmodels.models`` network (put in eval mode here).
    user_encoder, item_encoder : IdEncoder
        The maps the model was trained with (sizes must match the model's tables).
    out_dir : path-like
        The bundle directory to create.
    data : dict, optional
        The run config's ``data`` section (column names, rating range, global mean).
    metrics : dict, optional
        The run's ``metrics.json``.
    overwrite : bool
        Replace an existing ``out_dir``.
    fold : bool
        Fold the graph for inference (exact; see ``docs/export.md``); False keeps the
        model's structure (for comparisons).
    opset : int
        ai.onnx opset of the graph.
    embed_encoders : bool
        Also write ``model_ids.onnx``, which takes raw ``user_id``/``item_id`` and maps them
        inside with ai.onnx.ml ``LabelEncoder`` (unknown ids -> ``fallback_score``, ``known``
        False); checked against ``model.onnx`` as part of the parity check.
    fallback_score : float, optional
        Score for unknown ids; default the training ratings' global mean.
    external_data_threshold : int
        Initializer bytes above which the weights go to ``model.onnx.data``.
    parity_pairs, parity_batch_sizes, tolerance, seed
        The parity check (see :func:`~recmodels.export.parity.check_parity`).
    id_files : (Path, Path), optional
        The run's ``user_ids.parquet`` and ``item_ids.parquet``, copied byte for byte.
    source : dict, optional
        Where the model came from (recorded in the manifest).

    Returns
    -------
    Path
        The bundle directory.

    Raises
    ------
    ParityError, OutputError, ConfigError
    """
    out_dir = _check_out_dir(Path(out_dir), overwrite, protect=None)
    opset = check_opset(opset)
    config = model.config
    data = dict(data or {})
    if len(user_encoder) != config.n_users or len(item_encoder) != config.n_items:
        raise ConfigError(
            f"encoders have {len(user_encoder)} users / {len(item_encoder)} items but the model has "
            f"{config.n_users} / {config.n_items}"
        )
    global_mean = _finite(data.get("global_mean", config.global_mean), "global mean")
    fallback = global_mean if fallback_score is None else _finite(fallback_score, "--fallback-score")
    model.eval()
    graph, notes = build_graph(model, fold_graph=fold, opset=opset)
    raw_graph = None
    if embed_encoders:  # built before model.onnx is saved: saving as external data empties the tensors
        raw_graph = build_raw_ids(
            graph, user_encoder.classes_, item_encoder.classes_, fallback,
            user_kind=user_encoder.kind_, item_kind=item_encoder.kind_,
        )

    with atomic_directory(out_dir, overwrite=overwrite) as staging:
        graph_bytes = initializer_bytes(graph)
        external = save_graph(graph, staging / MODEL_FILE, external_data_threshold=external_data_threshold)
        parity = check_parity(
            model,
            staging / MODEL_FILE,
            n_pairs=parity_pairs,
            batch_sizes=parity_batch_sizes,
            tolerance=tolerance,
            seed=seed,
        )
        raw_section = None
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
                n_pairs=parity_pairs,
                batch_sizes=parity_batch_sizes,
                seed=seed,
            )
            raw_section = {
                "file": RAW_IDS_FILE,
                "opset": opset,
                "opset_import": {"ai.onnx": opset, ML_DOMAIN: ML_OPSET},
                "ir_version": int(raw_graph.ir_version),
                "inputs": [dict(io) for io in raw_id_inputs(user_encoder.kind_, item_encoder.kind_)],
                "outputs": [dict(io) for io in RAW_OUTPUTS],
                "external_data": raw_external,
                "fallback_score": float(np.float32(fallback)),
            }
        user_src, item_src = id_files if id_files else (None, None)
        _write_ids(user_encoder, user_src, staging / USER_IDS_FILE)
        _write_ids(item_encoder, item_src, staging / ITEM_IDS_FILE)
        manifest = {
            "model": {
                "kind": config.kind,
                "config": config.to_dict(),
                "folded": bool(fold),
                "folding": notes,
            },
            "graph": {
                "file": MODEL_FILE,
                "opset": opset,
                "ir_version": int(graph.ir_version),
                "inputs": [dict(io) for io in INPUTS],
                "outputs": [dict(io) for io in OUTPUTS],
                "external_data": external,
                "initializer_bytes": graph_bytes,
                "initializers": [
                    {"name": t.name, "shape": list(t.dims)} for t in graph.graph.initializer
                ],
            },
            "ids": {
                role: {
                    "column": data.get(f"{role}_col", f"{role}_id"),
                    "dtype": enc.kind_,
                    "count": len(enc),
                    "file": file_name,
                }
                for role, enc, file_name in (
                    ("user", user_encoder, USER_IDS_FILE),
                    ("item", item_encoder, ITEM_IDS_FILE),
                )
            },
            "rating": {
                "column": data.get("rating_col", "rating"),
                "min": data.get("rating_min"),
                "max": data.get("rating_max"),
                "global_mean": global_mean,
            },
            "fallback_score": fallback,
            **({"graph_raw_ids": raw_section} if raw_section else {}),
            "metrics": _metrics_section(metrics),
            "versions": _versions(),
            "parity": parity,
            "source": source or {},
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        finalize_bundle(staging, manifest)
    return out_dir


def export_onnx(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    fold: bool = True,
    opset: int = DEFAULT_OPSET,
    embed_encoders: bool = False,
    fallback_score: float | None = None,
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD,
    parity_pairs: int = N_PAIRS,
    seed: int = 0,
) -> Path:
    """Export a finished training run to an ONNX scoring bundle.

    Parameters
    ----------
    run_dir : path-like
        A run directory written by ``recmodels train`` (with ``COMPLETE``).
    out_dir : path-like
        The bundle directory to create (refused if it exists, unless ``overwrite``).
    overwrite : bool
        Replace an existing bundle directory.
    fold : bool
        Fold the graph for inference (default); False exports the model's structure as is.
    opset : int
        ai.onnx opset (default :data:`DEFAULT_OPSET`).
    embed_encoders : bool
        Also write ``model_ids.onnx``, a graph taking raw ids (see :func:`export_model`).
    fallback_score : float, optional
        Score for unknown ids (default: the training ratings' global mean).
    external_data_threshold : int
        Initializer bytes above which weights go to ``model.onnx.data`` (default just under 2 GiB).
    parity_pairs : int
        Random known pairs in the parity check (default 10,000).
    seed : int
        Seed of the parity pairs.

    Returns
    -------
    Path
        The bundle directory; open it with :meth:`recmodels.bundle.Bundle.load`.

    Raises
    ------
    RunDirError
        The run directory is missing, incomplete or its checkpoint does not fit its config.
    OutputError
        ``out_dir`` exists (without ``overwrite``) or cannot be written.
    ParityError
        The graph does not reproduce the torch model within 1e-5 (nothing is written).
    """
    run_dir = Path(run_dir)
    out_dir = _check_out_dir(Path(out_dir), overwrite, protect=run_dir)
    check_opset(opset)
    from ..runs import load_run

    try:
        run = load_run(run_dir)
    except RuntimeError as exc:  # load_state_dict: missing/unexpected keys or size mismatch
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunDirError(
            f"{run_dir / 'model.pt'}: checkpoint does not fit config.json ({first}); "
            "export the run that wrote it"
        ) from None
    data = (run.config.get("data") if isinstance(run.config, dict) else None) or {}
    return export_model(
        run.model,
        run.user_encoder,
        run.item_encoder,
        out_dir,
        data=data,
        metrics=run.metrics,
        overwrite=overwrite,
        fold=fold,
        opset=opset,
        embed_encoders=embed_encoders,
        fallback_score=fallback_score,
        external_data_threshold=external_data_threshold,
        parity_pairs=parity_pairs,
        seed=seed,
        id_files=(run_dir / USER_IDS_FILE, run_dir / ITEM_IDS_FILE),
        source={"run_dir": str(run_dir.resolve())},
    )
