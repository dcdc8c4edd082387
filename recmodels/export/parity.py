"""Parity check: onnxruntime (CPU) must reproduce the torch model within tolerance."""

from __future__ import annotations

import os
from collections.abc import Callable

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
        feed = {"user_id": user_ids[start : start + batch], "item_id": item_ids[start : start + batch]}
        s, k = session.run(["score", "known"], feed)
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
) -> dict:
    """The raw-id graph against ``model.onnx``: same scores on known pairs, fallback on unknown ones.

    Random known pairs (as in :func:`check_parity`) are mapped to their raw ids and mixed with
    pairs whose user, item or both are unknown (about one in eight rows, shuffled in). At each batch
    size the raw-id graph must return ``known`` exactly, ``fallback_score`` (as float32) where a
    side is unknown, and on known rows the scores ``model.onnx`` gives for the same indices in the
    same batches (the unknown rows' slots scored at index 0, as the raw-id graph does inside)
    within ``tolerance``.

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
    known = np.ones(user_ids.size, dtype=bool)
    pick = rng.integers(0, 4, n_unknown)
    for k in range(n_unknown):
        row = n_pairs + k
        if which[k] in (0, 2):
            user_ids[row] = bad_users[pick[k]]
        if which[k] in (1, 2):
            item_ids[row] = bad_items[pick[k]]
        known[row] = False
    order = rng.permutation(user_ids.size)
    order = np.concatenate([order[order < 2], order[order >= 2]])  # keep the corners first
    user_ids, item_ids, known = user_ids[order], item_ids[order], known[order]
    safe_u = np.where(known, np.concatenate([users, extra_u])[order], 0).astype(np.int64)
    safe_i = np.where(known, np.concatenate([items, extra_i])[order], 0).astype(np.int64)
    fallback = np.float32(fallback_score)

    model_session, raw_session = cpu_session(model_path), cpu_session(raw_path)
    by_batch, problems = {}, []
    largest = max(batch_sizes)
    for batch in sorted(batch_sizes):
        n = user_ids.size if batch == largest else min(user_ids.size, SMALL_BATCH_PAIRS)
        got, got_known = _run_raw(raw_session, user_ids[:n], item_ids[:n], batch)
        inner = _run(model_session, safe_u[:n], safe_i[:n], batch)
        if got.dtype != np.float32 or got.shape != (n,) or got_known.dtype != bool or got_known.shape != (n,):
            raise ParityError(
                f"raw-id parity check failed: graph returned {got.dtype} {got.shape} / {got_known.dtype} "
                f"{got_known.shape}, expected float32 ({n},) / bool ({n},); no bundle was written"
            )
        if not np.array_equal(got_known, known[:n]):
            wrong = int(np.sum(got_known != known[:n]))
            problems.append(f"'known' wrong for {wrong} rows at batch size {batch}")
        wrong_fallback = ~known[:n] & (got != fallback)
        if wrong_fallback.any():
            problems.append(f"{int(wrong_fallback.sum())} unknown pairs not scored {float(fallback):g}")
        k = known[:n]
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


RECOMMEND_USERS = 48
RECOMMEND_ITEMS = 448
"""At most this many users x items in the recommend graph's parity block."""


