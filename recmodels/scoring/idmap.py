"""Id -> index mapping for the scorer's hot path (torch-free).

:class:`IdEncoder.transform <recmodels.encoders.IdEncoder.transform>` accepts anything (numpy,
pandas, Arrow, floats, nulls) and handles ids outside its lookup table with boolean masks, which
made the id mapping the second-largest cost after the graph. :class:`IndexMap` adds a branch-free
path for the common case, an int64 Arrow column without nulls: one subtraction, one clamp to a
sentinel slot, one table lookup. Everything else goes to the encoder, so both give the same
indices (``-1`` for unknown ids).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..encoders import UNKNOWN, IdEncoder

_MAX_SPAN = 1 << 25  # 256 MB of int64 at most; sparser id ranges use the encoder


class IndexMap:
    """Maps one id column to indices with a dense lookup table when the ids allow it.

    Parameters
    ----------
    encoder : IdEncoder
        A fitted encoder; its ``classes_`` define the indices.
    """

    def __init__(self, encoder: IdEncoder):
        self.encoder = encoder
        self._lut = None
        if encoder.kind_ != "int64" or len(encoder) == 0:
            return
        classes = np.asarray(encoder.classes_, dtype=np.int64)
        lo, hi = int(classes[0]), int(classes[-1])
        span = hi - lo + 1
        if span > _MAX_SPAN or span > 64 * classes.size + (1 << 16):
            return
        lut = np.full(span + 1, UNKNOWN, dtype=np.int64)  # slot `span`: every id outside
        lut[classes - lo] = np.arange(classes.size, dtype=np.int64)
        self._lut, self._lo, self._span = lut, np.int64(lo), np.uint64(span)

    def transform(self, column) -> np.ndarray:
        """Indices (int64) of ``column``'s ids; ``-1`` for unknown or null ids."""
        if (
            self._lut is not None
            and isinstance(column, pa.Array)
            and column.type == pa.int64()
            and column.null_count == 0
        ):
            # ids outside [lo, lo + span) wrap to >= span as unsigned (int64 differences wrap
            # modulo 2**64 and stay >= span, since lo + span - 1 <= int64 max) and are clamped
            # to the sentinel slot.
            shifted = (column.to_numpy() - self._lo).view(np.uint64)
            np.minimum(shifted, self._span, out=shifted)
            return self._lut[shifted]
        return self.encoder.transform(column)
