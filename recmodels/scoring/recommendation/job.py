"""The inputs of a recommend run, read and checked before anything is ranked or written (torch-free).

:meth:`Recommender.prepare <recmodels.scoring.recommendation.recommender.Recommender.prepare>` reads
them with these functions, one input each, into a :class:`RecommendJob`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError, DataError
from ..checks import positive_int
from ..history import FoldIn
from ..history.rank import FoldedRanking
from .idlist import IdList, check_duplicates, check_unknown_share, read_id_list
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


def job_digest(user_index: np.ndarray, candidates: Candidates, seen: SeenItems | None, fold: FoldIn | None,
               new_items: np.ndarray | None) -> str:
    """Identifies a job's inputs (users, candidates, seen pairs, history) for ``--resume``."""
    arrays = [user_index, candidates.items]
    if seen is not None:
        arrays += [seen.indptr, seen.items] + ([seen.new_pairs] if seen.new_pairs.size else [])
    if fold is not None:
        arrays.append(np.frombuffer(fold.token.encode(), np.uint8))
    if new_items is not None:
        arrays.append(new_items)
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
        h.update(b"|")
    return h.hexdigest()[:32]


def read_list(bundle, role: str, source, column: str | None, dialect, fold: FoldIn | None,
              limit: float) -> IdList:
    """A ``--users`` / ``--items`` list (a file or the ids) mapped by ``bundle``'s ``role`` encoder and
    checked: no id listed twice, the unknown-id guard ``limit``. With ``fold`` (``--history``), the
    ids it folds in are known ids here."""
    encoder, default = ((bundle.user_encoder, bundle.user_column) if role == "user"
                        else (bundle.item_encoder, bundle.item_column))
    ids = read_id_list(source, encoder, role, column=column, default=default, dialect=dialect)
    if fold is not None:
        (fold.users if role == "user" else fold.items).extend(ids.ids, ids.index)
    check_duplicates(ids, role)
    check_unknown_share(ids, bundle, role, limit, bundle.user_column, bundle.item_column)
    return ids


def user_positions(bundle, users, column: str | None, dialect, fold: FoldIn | None, limit: float,
                   report: RecommendReport) -> np.ndarray:
    """List position -> user index (-1: an unknown id) of the ``users`` list; without one every user of
    the bundle, then ``fold``'s new users. The list's counts go to ``report``."""
    if users is None:
        every = np.arange(len(bundle.user_encoder), dtype=np.int64)
        return every if fold is None else np.concatenate([every, fold.users.new_rows()])
    ids = read_list(bundle, "user", users, column, dialect, fold, limit)
    report.users, report.unknown_users, report.null_ids = ids.where, ids.unknown, ids.nulls
    return ids.index


def candidate_items(bundle, items, column: str | None, dialect, fold: FoldIn | None, limit: float,
                    report: RecommendReport) -> tuple[Candidates, np.ndarray | None]:
    """The bundle's candidate items of the ``items`` list (default: every item) and the listed items
    ``fold`` folded in (None without a list: every one). Refuses a list with no known item."""
    n_items = len(bundle.item_encoder)
    new_items = None
    if items is None:
        candidates = Candidates.every(n_items)
    else:
        ids = read_list(bundle, "item", items, column, dialect, fold, limit)
        report.items, report.unknown_items = ids.where, ids.unknown
        listed = ids.known
        new_items = np.unique(listed[listed > n_items]) if fold is not None else None
        candidates = Candidates.of(listed[listed < n_items], n_items)
    report.candidate_items = candidates.size
    if candidates.size == 0:
        raise DataError(f"{report.items}: none of the listed items is in the bundle; nothing to recommend")
    return candidates, new_items


def seen_pairs(bundle, exclude_seen, user_col: str | None, item_col: str | None, dialect, fold: FoldIn | None,
               limit: float, report: RecommendReport) -> SeenItems | None:
    """The ``exclude_seen`` pairs (and ``fold``'s history pairs) as a :class:`SeenItems`, or None."""
    if exclude_seen is None:
        return None
    seen = read_seen(exclude_seen, bundle, user_col or bundle.user_column, item_col or bundle.item_column,
                     max_unknown_share=limit, dialect=dialect, fold=fold)
    report.exclude_seen, report.exclude_rows, report.seen_pairs = seen.source, seen.rows, seen.n_pairs
    report.exclude_unknown_rows = seen.counts["unknown_rows"]
    return seen
