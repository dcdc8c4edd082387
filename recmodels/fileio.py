"""Atomic file and directory writes, JSON helpers and checksums (torch-free).

Nothing recmodels writes is ever seen half-written: outputs go to a temporary
sibling name and are renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask() sets while it reads, which would race with writer threads.
_UMASK = _read_umask()


def check_writable_parent(path: str | os.PathLike) -> Path:
    """Ensure ``path``'s parent exists (creating it) and is writable, or raise :class:`OutputError`."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{parent}: cannot create output directory ({exc.strerror})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{parent}: output directory is not writable; choose another location")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` if the block succeeds.

    On error the temporary file is removed and ``path`` is left untouched.
    """
    path = check_writable_parent(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp creates 0600; give the file the permissions a plain open() would have
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; move it onto ``path`` if the block succeeds.

    Parameters
    ----------
    path : path-like
        Final directory.
    overwrite : bool
        Replace an existing ``path``; otherwise an existing path raises :class:`OutputError`
        before anything is written.
    """
    path = check_writable_parent(path)
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists; pass --overwrite to replace it")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp creates 0700
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: str | os.PathLike, obj, *, indent: int = 2) -> Path:
    """Write ``obj`` as JSON atomically (sorted keys, trailing newline)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent, sort_keys=True, allow_nan=False) + "\n")
    return Path(path)


def read_json(path: str | os.PathLike) -> dict:
    """Read a JSON file (raises ``OSError`` or ``json.JSONDecodeError``; callers name the file)."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def save_png(fig, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure as PNG at ``path`` atomically (temporary name, then renamed)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def new_figure(width: float, height: float):
    """A matplotlib ``Figure`` of ``width`` x ``height`` inches at 100 dpi, on the Agg backend
    (no display needed; matplotlib is imported here, on first use)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def save_line_plot(fig, ax, path: str | os.PathLike, *, xlabel: str, ylabel: str) -> Path:
    """Label ``ax``, add its legend and a light grid, and save ``fig`` with :func:`save_png`."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_png(fig, path)
