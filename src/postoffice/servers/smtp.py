"""The SMTP server: port 25 (mail from other servers), 587 (STARTTLS submission), 465 (TLS).

The socket loop feeds bytes to the sans-IO :class:`SmtpConnection` (protocols/smtp), which
answers syntax and sequence errors itself; this module makes the business decisions and tells
the connection the outcome (see the connection module's docstring for the split).

Modes (``SmtpServer(app, mode)``):

* ``smtp`` (port 25, MTA): no AUTH at all; RCPT only for hosted domains (550 5.7.1 relaying
  denied otherwise: never an open relay) and existing addresses, aliases, plus-addresses or a
  catch-all (550 5.1.1 otherwise); STARTTLS offered. An optional :attr:`SmtpServer.inbound_checker`
  (SPF/DKIM/DMARC) sees each message before delivery.
* ``submission`` (587): STARTTLS; AUTH PLAIN/LOGIN only under TLS (unless the security
  settings allow plaintext); MAIL needs AUTH (530 5.7.0); the envelope sender and every From
  address must be the account or one of its aliases (553 5.7.1); local recipients are
  delivered, others queued. Per-account send rate (450 4.7.1).
* ``submissions`` (465): the same over implicit TLS.

Every message is acknowledged with 250 only after ``Delivery.commit`` returned, i.e. after the
store's fsynced commit. Replies to pipelined commands (RFC 2920) are collected and written in
one go when the session waits for input. Timeouts: ``limits.command_timeout`` for every read
(RFC 5321 §4.5.3.2: at least five minutes), then 421 4.4.2.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ..mail.address import InvalidAddress, normalize_address
from ..protocols import sasl
from ..protocols.smtp import (
    NEED_DATA,
    Auth,
    AuthResponse,
    Bdat,
    ConnectionClosed,
    Data,
    Ehlo,
    Expn,
    Extensions,
    Helo,
    Help,
    InvalidCommand,
    LineTooLong,
    MailFrom,
    MessageReceived,
    MessageRejected,
    Noop,
    Quit,
    RcptTo,
    Reply,
    Rset,
    SmtpConnection,
    StartTls,
    TooManyErrors,
    Vrfy,
    auth_challenge,
    ehlo_reply,
    greeting,
    helo_reply,
)
from ..protocols.smtp import replies as r
from ..services.auth import AuthStatus, authzid_permitted, password_login_allowed
from .. import cpu
from ..services.delivery import (
    HEADER_INLINE_LIMIT,
    MAX_HEADER_BLOCK,
    MAX_HOPS,
    Delivery,
    Envelope,
    SendRateLimiter,
    Trace,
    inspect_header,
    new_queue_id,
    protocol_name,
)
from ..services import spamfilter, spampolicy
from ..services.sessions import OpenSession
from ..services.spamfilter import SpamVerdict
from ..store import NotFound, QuotaExceeded
from ..store.spool import HeaderTooLarge, MessageSource, Spool
from .inflight import InflightBudget
from .listener import Connection

log = logging.getLogger(__name__)

#: Extensions we advertise: DSN (RFC 3461: ENVID/RET and NOTIFY/ORCPT go into the queue, see
#: services/delivery.py and outbound/worker.py) but no BINARYMIME (bodies are stored in
#: canonical CRLF form).
EXTENSIONS = Extensions(eightbitmime=True, binarymime=False, smtputf8=True, dsn=True)
MECHANISMS = ("PLAIN", "LOGIN")
#: Unknown recipients in one session before each further one is slowed down, and before the
#: session is closed (address harvesting).
TARPIT_AFTER = 3
MAX_BAD_RECIPIENTS = 20
#: Failed AUTH attempts in one session before it is closed with 421 (password guessing).
MAX_AUTH_FAILURES = 5
#: Message octets that count as progress and restart the inactivity timeout (see ``run``).
PROGRESS_OCTETS = 1024
#: Distinct addresses a submitted From/Sender may show before it is refused outright.
MAX_FROM_ADDRESSES = 20

R221 = r.R221_BYE
R250_OK = r.R250_OK
R252 = r.R252_CANNOT_VRFY
R252_EXPN = Reply(252, "2.5.0", "Cannot EXPN list, but will accept message and attempt delivery")
R503_NO_AUTH = Reply(503, "5.5.1", "Authentication not enabled on this port")
R530_AUTH_REQUIRED = r.R530_AUTH_REQUIRED
R550_RELAY_DENIED = Reply(550, "5.7.1", "Relaying denied")
R550_USER_UNKNOWN = Reply(550, "5.1.1", "Recipient address rejected: user unknown")
R553_SENDER = Reply(553, "5.7.1", "Sender address rejected: not owned by the authenticated user")
R553_FROM = Reply(553, "5.7.1", "From header rejected: not owned by the authenticated user")
R450_RATE = Reply(450, "4.7.1", "Sending rate limit exceeded for this address; try again later")
R452_TOO_MANY_RCPTS = r.R452_TOO_MANY_RCPTS
R452_MAILBOX_FULL = Reply(452, "4.2.2", "Mailbox full; try again later")
R552_MAILBOX_FULL = Reply(552, "5.2.2", "Mailbox full: the message exceeds the mailbox quota")
R452_NO_SPACE = Reply(452, "4.3.1", "Insufficient system storage")
R451_LOCAL_ERROR = r.R451_LOCAL_ERROR
R451_CHECK_FAILED = Reply(451, "4.7.1", "Cannot verify the message now; try again later")
R550_POLICY = Reply(550, "5.7.1", "Message rejected by policy")
R550_SPAM = Reply(550, "5.7.1", "Message rejected as spam")
R554_VIRUS = Reply(554, "5.7.1", "Message rejected: virus found")
R451_SCANNER_DOWN = Reply(451, "4.7.1", "The virus scanner is not available; try again later")
R451_SPAM_LATER = Reply(451, "4.7.1", "Message deferred by the spam filter; try again later")
R451_FILTER_DOWN = Reply(451, "4.7.1", "The spam filter is not available; try again later")
R550_SENDER_BLOCKED = Reply(550, "5.7.1", "Sender blocked by the recipient")
R550_MESSAGE_BLOCKED = Reply(550, "5.7.1", "Message rejected: sender blocked by the recipients")
R550_OUTBOUND_SPAM = Reply(550, "5.7.1", "Message rejected as spam by the outbound filter")
R554_HOPS = Reply(554, "5.4.6", "Too many hops: mail loop detected")
R421_BAD_RCPTS = Reply(421, "4.7.0", "Too many unknown recipients, closing connection")
R535_AUTHZID = Reply(535, "5.7.8", "Authentication credentials invalid")
R454_THROTTLED = Reply(454, "4.7.0", "Too many failed logins; try again later")
R550_NUL = Reply(550, "5.6.0", "NUL characters not allowed in message text")
R552_HEADER_TOO_BIG = Reply(552, "5.3.4", "Message header too large")
R452_INFLIGHT = Reply(452, "4.3.1", "Insufficient system resources: too much mail in transit, try again later")
R421_AUTH_FAILURES = Reply(421, "4.7.0", "Too many failed authentication attempts, closing connection")


class InboundVerdictLike(Protocol):
    """What an inbound checker returns (``authn.inbound.InboundVerdict`` fits).

    ``header``: trace header(s) to prepend, CRLF-terminated (b"" for none).
    ``action``: ``accept`` (INBOX), ``quarantine`` (the Junk folder), ``reject`` (550 5.7.1,
    text from an optional ``reject_reply`` attribute such as ``"5.7.1 Rejected per DMARC"``)
    or ``defer`` (451 4.7.1, e.g. a temporary DNS failure).
    """

    header: bytes
    action: str


#: ``await checker(client_ip, helo, mail_from, message)``: mail_from without brackets, ""
#: for the null sender; message is the received text without our trace headers. A verdict
#: with a ``message`` attribute (``services.mailauth.InboundResult``) supplies the text to
#: store itself (forged Authentication-Results removed, its header on top).
InboundChecker = Callable[[str, str, str, bytes], Awaitable[InboundVerdictLike]]

T = TypeVar("T")


@dataclass
class Screened:
    """What port 25's filters made of a message (`SmtpSession.screen`)."""

    source: MessageSource  # forged X-Spam-*/X-Virus-Status fields removed
    headers: bytes  # ours, to put on top
    mailboxes: dict[int, str]  # account -> Junk, where the settings or rspamd say so
    recorded: dict[int, str]  # account -> the verdict to keep once the message is stored
    spam: SpamVerdict | None


