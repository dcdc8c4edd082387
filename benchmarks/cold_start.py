"""Cold start (issue 22): unseen users scored by the fallback, the prior rows, fold-in and a retrain.

Protocol, per data set and model kind:

1. hold out 10 % of the users entirely (seed 2026); the other users' ratings are shuffled and
   split 80/10/10 into train/valid/test, trained with ``recmodels train``'s defaults
   (``--threads``/``--seed`` only) and exported (the prior rows and fold-in arrays included);
2. each held-out user's ratings are shuffled (same seed); the first ``k`` (k = 1, 3, 5, 10, 20)
   are their history, the ratings after the 20th are the test rows (the same rows for every k),
   restricted to items the bundle knows (pairs with one unknown side);
3. test RMSE (scores clipped to the rating range, as ``score --clip``) of: the training mean
   (``fallback_score``), the prior-aware fallback (``Scorer`` without history: the prior user
   row), fold-in (``Scorer(history=...)``, the ridge solve; ``gradient`` is the alternative, 25
   gradient steps on the same objective, about the solve's cost), and the oracle: the model
   retrained with those k ratings added to train (same settings), scoring the same rows;
4. HR@10 under the NCF protocol for the held-out users: each user's best-rated test row against
   99 items they never rated (known to the bundle), ranked by the same four scorers;
5. ``--holdout items``: the same with 10 % of the *items* held out (their ratings by known users
   are the history and test rows; a held-out item's first k ratings fold it in, as
   ``recmodels score --history`` does for new items); no HR@10 there;
6. ``--models hybrid`` (``--data ml`` only): the hybrid model with the 19 genre columns of
   ``movies.csv`` as its pretrained item vectors (``accuracy_real.genre_table``, as
   ``benchmarks/accuracy_real.py`` trains it; the oracle's retrain gets the same table). With
   ``--holdout items`` the held-out items are also scored from their genre vectors: with no
   rating (k = 0: ``recmodels score --item-embeddings``, content only) and with their k ratings
   (``--history`` and ``--item-embeddings`` together: the ridge solve starts from the content),
   each with the content change ``--item-embeddings`` uses (the calibrated one, fitted at export:
   ``recmodels.export.prior.calibrated_content``) and with the exact one (the predict layer's
   weights ``w_e``: ``read_item_content(..., exact=True)``);
7. cost (``--cost``): 10,000 new users x 20 ratings folded into the MF bundle of the real set:
   users folded in per second, the added seconds of a scoring job of 1,000,000 pairs, and the
   fold-in's peak memory (tracemalloc) for 1,000 and 10,000 users.

Not a test: run it by hand (docs/benchmarks.md "Cold start")::

    nice -n 5 python benchmarks/cold_start.py --data ml --models mf neumf --threads 2
    nice -n 5 python benchmarks/cold_start.py --data planted --models mf --threads 2
    nice -n 5 python benchmarks/cold_start.py --data ml --models mf --holdout items --threads 2
    nice -n 5 python benchmarks/cold_start.py --data ml --models hybrid --holdout items --threads 2
    nice -n 5 python benchmarks/cold_start.py --cost --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
SEED = 2026
KS = (1, 3, 5, 10, 20)
HELD_SHARE = 0.1
TEST_AFTER = 20
COLS = ["user_id", "item_id", "rating"]


def load(data: str) -> pd.DataFrame:
    """The ratings of a data set as ``user_id, item_id, rating``."""
    if data == "ml":
        frame = pd.read_csv(REPO.parent / "shared/data/ml-latest-small/ratings.csv")
        return frame.rename(columns={"userId": "user_id", "movieId": "item_id"})[COLS]
    from recmodels.datasets import make_ratings

    return make_ratings(2000, 1000, 100_000, seed=0).ratings[COLS]


def content(data: str) -> pd.DataFrame:
    """The pretrained item table of the hybrid model: ``item_id`` + the genre columns (``ml`` only)."""
    if data != "ml":
        raise SystemExit(f"--models hybrid needs --data ml (the {data} set has no item content)")
    from accuracy_real import genre_table

    return genre_table(pd.read_csv(REPO.parent / "shared/data/ml-latest-small/movies.csv"))


def split(ratings: pd.DataFrame, side: str = "user_id"):
    """``(train, valid, test, held)``: the held-out users' (``side`` ``item_id``: items') ratings
    apart, the rest 80/10/10."""
    rng = np.random.default_rng(SEED)
    ids = ratings[side].unique()
    held_ids = rng.choice(ids, int(round(HELD_SHARE * ids.size)), replace=False)
    is_held = ratings[side].isin(held_ids)
    rest = ratings[~is_held].sample(frac=1.0, random_state=SEED).reset_index(drop=True)
    a, b = int(0.8 * len(rest)), int(0.9 * len(rest))
    held = ratings[is_held].sample(frac=1.0, random_state=SEED).reset_index(drop=True)
    held["order"] = held.groupby(side).cumcount()
    return rest.iloc[:a], rest.iloc[a:b], rest.iloc[b:], held


def train_export(kind: str, train, valid, test, out: Path, threads: int, item_table=None):
    """Train with the defaults (hybrid: on ``item_table``) and export; the bundle path."""
    from recmodels.export import export_onnx
    from recmodels.training import TrainConfig, train_run

    train_run(out / "run", train=train, valid=valid, test=test, model=kind,
              train_config=TrainConfig(num_threads=threads, seed=0), quiet=True, echo=None, overwrite=True,
              item_embeddings=item_table if kind == "hybrid" else None)
    return export_onnx(out / "run", out / "bundle", overwrite=True)


def rmse(y, p) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, dtype=np.float64) - p) ** 2)))


def ncf_candidates(held: pd.DataFrame, test_rows: pd.DataFrame, known_items: np.ndarray) -> pd.DataFrame:
    """Per held-out user: the best-rated test row + 99 never-rated known items (``label`` 1 / 0)."""
    rng = np.random.default_rng(SEED + 1)
    rated = held.groupby("user_id")["item_id"].apply(set)
    rows = []
    for user, group in test_rows.groupby("user_id"):
        positive = group.sort_values(["rating", "order"], ascending=[False, True]).iloc[0]["item_id"]
        pool = known_items[~np.isin(known_items, list(rated[user]))]
        negatives = rng.choice(pool, 99, replace=False)
        rows.append(pd.DataFrame({"user_id": user, "item_id": np.concatenate([[positive], negatives]),
                                  "label": [1] + [0] * 99}))
    return pd.concat(rows, ignore_index=True)


def hit_rate(candidates: pd.DataFrame, scores: np.ndarray, k: int = 10) -> float:
    frame = candidates.assign(score=scores)
    hits = []
    for _, group in frame.groupby("user_id"):
        positive = group["score"].to_numpy()[0]
        better = np.count_nonzero(group["score"].to_numpy()[1:] > positive)
        hits.append(better < k)
    return float(np.mean(hits))


def evaluate(bundle, test_rows, candidates, history=None, solver="ridge", item_embeddings=None):
    """``(rmse, hr@10 or None without candidates, seconds of the fold-in)`` of a bundle, with or
    without a history and new items' vectors."""
    from recmodels.scoring import Scorer
    from recmodels.scoring.history import fold_in

    scorer = Scorer(bundle, device="cpu", clip=True, max_unknown_share=1.0)
    seconds = 0.0
    if history is not None or item_embeddings is not None:
        start = time.perf_counter()
        fold = fold_in(scorer.bundle, history, scorer.score_graph_rows, user_col="user_id",
                       item_col="item_id", solver=solver, item_embeddings=item_embeddings)
        seconds = time.perf_counter() - start
        scorer = Scorer(bundle, device="cpu", clip=True, max_unknown_share=1.0, history=fold)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = scorer.score_frame(test_rows[["user_id", "item_id"]])["score"].to_numpy()
        if candidates is None:
            return rmse(test_rows["rating"], pred), None, seconds
        cand = scorer.score_frame(candidates[["user_id", "item_id"]])["score"].to_numpy()
    return rmse(test_rows["rating"], pred), hit_rate(candidates, cand), seconds


