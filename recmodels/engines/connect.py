"""Reaching a cluster before anything is written (torch-free): the engines, their extras, and one
line for an address that does not answer, answers late or is not the cluster it should be.

The driver checks the cluster's address before any output exists: a TCP connection within
:data:`CONNECT_TIMEOUT_S` (:func:`open_connection`), then the engine's own handshake, bounded by
:func:`within` (:func:`recmodels.engines.dask.check_scheduler`,
:func:`recmodels.engines.spark.check_master`). A refused port, a port that accepts and never
answers, and one that talks another protocol (SSH, HTTP) are each one :class:`EngineError` line.
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlparse

from ..errors import ConfigError, EngineError, MissingEngineError
from ..scoring.defaults import ENGINES

__all__ = [
    "CONNECT_TIMEOUT_S",
    "ENGINES",
    "first_words",
    "is_http",
    "missing_engine",
    "not_the_cluster",
    "open_connection",
    "probe_address",
    "read_exactly",
    "shown_line",
    "silent_peer",
    "time_left",
    "within",
]

CONNECT_TIMEOUT_S = 10.0
"""How long the driver waits for a cluster address to answer before giving up with one line."""
HTTP_QUESTION_S = 1.0
"""Of a silent peer's :data:`CONNECT_TIMEOUT_S`, the last second asks it whether it is an HTTP server."""
_EXTRA = {"dask": "dask", "spark": "pyspark"}


def missing_engine(engine: str, exc: ImportError) -> MissingEngineError:
    """The one line for an engine that is not installed."""
    return MissingEngineError(
        f"--engine {engine} needs {_EXTRA[engine]} ({exc}); install it with pip install 'recmodels[{engine}]'"
    )


def _host_port(address: str, what: str, default_port: int) -> tuple[str, int] | None:
    """``(host, port)`` of a TCP address; None for other schemes (Dask's ``inproc://`` of a
    cluster in this process, ``ucx://``, ``ws://``..., Spark's ``yarn`` or ``k8s://``, several
    standalone masters), which are left to the engine's own connect timeout."""
    scheme = address.split("://", 1)[0].lower() if "://" in address else "tcp"
    if scheme not in ("tcp", "tls", "spark") or "," in address:
        return None
    try:
        parsed = urlparse(address if "://" in address else f"tcp://{address}")
        host, port = parsed.hostname, parsed.port or default_port
    except ValueError:
        host = port = None
    if not host:
        raise ConfigError(f"{what} {address!r}: not an address (expected e.g. tcp://host:8786)")
    return host, port


def open_connection(address: str, what: str, default_port: int,
                    timeout: float = CONNECT_TIMEOUT_S) -> socket.socket | None:
    """A TCP connection to a cluster address (the caller closes it), or None for an address that
    is not TCP.

    Raises
    ------
    EngineError
        Nothing accepts the connection within ``timeout`` seconds (refused, unreachable, unknown
        host): one line naming the address.
    """
    found = _host_port(address, what, default_port)
    if found is None:
        return None
    host, port = found
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise EngineError(
            f"{what} {address}: no answer from {host}:{port} within {timeout:g} s ({reason}); "
            "check the address or start the cluster"
        ) from None


def probe_address(address: str, what: str, default_port: int, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail with one line unless ``host:port`` of a cluster address accepts a TCP connection in time
    (see :func:`open_connection`)."""
    sock = open_connection(address, what, default_port, timeout)
    if sock is not None:
        sock.close()


def not_the_cluster(what: str, address: str, kind: str, reason: str, hint: str = "") -> EngineError:
    """The one line for an address that answers, but not as ``kind`` (e.g. ``"Dask scheduler"``)."""
    return EngineError(
        f"{what} {address}: not a {kind} ({reason}); check the address{hint}"
    )


def silent_peer(what: str, address: str, kind: str, timeout: float, hint: str = "") -> EngineError:
    """The one line for an address that accepts a connection and then says nothing in time."""
    return not_the_cluster(what, address, kind,
                           f"it accepted the connection but did not answer within {timeout:g} s", hint)


def first_words(sock: socket.socket, timeout: float) -> bytes | None:
    """What a peer says first on a new connection (up to 64 bytes; text: its first line), ``b""``
    when it closes without a word, or None when it is silent (and not an HTTP server, see
    :func:`is_http`): all within ``timeout`` seconds."""
    sock.settimeout(max(timeout - HTTP_QUESTION_S, 0.1))
    try:
        data = sock.recv(64)
    except TimeoutError:
        return b"HTTP/" if is_http(sock) else None
    except OSError:
        return b""
    return shown_line(data) if data.isascii() else data


def is_http(sock: socket.socket, *, after: bool = False) -> bool:
    """Ask a silent peer ``GET /`` once: whether it answers as an HTTP server within
    :data:`HTTP_QUESTION_S` (a status line, or the bare HTML page of an HTTP/0.9 error).
    ``after``: something was sent before (a newline ends that line first)."""
    try:
        sock.settimeout(HTTP_QUESTION_S)
        sock.sendall(b"\n" * after + b"GET / HTTP/1.0\r\n\r\n")
        reply = sock.recv(16)
    except OSError:
        return False
    return reply.startswith(b"HTTP/") or reply.lstrip().startswith(b"<")


def read_exactly(sock: socket.socket, n: int) -> bytes:
    """``n`` bytes from ``sock`` (fewer when the peer closes first)."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def shown_line(data: bytes) -> bytes:
    """The first line of what a peer sent (for a message)."""
    return data.split(b"\n")[0].rstrip(b"\r")


def time_left(timeout: float):
    """A function giving the seconds left of ``timeout`` counted from now (at least 0.5)."""
    start = time.monotonic()
    return lambda: max(timeout - (time.monotonic() - start), 0.5)


def within(timeout: float, fn, *args):
    """``fn(*args)`` in a daemon thread, given up after ``timeout`` seconds.

    For handshakes that a peer which never answers would block forever: the caller gets
    :class:`TimeoutError` in time, and the thread, blocked on a socket with its own timeout,
    ends on its own.

    Raises
    ------
    TimeoutError
        ``fn`` did not return in time.
    BaseException
        Whatever ``fn`` raised.
    """
    box: dict = {}

    def run():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="recmodels-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")
