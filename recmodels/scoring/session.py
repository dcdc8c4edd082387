"""A bundle's graph, ready to score index pairs (torch-free)."""

from __future__ import annotations

import os

import numpy as np

from ..bundle import Bundle
from ..errors import BundleError
from .providers import DeviceRequest, create_session

USER_INPUT = "user_index"
ITEM_INPUT = "item_index"
SCORE_OUTPUT = "score"


def load_bundle(bundle: Bundle | str | os.PathLike, *, verify_checksums: bool = True) -> Bundle:
    """Return ``bundle`` as a verified :class:`Bundle` (loading it when given a path)."""
    if isinstance(bundle, Bundle):
        return bundle
    return Bundle.load(bundle, verify_checksums=verify_checksums)


class ScoringSession:
    """An onnxruntime session over a bundle's graph.

    Parameters
    ----------
    bundle : Bundle or path-like
    device : {"auto", "cpu", "cuda", "cuda:N"}
    intra_op_threads : int, optional

    Attributes
    ----------
    bundle : Bundle
    provider : str
        The provider that actually runs the graph: ``"cpu"`` or ``"cuda:N"``.
    """

    def __init__(self, bundle, device: str | DeviceRequest = "auto", *, intra_op_threads=None):
        self.bundle = load_bundle(bundle)
        try:
            self.session, self.provider = create_session(
                self.bundle.model_path, device, intra_op_threads=intra_op_threads
            )
        except Exception as exc:
            if type(exc).__module__.startswith("onnxruntime") or "ONNXRuntimeError" in str(exc):
                raise BundleError(
                    f"{self.bundle.model_path}: onnxruntime cannot load the graph "
                    f"({str(exc).strip().splitlines()[0][:200]}); re-export the bundle"
                ) from None
            raise
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

    def run(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        """Scores (float32) for index pairs, which must all be valid (0 <= index < count).

        The caller guarantees validity: the CUDA provider does not range-check ``Gather``.
        """
        user_index = np.ascontiguousarray(user_index, dtype=np.int64)
        item_index = np.ascontiguousarray(item_index, dtype=np.int64)
        if user_index.size == 0:
            return np.empty(0, dtype=np.float32)
        (scores,) = self.session.run(
            self._outputs, {USER_INPUT: user_index, ITEM_INPUT: item_index}
        )
        return np.asarray(scores, dtype=np.float32).reshape(-1)
