"""Ceiling reference: biased MF fitted by ALS (MAP) on the benchmark split.

Usage: python benchmarks/ceiling/als.py SCALE GRID_JSON [ITERS];
GRID rows [rank, lam_f, lam_bu, lam_bi, alpha] (row reg = lam * (count / mean count) ** alpha);
validation RMSE of predictions clipped to [1, 5] (the best iteration by it), and unclipped;
SCALE 8 = 1/8 of users, items and ratings (same density), 1 = notebook scale.
"""

import json
import sys
import time

import numpy as np
import torch

from recmodels import data as D
from recmodels.datasets import make_ratings


def load(scale):
    n_u, n_i, n_r = 100_950 // scale, 59_196 // scale, 4_400_000 // scale
    syn = make_ratings(n_u, n_i, n_r, seed=0)
    split = D.split_interactions(syn.ratings, seed=0)
    users, items = D.fit_encoders(split.train)
    tr, _ = D.encode(split.train, users, items)
    va, _ = D.encode(split.valid, users, items)
    return syn, tr, va, len(users), len(items)


def normal_equations(idx, n, X, y, chunk=400_000):
    """Per-row Gram matrices ``G[r] = sum x x^T`` and ``b[r] = sum x y`` over the rows of each index."""
    k = X.shape[1]
    G = torch.zeros(n, k, k, dtype=torch.float64)
    b = torch.zeros(n, k, dtype=torch.float64)
    for s in range(0, idx.shape[0], chunk):
        xi = X[s : s + chunk]
        G.index_add_(0, idx[s : s + chunk], xi.unsqueeze(2) * xi.unsqueeze(1))
        b.index_add_(0, idx[s : s + chunk], xi * y[s : s + chunk].unsqueeze(1))
    return G, b


def solve_side(idx, n, X, y, lam_vec, chunk=400_000, alpha=0.0):
    G, b = normal_equations(idx, n, X, y, chunk)
    cnt = torch.bincount(idx, minlength=n).double().clamp(min=1)
    w = (cnt / cnt.mean()) ** alpha
    G += torch.diag(lam_vec) * w[:, None, None]
    return torch.linalg.solve(G, b)


def als(tr, va, nu, ni, rank, lam_f, lam_bu, lam_bi, iters=12, seed=0, verbose=False, alpha=0.0):
    g = torch.Generator().manual_seed(seed)
    u = torch.from_numpy(np.asarray(tr.user_index, dtype=np.int64))
    i = torch.from_numpy(np.asarray(tr.item_index, dtype=np.int64))
    r = torch.from_numpy(np.asarray(tr.rating, dtype=np.float64))
    vu = torch.from_numpy(np.asarray(va.user_index, dtype=np.int64))
    vi = torch.from_numpy(np.asarray(va.item_index, dtype=np.int64))
    vr = torch.from_numpy(np.asarray(va.rating, dtype=np.float64))
    mu = r.mean()
    P = torch.randn(nu, rank, generator=g, dtype=torch.float64) * 0.1
    Q = torch.randn(ni, rank, generator=g, dtype=torch.float64) * 0.1
    bu = torch.zeros(nu, dtype=torch.float64)
    bi = torch.zeros(ni, dtype=torch.float64)
    lu = torch.tensor([lam_f] * rank + [lam_bu], dtype=torch.float64)
    li = torch.tensor([lam_f] * rank + [lam_bi], dtype=torch.float64)
    best = (9, 0, 9)
    for it in range(iters):
        X = torch.cat([Q[i], torch.ones(len(i), 1, dtype=torch.float64)], 1)
        sol = solve_side(u, nu, X, r - mu - bi[i], lu, alpha=alpha)
        P, bu = sol[:, :rank], sol[:, rank]
        X = torch.cat([P[u], torch.ones(len(u), 1, dtype=torch.float64)], 1)
        sol = solve_side(i, ni, X, r - mu - bu[u], li, alpha=alpha)
        Q, bi = sol[:, :rank], sol[:, rank]
        raw = mu + bu[vu] + bi[vi] + (P[vu] * Q[vi]).sum(1)
        rmse = float(((raw.clamp(1, 5) - vr) ** 2).mean().sqrt())
        rmse_raw = float(((raw - vr) ** 2).mean().sqrt())
        if verbose:
            print(f"  it {it + 1} valid {rmse:.4f} (unclipped {rmse_raw:.4f})", flush=True)
        best = min(best, (rmse, it + 1, rmse_raw))
    return best


if __name__ == "__main__":
    scale = int(sys.argv[1])
    torch.set_num_threads(1)
    syn, tr, va, nu, ni = load(scale)
    gm, br = syn.global_mean_rmse, syn.best_rmse
    print(
        f"scale 1/{scale}: {nu} users {ni} items {len(tr.rating)} train; gm {gm:.4f} best {br:.4f}",
        flush=True,
    )
    grid = json.loads(sys.argv[2])
    for rank, lf, lbu, lbi, alpha in grid:
        t = time.time()
        rmse, it, rmse_raw = als(
            tr,
            va,
            nu,
            ni,
            rank,
            lf,
            lbu,
            lbi,
            iters=int(sys.argv[3]) if len(sys.argv) > 3 else 12,
            alpha=alpha,
        )
        print(
            f"alpha {alpha} rank {rank} lam_f {lf} lam_bu {lbu} lam_bi {lbi}: valid {rmse:.4f} (it {it}) "
            f"gap {(gm - rmse) / (gm - br):.1%}; unclipped {rmse_raw:.4f}, "
            f"gap {(gm - rmse_raw) / (gm - br):.1%}"
            f"  {time.time() - t:.0f}s",
            flush=True,
        )
