"""``recommend()``: a :class:`~.recommender.Recommender` for one call, with every option as an
explicit keyword (torch- and scikit-learn-free)."""

from __future__ import annotations

import pandas as pd

from ...errors import ConfigError
from ..defaults import DEFAULT_MAX_UNKNOWN_SHARE, DEFAULT_MIN_RATINGS, DEFAULT_TOP_K
from .recommender import Recommender
from .report import RecommendReport

__all__ = ["recommend"]


def recommend(
    bundle,
    output=None,
    *,
    device: str = "auto",
    threads: int | None = None,
    candidates: int | None = None,
    block_users: int | None = None,
    tile_items: int | None = None,
    history=None,
    history_update_known: bool = True,
    history_min_ratings: int = DEFAULT_MIN_RATINGS,
    rating_col: str | None = None,
    item_embeddings=None,
    k: int = DEFAULT_TOP_K,
    users=None,
    items=None,
    exclude_seen=None,
    user_col: str | None = None,
    item_col: str | None = None,
    users_col: str | None = None,
    items_col: str | None = None,
    max_unknown_share: float = DEFAULT_MAX_UNKNOWN_SHARE,
    dialect=None,
    format: str | None = None,
    part_users: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    report=None,
) -> RecommendReport | pd.DataFrame:
    """Every (listed) user's top-``k`` from ``bundle``: into ``output`` (``recmodels recommend``), or
    in memory as a DataFrame when ``output`` is None.

    A :class:`Recommender` with its options, then :meth:`Recommender.recommend_file` (or
    :meth:`Recommender.recommend_frame` without ``output``).

    Parameters
    ----------
    bundle : Bundle or path-like
        A bundle written by ``recmodels export``.
    output : path-like, optional
        ``out.parquet`` / ``out.csv``: one file, renamed into place when complete; a path without
        an extension: part files of ``part_users`` users plus ``_SUCCESS``. None: return the rows
        (then the output options below must keep their defaults).
    device, threads, candidates, block_users, tile_items
        As for :class:`Recommender`: the device, CPU threads, two-stage retrieval of
        ``candidates`` items per user (NeuMF/hybrid), and the graph-call tiling.
    history, history_update_known, history_min_ratings, rating_col
        As for :class:`Recommender`: ratings made after training, folded in before ranking.
    item_embeddings : path-like, DataFrame or pyarrow.Table, optional
        As for :class:`Recommender`: hybrid bundles' new items from their pretrained vectors.
    k : int
        Items per user.
    items : path-like or array-like, optional
        The candidate items: a one-column CSV/Parquet file or the ids (default: every item).
    exclude_seen : path-like, DataFrame or pyarrow.Table, optional
        (user, item) pairs never to recommend, e.g. the training ratings.
    user_col, item_col : str, optional
        Id columns of those inputs (default: the bundle's).
    users_col, items_col : str, optional
        The id column of the ``users`` / ``items`` file when it differs from ``user_col`` /
        ``item_col``.
    max_unknown_share : float
        The unknown-id guard, per list and for the seen pairs (1 turns it off).
    dialect : recmodels.tables.CsvDialect, optional
        How delimited text inputs are read.
    users : path-like or array-like, optional
        The users: a one-column CSV/Parquet file or the ids (default: every user).
    format, part_users, resume, overwrite, progress, report
        As for :meth:`Recommender.recommend_file`: the output format, users per part file,
        continuing an interrupted directory output, replacing an existing output, a progress bar,
        a JSON report path.

    Returns
    -------
    RecommendReport or pandas.DataFrame
        The report of the written output; without ``output``, the rows ``user_id, rank, item_id,
        score`` (``k`` per known user, fewer when fewer unseen candidates are left, in list order).

    Raises
    ------
    ConfigError
        Output options given without ``output``.

    Examples
    --------
    >>> rep = recommend("bundles/mf", "recs/", k=10, exclude_seen="ratings.parquet")   # doctest: +SKIP
    >>> print(rep.summary())                                                        # doctest: +SKIP
    >>> recommend("bundles/mf", users=[1, 2], k=5).head()                           # doctest: +SKIP
    """
    if output is None:
        given = [name for name, value, default in (
            ("format", format, None), ("part_users", part_users, None), ("resume", resume, False),
            ("overwrite", overwrite, False), ("progress", progress, False), ("report", report, None),
        ) if value is not default]
        if given:
            raise ConfigError(f"recommend: {', '.join(given)} need an output path; give one, or leave "
                              "them out to get the rows as a DataFrame")
    rec = Recommender(bundle, device=device, threads=threads, candidates=candidates,
                      block_users=block_users, tile_items=tile_items, history=history,
                      history_update_known=history_update_known, history_min_ratings=history_min_ratings,
                      rating_col=rating_col, item_embeddings=item_embeddings)
    inputs = dict(k=k, users=users, items=items, exclude_seen=exclude_seen, user_col=user_col,
                  item_col=item_col, users_col=users_col, items_col=items_col,
                  max_unknown_share=max_unknown_share, dialect=dialect)
    try:
        if output is None:
            return rec.recommend_frame(**inputs)
        return rec.recommend_file(output, format=format, part_users=part_users, resume=resume,
                                  overwrite=overwrite, progress=progress, report=report, **inputs)
    finally:
        rec.close()
