"""A bundle's graph, ready to score index pairs (torch-free).

On CPU the graph is bound by random reads of the embedding tables (NeuMF at the notebook's sizes
carries ~100 MB of tables, more than the L3 cache), not by arithmetic. :meth:`ScoringSession.run`
therefore, for a batch larger than one sub-batch:

1. orders the pairs by the larger table's index (a radix sort on a 16-bit key, ~10-15 ns a row),
   so that Gathers sweep that table in address order and rows shared by neighbouring pairs are
   read once from memory;
2. runs the ordered pairs in sub-batches of :data:`SUB_BATCH_ROWS` rows, whose intermediates stay
   in the core's L2 cache, on ``threads`` threads that call one session concurrently (each call
   runs on its calling thread: intra-op threads 1; onnxruntime releases the GIL);
3. scatters the scores back into input order.

See docs/benchmarks.md for what each step buys. On CUDA the batch goes to the graph as it is.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ...bundle import Bundle
from ...bundle.graph_contract import ITEM_INDEX as ITEM_INPUT
from ...bundle.graph_contract import SCORE as SCORE_OUTPUT
from ...bundle.graph_contract import USER_INDEX as USER_INPUT
from ...errors import BundleError, first_line
from ..checks import positive_int
from .providers import DeviceRequest, available_cpus, create_session

SUB_BATCH_ROWS = 2048
"""Rows per onnxruntime call on CPU: measured best of 1k-16k on a 2-core Zen4 (docs/benchmarks.md)."""
_KEY_BITS = 16  # numpy's stable argsort is a radix sort for 16-bit keys


def load_bundle(bundle: Bundle | str | os.PathLike, *, verify_checksums: bool = True) -> Bundle:
    """Return ``bundle`` as a verified :class:`Bundle` (loading it when given a path)."""
    if isinstance(bundle, Bundle):
        return bundle
    return Bundle.load(bundle, verify_checksums=verify_checksums)


def load_graph(path, device: str | DeviceRequest = "auto", *, notes: list | None = None):
    """An onnxruntime session for one of a bundle's graphs, with one intra-op thread (each
    concurrent ``run`` executes on its calling thread).

    Returns
    -------
    (onnxruntime.InferenceSession, str)
        As :func:`~recmodels.scoring.runtime.providers.create_session`.

    Raises
    ------
    BundleError
        onnxruntime cannot load the graph (one line: re-export the bundle).
    """
    try:
        return create_session(path, device, intra_op_threads=1, notes=notes)
    except Exception as exc:
        if type(exc).__module__.startswith("onnxruntime") or "ONNXRuntimeError" in str(exc):
            raise BundleError(
                f"{path}: onnxruntime cannot load the graph ({first_line(exc, 200)}); re-export the bundle"
            ) from None
        raise


class ScoringSession:
    """An onnxruntime session over a bundle's graph.

    Parameters
    ----------
    bundle : Bundle or path-like
    device : {"auto", "cpu", "cuda", "cuda:N"}
    threads : int, optional
        CPU: threads that run sub-batches concurrently on the one session (default: the CPUs
        this process may use). Ignored on CUDA.
    sub_batch : int, optional
        CPU: rows per onnxruntime call (default :data:`SUB_BATCH_ROWS`).

    Attributes
    ----------
    bundle : Bundle
    provider : str
        The provider that actually runs the graph: ``"cpu"`` or ``"cuda:N"``.
    notes : list of str
        Why the requested provider was not used (``auto`` without CUDA), for reports.
    """

    def __init__(
        self,
        bundle,
        device: str | DeviceRequest = "auto",
        *,
        threads: int | None = None,
        sub_batch: int | None = None,
    ):
        self.bundle = load_bundle(bundle)
        positive_int("--threads", threads)
        positive_int("sub_batch", sub_batch)
        self.notes: list[str] = []
        self.session, self.provider = load_graph(self.bundle.model_path, device, notes=self.notes)
        inputs = {i.name for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != {USER_INPUT, ITEM_INPUT} or SCORE_OUTPUT not in outputs:
            raise BundleError(
                f"{self.bundle.model_path}: graph has inputs {sorted(inputs)} and outputs "
                f"{outputs}; "
                f"expected inputs {USER_INPUT}, {ITEM_INPUT} and output {SCORE_OUTPUT}"
            )
        self._outputs = [SCORE_OUTPUT]
        self.n_users = len(self.bundle.user_encoder)
        self.n_items = len(self.bundle.item_encoder)
        self.on_cpu = self.provider == "cpu"
        self.threads = int(threads or available_cpus()) if self.on_cpu else 1
        self.sub_batch = int(sub_batch or SUB_BATCH_ROWS)
        # order by the side with more rows: its table is the larger one (same width both sides)
        self._order_by_user = self.n_users >= self.n_items
        n = max(self.n_users, self.n_items)
        self._key_shift = max(0, (n - 1).bit_length() - _KEY_BITS)
        self._pool = ThreadPoolExecutor(self.threads - 1, "recmodels-infer") if self.threads > 1 else None

    def order(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray | None:
        """The permutation that :meth:`run` applies before scoring, or None when it does not
        reorder (CUDA, or a batch of at most one sub-batch). Computing it ahead (in another
        thread) and passing it to :meth:`run` spreads the work."""
        if not self.on_cpu or user_index.size <= self.sub_batch:
            return None
        index = user_index if self._order_by_user else item_index
        key = (index >> self._key_shift).astype(np.uint16)
        return np.argsort(key, kind="stable")

    def run(
        self, user_index: np.ndarray, item_index: np.ndarray, order: np.ndarray | None = None
    ) -> np.ndarray:
        """Scores (float32) for index pairs, which must all be valid (0 <= index < count).

        The caller guarantees validity: the CUDA provider does not range-check ``Gather``.
        ``order``: :meth:`order` of the same arrays, when already computed.
        """
        user_index = np.ascontiguousarray(user_index, dtype=np.int64)
        item_index = np.ascontiguousarray(item_index, dtype=np.int64)
        n = user_index.size
        if n == 0:
            return np.empty(0, dtype=np.float32)
        if not self.on_cpu or n <= self.sub_batch:
            return self._run(user_index, item_index)
        if order is None:
            order = self.order(user_index, item_index)
        users, items = user_index[order], item_index[order]
        scores = np.empty(n, dtype=np.float32)
        step = self.sub_batch
        n_chunks = -(-n // step)
        taken = [0]
        lock = threading.Lock()

        def work():  # threads take the next chunk when free: a descheduled thread delays nothing
            while True:
                with lock:
                    k = taken[0]
                    taken[0] += 1
                if k >= n_chunks:
                    return
                lo = k * step
                hi = min(lo + step, n)
                scores[lo:hi] = self._run(users[lo:hi], items[lo:hi])

        if self._pool is None or n_chunks == 1:
            work()
        else:
            helpers = [self._pool.submit(work) for _ in range(min(self.threads - 1, n_chunks - 1))]
            try:
                work()
            except BaseException:
                with lock:
                    taken[0] = n_chunks  # the helpers stop at their next chunk
                raise
            finally:
                for f in helpers:
                    f.result()
        out = np.empty(n, dtype=np.float32)
        out[order] = scores
        return out

    def _run(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        (scores,) = self.session.run(
            self._outputs, {USER_INPUT: user_index, ITEM_INPUT: item_index}
        )
        return np.asarray(scores, dtype=np.float32).reshape(-1)

    def close(self) -> None:
        """Stop the sub-batch threads (they also end with the process)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
