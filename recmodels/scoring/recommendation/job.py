"""The inputs of a recommend run, read and checked before anything is ranked or written (torch-free)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError, DataError
from ..checks import positive_int
from ..defaults import DEFAULT_MAX_UNKNOWN_SHARE, DEFAULT_TOP_K
from ..history import FoldIn
from ..history.rank import FoldedRanking
from ..unknown_ids import check_share
from .idlist import check_duplicates, check_unknown_share, read_id_list
from .report import RecommendReport
from .seen import SeenItems, read_seen
from .topk import Candidates


def check_k_fits(k: int, n_candidates: int) -> None:
    """Refuse a ``k`` above the number of candidate items, naming both."""
    if k > n_candidates:
        raise ConfigError(
            f"--top-k {k} is larger than the {n_candidates:,} candidate items; choose --top-k "
            f"{n_candidates} or less"
        )


def check_candidates(candidates: int | None, k) -> None:
    """Refuse two-stage retrieval of fewer items than ``k`` (it could never fill a top-``k``)."""
    if candidates is not None and k is not None and int(candidates) < int(k):
        raise ConfigError(
            f"--candidates {candidates} is fewer than --top-k {k}: the re-ranking only orders the "
            f"{candidates} retrieved items; use --candidates {k} or more (300 keeps recall@10 at 1.000, "
            "docs/recommend.md), or drop --candidates for the exact top-K"
        )


def check_top_k(k) -> int:
    """``k`` as an int, or a one-line :class:`ConfigError` when it is not a positive integer."""
    return positive_int("--top-k", k if k is not None else 0)


@dataclass
class RecommendJob:
    """What to rank: list positions -> user index, the candidates, the seen pairs, ``k``.

    Attributes
    ----------
    user_index : ndarray of int64
        One entry per position of the user list (every user when there is none); -1 for an
        unknown id, which gets no rows.
    candidates : Candidates
    seen : SeenItems or None
    k : int
    report : RecommendReport
        Filled in with the inputs' counts; the run adds the rest.
    digest : str
        Identifies the inputs (users, candidates, seen pairs, history) for ``--resume``.
    folded : FoldedRanking or None
        With ``--history``: ranks the users whose rows it changed (user indices past the
        bundle's are folded-in new users, :class:`~recmodels.scoring.history.fold.Side`).
    new_items : ndarray of int64 or None
        The listed items that were folded in (``--history``, ``--item-embeddings``), as item
        indices past the bundle's; None: every folded-in item (no item list).
    """

    user_index: np.ndarray
    candidates: Candidates
    seen: SeenItems | None
    k: int
    report: RecommendReport
    digest: str
    folded: FoldedRanking | None = None
    new_items: np.ndarray | None = None


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
        h.update(b"|")
    return h.hexdigest()[:32]


def prepare_job(
    bundle,
    report: RecommendReport,
    *,
    users=None,
    k: int = DEFAULT_TOP_K,
    items=None,
    exclude_seen=None,
    user_col: str | None = None,
    item_col: str | None = None,
    users_col: str | None = None,
    items_col: str | None = None,
    max_unknown_share: float = DEFAULT_MAX_UNKNOWN_SHARE,
    dialect=None,
    fold: FoldIn | None = None,
) -> RecommendJob:
    """Read and check a run's inputs against ``bundle``; every input error is raised here.

    Parameters
    ----------
    bundle : Bundle
    report : RecommendReport
        Receives the inputs' counts.
    users : path-like or array-like, optional
        A one-column CSV/Parquet file, or the ids (default: every user of the bundle).
    k : int
    items : path-like or array-like, optional
        The candidate items (default: every item).
    exclude_seen : path-like, DataFrame or pyarrow.Table, optional
        (user, item) pairs never to recommend.
    user_col, item_col : str, optional
        Id columns of those inputs (default: the bundle's).
    users_col, items_col : str, optional
        The id column of the ``users`` / ``items`` file when it differs from ``user_col`` /
        ``item_col`` (default: those, then the file's only column).
    max_unknown_share : float
        The ``score`` guard, per list and for the seen pairs.
    fold : FoldIn, optional
        ``--history``: its new users are known users here (and, without a user list, recommended
        after the bundle's), and ``exclude_seen`` also excludes its history's pairs; its new items
        (``--item-embeddings`` too) are candidates when listed (every one without an item list).

    Raises
    ------
    DataError, ConfigError
        ``k`` not positive or above the candidates, an empty list, an id listed twice in the user
        or the item list, no known candidate, missing columns, too many unknown ids.
    """
    limit = check_share(max_unknown_share)
    report.k = k = check_top_k(k)
    report.max_unknown_share = limit
    user_default, item_default = bundle.user_column, bundle.item_column
    if users is None:
        user_index = np.arange(len(bundle.user_encoder), dtype=np.int64)
        if fold is not None:
            user_index = np.concatenate([user_index, fold.users.new_rows()])
    else:
        ids = read_id_list(users, bundle.user_encoder, "user", column=users_col or user_col,
                           default=user_default, dialect=dialect)
        if fold is not None:
            fold.users.extend(ids.ids, ids.index)
        check_duplicates(ids, "user")
        check_unknown_share(ids, bundle, "user", limit, user_default, item_default)
        user_index = ids.index
        report.users, report.unknown_users, report.null_ids = ids.where, ids.unknown, ids.nulls
    new_items = None
    if items is None:
        candidates = Candidates.every(len(bundle.item_encoder))
    else:
        ids = read_id_list(items, bundle.item_encoder, "item", column=items_col or item_col,
                           default=item_default, dialect=dialect)
        if fold is not None:  # folded-in new items are listed items too
            fold.items.extend(ids.ids, ids.index)
        check_duplicates(ids, "item")
        check_unknown_share(ids, bundle, "item", limit, user_default, item_default)
        report.items, report.unknown_items = ids.where, ids.unknown
        listed, n_items = ids.known, len(bundle.item_encoder)
        new_items = np.unique(listed[listed > n_items]) if fold is not None else None
        candidates = Candidates.of(listed[listed < n_items], n_items)
    report.candidate_items = candidates.size
    if candidates.size == 0:
        raise DataError(f"{report.items}: none of the listed items is in the bundle; nothing to recommend")
    check_k_fits(k, candidates.size)
    seen = None
    if exclude_seen is not None:
        seen = read_seen(
            exclude_seen, bundle, user_col or user_default, item_col or item_default, max_unknown_share=limit,
            dialect=dialect, fold=fold,
        )
        report.exclude_seen, report.exclude_rows, report.seen_pairs = seen.source, seen.rows, seen.n_pairs
        report.exclude_unknown_rows = seen.counts["unknown_rows"]
    report.users_requested = int(user_index.size)
    digest = _digest(user_index, candidates.items, *(() if seen is None else (seen.indptr, seen.items)),
                     *(() if seen is None or not seen.new_pairs.size else (seen.new_pairs,)),
                     *(() if fold is None else (np.frombuffer(fold.token.encode(), np.uint8),)),
                     *(() if new_items is None else (new_items,)))
    return RecommendJob(user_index, candidates, seen, k, report, digest, new_items=new_items)
