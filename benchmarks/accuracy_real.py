"""Rating accuracy on real data: default ``recmodels train`` vs myfm BMF and myfm BFM + implicit features.

The real sets of ``../shared/data`` (issue 24), each shuffled with seed 2026 and split 80/10/10
into train/valid/test by position (the protocol of ``benchmarks/accuracy.py``):

* ``movielens``: ``ml-latest-small/ratings.csv`` (half stars 0.5-5);
* ``goodreads``: the rated rows of ``goodreads-head/goodreads_interactions_head.csv``.
  ``rating == 0`` there means "shelved or read, not rated" (not a rating of 0): those rows are
  dropped before the split, and the count is printed.

Then, in this process and on that one split:

* **recmodels** ``train`` with its defaults (only ``--threads`` and ``--seed`` set), once per
  model, through ``accuracy.run_train`` (train on train, early stop and refit on valid, as the
  CLI does). ``hybrid`` gets the genre multi-hot vectors of ``movies.csv`` as its pretrained
  item table on MovieLens; the Goodreads head has no content table, so hybrid is skipped there.
  "best of" is the model with the lower *validation* RMSE;
* **myfm BMF**: ``accuracy.run_myfm`` (rank 10, 300 Gibbs iterations, one-hot user + item);
* **myfm BFM + implicit**: the same sampler with SVD++-like features, as myfm's relation-block
  tutorial builds them: user rows = one-hot user + the items the user rated in *train*, each
  ``1/sqrt(|N(u)|)``; item rows = one-hot item + the users who rated it in train, each
  ``1/sqrt(|N(i)|)``; fed as :class:`myfm.RelationBlock` s with one variable group per part
  (``group_shapes``).

myfm trains on train only (``--myfm-train-valid`` adds both myfm models trained on train+valid,
labelled so; the implicit features then come from train+valid). Test RMSE is on the test rows
whose user and item are in train (what ``recmodels train`` evaluates; myfm is scored on the
same rows). Not a test: run it by hand::

    python benchmarks/accuracy_real.py --threads 2               # both sets, every model
    python benchmarks/accuracy_real.py --datasets goodreads --models mf bfm-implicit
    python benchmarks/accuracy_real.py --variants '[{"patience": 5}, {"refit": false}]'

``--variants`` also trains each recmodels model once per entry with those
:class:`~recmodels.training.TrainConfig` or :class:`~recmodels.models.ModelConfig` fields changed
(the rest default), for the re-examination of the defaults on real data; the implicit signal's
variants (``ModelConfig.implicit``, default ``"none"``) are reported so::

    python benchmarks/accuracy_real.py --threads 2 --variants '[{"implicit": "item"}]'
 ``--implicit-parts`` sets which implicit parts
the BFM gets (``user,item`` by default; ``user`` or ``item`` for one side only).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from accuracy import (  # noqa: E402
    FRACTIONS,
    SHUFFLE_SEED,
    _rmse,
    _show,
    run_myfm,
    run_train,
    seen_rows,
)

DATA_DIR = REPO.parent / "shared" / "data"
DATASETS = ("movielens", "goodreads")
MODELS = ("mf", "neumf", "hybrid", "bmf", "bfm-implicit")
COLS = ["user_id", "item_id", "rating"]


def load_movielens(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """MovieLens ratings as ``user_id, item_id, rating`` and the genre table (see :func:`genre_table`)."""
    folder = data_dir / "ml-latest-small"
    ratings = pd.read_csv(folder / "ratings.csv").rename(columns={"userId": "user_id",
                                                                  "movieId": "item_id"})
    genres = genre_table(pd.read_csv(folder / "movies.csv"))
    return ratings[COLS], genres, f"{len(ratings):,} ratings"


def genre_table(movies: pd.DataFrame) -> pd.DataFrame:
    """``item_id`` + one 0/1 column per genre of ``movies.csv`` (``(no genres listed)``: all zeros).

    The pretrained item table of the hybrid model (docs/models.md; the id column is the item
    column of the ratings).
    """
    hot = movies["genres"].str.get_dummies(sep="|").drop(columns="(no genres listed)", errors="ignore")
    return pd.concat([movies[["movieId"]].rename(columns={"movieId": "item_id"}),
                      hot.astype(np.float32)], axis=1)


def rated_rows(interactions: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The Goodreads rows with a rating (1-5) as ``user_id, item_id, rating``, and how many were dropped.

    ``rating == 0`` in the UCSD Book Graph means "not rated" (shelved, or read without a
    rating), so those rows are not ratings of 0.
    """
    rated = interactions["rating"] > 0
    frame = interactions.loc[rated].rename(columns={"book_id": "item_id"})[COLS]
    return frame.reset_index(drop=True), int((~rated).sum())