def run(data: str, kind: str, threads: int, ks, oracle: bool, work: Path, holdout: str = "users") -> dict:
    from recmodels.bundle import Bundle

    side, other = ("user_id", "item_id") if holdout == "users" else ("item_id", "user_id")
    train, valid, test, held = split(load(data), side)
    tag = f"{data}-{kind}" + ("" if holdout == "users" else "-items")
    item_table = content(data) if kind == "hybrid" else None
    vectors = item_table if holdout == "items" else None  # new items only when items are held out
    bundle_path = train_export(kind, train, valid, test, work / tag, threads, item_table)
    bundle = Bundle.load(bundle_path)
    known_items = bundle.item_encoder.classes_
    known_other = known_items if holdout == "users" else bundle.user_encoder.classes_
    test_rows = held[(held["order"] >= TEST_AFTER) & held[other].isin(known_other)]
    candidates = ncf_candidates(held, test_rows, known_items) if holdout == "users" else None
    mean = bundle.fallback_score
    low, high = bundle.rating_range
    out = {"data": data, "model": kind, "holdout": holdout, "held": int(held[side].nunique()),
           "implicit": bundle.manifest.model.config.get("implicit", "none"),
           "test_rows": len(test_rows), "mean_rmse": rmse(test_rows["rating"], np.clip(mean, low, high)),
           "precision_source": bundle.manifest.prior.fold_in.source, "by_k": []}
    out["fallback_rmse"], out["fallback_hr10"], _ = evaluate(bundle_path, test_rows, candidates)
    hr = "" if candidates is None else f" (HR@10 {out['fallback_hr10']:.3f})"
    if vectors is not None:
        from recmodels.scoring.history import read_item_content

        exact_items = read_item_content(bundle, vectors, item_col="item_id", exact=True)
        out["vectors_rmse"], _, out["vectors_s"] = evaluate(bundle_path, test_rows, None,
                                                            item_embeddings=vectors)
        out["exact_rmse"], _, _ = evaluate(bundle_path, test_rows, None, item_embeddings=exact_items)
        hr += (f", genre vectors only (k = 0) {out['vectors_rmse']:.4f} (calibrated), exact "
               f"{out['exact_rmse']:.4f}")
    print(f"{data} {kind}: {out['held']} held-out {holdout}, {len(test_rows)} test rows; mean "
          f"{out['mean_rmse']:.4f}, prior fallback {out['fallback_rmse']:.4f}{hr}", flush=True)
    for k in ks:
        history = held[held["order"] < k][COLS]
        row = {"k": k}
        row["foldin_rmse"], row["foldin_hr10"], row["foldin_s"] = evaluate(bundle_path, test_rows, candidates,
                                                                          history)
        row["gradient_rmse"], row["gradient_hr10"], row["gradient_s"] = evaluate(
            bundle_path, test_rows, candidates, history, solver="gradient")
        if vectors is not None:
            row["vectors_rmse"], _, row["vectors_s"] = evaluate(bundle_path, test_rows, None, history,
                                                                item_embeddings=vectors)
            row["exact_rmse"], _, _ = evaluate(bundle_path, test_rows, None, history,
                                               item_embeddings=exact_items)
        if oracle:
            path = train_export(kind, pd.concat([train, history], ignore_index=True), valid, test,
                                work / f"{tag}-k{k}", threads, item_table)
            row["oracle_rmse"], row["oracle_hr10"], _ = evaluate(path, test_rows, candidates)
            gap = out["fallback_rmse"] - row["oracle_rmse"]
            for name in ("foldin", "vectors", "exact") if vectors is not None else ("foldin",):
                closed = (out["fallback_rmse"] - row[f"{name}_rmse"]) / gap if gap > 0 else None
                row["gap_closed" if name == "foldin" else f"{name}_gap_closed"] = closed
        print("  " + json.dumps(row), flush=True)
        out["by_k"].append(row)
    return out


