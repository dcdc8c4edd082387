"""Recommend throughput: top-10 for every user at the notebook's scale, whole output written.

At 100,950 users x 59,196 items with a 3.08M-pair seen set (``recmodels.datasets.make_ratings``),
in one process, on the device given (default CPU), against baselines run in the same process:

  MF (32 factors + biases)   ``recmodels.scoring.recommend`` (Parquet out, seen pairs read from
                             Parquet) vs implicit's CPU ``recommend(userids, user_items, N=10,
                             filter_already_liked_items=True)`` on the same factors (the bundle's
                             folded tables, biases as extra factor columns, so both rank alike;
                             their top-10 are compared on a sample of users); interleaved rounds.
  NeuMF exact                pairs/s of ``recommend`` vs scoring every (user, item) pair through
                             the ``score`` path (``Scorer.score_arrays`` on ``--score-users`` users x
                             all items, extrapolated), beside the FLOP bound of the remaining layers
                             (numpy sgemm of the same shapes, and onnxruntime's MatMul, measured here).
  two-stage NeuMF            ``--candidates N``: time and recall@10 against the exact top-10, on a
                             NeuMF *trained* on the seen pairs (``--train-epochs``, default 3,
                             notebook sizes, exported by ``recmodels.export``): with random
                             weights the dot-product part says little about the MLP's ranking, so
                             recall there is not what a user would see.
  peak memory                VmHWM of MF ``recommend`` for 10k and for all users (fresh processes).

Bundles come from ``tests/bundle_factory.py`` (numpy weights through the exporter's own fold, graph
and bundle code: the same graphs ``recmodels export`` writes), NeuMF at the notebook's sizes
(embedding 32, MLP embeddings 128, layers 256 -> 128 -> 64 -> 32). No timed assertions.

Usage::

    .venv/bin/python benchmarks/recommend_throughput.py                       # everything (~25 min)
    .venv/bin/python benchmarks/recommend_throughput.py --neumf-users 3000    # NeuMF extrapolated
    .venv/bin/python benchmarks/recommend_throughput.py --users 20000 --skip-neumf --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

N_USERS, N_ITEMS, N_SEEN = 100_950, 59_196, 3_080_000
K = 10


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_inputs(work: Path, args) -> dict:
    """The seen pairs (Parquet), the MF and NeuMF bundles; reused from ``work`` when there."""
    from bundle_factory import make_bundle

    seen = work / "seen.parquet"
    if not seen.exists():
        from recmodels.datasets import make_ratings

        ratings = make_ratings(N_USERS, N_ITEMS, N_SEEN, seed=0, id_offset=False).ratings
        pq.write_table(
            pa.table(
                {
                    "user_id": ratings["user_id"].to_numpy(np.int64),
                    "item_id": ratings["item_id"].to_numpy(np.int64),
                    "rating": ratings["rating"].to_numpy(np.float32),
                }
            ),
            seen,
        )
    ids = dict(user_ids=np.arange(N_USERS), item_ids=np.arange(N_ITEMS))
    paths = {"seen": seen}
    for kind, kw in (("mf", dict(dim=32)), ("neumf", dict(dim=32, mlp_dim=128, layers=(128, 64, 32)))):
        path = work / f"{kind}-bundle"
        if not (path / "manifest.json").exists():
            make_bundle(path, kind=kind, n_users=N_USERS, n_items=N_ITEMS, folded=True, **ids, **kw)
        paths[kind] = path
    return paths


def trained_neumf(paths, work: Path, epochs: int) -> Path:
    """A NeuMF trained on the seen pairs (90/10 split, notebook sizes), exported; reused."""
    bundle = work / f"neumf-trained-{epochs}"
    if (bundle / "manifest.json").exists():
        return bundle
    from recmodels.export import export_onnx
    from recmodels.training import TrainConfig, train_run

    t0 = time.perf_counter()
    run = work / f"neumf-run-{epochs}"
    train_run(
        run,
        data=pq.read_table(paths["seen"]).to_pandas(),
        model="neumf",
        train_config=TrainConfig(epochs=epochs, patience=None, seed=0, device="cpu"),
        fractions=(0.9, 0.05, 0.05),
        overwrite=True,
        quiet=True,
        echo=None,
    )
    export_onnx(run, bundle, overwrite=True)
    print(f"trained and exported NeuMF ({epochs} epochs) in {time.perf_counter() - t0:.0f} s", flush=True)
    return bundle


def seen_csr(seen_path: Path):
    import scipy.sparse as sp

    t = pq.read_table(seen_path)
    u, i = t.column("user_id").to_numpy(), t.column("item_id").to_numpy()
    return sp.csr_matrix((np.ones(u.size, dtype=np.float32), (u, i)), shape=(N_USERS, N_ITEMS))


def dot_tables(bundle_path: Path):
    """The recommend graph's user/item tables (float32), read with onnx (the benchmark may)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(bundle_path / "recommend.onnx")).graph
    tables = {
        t.name: numpy_helper.to_array(t) for t in graph.initializer if t.name in ("user_table", "item_table")
    }
    return np.ascontiguousarray(tables["user_table"]), np.ascontiguousarray(tables["item_table"])


