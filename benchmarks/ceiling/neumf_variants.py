"""Training variants on the ceiling split: a learning-rate schedule, the bias model first, seed ensembles.

``plateau``: on every epoch without a better validation MSE, multiply every learning rate by
``--factor`` and go on (at most ``--decays`` times) instead of stopping early.
``--bias-first`` (with ``plateau`` or ``ensemble``): start the global mean and the user/item
biases at the ridge bias model (:class:`recmodels.scoring.evaluation.baselines.BiasBaseline`) instead of 0.
``ensemble``: train ``--seeds`` models with the defaults and report the validation RMSE of the
mean of their predictions after each one. Figures are the share of the gap between the
global-mean RMSE and the planted best RMSE that the model closes (docs/models.md).

Usage::

    python benchmarks/ceiling/neumf_variants.py plateau 8 '{}'          # 1/8 notebook scale
    python benchmarks/ceiling/neumf_variants.py ensemble 8 '{}' --seeds 3
    python benchmarks/ceiling/neumf_variants.py plateau 8 '{"l2": 0.08}' --patience-only
    python benchmarks/ceiling/neumf_variants.py plateau 8 '{}' --patience-only --bias-first
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import numpy as np
import torch
from als import load

from recmodels.models import ModelConfig, build_model
from recmodels.training import TrainConfig, Trainer
from recmodels.training.trainer import predict_tensors


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("plateau", "ensemble"))
    ap.add_argument("scale", type=int, help="1 = the notebook's scale, 8 = 1/8 of it")
    ap.add_argument("config", help="TrainConfig overrides as JSON")
    ap.add_argument("--kind", default="neumf")
    ap.add_argument("--factor", type=float, default=0.3)
    ap.add_argument("--decays", type=int, default=3)
    ap.add_argument("--patience-only", action="store_true", help="plateau mode off: plain early stop")
    ap.add_argument("--bias-first", action="store_true")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    syn, tr, va, n_users, n_items = load(args.scale)
    gap = syn.global_mean_rmse - syn.best_rmse

    def closed(rmse: float) -> str:
        return f"{rmse:.4f} ({(syn.global_mean_rmse - rmse) / gap:.1%})"

    def trainer(seed: int, **overrides) -> Trainer:
        cfg = TrainConfig(device="cpu", seed=seed, **{**json.loads(args.config), **overrides})
        torch.manual_seed(seed)
        model = build_model(ModelConfig(args.kind, n_users, n_items, global_mean=float(tr.rating.mean())))
        if args.bias_first:
            from recmodels.scoring.evaluation.baselines import BiasBaseline

            bias = BiasBaseline().fit(np.asarray(tr.user_index), np.asarray(tr.item_index),
                                      np.asarray(tr.rating), n_users=n_users, n_items=n_items)
            with torch.no_grad():
                model.global_mean.fill_(bias.global_mean_)
                model.user_bias.weight[:, 0] = torch.as_tensor(bias.user_bias_, dtype=torch.float32)
                model.item_bias.weight[:, 0] = torch.as_tensor(bias.item_bias_, dtype=torch.float32)
        return Trainer(model, cfg, torch.device("cpu"), log=None, progress=False)

    if args.mode == "plateau":
        schedule = not args.patience_only
        t = trainer(0, **({"patience": None} if schedule else {}))
        decays = 0

        def on_epoch_end(tr_, record, improved):
            nonlocal decays
            if not schedule or improved:
                return
            decays += 1
            if decays > args.decays:
                tr_.state.stopped_early = True
                return
            for opt in tr_.optimizers.optimizers.values():
                for group in opt.param_groups:
                    group["lr"] *= args.factor

        t.on_epoch_end = on_epoch_end
        t0 = time.perf_counter()
        t.fit(tr, va)
        curve = [h["valid_rmse"] for h in t.state.history]
        print(f"{args.kind} {'plateau x' + str(args.factor) if schedule else 'early stop'} {args.config}: "
              f"valid {closed(min(curve))}, best epoch {t.state.best_epoch}/{len(curve)}, "
              f"{time.perf_counter() - t0:.0f} s; curve " + " ".join(f"{x:.4f}" for x in curve))
        return

    users, items = torch.as_tensor(np.asarray(va.user_index)), torch.as_tensor(np.asarray(va.item_index))
    y = np.asarray(va.rating, dtype=np.float64)
    preds = []
    for seed in range(args.seeds):
        t = trainer(seed)
        t0 = time.perf_counter()
        t.fit(tr, va)
        t.model.load_state_dict(t.final_state_dict())
        with torch.no_grad():
            preds.append(predict_tensors(t.model, users, items).double().numpy())
        one = float(np.sqrt(np.mean((preds[-1] - y) ** 2)))
        mean = float(np.sqrt(np.mean((np.mean(preds, axis=0) - y) ** 2)))
        print(f"{args.kind} seed {seed}: {closed(one)}; mean of {len(preds)}: {closed(mean)} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
