"""Scoring throughput: Parquet -> Parquet with a NeuMF bundle at the notebook's sizes.

Prints rows/s of ``recmodels.scoring`` end to end beside, in the same process and interleaved
(``--repeat`` rounds; medians and the median of the round-by-round ratios are reported):

  (a) the I/O floor: the same read + write with no model,
  (b) the straightforward loop: pyarrow batches of 65,536 rows -> id maps -> onnxruntime
      (default session options) -> Parquet, sequential, on the model exported as it is (the
      unfolded graph: what a plain export gives); (b') the same loop on the folded graph, which
      separates what folding buys from what the pipeline buys,
  (c) torch eager inference in that same loop,

the unfolded graph, and the graph alone ("model only": ``ScoringSession.run`` on random index
pairs vs one plain ``session.run`` per 65,536 rows); then peak RSS (``VmHWM``) of
``recmodels.scoring.score`` at two input sizes, each in a fresh subprocess.

With ``--device cuda``: end to end on CUDA, the graph alone with IO binding (inputs and output
on the GPU, batches of ~1M rows), the I/O floor, (b) on the CUDA provider and (c) in torch on
CUDA; no unfolded graph and no RSS runs.

Usage::

    .venv/bin/python benchmarks/score_throughput.py                 # 20M rows, RSS at 5M vs 20M
    .venv/bin/python benchmarks/score_throughput.py --quick         # 2M rows, 1 round, no RSS runs
    .venv/bin/python benchmarks/score_throughput.py --rows 10000000 --baseline-rows 2000000
    python benchmarks/score_throughput.py --device cuda --rows 20000000 --json OUT/score_gpu.json

The bundle comes from the real exporter (``recmodels.export.export_model``) over a randomly
initialised NeuMF (100,950 users, 59,196 items, embedding 32, MLP embeddings 128, layers
256 -> 128 -> 64 -> 32); without torch/the exporter it falls back to ``tests/bundle_factory``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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


def rss_child(bundle: str, src: str, dst: str, batch_size: int | None) -> None:
    from recmodels.scoring import score

    rep = score(bundle, src, dst, device="cpu", overwrite=True, batch_size=batch_size)
    peak_kib = peak_rss_kib()
    print(json.dumps({"rows": rep.rows_read, "peak_rss_mib": peak_kib / 1024,
                      "rows_per_s": rep.rows_per_s}))


BASELINE_BATCH = 65_536  # the straightforward loop's batch (the scorer's former default)
TARGETS = {"end_to_end_rows_per_s": 2.5e6, "vs_onnxruntime_loop": 3.0, "vs_torch_eager_loop": 6.0,
           "rss_growth_max": 0.10}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def model_only(bundle: Path, device: str, pairs: int, rounds: int, record) -> None:
    """The graph alone on random index pairs: ours vs one plain session.run per 65,536 rows."""
    import onnxruntime as ort

    from recmodels.scoring import DEFAULT_BATCH_SIZE, DEFAULT_CUDA_BATCH_SIZE, ScoringSession

    rng = np.random.default_rng(1)
    u = rng.integers(0, N_USERS, pairs).astype(np.int64)
    i = rng.integers(0, N_ITEMS, pairs).astype(np.int64)
    ours = ScoringSession(bundle, device)
    if device == "cpu":
        plain = ort.InferenceSession(str(ours.bundle.model_path), providers=["CPUExecutionProvider"])

        def run_plain():
            for lo in range(0, pairs, BASELINE_BATCH):
                sl = slice(lo, lo + BASELINE_BATCH)
                plain.run(["score"], {"user_index": u[sl], "item_index": i[sl]})

        def run_ours():
            for lo in range(0, pairs, DEFAULT_BATCH_SIZE):
                ours.run(u[lo:lo + DEFAULT_BATCH_SIZE], i[lo:lo + DEFAULT_BATCH_SIZE])

        run_ours()
        for _ in range(rounds):
            record("model only: ScoringSession.run (ordered sub-batches)", pairs, timed(run_ours))
            record("model only: plain session.run, 65,536 rows", pairs, timed(run_plain))
        return
    # CUDA: IO binding, inputs and output resident on the GPU, ~1M rows per call
    sess = ours.session
    batch = DEFAULT_CUDA_BATCH_SIZE
    device_id = int(ours.provider.split(":")[1])
    uv = ort.OrtValue.ortvalue_from_numpy(u[:batch], "cuda", device_id)
    iv = ort.OrtValue.ortvalue_from_numpy(i[:batch], "cuda", device_id)
    out = ort.OrtValue.ortvalue_from_shape_and_type([batch], np.float32, "cuda", device_id)
    binding = sess.io_binding()
    binding.bind_ortvalue_input("user_index", uv)
    binding.bind_ortvalue_input("item_index", iv)
    binding.bind_ortvalue_output("score", out)
    calls = max(1, pairs // batch)

    def run_bound():
        for _ in range(calls):
            sess.run_with_iobinding(binding)
        binding.synchronize_outputs()

    run_bound()
    for _ in range(rounds):
        record("model only: IO binding, 1M rows per call", calls * batch, timed(run_bound))

    def run_host():  # host numpy in and out: what the scorer does per batch
        for lo in range(0, calls * batch, batch):
            ours.run(u[lo:lo + batch], i[lo:lo + batch])

    run_host()
    for _ in range(rounds):
        record("model only: host arrays, 1M rows per call", calls * batch, timed(run_host))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--baseline-rows", type=int, default=None,
                    help="rows for the slow runs (b, c, unfolded); default: --rows")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="the scorer's batch (default: its own, by device)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--model-pairs", type=int, default=4_194_304,
                    help="random pairs for the model-only runs")
    ap.add_argument("--quick", action="store_true", help="2M rows, 1 round, no RSS subprocesses")
    ap.add_argument("--rss-rows", default="5000000,20000000")
    ap.add_argument("--workdir", default=None, help="keep inputs/bundles here between runs")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    ap.add_argument("--rss-child", nargs=3, metavar=("BUNDLE", "SRC", "DST"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    from recmodels.scoring import Scorer

    if args.rss_child:
        return rss_child(*args.rss_child, args.batch_size)
    cuda = args.device == "cuda"
    if args.quick:
        args.rows = min(args.rows, 2_000_000)
        args.repeat = 1
    if cuda:
        args.repeat = min(args.repeat, 2)
    if cuda and args.baseline_rows is None:
        args.baseline_rows = 5_000_000  # keeps gpu_check.sh's time bound
    base_rows = min(args.baseline_rows or args.rows, args.rows)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="score-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    folded, unfolded, model = make_bundles(work)
    src = make_input(work / f"pairs-{args.rows}.parquet", args.rows)
    base_src = src
    if base_rows != args.rows:
        base_src = first_rows(src, work / f"first-{base_rows}.parquet", base_rows)
    out = work / "out.parquet"
    scorer = Scorer(folded, device=args.device, batch_size=args.batch_size)
    print(f"workdir {work}; {cpu_name()}, {os.cpu_count()} CPUs; device {scorer.provider}; rows "
          f"{args.rows:,}; baselines on {base_rows:,}; batch {scorer.batch_size:,}; "
          f"{args.repeat} round(s); setup {time.perf_counter() - t_start:.0f} s", flush=True)
    runs: dict[str, list[float]] = {}

    def record(name, rows, seconds):
        runs.setdefault(name, []).append(rows / seconds)
        print(f"  {name:<56} {rows / seconds:>12,.0f} rows/s   ({seconds:6.2f} s)", flush=True)

    import onnxruntime as ort

    from recmodels.bundle import Bundle

    ort.set_default_logger_severity(3)
    b = Bundle.load(folded)
    encoders = (b.user_encoder, b.item_encoder)
    provider = ["CUDAExecutionProvider"] if cuda else ["CPUExecutionProvider"]
    sess_folded = ort.InferenceSession(str(b.model_path), providers=provider)
    sess_plain = ort.InferenceSession(str(Bundle.load(unfolded).model_path), providers=provider)
    unfolded_scorer = None if cuda else Scorer(unfolded, device="cpu", batch_size=args.batch_size)

    def run_ort(u, i):
        return sess_plain.run(["score"], {"user_index": u, "item_index": i})[0]

    def run_ort_folded(u, i):
        return sess_folded.run(["score"], {"user_index": u, "item_index": i})[0]

    run_torch = None
    if model is not None:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        tdev = torch.device("cuda" if cuda else "cpu")
        tmodel = model.to(tdev)

        def run_torch(u, i):
            with torch.inference_mode():
                return tmodel(torch.from_numpy(u).to(tdev), torch.from_numpy(i).to(tdev)).cpu().numpy()

    E2E = "recmodels score, folded, end to end"
    IO, LOOP, TORCH = ("(a) I/O floor: read + write, no model",
                       "(b) straightforward loop, onnxruntime, plain export",
                       "(c) same loop, torch eager")
    LOOP_F = "(b') same loop, onnxruntime, folded graph"
    UNF = "recmodels score, unfolded graph"
    loop(base_src, out, BASELINE_BATCH)  # warm the page cache
    for _ in range(args.repeat):
        record(E2E, args.rows, timed(lambda: scorer.score_file(src, out, overwrite=True)))
        record(IO, base_rows, timed(lambda: loop(base_src, out, BASELINE_BATCH)))
        record(LOOP, base_rows,
               timed(lambda: loop(base_src, out, BASELINE_BATCH, run_ort, encoders)))
        record(LOOP_F, base_rows,
               timed(lambda: loop(base_src, out, BASELINE_BATCH, run_ort_folded, encoders)))
        if run_torch is not None:
            record(TORCH, base_rows,
                   timed(lambda: loop(base_src, out, BASELINE_BATCH, run_torch, encoders)))
        if unfolded_scorer is not None:
            record(UNF, base_rows,
                   timed(lambda: unfolded_scorer.score_file(base_src, out, overwrite=True)))
    model_only(folded, args.device, args.model_pairs, args.repeat, record)

    med = {k: statistics.median(v) for k, v in runs.items()}

    def paired(a, b):  # median of the round-by-round ratios: robust to the machine's drift
        return statistics.median(x / y for x, y in zip(runs[a], runs[b], strict=False))

    ratios = {}
    print("medians (rows/s) and ratios (median of the per-round ratios):")
    for label, key in (("end to end / I/O floor", IO), ("end to end / onnxruntime loop", LOOP),
                       ("end to end / same loop, folded graph", LOOP_F),
                       ("end to end / torch eager loop", TORCH), ("folded / unfolded (ours)", UNF)):
        if key in runs:
            ratios[label] = paired(E2E, key)
            print(f"  {label:<40}{ratios[label]:6.2f}")
    mo = [k for k in runs if k.startswith("model only")]
    if len(mo) == 2 and not cuda:
        ratios["model only: ours / plain"] = paired(mo[0], mo[1])
        print(f"  {'model only: ours / plain':<40}{ratios['model only: ours / plain']:6.2f}")
    print(f"  end to end {med[E2E]:,.0f} rows/s (target >= {TARGETS['end_to_end_rows_per_s']:,.0f})")

    rss = []
    if not args.quick and not cuda:
        print("peak RSS (fresh subprocess each, recmodels.scoring.score on the folded bundle):")
        for n in (int(x) for x in args.rss_rows.split(",")):
            path = src if n == args.rows else first_rows(src, work / f"first-{n}.parquet", n) \
                if n < args.rows else make_input(work / f"pairs-{n}.parquet", n)
            cmd = [sys.executable, __file__, "--rss-child", str(folded), str(path),
                   str(work / "rss-out.parquet")]
            if args.batch_size:
                cmd[2:2] = ["--batch-size", str(args.batch_size)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            info = json.loads(proc.stdout.strip().splitlines()[-1])
            rss.append(info)
            print(f"  {n:>12,} rows   peak RSS {info['peak_rss_mib']:8.1f} MiB   "
                  f"{info['rows_per_s']:,.0f} rows/s", flush=True)
        if len(rss) >= 2:
            growth = rss[-1]["peak_rss_mib"] / rss[0]["peak_rss_mib"] - 1
            ratios["peak RSS growth"] = growth
            print(f"  growth {growth:+.1%} (target within {TARGETS['rss_growth_max']:.0%})")

    if args.json:
        figures = {
            "device": scorer.provider, "cpu": cpu_name(), "cpus": os.cpu_count(),
            "rows": args.rows, "baseline_rows": base_rows, "batch_size": scorer.batch_size,
            "rounds": args.repeat, "rows_per_s_median": med, "rows_per_s_runs": runs,
            "ratios": ratios, "peak_rss": rss, "targets": TARGETS,
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=2))
        print(f"figures -> {args.json}")


if __name__ == "__main__":
    from recmodels.errors import RecmodelsError

    try:
        main()
    except RecmodelsError as exc:  # e.g. --device cuda without a usable GPU: one line, exit 1
        sys.exit(f"error: {exc}")