def bench_mf(paths, work, args, out):
    from implicit.cpu.als import AlternatingLeastSquares

    from recmodels.scoring import recommend

    users = np.arange(args.users)
    user_list = None
    if args.users < N_USERS:
        user_list = work / f"users-{args.users}.parquet"
        pq.write_table(pa.table({"user_id": users}), user_list)
    csr = seen_csr(paths["seen"])
    user_table, item_table = dot_tables(paths["mf"])
    model = AlternatingLeastSquares(factors=user_table.shape[1], num_threads=0)
    model.user_factors, model.item_factors = user_table, item_table
    rounds = {"recmodels": [], "implicit": []}
    recs = work / "mf-recs.parquet"
    for r in range(args.repeat):
        t0 = time.perf_counter()
        rep = recommend(
            paths["mf"],
            recs,
            k=K,
            users=user_list,
            exclude_seen=paths["seen"],
            device=args.device,
            overwrite=True,
        )
        rounds["recmodels"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ids, scores = model.recommend(users, csr[users], N=K, filter_already_liked_items=True)
        rounds["implicit"].append(time.perf_counter() - t0)
        print(
            f"  round {r + 1}: recmodels {rounds['recmodels'][-1]:.2f} s ({rep.pairs_per_s / 1e6:,.0f}M "
            f"pairs/s in the ranking loop), implicit {rounds['implicit'][-1]:.2f} s",
            flush=True,
        )
    ours = pq.read_table(recs).to_pandas()
    got = ours["item_id"].to_numpy().reshape(-1, K)
    sample = np.random.default_rng(0).choice(args.users, min(2000, args.users), replace=False)
    same_lists = float(np.mean(np.all(got[sample] == ids[sample], axis=1)))
    overlap = float(np.mean([np.intersect1d(got[s], ids[s]).size / K for s in sample]))
    gaps = np.abs(ours["score"].to_numpy().reshape(-1, K)[sample] - scores[sample]).max()
    ratios = [b / a for a, b in zip(rounds["recmodels"], rounds["implicit"], strict=True)]
    out["mf"] = {
        "users": int(args.users),
        "recmodels_s": rounds["recmodels"],
        "implicit_s": rounds["implicit"],
        "median_ratio_implicit_over_recmodels": statistics.median(ratios),
        "same_top10_lists": same_lists,
        "top10_overlap": overlap,
        "max_score_diff": float(gaps),
        "seen_pairs": rep.seen_pairs,
        "rows_written": rep.rows_written,
    }
    print(
        f"MF: recmodels median {statistics.median(rounds['recmodels']):.2f} s, implicit median "
        f"{statistics.median(rounds['implicit']):.2f} s: {statistics.median(ratios):.2f}x faster "
        "(target >= 2x); "
        f"identical top-10 lists on {100 * same_lists:.1f}% of {sample.size} sampled users, overlap "
        f"{100 * overlap:.2f}%, max |score diff| {gaps:.2g}",
        flush=True,
    )


def flop_bound(out) -> dict:
    """GFLOP/s of the remaining layers' shapes: numpy sgemm, and onnxruntime MatMul (MLAS)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    rows, threads = 4096, os.cpu_count() or 1
    shapes = [(128, 64), (64, 32)]
    flops_per_pair = 2 * sum(a * b for a, b in shapes) + 2 * 32
    result = {"flops_per_pair": flops_per_pair}
    x = {a: rng.standard_normal((rows, a), dtype=np.float32) for a, _ in shapes}
    w = {a: rng.standard_normal((a, b), dtype=np.float32) for a, b in shapes}

    def numpy_rate():
        reps = 200
        t0 = time.perf_counter()
        for _ in range(reps):
            for a, _ in shapes:
                x[a] @ w[a]
        return reps * rows * 2 * sum(a * b for a, b in shapes) / (time.perf_counter() - t0) / 1e9

    result["numpy_sgemm_gflops"] = numpy_rate()
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 128])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(w[128], "w1"), numpy_helper.from_array(w[64], "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    import threading

    reps = 200

    def work():
        for _ in range(reps):
            session.run(None, {"x": x[128]})

    work()
    t0 = time.perf_counter()
    pool = [threading.Thread(target=work) for _ in range(threads)]
    [t.start() for t in pool]
    [t.join() for t in pool]
    result["onnxruntime_matmul_gflops"] = (
        threads * reps * rows * 2 * (128 * 64 + 64 * 32) / (time.perf_counter() - t0) / 1e9
    )
    for key in ("numpy_sgemm", "onnxruntime_matmul"):
        result[f"{key}_bound_pairs_per_s"] = result[f"{key}_gflops"] * 1e9 / flops_per_pair
    return result


def bench_neumf(paths, work, args, out):
    from recmodels.scoring import Recommender, Scorer

    bundle = paths["neumf"]
    n = args.neumf_users
    scorer = Scorer(bundle, device=args.device)
    su = np.repeat(np.arange(args.score_users), N_ITEMS)
    si = np.tile(np.arange(N_ITEMS), args.score_users)
    scorer.score_arrays(su[: 1 << 20], si[: 1 << 20])
    t0 = time.perf_counter()
    scorer.score_arrays(su, si)
    score_rate = su.size / (time.perf_counter() - t0)
    scorer.close()
    bound = flop_bound(out)
    rec = Recommender(bundle, device=args.device)
    users = np.arange(n)
    recs = work / "neumf-recs.parquet"
    t0 = time.perf_counter()
    rep = rec.recommend_file(recs, users=users, k=K, exclude_seen=paths["seen"], overwrite=True)
    seconds = time.perf_counter() - t0
    rate = rep.pairs_per_s
    all_s = N_USERS * N_ITEMS / rate
    out["neumf"] = {
        "users": n,
        "seconds": seconds,
        "pairs_per_s": rate,
        "score_path_pairs_per_s": score_rate,
        "ratio_vs_score_path": rate / score_rate,
        "all_users_s_extrapolated": all_s,
        "all_users_minutes": all_s / 60,
        **bound,
    }
    print(
        f"NeuMF exact: {n:,} users in {seconds:.1f} s, {rate / 1e6:.2f}M pairs/s vs the score path "
        f"{score_rate / 1e6:.2f}M pairs/s ({args.score_users} users x all items): {rate / score_rate:.2f}x "
        f"(target >= 3x); all users {'measured' if n == N_USERS else 'extrapolated'}: {all_s / 60:.1f} min "
        f"(target < 15); FLOP bound of the remaining layers ({bound['flops_per_pair']:,} FLOP/pair): numpy "
        f"sgemm {bound['numpy_sgemm_gflops']:.0f} GFLOP/s -> "
        f"{bound['numpy_sgemm_bound_pairs_per_s'] / 1e6:.2f}M "
        f"pairs/s, onnxruntime MatMul {bound['onnxruntime_matmul_gflops']:.0f} GFLOP/s -> "
        f"{bound['onnxruntime_matmul_bound_pairs_per_s'] / 1e6:.2f}M pairs/s",
        flush=True,
    )
    return rec


def bench_two_stage(paths, args, out, exact_rec):
    from recmodels.scoring import Recommender

    if args.train_epochs:
        paths = {**paths, "neumf": trained_neumf(paths, Path(args.workdir_path), args.train_epochs)}
        exact_rec = Recommender(paths["neumf"], device=args.device)
    users = np.random.default_rng(1).choice(N_USERS, args.two_stage_users, replace=False)
    t0 = time.perf_counter()
    exact = exact_rec.recommend_table(users, k=K, exclude_seen=paths["seen"])
    exact_s = time.perf_counter() - t0
    want = exact.column("item_id").to_numpy().reshape(-1, K)
    out["two_stage"] = {
        "users": int(users.size),
        "exact_s": exact_s,
        "trained_epochs": args.train_epochs,
        "runs": [],
    }
    weights = f"trained {args.train_epochs} epochs" if args.train_epochs else "random weights"
    print(f"two-stage NeuMF ({weights}) on {users.size:,} users (exact: {exact_s:.1f} s):", flush=True)
    for n in args.candidates:
        rec = Recommender(paths["neumf"], device=args.device, candidates=n)
        t0 = time.perf_counter()
        got = rec.recommend_table(users, k=K, exclude_seen=paths["seen"])
        seconds = time.perf_counter() - t0
        rec.close()
        have = got.column("item_id").to_numpy().reshape(-1, K)
        recall = float(np.mean([np.intersect1d(a, b).size / K for a, b in zip(have, want, strict=True)]))
        out["two_stage"]["runs"].append(
            {"candidates": n, "seconds": seconds, "recall_at_10": recall, "speedup": exact_s / seconds}
        )
        print(
            f"  --candidates {n:>5}: {seconds:6.1f} s ({exact_s / seconds:5.1f}x exact), "
            f"recall@10 {recall:.3f}",
            flush=True,
        )


def rss_child(bundle: str, seen: str, users: int, device: str) -> None:
    from recmodels.scoring import recommend

    with tempfile.TemporaryDirectory() as tmp:
        rep = recommend(
            bundle, Path(tmp) / "r.parquet", k=K, users=np.arange(users), exclude_seen=seen, device=device
        )
    print(json.dumps({"users": users, "peak_rss_mib": peak_rss_mib(), "seconds": rep.seconds}))


def bench_rss(paths, args, out):
    out["rss"] = []
    for n in args.rss_users:
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--rss-child",
                str(paths["mf"]),
                str(paths["seen"]),
                str(n),
                "--device",
                args.device,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        out["rss"].append(row)
        print(
            f"  peak RSS, MF recommend for {n:,} users: {row['peak_rss_mib']:.0f} MiB "
            f"({row['seconds']:.1f} s)",
            flush=True,
        )
    if len(out["rss"]) > 1:
        growth = out["rss"][-1]["peak_rss_mib"] / out["rss"][0]["peak_rss_mib"] - 1
        out["rss_growth"] = growth
        print(
            f"peak memory: +{100 * growth:.1f}% from {args.rss_users[0]:,} to {args.rss_users[-1]:,} users",
            flush=True,
        )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=N_USERS, help="MF: users ranked (default all)")
    ap.add_argument("--neumf-users", type=int, default=None, help="NeuMF exact: users (default --users)")
    ap.add_argument("--score-users", type=int, default=300, help="score-path baseline: users x all items")
    ap.add_argument("--two-stage-users", type=int, default=2000)
    ap.add_argument("--candidates", default="100,300,1000")
    ap.add_argument(
        "--train-epochs", type=int, default=3, help="two-stage on a NeuMF trained this long (0: random)"
    )
    ap.add_argument("--rss-users", default="10000,100950")
    ap.add_argument("--repeat", type=int, default=2, help="interleaved MF rounds")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-mf", action="store_true")
    ap.add_argument("--skip-neumf", action="store_true")
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--workdir", default=None, help="keep the inputs and bundles here between runs")
    ap.add_argument("--json", default=None, metavar="PATH")
    ap.add_argument("--rss-child", nargs=3, metavar=("BUNDLE", "SEEN", "USERS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss_child:
        return rss_child(args.rss_child[0], args.rss_child[1], int(args.rss_child[2]), args.device)
    args.users = min(args.users, N_USERS)
    args.neumf_users = min(args.neumf_users or args.users, N_USERS)
    args.candidates = [int(c) for c in args.candidates.split(",") if c]
    args.rss_users = [min(int(c), N_USERS) for c in args.rss_users.split(",") if c]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="recommend-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    args.workdir_path = str(work)
    t0 = time.perf_counter()
    paths = make_inputs(work, args)
    out = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cpu_count": os.cpu_count(),
        "device": args.device,
    }
    print(
        f"workdir {work}; {os.cpu_count()} CPUs; {N_USERS:,} users x {N_ITEMS:,} items, {N_SEEN:,} seen "
        f"pairs; setup {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    if not args.skip_mf:
        bench_mf(paths, work, args, out)
    if not args.skip_rss:
        bench_rss(paths, args, out)
    if not args.skip_neumf:
        rec = bench_neumf(paths, work, args, out)
        if args.candidates:
            bench_two_stage(paths, args, out, rec)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
