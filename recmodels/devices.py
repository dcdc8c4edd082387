"""Device names, parsed and resolved in one place.

:func:`parse_device` is the one device grammar of recmodels (training and scoring alike) and
needs no torch: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, and ``"gpu"`` / ``"gpu:N"``
as another name for ``"cuda"`` / ``"cuda:N"``. :func:`resolve_device` turns a name into a
``torch.device``: ``"auto"`` picks CUDA when it is available and the CPU otherwise, and an
explicit CUDA device that is not there raises :class:`~recmodels.errors.DeviceError`.

torch is imported inside the functions that need it, so importing this module (and
:func:`parse_device`) works on the torch-free scoring install.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from .errors import DeviceError

if TYPE_CHECKING:  # pragma: no cover
    import torch

DEVICE_FORMS = "auto, cpu, cuda, cuda:N, gpu or gpu:N (gpu means cuda)"
_SPEC = re.compile(r"^(?:(auto|cpu)|(cuda|gpu)(?::(\d+))?)$")


def parse_device(spec: str | None) -> tuple[str, int | None]:
    """Parse a device name (case and surrounding spaces ignored; ``None`` means ``"auto"``).

    Parameters
    ----------
    spec : str or None
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"gpu"`` or ``"gpu:N"``.

    Returns
    -------
    (kind, index) : (str, int or None)
        ``("auto", None)``, ``("cpu", None)``, or ``("cuda", N)`` / ``("cuda", None)`` when no
        index was given (``gpu`` is returned as ``cuda``).

    Raises
    ------
    DeviceError
        Anything else; the message lists the accepted forms.

    Examples
    --------
    >>> parse_device("GPU:1"), parse_device(None), parse_device("cuda")
    (('cuda', 1), ('auto', None), ('cuda', None))
    """
    text = "auto" if spec is None else str(spec).strip().lower()
    match = _SPEC.match(text)
    if match is None:
        raise DeviceError(f"unknown device {spec!r}; use {DEVICE_FORMS}")
    if match.group(1):
        return match.group(1), None
    return "cuda", None if match.group(3) is None else int(match.group(3))


@functools.lru_cache(maxsize=1)
def cuda_device_count() -> int:
    """Number of usable CUDA devices (0 without CUDA); asked once per process."""
    import torch

    try:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken driver is the same as no GPU for "auto"
        return 0


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn a device name into a ``torch.device``.

    Parameters
    ----------
    spec : str or torch.device or None
        A name :func:`parse_device` accepts, or a ``torch.device``; ``None`` means ``"auto"``.

    Returns
    -------
    torch.device

    Raises
    ------
    DeviceError
        The name is malformed, or names a CUDA device this machine does not have.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    import torch

    if isinstance(spec, torch.device):
        spec = str(spec)
    kind, index = parse_device(spec)
    if kind == "auto":
        return torch.device("cuda" if cuda_device_count() else "cpu")
    if kind == "cpu":
        return torch.device("cpu")
    count = cuda_device_count()
    if count == 0:
        raise DeviceError(f"device {spec!r} was requested but CUDA is not available; use --device cpu")
    index = 0 if index is None else index
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
        import torch

        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False
