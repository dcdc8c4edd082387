"""The implicit signal (SVD++): which items a user rated, and which users rated an item.

With ``ModelConfig.implicit`` the GMF rows a rating sees are the *effective* rows::

    P_eff[u] = user_gmf[u] + |N(u)| ** -1/2 * sum(item_implicit[j] for j in N(u))   # "user" part
    Q_eff[i] = item_gmf[i] + |N(i)| ** -1/2 * sum(user_implicit[v] for v in N(i))   # "item" part

``N(u)``: the items ``u`` rated in the training rows, ``N(i)``: the users who rated ``i`` (each
pair once, whatever the rating). ``N`` is kept in the model as CSR buffers (saved in the state dict,
so a loaded model predicts as the trained one did).

How the sums are computed:

* in training, by the :class:`~recmodels.training.Trainer`: *windows* of a few batches. At a
  window's start the implicit parts of every row are computed at once, ``T = A @ table`` (``A``:
  :func:`normalised_matrix`), as a leaf tensor; each batch gathers its rows of ``T``, and the
  gradient accumulates in ``T.grad``; at the window's end the table gets ``A.T @ T.grad`` and
  its own optimizer step. The table does not change inside a window, so every prediction uses
  the exact sums; only the table's updates are less frequent (one per window). A popular item's
  raters are summed once per window, not once per batch (at the notebook's scale a batch's
  distinct items hold ~1.9M raters together);
* outside a window with autograd on (a model used on its own): each batch sums once per
  distinct user (item) it holds, one ``embedding_bag`` (:func:`implicit_sums`);
* without autograd (evaluation, the refit, export): the whole table ``A @ table``, kept until
  the table changes.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .config import IMPLICIT_PARTS

# (table of the implicit vectors, CSR buffer prefix, the side whose rows it shifts)
USER_PART = ("item_implicit", "rated_items", "user")
ITEM_PART = ("user_implicit", "raters", "item")


def parts_of(implicit: str) -> tuple[tuple[str, str, str], ...]:
    """The parts an ``implicit`` setting turns on (:data:`USER_PART`, :data:`ITEM_PART`)."""
    chosen = {"none": (), "user": (USER_PART,), "item": (ITEM_PART,), "both": (USER_PART, ITEM_PART)}
    return chosen[implicit]


class Cache(dict):
    """A model's derived implicit tensors (matrices, whole tables, windows): never copied or saved
    (a copy rebuilds them; sparse CSR tensors cannot be deep-copied)."""

    def __deepcopy__(self, memo):
        return Cache()

    def __reduce__(self):
        return Cache, ()


def rated_csr(own: torch.Tensor, other: torch.Tensor, n_own: int, n_other: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``N`` as CSR: own row ``r``'s partners are ``indices[indptr[r]:indptr[r + 1]]`` (sorted, each once).

    Parameters
    ----------
    own, other : torch.Tensor
        int64 ``(n,)``: the training rows' own and partner indices (repeats count once).
    n_own, n_other : int
        Table sizes.

    Returns
    -------
    indptr : torch.Tensor
        int64 ``(n_own + 1,)``.
    indices : torch.Tensor
        int64 ``(nnz,)``.
    """
    own, other = own.reshape(-1).long().cpu(), other.reshape(-1).long().cpu()
    keys = torch.unique(own * n_other + other)  # sorted: by own row, then partner
    rows = torch.div(keys, n_other, rounding_mode="floor")
    indptr = torch.zeros(n_own + 1, dtype=torch.int64)
    indptr[1:] = torch.cumsum(torch.bincount(rows, minlength=n_own), 0)
    return indptr, keys - rows * n_other


def bags(indptr: torch.Tensor, indices: torch.Tensor, rows: torch.Tensor
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The concatenated partner lists of ``rows``, for ``embedding_bag``.

    Returns
    -------
    flat : torch.Tensor
        int64: the partners of ``rows[0]``, then of ``rows[1]``, ...
    offsets : torch.Tensor
        int64 ``(len(rows),)``: where each row's partners start in ``flat``.
    weights : torch.Tensor
        float32, like ``flat``: ``|N(row)| ** -1/2`` for each of a row's partners.
    """
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    offsets = torch.cumsum(lengths, 0) - lengths
    total = int(lengths.sum()) if lengths.numel() else 0
    shift = torch.repeat_interleave(starts - offsets, lengths, output_size=total)
    flat = indices[torch.arange(total, device=indices.device) + shift]
    scale = lengths.clamp(min=1).to(torch.float32).rsqrt()
    weights = torch.repeat_interleave(scale, lengths, output_size=total)
    return flat, offsets, weights


def implicit_sums(table: nn.Embedding, indptr: torch.Tensor, indices: torch.Tensor,
                  index: torch.Tensor) -> torch.Tensor:
    """``|N(r)| ** -1/2 * sum(table[j] for j in N(r))`` for every ``r`` in ``index``: ``(B, dim)``.

    Computed once per distinct ``r`` in ``index`` (one ``embedding_bag``), then gathered. The
    bags look up each distinct row of ``table`` once (``table(rows)``), so its gradient (sparse
    when ``table.sparse`` is set) has one entry per distinct row, not one per bag member: the
    row-wise optimizer's cost follows the rows, not the members.
    """
    distinct, inverse = torch.unique(index, return_inverse=True)
    flat, offsets, weights = bags(indptr, indices, distinct)
    rows, local = torch.unique(flat, return_inverse=True)
    vectors = table(rows)
    sums = nn.functional.embedding_bag(local, vectors, offsets, mode="sum",
                                       per_sample_weights=weights.to(vectors.dtype))
    return sums.index_select(0, inverse)


def normalised_matrix(indptr: torch.Tensor, indices: torch.Tensor, n_other: int) -> torch.Tensor:
    """``A``, the sparse CSR matrix (float32) with ``A[r, j] = |N(r)| ** -1/2`` for ``j`` in ``N(r)``:
    the implicit parts of every own row are ``A @ table``."""
    lengths = indptr[1:] - indptr[:-1]
    values = torch.repeat_interleave(lengths.clamp(min=1).to(torch.float32).rsqrt(), lengths,
                                     output_size=indices.shape[0])
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(indptr, indices, values, size=(indptr.shape[0] - 1, n_other))


def transposed(matrix: torch.Tensor) -> torch.Tensor:
    """``matrix.T`` of a CSR matrix, as CSR (the gradient's side: ``table.grad = A.T @ grad(A @ table)``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return matrix.to_sparse_coo().t().coalesce().to_sparse_csr()


def sparse_product(matrix: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """``matrix @ dense`` for a CSR ``matrix`` (float32), on ``dense``'s device, without autograd."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        matrix = matrix.to(dense.device)
        return (matrix @ dense.float()).to(dense.dtype)


__all__ = ["IMPLICIT_PARTS", "ITEM_PART", "USER_PART", "Cache", "bags", "implicit_sums", "normalised_matrix",
           "parts_of", "rated_csr", "sparse_product", "transposed"]
