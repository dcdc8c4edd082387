"""Fold new (and known) users and items in from their recent ratings (numpy only).

With a user's MLP input held at the prior user's (a new user) or at its trained value (a known
user), the model's score is linear in the user's effective GMF row ``P_u`` and bias::

    score(u, i) = base(u, i) + [Q_i, 1] . d_u

``base`` is ``model.onnx``'s score for the prior (or trained) user, ``Q_i`` the item's effective
GMF row (``fold_item_vectors.npy``) and ``d_u`` the change of ``[P_u, bias]``: a ridge solve on
the residuals of the user's history ratings (:func:`~.solve.ridge_solve`), with the prior
precisions recorded at export, and for a known user its training ratings' weight too. New items
are symmetric, from ratings by known users. A pair of a folded-in user and a folded-in item
adds both changes and their product ``d_u . d_i`` over the GMF part, which is the exact score
of the folded-in rows.

New items of a hybrid bundle also come from their pretrained vectors (``--item-embeddings``,
:mod:`.content`): the vector's change (calibrated ``g . (e - e_prior)``, or the exact
``w_e . (e - e_prior)``) is an item-bias change, so such an
item's ``d_i`` is ``[0, ..., change]`` without ratings, and its ridge solve starts from there with
ratings (the residuals are taken against the prior item's score plus the change).

:class:`FoldIn` is the result: the scorer extends its id lookup with it (:meth:`FoldIn.extend`)
and adds the changes to the graph's scores (:meth:`FoldIn.adjust`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ...encoders import IdEncoder
from ...errors import BundleError, ConfigError
from ..defaults import DEFAULT_MIN_RATINGS
from . import implicit
from .content import ItemContent, read_item_content
from .read import HistoryRows, read_history
from .solve import design, gradient_solve, ridge_solve

SOLVERS = ("ridge", "gradient")
GRADIENT_STEPS = 25


def _load(bundle, role: str, rows: int, rank: int | None) -> np.ndarray | None:
    fold = bundle.manifest.prior.fold_in
    name = fold.files.get(role)
    if name is None:
        return None
    try:
        array = np.load(bundle.path / name, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{bundle.path / name}: unreadable fold-in array ({exc}); re-export the bundle") \
            from None
    shape = (rows,) if rank is None else (rows, rank)
    if array.shape != shape:
        raise BundleError(f"{bundle.path / name}: shape {array.shape}, expected {shape}; "
                          "re-export the bundle")
    return array


def check_bundle(bundle) -> None:
    """Raise :class:`BundleError` when ``bundle`` predates the prior rows and fold-in arrays."""
    prior = bundle.manifest.prior
    if prior is None or prior.fold_in is None:
        raise BundleError(f"{bundle.path}: this bundle was exported before --history existed (no prior "
                          "rows or fold-in arrays); re-export it with `recmodels export` to use --history")


@dataclass
class Side:
    """One side (users or items) of a fold-in.

    ``ext`` indices: ``0 .. n - 1`` the bundle's rows, ``n`` the prior row, ``n + 1 + j`` the
    ``j``-th folded-in new id (:attr:`new_ids`). ``slot[ext]`` is the row of :attr:`delta`
    holding that index's change, or -1.
    """

    n: int
    vectors: np.ndarray
    new_ids: IdEncoder | None = None
    slot: np.ndarray | None = None
    delta: np.ndarray | None = None

    def extend(self, column, index: np.ndarray) -> None:
        """Give rows of ``index`` that are unknown (-1) and folded in their ``n + 1 + j`` index."""
        if self.new_ids is None:
            return
        unknown = index < 0
        if unknown.any():
            found = self.new_ids.lookup(column)[0]
            hit = unknown & (found >= 0)
            index[hit] = self.n + 1 + found[hit]

    @property
    def rows(self) -> int:
        """The ``ext`` indices there are: the bundle's rows, the prior row and the new ids."""
        return self.n + 1 + (0 if self.new_ids is None else len(self.new_ids))

    def new_rows(self) -> np.ndarray:
        """The ``ext`` indices of the folded-in new ids, in the order of :attr:`new_ids`."""
        return np.arange(self.n + 1, self.rows, dtype=np.int64)

    def folded(self, ext: np.ndarray) -> np.ndarray:
        """Whether each ``ext`` index has a change (a new id, or a known row that was updated)."""
        if self.slot is None:
            return np.zeros(np.shape(ext), dtype=bool)
        return self.slot[ext] >= 0

    def id_values(self, classes: np.ndarray, ext: np.ndarray) -> np.ndarray:
        """The ids of ``ext`` indices of the bundle's rows (``classes``) or new ids."""
        if self.new_ids is None:
            return classes[ext]
        new = ext > self.n
        out = classes[np.where(new, 0, ext)]
        out[new] = self.new_ids.classes_[ext[new] - (self.n + 1)]
        return out

    def graph_index(self, ext: np.ndarray) -> np.ndarray:
        """The graph's row of ``ext`` indices (new ids are the prior row)."""
        return np.minimum(ext, self.n)

    def slots(self, ext: np.ndarray) -> np.ndarray | None:
        """``slot[ext]`` (-1 where the row did not change), or None when nothing changed."""
        if self.slot is None:
            return None
        return self.slot[ext]