def _shared(app: Any, name: str, factory: Callable[[], T]) -> T:
    """One object per Postoffice for all three SMTP listeners (the send-rate window must
    count 587 and 465 together)."""
    attrs = app.__dict__
    if name not in attrs:
        attrs[name] = factory()
    return attrs[name]  # type: ignore[no-any-return]


def _delivery(app: Any) -> Delivery:
    delivery = Delivery(app.store, app.config.hostname)
    bus = getattr(app, "bus", None)
    if bus is not None:
        bus.listeners.append(delivery.on_event)  # account/domain changes clear its caches
    return delivery


class SmtpServer:
    """One listener's SMTP service; ``handle`` runs one session."""

    #: Port 25 only: set to an :data:`InboundChecker` to check SPF/DKIM/DMARC before delivery.
    inbound_checker: InboundChecker | None = None

    def __init__(self, app: Any, mode: str) -> None:
        if mode not in ("smtp", "submission", "submissions"):
            raise ValueError(f"unknown SMTP mode {mode!r}")
        self.app = app
        self.mode = mode
        self.submission = mode != "smtp"
        config = app.config
        self.hostname: str = config.hostname
        self.delivery: Delivery = _shared(app, "smtp_delivery", lambda: _delivery(app))
        self.send_rate: SendRateLimiter = _shared(
            app, "smtp_send_rate", lambda: SendRateLimiter(config.limits.send_rate_per_hour))

    async def handle(self, conn: Connection) -> None:
        await SmtpSession(self, conn).run()


