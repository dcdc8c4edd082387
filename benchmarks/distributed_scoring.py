"""Distributed scoring overhead: ``recmodels score`` locally vs ``--engine dask`` and ``--engine spark``.

Runs, in the same invocation and interleaved (``--repeat`` rounds, medians reported), the CLI as a
user would, each in a fresh subprocess (interpreter start, cluster start and stop included):

  (a) ``recmodels score BUNDLE pairs.parquet out/`` (one process, all cores): the baseline,
  (b) ``--engine dask``: a LocalCluster of one worker per core (the default: threads of the
      command's own process),
  (b') ``dask-processes``: ``--engine dask --dask-workers processes`` (one worker process per
      core, one thread each),
  (c) ``--engine spark --master local[W]``,

on ``--rows`` (default 20M) (user, item) pairs in one Parquet file of 1M-row row groups (~1%
unknown users), with a NeuMF bundle at the notebook's sizes (``tests/bundle_factory``: 100,950
users, 59,196 items). Each command also runs on ``--startup-rows`` (default 10,000) pairs: its
wall time there is its start-up, and ``wall - start-up`` is the time its rows take ("past
start-up"). Printed against the baseline of the same run (issue 23's targets):

  * Dask (thread workers): end to end <= 1.25x the single process;
  * Spark: start-up (session + a trivial first job of the kind the engine runs, one Python task
    per item on the RDD API; measured in a fresh process: imports, session, first job, stop,
    printed separately) <= 15 s, and past start-up <= 1.3x the single process's.

CPU seconds (user + system of the command and the children it waited for; not shown for Spark,
whose JVM and Python workers are not among them) say what each run cost when other jobs share
the machine and wall times move with them. On one machine the engines cannot
be faster than (a): the figure to watch is their overhead. Not a timed test.

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
import resource
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

TARGETS = {"dask": 1.25}
"""End to end vs the single process (issue 23)."""
SPARK_STARTUP_TARGET_S = 15.0
"""Spark: session + a trivial first job, seconds."""
PAST_STARTUP_TARGETS = {"spark": 1.3}
"""Rows past start-up (wall - start-up) vs the single process's."""

SPARK_STARTUP = """
import json, sys, time
t0 = time.perf_counter()
from recmodels.engines.spark import local_session
t1 = time.perf_counter()
session = local_session(sys.argv[1])
spark = session.__enter__()
t2 = time.perf_counter()
ids = spark.sparkContext.parallelize(range(2), 2)
rows = ids.map(lambda i: i).collect()  # as SparkEngine.map_items runs its tasks
t3 = time.perf_counter()
session.__exit__(None, None, None)
t4 = time.perf_counter()
print(json.dumps({"imports_s": t1 - t0, "session_s": t2 - t1, "first_job_s": t3 - t2, "stop_s": t4 - t3}))
"""


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
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{engine}: failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    rep = json.loads(report.read_text())
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in out.glob("part-*.parquet"))
    if rows != rep["rows_written"]:
        raise SystemExit(f"{engine}: {rows} rows in the parts but the report says {rep['rows_written']}")
    shutil.rmtree(out, ignore_errors=True)
    return {"wall_s": wall, "cpu_s": cpu, "job_s": rep["seconds"], "rows": rep["rows_read"],
            "parts": rep["parts_written"]}


def spark_startup(workers: int) -> dict:
    """Spark's fixed cost in a fresh process: imports, session, a trivial first job, stop (seconds)."""
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", SPARK_STARTUP, f"local[{workers}]"], capture_output=True,
                          text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"spark start-up: failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_s"] = wall
    return out


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
    spark_parts: list[dict] = []
    for r in range(args.repeat):
        for engine in engines:
            for size, src in (("small", small), ("big", big)):
                res = run_cli(bundle, src, root / f"out-{engine}-{size}", engine, args.workers)
                runs[engine][size].append(res)
                print(
                    f"  round {r + 1} {engine:14s} {size:5s}: {res['wall_s']:7.1f} s wall, "
                    f"{res['cpu_s']:7.1f} s CPU, {res['job_s']:7.1f} s in job, {res['parts']} parts",
                    flush=True,
                )
        if "spark" in engines:
            spark_parts.append(spark_startup(args.workers))
            print("  round {} spark start-up: {}".format(
                r + 1, ", ".join(f"{k} {v:.1f}" for k, v in spark_parts[-1].items())), flush=True)
    figures = {}

    def median(engine, size, key="wall_s"):
        return statistics.median(x[key] for x in runs[engine][size])

    base = base_past = None
    if "local" in engines:
        base = median("local", "big")
        base_past = base - median("local", "small")
    print(
        f"\n{'engine':14s} {'wall s':>7s} {'CPU s':>6s} {'rows/s':>11s} {'job s':>6s} {'start-up s':>10s} "
        f"{'past s':>7s} {'ratio':>6s} {'past ratio':>10s} {'CPU ratio':>9s} targets"
    )
    for engine in engines:
        wall, job, startup = median(engine, "big"), median(engine, "big", "job_s"), median(engine, "small")
        # Spark's JVM and Python workers are not this command's waited-for children: not counted
        cpu = float("nan") if engine == "spark" else median(engine, "big", "cpu_s")
        cpu_ratio = cpu / median("local", "big", "cpu_s") if base else float("nan")
        past = wall - startup
        ratio = wall / base if base else float("nan")
        past_ratio = past / base_past if base_past else float("nan")
        verdicts = []
        if engine in TARGETS:
            t = TARGETS[engine]
            verdicts.append(f"end to end <= {t}x {'met' if ratio <= t else 'MISSED'}")
        if engine in PAST_STARTUP_TARGETS:
            t = PAST_STARTUP_TARGETS[engine]
            verdicts.append(f"past start-up <= {t}x {'met' if past_ratio <= t else 'MISSED'}")
        print(
            f"{engine:14s} {wall:7.1f} {cpu:6.1f} {args.rows / wall:11,.0f} {job:6.1f} {startup:10.1f} "
            f"{past:7.1f} {ratio:6.2f} {past_ratio:10.2f} {cpu_ratio:9.2f} {'; '.join(verdicts)}"
        )
        figures[engine] = {
            "wall_s": wall,
            "cpu_s": cpu,
            "cpu_ratio_vs_local": cpu_ratio,
            "rows_per_s": args.rows / wall,
            "job_s": job,
            "startup_s": startup,
            "past_startup_s": past,
            "ratio_vs_local": ratio,
            "past_startup_ratio_vs_local": past_ratio,
            "rounds": runs[engine],
        }
    if spark_parts:
        parts = {k: statistics.median(p[k] for p in spark_parts) for k in spark_parts[0]}
        fixed = parts["session_s"] + parts["first_job_s"]
        verdict = "met" if fixed <= SPARK_STARTUP_TARGET_S else "MISSED"
        print(
            f"\nspark start-up (fresh process, medians): imports {parts['imports_s']:.1f} s, session "
            f"{parts['session_s']:.1f} s, first trivial job {parts['first_job_s']:.1f} s, "
            f"stop {parts['stop_s']:.1f} s "
            f"(process {parts['process_s']:.1f} s); session + first job {fixed:.1f} s: "
            f"<= {SPARK_STARTUP_TARGET_S:g} s {verdict}"
        )
        figures["spark_startup"] = {**parts, "session_plus_first_job_s": fixed, "rounds": spark_parts}
    if args.json:
        Path(args.json).write_text(
            json.dumps({"rows": args.rows, "workers": args.workers, "figures": figures}, indent=2)
        )
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
