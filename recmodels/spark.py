"""``recmodels.spark``: the documented import path of the Spark engine (docs/distributed.md).

The engine lives in :mod:`recmodels.engines.spark`; this module *is* that module (the same object in
``sys.modules``), so ``import recmodels.spark`` and ``recmodels.engines.spark`` never disagree.
"""

import sys

from .engines import spark as _engine

sys.modules[__name__] = _engine