class SmtpSession:
    def __init__(self, server: SmtpServer, conn: Connection) -> None:
        self.server = server
        self.app = server.app
        self.conn = conn
        config = self.app.config
        self.limits = config.limits
        self.security = config.security
        self.sm = SmtpConnection(max_message_size=self.limits.max_message_size, tls=conn.tls,
                                 extensions=EXTENSIONS)
        self.incoming: Incoming | None = None  # the message being received (spooled, budgeted)
        self.out = bytearray()
        self.helo = ""
        self.account: Any = None
        self.envelope: Envelope | None = None
        #: port 25: the spam settings of the transaction's accounts, read at RCPT TO
        self.policies: dict[int, spampolicy.SpamPolicy] = {}
        self.smtputf8 = False
        self.size_hint = 0
        self.mechanism: sasl.ServerMechanism | None = None
        self.session: OpenSession | None = None
        self.bad_recipients = 0
        self.auth_failures = 0
        self.via_data = False  # the message being received came by DATA (not BDAT)
        self.closing = False
        self.busy = True
        self.terminated: str | None = None

    # -- I/O ----------------------------------------------------------------------------

    def reply(self, reply: Reply) -> None:
        self.out += bytes(reply)

    async def flush(self) -> None:
        if self.out:
            self.conn.write(bytes(self.out))
            self.out.clear()
            await self.conn.drain()

    async def run(self) -> None:
        self.reply(greeting(self.server.hostname))
        loop = asyncio.get_running_loop()
        deadline: float | None = None  # when the client must have made progress by
        progress = 0  # octets received since the deadline was last set
        try:
            while not self.closing:
                event = self.sm.next_event()
                if event is NEED_DATA:
                    await self.take_message_data()
                    await self.flush()
                    if self.terminated:
                        self.reply(Reply(421, "4.7.0", self.terminated))
                        break
                    if self.conn.closed:
                        break
                    # Slowloris: the timeout runs from the last complete event, not from the
                    # last octet, so a command trickled in byte by byte still times out; DATA
                    # and BDAT text extend it for each PROGRESS_OCTETS received.
                    if deadline is None or progress >= PROGRESS_OCTETS:
                        deadline = loop.time() + self.limits.command_timeout
                        progress = 0
                    self.busy = False
                    if self.sm.receiving_message:
                        self.conn.quickack()  # DATA/BDAT arriving: ACK at once (Connection.quickack)
                    try:
                        # (asyncio.timeout, unlike wait_for, creates no task per read.)
                        async with asyncio.timeout_at(deadline):
                            data = await self.conn.read()
                    except (TimeoutError, asyncio.TimeoutError):
                        self.busy = True
                        if not self.terminated:
                            self.reply(r.R421_TIMEOUT)
                        break
                    self.busy = True
                    if self.terminated:
                        break
                    progress += len(data)
                    self.sm.receive_data(data)
                    continue
                deadline = None
                try:
                    await self.dispatch(event)
                except Exception:  # noqa: BLE001 - e.g. the database: a temporary failure
                    # The protocol state did not advance (no accept_* call), so the client
                    # may simply retry; the session goes on.
                    log.exception("SMTP %s from %s failed", type(event).__name__, self.conn.remote_ip)
                    self.mechanism = None
                    self.envelope = None if isinstance(event, MessageReceived) else self.envelope
                    self.reply(R451_LOCAL_ERROR)
                if self.terminated and not self.closing:
                    self.reply(Reply(421, "4.7.0", self.terminated))
                    break
        finally:
            self.drop_message()
            if self.session is not None:
                self.app.sessions.remove(self.session)
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - the peer is gone; nothing left to tell it
                pass

    async def _terminate(self, reason: str) -> None:
        """Called by the session registry (SMTP switched off) or at shutdown."""
        self.terminated = reason
        if not self.busy:  # idle, waiting for a command: tell the client and hang up now
            self.conn.write(bytes(Reply(421, "4.7.0", reason)))
            await self.conn.close()

    # -- events -------------------------------------------------------------------------

    async def dispatch(self, event: Any) -> None:
        if isinstance(event, MessageReceived):
            try:
                await self.message_received(event.data)
            finally:
                self.drop_message()
        elif isinstance(event, RcptTo):
            await self.rcpt(event)
        elif isinstance(event, MailFrom):
            await self.mail(event)
        elif isinstance(event, Data):
            self.reply(r.R354_START_DATA)
            self.sm.begin_data()
            self.via_data = True
        elif isinstance(event, Bdat):
            await self.take_message_data()
            self.reply(Reply(250, "2.0.0", f"{event.size} octets received"))
        elif isinstance(event, (Ehlo, Helo)):
            self.drop_message()  # (a BDAT transaction in progress ends here)
            self.helo = event.domain
            self.envelope = None
            if isinstance(event, Ehlo):
                self.reply(ehlo_reply(self.server.hostname, self.ehlo_keywords()))
            else:
                self.reply(helo_reply(self.server.hostname))
        elif isinstance(event, InvalidCommand):
            self.reply(event.reply)
        elif isinstance(event, MessageRejected):
            self.drop_message()
            self.envelope = None
            self.via_data = False
            self.reply(event.reply)
        elif isinstance(event, AuthResponse):
            await self.auth_response(event.line)
        elif isinstance(event, Auth):
            await self.auth(event)
        elif isinstance(event, StartTls):
            await self.starttls()
        elif isinstance(event, Rset):
            self.drop_message()
            self.envelope = None
            self.reply(r.R250_RESET)
        elif isinstance(event, Noop):
            self.reply(R250_OK)
        elif isinstance(event, Quit):
            self.reply(R221)
            self.closing = True
        elif isinstance(event, Vrfy):
            self.reply(R252)  # never reveal whether an address exists
        elif isinstance(event, Expn):
            self.reply(R252_EXPN)
        elif isinstance(event, Help):
            self.reply(r.R214_HELP)
        elif isinstance(event, LineTooLong):
            self.mechanism = None
            self.reply(event.reply)
        elif isinstance(event, TooManyErrors):
            self.reply(event.reply)
            self.closing = True
        elif isinstance(event, ConnectionClosed):
            self.closing = True
        else:  # pragma: no cover - every event type is handled above
            log.error("unhandled SMTP event %r", event)
            self.reply(R451_LOCAL_ERROR)

    # -- greeting, TLS, AUTH ------------------------------------------------------------

    def auth_allowed(self) -> bool:
        """AUTH is offered on submission under TLS, or without TLS only when allowed."""
        if not self.server.submission:
            return False
        return password_login_allowed(self.security, tls=self.conn.tls, loopback=self.conn.is_loopback)

    def ehlo_keywords(self) -> list[str]:
        starttls = self.server.mode != "submissions" and self.app.tls is not None
        return self.sm.ehlo_keywords(starttls=starttls, auth=MECHANISMS if self.auth_allowed() else ())

    async def starttls(self) -> None:
        context = self.app.tls_context("smtp") if self.app.tls is not None else None
        if context is None or self.server.mode == "submissions":
            self.reply(r.R454_TLS_UNAVAILABLE)
            return
        self.reply(r.R220_READY_TLS)
        await self.flush()
        if self.sm.start_tls():
            # RFC 3207 §4.2 / CVE-2011-0411: commands pipelined after STARTTLS are dropped.
            log.info("discarded plaintext pipelined after STARTTLS from %s", self.conn.remote_ip)
        if not await self.conn.start_tls(context):
            self.closing = True
            return
        # RFC 3207 §4.2: forget everything learnt before TLS, an AUTH included.
        self.helo = ""
        self.envelope = None
        self.mechanism = None
        self.account = None
        if self.session is not None:
            self.app.sessions.remove(self.session)
            self.session = None

    async def auth(self, cmd: Auth) -> None:
        if not self.server.submission:
            self.reply(R503_NO_AUTH)
            return
        if not self.auth_allowed():
            self.reply(r.R530_NEED_TLS)
            return
        mechanism = sasl.server_mechanism(cmd.mechanism) if cmd.mechanism in MECHANISMS else None
        if mechanism is None:
            self.reply(r.R504_UNKNOWN_MECHANISM)
            return
        await self.auth_step(mechanism, mechanism.start(cmd.initial_response))

    async def auth_response(self, line: bytes) -> None:
        mechanism, self.mechanism = self.mechanism, None
        if mechanism is None:  # pragma: no cover - the connection only expects one after 334
            self.reply(r.R503_BAD_SEQUENCE)
            return
        decoded = sasl.decode_response(line)
        if decoded is sasl.CANCELLED:
            self.auth_failed(r.R501_AUTH_CANCELLED)
        elif decoded is sasl.INVALID:
            self.auth_failed(r.R501_BAD_BASE64)
        else:
            assert isinstance(decoded, bytes)
            await self.auth_step(mechanism, mechanism.step(decoded))

    async def auth_step(self, mechanism: sasl.ServerMechanism, step: sasl.Step) -> None:
        if isinstance(step, sasl.Challenge):
            self.mechanism = mechanism
            self.reply(auth_challenge(sasl.encode_challenge(step.data)))
            self.sm.expect_auth_response()
            return
        if isinstance(step, sasl.SaslFailure):
            self.auth_failed(r.R535_AUTH_FAILED)
            return
        if not authzid_permitted(step.authzid, step.username):
            self.auth_failed(R535_AUTHZID)  # acting as someone else is not supported
            return
        result = await self.app.auth.authenticate(step.username, step.password, self.conn.remote_ip, "smtp")
        if result.status is AuthStatus.OK:
            self.account = result.account
            self.sm.auth_succeeded()
            self.reply(r.R235_AUTH_OK)
            self.session = self.app.sessions.add(OpenSession(
                protocol="smtp", account_id=result.account.id, address=result.account.address,
                remote=self.conn.remote_ip, tls=self.conn.tls, port=self.conn.local_port,
                terminate=self._terminate, app_password=result.app_password.name if result.app_password else "",
                app_password_id=result.app_password.id if result.app_password else None))
        elif result.status is AuthStatus.REFUSED:
            self.auth_failed(Reply(535, "5.7.1", result.reason))
        elif result.status is AuthStatus.THROTTLED:
            self.auth_failed(R454_THROTTLED)
        else:
            self.auth_failed(r.R535_AUTH_FAILED)

    def auth_failed(self, reply: Reply) -> None:
        """Answer a failed AUTH; after MAX_AUTH_FAILURES in one session, 421 and hang up."""
        self.auth_failures += 1
        if self.auth_failures >= MAX_AUTH_FAILURES:
            log.warning("too many failed AUTH attempts from %s; closing", self.conn.remote_ip)
            self.reply(R421_AUTH_FAILURES)
            self.closing = True
            return
        self.reply(reply)

    # -- the mail transaction -----------------------------------------------------------

    async def mail(self, cmd: MailFrom) -> None:
        mail_from = str(cmd.address) if cmd.address is not None else ""
        if self.server.submission:
            if self.account is None:
                self.reply(R530_AUTH_REQUIRED)
                return
            if not mail_from or not await self.server.delivery.may_send_as(self.account, mail_from):
                self.reply(R553_SENDER)
                return
            if not self.server.send_rate.allows(self.account.id):
                self.reply(R450_RATE)
                return
        if cmd.params.size and not self.app.inflight.fits(cmd.params.size):
            # RFC 1870 §6.2: temporarily not enough room for a message of that size.
            self.app.inflight.refuse(cmd.params.size, self.conn.remote_ip)
            self.reply(R452_INFLIGHT)
            return
        self.envelope = Envelope(mail_from, account=self.account, envid=cmd.params.envid, ret=cmd.params.ret)
        self.policies = {}
        self.smtputf8 = cmd.params.smtputf8
        self.size_hint = cmd.params.size or 0
        self.reply(r.R250_SENDER_OK)
        self.sm.accept_mail()

    async def rcpt(self, cmd: RcptTo) -> None:
        envelope = self.envelope
        assert envelope is not None
        if len(envelope.routes) >= self.limits.max_recipients:
            self.reply(R452_TOO_MANY_RCPTS)
            return
        delivery = self.server.delivery
        if cmd.address.domain == "":  # <Postmaster> (RFC 5321 §4.1.1.3)
            target = await delivery.postmaster_address()
            route = await delivery.route(target) if target else None
            if route is None or route.unknown:
                await self.unknown_recipient()
                return
        else:
            route = await delivery.route(str(cmd.address))
        if route.foreign:
            if not self.server.submission:
                self.reply(R550_RELAY_DENIED)
                return
        elif route.unknown:
            await self.unknown_recipient()
            return
        if self.server.submission and not self.server.send_rate.allows(
                self.account.id, len(envelope.routes) + 1):
            self.reply(R450_RATE)
            return
        if not self.server.submission and route.accounts and await self.sender_blocked(envelope, route.accounts):
            self.reply(R550_SENDER_BLOCKED)
            return
        full = await self.mailbox_full(route.quota)
        if full is not None:
            self.reply(full)
            return
        route.notify = cmd.params.notify
        orcpt = cmd.params.orcpt
        route.orcpt = f"{orcpt[0]};{orcpt[1]}" if orcpt is not None else None
        envelope.routes.append(route)
        self.reply(r.R250_RCPT_OK)
        self.sm.accept_rcpt()

    async def unknown_recipient(self) -> None:
        # One reply for every unknown address: 550 5.1.1 says no more than that. Repeated
        # misses are slowed down and then cut off, which makes harvesting expensive.
        self.bad_recipients += 1
        if self.bad_recipients >= MAX_BAD_RECIPIENTS:
            self.reply(R421_BAD_RCPTS)
            self.closing = True
            return
        if self.bad_recipients > TARPIT_AFTER:
            await asyncio.sleep(min(0.5 * (self.bad_recipients - TARPIT_AFTER), 5.0))
        self.reply(R550_USER_UNKNOWN)

    async def sender_blocked(self, envelope: Envelope, accounts: list[int]) -> bool:
        """Port 25: does every account of this recipient block the envelope sender? Known at
        RCPT TO, so this recipient alone is refused (services/spampolicy.py); the settings read
        here serve the end of DATA too."""
        await self.read_policies(accounts)
        if not all(self.policies[a].listing([envelope.mail_from]) == spampolicy.BLOCK for a in accounts):
            return False
        log.info("from=<%s> refused at RCPT TO: sender blocked by the recipient", envelope.mail_from)
        await self.record_verdicts("", dict.fromkeys(accounts, spampolicy.BLOCKED))
        return True

    async def read_policies(self, accounts: list[int]) -> None:
        missing = [a for a in accounts if a not in self.policies]
        if missing:
            found = await spampolicy.policies(self.app.store, missing)
            self.policies.update({a: found.get(a, spampolicy.DEFAULT) for a in missing})

    async def mailbox_full(self, quotas: dict[int, int]) -> Reply | None:
        """RCPT-time quota check (RFC 1870 SIZE when given): 452 4.2.2 / 552 5.2.2."""
        for account_id, quota in quotas.items():
            if not quota:
                continue
            if self.size_hint > quota:
                return R552_MAILBOX_FULL
            used = await self.app.store.quota_used(account_id)
            if used + self.size_hint > quota or used >= quota:
                return R452_MAILBOX_FULL
        return None

    # -- the message text: spooled as it arrives ------------------------------------------

    async def take_message_data(self) -> None:
        """Move what the connection has of the message into the spool (see `Incoming`)."""
        data = self.sm.take_message_data()
        if not data:
            return
        if self.incoming is None:
            self.incoming = Incoming(self.app.store.spool, self.app.inflight, self.conn.remote_ip,
                                     bdat=not self.via_data)
        refusal = self.incoming.feed(data)
        if refusal is None:
            refusal = await self.incoming.write()
        if refusal is not None:
            self.sm.reject_message(refusal)  # the rest is read and dropped; the reply comes at the end

    def drop_message(self) -> None:
        """Forget the message being received: spool file removed, budget given back."""
        if self.incoming is not None:
            self.incoming.discard()
            self.incoming = None

    async def message_received(self, rest: bytes) -> None:
        incoming, self.incoming = self.incoming, None
        if incoming is None:
            incoming = Incoming(self.app.store.spool, self.app.inflight, self.conn.remote_ip,
                                bdat=not self.via_data)
        self.incoming = incoming  # (dropped by the caller afterwards, whatever happens)
        refusal = incoming.feed(rest) or incoming.end()
        if refusal is None:
            refusal = await incoming.write()
        if refusal is not None:
            self.envelope = None
            self.via_data = False
            self.reply(refusal)
            return
        await self.message(await incoming.finish())

    async def message(self, data: bytes | MessageSource) -> None:
        envelope, self.envelope = self.envelope, None
        if envelope is None or not envelope.routes:  # pragma: no cover - the connection prevents it
            self.reply(r.R554_TRANSACTION_FAILED)
            return
        via_data, self.via_data = self.via_data, False
        source = MessageSource.of(data)
        block = source.header_block()
        if len(block) > MAX_HEADER_BLOCK:
            self.reply(R552_HEADER_TOO_BIG)
            return
        # The header checks are linear in the block but Python: a large block goes elsewhere.
        inspect = functools.partial(inspect_header, submission=self.server.submission, hostname=self.server.hostname,
                                    from_header=any(p.has_lists for p in self.policies.values()))
        facts = await cpu.in_process(inspect, block) if len(block) > HEADER_INLINE_LIMIT else inspect(block)
        if facts.hops >= MAX_HOPS:
            self.reply(R554_HOPS)
            return
        mailbox = "INBOX"
        extra = b""
        sign: Callable[[MessageSource], Awaitable[MessageSource]] | None = None
        if self.server.submission:
            senders = facts.senders
            if not senders:
                self.reply(R553_FROM)
                return
            # Every From and Sender address, and anything that reads as an address in their
            # display names, comments or encoded words ("alice@example.com" <mallory@...>).
            if len(facts.claimed) > MAX_FROM_ADDRESSES:
                self.reply(R553_FROM)
                return
            for sender in facts.claimed:
                if not await self.server.delivery.may_send_as(self.account, sender):
                    self.reply(R553_FROM)
                    return
            # RFC 6409 §8.2, §8.3: the MSA supplies a missing Date / Message-ID (before signing).
            if facts.completed is not None:
                source = source.replace_header(facts.completed)
            signer = getattr(self.app, "dkim_signer", None)
            if signer is not None:
                sign = functools.partial(_dkim_sign, signer, _domain_of(senders[0]))
        elif self.inbound_checker() is not None:
            verdict = await self.check_inbound(envelope, source)
            if isinstance(verdict, Reply):
                self.reply(verdict)
                return
            if verdict is not None:
                message = getattr(verdict, "message", None)
                if isinstance(message, (bytes, MessageSource)):
                    source = MessageSource.of(message)  # services.mailauth: cleaned, with its header on top
                else:
                    extra = verdict.header or b""
                    if extra and not extra.endswith(b"\r\n"):
                        extra += b"\r\n"
                if verdict.action == "quarantine":
                    mailbox = "Junk"
        queue_id = new_queue_id()
        mailboxes: dict[int, str] = {}  # per-account overrides of `mailbox` (the spam filter's Junk)
        screened: Screened | None = None
        if self.server.submission:
            refusal = await self.screen_submission(envelope, source, queue_id)
            if refusal is not None:
                self.reply(refusal)
                return
        else:
            result = await self.screen(envelope, source, queue_id, facts.senders or [])
            if isinstance(result, Reply):
                self.reply(result)
                return
            screened = result
            source, mailboxes, extra = screened.source, screened.mailboxes, screened.headers + extra
        trace = Trace(
            helo=self.helo, remote_ip=self.conn.remote_ip, queue_id=queue_id,
            protocol=protocol_name(esmtp=self.sm.esmtp, tls=self.conn.tls,
                                   authenticated=self.account is not None, utf8=self.smtputf8),
        )
        try:
            done = await self.server.delivery.commit(envelope, source, trace, extra_headers=extra, mailbox=mailbox,
                                                     sign=sign, mailboxes=mailboxes)
        except QuotaExceeded:
            too_big = any(q and source.size > q for route in envelope.routes for q in route.quota.values())
            self.reply(R552_MAILBOX_FULL if too_big else R452_MAILBOX_FULL)
            return
        except OSError as exc:
            log.error("cannot store message from %s: %s", self.conn.remote_ip, exc)
            self.reply(R452_NO_SPACE)
            return
        except NotFound as exc:  # a recipient was removed during the transaction
            log.warning("delivery from %s failed: %s", self.conn.remote_ip, exc)
            self.reply(R451_LOCAL_ERROR)
            return
        except Exception:  # noqa: BLE001 - the client must hear a temporary failure
            log.exception("delivery from %s failed", self.conn.remote_ip)
            self.reply(R451_LOCAL_ERROR)
            return
        if self.server.submission and self.account is not None:
            self.server.send_rate.record(self.account.id, envelope.recipient_count)
        if screened is not None:
            await self.record_verdicts(queue_id, screened.recorded, screened.spam)
        if done.queued and hasattr(self.app, "queue_changed"):
            self.app.queue_changed()  # the queue runner (here or in worker 0) picks the entry up at once
        log.info("%s: from=<%s> rcpts=%d local=%d queued=%d size=%d", done.queue_id, envelope.mail_from,
                  envelope.recipient_count, done.delivered, done.queued, source.size)
        self.reply(Reply(250, "2.0.0", f"Ok: queued as {done.queue_id}"))

    async def screen(self, envelope: Envelope, source: MessageSource, queue_id: str, from_header: list[str]
                     ) -> Reply | Screened:
        """Port 25: clamd, rspamd and each recipient's settings (switch, Junk threshold, allow and
        block lists: services/spampolicy.py). A refusal (already recorded), or the message with
        forged X-Spam-* fields removed, our fields, the Junk mailboxes and the verdicts to keep."""
        spam_filter = getattr(self.app, "spam_filter", None)
        scanner = getattr(self.app, "virus_scanner", None)
        local = envelope.local_accounts()
        await self.read_policies(local)  # (read at RCPT TO already)
        policies = {a: self.policies[a] for a in local}
        senders = [envelope.mail_from, *from_header]
        filtered = [a for a in local if policies[a].enabled]  # recipients who have filtering on
        checked = bool(filtered) or not local
        extra = b""
        if scanner is not None and checked:
            scan = await scanner.scan(source)
            if scan.status == "infected":  # refused for every recipient: nobody wants a virus
                await self.record_verdicts(queue_id, dict.fromkeys(local, "virus"))
                log.info("%s: from=<%s> rejected: virus %s", queue_id, envelope.mail_from, scan.virus)
                return R554_VIRUS.with_text(f"Message rejected: virus found ({scan.virus})")
            if scan.status == "unknown":
                if self.app.config.filter.on_failure == "tempfail":
                    return R451_SCANNER_DOWN
                extra = b"X-Virus-Status: unknown (the virus scanner could not be reached)\r\n"
            else:
                extra = b"X-Virus-Status: clean\r\n"
        spam: SpamVerdict | None = None
        wanted = not local or any(policies[a].listing(senders) != spampolicy.BLOCK for a in filtered)
        if spam_filter is not None and wanted:
            spam = await spam_filter.check(
                source, ip=self.conn.remote_ip, helo=self.helo, mail_from=envelope.mail_from,
                rcpts=[route.address for route in envelope.routes], queue_id=queue_id)
        placement = spampolicy.place(local, policies, senders, spam, self.app.config.filter.on_failure)
        if placement.refusal is not None:
            await self.record_verdicts(queue_id, placement.recorded, spam)
            why = "sender blocked" if placement.blocked else f"rspamd: {spam.action if spam else '-'}"
            log.info("%s: from=<%s> %s (%s, score %s)", queue_id, envelope.mail_from,
                     "rejected" if placement.refusal == spamfilter.REJECT else "deferred", why,
                     spam.score if spam else None)
            return self.refusal_reply(placement, spam)
        if spam is not None:
            extra = spam.headers(placement.junk if local else None) + extra
        if checked:
            stripped = spamfilter.strip_spam_fields(source.header_block())
            if stripped is not None:  # no forged X-Spam-*/X-Virus-Status fields below ours
                source = source.replace_header(stripped)
        return Screened(source, extra, placement.mailboxes, placement.recorded, spam)

    @staticmethod
    def refusal_reply(placement: spampolicy.Placement, spam: SpamVerdict | None) -> Reply:
        if placement.blocked:
            return R550_MESSAGE_BLOCKED
        text = spam.message if spam is not None else ""
        if placement.refusal == spamfilter.REJECT:
            return R550_SPAM.with_text(text) if text else R550_SPAM
        if spam is None or spam.failed:
            return R451_FILTER_DOWN
        return R451_SPAM_LATER.with_text(text) if text else R451_SPAM_LATER

    async def screen_submission(self, envelope: Envelope, source: MessageSource, queue_id: str) -> Reply | None:
        """``[filter] submission``: authenticated mail is checked by rspamd with the account as
        its ``User``, so a compromised account's spam stops here: reject -> 550 5.7.1, soft
        reject/greylist -> 451 4.7.1; anything else is sent unchanged (no X-Spam-* fields on
        outgoing mail). rspamd unreachable: ``on_failure`` (accept, or 451)."""
        spam_filter = getattr(self.app, "spam_filter", None)
        if spam_filter is None or not self.app.config.filter.submission:
            return None
        user = str(getattr(self.account, "address", "") or "")
        spam = await spam_filter.check(
            source, ip=self.conn.remote_ip, helo=self.helo, mail_from=envelope.mail_from,
            rcpts=[route.address for route in envelope.routes], queue_id=queue_id, user=user)
        decision = spam.decision(self.app.config.filter.on_failure)
        if decision not in (spamfilter.REJECT, spamfilter.TEMPFAIL):
            return None
        log.warning("%s: submission by %s from %s %s by rspamd (%s, score %s)", queue_id, user, self.conn.remote_ip,
                    "rejected" if decision == spamfilter.REJECT else "deferred", spam.action, spam.score)
        if decision == spamfilter.REJECT:
            return R550_OUTBOUND_SPAM.with_text(spam.message) if spam.message else R550_OUTBOUND_SPAM
        return self.refusal_reply(spampolicy.Placement(refusal=decision), spam)

    async def record_verdicts(self, queue_id: str, recorded: dict[int, str], spam: SpamVerdict | None = None) -> None:
        """Keep what happened per local recipient (the panel counts them); best effort."""
        by_action: dict[str, list[int]] = {}
        for account_id, action in recorded.items():
            by_action.setdefault(action, []).append(account_id)
        try:
            for action, account_ids in by_action.items():
                await self.app.store.record_filter_verdicts(queue_id, account_ids, action,
                                                            spam.score if spam is not None else None)
        except Exception:  # noqa: BLE001 - the message itself is handled; a lost count is not lost mail
            log.exception("%s: cannot record the spam filter's verdict", queue_id)

    def inbound_checker(self) -> InboundChecker | None:
        """Port 25 only: the server's own checker, else the application's (services.mailauth)."""
        if self.server.submission:
            return None
        return self.server.inbound_checker or getattr(self.app, "inbound_checker", None)

    async def check_inbound(self, envelope: Envelope, data: MessageSource) -> InboundVerdictLike | Reply | None:
        checker = self.inbound_checker()
        assert checker is not None
        # services.mailauth takes the (possibly spooled) source; any other hook gets bytes.
        message: Any = data
        if not getattr(checker, "accepts_source", False):
            message = data.read() if data.in_memory else await asyncio.to_thread(data.read)
        try:
            verdict = await checker(self.conn.remote_ip, self.helo, envelope.mail_from, message)
        except Exception:  # noqa: BLE001 - a broken check must not lose mail
            log.exception("inbound check failed for mail from %s", self.conn.remote_ip)
            return None
        if verdict.action == "reject":
            text = str(getattr(verdict, "reject_reply", "") or "")
            if text.startswith("5.7.1 "):
                text = text[6:]
            code = getattr(verdict, "reject_code", 550)
            reply = R550_POLICY if code not in (550, 554) else Reply(code, "5.7.1", R550_POLICY.text)
            return reply.with_text(text) if text else reply
        if verdict.action == "defer":
            return R451_CHECK_FAILED
        return verdict


