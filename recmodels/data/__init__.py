"""Interaction data: read and validate ratings, split them, encode ids, describe them.

Torch- and scikit-learn-free. One module per job:

* :mod:`~recmodels.data.columns`: :class:`Columns`, which columns hold what;
* :mod:`~recmodels.data.read`: :func:`read_interactions` (files through :mod:`recmodels.tables`,
  ids by the rules of :mod:`recmodels.ids`);
* :mod:`~recmodels.data.validate`: the id, rating, timestamp and duplicate checks;
* :mod:`~recmodels.data.split`: :func:`split_interactions` and :class:`Split`;
* :mod:`~recmodels.data.encoding`: :func:`fit_encoders`, :func:`encode`, :class:`EncodedRatings`,
  :func:`save_encoded`, :func:`load_encoded`;
* :mod:`~recmodels.data.stats`: :func:`describe`, :func:`format_stats`, :func:`rating_warnings`.

Every problem a user can cause is a :class:`~recmodels.errors.DataError` whose one-line message
names the input, the row (``data row N``: 1-based, header not counted) or the column, and what to
do about it.

Typical use::

    cols = Columns(item="book_id")
    df = read_interactions("ratings.csv", cols)
    split = split_interactions(df, seed=0, columns=cols)
    users, items = fit_encoders(split.train, cols)
    train, report = encode(split.train, users, items, cols)
"""

from ..tables import read_table
from .columns import Columns
from .encoding import EncodedRatings, encode, fit_encoders, load_encoded, save_encoded
from .read import read_interactions
from .split import SPLIT_METHODS, Split, split_interactions
from .stats import describe, format_stats, rating_warnings
from .validate import DUPLICATE_POLICIES

__all__ = [
    "DUPLICATE_POLICIES",
    "SPLIT_METHODS",
    "Columns",
    "EncodedRatings",
    "Split",
    "describe",
    "encode",
    "fit_encoders",
    "format_stats",
    "load_encoded",
    "rating_warnings",
    "read_interactions",
    "read_table",
    "save_encoded",
    "split_interactions",
]
