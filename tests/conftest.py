"""Shared test configuration: GPU tests skip cleanly where there is no CUDA."""

from __future__ import annotations

import functools

import pytest


@functools.cache
def cuda_available() -> bool:
    """True when torch sees a CUDA device (torch-free environments count as no CUDA)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not cuda_available():
            item.add_marker(skip)


def assert_one_line_failure(result, *fragments, ignore_case: bool = False):
    """A CliRunner result failed with exit 1 and exactly one ``Error: ...`` line holding ``fragments``."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    line = lines[0].lower() if ignore_case else lines[0]
    for fragment in fragments:
        assert (fragment.lower() if ignore_case else fragment) in line, lines[0]
    assert result.exception is None or isinstance(result.exception, SystemExit)
