"""Training with torch's threads on cores another process holds (issue 21, item 14).

A busy-loop process (``while True: pass``) is pinned to one core of this process's CPU set;
training itself is not pinned, as a user's would not be. Each configuration trains MF and
NeuMF for ``--epochs`` epochs on small synthetic data (:func:`recmodels.datasets.make_ratings`,
100k ratings by default, refit off) and the wall time of each epoch (training and validation)
is taken. Scenarios:

* ``idle``: no busy process (other jobs on the machine still count: the load average is printed);
* ``busy``: the busy process runs from the start;
* ``late``: it starts after the first epoch (the epochs after it are timed).

Configurations: ``threads 1``; ``threads N`` (N = the cores this process may use: torch's own
default, which ``recmodels train`` used before issue 21); ``default`` (``TrainConfig()``
without ``num_threads``: the cores other processes leave free, measured before the first
epoch and after each, :mod:`recmodels.training.threads`). They run interleaved, ``--repeats``
times; the median epoch is reported, and its ratio to ``threads 1`` in the same scenario.
Not a test: run it by hand::

    nice -n 5 python benchmarks/threads_oversubscription.py
    nice -n 5 python benchmarks/threads_oversubscription.py --scenarios busy --models mf --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch

from recmodels import data as D
from recmodels.datasets import make_ratings
from recmodels.models import ModelConfig, build_model
from recmodels.training import TrainConfig, Trainer
from recmodels.training.threads import cpu_set

SCENARIOS = ("idle", "busy", "late")


def start_busy() -> subprocess.Popen:
    """A busy-loop process pinned to the first core of this process's CPU set."""
    cpu = cpu_set()[0]
    code = f"import os; os.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"
    return subprocess.Popen([sys.executable, "-c", code])


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None:
        proc.terminate()
        proc.wait()


def epoch_seconds(kind: str, parts, n_users: int, n_items: int, config: TrainConfig,
                  scenario: str) -> tuple[list[float], list[str]]:
    """Wall seconds of each timed epoch (training and validation), and the trainer's log."""
    train, valid = parts
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind, n_users, n_items, global_mean=float(train.rating.mean())))
    ends, busy, lines = [], [None], []

    def on_epoch_end(trainer, record, improved):
        ends.append(time.perf_counter())
        if scenario == "late" and record.epoch == 1:
            busy[0] = start_busy()
            time.sleep(0.2)
            ends[-1] = time.perf_counter()

    if scenario == "busy":
        busy[0] = start_busy()
        time.sleep(0.2)
    try:
        trainer = Trainer(model, config, torch.device("cpu"), log=lines.append, progress=False,
                          on_epoch_end=on_epoch_end)
        start = time.perf_counter()
        trainer.fit(train, valid)
    finally:
        stop(busy[0])
    times = [b - a for a, b in zip([start, *ends], ends, strict=False)]
    return (times[1:] if scenario == "late" else times), lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--items", type=int, default=2_000)
    parser.add_argument("--ratings", type=int, default=100_000)
    parser.add_argument("--models", default="mf,neumf")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args(argv)

    cores = len(cpu_set())
    syn = make_ratings(args.users, args.items, args.ratings, seed=0)
    split = D.split_interactions(syn.ratings, seed=0)
    users, items = D.fit_encoders(split.train)
    parts = (D.encode(split.train, users, items)[0], D.encode(split.valid, users, items)[0])
    base = TrainConfig(epochs=args.epochs, patience=None, refit=False, device="cpu", seed=0)
    configs = {"threads 1": base.replace(num_threads=1),
               f"threads {cores}": base.replace(num_threads=cores),
               "default": base}
    print(f"{len(parts[0]):,} training rows, {len(users):,} users, {len(items):,} items; "
          f"{cores} cores for this process, {os.cpu_count()} on the machine; torch "
          f"{torch.__version__}; load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    for scenario in args.scenarios.split(","):
        for kind in args.models.split(","):
            times = {name: [] for name in configs}
            notes = []
            for _ in range(args.repeats):
                for name, config in configs.items():
                    seconds, lines = epoch_seconds(kind, parts, len(users), len(items), config,
                                                   scenario)
                    times[name].extend(seconds)
                    if name == "default":
                        notes.extend(line for line in lines if line.startswith("threads"))
            one = statistics.median(times["threads 1"])
            cells = [f"{name} {statistics.median(t):.2f}s ({statistics.median(t) / one:.2f}x)"
                     for name, t in times.items()]
            print(f"{scenario}, {kind}: " + ", ".join(cells) + "  [max/min epoch: "
                  + ", ".join(f"{max(t) / min(t):.1f}" for t in times.values())
                  + f"]; load average {os.getloadavg()[0]:.2f}", flush=True)
            for line in dict.fromkeys(notes):
                print(f"    default: {line}", flush=True)


if __name__ == "__main__":
    main()
