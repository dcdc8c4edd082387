"""The low-rank refit's cost by rank, beside the epochs' time, against the per-block refit it replaced.

In one process: builds the planted ratings of ``benchmarks/train_throughput.py`` (the notebook's
sizes, or ``1/--scale`` of them) and trains default NeuMF on them with the refit off
(``benchmarks/ceiling/refit_variants.py``'s helpers: the same data, init and SGD run), timing the
epochs. Then refits copies of the best weights at each ``--ranks`` (the truncation forced to that
rank, ``refit_low_rank(rank=...)``; the rest of the refit as by default) with

* ``new``: :func:`recmodels.training.refit.refit_low_rank` as it is (batched normal equations
  and solves, :mod:`recmodels.training.refit_solve`);
* ``old``: ``recmodels/training/refit.py`` as of commit ``OLD_COMMIT`` (normal equations built
  rating by rating with ``index_add_``, one ``torch.linalg.solve`` per ``lam``), read with
  ``git show`` from this checkout and imported under another name: the in-process baseline.

and prints each one's seconds (as a share of the epochs' time), its validation RMSE as the
report gives it and as the refitted model predicts it, and the largest difference between the
two implementations' refitted weights. Not a test: run it by hand::

    nice -n 5 python benchmarks/refit_cost.py                       # notebook scale, 2 threads
    nice -n 5 python benchmarks/refit_cost.py --scale 8 --ranks 8,20 # a quick check
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time

import numpy as np
import torch

from recmodels.training import refit as new_refit
from recmodels.training.trainer import RatingTensors, predict_tensors

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ceiling"))
from refit_variants import planted_split, sgd_neumf  # noqa: E402

# The last commit whose refit built its normal equations rating by rating.
OLD_COMMIT = "ab28553"


def old_refit_module(commit: str = OLD_COMMIT):
    """``recmodels/training/refit.py`` at ``commit``, imported as a module of its own."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        source = subprocess.run(["git", "-C", root, "show", f"{commit}:recmodels/training/refit.py"],
                                check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"error: cannot read the old refit at commit {commit} with git ({exc}); "
                         "run from a git checkout of recmodels, or pass --no-old") from None
    spec = importlib.util.spec_from_loader("recmodels_refit_old", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    exec(compile(source, f"refit.py@{commit}", "exec"), module.__dict__)
    return module


def forced_rank(module, rank: int):
    """Make ``module``'s refit truncate at ``rank`` (the old one has no ``rank`` option)."""

    def truncated(f, valid, *_):
        t, kept, mse = new_refit._truncated(f, valid, rank)
        return module._Factors(t.P, t.Q, t.bu, t.bi), kept, mse

    module._truncated = truncated


def valid_rmse(model, valid) -> float:
    with torch.no_grad():
        pred = predict_tensors(model.eval(), valid.user_index, valid.item_index).double()
    return float((pred - valid.rating.double()).pow(2).mean().sqrt())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=1, help="1 = the notebook's scale, 8 = 1/8 of it")
    ap.add_argument("--ranks", default="1,8,20,32", help="ranks to refit at (comma-separated)")
    ap.add_argument("--old-ranks", default=None,
                    help="ranks to also time the old refit at (default: all of --ranks)")
    ap.add_argument("--no-old", action="store_true", help="do not time the old refit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    ranks = [int(r) for r in args.ranks.split(",")]
    old_ranks = [] if args.no_old else (ranks if args.old_ranks is None
                                        else [int(r) for r in args.old_ranks.split(",")])
    old = old_refit_module() if old_ranks else None
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    syn, train, valid, _, n_users, n_items = planted_split(args.scale, args.seed)
    print(f"data: {n_users:,} users, {n_items:,} items, {len(train.rating):,} train / "
          f"{len(valid.rating):,} valid rows ({time.perf_counter() - start:.0f} s); torch "
          f"{torch.__version__}, {args.threads} threads", flush=True)
    cpu_start = time.process_time()
    model, history = sgd_neumf(train, valid, n_users, n_items, args.seed, log=print, threads=args.threads)
    fit_cpu = time.process_time() - cpu_start
    epochs = sum(h["seconds"] for h in history)
    median = float(np.median([h["seconds"] for h in history]))
    print(f"epochs: {len(history)} in {epochs:.1f} s (median {median:.1f} s; the fit, validation passes "
          f"included, {fit_cpu:.1f} CPU s), best valid rmse {min(h['valid_rmse'] for h in history):.4f}",
          flush=True)

    cpu = torch.device("cpu")
    train_t, valid_t = RatingTensors.from_arrays(train, cpu), RatingTensors.from_arrays(valid, cpu)
    sgd = {k: v.clone() for k, v in model.state_dict().items()}
    rows = []
    for rank in ranks:
        results = {}
        for name in ("new", "old") if rank in old_ranks else ("new",):
            model.load_state_dict(sgd)
            began, cpu = time.perf_counter(), time.process_time()
            if name == "new":
                report = new_refit.refit_low_rank(model, train_t, valid_t, rank=rank)
            else:
                forced_rank(old, rank)
                report = old.refit_low_rank(model, train_t, valid_t)
            seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
            state = model.state_dict()  # REFIT_TENSORS names the implicit tables, present only with them
            weights = {k: state[k].clone() for k in new_refit.REFIT_TENSORS if k in state}
            results[name] = (seconds, report, valid_rmse(model, valid_t), weights)
            print(f"rank {rank:2d} {name}: {seconds:7.1f} s = {seconds / epochs:6.1%} of the epochs "
                  f"({cpu:.1f} CPU s = {cpu / fit_cpu:.1%} of the fit's); "
                  f"valid rmse {report.valid_rmse_before:.5f} -> {report.valid_rmse_after:.5f} (model "
                  f"{results[name][2]:.5f}); {report.sweeps} ridge + {report.variational_sweeps} "
                  f"variational sweep(s), lam {report.lambdas}", flush=True)
        rows.append((rank, results))
        if "old" in results:
            (ns, nr, nm, nw), (os_, orr, om, ow) = results["new"], results["old"]
            diff = max(float((nw[k] - ow[k]).abs().max()) for k in nw)
            print(f"rank {rank:2d}: old / new {os_ / ns:.1f}x; valid rmse new - old "
                  f"{nr.valid_rmse_after - orr.valid_rmse_after:+.2e} (report), {nm - om:+.2e} (model); "
                  f"weights differ by at most {diff:.1e}", flush=True)

    print(f"\nsummary (epochs {epochs:.1f} s; {args.threads} threads, 1/{args.scale} scale):")
    print("| rank | new refit | share of epochs | old refit | old / new | valid rmse new | valid rmse old |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for rank, results in rows:
        ns, nr, nm, _ = results["new"]
        line = f"| {rank} | {ns:.1f} s | {ns / epochs:.1%} |"
        if "old" in results:
            os_, orr, om, _ = results["old"]
            line += f" {os_:.1f} s | {os_ / ns:.1f}x | {nm:.5f} | {om:.5f} |"
        else:
            line += f" - | - | {nm:.5f} | - |"
        print(line)


if __name__ == "__main__":
    main()
