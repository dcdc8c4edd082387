"""Torch device resolution, decided once in one place.

``"auto"`` picks CUDA when it is available and the CPU otherwise; ``"cpu"`` and
``"cuda"`` / ``"cuda:N"`` are taken literally, and an explicit CUDA device that is not
there raises :class:`~recmodels.errors.DeviceError`.
"""

from __future__ import annotations

import functools
import re

import torch

from .errors import DeviceError

_SPEC = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@functools.lru_cache(maxsize=1)
def cuda_device_count() -> int:
    """Number of usable CUDA devices (0 without CUDA); asked once per process."""
    try:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken driver is the same as no GPU for "auto"
        return 0


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn a device spec into a ``torch.device``.

    Parameters
    ----------
    spec : {"auto", "cpu", "cuda", "cuda:N"} or torch.device or None
        ``None`` means ``"auto"``.

    Returns
    -------
    torch.device

    Raises
    ------
    DeviceError
        The spec is malformed, or names a CUDA device this machine does not have.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if not _SPEC.match(spec):
        raise DeviceError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N")
    if spec == "auto":
        return torch.device("cuda" if cuda_device_count() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    count = cuda_device_count()
    if count == 0:
        raise DeviceError(f"device {spec!r} was requested but CUDA is not available; use --device cpu")
    index = int(spec.split(":")[1]) if ":" in spec else 0
    if index >= count:
        raise DeviceError(f"device {spec!r} does not exist; this machine has {count} CUDA device(s)")
    return torch.device("cuda", index)


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls natively (AVX512-BF16 or AMX-BF16).

    Elsewhere bf16 is emulated and slower than fp32, so bf16 training falls back to fp32.
    Read from ``/proc/cpuinfo``; False where that does not exist.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def supports_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast pays on ``device`` (native bf16 on this CPU or GPU)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False
