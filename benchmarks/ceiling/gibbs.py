"""Bayes ceiling: Gibbs sampling of the planted model posterior (known priors), predictions averaged.

Usage: python benchmarks/ceiling/gibbs.py SCALE SWEEPS BURN_IN [NOISE_VAR=0.33]
"""

import math
import sys

import numpy as np
import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from als import load, normal_equations

from recmodels.datasets import expected_rating


def side(idx, n, X, y, prec, sigma2, g, chunk=400_000):
    G, b = normal_equations(idx, n, X, y, chunk)
    A = G / sigma2 + torch.diag(prec)
    L = torch.linalg.cholesky(A)
    mean = torch.cholesky_solve((b / sigma2).unsqueeze(2), L).squeeze(2)
    z = torch.randn(n, X.shape[1], 1, generator=g, dtype=torch.float64)
    noise = torch.linalg.solve_triangular(L.transpose(1, 2), z, upper=True).squeeze(2)
    return mean + noise


scale, sweeps, burn = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
sigma2 = float(sys.argv[4]) if len(sys.argv) > 4 else 0.33
torch.set_num_threads(1)
syn, tr, va, nu, ni = load(scale)
gm, br = syn.global_mean_rmse, syn.best_rmse
rank = 8
s2 = 0.7 / math.sqrt(rank)
g = torch.Generator().manual_seed(0)
def T(a, dt):
    return torch.from_numpy(np.asarray(a, dtype=dt))
u, i, r = T(tr.user_index, np.int64), T(tr.item_index, np.int64), T(tr.rating, np.float64)
vu, vi, vr = T(va.user_index, np.int64), T(va.item_index, np.int64), T(va.rating, np.float64)
mu = 3.6
pu = torch.tensor([1 / s2] * rank + [1 / 0.35**2], dtype=torch.float64)
pi = torch.tensor([1 / s2] * rank + [1 / 0.45**2], dtype=torch.float64)
P = torch.randn(nu, rank, generator=g, dtype=torch.float64) * 0.1
bu = torch.zeros(nu, dtype=torch.float64)
Q = torch.randn(ni, rank, generator=g, dtype=torch.float64) * 0.1
bi = torch.zeros(ni, dtype=torch.float64)
acc_lin = torch.zeros(len(vu), dtype=torch.float64)
acc_exp = torch.zeros(len(vu), dtype=torch.float64)
m = 0
def one(n):
    return torch.ones(n, 1, dtype=torch.float64)
for it in range(sweeps):
    sol = side(u, nu, torch.cat([Q[i], one(len(i))], 1), r - mu - bi[i], pu, sigma2, g)
    P, bu = sol[:, :rank], sol[:, rank]
    sol = side(i, ni, torch.cat([P[u], one(len(u))], 1), r - mu - bu[u], pi, sigma2, g)
    Q, bi = sol[:, :rank], sol[:, rank]
    x = mu + bu[vu] + bi[vi] + (P[vu] * Q[vi]).sum(1)
    if it >= burn:
        acc_lin += x.clamp(1, 5)
        acc_exp += torch.from_numpy(expected_rating(x.numpy(), 0.5))
        m += 1
        for name, acc in (("clamped latent", acc_lin), ("E[r|x]", acc_exp)):
            rmse = float(((acc / m - vr) ** 2).mean().sqrt())
            print(
                f"sweep {it + 1} avg of {m} {name}: valid {rmse:.4f} gap {(gm - rmse) / (gm - br):.1%}",
                flush=True,
            )
# the oracle's own numbers on this valid split
