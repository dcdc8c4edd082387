"""torch -> ONNX: fold, build the graph, check parity, write a verified bundle.

:func:`export_onnx` turns a finished run directory into a scoring bundle
(``docs/bundle-format.md``); :func:`export_model` does the same from a model and its encoders
in memory. The modules: :mod:`.spec` (network -> arrays), :mod:`.folding`, :mod:`.graph`,
:mod:`.parity`, :mod:`.recommend_graph` (the top-k graphs of ``recmodels recommend``),
:mod:`.manifest` (the bundle's ``Manifest``), :mod:`.writer` (graph -> bundle
directory), :mod:`.api` (the two entry points) and :mod:`.formats` (what ``--format`` takes).
The names below are imported on first use, so importing this package imports neither torch,
onnx nor pandas.
"""

from .. import _lazy

# name -> the module that defines it, imported on first use (PEP 562)
_EXPORTS = {
    **dict.fromkeys(["build_graph", "build_recommend_graphs", "export_model", "export_onnx"], ".api"),
    "FORMATS": ".formats",
    **dict.fromkeys(["FoldedSpec", "ScoreSpec", "fold"], ".folding"),
    **dict.fromkeys(["DEFAULT_OPSET", "EXTERNAL_DATA_THRESHOLD"], ".graph"),
    **dict.fromkeys(["check_parity", "check_raw_id_parity"], ".parity"),
    **dict.fromkeys(["RecommendGraphs", "recommend_graphs"], ".recommend_graph"),
    "check_recommend_parity": ".recommend_parity",
}

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

__getattr__, __dir__ = _lazy.lazy_exports(globals(), _EXPORTS)
