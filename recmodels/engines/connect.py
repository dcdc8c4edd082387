"""Reaching a cluster before anything is written (torch-free): the engines, their extras, and one
line for an address that does not answer, answers late or is not the cluster it should be.

The driver checks the cluster's address before any output exists: a TCP connection within
:data:`CONNECT_TIMEOUT_S` (:func:`open_connection`), then the engine's own handshake, bounded by
:func:`within` (:func:`check_scheduler`, :func:`check_master`: here, beside the helpers they
share; :mod:`recmodels.engines.dask` and :mod:`recmodels.engines.spark` offer them). A refused port,
a port that accepts and never answers, and one that talks another protocol (SSH, HTTP) are each one
:class:`EngineError` line.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from urllib.parse import urlparse

from ..errors import ConfigError, EngineError, MissingEngineError
from ..scoring.defaults import ENGINES

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DEFAULT_MASTER_PORT",
    "DEFAULT_SCHEDULER_PORT",
    "ENGINES",
    "check_engine_options",
    "check_master",
    "check_scheduler",
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


def check_engine_options(engine: str, *, resume: bool = False, part_rows=None,
                         command: str = "score") -> None:
    """The CLI rules that tie options to an engine, as one-line :class:`ConfigError` s.

    ``resume``/``part_rows`` here are those of an input the engine reads itself (a CSV for
    ``score``); ``recommend`` on an engine is never resumable.
    """
    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if engine == "local":
        return
    if resume and command == "recommend":
        raise ConfigError(
            f"--resume does not work with recommend --engine {engine} (each run writes every part); "
            "rerun the job with --overwrite"
        )
    if resume:
        raise ConfigError(
            f"--resume with --engine {engine} needs a Parquet input; rerun the job with --overwrite"
        )
    if part_rows is not None:
        raise ConfigError(
            f"--part-rows with --engine {engine} needs a Parquet input; a CSV input is written one part "
            "per partition"
        )


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


# -- the engines' handshakes -------------------------------------------------------------------
DEFAULT_SCHEDULER_PORT = 8786
DEFAULT_MASTER_PORT = 7077


def check_scheduler(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail with one line unless ``address`` answers as a Dask scheduler within ``timeout`` seconds.

    A refused or unreachable port, a port that accepts and never answers, one that talks another
    protocol first (an SSH server) or waits to be asked (an HTTP server, a dashboard) are each one
    :class:`EngineError` line, and nothing waits much longer than ``timeout``. A scheduler speaks
    first on a new connection (its handshake); then ``distributed``'s own handshake and an
    ``identity`` call, bounded in time, say whether it is a scheduler. Addresses that are not
    ``tcp://`` (``tls://``: the client speaks first) get only the TCP check; ``distributed.Client``'s
    own timeout does the rest.
    """
    left = time_left(timeout)  # one deadline for the connection and the handshake
    sock = open_connection(address, "--scheduler", DEFAULT_SCHEDULER_PORT, timeout)
    if sock is None or address.lower().startswith("tls://"):  # TLS: the client speaks first
        if sock is not None:
            sock.close()
        return
    what, kind = "--scheduler", "Dask scheduler"
    hint = (f" (a scheduler listens on port {DEFAULT_SCHEDULER_PORT} unless told otherwise; "
            "8787 is its dashboard)")
    try:
        greeting = first_words(sock, left())
    finally:
        sock.close()
    if greeting is None:
        raise silent_peer(what, address, kind, timeout, hint)
    if not greeting:
        raise not_the_cluster(what, address, kind, "it closed the connection without a word", hint)
    if greeting.startswith(b"HTTP/"):
        raise not_the_cluster(what, address, kind, "it is an HTTP server", hint)
    if greeting.isascii() and greeting.decode("ascii").isprintable():
        raise not_the_cluster(what, address, kind, f"it talks another protocol: {greeting.decode()!r}", hint)

    async def identity():
        from distributed.comm import connect

        # distributed's handshake reads without a deadline: bounded here, and by within() below
        url = address if "://" in address else f"tcp://{address}"
        comm = await asyncio.wait_for(connect(url, timeout=left()), left())
        try:
            await asyncio.wait_for(comm.write({"op": "identity", "reply": True}), left())
            return await asyncio.wait_for(comm.read(), left())
        finally:
            comm.abort()

    try:
        reply = within(left(), lambda: asyncio.run(identity()))
    except (TimeoutError, asyncio.TimeoutError):
        raise silent_peer(what, address, kind, timeout, hint) from None
    except (Exception, MemoryError) as exc:  # noqa: BLE001 - a peer talking another protocol
        reason = f"its handshake failed: {type(exc).__name__}"
        raise not_the_cluster(what, address, kind, reason, hint) from None
    found = reply.get("type") if isinstance(reply, dict) else type(reply).__name__
    if found != "Scheduler":
        raise not_the_cluster(what, address, kind, f"it answered as {found}", hint)