@dataclass
class FoldIn:
    """Users and items folded in from a history (see the module docstring).

    Attributes
    ----------
    users, items : Side
    stats : dict
        ``history_rows``, ``duplicates``, ``users_folded_in``, ``users_updated``,
        ``items_folded_in`` (new items with a change: from ratings, a vector or both),
        ``users_too_few``, ``items_too_few`` (new ids with fewer than ``min_ratings`` usable
        ratings; an item with a vector keeps its content change), ``rows_unused`` (both sides new,
        or a known user's row when known users are not updated), ``known_update`` (whether known
        users were updated); with ``--item-embeddings`` also ``items_from_vectors`` (new items
        with a vector), ``items_without_vector`` (new history items the table lacks: folded in from
        the prior item's vector, as without the table) and ``vector_rows_known`` (table rows of
        items the bundle knows: not used).
    token : str
        sha256 of the history rows and the fold-in options (a resumed job must match it).
    seen : (ndarray, ndarray)
        ``(user ext index, item index)`` of the history rows whose user the bundle knows or folded
        in and whose item the bundle knows: what ``recommend --exclude-seen`` leaves out too.
    seen_new : (ndarray, ndarray)
        The same for history rows whose item was folded in: ``(user ext index, item ext index)``.
    """

    users: Side
    items: Side
    stats: dict = field(default_factory=dict)
    token: str = ""
    seen: tuple = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    seen_new: tuple = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))

    def extend(self, user_column, item_column, user_index: np.ndarray, item_index: np.ndarray) -> None:
        """Map folded-in new ids (index -1 from the bundle's encoders) in place."""
        self.users.extend(user_column, user_index)
        self.items.extend(item_column, item_index)

    def adjust(self, ext_user: np.ndarray, ext_item: np.ndarray, scores: np.ndarray) -> None:
        """Add the folded-in changes to ``scores`` (the graph's, for the graph rows) in place."""
        su, si = self.users.slots(ext_user), self.items.slots(ext_item)
        rank = self.users.vectors.shape[1]
        if su is not None:
            rows = np.flatnonzero(su >= 0)
            if rows.size:
                d = self.users.delta[su[rows]]
                q = self.items.vectors[self.items.graph_index(ext_item[rows])]
                scores[rows] += (np.einsum("ij,ij->i", q, d[:, :rank]) + d[:, rank]).astype(scores.dtype)
        if si is not None:
            rows = np.flatnonzero(si >= 0)
            if rows.size:
                d = self.items.delta[si[rows]]
                p = self.users.vectors[self.users.graph_index(ext_user[rows])]
                extra = np.einsum("ij,ij->i", p, d[:, :rank]) + d[:, rank]
                if su is not None:
                    both = su[rows] >= 0
                    if both.any():
                        du = self.users.delta[su[rows][both], :rank]
                        extra[both] += np.einsum("ij,ij->i", du, d[both, :rank])
                scores[rows] += extra.astype(scores.dtype)


