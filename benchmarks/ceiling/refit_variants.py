"""Variants of the low-rank refit on one trained NeuMF (docs/models.md, "The low-rank refit").

Trains default NeuMF once on the split of ``benchmarks/train_throughput.py`` (same data, seed
and init; with the same thread count, ``--threads 2`` there, the same SGD run), with the refit
off, and keeps its best weights in ``--cache`` (a state dict, ``torch.load(weights_only=True)``).
Then refits a copy of them once per variant and prints the share of the planted gap closed on
the validation rows (which choose the rank and ``lam``) and on the test rows (seen by nothing),
raw and clipped to the rating range.
Its seconds are single runs on whatever else the machine does: not a comparison.

A variant is ``+``-joined ``key:value`` settings of :func:`recmodels.training.refit.refit_low_rank`:
``bias:S`` (``bias_scale``), ``count:E,..`` (``count_exponents``), ``sweeps:N`` (``max_sweeps``),
``lams:A,B,...`` (``lambdas``), ``vb:off`` (``variational=False``: ridge only), ``noise:A,B,...``
(``noise_shares``); ``base`` is the defaults. Usage::

    python benchmarks/ceiling/refit_variants.py base vb:off noise:0.5 noise:0.7 noise:1
    python benchmarks/ceiling/refit_variants.py vb:off+bias:0.25 vb:off+count:0.5 vb:off+sweeps:8
    python benchmarks/ceiling/refit_variants.py --scale 8 base      # 1/8 of the notebook's scale
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

from recmodels import data as D
from recmodels.datasets import make_ratings
from recmodels.models import ModelConfig, build_model
from recmodels.training import TrainConfig, Trainer
from recmodels.training.refit import refit_low_rank
from recmodels.training.trainer import RatingTensors

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from train_throughput import final_figures  # noqa: E402

SETTINGS = {"bias": ("bias_scale", float),
            "count": ("count_exponents", lambda v: tuple(float(x) for x in v.split(","))),
            "sweeps": ("max_sweeps", int), "vb": ("variational", lambda v: v not in ("0", "off")),
            "noise": ("noise_shares", lambda v: tuple(float(x) for x in v.split(","))),
            "lams": ("lambdas", lambda v: tuple(float(x) for x in v.split(",")))}


def parse_variant(text: str) -> dict:
    """``"bias:0.25+sweeps:8"`` -> ``{"bias_scale": 0.25, "max_sweeps": 8}``."""
    options = {}
    for part in text.split("+"):
        if part == "base":
            continue
        key, _, value = part.partition(":")
        if key not in SETTINGS:
            raise SystemExit(f"error: unknown setting {key!r} in {text!r}; use one of {sorted(SETTINGS)}")
        name, convert = SETTINGS[key]
        options[name] = convert(value)
    return options


def planted_split(scale: int, seed: int):
    """``(syn, train, valid, test, n_users, n_items)``: the planted ratings of
    ``benchmarks/train_throughput.py`` at ``1/scale`` of the notebook's sizes, split and encoded as
    there."""
    n_u, n_i, n_r = 100_950 // scale, 59_196 // scale, 4_400_000 // scale
    syn = make_ratings(n_u, n_i, n_r, seed=seed)
    split = D.split_interactions(syn.ratings, seed=seed)
    users, items = D.fit_encoders(split.train)
    train, valid, test = (D.encode(part, users, items)[0] for part in (split.train, split.valid, split.test))
    return syn, train, valid, test, len(users), len(items)


def sgd_neumf(train, valid, n_users: int, n_items: int, seed: int, cache: str | None = None, log=print,
              threads: int | None = None):
    """``(model, history)``: default NeuMF trained with the refit off, holding its best weights.

    The same init and dropout draws as ``train_throughput.py`` (``torch.manual_seed(seed)`` first),
    on ``threads`` threads (``TrainConfig.num_threads``; the SGD run depends on it). With
    ``cache``: loaded from that state dict if it exists (``history`` is then None), else written
    there after training.
    """
    torch.manual_seed(seed)
    model = build_model(ModelConfig("neumf", n_users, n_items, global_mean=float(train.rating.mean())))
    if cache and os.path.exists(cache):
        model.load_state_dict(torch.load(cache, weights_only=True))
        return model, None
    trainer = Trainer(model, TrainConfig(seed=seed, refit=False, num_threads=threads), torch.device("cpu"),
                      log=log, progress=False)
    trainer.fit(train, valid)
    model.load_state_dict(trainer.best_state_dict)
    if cache:
        torch.save(model.state_dict(), cache)
    return model, trainer.state.history


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="*", default=["base"])
    ap.add_argument("--scale", type=int, default=1, help="1 = the notebook's scale, 8 = 1/8 of it")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=None,
                    help="state dict of the trained SGD weights (default: "
                         "refit_neumf_x{scale}_s{seed}_t{threads}.pt in the system's temp folder); "
                         "trained and written when missing (delete it after changing the training code)")
    args = ap.parse_args(argv)
    options = [(v, parse_variant(v)) for v in args.variants]
    torch.set_num_threads(args.threads)
    syn, train, valid, test, n_users, n_items = planted_split(args.scale, args.seed)
    cpu = torch.device("cpu")
    cache = args.cache or os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                       f"refit_neumf_x{args.scale}_s{args.seed}_t{args.threads}.pt")
    model, _ = sgd_neumf(train, valid, n_users, n_items, args.seed, cache, threads=args.threads)
    sgd = {k: v.clone() for k, v in model.state_dict().items()}
    rating_range = float(np.min(train.rating)), float(np.max(train.rating))

    def gap_closed(rmse: float) -> float:
        return (syn.global_mean_rmse - rmse) / (syn.global_mean_rmse - syn.best_rmse)

    def shares(tag: str, extra: str = "") -> None:
        f = {k: v["gap_closed"] for k, v in
             final_figures(model, {"valid": valid, "test": test}, rating_range, gap_closed).items()}
        print(f"{tag:24s} valid raw {f['valid_raw']:.2%} clipped {f['valid_clipped']:.2%} | test raw "
              f"{f['test_raw']:.2%} clipped {f['test_clipped']:.2%}  {extra}", flush=True)

    shares("SGD best (no refit)")
    train_t, valid_t = RatingTensors.from_arrays(train, cpu), RatingTensors.from_arrays(valid, cpu)
    for name, opts in options:
        model.load_state_dict(sgd)
        start = time.perf_counter()
        report = refit_low_rank(model, train_t, valid_t, **opts)
        shares(name, f"rank {report.rank}, kept ridge sweep {report.sweeps}, variational sweep "
                     f"{report.variational_sweeps} (noise x{report.noise_share}), lam {report.lambdas}, "
                     f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
