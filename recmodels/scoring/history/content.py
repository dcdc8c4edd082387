"""New hybrid items from their pretrained vectors: ``--item-embeddings`` at scoring time (numpy only).

A hybrid model's pretrained item vector ``e`` enters its linear predict layer and nothing follows
that layer but the additions of the biases and the global mean, so an item with the prior item's
other parameters and vector ``e`` scores, for every user ``u``, exactly::

    score(u, new) = score(u, prior item) + w_e . (e - e_prior)

That *exact* change overstates the content: training learned ``w_e`` together with each trained
item's own rows, which take up part of the content's effect. By default a new item gets the
*calibrated* change ``g . (e - e_prior)`` instead, ``g`` fitted at export to what the whole model
gives the trained items (:func:`recmodels.export.prior.calibrated_content`: their prior-user score
above the prior item's regressed on their ``e_i - e_prior``, weighed by their training ratings);
``exact=True`` gives the exact change (``docs/scoring.md``, "New hybrid items from their vectors",
for the figures). ``w_e``, ``e_prior`` and ``g`` are the rows of the bundle's
``fold_item_content.npy`` (``manifest.prior.fold_in.files["item_content"]``). Either change is an
item-bias change, the last coefficient of a fold-in's item delta (:class:`~.fold.Side`):
:func:`read_item_content` computes it for every item of the table the bundle does not know, and
:func:`~.fold.fold_in` starts the ridge solve of a new item with ``--history`` ratings from it.

The table is read as training's ``--item-embeddings`` is: CSV/Parquet (file, directory or glob), a
DataFrame or an Arrow table, the item id column (``--item-col``) and one numeric column per
dimension. Refused, with one line naming the input, row or column: a missing id column, a width
other than the bundle's, no rows, a null id, an id that cannot be an item id of the bundle's kind,
an id listed twice, a vector cell that is empty, not a number, NaN or infinite; a bundle that is not
hybrid, a hybrid bundle exported before this file existed, or (unless ``exact``) before it held
``g`` (re-export it: the exact change alone did worse than the prior item on MovieLens). Rows of
items the bundle knows are counted and not used: a trained item keeps the vector it was trained with.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from ...errors import BundleError, ConfigError, DataError, row_label
from ...ids import show_id, to_kind
from ...tables import read_table
from ...values import numeric_column

ROLE = "item_content"
"""The role of ``[w_e, e_prior, g]`` in ``manifest.prior.fold_in.files``."""
ROWS = {"exact": 0, "prior": 1, "calibrated": 2}
"""Row of each vector in ``fold_item_content.npy`` (bundles of the first version have two rows)."""


@dataclass
class ItemContent:
    """The content-based change of every new item of an embeddings table.

    Attributes
    ----------
    ids : ndarray
        The items the bundle does not know, in the bundle's item id kind, in table order.
    change : ndarray of float64
        ``g . (e - e_prior)`` (with ``exact``: ``w_e . (e - e_prior)``) of each: its score above the
        prior item's, for every user.
    rows_read : int
        Rows in the table.
    known_rows : int
        Rows whose item the bundle knows (not used).
    where : str
        The input, for messages.
    digest : str
        sha256 of the new items' ids and vectors (a resumed job must match it).
    """

    ids: np.ndarray
    change: np.ndarray
    rows_read: int
    known_rows: int
    where: str
    digest: str


def content_weights(bundle, *, exact: bool = False) -> np.ndarray:
    """``[weights, e_prior]`` (float64 ``[2, pretrained_dim]``) of a hybrid bundle: ``weights`` the
    calibrated ``g``, or with ``exact`` the predict layer's ``w_e`` (module docstring).

    Raises
    ------
    ConfigError
        The bundle is not hybrid (its items have no pretrained vectors).
    BundleError
        A hybrid bundle exported before ``--item-embeddings`` existed, or (without ``exact``) before
        the calibrated weights, or an unreadable array.
    """
    kind = bundle.model_kind
    if kind != "hybrid":
        raise ConfigError(f"--item-embeddings needs a hybrid bundle; {bundle.path} is a {kind} bundle, whose "
                          "items have no pretrained vectors (drop --item-embeddings)")
    prior = bundle.manifest.prior
    name = None if prior is None or prior.fold_in is None else prior.fold_in.files.get(ROLE)
    if name is None:
        raise BundleError(f"{bundle.path}: this hybrid bundle was exported before --item-embeddings existed "
                          "(no fold_item_content.npy); re-export it with `recmodels export` to add new items "
                          "from their vectors")
    try:
        array = np.load(bundle.path / name, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{bundle.path / name}: unreadable ({exc}); re-export the bundle") from None
    if array.ndim != 2 or array.shape[0] not in (2, len(ROWS)):
        raise BundleError(f"{bundle.path / name}: shape {array.shape}, expected ({len(ROWS)}, "
                          "pretrained_dim); re-export the bundle")
    if not exact and array.shape[0] <= ROWS["calibrated"]:
        raise BundleError(f"{bundle.path}: this hybrid bundle was exported before --item-embeddings used "
                          "the calibrated content change (fold_item_content.npy has no calibrated row); "
                          "re-export it with `recmodels export`")
    rows = [ROWS["exact" if exact else "calibrated"], ROWS["prior"]]
    return array[rows].astype(np.float64)


def _table(source, item_col: str) -> tuple[pa.Table, str]:
    if isinstance(source, pd.DataFrame):
        frame = source.reset_index(drop=True)
        frame.columns = [str(c) for c in frame.columns]
        return pa.Table.from_pandas(frame, preserve_index=False), "item embeddings DataFrame"
    if isinstance(source, pa.Table):
        return source, "item embeddings table"
    return read_table(source, None, what="item embedding", text_columns=(item_col,))


def _first(mask: np.ndarray) -> str:
    return row_label(int(np.argmax(mask)))


def read_item_content(bundle, source, *, item_col: str, exact: bool = False) -> ItemContent:
    """Read an embeddings table and compute its new items' content changes (module docstring).

    Parameters
    ----------
    bundle : Bundle
        A hybrid bundle with ``fold_item_content.npy`` (:func:`content_weights`).
    source : path-like, DataFrame or pyarrow.Table
    item_col : str
        The id column; every other column is one vector dimension.
    exact : bool
        The exact change ``w_e . (e - e_prior)`` (the model's own score of such an item) instead of
        the calibrated one (the default, what ``--item-embeddings`` uses). Pass the result as
        ``item_embeddings`` to :class:`~recmodels.scoring.Scorer` or ``Recommender``.

    Returns
    -------
    ItemContent

    Raises
    ------
    ConfigError, BundleError
        As :func:`content_weights`.
    DataError
        One line naming the input, row or column.
    """
    weights = content_weights(bundle, exact=exact)
    dim = weights.shape[1]
    table, where = _table(source, item_col)
    names = [str(c) for c in table.column_names]
    if item_col not in names:
        shown = ", ".join(repr(c) for c in names[:10]) + (" ..." if len(names) > 10 else "")
        raise DataError(f"{where}: no item id column {item_col!r} in the item embeddings (columns: {shown}); "
                        "name it with --item-col")
    columns = [c for c in names if c != item_col]
    if len(columns) != dim:
        raise DataError(f"{where}: {len(columns)} vector column(s) besides {item_col!r}, but "
                        f"{bundle.path} was trained on {dim}-wide pretrained vectors; pass the table the "
                        "model was trained with (same columns) with the new items added")
    n = table.num_rows
    if n == 0:
        raise DataError(f"{where}: the item embeddings have a header but no rows")
    kind = bundle.item_encoder.kind_
    ids, invalid, nulls = to_kind(table.column(item_col), kind)
    if nulls is not None and nulls.any():
        raise DataError(f"{where}: item id ({item_col!r}) at {_first(nulls)} is empty; drop or fill the row")
    if invalid is not None and invalid.any():
        raise DataError(f"{where}: item id ({item_col!r}) at {_first(invalid)} cannot be a {kind} item id "
                        "like the bundle's; is --item-col right?")
    repeated = pd.Series(ids).duplicated(keep="first").to_numpy()
    if repeated.any():
        second = int(np.argmax(repeated))
        first = int(np.argmax(ids == ids[second]))
        raise DataError(f"{where}: item id {show_id(ids[second])} at {row_label(second)} is listed "
                        f"before, at {row_label(first)} ({int(repeated.sum())} repeated id(s)); keep one "
                        "vector per item")
    vectors = np.empty((n, dim), dtype=np.float64)
    for j, name in enumerate(columns):
        vectors[:, j] = numeric_column(table.column(name).to_pandas(), where, name, what="vector value")
        big = np.abs(vectors[:, j]) > np.finfo(np.float32).max
        if big.any():
            raise DataError(f"{where}: vector value at {_first(big)} in column {name!r} is beyond float32; "
                            "vectors must be finite float32 numbers")
    new = bundle.item_encoder.lookup(ids)[0] < 0
    new_ids, new_vectors = ids[new], vectors[new].astype(np.float32)
    change = (new_vectors.astype(np.float64) - weights[1]) @ weights[0]
    digest = hashlib.sha256(np.ascontiguousarray(new_vectors).tobytes() + (b"exact" if exact else b""))
    digest.update(new_ids.tobytes() if new_ids.dtype != object else "\x00".join(new_ids.tolist()).encode())
    return ItemContent(new_ids, change, n, int(n - new.sum()), str(where), digest.hexdigest())
