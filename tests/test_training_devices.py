"""The one device grammar (recmodels.devices.parse_device), torch-free, and resolve_device."""

from __future__ import annotations

import subprocess
import sys

import pytest

from recmodels.devices import DEVICE_FORMS, parse_device
from recmodels.errors import DeviceError


@pytest.mark.parametrize("spec, expected", [
    (None, ("auto", None)), ("auto", ("auto", None)), (" AUTO ", ("auto", None)),
    ("cpu", ("cpu", None)), ("CPU", ("cpu", None)),
    ("cuda", ("cuda", None)), ("cuda:0", ("cuda", 0)), ("cuda:3", ("cuda", 3)),
    ("gpu", ("cuda", None)), ("GPU:1", ("cuda", 1)),
])
def test_parse_device_accepts_the_documented_forms(spec, expected):
    assert parse_device(spec) == expected


@pytest.mark.parametrize("spec", ["tpu", "cuda:", "cuda:x", "cuda:-1", "gpu0", "cpu:0", "", "mps"])
def test_parse_device_refuses_anything_else_in_one_line(spec):
    with pytest.raises(DeviceError) as info:
        parse_device(spec)
    message = str(info.value)
    assert "\n" not in message and "unknown device" in message and DEVICE_FORMS in message


def test_devices_imports_without_torch():
    script = ("import sys; sys.modules['torch'] = None\n"
              "import recmodels.devices as d\n"
              "assert d.parse_device('gpu:2') == ('cuda', 2)\n"
              "assert not [m for m in sys.modules if m.split('.')[0] == 'torch' and sys.modules[m]]\n"
              "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_resolve_device_uses_the_grammar():
    torch = pytest.importorskip("torch")
    from recmodels.devices import resolve_device

    assert resolve_device("CPU") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        for spec in ("gpu", "gpu:0", "cuda:1"):
            with pytest.raises(DeviceError, match="not available"):
                resolve_device(spec)
