"""Parity check: onnxruntime (CPU) must reproduce the torch model within tolerance."""

from __future__ import annotations

import os

import numpy as np

from ..errors import ParityError

TOLERANCE = 1e-5
N_PAIRS = 10_000
BATCH_SIZES = (1, 2, 7, 4096)
SMALL_BATCH_PAIRS = 14 * 15  # pairs scored one, two and seven at a time (divisible by 1, 2, 7)


def random_pairs(n_users: int, n_items: int, n_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_pairs`` random known (user, item) index pairs, always including both corners."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, size=n_pairs, dtype=np.int64)
    items = rng.integers(0, n_items, size=n_pairs, dtype=np.int64)
    users[:2] = (0, n_users - 1)
    items[:2] = (0, n_items - 1)
    return users, items


def cpu_session(path: str | os.PathLike):
    """An onnxruntime session on the CPU execution provider (quiet about CUDA)."""
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def torch_scores(model, users: np.ndarray, items: np.ndarray, batch: int = 65536) -> np.ndarray:
    """The torch model's scores (eval mode, no grad) as float32."""
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, users.size, batch):
            u = torch.from_numpy(users[start : start + batch])
            i = torch.from_numpy(items[start : start + batch])
            out.append(model(u, i).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def _run(session, users, items, batch: int) -> np.ndarray:
    out = []
    for start in range(0, users.size, batch):
        feed = {"user_index": users[start : start + batch], "item_index": items[start : start + batch]}
        out.append(session.run(["score"], feed)[0])
    return np.concatenate(out)


def check_parity(
    model,
    onnx_path: str | os.PathLike,
    *,
    n_pairs: int = N_PAIRS,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    tolerance: float = TOLERANCE,
    seed: int = 0,
) -> dict:
    """Score random known pairs with the torch model and with the graph; compare.

    All ``n_pairs`` pairs go through the graph at the largest batch size; the first
    :data:`SMALL_BATCH_PAIRS` also at each smaller batch size (1, 2, 7 by default).

    Returns
    -------
    dict
        ``{"passed", "max_abs_diff", "tolerance", "n_pairs", "batch_sizes",
        "max_abs_diff_by_batch", "provider", "seed"}`` (the manifest's ``parity``).

    Raises
    ------
    ParityError
        If any score differs by more than ``tolerance`` (or is not finite).
    """
    model.eval()
    n_users, n_items = model.config.n_users, model.config.n_items
    users, items = random_pairs(n_users, n_items, n_pairs, seed)
    expected = torch_scores(model, users, items)
    session = cpu_session(onnx_path)
    by_batch = {}
    largest = max(batch_sizes)
    for batch in sorted(batch_sizes):
        n = users.size if batch == largest else min(users.size, SMALL_BATCH_PAIRS)
        got = _run(session, users[:n], items[:n], batch)
        if got.dtype != np.float32 or got.shape != (n,):
            raise ParityError(
                f"parity check failed: graph returned {got.dtype} {got.shape}, expected float32 ({n},)"
            )
        diff = np.abs(got.astype(np.float64) - expected[:n].astype(np.float64))
        worst = float(np.max(diff)) if n else 0.0
        if not np.all(np.isfinite(got)):
            worst = float("inf")
        by_batch[str(batch)] = worst
    max_diff = max(by_batch.values())
    result = {
        "passed": bool(max_diff <= tolerance),
        "max_abs_diff": max_diff,
        "tolerance": tolerance,
        "n_pairs": int(users.size),
        "batch_sizes": [int(b) for b in sorted(batch_sizes)],
        "max_abs_diff_by_batch": by_batch,
        "provider": "CPUExecutionProvider",
        "seed": seed,
    }
    if not result["passed"]:
        worst_batch = max(by_batch, key=by_batch.get)
        raise ParityError(
            f"parity check failed: max |onnx - torch| = {max_diff:.3g} at batch size {worst_batch} "
            f"exceeds tolerance {tolerance:g}; no bundle was written"
        )
    return result
