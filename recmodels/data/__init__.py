"""Interaction data: read and validate ratings, split them, encode ids, describe them.

Torch- and scikit-learn-free. One module per job:

* :mod:`~recmodels.data.columns`: :class:`Columns`, which columns hold what;
* :mod:`~recmodels.data.settings`: the choices (``DUPLICATE_POLICIES``, ``SPLIT_METHODS``,
  ``FILL_MODES``) and defaults of the data settings, light enough for the CLI's ``--help``;
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

from .. import _lazy

# name -> the module that defines it, imported on first use (PEP 562): the CLI's --help reads
# :mod:`.settings` without loading pandas or pyarrow
_EXPORTS = {
    "read_table": "..tables",
    "Columns": ".columns",
    **dict.fromkeys(["EncodedRatings", "encode", "fit_encoders", "load_encoded", "save_encoded"],
                    ".encoding"),
    "read_interactions": ".read",
    **dict.fromkeys(["DUPLICATE_POLICIES", "FILL_MODES", "SPLIT_METHODS"], ".settings"),
    **dict.fromkeys(["Split", "split_interactions"], ".split"),
    **dict.fromkeys(["describe", "format_stats", "rating_warnings"], ".stats"),
}

__all__ = [
    "DUPLICATE_POLICIES",
    "FILL_MODES",
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

__getattr__, __dir__ = _lazy.lazy_exports(globals(), _EXPORTS)
