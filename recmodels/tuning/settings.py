"""What a ``tune`` output directory was made with (``tune.json``), and whether a resume matches it."""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..errors import ConfigError, RunDirError
from ..fileio import read_json
from ..training.setup import source_name

SETTINGS_FILE = "tune.json"
RESUMABLE = {"train.device", "train.num_threads", "train.eval_batch_size"}
"""Settings a resumed search may change: where it runs, not what it searches."""


def check_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse an output directory that ``resume`` / ``overwrite`` do not fit (one line each)."""
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite exclude each other; pick one")
    settings = out / SETTINGS_FILE
    if resume:
        if not settings.is_file():
            raise RunDirError(f"{out}: nothing to resume (no {SETTINGS_FILE}); start a new search "
                              "without --resume")
        return
    if not out.exists():
        return
    if not overwrite:
        raise RunDirError(f"{out} already exists; pass --resume to continue the search or "
                          "--overwrite to replace it")
    if not out.is_dir() or (any(out.iterdir()) and not settings.is_file()):
        raise RunDirError(f"{out} exists and is not a recmodels tune directory; refusing to "
                          "overwrite it, choose another --out")


def _flatten(obj, prefix: str = "") -> dict:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def check_same_settings(out: Path, settings: dict) -> None:
    """Refuse a resume whose settings differ from the study's (other than :data:`RESUMABLE`)."""
    recorded = read_json(out / SETTINGS_FILE)
    was, now = _flatten(recorded.get("settings", {})), _flatten(settings)
    for key in sorted(set(was) | set(now)):
        if key in RESUMABLE or _same(was.get(key), now.get(key)):
            continue
        raise ConfigError(f"{out}: {key} is {now.get(key)!r} but the study was made with "
                          f"{was.get(key)!r}; resume with the same options (only --trials, "
                          "--timeout, --quiet, --device and --threads may change), or use a new --out")


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def source_text(source) -> str | None:
    """How ``tune.json`` records an input: an absolute path, or the kind of object."""
    if source is None:
        return None
    if isinstance(source, (str, os.PathLike)) and not any(c in str(source) for c in "*?["):
        return str(Path(source).resolve())
    return source_name(source)


def jsonable(obj):
    """``obj`` with tuples as lists, non-finite floats as None and other objects as text."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


__all__ = ["RESUMABLE", "SETTINGS_FILE", "check_out", "check_same_settings", "jsonable", "source_text"]
