"""Fold-in from recent history (``--history``): new and known users, new items, torch-free.

:mod:`.read` reads and checks the ratings, :mod:`.solve` holds the batched ridge arithmetic,
:mod:`.fold` builds a :class:`FoldIn` from a bundle's prior rows and fold-in arrays, and
:mod:`.content` reads a hybrid bundle's new items' pretrained vectors (``--item-embeddings``)
(``docs/scoring.md``, "New users and items").
"""

from .content import ItemContent, read_item_content
from .fold import DEFAULT_MIN_RATINGS, FoldIn, Side, check_bundle, fold_in
from .read import HistoryRows, read_history
from .solve import gradient_solve, ridge_solve

__all__ = ["DEFAULT_MIN_RATINGS", "FoldIn", "HistoryRows", "ItemContent", "Side", "check_bundle", "fold_in",
           "gradient_solve", "read_history", "read_item_content", "ridge_solve"]
