"""Streaming batch scoring with onnxruntime (torch- and scikit-learn-free).

>>> from recmodels.scoring import Scorer, score                       # doctest: +SKIP
>>> score("bundles/neumf", "pairs.parquet", "scores.parquet")         # doctest: +SKIP
>>> Scorer("bundles/neumf", device="cpu").score_frame(df)             # doctest: +SKIP

See ``docs/scoring.md``.
"""

from ..bundle import Bundle
from .providers import DeviceRequest, available_providers, create_session, cuda_compiled
from .report import DEFAULT_MAX_UNKNOWN_SHARE, ScoreReport
from .scorer import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CUDA_BATCH_SIZE,
    DEFAULT_PART_ROWS,
    POLICIES,
    Scorer,
    score,
    score_frame,
)
from .session import ScoringSession, load_bundle

__all__ = [
    "Bundle",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CUDA_BATCH_SIZE",
    "DEFAULT_MAX_UNKNOWN_SHARE",
    "DEFAULT_PART_ROWS",
    "DeviceRequest",
    "POLICIES",
    "ScoreReport",
    "Scorer",
    "ScoringSession",
    "available_providers",
    "create_session",
    "cuda_compiled",
    "load_bundle",
    "score",
    "score_frame",
]
