"""Evaluate a bundle, or a run directory through a temporary bundle (``recmodels evaluate MODEL``).

A run directory is exported first (:func:`~recmodels.export.export_onnx`, which needs the ``train``
extra), so a run and a bundle go through the same scoring path. Its encoded splits are passed on as
:class:`~recmodels.scoring.evaluation.evaluator.IndexedRatings`: the bundle exported from a run has
the run's id maps, so their indices are scored as they are, never decoded to ids and mapped back.
A bundle is evaluated without torch.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..bundle import MANIFEST_FILE, Bundle, path_kind
from ..bundle.layout import RUN_CONFIG_FILE
from ..errors import ConfigError
from ..runs import split_path
from ..scoring.evaluation.evaluator import IndexedRatings, evaluate
from ..scoring.evaluation.report import EvaluationReport


def run_split(run_dir: str | os.PathLike, part: str) -> IndexedRatings:
    """A run's encoded split (``split/<part>.parquet``) in the run's index space, named by its file.

    Raises
    ------
    DataError
        The file is missing (a run saved by ``RatingModel.save`` has no split) or unreadable.
    """
    from ..data import load_encoded

    path = split_path(run_dir, part)
    encoded = load_encoded(path)
    return IndexedRatings(encoded.user_index, encoded.item_index, encoded.rating, source=str(path))


def evaluate_model(model, data=None, *, train=None, **options) -> EvaluationReport:
    """Evaluate a bundle, or a run directory through a temporary bundle.

    Parameters
    ----------
    model : path-like
        A bundle (``manifest.json``) or a finished run directory (``config.json``).
    data : path-like or DataFrame, optional
        Held-out ratings; required for a bundle, the run's ``split/test.parquet`` by default.
    train : path-like or DataFrame, optional
        Training ratings; for a run directory its ``split/train.parquet`` by default.
    **options
        The keyword options of :func:`recmodels.scoring.evaluate` (``k``, ``negatives``,
        ``all_items``, ``ranking``, ``seed``, ``ties``, ``buckets``, ``baselines``, ``clip``,
        ``user_col``, ``item_col``, ``rating_col``, ``device``, ``threads``, ``batch_size``).

    Returns
    -------
    EvaluationReport
        For a run, ``report.model`` names the run (``path``) and has ``exported_from_run=True``.

    Raises
    ------
    ConfigError
        ``model`` is neither a bundle nor a run directory, or a bundle without ``data``.
    ImportError
        A run directory without torch or onnx (the ``train`` extra).

    Examples
    --------
    >>> report = evaluate_model("runs/neumf")                  # doctest: +SKIP
    >>> print(report.format_table())                           # doctest: +SKIP
    """
    path = Path(model)
    kind = path_kind(path)
    if kind == "bundle":
        if data is None:
            raise ConfigError(f"{path} is a bundle: give DATA (only a run directory has a test split "
                              "to default to)")
        return evaluate(path, data, train=train, **options)
    if kind != "run":
        what = "does not exist" if not path.exists() else (
            f"is neither a run directory (no {RUN_CONFIG_FILE}) nor a bundle (no {MANIFEST_FILE})")
        raise ConfigError(f"{path} {what}; give what `recmodels train` (a run) or `recmodels export` "
                          "(a bundle) wrote")
    from .api import export_onnx  # needs torch and onnx (the train extra)

    with tempfile.TemporaryDirectory(prefix="recmodels-evaluate-") as tmp:
        bundle = Bundle.load(export_onnx(path, Path(tmp) / "bundle"))
        data = run_split(path, "test") if data is None else data
        train = run_split(path, "train") if train is None else train
        report = evaluate(bundle, data, train=train, **options)
    report.model.update(path=str(path), exported_from_run=True)
    return report
