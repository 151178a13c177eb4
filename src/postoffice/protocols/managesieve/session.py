"""The ManageSieve (RFC 5804) session state machine, sans-IO.

``handle(event)`` returns an :class:`Output`: bytes to send now and, when the server has work
to do, one action. The server performs it and calls the matching ``*_done`` method, which
returns the next Output:

=============  ==================================================================================
StartTls       send ``data``, discard buffered input, handshake, then ``tls_done(ok)``
Authenticate   check the credentials (password + protocol access), then ``auth_done(...)``
ScriptOp       a script-store operation (``op``: list, put, get, delete, rename, activate,
               havespace, check); the server answers with ``script_done(...)``
Close          send ``data`` and close
=============  ==================================================================================

States (§2): NONAUTH (after the greeting), AUTH (after AUTHENTICATE), LOGOUT.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from .. import sasl
from .connection import Command, ConnectionClosed, InvalidCommand, SaslResponse, capability_lines, literal, quoted, response


class State(enum.Enum):
    NONAUTH = "nonauth"
    AUTH = "auth"
    LOGOUT = "logout"


@dataclass(frozen=True)
class Policy:
    implementation: str
    sieve_extensions: tuple[str, ...]
    tls_available: bool
    allow_plaintext_auth: bool  # without TLS (the shared plaintext-login rule)
    sasl_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")
    max_redirects: int = 4


@dataclass(frozen=True)
class StartTls:
    pass


@dataclass(frozen=True)
class Authenticate:
    username: str
    password: str
    authzid: str


@dataclass(frozen=True)
class ScriptOp:
    op: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Close:
    pass


@dataclass
class Output:
    data: bytes = b""
    action: StartTls | Authenticate | ScriptOp | Close | None = None


@dataclass
class _Pending:
    mechanism: Any = None
    command: Command | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# Arity of each command in AUTH state: (min, max) string arguments.
_SCRIPT_COMMANDS = {
    "LISTSCRIPTS": (0, 0), "PUTSCRIPT": (2, 2), "GETSCRIPT": (1, 1), "DELETESCRIPT": (1, 1),
    "RENAMESCRIPT": (2, 2), "SETACTIVE": (1, 1), "HAVESPACE": (2, 2), "CHECKSCRIPT": (1, 1),
}


class ManageSieveSession:
    def __init__(self, policy: Policy, *, tls_active: bool) -> None:
        self.policy = policy
        self.tls = tls_active
        self.state = State.NONAUTH
        self.user: str | None = None
        self._pending: _Pending | None = None
        self.failures = 0

    # -- capabilities (§1.7) --

    def _may_login(self) -> bool:
        return self.tls or self.policy.allow_plaintext_auth

    def capabilities(self) -> bytes:
        caps: list[tuple[str, str | None]] = [("IMPLEMENTATION", self.policy.implementation)]
        if self.state is State.NONAUTH:
            # §1.7 / RFC 5804 §2.1: no mechanism is offered where a password may not be sent.
            caps.append(("SASL", " ".join(self.policy.sasl_mechanisms) if self._may_login() else ""))
        caps.append(("SIEVE", " ".join(self.policy.sieve_extensions)))
        if self.policy.tls_available and not self.tls and self.state is State.NONAUTH:
            caps.append(("STARTTLS", None))
        caps.append(("MAXREDIRECTS", str(self.policy.max_redirects)))
        caps.append(("VERSION", "1.0"))
        if self.user is not None:
            caps.append(("OWNER", self.user))
        return capability_lines(caps)

    def greeting(self) -> bytes:
        return self.capabilities() + response("OK", f"{self.policy.implementation} ManageSieve ready")

    # -- events --

    def handle(self, event: Command | SaslResponse | InvalidCommand | ConnectionClosed) -> Output:
        if isinstance(event, ConnectionClosed):
            self.state = State.LOGOUT
            return Output(action=Close())
        if isinstance(event, InvalidCommand):
            if event.fatal:
                self.state = State.LOGOUT
                return Output(response("BYE", event.reason), Close())
            return Output(response("NO", event.reason))
        if isinstance(event, SaslResponse):
            return self._sasl_step(event.data)
        return self._command(event)

    def _command(self, cmd: Command) -> Output:
        name, args = cmd.name, cmd.args
        if name == "LOGOUT":
            self.state = State.LOGOUT
            return Output(response("OK", "Logout completed"), Close())
        if name == "CAPABILITY":
            return Output(self.capabilities() + response("OK", "Capability completed"))
        if name == "NOOP":
            # §2.11: an optional string is echoed in a TAG response code
            if args and isinstance(args[0], str):
                return Output(response("OK", "Done", code="TAG " + quoted(args[0]).decode("utf-8")))
            return Output(response("OK", "Done"))
        if self.state is State.NONAUTH:
            if name == "STARTTLS":
                if self.tls or not self.policy.tls_available:
                    return Output(response("NO", "TLS is not available" if not self.tls else "TLS is already active"))
                return Output(response("OK", "Begin TLS negotiation now"), StartTls())
            if name == "AUTHENTICATE":
                return self._authenticate(args)
            if name in _SCRIPT_COMMANDS:
                return Output(response("NO", "Authenticate first"))
        else:
            if name in ("AUTHENTICATE", "STARTTLS"):
                return Output(response("NO", "Already authenticated"))
            if name == "UNAUTHENTICATE":
                self.state, self.user = State.NONAUTH, None
                return Output(response("OK", "Unauthenticate completed"))
            if name in _SCRIPT_COMMANDS:
                lo, hi = _SCRIPT_COMMANDS[name]
                if not lo <= len(args) <= hi:
                    return Output(response("NO", f"{name} takes {lo} argument(s)" if lo == hi else "wrong arguments"))
                if name == "HAVESPACE":
                    if not isinstance(args[0], str) or not isinstance(args[1], int):
                        return Output(response("NO", "HAVESPACE takes a name and a number"))
                elif not all(isinstance(a, str) for a in args):
                    return Output(response("NO", f"{name} takes strings"))
                return Output(action=ScriptOp(name.lower(), tuple(args)))
        return Output(response("NO", f"Unknown command {name}"))

    # -- SASL (§2.1) --

    def _authenticate(self, args: tuple[str | int, ...]) -> Output:
        if not args or not isinstance(args[0], str) or len(args) > 2:
            return Output(response("NO", "AUTHENTICATE takes a mechanism name and an optional response"))
        if not self._may_login():
            return Output(response("NO", "Use STARTTLS before sending a password", code="ENCRYPT-NEEDED"))
        mech_name = args[0].upper()
        if mech_name not in self.policy.sasl_mechanisms:
            return Output(response("NO", f"Unsupported SASL mechanism {args[0]}"))
        mech = sasl.server_mechanism(mech_name)
        if mech is None:
            return Output(response("NO", f"Unsupported SASL mechanism {args[0]}"))
        initial: bytes | None = None
        if len(args) == 2:
            decoded = sasl.decode_response(str(args[1]).encode("ascii", "replace") or b"=")
            if not isinstance(decoded, bytes):
                return Output(response("NO", "Invalid base64 in the initial response"))
            initial = decoded
        self._pending = _Pending(mechanism=mech)
        return self._after_step(mech.start(initial))

    def _sasl_step(self, data: str) -> Output:
        pending = self._pending
        if pending is None or pending.mechanism is None:
            return Output(response("NO", "No authentication in progress"))
        if data == "*":
            self._pending = None
            return Output(response("NO", "Authentication cancelled"), None)
        decoded = sasl.decode_response(data.encode("ascii", "replace") or b"=")
        if not isinstance(decoded, bytes):
            self._pending = None
            return Output(response("NO", "Invalid base64 response"))
        return self._after_step(pending.mechanism.step(decoded))

    def _after_step(self, step: Any) -> Output:
        if isinstance(step, sasl.Challenge):
            return Output(quoted(sasl.encode_challenge(step.data).decode("ascii")) + b"\r\n")
        self._pending = None
        if isinstance(step, sasl.Credentials):
            return Output(action=Authenticate(step.username, step.password, step.authzid))
        return Output(response("NO", getattr(step, "reason", "Authentication failed")))

    @property
    def in_sasl(self) -> bool:
        return self._pending is not None and self._pending.mechanism is not None

    def auth_done(self, ok: bool, *, user: str | None = None, reason: str = "", temporary: bool = False) -> Output:
        if ok:
            self.state = State.AUTH
            self.user = user
            return Output(response("OK", "Authenticated"))
        self.failures += 1
        if temporary:
            return Output(response("NO", reason or "Try again later", code="TRYLATER"))
        if self.failures >= 3:
            self.state = State.LOGOUT
            return Output(response("NO", reason or "Authentication failed") + response("BYE", "Too many failures"),
                          Close())
        return Output(response("NO", reason or "Authentication failed"))

    def tls_done(self, ok: bool) -> Output:
        if not ok:
            self.state = State.LOGOUT
            return Output(action=Close())
        self.tls = True
        # §2.2: after a successful TLS negotiation the server sends the capabilities again.
        return Output(self.capabilities() + response("OK", "TLS negotiation successful"))

    # -- script operations (the server's answers) --

    def script_done(self, op: ScriptOp, result: Any = None, *, error: str | None = None,
                    code: str | None = None) -> Output:
        if error is not None:
            return Output(response("NO", error, code=code))
        if op.op == "listscripts":
            lines = b"".join(quoted(name) + (b" ACTIVE" if active else b"") + b"\r\n" for name, active in result)
            return Output(lines + response("OK", "Listscripts completed"))
        if op.op == "getscript":
            return Output(literal(result.encode("utf-8")) + b"\r\n" + response("OK", "Getscript completed"))
        if op.op in ("putscript", "checkscript") and result:
            # §2.6: warnings go in an OK (WARNINGS) response
            return Output(response("OK", result, code="WARNINGS"))
        return Output(response("OK", f"{op.op.capitalize()} completed"))


__all__ = ["Authenticate", "Close", "ManageSieveSession", "Output", "Policy", "ScriptOp", "StartTls", "State"]
