"""Parity check: onnxruntime (CPU) must reproduce the torch model within tolerance."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..bundle.graph_contract import ITEM_ID, ITEM_INDEX, KNOWN, SCORE, USER_ID, USER_INDEX
from ..errors import ParityError

TOLERANCE = 1e-5
N_PAIRS = 10_000
BATCH_SIZES = (1, 2, 7, 4096)


@dataclass(frozen=True)
class ParityCheck:
    """How an export checks its graphs against their reference: ``pairs`` random known pairs (at
    each of ``batch_sizes``), ``tolerance`` on the largest absolute difference, ``seed`` of the
    pairs (and of the recommend and prior checks)."""

    pairs: int = N_PAIRS
    batch_sizes: tuple[int, ...] = BATCH_SIZES
    tolerance: float = TOLERANCE
    seed: int = 0
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


def run_pairs(session, users, items, batch: int) -> np.ndarray:
    """Scores of index pairs from an onnxruntime ``session`` of a scoring graph, ``batch`` at a time."""
    out = []
    for start in range(0, users.size, batch):
        feed = {USER_INDEX: users[start : start + batch], ITEM_INDEX: items[start : start + batch]}
        out.append(session.run([SCORE], feed)[0])
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
    return check_reference_parity(
        lambda users, items: torch_scores(model, users, items),
        model.config.n_users,
        model.config.n_items,
        onnx_path,
        n_pairs=n_pairs,
        batch_sizes=batch_sizes,
        tolerance=tolerance,
        seed=seed,
    )


def check_reference_parity(
    reference: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n_users: int,
    n_items: int,
    onnx_path: str | os.PathLike,
    *,
    reference_name: str = "torch",
    n_pairs: int = N_PAIRS,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    tolerance: float = TOLERANCE,
    seed: int = 0,
) -> dict:
    """:func:`check_parity` against any scoring function ``reference(user_index, item_index)``.

    Parameters
    ----------
    reference : callable
        ``(users int64 [n], items int64 [n]) -> scores [n]``; the judge (the torch model in the
        exporter, the numpy oracle in the test factory).
    n_users, n_items : int
        The tables' sizes (pairs are drawn from them).
    onnx_path : path-like
        The graph to check.
    reference_name : str
        What ``reference`` is, for messages; anything but ``"torch"`` is also recorded as the
        result's ``reference``.

    Returns
    -------
    dict
        As :func:`check_parity`, plus ``"reference"`` when it is not ``"torch"``.

    Raises
    ------
    ParityError
        If any score differs by more than ``tolerance`` (or is not finite).
    """
    users, items = random_pairs(n_users, n_items, n_pairs, seed)
    expected = np.asarray(reference(users, items))
    session = cpu_session(onnx_path)
    by_batch = {}
    largest = max(batch_sizes)
    for batch in sorted(batch_sizes):
        n = users.size if batch == largest else min(users.size, SMALL_BATCH_PAIRS)
        got = run_pairs(session, users[:n], items[:n], batch)
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
    if reference_name != "torch":
        result["reference"] = reference_name
    if not result["passed"]:
        worst_batch = max(by_batch, key=by_batch.get)
        raise ParityError(
            f"parity check failed: max |onnx - {reference_name}| = {max_diff:.3g} at batch size "
            f"{worst_batch} exceeds tolerance {tolerance:g}; no bundle was written"
        )
    return result


RAW_TOLERANCE = 1e-6


def unknown_ids(classes: np.ndarray, kind: str, n: int) -> np.ndarray:
    """``n`` ids that are not among ``classes`` (below, between and above them for integers)."""
    known = set(classes.tolist())
    out: list = []
    if kind == "int64":
        lo, hi = int(np.min(classes)), int(np.max(classes))
        gaps = np.setdiff1d(np.arange(lo, hi + 1), classes)[:n].tolist() if hi - lo < 1 << 20 else []
        outside = [c for j in range(1, n + 1) for c in (hi + j, lo - j) if -(2**63) <= c < 2**63]
        for c in [*gaps[: n // 2], *outside]:  # between the ids and beyond both ends
            if c not in known and c not in out:
                out.append(c)
        return np.asarray(out[:n], dtype=np.int64)
    k = 0
    while len(out) < n:
        for candidate in (f"unknown-{k}", "", f"{classes[0]}~{k}" if len(classes) else f"u{k}"):
            if candidate not in known and candidate not in out and len(out) < n:
                out.append(candidate)
        k += 1
    return np.asarray(out, dtype=object)


def _run_raw(session, user_ids, item_ids, batch: int) -> tuple[np.ndarray, np.ndarray]:
    scores, known = [], []
    for start in range(0, user_ids.size, batch):
        feed = {USER_ID: user_ids[start : start + batch], ITEM_ID: item_ids[start : start + batch]}
        s, k = session.run([SCORE, KNOWN], feed)
        scores.append(s)
        known.append(k)
    return np.concatenate(scores), np.concatenate(known)


def check_raw_id_parity(
    model_path: str | os.PathLike,
    raw_path: str | os.PathLike,
    user_classes: np.ndarray,
    item_classes: np.ndarray,
    fallback_score: float,
    *,
    user_kind: str,
    item_kind: str,
    n_pairs: int = N_PAIRS,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    tolerance: float = RAW_TOLERANCE,
    seed: int = 0,
    prior_rows: tuple[int, int] | None = None,
) -> dict:
    """The raw-id graph against ``model.onnx``: same scores on known pairs, fallback on unknown ones.

    Random known pairs (as in :func:`check_parity`) are mapped to their raw ids and mixed with
    pairs whose user, item or both are unknown (about one in eight rows, shuffled in). At each batch
    size the raw-id graph must return ``known`` exactly, ``fallback_score`` (as float32) where a
    side is unknown, and on known rows the scores ``model.onnx`` gives for the same indices in the
    same batches (the unknown rows' slots scored at index 0, as the raw-id graph does inside)
    within ``tolerance``. With ``prior_rows``, a pair with one unknown side must score what
    ``model.onnx`` gives with that side's prior row, and only pairs with both unknown the fallback.

    Returns
    -------
    dict
        ``{"passed", "max_abs_diff", "tolerance", "n_pairs", "n_unknown", "batch_sizes",
        "max_abs_diff_by_batch", "provider", "seed"}`` (the manifest's ``parity.raw_ids``).

    Raises
    ------
    ParityError
        A wrong ``known`` flag, a wrong fallback or a known score off by more than ``tolerance``.
    """
    user_classes, item_classes = np.asarray(user_classes), np.asarray(item_classes)
    users, items = random_pairs(len(user_classes), len(item_classes), n_pairs, seed)
    rng = np.random.default_rng(seed + 1)
    n_unknown = max(3, n_pairs // 8)
    bad_users = unknown_ids(user_classes, user_kind, 4)
    bad_items = unknown_ids(item_classes, item_kind, 4)
    which = np.arange(n_unknown) % 3  # 0: user unknown, 1: item unknown, 2: both
    extra_u = rng.integers(0, len(user_classes), n_unknown)
    extra_i = rng.integers(0, len(item_classes), n_unknown)
    user_ids = np.concatenate([user_classes[users], user_classes[extra_u]]).astype(user_classes.dtype)
    item_ids = np.concatenate([item_classes[items], item_classes[extra_i]]).astype(item_classes.dtype)
    user_known = np.ones(user_ids.size, dtype=bool)
    item_known = np.ones(user_ids.size, dtype=bool)
    pick = rng.integers(0, 4, n_unknown)
    for k in range(n_unknown):
        row = n_pairs + k
        if which[k] in (0, 2):
            user_ids[row] = bad_users[pick[k]]
            user_known[row] = False
        if which[k] in (1, 2):
            item_ids[row] = bad_items[pick[k]]
            item_known[row] = False
    order = rng.permutation(user_ids.size)
    order = np.concatenate([order[order < 2], order[order >= 2]])  # keep the corners first
    user_ids, item_ids = user_ids[order], item_ids[order]
    user_known, item_known = user_known[order], item_known[order]
    known = user_known & item_known
    if prior_rows is None:
        scored, from_user, from_item = known, known, known
        default_u = default_i = 0
    else:
        scored, from_user, from_item = user_known | item_known, user_known, item_known
        default_u, default_i = prior_rows
    safe_u = np.where(from_user, np.concatenate([users, extra_u])[order], default_u).astype(np.int64)
    safe_i = np.where(from_item, np.concatenate([items, extra_i])[order], default_i).astype(np.int64)
    fallback = np.float32(fallback_score)

    model_session, raw_session = cpu_session(model_path), cpu_session(raw_path)
    by_batch, problems = {}, []
    largest = max(batch_sizes)
    for batch in sorted(batch_sizes):
        n = user_ids.size if batch == largest else min(user_ids.size, SMALL_BATCH_PAIRS)
        got, got_known = _run_raw(raw_session, user_ids[:n], item_ids[:n], batch)
        inner = run_pairs(model_session, safe_u[:n], safe_i[:n], batch)
        if got.dtype != np.float32 or got.shape != (n,) or got_known.dtype != bool or got_known.shape != (n,):
            raise ParityError(
                f"raw-id parity check failed: graph returned {got.dtype} {got.shape} / {got_known.dtype} "
                f"{got_known.shape}, expected float32 ({n},) / bool ({n},); no bundle was written"
            )
        if not np.array_equal(got_known, known[:n]):
            wrong = int(np.sum(got_known != known[:n]))
            problems.append(f"'known' wrong for {wrong} rows at batch size {batch}")
        wrong_fallback = ~scored[:n] & (got != fallback)
        if wrong_fallback.any():
            problems.append(f"{int(wrong_fallback.sum())} unknown pairs not scored {float(fallback):g}")
        k = scored[:n]
        diff = np.abs(got[k].astype(np.float64) - inner[k].astype(np.float64))
        worst = float(np.max(diff)) if diff.size else 0.0
        if not np.all(np.isfinite(got)):
            worst = float("inf")
        by_batch[str(batch)] = worst
    max_diff = max(by_batch.values())
    if max_diff > tolerance:
        problems.append(f"max |model_ids.onnx - model.onnx| = {max_diff:.3g} exceeds tolerance {tolerance:g}")
    if problems:
        raise ParityError(f"raw-id parity check failed: {problems[0]}; no bundle was written")
    return {
        "passed": True,
        "max_abs_diff": max_diff,
        "tolerance": tolerance,
        "n_pairs": int(n_pairs),
        "n_unknown": int(n_unknown),
        "batch_sizes": [int(b) for b in sorted(batch_sizes)],
        "max_abs_diff_by_batch": by_batch,
        "provider": "CPUExecutionProvider",
        "seed": seed,
    }