def check_master(master: str, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Fail with one line unless a ``spark://`` master answers Spark's RPC within ``timeout`` s.

    One request that any Spark RPC endpoint answers at once (a message for an endpoint that does
    not exist: the master replies "could not find"), so a port that is refused, never answers,
    talks first (SSH) or answers another protocol (HTTP) is one :class:`EngineError` line before
    the JVM starts, instead of Spark's three 20-second registration attempts. A peer that closes
    the connection without a word (e.g. one that wants authentication first) is left to Spark.
    Other masters (``local[...]``, ``yarn``, ``k8s://``, several standalone masters) are not
    checked. Returns True when the address answered as Spark, False when it was left to Spark.
    """
    if not master.startswith("spark://"):
        return False
    left = time_left(timeout)  # one deadline for the connection and the answer
    sock = open_connection(master, "--master", DEFAULT_MASTER_PORT, timeout)
    if sock is None:
        return False
    hint = f" (a standalone master listens on port {DEFAULT_MASTER_PORT} unless told otherwise)"
    try:
        sock.settimeout(max(left() - HTTP_QUESTION_S, 0.1))  # its last second: is_http below
        sock.sendall(_rpc_probe())
        data = sock.recv(64)
        if 0 < len(data) < 9:  # a reply's head may come in pieces
            data += read_exactly(sock, 9 - len(data))
        length, kind = struct.unpack(">qb", data[:9]) if len(data) >= 9 else (-1, -1)
        if 9 <= length < (1 << 20) and kind in _RPC_REPLIES:
            read_exactly(sock, length - len(data))  # the whole reply: the master sees a clean close
            return True
    except TimeoutError:
        if is_http(sock, after=True):
            raise not_the_cluster("--master", master, "Spark master", "it is an HTTP server", hint) from None
        raise silent_peer("--master", master, "Spark master", timeout, hint) from None
    except OSError:
        return False  # reset without an answer: left to Spark
    finally:
        sock.close()
    if data.startswith(b"HTTP/"):
        raise not_the_cluster("--master", master, "Spark master", "it is an HTTP server", hint)
    if data:
        shown = shown_line(data).decode("ascii", "replace") if data.isascii() else data[:16].hex()
        reason = f"it talks another protocol: {shown!r}"
        raise not_the_cluster("--master", master, "Spark master", reason, hint)
    return False


_RPC_REPLIES = (4, 5)  # RpcResponse, RpcFailure of Spark's transport protocol


def _rpc_probe() -> bytes:
    """One Spark transport frame: an RpcRequest to endpoint ``recmodels-probe``, no sender."""

    def utf(text: str) -> bytes:
        data = text.encode()
        return struct.pack(">H", len(data)) + data

    content = b"\xac\xed\x00\x05" + b"\x74" + utf("probe")  # a Java-serialized String
    body = b"\x00" + b"\x00" + utf("recmodels-probe") + content  # no sender, no receiver address
    header = struct.pack(">bqi", 3, 1, len(body))  # RpcRequest, request id, body size
    return struct.pack(">q", 8 + len(header) + len(body)) + header + body
