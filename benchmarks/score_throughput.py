"""Scoring throughput: Parquet -> Parquet with a NeuMF bundle at the notebook's sizes, on CPU.

Prints rows/s of ``recmodels.scoring`` end to end beside, in the same process:

  (a) the I/O floor: the same read + write with no model,
  (b) the straightforward loop: pyarrow batches -> id maps -> onnxruntime (default options,
      CPU) -> Parquet, sequential,
  (c) torch eager inference in that same loop,

and the folded vs unfolded graph; then peak RSS of ``recmodels score`` at two input sizes, each
in a fresh subprocess (its own ``ru_maxrss``).

Usage::

    .venv/bin/python benchmarks/score_throughput.py                 # 20M rows, RSS at 5M vs 20M
    .venv/bin/python benchmarks/score_throughput.py --quick         # 2M rows, no RSS runs
    .venv/bin/python benchmarks/score_throughput.py --rows 10000000 --baseline-rows 2000000

The bundle comes from the real exporter (``recmodels.export.export_model``) over a randomly
initialised NeuMF (100,950 users, 59,196 items, embedding 32, MLP embeddings 128, layers
256 -> 128 -> 64 -> 32); without torch/the exporter it falls back to ``tests/bundle_factory``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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

N_USERS, N_ITEMS = 100_950, 59_196


def make_input(path: Path, rows: int, seed: int = 0, chunk: int = 1 << 20) -> Path:
    """Random (user_id, item_id) pairs, ~1% unknown, written in 1M-row row groups."""
    if path.exists() and pq.ParquetFile(path).metadata.num_rows == rows:
        return path
    rng = np.random.default_rng(seed)
    schema = pa.schema([("user_id", pa.int64()), ("item_id", pa.int64())])
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for lo in range(0, rows, chunk):
            n = min(chunk, rows - lo)
            users = rng.integers(1, N_USERS + 1 + N_USERS // 100, n)  # ids above N_USERS: unknown
            items = rng.integers(1, N_ITEMS + 1, n)
            writer.write_table(pa.table({"user_id": users, "item_id": items}, schema=schema))
    os.replace(tmp, path)
    return path


def make_bundles(root: Path) -> tuple[Path, Path, object]:
    """(folded bundle, unfolded bundle, torch model or None)."""
    folded, unfolded = root / "neumf-folded", root / "neumf-unfolded"
    try:
        import torch

        from recmodels.encoders import IdEncoder
        from recmodels.export import export_model
        from recmodels.models import ModelConfig, build_model
    except ImportError:
        sys.path.insert(0, str(REPO / "tests"))
        from bundle_factory import make_bundle

        kw = dict(kind="neumf", n_users=N_USERS, n_items=N_ITEMS, dim=32, mlp_dim=128,
                  layers=(128, 64, 32), user_ids=np.arange(1, N_USERS + 1),
                  item_ids=np.arange(1, N_ITEMS + 1))
        if not folded.exists():
            make_bundle(folded, folded=True, **kw)
            make_bundle(unfolded, folded=False, **kw)
        return folded, unfolded, None
    torch.manual_seed(0)
    config = ModelConfig("neumf", n_users=N_USERS, n_items=N_ITEMS, embedding_dim=32,
                         num_layers=3, global_mean=3.5)
    model = build_model(config).eval()
    users = IdEncoder("user").fit(np.arange(1, N_USERS + 1))
    items = IdEncoder("item").fit(np.arange(1, N_ITEMS + 1))
    data = {"user_col": "user_id", "item_col": "item_id", "rating_col": "rating",
            "rating_min": 1.0, "rating_max": 5.0, "global_mean": 3.5}
    for path, fold in ((folded, True), (unfolded, False)):
        if not path.exists():
            export_model(model, users, items, path, data=data, fold=fold, parity_pairs=2000)
    return folded, unfolded, model


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def loop(src: Path, dst: Path, batch_size: int, infer=None, encoders=None) -> int:
    """The straightforward sequential loop; ``infer=None`` is the I/O floor."""
    pfile = pq.ParquetFile(src)
    writer = None
    n = 0
    for batch in pfile.iter_batches(batch_size=batch_size):
        if infer is None:
            scores = np.zeros(batch.num_rows, dtype=np.float32)
            known = np.ones(batch.num_rows, dtype=bool)
        else:
            u = encoders[0].transform(batch.column(0))
            i = encoders[1].transform(batch.column(1))
            known = (u >= 0) & (i >= 0)
            scores = np.full(batch.num_rows, 3.5, dtype=np.float32)
            scores[known] = infer(u[known], i[known])
        out = pa.RecordBatch.from_arrays(
            [batch.column(0), batch.column(1), pa.array(known), pa.array(scores)],
            names=["user_id", "item_id", "known", "score"],
        )
        if writer is None:
            writer = pq.ParquetWriter(dst, out.schema)
        writer.write_batch(out)
        n += batch.num_rows
    writer.close()
    return n


def first_rows(src: Path, dst: Path, rows: int) -> Path:
    """The first ``rows`` rows of ``src`` (for baselines run on a subset)."""
    if dst.exists() and pq.ParquetFile(dst).metadata.num_rows == rows:
        return dst
    pfile = pq.ParquetFile(src)
    with pq.ParquetWriter(dst, pfile.schema_arrow) as writer:
        got = 0
        for batch in pfile.iter_batches(batch_size=1 << 20):
            batch = batch.slice(0, min(batch.num_rows, rows - got))
            writer.write_batch(batch)
            got += batch.num_rows
            if got >= rows:
                break
    return dst


def peak_rss_kib() -> int:
    """This process's peak RSS. /proc's VmHWM belongs to the address space made at exec, whereas
    ``ru_maxrss`` can carry the peak of the (forked) parent over into the child."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_child(bundle: str, src: str, dst: str, batch_size: int) -> None:
    from recmodels.scoring import score

    rep = score(bundle, src, dst, device="cpu", overwrite=True, batch_size=batch_size)
    peak_kib = peak_rss_kib()
    print(json.dumps({"rows": rep.rows_read, "peak_rss_mib": peak_kib / 1024,
                      "rows_per_s": rep.rows_per_s}))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--baseline-rows", type=int, default=None,
                    help="rows for the slow baselines (b, c); default: --rows")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="2M rows, no RSS subprocesses")
    ap.add_argument("--rss-rows", default="5000000,20000000")
    ap.add_argument("--workdir", default=None, help="keep inputs/bundles here between runs")
    ap.add_argument("--rss-child", nargs=3, metavar=("BUNDLE", "SRC", "DST"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    from recmodels.scoring import DEFAULT_BATCH_SIZE, Scorer

    batch_size = args.batch_size or DEFAULT_BATCH_SIZE
    if args.rss_child:
        return rss_child(*args.rss_child, batch_size)
    if args.quick:
        args.rows = min(args.rows, 2_000_000)
    base_rows = min(args.baseline_rows or args.rows, args.rows)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="score-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"workdir {work}; {os.cpu_count()} CPUs; rows {args.rows:,}; baselines on "
          f"{base_rows:,}; batch {batch_size:,}", flush=True)
    folded, unfolded, model = make_bundles(work)
    src = make_input(work / f"pairs-{args.rows}.parquet", args.rows)
    base_src = src
    if base_rows != args.rows:
        base_src = first_rows(src, work / f"first-{base_rows}.parquet", base_rows)
    out = work / "out.parquet"
    results = {}

    def record(name, rows, seconds):
        results[name] = rows / seconds
        print(f"  {name:<44} {rows / seconds:>12,.0f} rows/s   ({seconds:6.2f} s)", flush=True)

    for label, bundle in (("recmodels score, folded (end to end)", folded),
                          ("recmodels score, unfolded", unfolded)):
        scorer = Scorer(bundle, device="cpu", batch_size=batch_size)
        rows = args.rows if bundle == folded else base_rows
        path = src if bundle == folded else base_src
        seconds = timed(lambda s=scorer, p=path: s.score_file(p, out, overwrite=True))
        record(label, rows, seconds)

    import onnxruntime as ort

    from recmodels.bundle import Bundle

    ort.set_default_logger_severity(3)
    b = Bundle.load(folded)
    encoders = (b.user_encoder, b.item_encoder)
    rows = loop(base_src, out, batch_size)
    record("(a) I/O floor: read + write, no model", rows, timed(lambda: loop(base_src, out,
                                                                             batch_size)))
    sess = ort.InferenceSession(str(b.model_path), providers=["CPUExecutionProvider"])

    def run_ort(u, i):
        return sess.run(["score"], {"user_index": u, "item_index": i})[0]

    record("(b) straightforward loop, onnxruntime folded",
           base_rows, timed(lambda: loop(base_src, out, batch_size, run_ort, encoders)))
    if model is not None:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)

        def run_torch(u, i):
            with torch.inference_mode():
                return model(torch.from_numpy(u), torch.from_numpy(i)).numpy()

        record("(c) same loop, torch eager", base_rows,
               timed(lambda: loop(base_src, out, batch_size, run_torch, encoders)))

    e2e = results["recmodels score, folded (end to end)"]
    print("ratios:")
    for label, key in (
        ("end to end / I/O floor", "(a) I/O floor: read + write, no model"),
        ("end to end / onnxruntime loop", "(b) straightforward loop, onnxruntime folded"),
        ("end to end / torch eager loop", "(c) same loop, torch eager"),
        ("folded / unfolded (ours)", "recmodels score, unfolded"),
    ):
        if key in results:
            print(f"  {label:<32}{e2e / results[key]:.2f}")

    if not args.quick:
        print("peak RSS (fresh subprocess each, recmodels.scoring.score on the folded bundle):")
        for n in (int(x) for x in args.rss_rows.split(",")):
            path = src if n == args.rows else first_rows(src, work / f"first-{n}.parquet", n) \
                if n < args.rows else make_input(work / f"pairs-{n}.parquet", n)
            proc = subprocess.run(
                [sys.executable, __file__, "--batch-size", str(batch_size), "--rss-child",
                 str(folded), str(path), str(work / "rss-out.parquet")],
                capture_output=True, text=True, check=True,
            )
            info = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"  {n:>12,} rows   peak RSS {info['peak_rss_mib']:8.1f} MiB   "
                  f"{info['rows_per_s']:,.0f} rows/s", flush=True)


if __name__ == "__main__":
    main()
