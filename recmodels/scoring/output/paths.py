"""Checks of an output path before any work (torch-free, no pyarrow): one line when it cannot be
written, so a long job never fails at its last step."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from ...errors import OutputError

__all__ = ["check_file_output", "nearest_existing", "probe_directory"]


def nearest_existing(path: str | os.PathLike) -> Path:
    """``path``'s parent, or its nearest ancestor that exists (nothing is created)."""
    existing = Path(os.path.abspath(os.fspath(path))).parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing


def probe_directory(directory: Path) -> str | None:
    """Why no file can be created in ``directory``, or None when one can.

    A real file is created and removed: permission bits alone do not tell (root passes
    ``os.access`` everywhere, read-only mounts and ``/proc`` refuse anyway).
    """
    if not directory.is_dir():
        return "not a directory"
    try:
        fd, name = tempfile.mkstemp(prefix=".recmodels-probe-", suffix=".tmp", dir=directory)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return None


def check_file_output(
    path: str | os.PathLike | None, option: str, suffixes: tuple[str, ...] = (), kind: str = "a file"
) -> None:
    """Refuse, in one line, a one-file output that cannot be written (nothing is created).

    Parameters
    ----------
    path : path-like or None
        The file (None: no such output, nothing to check).
    option : str
        How the user named it (``--json``, ``--plot``), for the message.
    suffixes : tuple of str
        Accepted extensions (lower case, with the dot), e.g. ``(".png",)``; empty: any.
    kind : str
        What the option writes (``"a PNG image"``), for the message about the extension.

    Raises
    ------
    OutputError
        ``path`` is a directory, has another extension, or its directory (or nearest existing
        ancestor) does not let a file be created.
    """
    if path is None:
        return
    text = os.fspath(path)
    target = Path(text)
    if target.is_dir():
        raise OutputError(f"{option} {text}: is a directory; give a file name")
    if suffixes and target.suffix.lower() not in suffixes:
        raise OutputError(f"{option} {text}: {option} writes {kind}; give a name ending in {suffixes[0]}")
    directory = nearest_existing(target)
    reason = probe_directory(directory)
    if reason is not None:
        raise OutputError(f"{option} {text}: cannot write in {directory} ({reason}); choose another location")
