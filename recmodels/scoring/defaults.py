"""The defaults and choices of the scoring options, in one light module (no numpy, pandas, pyarrow).

The library (:class:`~recmodels.scoring.Scorer`, :func:`~recmodels.scoring.recommend`,
:func:`~recmodels.scoring.evaluate`) and the CLI's options both read them here, so
``recmodels <command> --help`` shows the library's defaults without importing the library.
"""

DEFAULT_BATCH_SIZE = 1 << 18
"""Rows per pipeline batch on CPU (262,144). On CPU each batch is ordered by table index and scored
in sub-batches (see :mod:`recmodels.scoring.runtime.session`); larger batches order more pairs
together but gained little past 256k rows (docs/benchmarks.md), while the memory in flight grows
with batch size x queue depth."""
DEFAULT_CUDA_BATCH_SIZE = 1 << 20
"""Rows per batch on CUDA (1,048,576): one graph call per batch, so larger amortizes the launch
and transfer overheads."""
DEFAULT_PART_ROWS = 1 << 20
"""Directory output of ``recmodels score``: input rows per part file."""
POLICIES = ("fallback", "skip", "error")
"""What scoring does with a pair whose user or item id is unknown (``--unknown``)."""
DEFAULT_MAX_UNKNOWN_SHARE = 0.5
"""Above this share of rows with unknown ids, file scoring stops (``--max-unknown-share``)."""

DEFAULT_MIN_RATINGS = 1
"""New users (items) with fewer history ratings keep the prior-aware fallback (``--history-min-ratings``;
at k = 1 the fold-in already beat the fallback, docs/benchmarks.md "Cold start")."""

DEFAULT_TOP_K = 10
"""Items per user of ``recmodels recommend`` (``--top-k``)."""
DEFAULT_PART_USERS = 1 << 14
"""Directory output of ``recmodels recommend``: users per part file."""

DEFAULT_K = 10
"""HR@K / NDCG@K cut-off of ``recmodels evaluate``."""
DEFAULT_NEGATIVES = 99
"""Sampled items ranked with each held-out item (the NCF protocol)."""
DEFAULT_BUCKETS = (5, 50)
"""Activity buckets by the user's training ratings: cold below 5, heavy from 50, medium between."""

ENGINES = ("local", "dask", "spark")
"""Where ``--engine`` runs a command: this process, or Dask / Spark (:mod:`recmodels.engines`)."""
