"""Can interval bounds prune exact NeuMF top-K?  A feasibility measurement, not a product path.

For one user the folded NeuMF score of item ``i`` is ``dot(u, i) + mlp(a_u + b_i)`` (the first MLP
layer split into a per-user row ``a_u`` and a per-item row ``b_i``; docs/models.md). Cluster the
items' ``b_i`` with k-means into ``C`` boxes ``[lo_c, hi_c]`` and propagate each box through the
remaining layers with interval arithmetic (centre/radius form): ``mlp(a_u + b_i) <= ub(u, c)`` for
every item of cluster ``c``, so ``dot(u, i) + ub(u, c(i))`` bounds the score. An exact top-K may
skip every item whose bound is below the true K-th score. This script counts, for sampled users,
how many items a perfect pruner would still have to score exactly; pruning pays only if that
count plus the ``~2 C`` bound evaluations is well under the catalogue.

Usage (a run directory of a trained NeuMF, e.g. the one ``benchmarks/recommend_throughput.py``
trains in its work directory)::

    python benchmarks/ceiling/neumf_bounds.py RUN_DIR --clusters 1024 --users 100
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from recmodels.export.folding import fold
from recmodels.export.spec import extract_spec
from recmodels.runs import load_run


def kmeans(x: np.ndarray, k: int, iterations: int, seed: int) -> np.ndarray:
    """Lloyd's k-means labels of the rows of ``x`` (plain numpy)."""
    rng = np.random.default_rng(seed)
    centres = x[rng.choice(len(x), k, replace=False)].copy()
    sq = (x**2).sum(1)[:, None]
    for _ in range(iterations):
        labels = (sq - 2 * x @ centres.T + (centres**2).sum(1)[None]).argmin(1)
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, x)
        counts = np.bincount(labels, minlength=k)[:, None]
        centres = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
    return labels


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--clusters", type=int, default=1024)
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    f = fold(extract_spec(load_run(args.run_dir).model))
    if f.user_first is None:
        raise SystemExit(f"{args.run_dir}: not a model with an MLP tower")
    user_dot, item_dot = np.float32(f.user_dot), np.float32(f.item_dot)
    user_first, item_first = np.float32(f.user_first), np.float32(f.item_first)
    layers = [(np.float32(layer.weight), np.float32(layer.bias), layer.relu) for layer in f.rest_layers]
    out_w = np.float32(f.out_w)

    t0 = time.perf_counter()
    labels = kmeans(item_first, args.clusters, args.iterations, args.seed)
    lo = np.full((args.clusters, item_first.shape[1]), np.inf, np.float32)
    hi = np.full_like(lo, -np.inf)
    np.minimum.at(lo, labels, item_first)
    np.maximum.at(hi, labels, item_first)
    width = float((hi - lo).mean() / item_first.std())
    print(f"{len(item_first):,} items, {args.clusters} clusters in {time.perf_counter() - t0:.1f} s; "
          f"mean box width {width:.2f} x the std of the item rows")

    def tower(h):
        for w, b, relu in layers:
            h = h @ w.T + b
            if relu:
                h = np.maximum(h, 0)
        return h @ out_w

    def upper(a):  # [w] -> [clusters]: a bound of the tower over each box
        low, high = np.maximum(a + lo, 0), np.maximum(a + hi, 0)
        centre, radius = (low + high) / 2, (high - low) / 2
        for w, b, relu in layers:
            centre, radius = centre @ w.T + b, radius @ np.abs(w).T
            if relu:
                low, high = np.maximum(centre - radius, 0), np.maximum(centre + radius, 0)
                centre, radius = (low + high) / 2, (high - low) / 2
        return centre @ out_w + radius @ np.abs(out_w)

    rng = np.random.default_rng(args.seed)
    survivors = []
    for u in rng.choice(len(user_dot), args.users, replace=False):
        dot = item_dot @ user_dot[u]
        score = dot + tower(np.maximum(user_first[u] + item_first, 0))
        kth = np.partition(score, -args.k)[-args.k]
        bound = dot + upper(user_first[u])[labels]
        assert (bound >= score - 1e-4).all(), "the bound does not hold"
        survivors.append(int((bound >= kth).sum()))
    s = np.array(survivors)
    n = len(item_first)
    print(f"items a perfect pruner must still score exactly: median {np.median(s):,.0f} "
          f"({np.median(s) / n:.1%}), p90 {np.percentile(s, 90):,.0f}, max {s.max():,} of {n:,}; "
          f"work vs brute force ~{(2 * args.clusters + np.median(s)) / n:.2f}x")


if __name__ == "__main__":
    main()
