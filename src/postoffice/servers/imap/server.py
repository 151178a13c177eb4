"""IMAP on 143 (STARTTLS) and 993 (implicit TLS): the asyncio loop around the sans-IO
``ImapConnection`` (protocols/imap) and the `Session` (session.py).

Implementation notes (invariants):

* The loop is h11's: read, ``receive_data``, drain ``next_event()``, dispatch, write. Output is
  collected and written when the connection needs more input (so replies to pipelined commands
  go out together), or every 256 KiB during a long FETCH, draining the writer each time: a
  client that does not read cannot make the server buffer without bound.
* Timeouts: before login ``PREAUTH_TIMEOUT`` (at most ``limits.idle_timeout``) per read and
  ``PREAUTH_TOTAL_FACTOR`` times that for the whole pre-login phase (slowloris); afterwards and
  in IDLE ``limits.idle_timeout`` (RFC 9051 5.4: at least 30 minutes). This also bounds a
  literal that was announced and never sent. On expiry: ``* BYE`` and close.
* Literals: the connection enforces ``limits.imap_max_literal`` before reading one. A
  synchronizing literal over the limit gets ``NO [TOOBIG]`` and the session goes on; a
  LITERAL+ one is already on its way, so it gets ``BAD [TOOBIG]``, ``* BYE`` and the
  connection is closed (RFC 7888 section 4). Before login, literals over
  ``PREAUTH_LITERAL_LIMIT`` get ``BAD [TOOBIG]`` and ``* BYE`` (never ``+``).
* Invalid commands: counted by the connection (``invalid_command``); BYE after
  ``MAX_BAD_BEFORE_LOGIN`` before login or ``MAX_BAD_IN_A_ROW`` in a row after.
* Plaintext passwords: on 143 before STARTTLS, LOGINDISABLED is advertised, no AUTH=, and
  LOGIN/AUTHENTICATE answer ``NO [PRIVACYREQUIRED]``, unless the configuration allows it
  (``security.allow_plaintext_auth``, or ``allow_plaintext_auth_loopback`` for 127.0.0.1).
  Bytes pipelined after STARTTLS are discarded (never executed) and the handshake goes on.
* IDLE (RFC 2177) waits for the client's DONE and for the selected mailbox's change events at
  the same time; a change is sent at once (flags set on the phone show on the laptop). Per
  connection that is two small tasks and no buffer beyond what asyncio already holds.
* COMPRESS=DEFLATE (RFC 4978): after the tagged OK every byte both ways is raw DEFLATE; output
  is sync-flushed at each write, input is inflated at most ``INFLATE_CHUNK`` at a time, so
  the usual line and literal limits bound what a compressed burst can expand to.
* Ending from outside (``terminate``): the session registry calls it when IMAP is switched
  off for the address or its domain is forced to POP3 only (``* BYE [ALERT] <reason>``), and
  at shutdown (``* BYE [UNAVAILABLE]``). A waiting session is told at once; a busy one right
  after its current command.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from typing import Any

from ...protocols.imap import (
    NEED_DATA, CommandReceived, ConnectionClosed, ContinuationNeeded, IdleDone, ImapConnection,
    InvalidCommand, LineTooLong, LiteralRejected, State,
)
from ...protocols.imap import responses as r
from ...protocols.imap.responses import Code
from ...services.auth import password_login_allowed
from ...store import AccountChanged, Mailbox, MailboxesChanged
from ..listener import Connection, ReadDeadline
from .selected import IndexRegistry
from .session import Session

log = logging.getLogger(__name__)

PREAUTH_TIMEOUT = 60.0
# The whole pre-login phase may last this many PREAUTH_TIMEOUTs, however the bytes trickle in
# (slowloris: one byte every 59 s would otherwise hold a connection slot forever).
PREAUTH_TOTAL_FACTOR = 3
FLUSH_AT = 256 * 1024
#: COMPRESS=DEFLATE: at most this much inflated input is handed to the parser at a time, so a
#: small compressed burst cannot expand into an unbounded buffer (the line and literal limits
#: then apply as usual).
INFLATE_CHUNK = 64 * 1024
# Before login a literal (or the literals of one command together) over this gets BYE, not "+":
# a user name, a password or a SASL response needs a few hundred bytes at most.
PREAUTH_LITERAL_LIMIT = 8 * 1024
# Dovecot's rule: BYE after 3 invalid commands before login (imap-login), or 20 in a row after.
MAX_BAD_BEFORE_LOGIN = 3
MAX_BAD_IN_A_ROW = 20
#: Accounts whose mailbox lists `MailboxCache` keeps (the oldest entry goes first).
MAILBOX_CACHE_ACCOUNTS = 4096


class MailboxCache:
    """Each account's mailbox rows, as ``Store.list_mailboxes`` returns them, so LIST, STATUS,
    SELECT, APPEND and the INBOX prewarm at login do not query them again every time.

    Dropped on every event that can change them: ``MailboxesChanged`` (create, delete,
    rename, from any session or the web panel), ``AccountChanged`` (an account removed or
    changed; ``account_id=None`` also when the CLI wrote from another process), and by
    SUBSCRIBE/UNSUBSCRIBE (``invalidate``). A list read while such an event arrived is not
    kept (``generation``). The rows' ``uidnext`` and ``highestmodseq`` are those of the read
    and go stale: IMAP takes them from the shared index or ``Store.mailbox_status``, never
    from here."""

    def __init__(self, store: Any, bus: Any) -> None:
        self.store = store
        self._boxes: dict[int, tuple[list[Mailbox], dict[str, Mailbox]]] = {}
        self.generation = 0
        bus.listeners.append(self.on_event)

    def on_event(self, event: Any) -> None:
        if isinstance(event, MailboxesChanged):
            self.invalidate(event.account_id)
        elif isinstance(event, AccountChanged):
            self.invalidate(event.account_id)

    def invalidate(self, account_id: int | None) -> None:
        """Forget ``account_id``'s mailboxes (every account's with None)."""
        self.generation += 1
        if account_id is None:
            self._boxes.clear()
        else:
            self._boxes.pop(account_id, None)

    async def _load(self, account_id: int) -> tuple[list[Mailbox], dict[str, Mailbox]]:
        entry = self._boxes.get(account_id)
        if entry is not None:
            return entry
        generation = self.generation
        boxes = await self.store.list_mailboxes(account_id)
        entry = (boxes, {b.name: b for b in boxes})
        if generation == self.generation:
            if len(self._boxes) >= MAILBOX_CACHE_ACCOUNTS:
                del self._boxes[next(iter(self._boxes))]
            self._boxes[account_id] = entry
        return entry

    async def list(self, account_id: int) -> list[Mailbox]:
        """The account's mailboxes ordered by name (a new list each time)."""
        return list((await self._load(account_id))[0])

    async def get(self, account_id: int, name: str) -> Mailbox | None:
        """The mailbox called ``name`` (already normalised, as for ``Store.get_mailbox``)."""
        return (await self._load(account_id))[1].get(name)


