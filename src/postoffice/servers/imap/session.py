"""One IMAP session: connection state, the command dispatch table, and the commands valid in
any state or before login (RFC 9051 6.1, 6.2; RFC 2971 ID; RFC 5161 ENABLE).

``HANDLERS`` maps every command class to its ``do_<verb>`` coroutine, explicitly (a test
checks that each command of ``protocols.imap.commands`` has one). A handler takes
``(session, tag, command)``, sends untagged data with ``session.send``, and returns the
tagged line; refusals are raised (`errors.Refused` -> NO, `errors.BadRequest` -> BAD, store
errors through `errors.tagged_for`). Anything else is a bug: it is logged with its
traceback and answered ``NO [SERVERBUG]``, and the session carries on (docs/imap.md,
"Limits and bad input").

After each command, while a mailbox is selected, ``SelectedMailbox.sync`` adds the pending
untagged updates (EXISTS, FETCH FLAGS, EXPUNGE/VANISHED) before the tagged response; EXPUNGE
is held back for FETCH, STORE and SEARCH (RFC 9051 7.5.1).

The I/O side (reading more input for AUTHENTICATE, IDLE, STARTTLS, flushing big outputs) is
the `server.ImapHandler` passed in as ``io``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ...protocols import sasl
from ...protocols.imap import (
    Authenticate, Capability, Command, Enable, Id, LineTooLong, Login, Logout, Noop, SaslCancelled,
    SaslInvalid, SaslResponse, StartTls, State, command_allowed,
)
from ...protocols.imap import commands as c
from ...protocols.imap import responses as r
from ...protocols.imap.responses import Code
from ...services.auth import AuthStatus, authzid_permitted
from ...services.limits import user_ip_refusal
from ...services.sessions import OpenSession
from ...store import Account
from . import batches, context, mailboxes, messages, metadata, notify, sort, urlauth
from .errors import BadRequest, tagged_for
from .selected import SelectedMailbox

if TYPE_CHECKING:
    from .server import ImapHandler

log = logging.getLogger(__name__)

Handler = Callable[["Session", bytes, Any], Awaitable[bytes]]

SERVER_ID = {"name": "postoffice", "vendor": "postoffice", "support-url": None}
BASE_CAPABILITIES = (
    "IMAP4rev1", "IMAP4rev2", "SASL-IR", "LITERAL+", "ENABLE", "ID", "IDLE", "NAMESPACE", "UNSELECT",
    "UIDPLUS", "MOVE", "CONDSTORE", "QRESYNC", "ESEARCH", "SEARCHRES", "SPECIAL-USE",
    "CREATE-SPECIAL-USE", "LIST-EXTENDED", "LIST-STATUS", "STATUS=SIZE", "CHILDREN", "QUOTA",
    "QUOTA=RES-STORAGE", "MULTIAPPEND", "BINARY", "UTF8=ACCEPT", "WITHIN",
    "SORT", "SORT=DISPLAY", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES", "ESORT",
    "COMPRESS=DEFLATE", "CONTEXT=SEARCH", "CONTEXT=SORT", "CATENATE", "URLAUTH", "METADATA",
    "URLAUTH=BINARY", "METADATA-SERVER", "NOTIFY", "UIDBATCHES",
)
ENABLEABLE = {"CONDSTORE", "QRESYNC", "UTF8=ACCEPT", "IMAP4REV2"}
SASL_MECHANISMS = ("PLAIN", "LOGIN")
MAX_SASL_STEPS = 4


class Session:
    """Per-connection state (kept small: thousands of these sit in IDLE at once)."""

    __slots__ = ("io", "app", "server", "state", "account", "registered", "client_id", "enabled",
                 "condstore", "selected", "saved", "command_name", "contexts", "notifier", "__weakref__")

    def __init__(self, io: ImapHandler) -> None:
        self.io = io
        self.server = io.server
        self.app = io.server.app
        self.state = State.NOT_AUTHENTICATED
        self.account: Account | None = None
        self.registered: OpenSession | None = None
        self.client_id = ""
        self.enabled: set[str] = set()
        self.condstore = False  # CONDSTORE enabled (RFC 7162 3.1: ENABLE or a CONDSTORE command)
        self.selected: SelectedMailbox | None = None
        self.saved: list[int] | None = None  # SEARCHRES result as UIDs (RFC 5182)
        self.command_name = ""
        self.contexts: dict[bytes, Any] | None = None  # RFC 5267 UPDATE searches by tag
        self.notifier: notify.Notifier | None = None  # NOTIFY SET (RFC 5465)

    # -- helpers for handlers ------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.io.send(data)

    @property
    def utf8(self) -> bool:
        """Mailbox names and strings in UTF-8: UTF8=ACCEPT or IMAP4rev2 enabled (RFC 9051 5.1)."""
        return "UTF8=ACCEPT" in self.enabled or "IMAP4REV2" in self.enabled

    @property
    def rev2(self) -> bool:
        return "IMAP4REV2" in self.enabled

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled

    def enable_condstore(self) -> None:
        """A CONDSTORE enabling command (RFC 7162 3.1). The first one issued while a mailbox
        is selected also reports that mailbox's ``* OK [HIGHESTMODSEQ n]`` (SELECT already
        did, but the client was not listening for it yet)."""
        if not self.condstore and self.selected is not None and self.state is State.SELECTED:
            self.send(r.untagged_ok("Highest", Code.highestmodseq(self.selected.index.highestmodseq)))
        self.condstore = True

    def capabilities(self) -> list[str]:
        caps = list(BASE_CAPABILITIES)
        caps.append(f"APPENDLIMIT={self.app.config.limits.imap_max_literal}")
        if self.state is State.NOT_AUTHENTICATED:
            if self.io.starttls_available:
                caps.append("STARTTLS")
            if self.io.auth_allowed:
                caps.extend(f"AUTH={m}" for m in SASL_MECHANISMS)
            else:
                caps.append("LOGINDISABLED")
        return caps

    # -- dispatch ------------------------------------------------------------------------------
    async def handle(self, tag: bytes, command: Command) -> None:
        """Run one command and send its responses (never raises for a handler's failure)."""
        if not command_allowed(self.state, command):
            self.io.invalid_command(r.bad(tag, _state_error(self.state, command)))
            return
        self.io.pconn.note_command(True)
        handler = HANDLERS[type(command)]
        self.command_name = type(command).__name__.upper()
        if self.notifier is not None:  # news that came with the command: before its responses
            await self.tell_news()
        try:
            tagged = await handler(self, tag, command)
        except Exception as exc:  # noqa: BLE001 - one failing command must not end the session
            tagged = tagged_for(tag, exc)
            if tagged is None:
                log.exception("IMAP %s: %s failed", self.account.address if self.account else "-",
                              type(command).__name__)
                tagged = r.no(tag, "Internal server error; the command was not completed", Code.SERVERBUG)
        own = notify.own_names(self, command) if self.notifier is not None else frozenset()
        if self.selected is not None and self.state is State.SELECTED and (
                not self.selected.quiet() or self.contexts):
            try:
                # RFC 5465 section 5.2: no FETCH for the messages this client put there itself
                await self.send_updates(allow_expunge=_may_expunge(command), fetch_new=self.selected.name not in own)
            except Exception:  # noqa: BLE001
                log.exception("IMAP: delivering mailbox updates failed")
        if self.notifier is not None:
            await self.tell_news(own)
        self.send(tagged)

    async def send_updates(self, *, allow_expunge: bool, fetch_new: bool = True) -> None:
        """Send the selected mailbox's pending updates (`sync`), and NOTIFY's MessageNew
        FETCH attributes for the new messages."""
        view = self.selected
        assert view is not None
        last = view.uids[-1] if view.uids else 0
        for line in await self.sync(allow_expunge=allow_expunge):
            self.send(line)
        if self.notifier is not None and fetch_new:
            await notify.fetch_new(self, view, last)

    async def tell_news(self, own: frozenset[str] = frozenset()) -> None:
        """NOTIFY's news of other mailboxes (RFC 5465); never fails the command."""
        try:
            for line in await notify.news(self, own):
                self.send(line)
        except Exception:  # noqa: BLE001
            log.exception("IMAP: delivering NOTIFY news failed")

    async def sync(self, *, allow_expunge: bool) -> list[bytes]:
        assert self.selected is not None
        before = self.selected.uids[:] if self.contexts else None
        lines = await self.selected.sync(self, allow_expunge=allow_expunge, qresync=self.qresync,
                                         condstore=self.condstore)
        if before is not None:
            # RFC 5267 4.3.3/4.3.4: REMOVEFROM before any EXPUNGE, ADDTO after EXISTS
            removes, adds = await context.updates(self, before)
            lines = removes + lines + adds
        return lines

    def unselect(self) -> None:
        if self.selected is not None:
            self.selected.close(self.server.indexes)
            self.selected = None
            self.saved = None
            self.contexts = None  # updates cease when the mailbox is closed (RFC 5267 4.3)
        if self.state is State.SELECTED:
            self.state = State.AUTHENTICATED

    def close(self) -> None:
        """The connection ended: drop the selection, NOTIFY and the registration."""
        self.unselect()
        notify.stop(self)
        if self.registered is not None:
            self.app.sessions.remove(self.registered)
            self.registered = None

    # -- authentication ------------------------------------------------------------------------
    async def login(self, tag: bytes, username: str, password: str) -> bytes:
        try:
            result = await self.app.auth.authenticate(username, password, self.io.conn.remote_ip, "imap")
        except Exception:  # noqa: BLE001 - the database is down or similar
            log.exception("IMAP authentication of %s failed", username)
            return r.no(tag, "Authentication is unavailable right now; try again later", Code.UNAVAILABLE)
        if result.status is AuthStatus.REFUSED:
            return r.no(tag, result.reason or "IMAP is disabled for this address", Code.ALERT)
        if result.status is AuthStatus.THROTTLED:
            return r.no(tag, result.reason or "Too many failed logins; try again later", Code.UNAVAILABLE)
        if result.status is not AuthStatus.OK or result.account is None:
            return r.no(tag, "Invalid username or password", Code.AUTHENTICATIONFAILED)
        account = result.account
        conn = self.io.conn
        refusal = user_ip_refusal(self.app.sessions, self.app.config.limits, account, "imap", conn.remote_ip)
        if refusal is not None:
            return r.no(tag, refusal, Code.LIMIT)
        self.account = account
        self.state = State.AUTHENTICATED
        self.io.pconn.logged_in()  # the pre-login limits end here
        self.registered = self.app.sessions.add(OpenSession(
            protocol="imap", account_id=account.id, address=account.address, remote=conn.remote_ip,
            tls=conn.tls, port=conn.local_port, client_id=self.client_id, terminate=self.io.terminate,
            app_password=result.app_password.name if result.app_password else "",
            app_password_id=result.app_password.id if result.app_password else None))
        log.info("IMAP login %s from %s (%s)", account.address, conn.remote_ip, "TLS" if conn.tls else "plain")
        inbox = await self.server.mailboxes.get(account.id, "INBOX")
        if inbox is not None:
            self.server.prewarm(inbox)
        return r.ok(tag, "Logged in", Code.capability(self.capabilities()))


def _state_error(state: State, command: Command) -> str:
    name = type(command).__name__.upper()
    if state is State.NOT_AUTHENTICATED:
        return f"{name} is only allowed after logging in"
    if state is State.AUTHENTICATED and type(command) in c.STATE_COMMANDS[State.SELECTED]:
        return f"{name} needs a selected mailbox (use SELECT first)"
    if type(command) in (c.Login, c.Authenticate, c.StartTls):
        return f"{name} is not allowed: already logged in"
    return f"{name} is not allowed in the {state.value} state"


def _may_expunge(command: Command) -> bool:
    """RFC 9051 7.5.1: no EXPUNGE while answering FETCH, STORE or SEARCH (UID forms may);
    SORT and THREAD are searches too (RFC 5256 section 3)."""
    if isinstance(command, (c.Fetch, c.Store, c.Search, c.Sort, c.Thread)):
        return command.uid
    return True


# == any state ==================================================================================

async def do_capability(s: Session, tag: bytes, cmd: Capability) -> bytes:
    s.send(r.capability(s.capabilities()))
    return r.ok(tag, "CAPABILITY completed")


async def do_noop(s: Session, tag: bytes, cmd: Noop) -> bytes:
    return r.ok(tag, "NOOP completed")


async def do_logout(s: Session, tag: bytes, cmd: Logout) -> bytes:
    s.send(r.bye("Logging out"))
    s.unselect()
    s.state = State.LOGOUT
    s.io.done = True
    return r.ok(tag, "LOGOUT completed")


async def do_id(s: Session, tag: bytes, cmd: Id) -> bytes:
    if cmd.params:
        fields = {k.lower(): v for k, v in cmd.params.items()}
        name = (fields.get("name") or "")[:60]
        version = (fields.get("version") or "")[:30]
        s.client_id = f"{name} {version}".strip()
        if s.registered is not None:
            s.registered.client_id = s.client_id
            s.app.sessions.changed(s.registered)
    s.send(r.id_response(SERVER_ID))
    return r.ok(tag, "ID completed")


async def do_enable(s: Session, tag: bytes, cmd: Enable) -> bytes:
    newly = []
    for cap in cmd.capabilities:
        name = cap.upper()
        if name not in ENABLEABLE or name in s.enabled:
            continue
        if name == "QRESYNC" and "CONDSTORE" not in s.enabled:
            s.enabled.add("CONDSTORE")  # RFC 7162 3.2.3: QRESYNC implies CONDSTORE
            s.enable_condstore()
        s.enabled.add(name)
        if name == "CONDSTORE":
            s.enable_condstore()
        if name == "IMAP4REV2" and s.selected is not None:
            s.selected.stop_recent()  # RFC 9051 has no \Recent
        newly.append("IMAP4rev2" if name == "IMAP4REV2" else name)
    s.send(r.enabled(newly))
    return r.ok(tag, "ENABLE completed")


# == not authenticated ==========================================================================

async def do_starttls(s: Session, tag: bytes, cmd: StartTls) -> bytes:
    if not s.io.starttls_available:
        raise BadRequest("TLS is already active" if s.io.conn.tls else "STARTTLS is not available here")
    await s.io.start_tls(r.ok(tag, "Begin TLS negotiation now"))
    return b""  # already answered before the handshake


async def do_login(s: Session, tag: bytes, cmd: Login) -> bytes:
    if not s.io.auth_allowed:
        return r.no(tag, "Logging in over an unencrypted connection is not allowed; use STARTTLS first",
                    Code.PRIVACYREQUIRED)
    try:
        username = cmd.username.decode("utf-8")
        password = cmd.password.decode("utf-8")
    except UnicodeDecodeError:
        await s.app.auth.failed_attempt(s.io.conn.remote_ip)  # answered like a wrong password
        return r.no(tag, "Invalid username or password", Code.AUTHENTICATIONFAILED)
    return await s.login(tag, username, password)


async def do_authenticate(s: Session, tag: bytes, cmd: Authenticate) -> bytes:
    if not s.io.auth_allowed:
        return r.no(tag, "Authentication over an unencrypted connection is not allowed; use STARTTLS first",
                    Code.PRIVACYREQUIRED)
    mech = sasl.server_mechanism(cmd.mechanism) if cmd.mechanism in SASL_MECHANISMS else None
    if mech is None:
        return r.no(tag, f"Unsupported authentication mechanism {cmd.mechanism}", Code.CANNOT)
    step = mech.start(cmd.initial_response)
    for _ in range(MAX_SASL_STEPS):
        if not isinstance(step, sasl.Challenge):
            break
        s.send(r.continuation(sasl.encode_challenge(step.data)))
        s.io.pconn.expect_sasl_response()
        event = await s.io.next_event()
        if isinstance(event, SaslCancelled):
            return r.bad(tag, "Authentication cancelled")
        if isinstance(event, SaslInvalid):
            return r.bad(tag, event.message)
        if isinstance(event, LineTooLong):
            return r.bad(tag, "Authentication response too long")
        if not isinstance(event, SaslResponse):
            s.io.done = True
            return b""
        step = mech.step(event.data)
    if isinstance(step, sasl.SaslFailure):
        return r.bad(tag, f"Authentication failed: {step.reason}")
    if not isinstance(step, sasl.Credentials):
        return r.bad(tag, "Authentication exchange too long")
    if not authzid_permitted(step.authzid, step.username):
        return r.no(tag, "Acting as another user is not allowed", Code.AUTHORIZATIONFAILED)
    return await s.login(tag, step.username, step.password)


async def do_compress(s: Session, tag: bytes, cmd: c.Compress) -> bytes:
    """COMPRESS DEFLATE (RFC 4978 section 3): OK, then everything both ways is compressed."""
    if s.io.deflate is not None:
        return r.no(tag, "Compression is already active", Code.COMPRESSIONACTIVE)
    if cmd.algorithm != "DEFLATE":
        return r.no(tag, f"Unsupported compression algorithm {cmd.algorithm}", Code.CANNOT)
    await s.io.start_compress(r.ok(tag, "DEFLATE active"))
    return b""  # already answered before compression started


async def do_idle(s: Session, tag: bytes, cmd: c.Idle) -> bytes:
    return await s.io.idle(s, tag)


HANDLERS: dict[type, Handler] = {
    c.Capability: do_capability,
    c.Noop: do_noop,
    c.Logout: do_logout,
    c.Id: do_id,
    c.Enable: do_enable,
    c.StartTls: do_starttls,
    c.Authenticate: do_authenticate,
    c.Login: do_login,
    c.Select: mailboxes.do_select,
    c.Examine: mailboxes.do_select,
    c.Create: mailboxes.do_create,
    c.Delete: mailboxes.do_delete,
    c.Rename: mailboxes.do_rename,
    c.Subscribe: mailboxes.do_subscribe,
    c.Unsubscribe: mailboxes.do_subscribe,
    c.List: mailboxes.do_list,
    c.Lsub: mailboxes.do_lsub,
    c.Namespace: mailboxes.do_namespace,
    c.Status: mailboxes.do_status,
    c.GetQuota: mailboxes.do_getquota,
    c.GetQuotaRoot: mailboxes.do_getquotaroot,
    c.SetQuota: mailboxes.do_setquota,
    c.Idle: do_idle,
    c.Compress: do_compress,
    c.CancelUpdate: context.do_cancelupdate,
    c.GenUrlAuth: urlauth.do_genurlauth,
    c.UrlFetch: urlauth.do_urlfetch,
    c.ResetKey: urlauth.do_resetkey,
    c.GetMetadata: metadata.do_getmetadata,
    c.SetMetadata: metadata.do_setmetadata,
    c.Notify: notify.do_notify,
    c.Append: messages.do_append,
    c.Check: messages.do_check,
    c.Close: messages.do_close,
    c.Unselect: messages.do_unselect,
    c.Expunge: messages.do_expunge,
    c.UidExpunge: messages.do_expunge,
    c.Search: messages.do_search,
    c.Fetch: messages.do_fetch,
    c.Store: messages.do_store,
    c.Copy: messages.do_copy,
    c.Move: messages.do_copy,
    c.Sort: sort.do_sort,
    c.Thread: sort.do_thread,
    c.UidBatches: batches.do_uidbatches,
}

__all__ = ["Session", "HANDLERS", "BASE_CAPABILITIES"]
