"""torch -> ONNX: fold, build the graph, check parity, write a verified bundle.

:func:`export_onnx` turns a finished run directory into a scoring bundle
(``docs/bundle-format.md``); :func:`export_model` does the same from a model and its encoders
in memory. The modules: :mod:`.spec` (network -> arrays), :mod:`.folding`, :mod:`.graph`,
:mod:`.parity`, :mod:`.recommend_graph` (the top-k graphs of ``recmodels recommend``),
:mod:`.manifest` (the bundle's ``Manifest``), :mod:`.writer` (graph -> bundle
directory) and :mod:`.api` (the two entry points). Importing this package imports neither torch
nor onnx.
"""

from .api import FORMATS, build_graph, build_recommend_graphs, export_model, export_onnx
from .folding import FoldedSpec, ScoreSpec, fold
from .graph import DEFAULT_OPSET, EXTERNAL_DATA_THRESHOLD
from .parity import check_parity, check_raw_id_parity
from .recommend_graph import RecommendGraphs, recommend_graphs
from .recommend_parity import check_recommend_parity

__all__ = [
    "DEFAULT_OPSET",
    "EXTERNAL_DATA_THRESHOLD",
    "FORMATS",
    "FoldedSpec",
    "RecommendGraphs",
    "ScoreSpec",
    "build_graph",
    "build_recommend_graphs",
    "check_parity",
    "check_raw_id_parity",
    "check_recommend_parity",
    "export_model",
    "export_onnx",
    "fold",
    "recommend_graphs",
]
