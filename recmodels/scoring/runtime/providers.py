"""onnxruntime capability checks and session creation: the ONE place that knows about providers.

Everything device-related lives here: which execution providers this onnxruntime build has,
loading the CUDA libraries from the ``nvidia-*`` pip wheels when they are installed
(``onnxruntime.preload_dlls``), keeping onnxruntime's own (red, multi-line) log output quiet
while a provider is probed, creating the session with tuned options, and reporting the
provider that *actually* runs the graph (``session.get_providers()``), which is not always
the one asked for: onnxruntime silently falls back to CPU when the CUDA provider fails to load.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import io
import os
import shutil
import threading
import warnings
from dataclasses import dataclass

from ...devices import parse_device
from ...errors import DeviceError, first_line

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

# onnxruntime's logger severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal.
_QUIET = 4
_NORMAL = 3

_lock = threading.Lock()
_preloaded = False
_ort = None


def ort():
    """Import onnxruntime once, with its default logger lowered to errors-only."""
    global _ort
    if _ort is None:
        try:
            import onnxruntime
        except ImportError as exc:  # pragma: no cover - a dependency
            raise DeviceError(
                f"onnxruntime is not installed ({exc}); pip install onnxruntime"
            ) from None
        onnxruntime.set_default_logger_severity(_NORMAL)
        _ort = onnxruntime
    return _ort


@contextlib.contextmanager
def quiet_onnxruntime():
    """Silence onnxruntime's logger (and Python-level prints) while probing providers."""
    rt = ort()
    rt.set_default_logger_severity(_QUIET)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        rt.set_default_logger_severity(_NORMAL)


def available_providers() -> list[str]:
    """Execution providers compiled into this onnxruntime build (not necessarily usable)."""
    return list(ort().get_available_providers())


def cuda_compiled() -> bool:
    """Whether this onnxruntime build has the CUDA execution provider at all."""
    return CUDA in available_providers()


def gpu_visible() -> bool:
    """Whether this machine shows an NVIDIA GPU to this process, without loading CUDA.

    The driver's device nodes (``/dev/nvidia0``..., ``/dev/dxg`` under WSL) or its ``nvidia-smi``;
    ``CUDA_VISIBLE_DEVICES`` set to ``""`` or ``-1`` hides them. ``--device auto`` tries CUDA,
    and says why it fell back to CPU, only when this is True.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return False
    nodes = glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/dxg")
    return bool(nodes or shutil.which("nvidia-smi"))


def preload_cuda_libraries() -> bool:
    """Load CUDA/cuDNN from the ``nvidia-*`` pip wheels, when those are installed.

    Returns True when ``onnxruntime.preload_dlls`` was called. Without the wheels onnxruntime
    looks for the libraries on the system path as usual. Runs at most once per process.
    """
    global _preloaded
    with _lock:
        if _preloaded:
            return True
        rt = ort()
        if not hasattr(rt, "preload_dlls") or importlib.util.find_spec("nvidia") is None:
            return False
        with quiet_onnxruntime(), contextlib.suppress(Exception):
            rt.preload_dlls()
        _preloaded = True
        return True


@dataclass(frozen=True)
class DeviceRequest:
    """A parsed ``--device`` value: ``kind`` in {"auto", "cpu", "cuda"} and a CUDA device id."""

    kind: str
    device_id: int = 0

    @classmethod
    def parse(cls, device: str | None) -> DeviceRequest:
        """Parse with the one device grammar (:func:`recmodels.devices.parse_device`)."""
        kind, index = parse_device(device)
        return cls(kind, index or 0)

    def __str__(self) -> str:
        return f"cuda:{self.device_id}" if self.kind == "cuda" else self.kind


def available_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def session_options(intra_op_threads: int | None = None):
    """SessionOptions tuned for throughput on big batches of a small graph.

    ``intra_op_threads`` defaults to 1: :class:`~recmodels.scoring.runtime.session.ScoringSession` runs
    sub-batches concurrently from several threads, each call on its calling thread, which beats
    onnxruntime's intra-op pool on this graph (docs/benchmarks.md)."""
    rt = ort()
    opts = rt.SessionOptions()
    opts.graph_optimization_level = rt.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = rt.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = intra_op_threads or 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = _NORMAL
    # The pipeline's reader/writer threads share the cores: do not let idle onnxruntime
    # workers spin between batches (only matters with intra_op_threads > 1).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def describe_provider(providers: list[str], device_id: int = 0) -> str:
    """A short label for the provider that runs the graph: ``cpu`` or ``cuda:N``."""
    first = providers[0] if providers else CPU
    if first == CUDA:
        return f"cuda:{device_id}"
    if first == CPU:
        return "cpu"
    return first.removesuffix("ExecutionProvider").lower()


_warned: set[str] = set()


def warn_once(message: str) -> None:
    """Emit a RuntimeWarning once per process (every Scorer still records it in its report)."""
    with _lock:
        if message in _warned:
            return
        _warned.add(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def create_session(
    model_path, device: str | DeviceRequest = "auto", *, intra_op_threads=None, notes: list | None = None
):
    """Create an onnxruntime session on the requested device.

    Parameters
    ----------
    model_path : path-like
        The ONNX graph.
    device : {"auto", "cpu", "cuda", "cuda:N"}
        ``auto`` uses CUDA only when the session really gets it (else CPU, with one warning
        per process when the machine has a GPU; silently without one, :func:`gpu_visible`);
        ``cuda`` raises :class:`DeviceError` when it cannot be had.
    intra_op_threads : int, optional
        onnxruntime intra-op threads (default 1).
    notes : list, optional
        Receives the reason when ``auto`` falls back to CPU (the warning itself is emitted once
        per process).

    Returns
    -------
    (onnxruntime.InferenceSession, str)
        The session and the provider that actually runs it (``"cpu"`` or ``"cuda:N"``).
    """
    request = device if isinstance(device, DeviceRequest) else DeviceRequest.parse(device)
    rt = ort()
    opts = session_options(intra_op_threads)
    path = os.fspath(model_path)
    if request.kind == "cpu" or (request.kind == "auto" and not gpu_visible()):
        session = rt.InferenceSession(path, sess_options=opts, providers=[CPU])
        return session, "cpu"

    reason = None
    if not cuda_compiled():
        reason = "this onnxruntime build has no CUDA provider (pip install onnxruntime-gpu)"
    else:
        preload_cuda_libraries()
        cuda_options = {"device_id": request.device_id}
        try:
            with quiet_onnxruntime():
                session = rt.InferenceSession(
                    path, sess_options=opts, providers=[(CUDA, cuda_options), CPU]
                )
        except Exception as exc:  # onnxruntime raises its own types (Fail, RuntimeException...)
            reason = (
                f"onnxruntime could not start CUDA device {request.device_id} ({first_line(exc, 200)})"
            )
        else:
            if session.get_providers() and session.get_providers()[0] == CUDA:
                return session, describe_provider(session.get_providers(), request.device_id)
            reason = (
                "the CUDA provider did not load (no GPU, or CUDA 12/13 + cuDNN 9 libraries missing)"
            )
    if request.kind == "cuda":
        raise DeviceError(f"--device {request}: {reason}; use --device cpu or auto")
    message = f"CUDA unavailable, scoring on CPU: {reason}"
    if notes is not None:
        notes.append(message)
    warn_once(message)
    session = rt.InferenceSession(path, sess_options=opts, providers=[CPU])
    return session, "cpu"
