"""The driver side of ``recommend`` on Spark and Dask (torch-free): read and check the inputs
once, as a local run does, then one task per part of users; see :mod:`.distributed`."""

from __future__ import annotations

import os
import time

import pandas as pd

from ..errors import ConfigError
from ..fileio import write_json
from ..scoring.checks import positive_int
from ..scoring.recommendation.job import check_k_fits, check_top_k
from ..scoring.recommendation.recommender import DEFAULT_PART_USERS, Recommender
from ..scoring.unknown_ids import DEFAULT_MAX_UNKNOWN_SHARE
from .driver import StagedOutput, worker_notes
from .worker import RecommendTask, files_token


def check_candidate_k(k, bundle) -> int:
    """``k`` positive and not above the bundle's items, as ``recmodels recommend`` checks it."""
    k = check_top_k(k)
    check_k_fits(k, len(bundle.item_encoder))
    return k


def _abs(path):
    return None if path is None else os.path.abspath(os.fspath(path))


def run_recommend_job(
    bundle,
    output,
    run,
    *,
    engine: str,
    k: int = 10,
    users=None,
    items=None,
    exclude_seen=None,
    user_col=None,
    item_col=None,
    max_unknown_share=None,
    format=None,
    part_users=None,
    overwrite=False,
    report=None,
    device="auto",
    threads=1,
    candidates=None,
    block_users=None,
    tile_items=None,
    bundle_path=None,
):
    """``recmodels recommend --engine ...``: the inputs are read and checked on the driver (the
    same report counts as a local run), then each part of ``part_users`` list positions is one
    task. ``run(spans, task, directory, fmt)`` is the engine's part: it runs
    :func:`~recmodels.engines.worker.recommend_part` for each row ``part, lo, hi`` of the
    ``spans`` DataFrame and returns the records. Part ``k`` holds the users of part ``k`` of a
    local run."""
    t0 = time.perf_counter()
    share = DEFAULT_MAX_UNKNOWN_SHARE if max_unknown_share is None else max_unknown_share
    for name, value in (("users", users), ("items", items), ("exclude-seen", exclude_seen)):
        if value is not None and not isinstance(value, str | os.PathLike):
            raise ConfigError(f"--engine {engine}: --{name} must be a file every worker can read")
    rec = Recommender(
        bundle, device="cpu", threads=1, candidates=candidates, block_users=block_users, tile_items=tile_items
    )
    job = rec.prepare(
        users=users,
        k=k,
        items=items,
        exclude_seen=exclude_seen,
        user_col=user_col,
        item_col=item_col,
        max_unknown_share=share,
    )
    part_users = positive_int("--part-users", part_users or None, DEFAULT_PART_USERS)
    n = int(job.user_index.size)
    spans = pd.DataFrame(
        [(p, lo, min(lo + part_users, n)) for p, lo in enumerate(range(0, n, part_users))],
        columns=["part", "lo", "hi"],
    )
    files = {"users": _abs(users), "items": _abs(items), "exclude_seen": _abs(exclude_seen)}
    task = RecommendTask(
        bundle_path=os.fspath(bundle_path or rec.bundle.path),
        digest=rec.bundle.digest,
        k=job.k,
        device=device,
        threads=threads,
        candidates=candidates,
        block_users=block_users,
        tile_items=tile_items,
        user_col=user_col,
        item_col=item_col,
        **files,
        max_unknown_share=1.0,
        inputs_token=tuple(files_token(path) for path in files.values()),
    )
    staged = StagedOutput(
        output,
        format,
        rec.output_schema(),
        overwrite=overwrite,
        command="recommend",
        job={
            "engine": engine,
            "bundle": rec.bundle.digest,
            "inputs": job.digest,
            "top_k": job.k,
            "candidates": candidates,
            "users": n,
            "part_users": part_users,
        },
    )
    try:
        records = run(spans, task, os.fspath(staged.directory), staged.part_fmt)
        rep = job.report
        rep.parts_written = staged.commit(records)
    except BaseException:
        staged.abort()
        raise
    finally:
        rec.close()
    for key in ("users_processed", "users_written", "users_short", "rows_written", "pairs_scored"):
        setattr(rep, key, sum(int(r[key]) for r in records))
    rep.provider = ",".join(sorted({r.get("provider", "cpu") for r in records})) or rep.provider
    rep.warnings = worker_notes(records)
    rep.output, rep.output_mode, rep.format = os.fspath(output), staged.mode, staged.fmt
    rep.seconds = time.perf_counter() - t0
    rep.pairs_per_s = rep.pairs_scored / rep.seconds if rep.seconds > 0 else 0.0
    if report is not None:
        write_json(report, rep.to_dict())
    return rep