def cost(threads: int, work: Path) -> dict:
    """Fold-in of 10,000 new users x 20 ratings into the real set's MF bundle (see the docstring)."""
    from recmodels.scoring import Scorer
    from recmodels.scoring.history import fold_in

    train, valid, test, _ = split(load("ml"))
    path = work / "ml-mf" / "bundle"
    if not path.is_dir():
        path = train_export("mf", train, valid, test, work / "ml-mf", threads)
    rng = np.random.default_rng(SEED + 2)
    scorer = Scorer(path, device="cpu", threads=threads, max_unknown_share=1.0)
    items = scorer.bundle.item_encoder.classes_
    out = {}
    for n_users in (1000, 10_000):
        history = pd.DataFrame({"user_id": np.repeat(10_000_000 + np.arange(n_users), 20),
                                "item_id": rng.choice(items, 20 * n_users),
                                "rating": rng.choice(np.arange(1, 11) / 2, 20 * n_users)})
        tracemalloc.start()
        start = time.perf_counter()
        fold = fold_in(scorer.bundle, history, scorer.score_graph_rows, user_col="user_id",
                       item_col="item_id")
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out[n_users] = {"seconds": seconds, "users_per_s": n_users / seconds, "peak_mb": peak / 2**20,
                        "folded_in": fold.stats["users_folded_in"]}
        print(f"fold-in of {n_users:,} users x 20: {seconds:.3f} s ({n_users / seconds:,.0f} users/s), "
              f"peak {peak / 2**20:.1f} MiB", flush=True)
    users = scorer.bundle.user_encoder.classes_
    pairs = pd.DataFrame({"user_id": np.concatenate([rng.choice(users, 900_000),
                                                     rng.choice(history["user_id"].unique(), 100_000)]),
                          "item_id": rng.choice(items, 1_000_000)})
    pairs.to_parquet(work / "pairs.parquet")
    times = {"plain": [], "history": []}
    for label in ("plain", "history", "plain", "history"):  # alternated: the load drifts
        extra = {"history": history} if label == "history" else {}
        start = time.perf_counter()
        job = Scorer(path, device="cpu", threads=threads, max_unknown_share=1.0, **extra)
        job.score_file(work / "pairs.parquet", work / f"scores-{label}.parquet", overwrite=True)
        job.close()
        times[label].append(time.perf_counter() - start)
    plain, with_history = min(times["plain"]), min(times["history"])
    out["job"] = {"plain_s": plain, "history_s": with_history, "added_s": with_history - plain,
                  "ratio": with_history / plain, "runs": times}
    print(f"scoring job of 1,000,000 pairs (best of 2): {plain:.2f} s without history, {with_history:.2f} s "
          f"with 10,000 history users x 20 (+{with_history - plain:.2f} s, x{with_history / plain:.2f})",
          flush=True)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("ml", "planted"), default="ml")
    parser.add_argument("--models", nargs="+", default=["mf", "neumf"])
    parser.add_argument("--ks", nargs="+", type=int, default=list(KS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-oracle", action="store_true", help="skip the retrained oracle")
    parser.add_argument("--holdout", choices=("users", "items"), default="users",
                        help="hold out users (default) or items")
    parser.add_argument("--cost", action="store_true", help="only the cost figures")
    parser.add_argument("--work", type=Path, default=None, help="keep runs and bundles here")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.cost:
            results = cost(args.threads, work)
        else:
            results = [run(args.data, kind, args.threads, args.ks, not args.no_oracle, work, args.holdout)
                       for kind in args.models]
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
