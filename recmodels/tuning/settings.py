"""What a ``tune`` output directory was made with (``tune.json``), and whether a resume matches it.

``tune.json`` records the settings of the study (options, search space, input paths) and a
content fingerprint of each input (:func:`fingerprint`), so that a resume on other options
or on data whose contents changed is refused in one line, named in the user's terms.
"""

from __future__ import annotations

import glob
import hashlib
import math
import os
from pathlib import Path

from ..errors import ConfigError, RunDirError
from ..fileio import read_json, sha256_file
from ..tables import IGNORED_PREFIXES
from ..training.setup import source_name
from .layout import SETTINGS_FILE

RESUMABLE = {"train.device", "train.num_threads", "train.eval_batch_size"}
"""Settings a resumed search may change: where it runs, not what it searches."""
WHOLE_HASH_BYTES = 256 << 20
"""Inputs up to this many bytes in all are hashed whole; larger ones by size and samples."""
SAMPLE_BYTES = 1 << 20
SAMPLES = 16
# settings keys whose option is not "--" + the field name in kebab-case ("csv": the dialect
# when none of --sep, --no-header, --columns is given)
_FLAGS = {"model": "--model", "num_threads": "--threads", "header": "--no-header", "csv": "--sep",
          "prune": "--no-prune", "space": "--search-space"}


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


def option_name(key: str) -> str:
    """The command-line option of a flattened settings key: ``"train.l2"`` -> ``"--l2"``."""
    field = key.split(".")[-1] if key.split(".")[0] not in ("space", "model") else key.split(".")[0]
    return _FLAGS.get(field, "--" + field.replace("_", "-"))


def _text(key: str, value) -> str:
    """A setting's value as it is given on the command line."""
    if value is None:
        return "not given"
    if isinstance(value, bool):  # a "--no-X" option is on when the setting is off
        return "on" if value != option_name(key).startswith("--no-") else "off"
    if isinstance(value, list):
        return ("," if key == "model" else " ").join(_text(key, v) for v in value) or "none"
    return str(value)


def _spec_text(spec) -> str:
    """A search-space entry as a space file spells it (``None``: not in the space)."""
    if spec is None:
        return "not searched"
    if isinstance(spec, dict):
        order = ("choices", "low", "high", "log", "step")  # tune.json sorts the keys
        keys = sorted(spec, key=lambda k: order.index(k) if k in order else len(order))
        return "{" + ", ".join(f"{k} = {_toml(spec[k])}" for k in keys) + "}"
    return _toml(spec)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return f'"{value}"' if isinstance(value, str) else str(value)


def check_same_settings(out: Path, settings: dict, space_from: str = "the default space") -> None:
    """Refuse a resume whose settings differ from the study's (other than :data:`RESUMABLE`).

    The options are compared first, each named as on the command line (``--l2``), then the
    search space, parameter by parameter: a space that differs only because an option
    differs (the default space follows ``--model`` and ``--optimizer``) names the option.
    ``space_from`` says where this call's space comes from, for the message.
    """
    recorded = read_json(out / SETTINGS_FILE).get("settings", {})
    hint = ("resume with the same options (only --trials, --timeout, --quiet, --device and "
            "--threads may change), or use a new --out")
    was = _flatten({k: v for k, v in recorded.items() if k != "space"})
    now = _flatten({k: v for k, v in settings.items() if k != "space"})
    for key in sorted(set(was) | set(now)):
        if key in RESUMABLE or _same(was.get(key), now.get(key)):
            continue
        flag = option_name(key)
        raise ConfigError(f"{out}: this call has {flag} {_text(key, now.get(key))} but the study "
                          f"was made with {flag} {_text(key, was.get(key))} ({key}); {hint}")
    was_space, now_space = recorded.get("space") or {}, settings.get("space") or {}
    for name in [*now_space, *(n for n in was_space if n not in now_space)]:
        if _same(was_space.get(name), now_space.get(name)):
            continue
        raise ConfigError(f"{out}: the search space differs from the study's at {name}: "
                          f"{_spec_text(now_space.get(name))} in {space_from}, "
                          f"{_spec_text(was_space.get(name))} in the study's; resume with the "
                          f"study's space (it is under \"space\" in {out / SETTINGS_FILE}), or "
                          "use a new --out")


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


