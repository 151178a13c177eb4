"""TCP listeners shared by SMTP, IMAP and POP3: TLS, STARTTLS, connection limits, timeouts.

A protocol server is an object with ``async handle(conn: Connection)``; `serve` accepts
connections for it. This module is the only place that touches sockets for the mail protocols.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .connshare import SharedCounts

log = logging.getLogger(__name__)
READ_SIZE = 65536
_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class ProtocolServer(Protocol):
    async def handle(self, conn: Connection) -> None: ...


class Connection:
    """One client connection: bytes in and out, plus the TLS upgrade."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener: ListenerSpec) -> None:
        self.reader = reader
        self.writer = writer
        self.listener = listener
        peer = writer.get_extra_info("peername") or ("unknown", 0)
        self.remote_ip: str = peer[0]
        self.remote_port: int = peer[1]
        sock = writer.get_extra_info("sockname") or ("", 0)
        self.local_port: int = sock[1]
        self.tls: bool = writer.get_extra_info("sslcontext") is not None
        self.closed = False
        self._sock = writer.get_extra_info("socket")
        if self._sock is not None:
            try:
                # Replies go out as soon as they are written (asyncio and uvloop set this too;
                # said here so it does not depend on the loop): each flush is one write anyway.
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                self._sock = None

    @property
    def is_loopback(self) -> bool:
        return self.remote_ip in ("127.0.0.1", "::1") or self.remote_ip.startswith("127.")

    async def read(self, timeout: float | None = None) -> bytes:
        """Whatever bytes arrived (b"" at EOF or on a reset). Raises TimeoutError."""
        try:
            if timeout is None:
                return await self.reader.read(READ_SIZE)
            return await asyncio.wait_for(self.reader.read(READ_SIZE), timeout)
        except TimeoutError:
            raise  # a subclass of OSError since 3.11: the caller answers it (421, BYE, -ERR)
        except (ConnectionError, ssl.SSLError, OSError):
            return b""

    def quickack(self) -> None:
        """Have the kernel acknowledge what arrives next at once (TCP_QUICKACK, Linux).

        Call it before reading while the client is in the middle of sending something (an
        IMAP literal, SMTP DATA): a client that writes a literal and then its final CRLF in two
        calls (imaplib, and many others) holds the CRLF back under Nagle's algorithm until the
        literal is acknowledged, and Linux delays that acknowledgement (up to 40 ms) hoping to
        piggyback it on a reply - which cannot come before the CRLF. Without this a
        synchronizing-literal APPEND took 44 ms on loopback instead of about 1 ms. The flag is
        not sticky (the kernel leaves quick-ack mode on its own), hence once per read."""
        if self._sock is not None and _TCP_QUICKACK is not None:
            try:
                self._sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
            except (OSError, AttributeError):
                self._sock = None

    def write(self, data: bytes) -> None:
        if not self.closed and not self.writer.is_closing():
            self.writer.write(data)

    async def drain(self) -> None:
        try:
            await self.writer.drain()
        except (ConnectionError, ssl.SSLError, OSError):
            self.closed = True

    async def send(self, data: bytes) -> None:
        self.write(data)
        await self.drain()

    def pipelined_plaintext(self) -> bool:
        """True if bytes are waiting that the client sent before the TLS handshake.

        They must never be read as if they came through TLS (CVE-2011-0411, "NO STARTTLS")."""
        return bool(getattr(self.reader, "_buffer", b""))

    async def start_tls(self, context: ssl.SSLContext, timeout: float = 30) -> bool:
        """Upgrade to TLS after the protocol's go-ahead; False if the handshake failed."""
        buffered = getattr(self.reader, "_buffer", None)
        if buffered:
            buffered.clear()  # plaintext sent before the handshake is discarded, never executed
        try:
            await self.writer.start_tls(context, ssl_handshake_timeout=timeout)
        except (ssl.SSLError, ConnectionError, OSError, asyncio.TimeoutError) as exc:
            log.info("STARTTLS handshake with %s failed: %s", self.remote_ip, exc)
            self.closed = True
            return False
        self.tls = True
        return True

    @property
    def tls_version(self) -> str:
        obj = self.writer.get_extra_info("ssl_object")
        return obj.version() if obj is not None else ""

    async def close(self) -> None:
        if self.closed and self.writer.is_closing():
            return
        self.closed = True
        try:
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except (ConnectionError, ssl.SSLError, OSError, asyncio.TimeoutError):
            pass


class ReadDeadline:
    """Time limits for a connection's reads with one timer per connection, not one per read.

    ``await deadline.wait(read, seconds)`` raises TimeoutError when the read is still waiting
    after ``seconds``. ``asyncio.timeout`` does the same with a timer, a context manager and a
    cancellation scope for every read, a few percent of the CPU of a busy IMAP server. Here the
    timer stays armed between reads; when it fires early (the connection was busy meanwhile) it
    re-arms itself for the current read's deadline, so a connection costs a timer event per
    timeout period at most. Create it in the connection's own task: that is what it cancels."""

    __slots__ = ("_loop", "_task", "_deadline", "_handle", "_expired")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._deadline: float | None = None  # while a read waits
        self._handle: asyncio.TimerHandle | None = None
        self._expired = False

    async def wait(self, read: Awaitable[Any], seconds: float) -> Any:
        deadline = self._deadline = self._loop.time() + seconds
        if self._handle is None or self._handle.when() > deadline:
            if self._handle is not None:
                self._handle.cancel()
            self._handle = self._loop.call_at(deadline, self._fire)
        try:
            return await read
        except asyncio.CancelledError:
            if not self._expired:
                raise
            self._expired = False
            if self._task is not None:
                self._task.uncancel()
            raise TimeoutError from None
        finally:
            self._deadline = None

    def _fire(self) -> None:
        self._handle = None
        deadline = self._deadline
        if deadline is None:
            return  # between reads: the next read arms it again
        if self._loop.time() < deadline:
            self._handle = self._loop.call_at(deadline, self._fire)
        elif self._task is not None and not self._task.done():
            self._expired = True
            self._task.cancel()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


