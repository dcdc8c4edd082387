"""torch -> ONNX bundle: :func:`export_onnx` (from a run directory) and :func:`export_model` (in memory).

Both read the network into a spec (:mod:`.spec`), fold it (:mod:`.fold`), build the graph
(:mod:`.graph`) and hand it to :func:`~recmodels.export.writer.write_bundle`, which writes into
a staging directory renamed into place only after the graph passed ``onnx.checker`` and the
parity check against the torch model, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..encoders import IdEncoder
from ..errors import ConfigError, OutputError
from ..fileio import check_writable_parent
from .folding import with_prior
from .graph import DEFAULT_OPSET, EXTERNAL_DATA_THRESHOLD, check_opset, graph_for
from .manifest import library_versions
from .parity import BATCH_SIZES, N_PAIRS, TOLERANCE, ParityCheck, torch_scores
from .prior import prior_export
from .recommend_graph import recommend_graphs
from .writer import write_bundle


def build_graph(model, *, fold_graph: bool = True, opset: int = DEFAULT_OPSET, prior: bool = False):
    """The ONNX ``ModelProto`` scoring ``model`` (folded or as is), plus the folding notes.

    ``prior``: with the prior user and item rows (:func:`~recmodels.export.folding.with_prior`).
    """
    from .spec import extract_spec

    spec = extract_spec(model)
    return graph_for(with_prior(spec) if prior else spec, fold_graph=fold_graph, opset=opset)


def build_recommend_graphs(model, *, opset: int = DEFAULT_OPSET, prior: bool = False):
    """The recommend graphs of ``model`` (:func:`~recmodels.export.recommend_graph.recommend_graphs`),
    with ``prior`` the prior user row in their user tables."""
    from .spec import extract_spec

    spec = extract_spec(model)
    return recommend_graphs(with_prior(spec, item=False) if prior else spec, opset)


def train_rows(run_dir: Path) -> tuple | None:
    """``(user_index, item_index)`` of a run's ``split/train.parquet``, or None without it."""
    import pyarrow.parquet as pq

    from .. import runs

    path = runs.split_path(run_dir, "train")
    if not path.is_file():
        return None
    table = pq.read_table(path, columns=["user_index", "item_index"])
    return table.column("user_index").to_numpy(), table.column("item_index").to_numpy()


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
    train: tuple | None = None,
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
    train : (user_index, item_index), optional
        The training rows: their counts let ``--history`` update known users and items
        (:func:`~recmodels.export.prior.prior_export`).

    Returns
    -------
    Path
        The bundle directory.

    Raises
    ------
    ParityError, OutputError, ConfigError

    Examples
    --------
    >>> export_model(model, users, items, "bundles/x", data=run_config["data"])   # doctest: +SKIP
    PosixPath('bundles/x')
    """
    out_dir = _check_out_dir(Path(out_dir), overwrite, protect=None)
    opset = check_opset(opset)
    config = model.config
    if len(user_encoder) != config.n_users or len(item_encoder) != config.n_items:
        raise ConfigError(
            f"encoders have {len(user_encoder)} users / {len(item_encoder)} items but the model has "
            f"{config.n_users} / {config.n_items}"
        )
    model.eval()
    from .spec import extract_spec

    prior = prior_export(extract_spec(model), metrics=metrics, train_rows=train)
    graph, notes = build_graph(model, fold_graph=fold, opset=opset, prior=True)
    recommend = build_recommend_graphs(model, opset=opset, prior=True)
    return write_bundle(
        out_dir,
        graph,
        folded=bool(fold),
        folding=notes,
        reference=lambda users, items: torch_scores(model, users, items),
        model_config=config.to_dict(),
        user_encoder=user_encoder,
        item_encoder=item_encoder,
        versions=library_versions(torch=True),
        data=data,
        metrics=metrics,
        source=source,
        fallback_score=fallback_score,
        overwrite=overwrite,
        embed_encoders=embed_encoders,
        external_data_threshold=external_data_threshold,
        check=ParityCheck(parity_pairs, tuple(parity_batch_sizes), tolerance, seed),
        id_files=id_files,
        recommend=recommend,
        prior=prior,
    )


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
        ai.onnx opset (default :data:`~recmodels.export.graph.DEFAULT_OPSET`).
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

    Examples
    --------
    >>> export_onnx("runs/neumf", "bundles/neumf")            # doctest: +SKIP
    PosixPath('bundles/neumf')
    """
    from .. import runs  # here, not at import: the factory and the CLI's --help import this module

    run_dir = Path(run_dir)
    out_dir = _check_out_dir(Path(out_dir), overwrite, protect=run_dir)
    check_opset(opset)  # before loading the run: without the train extra this names what to install
    run = runs.load_run(run_dir)  # a checkpoint that does not fit its config: RunDirError
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
        id_files=(run_dir / runs.USER_IDS_FILE, run_dir / runs.ITEM_IDS_FILE),
        source={"run_dir": str(run_dir.resolve())},
        train=train_rows(run_dir),
    )