def _moment(vectors: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean ``[v, 1][v, 1]^T`` over the training ratings (``counts`` per row of ``vectors``)."""
    x = design(vectors)
    total = max(1, int(counts.sum()))
    return (x * counts[:, None]).T @ x / total


def _solve_side(owner_ext: np.ndarray, n: int, features: np.ndarray, target: np.ndarray, precision,
                min_ratings: int, counts: np.ndarray | None, moment: np.ndarray | None, solver: str,
                part: np.ndarray | None = None, partners: np.ndarray | None = None):
    """Solve the owners of a side, new owners around their implicit parts (``part``: the side's
    array, :mod:`.implicit`, None without one; ``partners``: each row's other side); returns
    ``(owners ext, deltas, too_few new owners)``."""
    shift = implicit.part_shift(part, owner_ext, partners, n)
    target = implicit.centred_target(target, features, shift)
    owners, code, per_owner = np.unique(owner_ext, return_inverse=True, return_counts=True)
    enough = (per_owner >= min_ratings) | (owners < n)
    too_few = int(np.count_nonzero(~enough))
    if too_few:
        keep_owner = np.flatnonzero(enough)
        remap = np.full(owners.size, -1)
        remap[keep_owner] = np.arange(keep_owner.size)
        code = remap[code]
        rows = code >= 0
        owners, code, features, target = owners[keep_owner], code[rows], features[rows], target[rows]
    owner_counts = None
    if counts is not None:
        owner_counts = np.where(owners < n, counts[np.minimum(owners, n)], 0).astype(np.float64)
    kw = {"counts": owner_counts, "moment": moment}
    if solver == "gradient":
        delta = gradient_solve(code, features, target, precision, owners.size, steps=GRADIENT_STEPS, **kw)
    else:
        delta = ridge_solve(code, features, target, precision, owners.size, **kw)
    return owners, implicit.shifted(delta, owners, owner_ext, shift), too_few


def _side(n: int, vectors: np.ndarray, new_values: np.ndarray, owners: np.ndarray, delta: np.ndarray,
          name: str) -> Side:
    """A :class:`Side` whose new ids are those of ``new_values`` (ext ``n + 1 + j``) that were solved."""
    side = Side(n, vectors)
    if owners.size == 0:
        return side
    new_codes = owners[owners > n] - (n + 1)
    if new_codes.size:
        side.new_ids = IdEncoder.from_classes(new_values[new_codes], name)
    size = n + 1 + (new_codes.size if new_codes.size else 0)
    slot = np.full(size, -1, dtype=np.int64)
    known = owners[owners < n]
    slot[known] = np.arange(known.size)
    slot[n + 1 + np.arange(new_codes.size)] = known.size + np.arange(new_codes.size)
    side.slot = slot
    side.delta = np.concatenate([delta[owners < n], delta[owners > n]])
    return side


def _empty_history(bundle) -> HistoryRows:
    """No ratings (``--item-embeddings`` without ``--history``)."""
    kinds = {"int64": np.int64, "string": object}
    users, items = (np.zeros(0, kinds[e.kind_]) for e in (bundle.user_encoder, bundle.item_encoder))
    return HistoryRows(users, items, np.zeros(0), 0, 0, "no history")


def fold_in(bundle, history, run: Callable[[np.ndarray, np.ndarray], np.ndarray], *, user_col: str,
            item_col: str, rating_col: str | None = None, update_known: bool = True,
            min_ratings: int = DEFAULT_MIN_RATINGS, solver: str = "ridge", item_embeddings=None) -> FoldIn:
    """Fold in a history's users and items, and a hybrid bundle's new items' vectors (module docstring).

    Parameters
    ----------
    bundle : Bundle
        With the prior rows and fold-in arrays (:func:`check_bundle`).
    history : path-like, DataFrame, Arrow table, HistoryRows or None
        The ratings (:func:`~.read.read_history`); None: none (with ``item_embeddings``).
    run : callable
        ``(user_index, item_index) -> scores``: ``model.onnx`` on graph rows (prior rows included).
    user_col, item_col, rating_col : str
        The history's columns (``rating_col`` default: the bundle's); ``item_col`` also names the
        id column of ``item_embeddings``.
    update_known : bool
        Also move known users toward their history (weighed against their training ratings).
    min_ratings : int
        New users (items) with fewer usable ratings are not folded in (an item with a vector keeps
        its content change).
    solver : {"ridge", "gradient"}
        The exact solve, or :data:`GRADIENT_STEPS` gradient steps (for the benchmark).
    item_embeddings : path-like, DataFrame, Arrow table or ItemContent, optional
        Pretrained vectors of new items (hybrid bundles: :func:`~.content.read_item_content`).

    Returns
    -------
    FoldIn
    """
    content = item_embeddings
    if content is not None and not isinstance(content, ItemContent):
        content = read_item_content(bundle, content, item_col=item_col)
    check_bundle(bundle)
    if solver not in SOLVERS:
        raise ConfigError(f"fold-in solver {solver!r}: choose one of {', '.join(SOLVERS)}")
    if int(min_ratings) < 1:
        raise ConfigError(f"--history-min-ratings must be at least 1, got {min_ratings}")
    manifest = bundle.manifest
    fold = manifest.prior.fold_in
    nu, ni = manifest.prior.user_row, manifest.prior.item_row
    users_enc, items_enc = bundle.user_encoder, bundle.item_encoder
    if history is None:
        history = _empty_history(bundle)
    elif not isinstance(history, HistoryRows):
        history = read_history(history, user_col=user_col, item_col=item_col,
                               rating_col=rating_col or manifest.rating.column, user_kind=users_enc.kind_,
                               item_kind=items_enc.kind_, rating_range=bundle.rating_range)
    P = _load(bundle, "user_vectors", nu + 1, fold.rank).astype(np.float64)
    Q = _load(bundle, "item_vectors", ni + 1, fold.rank).astype(np.float64)
    user_counts = _load(bundle, "user_counts", nu + 1, None)
    item_counts = _load(bundle, "item_counts", ni + 1, None)
    u = users_enc.lookup(history.users)[0]
    i = items_enc.lookup(history.items)[0]
    new_users, u_code = np.unique(history.users[u < 0], return_inverse=True)
    rated_new = history.items[i < 0]
    new_items = np.unique(rated_new if content is None else np.concatenate([rated_new, content.ids]))
    i_code = np.searchsorted(new_items, rated_new)
    u_ext, i_ext = u.copy(), i.copy()
    u_ext[u < 0] = nu + 1 + u_code
    i_ext[i < 0] = ni + 1 + i_code
    r = history.ratings
    can_update = update_known and user_counts is not None
    by_user = (i >= 0) & ((u < 0) | can_update)
    by_item = (i < 0) & (u >= 0)
    # only known users carry a training weight: a history of new users needs no moment
    user_moment = _moment(Q[:ni], item_counts[:ni]) if can_update and np.any(by_user & (u >= 0)) else None
    stats = {"history_rows": history.rows_read, "duplicates": history.duplicates,
             "known_update": bool(can_update), "rows_unused": int(r.size - by_user.sum() - by_item.sum())}
    owners, delta, too_few = np.zeros(0, np.int64), np.zeros((0, fold.rank + 1)), 0
    if by_user.any():
        rows = np.flatnonzero(by_user)
        base = np.asarray(run(np.minimum(u_ext[rows], nu), i[rows]), dtype=np.float64)
        owners, delta, too_few = _solve_side(u_ext[rows], nu, Q[i[rows]], r[rows] - base, fold.user_precision,
                                             min_ratings, user_counts, user_moment, solver,
                                             part=_load(bundle, implicit.ROLES["user"], ni + 1, fold.rank),
                                             partners=i[rows])
    stats.update(users_folded_in=int(np.count_nonzero(owners > nu)),
                 users_updated=int(np.count_nonzero(owners < nu)), users_too_few=too_few)
    users = _side(nu, P, new_users, owners, delta, "user")
    # every new item's change [d_Q, d_bias]: its content change in the bias, then its ratings' solve
    item_delta = np.zeros((new_items.size, fold.rank + 1))
    changed = np.zeros(new_items.size, dtype=bool)
    if content is not None:
        where = np.searchsorted(new_items, content.ids)
        item_delta[where, fold.rank] = content.change
        changed[where] = True
        stats.update(items_from_vectors=int(content.ids.size), vector_rows_known=content.known_rows,
                     items_without_vector=int(np.count_nonzero(~changed[np.unique(i_code)])))
    too_few = 0
    if by_item.any():
        rows = np.flatnonzero(by_item)
        start = item_delta[i_code[by_item[i < 0]], fold.rank]
        base = np.asarray(run(u[rows], np.full(rows.size, ni, dtype=np.int64)), dtype=np.float64) + start
        owners, delta, too_few = _solve_side(i_ext[rows], ni, P[u[rows]], r[rows] - base, fold.item_precision,
                                             min_ratings, None, None, solver,
                                             part=_load(bundle, implicit.ROLES["item"], nu + 1, fold.rank),
                                             partners=u[rows])
        item_delta[owners - (ni + 1)] += delta
        changed[owners - (ni + 1)] = True
    stats.update(items_folded_in=int(changed.sum()), items_too_few=too_few)
    code_ext = np.full(new_items.size, -1, dtype=np.int64)
    code_ext[changed] = ni + 1 + np.arange(int(changed.sum()))
    items = _side(ni, Q, new_items, ni + 1 + np.flatnonzero(changed), item_delta[changed], "item")
    seen_users = u.copy()
    users.extend(history.users, seen_users)
    rated = (seen_users >= 0) & (i >= 0)
    new_item_ext = np.full(i.size, -1, dtype=np.int64)
    new_item_ext[i < 0] = code_ext[i_code]
    rated_new = (seen_users >= 0) & (new_item_ext >= 0)
    options = (update_known, min_ratings, solver) + (() if content is None else (content.digest,))
    return FoldIn(users, items, stats, _token(history, *options), (seen_users[rated], i[rated]),
                  (seen_users[rated_new], new_item_ext[rated_new]))


def _token(history: HistoryRows, *options) -> str:
    digest = hashlib.sha256(repr(options).encode())
    for ids in (history.users, history.items):
        digest.update(ids.tobytes() if ids.dtype != object else "\x00".join(ids.tolist()).encode())
    digest.update(np.ascontiguousarray(history.ratings).tobytes())
    return digest.hexdigest()
