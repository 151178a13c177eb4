"""POP3 on 110 (STLS) and 995 (implicit TLS): the asyncio glue around the sans-IO session.

`Pop3Server.handle` runs one connection: bytes from the socket go into a
:class:`~postoffice.protocols.pop3.Pop3Connection`, its events into a
:class:`~postoffice.protocols.pop3.Pop3Session`, and the session's actions are performed here
against the shared services (the contract is in ``protocols/pop3/session.py``):

=================  =========================================================================
Authenticate       ``Authenticator.authenticate(user, password, ip, "pop3")``: password check,
                   throttling and the protocol-access decision (``-ERR [AUTH] <reason>``)
OpenMaildrop       lock + snapshot INBOX (`services.maildrop`); ``-ERR [IN-USE]`` when locked;
                   the session is then registered with the `SessionRegistry`
SendMessage        the message file by the blob id the snapshot carries (read-ahead in a
                   worker thread); a file that cannot be read gives ``-ERR [SYS/TEMP]``
CommitDeletions    the address's POP3 policy (delete / keep / mark-read / trash / archive)
StartTls           flush, drop whatever was pipelined after STLS, TLS handshake
Close              flush and close; the lock is released, nothing is deleted
=================  =========================================================================

Messages deleted over IMAP during a POP3 session: the session keeps the snapshot it took at
login (RFC 1939 semantics), so RETR still returns such a message while its file exists (blob
files outlive their last reference by an hour, see ``store.collect_garbage``); once the file is
gone RETR answers ``-ERR [SYS/TEMP] message N cannot be read right now`` and the session goes
on. DELE of such a message is accepted and QUIT succeeds: there is simply nothing left to do.

Ending sessions: an inactivity timeout (``limits.pop3_timeout``; RFC 1939 §3's autologout)
closes the connection without entering UPDATE, so nothing is deleted. When an administrator
switches POP3 off for the address or forces its domain to IMAP only, the registry calls
`Pop3Handler.terminate`: the client gets ``-ERR [AUTH] <reason>`` at once (or right after the
reply it is being sent) and the connection is closed, deleting nothing.

Speed (bench/pop3_bench.py compares with Dovecot): the snapshot carries each message's blob
id and size, so RETR needs no database query; a message file already in the page cache is read
on the loop with one non-blocking ``preadv2`` (``RWF_NOWAIT``), anything else in a worker thread
in sequential read-ahead batches; bodies are never re-scanned for bare LF (the store keeps CRLF)
and are dot-stuffed in one pass; after answering RETR n, while the client is still taking the
message in, the server reads and dot-stuffs message n+1 for the RETR that usually follows (only
from the page cache, never waiting); replies to pipelined commands are queued and handed to the
transport together as a list (``writev`` under uvloop, no joining copy) once input runs dry or
256 KiB are pending. The writer is drained between batches, so a client that does not read
cannot make the server buffer without bound, and one that stops reading for
``pop3_timeout`` is cut off like an idle one.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from typing import Any

from ..protocols.pop3 import (
    NEED_DATA,
    AuthInvalid,
    AuthOk,
    AuthRefused,
    AuthResult,
    AuthTemporaryFailure,
    Authenticate,
    Close,
    CommitDeletions,
    Continuation,
    Err,
    Maildrop,
    MaildropInUse,
    MaildropResult,
    MaildropUnavailable,
    MessageInfo,
    MultiLine,
    Ok,
    OpenMaildrop,
    Output,
    Pop3Connection,
    Pop3Policy,
    Pop3Session,
    Reply,
    ResponseCode,
    SendMessage,
    StartTls,
    State,
    message_body,
)
from ..services.auth import AuthStatus, authzid_permitted, password_login_allowed
from ..services.maildrop import LATER, MaildropBusy, Snapshot, maildrop_service
from ..services.sessions import OpenSession
from ..store import Account
from .listener import READ_SIZE, Connection

log = logging.getLogger(__name__)

#: Pending replies are handed to the transport once they add up to this much (or input runs dry).
FLUSH_AT = 256 * 1024
_REPLIES = (Ok, Err, MultiLine, Continuation)
_REPLY_TYPES = frozenset(_REPLIES)  # (all final classes: an exact type test is enough)
#: Below this many buffered octets a transport is not paused (asyncio's and uvloop's default
#: high-water mark is 64 KiB), so waiting in drain() is pointless: skip the coroutine.
PAUSE_BELOW = 64 * 1024
#: After a session ends, a client gets this long to take the last replies before its
#: connection is dropped (a close() with unsent output otherwise waits for it forever).
CLOSE_GRACE = 5.0
#: Longest TLS handshake after STLS (also bounded by limits.pop3_timeout).
STLS_HANDSHAKE_TIMEOUT = 30.0


def _buffered(transport: asyncio.WriteTransport) -> int:
    """Octets the transport still holds; 0 once it is gone (asyncio's TLS transport raises
    AttributeError from get_write_buffer_size() after it was closed twice or torn down)."""
    try:
        return transport.get_write_buffer_size()
    except Exception:  # noqa: BLE001
        return 0


def _abort(transport: asyncio.BaseTransport) -> None:
    """Drop a connection that a close() left open; a no-op once it is gone."""
    try:
        transport.abort()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - already torn down: nothing to do
        pass


class Pop3Server:
    """The protocol server for the ``pop3`` and ``pop3s`` listeners."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.maildrops = maildrop_service(app.store)
        self.maildrops.bus = app.bus  # the lock holds across worker processes

    async def handle(self, conn: Connection) -> None:
        await Pop3Handler(self, conn).run()