def load_goodreads(data_dir: Path) -> tuple[pd.DataFrame, None, str]:
    path = data_dir / "goodreads-head" / "goodreads_interactions_head.csv"
    frame, dropped = rated_rows(pd.read_csv(path))
    return frame, None, f"{len(frame):,} rated rows kept, {dropped:,} with rating 0 (not rated) dropped"


LOADERS = {"movielens": load_movielens, "goodreads": load_goodreads}


def shuffle_split(ratings: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Shuffle with seed 2026 and cut 80/10/10 by position (``accuracy.planted_split``'s rule)."""
    ratings = ratings.sample(frac=1.0, random_state=SHUFFLE_SEED).reset_index(drop=True)
    cut_a = int(FRACTIONS[0] * len(ratings))
    cut_b = int((FRACTIONS[0] + FRACTIONS[1]) * len(ratings))
    return ratings.iloc[:cut_a], ratings.iloc[cut_a:cut_b], ratings.iloc[cut_b:]


def implicit_features(train: pd.DataFrame, parts: tuple[str, ...] = ("user", "item")):
    """Index maps and the user/item feature rows of the BFM with implicit features.

    Parameters
    ----------
    train : DataFrame
        ``user_id, item_id`` of the rows the features come from (each pair once).
    parts : tuple of {"user", "item"}
        Which implicit parts to add: ``"user"`` the items each user rated, ``"item"`` the
        users who rated each item.

    Returns
    -------
    user_index, item_index : pandas.Index
        Id -> row (``get_indexer``).
    user_rows : scipy.sparse.csr_matrix, shape (n_users, n_users [+ n_items])
        One-hot user, then ``1/sqrt(|N(u)|)`` in the columns of the items ``u`` rated.
    item_rows : scipy.sparse.csr_matrix, shape (n_items, n_items [+ n_users])
        One-hot item, then ``1/sqrt(|N(i)|)`` in the columns of the users who rated ``i``.
    group_shapes : list of int
        The width of each part, in column order (users, [items], items, [users]).
    """
    import scipy.sparse as sps

    user_index = pd.Index(pd.unique(train["user_id"]))
    item_index = pd.Index(pd.unique(train["item_id"]))
    n_u, n_i = len(user_index), len(item_index)
    rated = sps.csr_matrix((np.ones(len(train)), (user_index.get_indexer(train["user_id"]),
                                                 item_index.get_indexer(train["item_id"]))),
                           shape=(n_u, n_i))
    rated.data[:] = 1.0  # a repeated pair counts once

    def rows(matrix, with_implicit: bool):
        n = matrix.shape[0]
        blocks = [sps.identity(n, format="csr")]
        if with_implicit:
            counts = np.asarray(matrix.getnnz(axis=1), dtype=np.float64)
            blocks.append(sps.diags(1.0 / np.sqrt(np.maximum(counts, 1.0))) @ matrix)
        return sps.hstack(blocks, format="csr"), [b.shape[1] for b in blocks]

    user_rows, user_groups = rows(rated, "user" in parts)
    item_rows, item_groups = rows(rated.T.tocsr(), "item" in parts)
    return user_index, item_index, user_rows, item_rows, user_groups + item_groups


def run_myfm_implicit(train, test, rank: int, iterations: int, seed: int,
                      parts: tuple[str, ...] = ("user", "item"), label: str = "") -> dict:
    """myfm's Bayesian FM with implicit user/item features, as relation blocks."""
    name = f"myfm BFM + implicit {'+'.join(parts)} (rank {rank}, {iterations} it.){label}"
    try:
        import myfm
    except ImportError as exc:
        return {"name": name, "skipped": f"not installed ({exc.name})"}
    start = time.perf_counter()
    users, items, user_rows, item_rows, groups = implicit_features(train, parts)

    def blocks(frame):
        return [myfm.RelationBlock(users.get_indexer(frame["user_id"]), user_rows),
                myfm.RelationBlock(items.get_indexer(frame["item_id"]), item_rows)]

    model = myfm.MyFMRegressor(rank=rank, random_seed=seed)
    with contextlib.redirect_stderr(io.StringIO()):  # the per-iteration progress bar
        model.fit(None, train["rating"].to_numpy(dtype=np.float64), X_rel=blocks(train),
                  n_iter=iterations, group_shapes=groups)
    pred = model.predict(None, blocks(test))
    low, high = train["rating"].min(), train["rating"].max()
    return {"name": name, "test_rmse": _rmse(test["rating"], pred),
            "test_rmse_clipped": _rmse(test["rating"], np.clip(pred, low, high)),
            "seconds": time.perf_counter() - start}


@contextlib.contextmanager
def train_run_extras(item_embeddings=None, overrides: dict | None = None):
    """Make ``accuracy.run_train`` pass a pretrained item table and/or changed config fields
    (:class:`~recmodels.models.ModelConfig` fields as model options, the rest TrainConfig's).

    ``run_train`` imports ``recmodels.training.train_run`` when called; this wraps that one
    attribute for the duration, so the default-run path stays ``accuracy.run_train``'s own.
    """
    import recmodels.training as training
    from recmodels.models import ModelConfig

    original = training.train_run
    model_fields = set(ModelConfig.user_fields())
    model_options = {k: v for k, v in (overrides or {}).items() if k in model_fields}
    train_options = {k: v for k, v in (overrides or {}).items() if k not in model_fields}

    def wrapped(*args, **kwargs):
        if item_embeddings is not None:
            kwargs["item_embeddings"] = item_embeddings
        if model_options:
            kwargs["model_options"] = {**(kwargs.get("model_options") or {}), **model_options}
        if train_options:
            kwargs["train_config"] = dataclasses.replace(kwargs["train_config"], **train_options)
        return original(*args, **kwargs)

    training.train_run = wrapped
    try:
        yield
    finally:
        training.train_run = original


def run_recmodels(kind: str, train, valid, test, out: Path, threads, seed: int, item_table=None,
                  overrides: dict | None = None) -> dict:
    """``accuracy.run_train`` plus the refit's report (rank kept, sweeps) from the run's metrics."""
    from recmodels.runs import load_run

    with train_run_extras(item_table if kind == "hybrid" else None, overrides):
        row = run_train(kind, train, valid, test, out, threads, seed)
    refit = load_run(out).metrics.get("refit") or {}
    if overrides:
        row["name"] += " " + json.dumps(overrides, separators=(",", ":"))
    row["refit"] = {k: refit.get(k) for k in ("dim", "rank", "sweeps", "variational_sweeps",
                                              "valid_rmse_before", "valid_rmse_after", "changed")}
    return row


def run_dataset(name: str, args, work: Path) -> list[dict]:
    ratings, item_table, note = LOADERS[name](args.data_dir)
    train, valid, test_all = shuffle_split(ratings)
    test = seen_rows(train, test_all)
    print(f"\n== {name}: {note}; {ratings['user_id'].nunique():,} users x "
          f"{ratings['item_id'].nunique():,} items; {len(train):,} train / {len(valid):,} valid / "
          f"{len(test):,} of {len(test_all):,} test rows with a known user and item", flush=True)
    rows = []
    myfm_fits = [("", train)] + ([(" [train+valid]", pd.concat([train, valid]))]
                                 if args.myfm_train_valid else [])
    for label, fit_rows in myfm_fits:
        if "bmf" in args.models:
            row = run_myfm(fit_rows, test, args.rank, args.iterations, args.seed)
            row["name"] += label
            rows.append(row)
            _show(row)
        if "bfm-implicit" in args.models:
            rows.append(run_myfm_implicit(fit_rows, test, args.rank, args.iterations, args.seed,
                                          args.implicit_parts, label))
            _show(rows[-1])
    ours = []
    for kind in [m for m in args.models if m in ("mf", "neumf", "hybrid")]:
        if kind == "hybrid" and item_table is None:
            rows.append({"name": "recmodels hybrid", "skipped": "no content table for this set"})
            _show(rows[-1])
            continue
        for overrides in [None] + args.variants:
            row = run_recmodels(kind, train, valid, test, work / f"{name}-{kind}", args.threads,
                                args.train_seed, item_table, overrides)
            _show(row)
            print(f"    refit: {row['refit']}", flush=True)
            (ours if overrides is None else rows).append(row)
    rows += ours
    if ours:
        best = min(ours, key=lambda r: r["valid_rmse"])
        rows.append({**best, "name": f"recmodels best of ({best['name'].split()[1]}, by valid)",
                     "seconds": sum(r["seconds"] for r in ours)})
    return rows


def table(results: dict[str, list[dict]]) -> str:
    """Markdown: test RMSE (raw, clipped), gaps to myfm BMF and to myfm BFM + implicit, seconds."""
    lines = ["| data | model | test RMSE | clipped | vs myfm BMF | vs myfm BFM+implicit | seconds |",
             "|---|---|---|---|---|---|---|"]
    for name, rows in results.items():
        done = [r for r in rows if "test_rmse" in r and "train+valid" not in r["name"]]
        bmf = next((r for r in done if r["name"].startswith("myfm BMF")), None)
        bfm = next((r for r in done if r["name"].startswith("myfm BFM")), None)
        for r in rows:
            if "skipped" in r:
                lines.append(f"| {name} | {r['name']} | skipped: {r['skipped']} | | | | |")
                continue
            gaps = ["" if ref is None or ref is r else f"{r['test_rmse'] - ref['test_rmse']:+.4f}"
                    for ref in (bmf, bfm)]
            extra = f" (best epoch {r['best_epoch']}/{r['epochs']})" if r.get("best_epoch") else ""
            lines.append(f"| {name} | {r['name']}{extra} | {r['test_rmse']:.4f} | "
                         f"{r['test_rmse_clipped']:.4f} | {gaps[0]} | {gaps[1]} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--threads", type=int, default=None, help="torch threads for recmodels")
    parser.add_argument("--seed", type=int, default=42, help="myfm's random seed (its default)")
    parser.add_argument("--train-seed", type=int, default=0, help="recmodels' seed (its default)")
    parser.add_argument("--rank", type=int, default=10, help="myfm rank")
    parser.add_argument("--iterations", type=int, default=300, help="myfm Gibbs iterations")
    parser.add_argument("--myfm-train-valid", action="store_true",
                        help="also fit both myfm models on train+valid (labelled so)")
    parser.add_argument("--implicit-parts", type=lambda t: tuple(t.split(",")), default=("user", "item"),
                        metavar="user,item", help="the implicit parts of the BFM")
    parser.add_argument("--variants", type=json.loads, default=[], metavar="JSON",
                        help="a list of TrainConfig field changes to train each recmodels model with too")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if not args.data_dir.is_dir():
        print(f"skipped: no real data at {args.data_dir} (see ../shared/data/README.md)")
        return
    results = {}
    with tempfile.TemporaryDirectory(prefix="recmodels-accuracy-real-") as tmp:
        for name in args.datasets:
            results[name] = run_dataset(name, args, Path(tmp))
    print("\n" + table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