def _input_files(source) -> list[Path] | None:
    """The files behind a path input (a file, a directory's data files, a glob's matches)."""
    text = os.fspath(source)
    if glob.has_magic(text):
        return [Path(f) for f in sorted(glob.glob(text, recursive=True)) if os.path.isfile(f)]
    path = Path(text)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not any(
            part.startswith(IGNORED_PREFIXES) for part in p.relative_to(path).parts))
    return [path] if path.is_file() else None


def _sampled_sha256(path: Path, size: int) -> str:
    """sha256 of the size and :data:`SAMPLES` evenly spaced pieces (the first and last included)."""
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        for i in range(SAMPLES):
            fh.seek((size - SAMPLE_BYTES) * i // (SAMPLES - 1) if size > SAMPLE_BYTES else 0)
            digest.update(fh.read(SAMPLE_BYTES))
    return digest.hexdigest()


def fingerprint(source) -> dict | None:
    """A content fingerprint of an input, for ``tune.json``; ``None``: nothing to read.

    A path (a file, a directory or a glob) gives ``{"files", "bytes", "sha256", "hashed"}``:
    the sha256 of every file's name (relative to a directory) and bytes when they hold up to
    :data:`WHOLE_HASH_BYTES` in all (``hashed: "whole"``), otherwise of each file's size and
    :data:`SAMPLES` pieces of :data:`SAMPLE_BYTES` (``hashed: "sampled"``: a few ms where
    hashing gigabytes would take seconds; a change that keeps the size and misses every
    piece goes unseen). A DataFrame gives ``{"rows", "sha256"}`` of its columns and values.
    """
    if source is None:
        return None
    if not isinstance(source, (str, os.PathLike)):
        return _frame_fingerprint(source)
    files = _input_files(source)
    if not files:
        return None  # missing: the reader says so
    root = Path(source) if Path(source).is_dir() else None
    sizes = [f.stat().st_size for f in files]
    whole = sum(sizes) <= WHOLE_HASH_BYTES
    digest = hashlib.sha256()
    for path, size in zip(files, sizes, strict=True):
        name = path.relative_to(root).as_posix() if root else path.name
        part = sha256_file(path) if whole else _sampled_sha256(path, size)
        digest.update(f"{name}\0{size}\0{part}\n".encode())
    return {"files": len(files), "bytes": sum(sizes), "sha256": digest.hexdigest(),
            "hashed": "whole" if whole else "sampled"}


def _frame_fingerprint(frame) -> dict | None:
    try:
        import pandas as pd

        if not isinstance(frame, pd.DataFrame):
            return None
        digest = hashlib.sha256(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    except (TypeError, ValueError):  # unhashable cells: not fingerprinted
        return None
    return {"rows": len(frame), "sha256": digest.hexdigest()}


def check_same_inputs(out: Path, fingerprints: dict) -> None:
    """Refuse a resume on inputs whose contents differ from the study's (:func:`fingerprint`).

    Inputs the study recorded no fingerprint of (a study made before they were recorded, an
    object that cannot be fingerprinted) are not compared.
    """
    recorded = read_json(out / SETTINGS_FILE).get("fingerprints") or {}
    for name, now in fingerprints.items():
        was = recorded.get(name)
        if not was or not now or was.get("sha256") == now.get("sha256"):
            continue
        if was.get("bytes") is not None and was.get("bytes") != now.get("bytes"):
            what = f"{now['bytes']:,} bytes now, {was['bytes']:,} then"
        elif was.get("rows") is not None and was.get("rows") != now.get("rows"):
            what = f"{now['rows']:,} rows now, {was['rows']:,} then"
        else:
            what = "same size, other contents"
        raise ConfigError(f"{out}: {option_name(name)} changed since the study was made ({what}); "
                          "its trials would be ranked against trials on other data: resume on "
                          "the same data, or start a new search with --overwrite or another --out")


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


__all__ = ["RESUMABLE", "SETTINGS_FILE", "check_out", "check_same_inputs", "check_same_settings",
           "fingerprint", "jsonable", "option_name", "source_text"]
