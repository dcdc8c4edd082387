"""What ``recmodels export --format`` accepts. Imports nothing, so the command's ``--help`` reads it
without loading the exporter (torch, onnx, pandas)."""

FORMATS = ("onnx",)
"""Export formats (``recmodels export --format``)."""