class Pop3Handler:
    """One POP3 connection."""

    def __init__(self, server: Pop3Server, conn: Connection) -> None:
        self.server = server
        self.app = server.app
        self.conn = conn
        security = self.app.config.security
        policy = Pop3Policy(
            tls_available=self.app.tls is not None,
            # what the plaintext-login rule says without TLS; the session adds "or under TLS"
            allow_plaintext_auth=password_login_allowed(security, tls=False, loopback=conn.is_loopback),
            sasl_mechanisms=("PLAIN", "LOGIN"),
        )
        self.pconn = Pop3Connection()
        self.session = Pop3Session(policy, tls_active=conn.tls)
        self.timeout = float(self.app.config.limits.pop3_timeout)
        self.account: Account | None = None
        self.app_password: Any = None  # the app password that logged in (AuthResult.app_password)
        self.snapshot: Snapshot | None = None
        self.registered: OpenSession | None = None
        self.done = False
        self.idle = False  # waiting for the client's next bytes
        self.writing = False  # waiting for the client to read what was sent
        self._activity = 0.0  # loop time of the last progress either way
        self._watchdog_handle: asyncio.TimerHandle | None = None
        self.terminated: str | None = None  # reason given by the session registry
        self._out: list[bytes] = []
        self._out_size = 0
        self._guess: int | None = None  # the message a sequential client will RETR next
        self._prepared: tuple[int, bytes, bytes] | None = None  # (index, data, stuffed body)

    # -- main loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        conn, pconn, session = self.conn, self.pconn, self.session
        reader = conn.reader  # the same object before and after STLS
        loop = asyncio.get_running_loop()
        self._activity = loop.time()
        self._watchdog_handle = loop.call_later(self.timeout, self._watchdog)
        try:
            self._emit(pconn.send(session.greeting()))
            while not self.done:
                if self.terminated:
                    self._say_terminated()
                    break
                event = pconn.next_event()
                if event is NEED_DATA:
                    if self._out:  # (what _flush does, minus a coroutine per command)
                        self._write_out()
                    if _buffered(conn.writer.transport) > PAUSE_BELOW:
                        await self._drain()
                    if conn.closed:
                        break
                    if self._guess is not None:
                        # After this iteration has put the reply on the wire (uvloop writes
                        # queued output at the end of the iteration), not before.
                        loop.call_soon(self._prepare)
                    self.idle = True
                    try:  # (what Connection.read does, minus a coroutine per command)
                        data = await reader.read(READ_SIZE)
                    except (ConnectionError, ssl.SSLError, OSError):
                        data = b""
                    finally:
                        self.idle = False
                    self._activity = loop.time()
                    if self.done:
                        break  # timed out or terminated: the client has been told
                    pconn.receive_data(data)
                    continue
                outputs = session.handle(event)
                first = outputs[0] if len(outputs) == 1 else None
                if type(first) is SendMessage:  # RETR/TOP: answered at once if no waiting
                    outputs = self._message_now(first) or outputs
                    first = outputs[0] if len(outputs) == 1 else None
                if type(first) in _REPLY_TYPES:
                    self._reply(first)  # most commands: one reply, no action
                else:
                    await self._perform(outputs)
                if self._out_size >= FLUSH_AT:
                    await self._flush()
            await self._flush()
        finally:
            if self._watchdog_handle is not None:
                self._watchdog_handle.cancel()
            self._finish()
            transport = conn.writer.transport  # (the TLS one after STLS)
            await conn.close()
            # A client that stops reading keeps a closed transport (and its socket) open for
            # as long as it likes: the replies still queued are never flushed. Give it a few
            # seconds to take them, then drop the connection (the session is over already).
            loop.call_later(min(CLOSE_GRACE, self.timeout), _abort, transport)

    def _watchdog(self) -> None:
        """One timer per connection (cheaper than one per read): RFC 1939 §3's autologout for
        a client that sends nothing, and the same limit for one that stops reading."""
        if self.done:
            return
        loop = asyncio.get_running_loop()
        left = self._activity + self.timeout - loop.time()
        if left > 0 or not (self.idle or self.writing):
            self._watchdog_handle = loop.call_later(max(left, 0.05), self._watchdog)  # not yet due
        elif self.idle:
            self._timed_out()
        else:
            self._write_stalled()

    def _timed_out(self) -> None:
        """Autologout: close without entering UPDATE, so nothing is deleted."""
        log.info("POP3 %s from %s: idle for %.0f s, closing (nothing deleted)",
                 self.session.username or "(not logged in)", self.conn.remote_ip, self.timeout)
        self.done = True
        self._emit(self.pconn.send(Err("autologout: idle for too long, nothing was deleted")))
        self._close_now()

    def _close_now(self) -> None:
        """From outside the loop while it waits for input: write what is pending and close;
        the pending read then returns b"" and the loop ends."""
        self._write_out()
        self.conn.closed = True
        self.conn.writer.close()
        # A TLS close waits for the peer's close_notify before the reader sees EOF; the loop
        # must not wait for that (it holds the maildrop lock): wake it now.
        self.conn.reader.feed_eof()

    def _finish(self) -> None:
        """Whatever way the session ended: unlock, unregister. Never deletes anything."""
        if self.registered is not None:
            self.app.sessions.remove(self.registered)
            self.registered = None
        self.server.maildrops.release(self.snapshot)
        self.done = True

    # -- output --------------------------------------------------------------------------------

    def _emit(self, data: bytes) -> None:
        self._out.append(data)
        self._out_size += len(data)

    def _write_out(self) -> None:
        """Hand the pending replies to the transport in one call (writev under uvloop)."""
        out = self._out
        if out:
            self._out, self._out_size = [], 0
            transport = self.conn.writer.transport  # (StreamWriter.write* only forward to it)
            if not self.conn.closed and not transport.is_closing():
                if len(out) == 1:
                    transport.write(out[0])
                else:
                    transport.writelines(out)

    async def _flush(self) -> None:
        if self._out:
            self._write_out()
        if _buffered(self.conn.writer.transport) > PAUSE_BELOW:
            await self._drain()

    async def _drain(self) -> None:
        """Wait until the transport takes more output; a client that stops reading for
        ``pop3_timeout`` is cut off by the watchdog (it would otherwise hold the maildrop
        lock forever)."""
        if not _buffered(self.conn.writer.transport):
            return  # everything went to the kernel at once: the usual case
        self.writing = True
        try:
            await self.conn.drain()
        finally:
            self.writing = False
            self._activity = asyncio.get_running_loop().time()

    def _write_stalled(self) -> None:
        log.info("POP3 %s from %s: not reading for %.0f s, closing (nothing deleted)",
                 self.session.username or "(not logged in)", self.conn.remote_ip, self.timeout)
        self.done = True
        self.conn.closed = True
        self.conn.writer.transport.abort()  # the pending drain fails and the loop ends

    def _reply(self, reply: Reply) -> None:
        """Queue a reply; the loop writes the queue when input runs dry or it grows big."""
        if type(reply) is MultiLine:  # status and body go out as they are, never joined
            status, body = self.pconn.send(reply.status), reply.body
            self._out += (status, body)
            self._out_size += len(status) + len(body)
        else:
            self._emit(self.pconn.send(reply))

    # -- actions -------------------------------------------------------------------------------

    async def _perform(self, outputs: list[Output]) -> None:
        session = self.session
        queue: deque[Output] = deque(outputs)
        while queue:
            out = queue.popleft()
            if isinstance(out, SendMessage):
                assert self.snapshot is not None
                index = self.snapshot.index(out.uid, out.msg)
                data = None if index is None else await self.server.maildrops.read(self.snapshot, index)
                # The store keeps every message with CRLF line ends (store._put_blob).
                queue.extend(session.on_message(out, data, canonical=True))
            elif isinstance(out, Authenticate):
                queue.extend(session.on_auth_result(await self._authenticate(out)))
            elif isinstance(out, OpenMaildrop):
                queue.extend(session.on_maildrop(await self._open_maildrop()))
            elif isinstance(out, CommitDeletions):
                ok = await self._commit(out)
                if ok is None:  # the client is gone: no reply, nothing deleted
                    self.done = True
                    return
                queue.extend(session.on_commit_result(ok))
            elif isinstance(out, StartTls):
                if not await self._start_tls():
                    self.done = True
                    return
                queue.extend(session.on_tls_started())
            elif isinstance(out, Close):
                self.done = True
            else:
                self._reply(out)
                if self._out_size >= FLUSH_AT:
                    await self._flush()

    def _message_now(self, action: SendMessage) -> list[Output] | None:
        """The session's answer to RETR/TOP when the message can be had without waiting
        (prepared, read ahead or in the page cache), skipping the general action loop; None
        if it must wait."""
        snapshot = self.snapshot
        assert snapshot is not None
        index = snapshot.index(action.uid, action.msg)
        if index is None:
            return None
        prepared, self._prepared = self._prepared, None
        if action.top_lines is None:
            self._guess = index + 1 if index + 1 < len(snapshot) else None
            if prepared is not None and prepared[0] == index:
                return self.session.on_message(action, prepared[1], canonical=True, body=prepared[2])
        data = self.server.maildrops.read_now(snapshot, index)
        if data is LATER:
            return None
        return self.session.on_message(action, data, canonical=True)

    def _prepare(self) -> None:
        """While the client is busy with the message just sent, make the one after it ready
        (read and dot-stuffed) for the RETR that usually comes next; only if that needs no
        waiting. One message at most, dropped at the next RETR/TOP whatever it asks for."""
        index, self._guess = self._guess, None
        snapshot = self.snapshot
        if index is None or snapshot is None or self.done or self.session.state is not State.TRANSACTION:
            return
        data = self.server.maildrops.read_now(snapshot, index)
        if isinstance(data, bytes):
            self._prepared = (index, data, message_body(data, None, canonical=True))

    async def _authenticate(self, action: Authenticate) -> AuthResult:
        if not authzid_permitted(action.authzid, action.username):
            return AuthRefused("acting as another user is not supported")
        try:
            result = await self.app.auth.authenticate(action.username, action.password,
                                                      self.conn.remote_ip, "pop3")
        except Exception:  # noqa: BLE001 - the database is down or similar: try again later
            log.exception("POP3 authentication of %s failed", action.username)
            return AuthTemporaryFailure()
        if result.status is AuthStatus.OK and result.account is not None:
            self.account = result.account
            self.app_password = result.app_password
            return AuthOk(result.account.address)
        if result.status is AuthStatus.REFUSED:
            return AuthRefused(result.reason)
        if result.status is AuthStatus.THROTTLED:
            return AuthTemporaryFailure(result.reason or "too many failed logins; try again later")
        return AuthInvalid()

    async def _open_maildrop(self) -> MaildropResult:
        account = self.account
        assert account is not None
        try:
            snapshot = await self.server.maildrops.open(account, owner=self)
        except MaildropBusy:
            log.info("POP3 %s from %s: maildrop in use", account.address, self.conn.remote_ip)
            return MaildropInUse()
        except Exception:  # noqa: BLE001
            log.exception("POP3 %s: cannot open the maildrop", account.address)
            return MaildropUnavailable()
        self.snapshot = snapshot
        self.registered = self.app.sessions.add(OpenSession(
            protocol="pop3", account_id=account.id, address=account.address, remote=self.conn.remote_ip,
            tls=self.conn.tls, port=self.conn.local_port, terminate=self.terminate,
            app_password=self.app_password.name if self.app_password else "",
            app_password_id=self.app_password.id if self.app_password else None))
        log.info("POP3 login %s from %s (%s, %d messages)", account.address, self.conn.remote_ip,
                 "TLS" if self.conn.tls else "plain", len(snapshot))
        return Maildrop(list(map(MessageInfo, snapshot.uidls, snapshot.sizes)))

    async def _client_still_there(self) -> bool:
        """Hand every reply sent so far to the kernel; False if the connection broke meanwhile.

        A client that pipelined "RETR 1 / DELE 1 / QUIT" and vanished while the message was
        being sent must not lose the message: QUIT only counts if what preceded it went out."""
        await self._flush()
        transport = self.conn.writer.transport
        if _buffered(transport) and not transport.is_closing():
            try:
                high = transport.get_write_buffer_limits()[1]
                transport.set_write_buffer_limits(high=0)
            except Exception:  # noqa: BLE001 - the TLS transport was torn down: client gone
                return False
            try:
                await self._drain()
            finally:
                if not transport.is_closing():
                    transport.set_write_buffer_limits(high=high)
        return not (self.conn.closed or transport.is_closing())

    async def _commit(self, action: CommitDeletions) -> bool | None:
        snapshot = self.snapshot
        assert snapshot is not None
        if not await self._client_still_there():
            log.info("POP3 %s: connection lost before QUIT completed; nothing deleted", snapshot.address)
            self.server.maildrops.release(snapshot)
            return None
        try:
            report = await self.server.maildrops.commit(snapshot, action.uids)
        except Exception:  # noqa: BLE001 - RFC 1939 §6: -ERR, and the lock goes anyway
            log.exception("POP3 %s: applying deletions failed", snapshot.address)
            return False
        finally:
            self.server.maildrops.release(snapshot)
        if report.requested:
            log.info("POP3 %s: %d of %d deleted messages handled by policy %s", snapshot.address,
                     report.applied, report.requested, report.policy)
        return True

    async def _start_tls(self) -> bool:
        await self._flush()  # the +OK goes out in plaintext, before the handshake
        discarded = self.pconn.start_tls()
        if discarded:
            log.warning("POP3 from %s: discarded %d octets pipelined after STLS", self.conn.remote_ip,
                        len(discarded))
        timeout = min(STLS_HANDSHAKE_TIMEOUT, self.timeout)
        if self.app.tls is None or not await self.conn.start_tls(self.app.tls_context("pop3"), timeout=timeout):
            return False
        return True

    # -- ended from outside --------------------------------------------------------------------

    def terminate(self, reason: str) -> None:
        """The session registry ends this session: POP3 was switched off for the address, its
        domain was forced to IMAP only, or the server is shutting down. Nothing is deleted."""
        if self.terminated or self.done:
            return
        self.terminated = reason
        if self.idle:  # tell the client now
            self._say_terminated()
            self._close_now()
        # else the loop says it as soon as the reply being sent is out

    def _say_terminated(self) -> None:
        if self.done:
            return
        self.done = True
        reason = self.terminated or ""
        # The registry unregisters sessions whose access it withdrew; one still registered is
        # being ended for another reason (the server shutting down): a temporary condition.
        withdrawn = not self.app.sessions.is_open(self.registered)
        code = ResponseCode.AUTH if withdrawn else ResponseCode.SYS_TEMP
        log.info("POP3 %s: session ended: %s (nothing deleted)", self.session.username, reason)
        self._emit(self.pconn.send(Err(reason, code)))


__all__ = ["Pop3Handler", "Pop3Server"]
