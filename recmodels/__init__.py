"""recmodels: rating-prediction recommenders trained in PyTorch, exported to ONNX,
scored in bulk with onnxruntime.

The package root imports nothing heavy: ``import recmodels.scoring`` works on a
machine without torch. Training lives in :mod:`recmodels.training`, export in
:mod:`recmodels.export`, scoring in :mod:`recmodels.scoring`.
"""

__version__ = "0.1.0"
