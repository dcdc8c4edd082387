"""Training throughput: recmodels' default NeuMF training vs the notebook's loop.

At the notebook's scale (100,950 users, 59,196 items, ~4.4M synthetic ratings from
``recmodels.datasets.make_ratings``, 70/20/10 random split), NeuMF at the notebook's sizes
(embedding 32, 3 MLP layers 256->128->64->32, dropouts 0.5/0.3/0.3):

* the notebook-style loop (per-sample ``Dataset`` + ``DataLoader(batch_size=256,
  shuffle=True)``, dense Adam, ``loss.item()`` every step) timed over a few hundred steps;
* recmodels' default :class:`~recmodels.training.TrainConfig` trained for real, per-epoch
  seconds and samples/s, and the validation RMSE it reaches against the planted best
  (``gap closed = (global_mean_rmse - rmse) / (global_mean_rmse - best_rmse)``): the best
  epoch's, and the final model's after the low-rank refit (``TrainConfig.refit``), raw and
  clipped to the rating range as ``recmodels score --clip`` and the ceiling scripts do.

Both run in this process, one after the other, on the same data. Not a test: run it by hand::

    python benchmarks/train_throughput.py            # full scale (~10 min on 2 cores)
    python benchmarks/train_throughput.py --small    # quick check
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn
from torch.utils import data as tud

from recmodels import data as D
from recmodels.datasets import make_ratings
from recmodels.devices import resolve_device
from recmodels.models import ModelConfig, build_model
from recmodels.training import TrainConfig, Trainer
from recmodels.training.trainer import predict_tensors


class NotebookModel(nn.Module):
    """The notebook's NCF model (dense embeddings, torch Dropout), without its bugs."""

    def __init__(self, n_users, n_items, dim=32, layers=3):
        super().__init__()
        self.embed_user_GMF = nn.Embedding(n_users, dim)
        self.embed_book_GMF = nn.Embedding(n_items, dim)
        self.embed_user_MLP = nn.Embedding(n_users, dim * 2 ** (layers - 1))
        self.embed_book_MLP = nn.Embedding(n_items, dim * 2 ** (layers - 1))
        mlp = []
        dropouts = [0.5] + [0.3] * (layers - 1)
        for i in range(layers):
            width = dim * 2 ** (layers - i)
            mlp += [nn.Dropout(dropouts[i]), nn.Linear(width, width // 2), nn.ReLU()]
        self.MLP_layers = nn.Sequential(*mlp)
        self.predict_layer = nn.Linear(2 * dim, 1)
        for emb in (self.embed_user_GMF, self.embed_book_GMF, self.embed_user_MLP,
                    self.embed_book_MLP):
            nn.init.normal_(emb.weight, std=0.01)
        for layer in [*[m for m in self.MLP_layers if isinstance(m, nn.Linear)], self.predict_layer]:
            nn.init.xavier_uniform_(layer.weight)

    def forward(self, users, items):
        gmf = self.embed_user_GMF(users) * self.embed_book_GMF(items)
        mlp = self.MLP_layers(torch.cat([self.embed_user_MLP(users), self.embed_book_MLP(items)], 1))
        return self.predict_layer(torch.cat([gmf, mlp], 1)).view(-1)


class NotebookDataSet(tud.Dataset):
    def __init__(self, users, items, ratings):
        self.users = torch.tensor(users, dtype=torch.long)
        self.items = torch.tensor(items, dtype=torch.long)
        self.ratings = torch.tensor(ratings, dtype=torch.float)

    def __len__(self):
        return len(self.users)

    def __getitem__(self, idx):
        return self.users[idx], self.items[idx], self.ratings[idx]


def planted_parts(n_users: int, n_items: int, n_ratings: int, seed: int):
    """The planted ratings (``make_ratings``), split 70/20/10 and encoded by the training split's
    encoders: ``(synthetic, split, user encoder, item encoder, train, valid)``."""
    syn = make_ratings(n_users, n_items, n_ratings, seed=seed)
    split = D.split_interactions(syn.ratings, seed=seed)
    users, items = D.fit_encoders(split.train)
    return (syn, split, users, items, D.encode(split.train, users, items)[0],
            D.encode(split.valid, users, items)[0])


def notebook_loop(train, n_users, n_items, steps: int, seed: int, device=None) -> float:
    """Samples/s of the notebook's training loop over ``steps`` batches of 256.

    As in the notebook, the dataset's tensors live on ``device`` and the DataLoader collates
    one sample at a time.
    """
    torch.manual_seed(seed)
    device = device or torch.device("cpu")
    model = NotebookModel(n_users, n_items).to(device)
    dataset = NotebookDataSet(train.user_index, train.item_index, train.rating)
    dataset.users, dataset.items, dataset.ratings = (
        t.to(device) for t in (dataset.users, dataset.items, dataset.ratings))
    loader = tud.DataLoader(dataset, batch_size=256, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.MSELoss()
    model.train()
    done, start = 0, None
    for step, (users, items, ratings) in enumerate(loader):
        if step == 10:  # warm-up excluded
            start, done = time.perf_counter(), 0
        optimizer.zero_grad()
        loss = criterion(model(users, items), ratings)
        _ = loss.item()
        loss.backward()
        optimizer.step()
        done += len(users)
        if step >= steps + 10:
            break
    return done / (time.perf_counter() - start)


def final_figures(model, parts: dict, rating_range: tuple[float, float], gap_closed) -> dict:
    """``{"valid_raw": {"rmse", "gap_closed"}, "valid_clipped": ...}`` for each part of ``parts``
    (name -> encoded rows): the model's predictions raw and clipped to ``rating_range``."""
    figures = {}
    for part, rows in parts.items():
        with torch.no_grad():
            pred = predict_tensors(model.eval(), torch.as_tensor(np.asarray(rows.user_index)),
                                   torch.as_tensor(np.asarray(rows.item_index))).double().numpy()
        y = np.asarray(rows.rating, dtype=np.float64)
        for name, p in (("raw", pred), ("clipped", np.clip(pred, *rating_range))):
            rmse = float(np.sqrt(np.mean((p - y) ** 2)))
            figures[f"{part}_{name}"] = {"rmse": rmse, "gap_closed": gap_closed(rmse)}
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_950)
    parser.add_argument("--items", type=int, default=59_196)
    parser.add_argument("--ratings", type=int, default=4_400_000)
    parser.add_argument("--small", action="store_true",
                        help="10,000 users, 6,000 items, 440,000 ratings: a quick check")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs for recmodels (default: TrainConfig's)")
    parser.add_argument("--notebook-steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-option", action="append", default=[], metavar="KEY=JSON",
                        help="override a TrainConfig field, e.g. batch_size=8192")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="recmodels batch size (default: TrainConfig's)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.small:
        args.users, args.items, args.ratings = 10_000, 6_000, 440_000
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)

    t0 = time.perf_counter()
    syn, split, users, items, train, valid = planted_parts(args.users, args.items, args.ratings, args.seed)
    print(f"data: {len(users):,} users, {len(items):,} items, {len(train):,} train / "
          f"{len(valid):,} valid rows ({time.perf_counter() - t0:.0f}s to generate); "
          f"global-mean rmse {syn.global_mean_rmse:.4f}, planted best {syn.best_rmse:.4f}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    nb = notebook_loop(train, len(users), len(items), args.notebook_steps, args.seed, device)
    print(f"notebook loop (Dataset+DataLoader, batch 256, dense Adam): {nb:,.0f} samples/s "
          f"-> {len(train) / nb:,.0f} s/epoch (projected)")

    overrides = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.train_option)}
    if args.epochs:
        overrides["epochs"] = args.epochs
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    config = TrainConfig(device=str(device), seed=args.seed, **overrides)
    torch.manual_seed(args.seed)
    model = build_model(ModelConfig("neumf", len(users), len(items),
                                    global_mean=float(train.rating.mean())))
    trainer = Trainer(model, config, device, log=print, progress=False)
    trainer.fit(train, valid)
    history = trainer.state.history
    sps = float(np.median([h["samples_per_s"] for h in history]))
    secs = float(np.median([h["seconds"] for h in history]))
    best = min(h["valid_rmse"] for h in history)

    def gap_closed(rmse: float) -> float:
        return (syn.global_mean_rmse - rmse) / (syn.global_mean_rmse - syn.best_rmse)

    closed = gap_closed(best)
    print(f"recmodels default ({trainer.config.optimizer}, batch {trainer.config.batch_size}): "
          f"{sps:,.0f} samples/s, {secs:.1f} s/epoch (median of {len(history)} epochs)")
    print(f"speed-up vs notebook loop: {sps / nb:.0f}x")
    print(f"valid rmse {best:.4f} (epoch {trainer.state.best_epoch}) vs global mean "
          f"{syn.global_mean_rmse:.4f} and planted best {syn.best_rmse:.4f}: "
          f"{closed:.1%} of the gap closed")
    # The final model (after the refit), on validation and on the test part the refit never saw.
    model.load_state_dict(trainer.final_state_dict())
    test, _ = D.encode(split.test, users, items)
    rating_range = float(np.min(train.rating)), float(np.max(train.rating))  # the inferred range
    final = final_figures(model, {"valid": valid, "test": test}, rating_range, gap_closed)
    refit = trainer.refit_report or {}
    how = f"refit: rank {refit['rank']}, {refit['seconds']:.1f} s" if refit.get("changed") else "no refit"
    print(f"final model ({how}):")
    for name, v in final.items():
        print(f"  {name.replace('_', ' ')} rmse {v['rmse']:.4f} = {v['gap_closed']:.1%} of the gap")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": str(device), "notebook_samples_per_s": nb, "samples_per_s": sps,
                       "seconds_per_epoch": secs,
                       "speedup": sps / nb, "valid_rmse": best, "gap_closed": closed,
                       "final": final, "refit": trainer.refit_report,
                       "config": trainer.config.to_dict(), "history": history,
                       "data": {"users": len(users), "items": len(items), "train": len(train),
                                "global_mean_rmse": syn.global_mean_rmse,
                                "best_rmse": syn.best_rmse}}, fh, indent=2)


if __name__ == "__main__":
    from recmodels.errors import RecmodelsError

    try:
        main()
    except RecmodelsError as exc:  # e.g. --device cuda without a GPU: one line, exit 1
        raise SystemExit(f"error: {exc}") from None
