"""One lock per output, and the removal of what killed runs left behind (torch-free, no pyarrow).

Every writing command (``score``, ``recommend``, ``evaluate --json/--plot``, the Dask and Spark
drivers) holds the lock of its output while it writes: a hidden sibling file ``.NAME.lock``
beside the output file or part directory ``NAME``, locked with ``fcntl.flock`` and holding the
writer's pid and host. A second run on the same output refuses in one line naming that pid. The
kernel drops the lock when its process dies (``kill -9`` included), so a lock is never stale: the
file a dead run leaves is simply taken over.

Whoever takes the lock removes the temporaries of earlier runs on that output: they can only be
left over from a run that died, since a living one would still hold the lock. Temporaries are:

* beside the output: ``.NAME.<token>.tmp`` and ``.NAME.<token>.parts`` (``<token>`` without a
  dot: a pid or a random suffix), files or directories;
* inside a part directory: the temporaries of its parts and records (``.part-00000.*.tmp``,
  ``._part-00000.json.*.tmp``, ``._scoring.json.*.tmp``, ``._SUCCESS.*.tmp``); nothing else
  there is touched.

The lock is re-entrant within a process (a count), so a command can take it before its slow work
(refusing early) and the writer it opens later takes it again. Without ``fcntl`` (Windows) the
lock is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

from ...errors import OutputError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

__all__ = ["OutputLock", "lock_file", "output_lock", "remove_stray_temporaries"]

_held: dict[str, list] = {}  # lock file -> [open file, count] for the locks this process holds
_guard = threading.Lock()


def lock_file(path: str | os.PathLike) -> Path:
    """The lock file of output ``path``: ``.NAME.lock`` beside it."""
    path = Path(os.path.abspath(os.fspath(path)))
    return path.with_name(f".{path.name}.lock")


def _holder(fh) -> str:
    """``pid N`` (``on HOST`` when another machine holds it), read from an open lock file."""
    text = ""
    for _ in range(20):  # the holder writes its pid right after locking: wait for it briefly
        fh.seek(0)
        text = fh.read().strip()
        if text:
            break
        time.sleep(0.01)
    pid, _, host = text.partition(" ")
    if not pid.isdigit():
        return "pid unknown"
    return f"pid {pid}" if host in ("", socket.gethostname()) else f"pid {pid} on {host}"


class OutputLock:
    """The lock of one output (file or part directory); see the module's docstring.

    Parameters
    ----------
    path : path-like
        The output file or directory (it need not exist; its parent must).

    Examples
    --------
    >>> with OutputLock("recs/"):                      # doctest: +SKIP
    ...     write_the_parts()
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(os.path.abspath(os.fspath(path)))
        self.file = lock_file(self.path)
        self._held = False

    def acquire(self) -> OutputLock:
        """Take the lock and remove stray temporaries of the output.

        Raises
        ------
        OutputError
            Another run holds it ("... is being written by another run, pid N"), or the lock
            file cannot be created (the output's directory is not writable).
        """
        if self._held or fcntl is None:
            self._held = True
            return self
        key = os.fspath(self.file)
        with _guard:
            entry = _held.get(key)
            if entry is not None:
                entry[1] += 1
            else:
                _held[key] = [self._open(), 1]
                remove_stray_temporaries(self.path)
        self._held = True
        return self

    def _open(self):
        while True:
            try:
                fh = open(self.file, "a+", encoding="ascii")  # noqa: SIM115 - held until release
            except OSError as exc:
                raise OutputError(
                    f"{self.path}: cannot create its lock file {self.file.name} ({exc.strerror}); "
                    "the output's directory must be writable"
                ) from None
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _holder(fh)
                fh.close()
                raise OutputError(
                    f"{self.path} is being written by another run, {holder}; wait for it to finish "
                    "(or stop it) and rerun, or choose another output"
                ) from None
            # The previous holder unlinks the file before it unlocks: a lock taken on an unlinked
            # file locks nothing, so take the file that is there now.
            try:
                same = os.stat(self.file).st_ino == os.fstat(fh.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                fh.seek(0)
                fh.truncate()
                fh.write(f"{os.getpid()} {socket.gethostname()}\n")
                fh.flush()
                return fh
            fh.close()

    def release(self) -> None:
        """Give the lock back (the last release of this process removes the lock file)."""
        if not self._held:
            return
        self._held = False
        if fcntl is None:
            return
        key = os.fspath(self.file)
        with _guard:
            entry = _held.get(key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _held[key]
            with contextlib.suppress(OSError):
                self.file.unlink()  # before unlocking: see _open
            entry[0].close()

    def __del__(self):  # a writer dropped without commit/abort (an error path) gives its hold back
        with contextlib.suppress(Exception):
            self.release()

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def output_lock(path: str | os.PathLike | None):
    """Hold the lock of output ``path`` for the block (None: no output, nothing to lock).

    The one call for every writer: ``with output_lock(out): ...``. The output's parent directory
    is created when missing (the lock file lives there).
    """
    if path is None:
        yield None
        return
    parent = Path(os.path.abspath(os.fspath(path))).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{parent}: cannot create output directory ({exc.strerror})") from None
    with OutputLock(path) as lock:
        yield lock


def _temporary_pattern(name: str) -> re.Pattern:
    return re.compile(rf"^\.{re.escape(name)}\.[^./]+\.(?:tmp|parts)$")


_PART_TEMPORARY = re.compile(r"^\.(?:_?part-\d{5,}|_scoring\.json|_SUCCESS)\..*\.tmp$")


def remove_stray_temporaries(path: str | os.PathLike) -> list[str]:
    """Remove the temporaries killed runs left for output ``path`` (call it holding the lock).

    Returns
    -------
    list of str
        The names removed.
    """
    path = Path(os.path.abspath(os.fspath(path)))
    pattern = _temporary_pattern(path.name)
    found = []
    with contextlib.suppress(OSError):
        found += [e for e in path.parent.iterdir() if pattern.match(e.name)]
    if path.is_dir():
        with contextlib.suppress(OSError):
            found += [e for e in path.iterdir() if _PART_TEMPORARY.match(e.name)]
    for entry in found:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
    return [e.name for e in found]