def _recommend_block(n_users: int, n_items: int, multiple: int, seed: int):
    """Users and ascending items (corners included), padded to ``multiple``, and the exclusions."""
    rng = np.random.default_rng(seed + 2)
    users = np.unique(np.concatenate([[0, n_users - 1],
                                      rng.integers(0, n_users, max(0, min(n_users, RECOMMEND_USERS) - 2))]))
    items = np.unique(np.concatenate([[0, n_items - 1],
                                      rng.integers(0, n_items, max(0, min(n_items, RECOMMEND_ITEMS) - 2))]))
    real = items.size
    padded = -(-real // multiple) * multiple
    items = np.concatenate([items, np.full(padded - real, items[-1])])
    rows, cols = np.nonzero(rng.random((users.size, real)) < 0.05)  # some pairs excluded...
    pad_rows, pad_cols = np.divmod(np.arange(users.size * (padded - real)), padded - real or 1)
    exclude = np.stack([np.concatenate([rows, pad_rows]),  # ... and every padding column
                        np.concatenate([cols, real + pad_cols])], axis=1).astype(np.int64)
    return users.astype(np.int64), items.astype(np.int64), real, exclude


def _top_block(session, users, items, exclude, k: int):
    feed = {"user_index": users, "item_index": items, "exclude": exclude, "k": np.array([k], dtype=np.int64)}
    score, position = session.run(["top_score", "top_position"], feed)
    if score.dtype != np.float32 or position.dtype != np.int64 or score.shape != (users.size, k):
        raise ParityError(
            f"recommend parity check failed: graph returned {score.dtype} {score.shape} / {position.dtype}, "
            f"expected float32 / int64 ({users.size}, {k}); no bundle was written"
        )
    return score, position


def _check_ranking(session, users, items, real, exclude, expected, what: str) -> float:
    """Full ranking (k = all columns) and top-10 of one block against dense ``expected`` scores."""
    n_cols = items.size
    score, position = _top_block(session, users, items, exclude, n_cols)
    allowed = np.ones((users.size, n_cols), dtype=bool)
    allowed[exclude[:, 0], exclude[:, 1]] = False
    finite = np.isfinite(score)
    problems = []
    if not np.array_equal(finite.sum(axis=1), allowed.sum(axis=1)):
        problems.append("excluded pairs were not scored -inf (or allowed ones were)")
    else:
        rows = np.nonzero(finite)[0]
        cols = position[finite]
        if not allowed[rows, cols].all() or np.unique(rows * n_cols + cols).size != rows.size:
            problems.append("positions of the ranked items are wrong")
        with np.errstate(invalid="ignore"):  # -inf - -inf in the excluded tail
            rising = np.diff(score, axis=1)[np.isfinite(score[:, 1:])] > 0
        if np.any(rising):
            problems.append("scores are not in descending order")
    worst = 0.0
    if not problems:
        got = score[finite].astype(np.float64)
        worst = float(np.max(np.abs(got - expected[rows, cols]))) if got.size else 0.0
        k = min(10, n_cols)
        top_score, top_position = _top_block(session, users, items, exclude, k)
        same = np.array_equal(top_position[finite[:, :k]], position[:, :k][finite[:, :k]])
        if not same or not np.array_equal(top_score, score[:, :k]):
            problems.append(f"top-{k} differs from the full ranking (ties must go to the lower position)")
    if problems:
        raise ParityError(f"{what} parity check failed: {problems[0]}; no bundle was written")
    return worst


def check_recommend_parity(
    model_path: str | os.PathLike,
    recommend_path: str | os.PathLike,
    n_users: int,
    n_items: int,
    *,
    item_multiple: int,
    retrieve_path: str | os.PathLike | None = None,
    retrieve_reference: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    tolerance: float = TOLERANCE,
    seed: int = 0,
) -> dict:
    """``recommend.onnx`` against ``model.onnx`` (and ``retrieve.onnx`` against its reference).

    One block of up to 48 users x 448 items (corners included, items ascending, padded to
    ``item_multiple`` with excluded columns, ~5% of the pairs excluded) is ranked completely
    (``k`` = every column): each allowed pair must come back exactly once, in descending order,
    with the score ``model.onnx`` gives it within ``tolerance``, and every excluded pair as
    ``-inf``; the top-10 of the same block must be the full ranking's first ten (ties to the
    lower position).

    Returns
    -------
    dict
        ``{"passed", "max_abs_diff", "tolerance", "n_users", "n_items", "n_excluded", "provider",
        "seed", "retrieve_max_abs_diff"}`` (the manifest's ``parity.recommend``).

    Raises
    ------
    ParityError
    """
    users, items, real, exclude = _recommend_block(n_users, n_items, item_multiple, seed)
    pair_users, pair_items = np.repeat(users, items.size), np.tile(items, users.size)
    expected = _run(cpu_session(model_path), pair_users, pair_items, 4096).reshape(users.size, items.size)
    worst = _check_ranking(cpu_session(recommend_path), users, items, real, exclude,
                           expected.astype(np.float64), "recommend")
    retrieve_worst = None
    if retrieve_path is not None:
        dot = np.asarray(retrieve_reference(pair_users, pair_items), dtype=np.float64)
        retrieve_worst = _check_ranking(cpu_session(retrieve_path), users, items, real, exclude,
                                        dot.reshape(users.size, items.size), "retrieve")
    worst_of_both = max(worst, retrieve_worst or 0.0)
    if not worst_of_both <= tolerance:
        which = "recommend" if worst >= (retrieve_worst or 0.0) else "retrieve"
        raise ParityError(
            f"{which} parity check failed: max |{which}.onnx - "
            f"{'model.onnx' if which == 'recommend' else 'dot-product reference'}| = {worst_of_both:.3g} "
            f"exceeds tolerance {tolerance:g}; no bundle was written"
        )
    return {
        "passed": True,
        "max_abs_diff": worst,
        "tolerance": tolerance,
        "n_users": int(users.size),
        "n_items": int(real),
        "n_excluded": int(exclude.shape[0]),
        "provider": "CPUExecutionProvider",
        "seed": seed,
        "retrieve_max_abs_diff": retrieve_worst,
    }


RANK_ALL_PAIRS = 1 << 21
"""At most about this many (user, item) pairs in the whole-catalogue parity block."""


def check_rank_all_parity(
    rank_all_path: str | os.PathLike,
    reference: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n_users: int,
    n_items: int,
    *,
    tolerance: float = TOLERANCE,
    seed: int = 0,
) -> float:
    """``rank_all.onnx`` against the float64 dot-product part, over the whole catalogue.

    Up to 48 users (fewer for a huge catalogue), ~5% of their pairs excluded: each user's
    top-``k`` (``k`` up to 64) must be allowed, distinct, real items (never padding), in
    descending order, with scores within ``tolerance`` of ``reference``; no allowed item left
    out may beat the ``k``-th by more than ``tolerance``; ties go to the lower item index.

    Returns
    -------
    float
        The largest score difference (the manifest's ``parity.rank_all_max_abs_diff``).

    Raises
    ------
    ParityError
    """
    rng = np.random.default_rng(seed + 3)
    n_block = max(1, min(RECOMMEND_USERS, n_users, RANK_ALL_PAIRS // n_items))
    users = np.unique(np.concatenate([[0, n_users - 1], rng.integers(0, n_users, n_block)]))[:n_block]
    users = users.astype(np.int64)
    expected = np.asarray(
        reference(np.repeat(users, n_items), np.tile(np.arange(n_items), users.size)), dtype=np.float64
    ).reshape(users.size, n_items)
    rows, cols = np.nonzero(rng.random((users.size, n_items)) < 0.05)
    exclude = np.stack([rows, cols], axis=1).astype(np.int64)
    allowed = np.ones(expected.shape, dtype=bool)
    allowed[rows, cols] = False
    k = min(64, n_items)
    score, position = cpu_session(rank_all_path).run(
        ["top_score", "top_position"],
        {"user_index": users, "exclude": exclude, "k": np.array([k], dtype=np.int64)},
    )
    problems, worst = [], 0.0
    n_allowed = np.minimum(allowed.sum(axis=1), k)
    finite = np.isfinite(score)
    if score.shape != (users.size, k) or not np.array_equal(finite.sum(axis=1), n_allowed):
        problems.append("it returned the wrong number of items (or scored padding / excluded pairs)")
    else:
        r = np.nonzero(finite)[0]
        c = position[finite]
        if np.any(c < 0) or np.any(c >= n_items) or not allowed[r, c].all():
            problems.append("it returned padding or excluded items")
        elif np.unique(r * n_items + c).size != r.size:
            problems.append("it returned an item twice")
        else:
            worst = float(np.max(np.abs(score[finite] - expected[r, c])))
            left = np.where(allowed, expected, -np.inf)
            left[r, c] = -np.inf
            kth = np.where(finite, score, np.inf).min(axis=1)
            if np.any(left.max(axis=1) > kth + tolerance):
                problems.append("a better item was left out")
            with np.errstate(invalid="ignore"):
                if np.any(np.diff(score, axis=1)[finite[:, 1:]] > 0):
                    problems.append("scores are not in descending order")
    if problems or not worst <= tolerance:
        what = problems[0] if problems else f"max |rank_all.onnx - dot-product reference| = {worst:.3g}"
        raise ParityError(f"rank_all parity check failed: {what}; no bundle was written")
    return worst
