"""Training cost of the implicit signal (``ModelConfig.implicit``) at the notebook's scale.

The synthetic data of ``benchmarks/train_throughput.py`` (100,950 users x 59,196 items, ~4.4M
ratings from :func:`recmodels.datasets.make_ratings`, 70/20/10 random split: ~3.08M training
rows) is trained with the default :class:`~recmodels.training.TrainConfig` once per
``--implicit`` setting, one after the other in this process on the same data: the whole fit
(epochs until early stopping, validation passes and the refit), its epochs' median seconds and the
validation RMSE of the final model. The ratio to the first setting (``none``, the default before
the option) is the cost; CPU seconds beside the wall ones (a loaded machine inflates the wall).
Not a test: run it by hand::

    python benchmarks/implicit_cost.py --threads 2                      # NeuMF, none vs item
    python benchmarks/implicit_cost.py --kinds mf neumf --implicit none item both --epochs 3
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from train_throughput import planted_parts

from recmodels.models import IMPLICIT_PARTS, ModelConfig, build_model
from recmodels.training import TrainConfig, Trainer
from recmodels.training.trainer import predict_tensors


def valid_rmse(model, valid) -> float:
    pred = predict_tensors(model, torch.as_tensor(np.asarray(valid.user_index, dtype=np.int64)),
                           torch.as_tensor(np.asarray(valid.item_index, dtype=np.int64)))
    return math.sqrt(float(np.mean((pred.double().numpy() - np.asarray(valid.rating)) ** 2)))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100_950)
    ap.add_argument("--items", type=int, default=59_196)
    ap.add_argument("--ratings", type=int, default=4_400_000)
    ap.add_argument("--kinds", nargs="+", default=["neumf"], choices=("mf", "neumf"))
    ap.add_argument("--implicit", nargs="+", default=["none", "item"], choices=IMPLICIT_PARTS)
    ap.add_argument("--epochs", type=int, default=None, help="cap the epochs (default: the default's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    _, _, users, items, train, valid = planted_parts(args.users, args.items, args.ratings, args.seed)
    print(f"data: {len(users):,} users, {len(items):,} items, {len(train):,} train / {len(valid):,} valid "
          f"rows ({time.perf_counter() - start:.0f} s); torch {torch.__version__}, {args.threads} threads",
          flush=True)
    overrides = {"epochs": args.epochs} if args.epochs else {}
    rows = []
    for kind in args.kinds:
        for implicit in args.implicit:
            torch.manual_seed(args.seed)
            model = build_model(ModelConfig(kind, len(users), len(items), implicit=implicit,
                                            global_mean=float(np.mean(train.rating))))
            trainer = Trainer(model, TrainConfig(seed=args.seed, num_threads=args.threads, **overrides),
                              torch.device("cpu"), log=None, progress=False)
            began, cpu = time.perf_counter(), time.process_time()
            trainer.fit(train, valid)
            seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
            history = trainer.state.history
            model.load_state_dict(trainer.final_state_dict())
            refit = trainer.refit_report or {}
            row = {"kind": kind, "implicit": implicit, "seconds": seconds, "cpu_seconds": cpu,
                   "epochs": len(history),
                   "best_epoch": trainer.state.best_epoch,
                   "epoch_median_s": float(np.median([h["seconds"] for h in history])),
                   "refit_s": refit.get("seconds"), "valid_rmse": valid_rmse(model, valid)}
            base = next((r for r in rows if r["kind"] == kind), row)
            row["ratio"] = seconds / base["seconds"]
            row["cpu_ratio"] = cpu / base["cpu_seconds"]
            row["epoch_ratio"] = row["epoch_median_s"] / base["epoch_median_s"]
            rows.append(row)
            print(f"{kind} implicit={implicit}: {seconds:.1f} s end to end ({row['ratio']:.2f}x; CPU "
                  f"{cpu:.1f} s, {row['cpu_ratio']:.2f}x), "
                  f"{len(history)} epochs (best {row['best_epoch']}), median epoch "
                  f"{row['epoch_median_s']:.1f} s ({row['epoch_ratio']:.2f}x), refit "
                  f"{row['refit_s'] or 0:.1f} s, valid rmse {row['valid_rmse']:.4f}", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
