"""``recmodels.dask``: the documented import path of the Dask engine (docs/distributed.md).

The engine lives in :mod:`recmodels.engines.dask`; this module *is* that module (the same object in
``sys.modules``), so ``import recmodels.dask`` and ``recmodels.engines.dask`` never disagree.
"""

import sys

from .engines import dask as _engine

sys.modules[__name__] = _engine
