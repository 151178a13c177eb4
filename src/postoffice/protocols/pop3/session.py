"""Pop3Session: the RFC 1939 state machine over an abstract maildrop (no I/O).

The session never reads sockets, the store or the clock.  It takes events from
:class:`~.connection.Pop3Connection` and returns, in order, a list of *outputs*: replies
(:mod:`.responses`, to be written with ``conn.send(reply)``) and *actions* (:mod:`.actions`,
to be performed by the server).  An action that needs an answer is answered by calling one
``on_*`` callback, which returns more outputs.  While an answer is outstanding the session
accepts nothing else (``Pop3SessionError``), so the server handles one event at a time.

Contract (server side)::

    action              the server does                                   then calls
    ------------------  ------------------------------------------------  ----------------------
    Authenticate        verify password, check POP3 access for account    on_auth_result(
                                                                            AuthOk(name) |
                                                                            AuthInvalid() |
                                                                            AuthRefused(reason) |
                                                                            AuthTemporaryFailure() |
                                                                            MaildropInUse())
    OpenMaildrop        lock the maildrop, snapshot [(uid, size)]          on_maildrop(
                                                                            Maildrop(messages) |
                                                                            MaildropInUse() |
                                                                            MaildropUnavailable())
    SendMessage         read the message bytes by uid                      on_message(action, data|None
                                                                            [, canonical, body])
    CommitDeletions     delete the uids, release the lock                  on_commit_result(ok)
    StartTls            flush, conn.start_tls(), TLS handshake             on_tls_started()
    Close               flush, close, release a held lock (never delete)   -

A thin server loop therefore looks like::

    conn, session = Pop3Connection(), Pop3Session(policy, tls_active=implicit_tls)
    write(conn.send(session.greeting()))
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            conn.receive_data(await read()); continue
        outputs = deque(session.handle(event))
        while outputs:
            out = outputs.popleft()
            if isinstance(out, Authenticate): outputs.extend(session.on_auth_result(await ...))
            elif ...                                   # one branch per action above
            else: write(conn.send(out))                # a reply

State machine (RFC 1939 §3): AUTHORIZATION --(auth ok + maildrop locked)--> TRANSACTION
--(QUIT)--> UPDATE.  QUIT in AUTHORIZATION signs off without UPDATE; EOF in any state just yields
``Close`` (nothing is deleted unless the session reaches QUIT).  :data:`ALLOWED` is the table of
commands per state; anything else gets ``-ERR``.

Plaintext policy (RFC 2595 §2.2 and §4, RFC 2449 §6): unless the connection is TLS or the policy
allows plaintext authentication, USER, PASS and AUTH are refused with ``-ERR [AUTH] ... use STLS
first`` (or "connect with TLS" when STLS is not offered), and CAPA leaves out USER and SASL
because they are not usable.  STLS is announced only before TLS and only when TLS is available.
Capabilities usable in AUTHORIZATION are announced in TRANSACTION too (RFC 2449 §5), except that
EXPIRE and LOGIN-DELAY drop the ``USER`` tag and show the logged-in user's value (RFC 2449 §6.7,
§6.8).  After STLS everything learnt before (a USER name) is forgotten (RFC 2595 §4).

Response codes: ``[AUTH]`` for bad credentials and refused logins (RFC 3206 §4, AUTH-RESP-CODE),
``[SYS/TEMP]`` for temporary failures, ``[IN-USE]`` for a locked maildrop (RFC 2449 §8.1.1).
``[LOGIN-DELAY]`` is never sent.  APOP is parsed but refused: we only keep argon2 hashes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Union

from .. import sasl
from .actions import (
    Action,
    AuthInvalid,
    AuthOk,
    AuthRefused,
    AuthResult,
    AuthTemporaryFailure,
    Authenticate,
    Close,
    CommitDeletions,
    Default,
    Maildrop,
    MaildropInUse,
    MaildropResult,
    MaildropUnavailable,
    MessageInfo,
    OpenMaildrop,
    SendMessage,
    StartTls,
)
from .commands import (
    VERB_OF,
    Apop,
    Auth,
    Capa,
    Command,
    Dele,
    InvalidCommand,
    List,
    Noop,
    Pass,
    Quit,
    Retr,
    Rset,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
)
from .connection import ConnectionClosed, Event, SaslResponse
from .responses import Continuation, Err, MultiLine, Ok, Reply, ResponseCode, listing, message_body

Output = Union[Reply, Action]

GREETING: Final = "postoffice POP3 server ready"
SIGN_OFF: Final = "postoffice POP3 server signing off"


class State(enum.Enum):
    """RFC 1939 §3 session states."""

    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"


#: Which commands each state accepts (RFC 1939 §4-§7, RFC 2449 §5, RFC 2595 §4, RFC 5034 §4).
ALLOWED: Final[dict[State, frozenset[type[Command]]]] = {
    State.AUTHORIZATION: frozenset({User, Pass, Apop, Auth, Capa, Stls, Quit}),
    State.TRANSACTION: frozenset({Stat, List, Retr, Dele, Noop, Rset, Quit, Top, Uidl, Capa}),
    State.UPDATE: frozenset(),
}


@dataclass(frozen=True)
class Pop3Policy:
    """Server-wide POP3 settings the session needs (built from config by the server).

    ``expire_days`` None announces ``EXPIRE NEVER``; ``login_delay`` None announces nothing.
    The ``*_per_user`` flags add RFC 2449's ``USER`` tag in AUTHORIZATION state, in which case
    the value given is the minimum over users and the real one comes with :class:`Maildrop`.
    """

    tls_available: bool = True
    allow_plaintext_auth: bool = False
    sasl_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")
    expire_days: int | None = None
    expire_per_user: bool = False
    login_delay: int | None = None
    login_delay_per_user: bool = False
    implementation: str = "postoffice"

    def __post_init__(self) -> None:
        if self.expire_per_user and self.expire_days is None:
            raise ValueError("EXPIRE ... USER needs a number of days (RFC 2449 §6.7)")
        if self.login_delay_per_user and self.login_delay is None:
            raise ValueError("LOGIN-DELAY ... USER needs a number of seconds (RFC 2449 §6.8)")


class Pop3SessionError(Exception):
    """The server misused the session API (e.g. a new event while an action is outstanding)."""


class _Waiting(enum.Enum):
    NOTHING = "NOTHING"
    AUTH = "AUTH"
    MAILDROP = "MAILDROP"
    MESSAGE = "MESSAGE"
    COMMIT = "COMMIT"
    TLS = "TLS"


class Pop3Session:
    """One POP3 conversation's logic. See the module docstring for the server contract."""

    def __init__(self, policy: Pop3Policy | None = None, *, tls_active: bool = False) -> None:
        self.policy = policy or Pop3Policy()
        self.tls_active = tls_active
        self.state = State.AUTHORIZATION
        self.username: str | None = None  # set once authenticated
        self.closed = False
        self._user: str | None = None  # name from USER awaiting PASS
        self._sasl: sasl.ServerMechanism | None = None  # SASL mechanism object mid-exchange
        self._sasl_name = ""
        self._waiting = _Waiting.NOTHING
        self._pending_message: SendMessage | None = None
        self._messages: list[MessageInfo] = []
        self._deleted: set[int] = set()  # 1-based numbers marked by DELE
        self._deleted_size = 0
        self._total_size = 0
        self._listings: dict[str, bytes] = {}  # cached LIST / UIDL bodies (see _listing)
        self._user_expire: int | None | Default = Default.POLICY
        self._user_login_delay: int | None | Default = Default.POLICY
        self._handlers: dict[type[Command], Callable[..., list[Output]]] = {
            User: self.do_user,
            Pass: self.do_pass,
            Apop: self.do_apop,
            Auth: self.do_auth,
            Capa: self.do_capa,
            Stls: self.do_stls,
            Quit: self.do_quit,
            Stat: self.do_stat,
            List: self.do_list,
            Uidl: self.do_uidl,
            Retr: self.do_retr,
            Top: self.do_top,
            Dele: self.do_dele,
            Noop: self.do_noop,
            Rset: self.do_rset,
        }

    # -- entry points ------------------------------------------------------------------------

    def greeting(self) -> Ok:
        return Ok(GREETING)

    def handle(self, event: Event) -> list[Output]:
        """Process one event from the connection and return replies and actions in order."""
        if self._waiting is not _Waiting.NOTHING:
            raise Pop3SessionError(f"event {event!r} while waiting for {self._waiting.value}")
        if self.closed:
            return []
        if isinstance(event, ConnectionClosed):
            return self._close()
        if self._sasl is not None:
            return self._sasl_continue(event)
        if isinstance(event, SaslResponse):
            return [Err("no authentication exchange in progress")]
        if isinstance(event, InvalidCommand):
            return [Err(event.message)]
        if type(event) not in ALLOWED[self.state]:
            return [self._not_allowed(event)]
        return self._handlers[type(event)](event)

    @property
    def plaintext_auth_allowed(self) -> bool:
        return self.tls_active or self.policy.allow_plaintext_auth

    @property
    def message_count(self) -> int:
        return len(self._messages) - len(self._deleted)

    @property
    def maildrop_size(self) -> int:
        return self._total_size - self._deleted_size

    def _not_allowed(self, command: Command) -> Err:
        verb = VERB_OF[type(command)]
        if self.state is State.AUTHORIZATION:
            return Err(f"{verb} is only valid after logging in")
        if self.state is State.TRANSACTION:
            return Err(f"{verb} is not valid after logging in")
        return Err(f"{verb} is not valid while signing off")

    def _close(self) -> list[Output]:
        self.closed = True
        self._sasl = None
        return [Close()]

    def _expect(self, waiting: _Waiting) -> None:
        if self._waiting is not waiting:
            raise Pop3SessionError(
                f"callback for {waiting.value} while waiting for {self._waiting.value}"
            )
        self._waiting = _Waiting.NOTHING

    # -- AUTHORIZATION -----------------------------------------------------------------------

    def _plaintext_refusal(self) -> Err:
        if self.policy.tls_available:
            text = "plaintext authentication is not allowed without TLS; use STLS first"
        else:
            text = "plaintext authentication is not allowed here; connect with TLS"
        return Err(text, ResponseCode.AUTH)

    def do_user(self, command: User) -> list[Output]:
        if not self.plaintext_auth_allowed:
            return [self._plaintext_refusal()]
        self._user = command.name
        return [Ok("send PASS")]

    def do_pass(self, command: Pass) -> list[Output]:
        if not self.plaintext_auth_allowed:
            return [self._plaintext_refusal()]
        if self._user is None:
            return [Err("send USER first")]
        username, self._user = self._user, None
        self._waiting = _Waiting.AUTH
        return [Authenticate(username, command.password, "USER")]

    def do_apop(self, command: Apop) -> list[Output]:
        return [Err("APOP is not supported; use USER/PASS or AUTH", ResponseCode.AUTH)]

    def do_auth(self, command: Auth) -> list[Output]:
        if not self.plaintext_auth_allowed:
            return [self._plaintext_refusal()]
        mechanisms = self.policy.sasl_mechanisms
        if command.mechanism is None:
            return [listing(Ok("SASL mechanisms follow"), list(mechanisms))]
        mech = sasl.server_mechanism(command.mechanism) if command.mechanism in mechanisms else None
        if mech is None:
            return [Err(f"unsupported SASL mechanism {command.mechanism}")]
        initial: bytes | None = None
        if command.initial_response is not None:
            decoded = sasl.decode_response(command.initial_response)
            if not isinstance(decoded, bytes):
                return [Err("the initial response is not valid base64")]
            initial = decoded
        self._sasl, self._sasl_name = mech, command.mechanism
        return self._sasl_result(mech.start(initial))

    def _sasl_continue(self, event: Event) -> list[Output]:
        mech = self._sasl
        assert mech is not None
        self._sasl = None
        if isinstance(event, InvalidCommand):  # e.g. an over-long response line
            return [Err(f"authentication aborted: {event.message}")]
        if not isinstance(event, SaslResponse):  # server did not send the Continuation
            return [Err("authentication aborted")]
        decoded = sasl.decode_response(event.line)
        if decoded is sasl.CANCELLED:
            return [Err("authentication cancelled")]  # RFC 5034 §4: "*" gets -ERR
        if not isinstance(decoded, bytes):
            return [Err("the response is not valid base64; authentication aborted")]
        self._sasl = mech
        return self._sasl_result(mech.step(decoded))

    def _sasl_result(self, result: sasl.Step) -> list[Output]:
        if isinstance(result, sasl.Challenge):
            return [Continuation(result.data)]
        self._sasl = None
        if isinstance(result, sasl.Credentials):
            self._waiting = _Waiting.AUTH
            return [Authenticate(result.username, result.password, self._sasl_name, result.authzid)]
        return [Err(result.reason or "authentication failed", ResponseCode.AUTH)]

    def on_auth_result(self, result: AuthResult) -> list[Output]:
        """The server's answer to :class:`Authenticate`."""
        self._expect(_Waiting.AUTH)
        if isinstance(result, AuthOk):
            self._waiting = _Waiting.MAILDROP
            self.username = result.username
            return [OpenMaildrop(result.username)]
        return self._auth_failed(result)

    def _auth_failed(self, result: AuthResult | MaildropResult) -> list[Output]:
        self.username = None
        if isinstance(result, AuthRefused):
            return [Err(result.reason, ResponseCode.AUTH)]
        if isinstance(result, (AuthTemporaryFailure, MaildropUnavailable)):
            return [Err(result.reason, ResponseCode.SYS_TEMP)]
        if isinstance(result, MaildropInUse):
            return [Err("maildrop is locked by another session", ResponseCode.IN_USE)]
        return [Err("invalid user name or password", ResponseCode.AUTH)]

    def on_maildrop(self, result: MaildropResult) -> list[Output]:
        """The server's answer to :class:`OpenMaildrop`."""
        self._expect(_Waiting.MAILDROP)
        if not isinstance(result, Maildrop):
            return self._auth_failed(result)
        messages = result.messages
        if isinstance(messages, list) and all(type(m) is MessageInfo for m in messages):
            self._messages = messages  # taken as is (never modified): a big login copies nothing
        else:
            self._messages = [MessageInfo(uid, size) for uid, size in messages]
        self._total_size = sum(m.size for m in self._messages)
        self._user_expire = result.expire_days
        self._user_login_delay = result.login_delay
        self.state = State.TRANSACTION
        return [Ok(f"{self.username}'s maildrop has {self._summary()}")]

    def _summary(self) -> str:
        return f"{self.message_count} messages ({self.maildrop_size} octets)"

    def do_stls(self, command: Stls) -> list[Output]:
        if self.tls_active:
            return [Err("already using TLS")]
        if not self.policy.tls_available:
            return [Err("STLS is not available")]
        self._waiting = _Waiting.TLS
        return [Ok("begin TLS negotiation"), StartTls()]

    def on_tls_started(self) -> list[Output]:
        """The TLS handshake after STLS succeeded; the client starts over (RFC 2595 §4)."""
        self._expect(_Waiting.TLS)
        self.tls_active = True
        self._user = None
        return []

    # -- both states -------------------------------------------------------------------------

    def capabilities(self) -> list[str]:
        """The CAPA lines for the current state (RFC 2449 §5-§6)."""
        policy = self.policy
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.plaintext_auth_allowed:
            caps.append("USER")
            if policy.sasl_mechanisms:
                caps.append("SASL " + " ".join(policy.sasl_mechanisms))
        if policy.tls_available and not self.tls_active:
            caps.append("STLS")
        before_login = self.state is State.AUTHORIZATION
        expire = policy.expire_days if before_login else _pick(self._user_expire, policy.expire_days)
        if expire is None:
            caps.append("EXPIRE NEVER")
        else:
            caps.append(f"EXPIRE {expire}" + (" USER" if before_login and policy.expire_per_user else ""))
        delay = policy.login_delay if before_login else _pick(self._user_login_delay, policy.login_delay)
        if delay is not None:
            per_user = before_login and policy.login_delay_per_user
            caps.append(f"LOGIN-DELAY {delay}" + (" USER" if per_user else ""))
        caps.append(f"IMPLEMENTATION {policy.implementation}")
        return caps

    def do_capa(self, command: Capa) -> list[Output]:
        return [listing(Ok("capability list follows"), self.capabilities())]

    def do_quit(self, command: Quit) -> list[Output]:
        if self.state is State.AUTHORIZATION:
            return [Ok(SIGN_OFF), *self._close()]
        # RFC 1939 §6: QUIT from TRANSACTION enters UPDATE and removes the marked messages.
        self.state = State.UPDATE
        self._waiting = _Waiting.COMMIT
        uids = tuple(self._messages[n - 1].uid for n in sorted(self._deleted))
        return [CommitDeletions(uids)]

    def on_commit_result(self, ok: bool) -> list[Output]:
        """The server's answer to :class:`CommitDeletions`; the session then closes."""
        self._expect(_Waiting.COMMIT)
        if ok:
            reply: Reply = Ok(f"{SIGN_OFF} ({len(self._deleted)} messages deleted)")
        else:
            reply = Err("some deleted messages not removed", ResponseCode.SYS_TEMP)  # §6
        return [reply, *self._close()]

    # -- TRANSACTION -------------------------------------------------------------------------

    def _lookup(self, msg: int) -> MessageInfo | Err:
        """The live message numbered ``msg`` or the -ERR for it (RFC 1939 §5)."""
        if msg > len(self._messages):
            count = len(self._messages)
            return Err(f"no such message, only {count} message{'s' if count != 1 else ''} in maildrop")
        if msg in self._deleted:
            return Err(f"message {msg} already deleted")
        return self._messages[msg - 1]

    def do_stat(self, command: Stat) -> list[Output]:
        return [Ok(f"{self.message_count} {self.maildrop_size}")]

    def do_list(self, command: List) -> list[Output]:
        if command.msg is not None:
            info = self._lookup(command.msg)
            return [info if isinstance(info, Err) else Ok(f"{command.msg} {info.size}")]
        return [MultiLine(Ok(self._summary()), self._listing("LIST"))]

    def do_uidl(self, command: Uidl) -> list[Output]:
        if command.msg is not None:
            info = self._lookup(command.msg)
            return [info if isinstance(info, Err) else Ok(f"{command.msg} {info.uid}")]
        return [MultiLine(Ok("unique-id listing follows"), self._listing("UIDL"))]

    def _listing(self, verb: str) -> bytes:
        """The LIST or UIDL body, built once per set of deletions (clients that poll often
        list a large maildrop more than once; DELE and RSET drop the cached bodies)."""
        body = self._listings.get(verb)
        if body is None:
            deleted, messages = self._deleted, self._messages
            if verb == "LIST":
                lines = [f"{n} {m.size}" for n, m in enumerate(messages, 1) if n not in deleted]
            else:
                lines = [f"{n} {m.uid}" for n, m in enumerate(messages, 1) if n not in deleted]
            body = self._listings[verb] = listing(Ok(), lines).body
        return body

    def _send(self, msg: int, top_lines: int | None) -> list[Output]:
        info = self._lookup(msg)
        if isinstance(info, Err):
            return [info]
        action = SendMessage(msg, info.uid, top_lines)
        self._waiting = _Waiting.MESSAGE
        self._pending_message = action
        return [action]

    def do_retr(self, command: Retr) -> list[Output]:
        return self._send(command.msg, None)

    def do_top(self, command: Top) -> list[Output]:
        return self._send(command.msg, command.lines)

    def on_message(self, action: SendMessage, data: bytes | None, *, canonical: bool = False,
                   body: bytes | None = None) -> list[Output]:
        """The server's answer to :class:`SendMessage`: the message bytes, or None.

        ``canonical=True`` tells that ``data`` has CRLF line ends only (no bare CR or LF), as
        the store keeps messages; the body is then built without looking for bare LF.
        ``body``, if given, is ``message_body(data, action.top_lines, canonical=canonical)``
        already computed by the server (e.g. ahead of time, while the client was busy)."""
        self._expect(_Waiting.MESSAGE)
        if action is not self._pending_message and action != self._pending_message:
            raise Pop3SessionError(f"on_message for {action!r}, not {self._pending_message!r}")
        self._pending_message = None
        if data is None:
            return [Err(f"message {action.msg} cannot be read right now", ResponseCode.SYS_TEMP)]
        if action.top_lines is None:
            status = Ok(f"{self._messages[action.msg - 1].size} octets")
        else:
            status = Ok("top of message follows")
        if body is None:
            body = message_body(data, action.top_lines, canonical=canonical)
        return [MultiLine(status, body)]

    def do_dele(self, command: Dele) -> list[Output]:
        info = self._lookup(command.msg)
        if isinstance(info, Err):
            return [info]
        self._deleted.add(command.msg)
        self._deleted_size += info.size
        self._listings.clear()
        return [Ok(f"message {command.msg} deleted")]

    def do_noop(self, command: Noop) -> list[Output]:
        return [Ok()]

    def do_rset(self, command: Rset) -> list[Output]:
        self._deleted.clear()
        self._deleted_size = 0
        self._listings.clear()
        return [Ok(f"maildrop has {self._summary()}")]


def _pick(user_value: int | None | Default, policy_value: int | None) -> int | None:
    return policy_value if user_value is Default.POLICY else user_value