@dataclass(frozen=True)
class ListenerSpec:
    name: str  # smtp, submission, submissions, imap, imaps, pop3, pop3s
    host: str
    port: int
    implicit_tls: bool
    refuse_busy: bytes  # what to say when the per-IP limit is reached
    shutdown_notice: bytes = b""  # what to say to a session still open when the server stops
    refuse_full: bytes = b""  # what to say when the server's connection limit is reached


class ConnectionLimiter:
    """Connections open per client address and in all, over every worker process of the server
    (``shared``: the counts in shared memory, servers/connshare.py; None in a single process).
    `acquire` names the limit that refuses a connection."""

    def __init__(self, per_ip: int, total: int, shared: SharedCounts | None = None) -> None:
        self.per_ip = per_ip
        self.total = total
        self.shared = shared
        self.counts: Counter[str] = Counter()  # this process's, exact
        self.open = 0

    def acquire(self, ip: str) -> str | None:
        """None when admitted; else the setting that refuses it (``max_connections_per_ip`` or
        ``max_connections``)."""
        from_ip, in_all = self.shared.others(ip) if self.shared is not None else (0, 0)
        if self.counts[ip] + from_ip >= self.per_ip:
            return "max_connections_per_ip"
        if self.open + in_all >= self.total:
            return "max_connections"
        self.counts[ip] += 1
        self.open += 1
        if self.shared is not None:
            self.shared.add(ip, 1)
        return None

    def release(self, ip: str) -> None:
        self.counts[ip] -= 1
        self.open -= 1
        if self.counts[ip] <= 0:
            del self.counts[ip]
        if self.shared is not None:
            self.shared.add(ip, -1)

    def limit(self, name: str) -> int:
        return self.per_ip if name == "max_connections_per_ip" else self.total


@dataclass
class Listening:
    """A bound listener and its open connections (closed on shutdown; asyncio's Server only
    stops accepting)."""

    server: asyncio.AbstractServer
    connections: set[Connection]

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self, notice: bytes = b"") -> None:
        self.server.close()
        for conn in list(self.connections):
            if notice and not conn.closed:
                conn.write(notice)  # RFC 5321 §3.8: 421 before closing; IMAP BYE; POP3 -ERR
            await conn.close()
        try:
            await asyncio.wait_for(self.server.wait_closed(), 2)
        except (asyncio.TimeoutError, OSError):
            pass


async def serve(spec: ListenerSpec, server: ProtocolServer, tls_context: ssl.SSLContext | None,
                limiter: ConnectionLimiter,
                on_connection: Callable[[Connection], Awaitable[None]] | None = None,
                on_accept: Callable[[str, bool], None] | None = None,
                sock: socket.socket | None = None) -> Listening:
    """Start listening; raises OSError (e.g. address in use) for the caller to report.

    ``sock``: accept on this already bound socket instead (a worker process, given the sockets
    the supervisor opened: `postoffice.supervisor`).

    ``on_accept(listener name, admitted)`` is told of every accepted connection (metrics);
    ``admitted`` is False when the connection limits refused it."""

    active: set[Connection] = set()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(reader, writer, spec)
        active.add(conn)
        try:
            await handle(conn)
        finally:
            active.discard(conn)

    async def handle(conn: Connection) -> None:
        refused = limiter.acquire(conn.remote_ip)
        if on_accept is not None:
            on_accept(spec.name, refused is None)
        if refused is not None:
            log.warning("%s connection from %s refused: limits.%s = %d reached", spec.name, conn.remote_ip,
                        refused, limiter.limit(refused))
            full = refused == "max_connections" and spec.refuse_full
            conn.write(spec.refuse_full if full else spec.refuse_busy)
            await conn.drain()
            await conn.close()
            return
        try:
            await server.handle(conn)
        except Exception:  # noqa: BLE001 - one broken session must not take the listener down
            log.exception("%s session from %s failed", spec.name, conn.remote_ip)
        finally:
            limiter.release(conn.remote_ip)
            await conn.close()

    tls_args: dict[str, Any] = {
        "ssl": tls_context if spec.implicit_tls else None,
        "ssl_handshake_timeout": 30 if spec.implicit_tls else None,
    }
    if sock is not None:
        listening = await asyncio.start_server(accept, sock=sock, limit=READ_SIZE, backlog=1024, **tls_args)
    else:
        listening = await asyncio.start_server(
            accept, spec.host, spec.port, limit=READ_SIZE, reuse_address=True, backlog=1024, **tls_args)
    return Listening(listening, active)
