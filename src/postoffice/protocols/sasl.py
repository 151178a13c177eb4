"""Server-side SASL mechanisms shared by SMTP, IMAP and POP3 (sans-IO).

Each mechanism is a small state machine that never touches the wire format of the
protocol carrying it::

    mech = server_mechanism("PLAIN")          # None for an unknown mechanism
    step = mech.start(initial_response)       # bytes, or None when the client sent none
    while isinstance(step, Challenge):
        ...send encode_challenge(step.data) in a 334 / "+ " continuation...
        response = decode_response(line)      # CANCELLED / INVALID / bytes
        step = mech.step(response)
    # step is Credentials(...) -> verify the password; SaslFailure(...) -> reject

The mechanisms only *extract* credentials: checking the password is the caller's job.

Implementation notes
- PLAIN follows RFC 4616 §2: ``[authzid] NUL authcid NUL passwd``, each part UTF-8 with no
  NUL, authcid and passwd non-empty, every part at most 255 characters.
- LOGIN is the de-facto (draft-murchison-sasl-login) exchange: challenges ``Username:``
  and ``Password:``; a client may send the user name as an initial response.
- ``decode_response`` implements the RFC 4954 §4 conventions, which IMAP (RFC 9051 §6.2.2)
  and POP3 (RFC 5034 §4) share: ``*`` cancels, ``=`` is an empty initial response and
  anything else must be strict base64.
"""

from __future__ import annotations

import base64
import binascii
import enum
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "CANCELLED",
    "INVALID",
    "MAX_FIELD_CHARS",
    "MAX_RESPONSE_OCTETS",
    "MECHANISMS",
    "Challenge",
    "Credentials",
    "LoginMechanism",
    "PlainMechanism",
    "ResponseError",
    "SaslFailure",
    "ServerMechanism",
    "Step",
    "decode_response",
    "encode_challenge",
    "server_mechanism",
]

#: RFC 4616 §2: authzid, authcid and passwd are each at most 255 UTF-8 characters.
MAX_FIELD_CHARS = 255
#: Largest decoded response accepted (RFC 4954 §4 allows 12288 octets of base64 on the line).
MAX_RESPONSE_OCTETS = 9216


class ResponseError(enum.Enum):
    """Sentinels returned by :func:`decode_response` instead of bytes."""

    CANCELLED = "cancelled"  # the client sent "*" (RFC 4954 §4)
    INVALID = "invalid"  # not valid base64

    def __repr__(self) -> str:
        return self.name


CANCELLED = ResponseError.CANCELLED
INVALID = ResponseError.INVALID


@dataclass(frozen=True)
class Challenge:
    """Send ``data`` to the client (base64-encoded by the protocol) and wait for a response."""

    data: bytes


@dataclass(frozen=True)
class Credentials:
    """The exchange finished; the caller must verify ``password`` for ``username``.

    ``authzid`` is the identity to act as ("" when the client did not ask for one).
    """

    authzid: str
    username: str
    password: str


@dataclass(frozen=True)
class SaslFailure:
    """The exchange failed for a protocol reason (malformed response, misuse)."""

    reason: str


Step = Challenge | Credentials | SaslFailure


class ServerMechanism(Protocol):
    """What every server-side mechanism provides."""

    name: str

    def start(self, initial_response: bytes | None) -> Step: ...

    def step(self, response: bytes) -> Step: ...


