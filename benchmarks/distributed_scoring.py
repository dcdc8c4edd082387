"""Distributed scoring overhead: ``recmodels score`` locally vs ``--engine dask`` and ``--engine spark``.

Runs, in the same invocation and interleaved (``--repeat`` rounds, medians reported), the CLI as a
user would, each in a fresh subprocess (interpreter start, cluster start and stop included):

  (a) ``recmodels score BUNDLE pairs.parquet out/`` (one process, all cores),
  (b) ``--engine dask``: a LocalCluster of one worker per core (the default: threads of the
      command's own process),
  (b') ``dask-processes``: ``--engine dask --dask-workers processes`` (one worker process per
      core, one thread each),
  (c) ``--engine spark --master local[W]``,

on ``--rows`` (default 20M) (user, item) pairs in one Parquet file of 1M-row row groups (~1%
unknown users), with a NeuMF bundle at the notebook's sizes (``tests/bundle_factory``: 100,950
users, 59,196 items). Each engine also runs on ``--startup-rows`` (default 10,000) pairs: its
wall time there is the start-up overhead. Prints end-to-end wall time, rows/s, the in-job time
from ``--report`` (``seconds``) and the ratio to single-process; the targets are Dask within 1.5x
and Spark within 2x on 20M rows. On one machine the engines cannot be faster than (a): the figure
to watch is their overhead. Not a timed test.

Usage::

    .venv/bin/python benchmarks/distributed_scoring.py                    # 20M rows, 2 workers
    .venv/bin/python benchmarks/distributed_scoring.py --rows 2000000 --repeat 1
    .venv/bin/python benchmarks/distributed_scoring.py --workdir /tmp/dist-bench --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))

from score_throughput import N_ITEMS, N_USERS, cpu_name, make_input  # noqa: E402

TARGETS = {"dask": 1.5, "dask-processes": 1.5, "spark": 2.0}


def make_bundle_dir(root: Path) -> Path:
    """The NeuMF bundle at the notebook's sizes, from the test factory (no torch needed)."""
    from bundle_factory import make_bundle

    path = root / "neumf"
    if not (path / "manifest.json").exists():
        shutil.rmtree(path, ignore_errors=True)
        make_bundle(
            path,
            kind="neumf",
            folded=True,
            n_users=N_USERS,
            n_items=N_ITEMS,
            dim=32,
            mlp_dim=128,
            layers=(128, 64, 32),
            user_ids=np.arange(1, N_USERS + 1),
            item_ids=np.arange(1, N_ITEMS + 1),
        )
    return path


def run_cli(bundle: Path, src: Path, out: Path, engine: str, workers: int) -> dict:
    """One ``recmodels score`` in a fresh process; wall time and the JSON report."""
    report = out.with_suffix(".json")
    args = [
        sys.executable,
        "-m",
        "recmodels",
        "score",
        str(bundle),
        str(src),
        str(out),
        "--device",
        "cpu",
        "--overwrite",
        "-q",
        "--report",
        str(report),
    ]
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)
    if engine == "dask":
        args += ["--engine", "dask"]  # a LocalCluster of one worker per core, threads of this process
    elif engine == "dask-processes":
        args += ["--engine", "dask", "--dask-workers", "processes"]
    elif engine == "spark":
        args += ["--engine", "spark", "--master", f"local[{workers}]"]
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{engine}: failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    rep = json.loads(report.read_text())
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in out.glob("part-*.parquet"))
    if rows != rep["rows_written"]:
        raise SystemExit(f"{engine}: {rows} rows in the parts but the report says {rep['rows_written']}")
    shutil.rmtree(out, ignore_errors=True)
    return {"wall_s": wall, "job_s": rep["seconds"], "rows": rep["rows_read"], "parts": rep["parts_written"]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--startup-rows", type=int, default=10_000)
    ap.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count(),
        help="Spark local[N] threads (default: CPUs; Dask's LocalCluster always has one worker per core)",
    )
    ap.add_argument("--repeat", type=int, default=2, help="interleaved rounds (default 2)")
    ap.add_argument("--engines", default="local,dask,dask-processes,spark")
    ap.add_argument("--workdir", default=None, help="keep the input and bundle here between runs")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    root = Path(args.workdir or tempfile.mkdtemp(prefix="recmodels-dist-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    bundle = make_bundle_dir(root)
    big = make_input(root / f"pairs-{args.rows}.parquet", args.rows)
    small = make_input(root / f"pairs-{args.startup_rows}.parquet", args.startup_rows)
    print(
        f"{platform.node()}: {cpu_name()}, {os.cpu_count()} CPUs; {args.rows:,} rows, "
        f"{args.workers} Spark threads, {args.repeat} rounds",
        flush=True,
    )
    runs: dict = {e: {"big": [], "small": []} for e in engines}
    for r in range(args.repeat):
        for engine in engines:
            for size, src in (("small", small), ("big", big)):
                res = run_cli(bundle, src, root / f"out-{engine}-{size}", engine, args.workers)
                runs[engine][size].append(res)
                print(
                    f"  round {r + 1} {engine:14s} {size:5s}: {res['wall_s']:7.1f} s wall, "
                    f"{res['job_s']:7.1f} s in job, {res['parts']} parts",
                    flush=True,
                )
    figures = {}
    base = statistics.median(x["wall_s"] for x in runs[engines[0]]["big"]) if "local" in engines else None
    print(
        f"\n{'engine':14s} {'wall s':>8s} {'rows/s':>11s} {'job s':>7s} {'start-up s':>10s} "
        f"{'ratio':>6s} target"
    )
    for engine in engines:
        wall = statistics.median(x["wall_s"] for x in runs[engine]["big"])
        job = statistics.median(x["job_s"] for x in runs[engine]["big"])
        startup = statistics.median(x["wall_s"] for x in runs[engine]["small"])
        ratio = wall / base if base else float("nan")
        target = TARGETS.get(engine)
        verdict = "" if target is None else f"<= {target}x {'met' if ratio <= target else 'MISSED'}"
        print(
            f"{engine:14s} {wall:8.1f} {args.rows / wall:11,.0f} {job:7.1f} {startup:10.1f} "
            f"{ratio:6.2f} {verdict}"
        )
        figures[engine] = {
            "wall_s": wall,
            "rows_per_s": args.rows / wall,
            "job_s": job,
            "startup_s": startup,
            "ratio_vs_local": ratio,
            "target": target,
            "rounds": runs[engine],
        }
    if args.json:
        Path(args.json).write_text(
            json.dumps({"rows": args.rows, "workers": args.workers, "figures": figures}, indent=2)
        )
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