class Incoming:
    """One message as it arrives: spooled (``store.spool.SpoolWriter``: the header block in
    memory, the body in a file past 256 KiB), counted against the in-flight budget, and checked
    as it comes, so that nothing needs the whole message in memory:

    * NUL is refused (RFC 6152 §2: not in 7bit/8bitmime text; some receivers drop it, which
      makes "CRLF NUL . CRLF" an end of data for them: smuggling via our queue);
    * BDAT text with a bare CR or LF is refused like DATA text (BINARYMIME is not offered),
      so a relay can never pass it on; a CR at the end of one chunk may pair with an LF that
      starts the next;
    * a header block over ``MAX_HEADER_BLOCK`` is refused with 552 5.3.4;
    * octets that do not fit the budget get 452 4.3.1.

    ``feed`` and ``end`` return the refusal (the first one wins; the connection then reads and
    drops the rest of the message). ``discard`` gives everything back."""

    def __init__(self, spool: Spool, budget: InflightBudget, who: str, *, bdat: bool) -> None:
        self.writer = spool.writer(max_header=MAX_HEADER_BLOCK)
        self.budget = budget
        self.who = who
        self.bdat = bdat
        self.reserved = 0
        self.refusal: Reply | None = None
        self.pending_cr = False

    def feed(self, chunk: bytes) -> Reply | None:
        if self.refusal is not None or not chunk:
            return None
        if not self.budget.reserve(len(chunk), self.who):
            return self._refuse(R452_INFLIGHT)
        self.reserved += len(chunk)
        if b"\x00" in chunk:
            return self._refuse(R550_NUL)
        if self.bdat and self._bare_line_ending(chunk):
            return self._refuse(r.R550_BARE_LINE_ENDING)
        try:
            self.writer.feed(chunk)
        except HeaderTooLarge:
            return self._refuse(R552_HEADER_TOO_BIG)
        return None

    def end(self) -> Reply | None:
        if self.refusal is None and self.pending_cr:
            return self._refuse(r.R550_BARE_LINE_ENDING)
        return None

    async def write(self) -> Reply | None:
        """Write collected body octets to the spool file when enough have gathered (a thread)."""
        if self.refusal is None and self.writer.pending_write:
            try:
                await asyncio.to_thread(self.writer.flush)
            except OSError as exc:
                log.error("cannot spool a message from %s: %s", self.who, exc)
                return self._refuse(R452_NO_SPACE)
        return None

    async def finish(self) -> MessageSource:
        if self.writer.spooled:
            return await asyncio.to_thread(self.writer.finish)
        return self.writer.finish()

    def discard(self) -> None:
        self.writer.discard()
        self.budget.release(self.reserved)
        self.reserved = 0

    def _refuse(self, reply: Reply) -> Reply:
        self.refusal = reply
        self.writer.discard()  # nothing more is kept; the budget is given back at the end
        return reply

    def _bare_line_ending(self, chunk: bytes) -> bool:
        data = chunk
        if self.pending_cr:
            self.pending_cr = False
            if data[:1] != b"\n":
                return True
            data = data[1:]
        if data.endswith(b"\r"):
            self.pending_cr = True
            data = data[:-1]
        return _bare_line_ending(data)


async def _dkim_sign(signer: Any, domain: str, message: MessageSource) -> MessageSource:
    try:
        return MessageSource.of(await signer.sign(message, domain))
    except Exception:  # noqa: BLE001 - unsigned mail is better than lost mail
        log.exception("DKIM signing for %s failed", domain)
        return message


def _bare_line_ending(data: bytes) -> bool:
    """True if ``data`` has a CR or LF that is not part of a CRLF pair."""
    crlf = data.count(b"\r\n")
    return data.count(b"\r") != crlf or data.count(b"\n") != crlf


def _domain_of(address: str) -> str:
    return _norm(address).rpartition("@")[2]


def _norm(address: str) -> str:
    try:
        return normalize_address(address)
    except InvalidAddress:
        return address.strip().lower()