class ImapServer:
    """The protocol server for the ``imap`` and ``imaps`` listeners (shared by both)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.indexes = IndexRegistry(app.store, app.bus)
        self.mailboxes = MailboxCache(app.store, app.bus)
        self._background: set[asyncio.Task[None]] = set()

    def prewarm(self, mailbox: Any) -> None:
        """Start loading a mailbox's shared index in the background (see IndexRegistry.prewarm);
        nothing to do when it is already loaded."""
        if self.indexes.touch(mailbox):
            return
        task = asyncio.ensure_future(self.indexes.prewarm(mailbox))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def handle(self, conn: Connection) -> None:
        await ImapHandler(self, conn).run()


class ImapHandler:
    """One IMAP connection: the I/O half; `Session` holds the protocol state."""

    __slots__ = ("server", "app", "conn", "pconn", "session", "out", "out_size", "done", "waiting",
                 "terminated", "idle_timeout", "login_deadline", "deflate", "inflate", "reserved", "deadline")

    def __init__(self, server: ImapServer, conn: Connection) -> None:
        self.server = server
        self.app = server.app
        self.conn = conn
        limits = self.app.config.limits
        self.reserved = 0  # octets of this command's literals taken from the in-flight budget
        self.pconn = ImapConnection(max_literal_size=limits.imap_max_literal,
                                    max_preauth_literal_size=PREAUTH_LITERAL_LIMIT,
                                    max_bad_before_login=MAX_BAD_BEFORE_LOGIN, max_bad_in_a_row=MAX_BAD_IN_A_ROW,
                                    literal_gate=self._literal_gate)
        self.out: list[bytes] = []
        self.out_size = 0
        self.done = False
        self.waiting = False  # blocked reading from the client (between commands or in IDLE)
        self.terminated: str | None = None
        self.idle_timeout = float(limits.idle_timeout)
        self.login_deadline = (asyncio.get_running_loop().time()
                               + PREAUTH_TOTAL_FACTOR * min(PREAUTH_TIMEOUT, self.idle_timeout))
        self.deflate: Any = None  # zlib compress/decompress objects once COMPRESS is active
        self.inflate: Any = None
        self.deadline = ReadDeadline()  # (created in the connection's task, which it cancels)
        self.session = Session(self)

    # -- policy ----------------------------------------------------------------------------------
    @property
    def starttls_available(self) -> bool:
        return not self.conn.tls and self.app.tls is not None and not self.conn.listener.implicit_tls

    @property
    def auth_allowed(self) -> bool:
        return password_login_allowed(self.app.config.security, tls=self.conn.tls, loopback=self.conn.is_loopback)

    # -- output ----------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if data:
            self.out.append(data)
            self.out_size += len(data)

    def _write(self, data: bytes) -> None:
        if self.deflate is not None:
            # RFC 4978 section 4: each batch of responses ends with a sync flush, so the client
            # can decode everything sent so far without waiting for more.
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.conn.write(data)

    async def _read(self) -> bytes:
        """Bytes from the client (inflated once COMPRESS is active); b"" at EOF."""
        inflate = self.inflate
        if inflate is None:
            return await self.conn.read()
        while True:
            data = inflate.unconsumed_tail
            if not data:
                data = await self.conn.read()
                if not data:
                    return b""
            try:
                out = inflate.decompress(data, INFLATE_CHUNK)
            except zlib.error:
                log.info("IMAP %s from %s: invalid compressed data, closing", self._who(), self.conn.remote_ip)
                return b""
            if out:
                return out
            if inflate.eof:  # the client ended its DEFLATE stream: nothing more can follow
                return b""

    async def flush(self) -> None:
        if self.out:
            out = self.out
            self.out, self.out_size = [], 0
            self._write(out[0] if len(out) == 1 else b"".join(out))
        await self.conn.drain()
        if self.conn.closed:
            self.done = True

    async def maybe_flush(self) -> None:
        if self.out_size >= FLUSH_AT:
            await self.flush()

    # -- input -----------------------------------------------------------------------------------
    def _timeout(self) -> float:
        if self.session.state is State.NOT_AUTHENTICATED:
            left = self.login_deadline - asyncio.get_running_loop().time()
            return max(0.0, min(PREAUTH_TIMEOUT, self.idle_timeout, left))
        return self.idle_timeout

    async def next_event(self) -> Any:
        """The next protocol event, reading (and flushing output) as needed."""
        while True:
            event = self.pconn.next_event()
            if event is not NEED_DATA:
                return event
            await self.flush()
            if self.done or self.terminated:
                return ConnectionClosed()
            if self.pconn.mid_command:
                # A literal (or the rest of a line) is on its way: acknowledge it at once, or a
                # client's last bytes wait for our delayed ACK (Connection.quickack).
                self.conn.quickack()
            self.waiting = True
            try:
                # (Connection.read's own timeout looks like EOF: TimeoutError is an OSError).
                if self.session.notifier is None or self.pconn.mid_command:
                    data = await self.deadline.wait(self._read(), self._timeout())
                else:
                    data = await self.deadline.wait(self._read_telling_news(), self._timeout())
            except (TimeoutError, asyncio.TimeoutError):
                self._autologout()
                return ConnectionClosed()
            finally:
                self.waiting = False
            self.pconn.receive_data(data)

    async def _read_telling_news(self) -> bytes:
        """Read the client's next command; until it comes, tell NOTIFY's news as it happens
        (RFC 5465: the client listens even when no command is in progress)."""
        read_task = asyncio.ensure_future(self._read())
        try:
            while not await self._wait_for_news(read_task, idle=False):
                if self.terminated and not self.done:
                    self._say_terminated()
                if self.done:
                    return b""
            return read_task.result()
        finally:
            if not read_task.done():
                read_task.cancel()

    async def _wait_for_news(self, read_task: asyncio.Future[bytes], *, idle: bool) -> bool:
        """Wait for input (True) or for news, which is then sent (False). The news: NOTIFY's
        and, when NOTIFY has a SELECTED group (or in IDLE), the selected mailbox's changes.
        In IDLE, TimeoutError after ``idle_timeout`` without either."""
        session = self.session
        notifier = session.notifier
        view = session.selected
        watch_view = view is not None and (idle or (notifier is not None and notifier.watches_selected))
        waiters: list[asyncio.Future[Any]] = [read_task]
        if watch_view:
            assert view is not None
            waiters.append(asyncio.ensure_future(view.wait()))
        if notifier is not None:
            waiters.append(asyncio.ensure_future(notifier.wait()))
        try:
            finished, _ = await asyncio.wait(waiters, timeout=self.idle_timeout if idle else None,
                                             return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waiters[1:]:
                if not task.done():
                    task.cancel()
        if not finished:
            raise TimeoutError
        if read_task in finished:
            return True
        self.waiting = False  # not to be cut short by `terminate` halfway through
        try:
            if watch_view and session.selected is view:
                # SELECTED-DELAYED keeps expunges for a command (RFC 5465 section 6.1.2)
                delayed = not idle and notifier is not None and notifier.delayed
                await session.send_updates(allow_expunge=not delayed)
            await session.tell_news()
            await self.flush()
        finally:
            self.waiting = True
        return False

    def _autologout(self) -> None:
        log.info("IMAP %s from %s: idle for too long, closing", self._who(), self.conn.remote_ip)
        self.send(r.bye("Autologout; idle for too long"))
        self.done = True

    def _who(self) -> str:
        account = self.session.account
        return account.address if account is not None else "(not logged in)"

    # -- the loop ----------------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            self.send(r.untagged_ok("postoffice IMAP4rev2 server ready",
                                    Code.capability(self.session.capabilities())))
            while not self.done:
                event = await self.next_event()
                if isinstance(event, CommandReceived):
                    await self.session.handle(event.tag, event.command)
                elif isinstance(event, ConnectionClosed):
                    break
                else:
                    self._protocol_event(event)
                if self.reserved and not isinstance(event, ContinuationNeeded):
                    self._release_literals()  # the command is done (or dropped): its literals too
                if self.terminated and not self.done:
                    self._say_terminated()
                await self.maybe_flush()
            await self.flush()
        finally:
            self.deadline.close()
            self._release_literals()
            self.done = True
            self.session.close()
            await self.conn.close()

    def invalid_command(self, response: bytes) -> None:
        """Answer a command that could not run (BAD); the connection counts them and a client
        over the limit gets BYE (ImapConnection.note_command)."""
        self.send(response)
        if self.pconn.note_command(False) and not self.done:
            log.info("IMAP %s from %s: too many invalid commands, closing", self._who(), self.conn.remote_ip)
            self.send(r.bye("Too many invalid commands"))
            self.done = True

    def _literal_gate(self, size: int) -> bool:
        """Asked by the connection before a literal is read: room in the in-flight budget?"""
        if not self.app.inflight.reserve(size, self.conn.remote_ip):
            return False
        self.reserved += size
        return True

    def _release_literals(self) -> None:
        self.app.inflight.release(self.reserved)
        self.reserved = 0

    def _protocol_event(self, event: Any) -> None:
        if isinstance(event, InvalidCommand):
            text = event.message
            if event.unknown:
                text = f"Unknown command: {text}"
            self.invalid_command(r.bad(event.tag, text[:1].upper() + text[1:]))
        elif isinstance(event, ContinuationNeeded):
            self.send(r.continuation("Ready for literal data"))
        elif isinstance(event, LiteralRejected):
            text = f"Literal of {event.size} octets is larger than the limit of {event.limit}"
            if event.busy:  # servers/inflight.py: a temporary refusal
                self.send(r.no(event.tag, "Too much mail in transit on this server; try again shortly",
                               Code.LIMIT))
            elif event.before_login:
                self.send(r.bad(event.tag, text + " before login", Code.TOOBIG))
                self.send(r.bye("Connection closed: literal too large before login", Code.TOOBIG))
                self.done = True
            elif event.must_close:
                self.send(r.bad(event.tag, text, Code.TOOBIG))
                self.send(r.bye("Connection closed: literal too large", Code.TOOBIG))
                self.done = True
            else:
                self.send(r.no(event.tag, text, Code.TOOBIG))
        elif isinstance(event, LineTooLong):
            self.invalid_command(r.bad(event.tag, f"Command line too long (the limit is {event.limit} octets)"))
        elif isinstance(event, IdleDone):
            self.invalid_command(r.bad(None, "DONE without IDLE"))
        else:
            self.invalid_command(r.bad(None, "Unexpected input"))

    # -- STARTTLS ------------------------------------------------------------------------------------
    async def start_tls(self, ok_line: bytes) -> None:
        self.send(ok_line)
        await self.flush()
        clean = self.pconn.start_tls()
        if not clean or self.conn.pipelined_plaintext():
            # CVE-2011-0411 class: plaintext pipelined after STARTTLS is dropped, never run inside
            # TLS (conn.start_tls clears the reader's buffer); the handshake goes on, as in SMTP/POP3.
            log.info("IMAP from %s: discarded data pipelined after STARTTLS", self.conn.remote_ip)
        if self.app.tls is None or not await self.conn.start_tls(self.app.tls_context("imap")):
            self.done = True

    # -- COMPRESS=DEFLATE (RFC 4978) ------------------------------------------------------------------
    async def start_compress(self, ok_line: bytes) -> None:
        """Send the tagged OK uncompressed, then switch both directions to raw DEFLATE
        (RFC 1951, no zlib header: wbits -15; RFC 4978 section 4). Over TLS the compression
        sits inside the TLS layer, as the RFC requires (section 7)."""
        self.send(ok_line)
        await self.flush()
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)
        pending = self.pconn.start_compression()
        if pending:  # compressed bytes that came in with the COMPRESS command
            try:
                self.pconn.receive_data(self.inflate.decompress(pending, INFLATE_CHUNK))
            except zlib.error:
                self.done = True

    # -- IDLE ----------------------------------------------------------------------------------------
    async def idle(self, session: Session, tag: bytes) -> bytes:
        """RFC 2177: ``+ idling``, push changes as they happen, until DONE."""
        self.send(r.continuation("idling"))
        self.pconn.expect_idle_done()
        view = session.selected
        read_task: asyncio.Future[bytes] | None = None
        try:
            if view is not None:
                await session.send_updates(allow_expunge=True)
            await self.flush()
            while True:
                event = self.pconn.next_event()
                if event is NEED_DATA:
                    if self.done or self.terminated:
                        return b""
                    if read_task is None:
                        read_task = asyncio.ensure_future(self._read())
                    self.waiting = True
                    try:
                        if not await self._wait_for_news(read_task, idle=True):
                            continue  # news sent (RFC 2177; RFC 5465 section 4)
                    except TimeoutError:
                        self._autologout()
                        return b""
                    finally:
                        self.waiting = False
                    data = read_task.result()
                    read_task = None
                    self.pconn.receive_data(data)
                    continue
                if isinstance(event, IdleDone):
                    return r.ok(tag, "IDLE terminated")
                if isinstance(event, ConnectionClosed):
                    self.done = True
                    return b""
                if isinstance(event, InvalidCommand):
                    return r.bad(tag, "Expected DONE to end IDLE")
                self._protocol_event(event)
                return r.bad(tag, "IDLE ended by unexpected input")
        finally:
            if read_task is not None:
                read_task.cancel()

    # -- ended from outside --------------------------------------------------------------------------
    def terminate(self, reason: str) -> None:
        """Called by the session registry: end this session with ``reason``."""
        if self.done or self.terminated:
            return
        self.terminated = reason
        if self.waiting:
            self._say_terminated()
            self._write(b"".join(self.out))
            self.out, self.out_size = [], 0
            self.conn.closed = True
            self.conn.writer.close()

    def _say_terminated(self) -> None:
        reason = self.terminated or "Session ended"
        registered = self.session.registered
        withdrawn = not self.app.sessions.is_open(registered)
        log.info("IMAP %s: session ended: %s", self._who(), reason)
        self.send(r.bye(reason, Code.ALERT if withdrawn else Code.UNAVAILABLE))
        self.done = True


__all__ = ["ImapServer", "ImapHandler"]