def _utf8_field(raw: bytes, what: str, *, allow_empty: bool) -> str | SaslFailure:
    if not raw and not allow_empty:
        return SaslFailure(f"empty {what}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return SaslFailure(f"{what} is not UTF-8")
    if len(text) > MAX_FIELD_CHARS:
        return SaslFailure(f"{what} too long")
    return text


class PlainMechanism:
    """RFC 4616 PLAIN: one message carrying authzid, authcid and password."""

    name = "PLAIN"

    def __init__(self) -> None:
        self._done = False
        self._started = False

    def start(self, initial_response: bytes | None) -> Step:
        if self._started:
            return SaslFailure("exchange already started")
        self._started = True
        if initial_response is None:
            # RFC 4422 §5: no initial response, so send an empty challenge.
            return Challenge(b"")
        return self._finish(initial_response)

    def step(self, response: bytes) -> Step:
        if not self._started or self._done:
            return SaslFailure("unexpected response")
        return self._finish(response)

    def _finish(self, message: bytes) -> Step:
        self._done = True
        if len(message) > 3 * MAX_FIELD_CHARS * 4 + 2:
            return SaslFailure("response too long")
        parts = message.split(b"\x00")
        # Exactly two NULs: a NUL inside any field gives more parts, a missing one fewer.
        if len(parts) != 3:
            return SaslFailure("malformed PLAIN message")
        fields: list[str] = []
        for raw, what, allow_empty in (
            (parts[0], "authzid", True),
            (parts[1], "authcid", False),
            (parts[2], "password", False),
        ):
            value = _utf8_field(raw, what, allow_empty=allow_empty)
            if isinstance(value, SaslFailure):
                return value
            fields.append(value)
        return Credentials(authzid=fields[0], username=fields[1], password=fields[2])


class LoginMechanism:
    """The obsolete but ubiquitous LOGIN mechanism: user name, then password."""

    name = "LOGIN"
    USERNAME_CHALLENGE = b"Username:"
    PASSWORD_CHALLENGE = b"Password:"

    def __init__(self) -> None:
        self._username: str | None = None
        self._started = False
        self._done = False

    def start(self, initial_response: bytes | None) -> Step:
        if self._started:
            return SaslFailure("exchange already started")
        self._started = True
        if initial_response is None:
            return Challenge(self.USERNAME_CHALLENGE)
        return self.step(initial_response)

    def step(self, response: bytes) -> Step:
        if not self._started or self._done:
            return SaslFailure("unexpected response")
        if b"\x00" in response:
            self._done = True
            return SaslFailure("NUL in LOGIN response")
        if self._username is None:
            username = _utf8_field(response, "username", allow_empty=False)
            if isinstance(username, SaslFailure):
                self._done = True
                return username
            self._username = username
            return Challenge(self.PASSWORD_CHALLENGE)
        self._done = True
        password = _utf8_field(response, "password", allow_empty=False)
        if isinstance(password, SaslFailure):
            return password
        return Credentials(authzid="", username=self._username, password=password)


_MECHANISMS: dict[str, type[PlainMechanism] | type[LoginMechanism]] = {
    "PLAIN": PlainMechanism,
    "LOGIN": LoginMechanism,
}

#: Names of the mechanisms implemented here, in preference order.
MECHANISMS: tuple[str, ...] = tuple(_MECHANISMS)


def server_mechanism(name: str) -> ServerMechanism | None:
    """A fresh server state machine for ``name`` (case-insensitive), or None if unknown."""
    factory = _MECHANISMS.get(name.upper())
    return factory() if factory is not None else None


def decode_response(line: bytes) -> bytes | ResponseError:
    """Decode one base64 client response line (trailing CRLF allowed).

    RFC 4954 §4: ``*`` cancels the exchange; ``=`` stands for an empty initial response
    (an empty line is an empty response to a challenge). Anything that is not strict,
    correctly padded base64 gives :data:`INVALID`.
    """
    if line.endswith(b"\r\n"):
        line = line[:-2]
    if line == b"*":
        return CANCELLED
    if line in (b"", b"="):
        return b""
    if len(line) > MAX_RESPONSE_OCTETS * 4 // 3 + 4:
        return INVALID
    try:
        return binascii.a2b_base64(line, strict_mode=True)
    except (binascii.Error, ValueError):
        return INVALID


def encode_challenge(data: bytes) -> bytes:
    """Base64 for a server challenge, without line break (b"" stays b"")."""
    return base64.b64encode(data)
