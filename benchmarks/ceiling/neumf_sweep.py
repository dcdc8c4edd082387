"""NeuMF config sweep on the ceiling split.

Usage: neumf_sweep.py SCALE THREADS GRID_JSON (a list of TrainConfig dicts).
"""

import json
import sys
import time

sys.path.insert(0, __import__("os").path.dirname(__file__))
import numpy as np
import torch
from als import load

from recmodels.models import ModelConfig, build_model
from recmodels.training import TrainConfig, Trainer

scale = int(sys.argv[1])
threads = int(sys.argv[2])
grid = json.loads(sys.argv[3])
torch.set_num_threads(threads)
syn, tr, va, nu, ni = load(scale)
gm, br = syn.global_mean_rmse, syn.best_rmse
for spec in grid:
    model_opts = spec.pop("model", {})
    cfg = TrainConfig(device="cpu", seed=0, **{"epochs": 20, "patience": 3, **spec})
    torch.manual_seed(0)
    m = build_model(
        ModelConfig(
            model_opts.pop("kind", "neumf"), nu, ni, global_mean=float(tr.rating.mean()), **model_opts
        )
    )
    t = Trainer(m, cfg, torch.device("cpu"), log=None, progress=False)
    t0 = time.time()
    t.fit(tr, va)
    h = t.state.history
    best = min(x["valid_rmse"] for x in h)
    print(
        f"{json.dumps(spec)} {model_opts}: valid {best:.4f} gap {(gm - best) / (gm - br):.1%} "
        f"ep {t.state.best_epoch}/{len(h)} "
        f"med {np.median([x['samples_per_s'] for x in h]):,.0f}/s {time.time() - t0:.0f}s",
        flush=True,
    )
