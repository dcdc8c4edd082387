"""Evaluate a bundle on held-out ratings: rating and ranking metrics beside two baselines (torch-free).

The model's predictions come from :class:`~recmodels.scoring.Scorer` (the one scoring path, so
unknown ids get the manifest's fallback exactly as ``recmodels score`` gives it). Beside the model
stand a global-mean and a user + item bias baseline (:mod:`.baselines`) fitted on the training
ratings, scored on the same rows and, for ranking, on the same candidates. ``docs/evaluate.md``
describes the protocol: activity buckets, negative sampling, ties.

>>> report = evaluate("bundles/neumf", "test.csv", train="train.csv")   # doctest: +SKIP
>>> print(report.format_table())                                        # doctest: +SKIP
>>> report.rating["model"]["all"]["rmse"], report.ranking["model"]["all"]["hr"]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ...bundle import path_kind
from ...errors import ConfigError, DataError
from ...ids import as_arrow
from ...metrics import TIE_RULES, ranking_metrics, rating_grid, rating_metrics
from ...tables import missing_columns_error, read_table
from ...values import numeric_column
from ..checks import positive_int
from ..defaults import DEFAULT_BUCKETS, DEFAULT_K, DEFAULT_NEGATIVES
from ..pairs.scorer import Scorer
from ..runtime.session import load_bundle
from ..unknown_ids import count_unknown, empty_counts, likely_cause
from .baselines import BiasBaseline, GlobalMeanBaseline
from .candidates import rank_all_items, rank_sampled, rated_keys
from .report import BUCKETS, PREDICTORS, EvaluationReport, plot_evaluation, require_matplotlib

__all__ = [
    "DEFAULT_BUCKETS", "DEFAULT_K", "DEFAULT_NEGATIVES", "EvaluationReport", "IndexedRatings",
    "activity_buckets", "bucket_labels", "check_protocol", "evaluate", "plot_evaluation",
    "require_matplotlib",
]

_COLUMN_HINT = "name them with --user-col/--item-col/--rating-col"


@dataclass(frozen=True)
class IndexedRatings:
    """Ratings whose ids are already indices into the bundle's id maps, e.g. a run's encoded split
    evaluated through the bundle exported from that run (the same maps): :func:`evaluate` takes them
    as ``data`` or ``train`` and scores them without mapping ids.

    Attributes
    ----------
    user_index, item_index : ndarray of int, shape (n,)
        Indices into the bundle's user and item maps (out of range: :class:`DataError`).
    rating : ndarray of float, shape (n,)
    source : str
        What messages and the report call these rows (e.g. the split file's path).
    """

    user_index: np.ndarray
    item_index: np.ndarray
    rating: np.ndarray
    source: str = "indexed ratings"


@dataclass
class _Ratings:
    where: str
    users: pa.Array | None  # raw ids; None for IndexedRatings
    items: pa.Array | None
    rating: np.ndarray  # float64
    index: tuple[np.ndarray, np.ndarray] | None = None  # IndexedRatings: (user, item) bundle indices


def _read_ratings(source, columns: tuple[str, str, str], what: str, dialect=None) -> _Ratings:
    """(user, item, rating) of a file, directory, glob or DataFrame (ids stay raw, Arrow), or of
    :class:`IndexedRatings` (indices kept as they are)."""
    user_col, item_col, rating_col = columns
    if isinstance(source, IndexedRatings):
        u, i = (np.ascontiguousarray(a, dtype=np.int64) for a in (source.user_index, source.item_index))
        rating = np.asarray(source.rating, dtype=np.float64)
        if u.ndim != 1 or u.shape != i.shape or u.shape != rating.shape:
            raise DataError(f"{source.source}: user_index, item_index and rating must be 1-D arrays of one "
                            f"length, got {u.shape}, {i.shape} and {rating.shape}")
        if rating.size == 0:
            raise DataError(f"{source.source}: has no data rows; nothing to evaluate")
        return _Ratings(source.source, None, None, rating, (u, i))
    if isinstance(source, pd.DataFrame):
        where = str(source.attrs.get("source") or f"{what} DataFrame")
        if any(c not in source.columns for c in columns):
            available = [str(c) for c in source.columns]
            raise missing_columns_error(where, columns, available, what, _COLUMN_HINT)
        users, items, rating = source[user_col], source[item_col], source[rating_col]
        rating = rating.reset_index(drop=True)
    else:
        table, where = read_table(source, list(columns), what=what, text_columns=(user_col, item_col),
                                  hint=_COLUMN_HINT, dialect=dialect)
        users, items = table.column(user_col), table.column(item_col)
        rating = table.column(rating_col).to_pandas()
    if len(rating) == 0:
        raise DataError(f"{where}: has no data rows; nothing to evaluate")
    return _Ratings(where, as_arrow(users), as_arrow(items), numeric_column(rating, where, rating_col))


def _lookup(bundle, ratings: _Ratings) -> tuple[np.ndarray, np.ndarray, dict]:
    """Bundle indices of the ids (-1: unknown or null) and the unknown-id counts."""
    if ratings.index is not None:
        for role, index, n in zip(("user", "item"), ratings.index, (len(bundle.user_encoder),
                                                                    len(bundle.item_encoder)), strict=True):
            if index.size and (index.min() < 0 or index.max() >= n):
                raise DataError(f"{ratings.where}: {role} index out of range 0..{n - 1}; indexed ratings "
                                "must come from the bundle's own id maps (the run it was exported from)")
        return *ratings.index, empty_counts()
    u, user_nulls = bundle.user_encoder.lookup(ratings.users)
    i, item_nulls = bundle.item_encoder.lookup(ratings.items)
    counts = empty_counts()
    count_unknown(counts, u, i, user_nulls, item_nulls)
    return u, i, counts


def _none_known_error(bundle, ratings: _Ratings, counts: dict, columns, what: str) -> DataError:
    types = {columns[0]: ratings.users.type, columns[1]: ratings.items.type}
    samples = {columns[0]: ratings.users, columns[1]: ratings.items}
    return DataError(
        f"{ratings.where}: none of the {ratings.rating.size:,} {what} rows has ids the model knows "
        f"({counts['unknown_users']:,} unknown users, {counts['unknown_items']:,} unknown items, "
        f"{counts['null_ids']:,} null); likely {likely_cause(bundle, columns[0], columns[1], types, samples)}"
    )


def check_protocol(*, k, negatives, all_items: bool, ties: str, buckets, n_items: int,
                   ranking: bool = True) -> tuple[int, int, tuple[int, int]]:
    """Validate the evaluation options against a model with ``n_items`` items.

    Returns
    -------
    (k, negatives, buckets)

    Raises
    ------
    ConfigError
        ``k`` <= 0 or larger than the candidate set (``negatives + 1``, or every item with
        ``all_items``), ``negatives`` < 1 or more than the model's other items, an unknown tie
        rule, or bucket bounds that are not two integers ``1 <= low < high``.
    """
    try:
        low, high = (int(b) for b in buckets)
        ok = [low, high] == [float(b) for b in buckets] and 1 <= low < high
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"--buckets must be two integers LOW,HIGH with 1 <= LOW < HIGH, got {buckets!r}")
    if ties not in TIE_RULES:
        raise ConfigError(f"--ties {ties!r}: choose one of {', '.join(TIE_RULES)}")
    k = positive_int("--top-k", k, 0)
    negatives = positive_int("--negatives", negatives, 0)
    if ranking and all_items and k > n_items:
        raise ConfigError(f"--top-k {k} is larger than the candidate set: the model has {n_items} items")
    if ranking and not all_items:
        if negatives > n_items - 1:
            raise ConfigError(
                f"--negatives {negatives} needs at least {negatives + 1} items but the model has "
                f"{n_items}; lower --negatives or use --all-items"
            )
        if k > negatives + 1:
            raise ConfigError(
                f"--top-k {k} is larger than the candidate set ({negatives} negatives + the held-out "
                f"item = {negatives + 1}); lower --top-k or raise --negatives"
            )
    return int(k), int(negatives), (low, high)


def activity_buckets(train_counts, user_index, buckets=DEFAULT_BUCKETS) -> np.ndarray:
    """Bucket per row (0 cold, 1 medium, 2 heavy) by its user's number of training ratings.

    Parameters
    ----------
    train_counts : ndarray of int, shape (n_users,)
        Training ratings per user index.
    user_index : ndarray of int, shape (n,)
        Known user indices (>= 0).
    buckets : (int, int)
        ``(low, high)``: cold ``< low``, medium ``low .. high - 1``, heavy ``>= high``.

    Examples
    --------
    >>> activity_buckets(np.array([0, 4, 5, 49, 50]), np.arange(5)).tolist()
    [0, 0, 1, 1, 2]
    """
    low, high = buckets
    return np.digitize(np.asarray(train_counts)[np.asarray(user_index)], [low, high]).astype(np.int8)


def bucket_labels(buckets=DEFAULT_BUCKETS) -> dict[str, str]:
    """``{"cold": "< 5", "medium": "5-49", "heavy": ">= 50"}`` for the bucket bounds."""
    low, high = buckets
    return {"cold": f"< {low}", "medium": f"{low}-{high - 1}", "heavy": f">= {high}"}


def _rating_section(y: np.ndarray, predictions: dict, masks: dict, grid: tuple[float, float]) -> dict:
    empty = {"mse": None, "rmse": None, "mae": None, "hit_accuracy": None, "n": 0}
    return {name: {group: rating_metrics(y[mask], pred[mask], *grid) if mask.any() else dict(empty)
                   for group, mask in masks.items()}
            for name, pred in predictions.items()}


def _ranking_section(counts: dict, bucket, k: int, ties: str) -> dict:
    section = {}
    for name, (greater, tied) in counts.items():
        groups = {"all": ranking_metrics(greater, tied, k, ties)}
        if bucket is not None:
            for b, label in enumerate(BUCKETS):
                groups[label] = ranking_metrics(greater[bucket == b], tied[bucket == b], k, ties)
        section[name] = groups
    return section


def _model_scores(scorer: Scorer):
    """``predict(user_index, item_index)`` of the model: candidates are already bundle indices."""
    return lambda user_index, item_index: scorer.score_indices(user_index, item_index).astype(np.float64)


@dataclass
class _Training:
    user_index: np.ndarray
    item_index: np.ndarray
    rating: np.ndarray
    per_user: np.ndarray  # training ratings per user index
    info: dict
    notes: list


def _training(bundle, train, columns, buckets, dialect=None) -> _Training:
    """The training rows the model knows, in its index space, and what the report says of them."""
    tr = _read_ratings(train, columns, "training", dialect)
    u, i, counts = _lookup(bundle, tr)
    known = (u >= 0) & (i >= 0)
    if not known.any():
        raise _none_known_error(bundle, tr, counts, columns, "training")
    per_user = np.bincount(u[known], minlength=len(bundle.user_encoder))
    by_bucket = np.bincount(activity_buckets(per_user, np.flatnonzero(per_user), buckets), minlength=3)
    info = {"source": tr.where, "rows": int(tr.rating.size), "used_rows": int(known.sum()),
            "users_by_bucket": dict(zip(BUCKETS, map(int, by_bucket), strict=True))}
    notes = []
    if not known.all():
        notes.append(f"{int((~known).sum()):,} training rows have ids the model does not know; the "
                     "baselines leave them out")
    return _Training(u[known], i[known], tr.rating[known], per_user, info, notes)


def _baselines(bundle, training: _Training | None) -> dict:
    if training is None:
        return {"global_mean": GlobalMeanBaseline.from_mean(bundle.manifest.rating.global_mean).predict}
    fit = (training.user_index, training.item_index, training.rating)
    n_users, n_items = len(bundle.user_encoder), len(bundle.item_encoder)
    return {"bias": BiasBaseline().fit(*fit, n_users=n_users, n_items=n_items).predict,
            "global_mean": GlobalMeanBaseline().fit(*fit).predict}


def _refuse_run_dir(model) -> None:
    if isinstance(model, str | os.PathLike):
        path = Path(model)
        if path_kind(path) == "run":
            raise ConfigError(
                f"{path} is a run directory; recmodels.scoring evaluates bundles: export it first "
                f"(recmodels export {path} --format onnx --out BUNDLE), or run `recmodels evaluate {path} "
                "DATA`, which exports it to a temporary bundle"
            )


def evaluate(
    model,
    data,
    *,
    train=None,
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    k: int = DEFAULT_K,
    negatives: int = DEFAULT_NEGATIVES,
    all_items: bool = False,
    ranking: bool = True,
    seed: int = 0,
    ties: str = "pessimistic",
    buckets=DEFAULT_BUCKETS,
    baselines: bool = True,
    clip: bool = False,
    device: str = "auto",
    threads: int | None = None,
    batch_size: int | None = None,
    dialect=None,
) -> EvaluationReport:
    """Evaluate a bundle on held-out ratings, beside a global-mean and a user + item bias baseline.

    Parameters
    ----------
    model : Bundle or path-like
        A bundle (a run directory must be exported first; ``recmodels evaluate`` does that).
    data : path-like, pandas.DataFrame or IndexedRatings
        Held-out (user, item, rating) rows: CSV/Parquet file, directory or glob, read by
        :mod:`recmodels.tables`; ids by the id rules of :mod:`recmodels.ids`. A DataFrame is named
        in messages by ``df.attrs["source"]`` when set (as :func:`recmodels.data.read_interactions`
        sets it). :class:`IndexedRatings` are already in the bundle's index space (no column names).
    train : path-like, pandas.DataFrame or IndexedRatings, optional
        The training ratings (raw ids, same columns, or :class:`IndexedRatings`). They fit the
        baselines, give each user's activity bucket and are excluded from the negatives. Without
        them the bias baseline and the buckets are skipped and the global mean is the manifest's.
    user_col, item_col, rating_col : str, optional
        Column names of ``data`` and ``train`` (default: the manifest's).
    k : int
        HR@K / NDCG@K cut-off.
    negatives : int
        Items sampled per held-out row among those its user never rated (train or ``data``).
    all_items : bool
        Rank against every item the user never rated instead of a sample.
    ranking : bool
        Compute the ranking metrics at all.
    seed : int
        Seed of the negative sampling.
    ties : {"pessimistic", "optimistic", "average"}
        How candidates scoring exactly as the held-out item count (:mod:`recmodels.metrics`).
    buckets : (int, int)
        Activity bucket bounds ``(low, high)`` on training ratings per user.
    baselines : bool
        Fit and report the baselines.
    clip : bool
        Clip rating predictions (model and baselines) to the bundle's rating range for the rating
        metrics; ranking always uses the raw scores.
    device, threads, batch_size
        As for :class:`~recmodels.scoring.Scorer`.
    dialect : recmodels.tables.CsvDialect, optional
        How delimited text ``data`` and ``train`` files are read (separator, header row or
        column names).

    Hit accuracy rounds predictions to the bundle's rating grid (``rating.step`` from
    ``rating.min``; whole numbers for bundles that record no step), recorded in the report's
    ``protocol.rating_step`` when it is not the whole-number grid.

    Returns
    -------
    EvaluationReport

    Raises
    ------
    DataError
        Unreadable data, missing columns, non-numeric ratings, or no row with ids the model knows.
    ConfigError
        Bad ``k``, ``negatives``, ``ties`` or ``buckets``; ``model`` a run directory.
    BundleError
        ``model`` is not a valid bundle.
    """
    start = time.perf_counter()
    _refuse_run_dir(model)
    bundle = load_bundle(model)
    n_items = len(bundle.item_encoder)
    columns = (user_col or bundle.user_column, item_col or bundle.item_column,
               rating_col or bundle.manifest.rating.column)
    if len(set(columns)) != 3:
        raise ConfigError(f"user, item and rating columns must be distinct, got {columns}")
    k, negatives, buckets = check_protocol(k=k, negatives=negatives, all_items=all_items, ties=ties,
                                           buckets=buckets, n_items=n_items, ranking=ranking)
    held_out = _read_ratings(data, columns, "evaluation", dialect)
    u, i, counts = _lookup(bundle, held_out)
    known = (u >= 0) & (i >= 0)
    if not known.any():
        raise _none_known_error(bundle, held_out, counts, columns, "evaluation")
    training = _training(bundle, train, columns, buckets, dialect) if train is not None else None
    if training is None:
        notes = ["no training data (--train): no bias baseline, no activity buckets, global mean from "
                 "the manifest" + ("; negatives exclude only DATA's items" if ranking else "")]
    else:
        notes = list(training.notes)

    group = np.full(u.size, -1, dtype=np.int8)  # per row: bucket 0-2, 3 known (no buckets), -1 unknown
    group[known] = 3 if training is None else activity_buckets(training.per_user, u[known], buckets)
    masks = {"all": np.ones(u.size, dtype=bool), "known": known}
    if training is not None:
        masks.update({b: group == n for n, b in enumerate(BUCKETS)})
    masks["unknown_ids"] = ~known
    data_info = {"source": held_out.where, "rows": int(u.size), "known_rows": int(known.sum()),
                 "columns": dict(zip(("user", "item", "rating"), columns, strict=True)), **counts}

    scorer = Scorer(bundle, device=device, user_col=columns[0], item_col=columns[1], unknown="fallback",
                    batch_size=batch_size, threads=threads, max_unknown_share=1.0)
    try:
        predictors = {"model": _model_scores(scorer), **(_baselines(bundle, training) if baselines else {})}
        if held_out.index is None:
            scores, _ = scorer.score_arrays(held_out.users, held_out.items)  # unknown ids: the fallback
        else:
            scores = scorer.score_indices(u, i)  # already the bundle's indices: nothing to map
        predictions = {"model": scores.astype(np.float64)}
        predictions.update({name: predict(u, i) for name, predict in predictors.items() if name != "model"})
        if clip:
            predictions = {name: np.clip(p, *bundle.rating_range) for name, p in predictions.items()}
        grid = rating_grid(bundle.manifest.rating.step, bundle.manifest.rating.min)
        rating = _rating_section(held_out.rating, predictions, masks, grid)

        ranking_section = None
        if ranking:
            ru, ri = u[known], i[known]
            rated_u, rated_i = (ru, ri) if training is None else (
                np.concatenate([ru, training.user_index]), np.concatenate([ri, training.item_index]))
            rated = rated_keys(rated_u, rated_i, n_items)
            if all_items:
                ranks, short = rank_all_items(predictors, ru, ri, rated, n_items), 0
            else:
                ranks, short = rank_sampled(predictors, ru, ri, rated, n_items, negatives, seed)
            ranking_section = _ranking_section(ranks, None if training is None else group[known], k, ties)
            data_info.update(ranked_rows=int(ru.size), rows_with_fewer_candidates=short)
            if short:
                notes.append(f"{short:,} held-out rows have users with fewer than {negatives} unrated "
                             "items; they were ranked among all of those")
    finally:
        scorer.close()
    order = [name for name in PREDICTORS if name in rating]
    return EvaluationReport(
        model={"path": str(bundle.path), "kind": bundle.model_kind, "provider": scorer.provider,
               "fallback_score": bundle.fallback_score},
        data=data_info,
        train=None if training is None else training.info,
        protocol={"k": k, "negatives": None if all_items else negatives, "all_items": bool(all_items),
                  "ranking": bool(ranking), "seed": seed, "ties": ties, "buckets": bucket_labels(buckets),
                  "clip": bool(clip), **({} if grid == (1.0, 0.0) else {"rating_step": grid[0]})},
        rating={name: rating[name] for name in order},
        ranking=None if ranking_section is None else {name: ranking_section[name] for name in order},
        notes=notes,
        warnings=list(scorer.warnings),
        seconds=time.perf_counter() - start,
        arrays={"rating": held_out.rating, "predictions": predictions, "group": group},
    )


