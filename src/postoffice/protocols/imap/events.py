"""Events produced by ``ImapConnection.next_event()`` (and ``parse_command``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from .commands import Command

__all__ = [
    "NEED_DATA", "NeedData", "CommandReceived", "InvalidCommand", "ContinuationNeeded",
    "LiteralRejected", "LineTooLong", "IdleDone", "SaslResponse", "SaslCancelled",
    "SaslInvalid", "ConnectionClosed", "Event",
]


class NeedData:
    """Sentinel type: feed more bytes with ``receive_data``."""

    _instance: NeedData | None = None

    def __new__(cls) -> NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()


@dataclass(frozen=True, slots=True)
class CommandReceived:
    """A complete, well-formed command."""

    tag: bytes
    command: Command


@dataclass(frozen=True, slots=True)
class InvalidCommand:
    """Bad syntax: answer ``tag BAD message`` (``* BAD`` when ``tag`` is None).

    ``unknown`` is True when the command verb itself is not recognised;
    ``verb`` is the upper-cased verb when it could be read (e.g. b"UID FETCH").
    The connection stays usable (framing is intact).
    """

    tag: bytes | None
    message: str
    unknown: bool = False
    verb: bytes | None = None


@dataclass(frozen=True, slots=True)
class ContinuationNeeded:
    """The client announced a synchronizing literal ``{size}`` within limits:
    write ``+ Ready for literal`` (``responses.continuation``), then keep reading."""

    tag: bytes | None
    size: int


@dataclass(frozen=True, slots=True)
class LiteralRejected:
    """A literal larger than allowed was announced.

    ``synchronizing`` literal: the client is waiting for ``+``; answer
    ``tag NO [TOOBIG] ...`` (or BAD); the connection already dropped the partial
    command and continues with the next line.

    Non-synchronizing ``{n+}`` literal (``must_close`` is True): the client is
    already sending the bytes (RFC 7888 section 4): answer ``tag BAD [TOOBIG]``,
    send ``* BYE`` and close. The connection is dead afterwards.

    ``before_login``: a literal over the small pre-login limit (any kind): the
    client gets ``* BYE`` rather than ``+`` and the connection is dead too
    (``must_close``); nobody needs kilobytes to log in.
    """

    tag: bytes | None
    size: int
    limit: int
    synchronizing: bool
    before_login: bool = False
    #: Refused for now by the server's ``literal_gate`` (no room in its in-flight budget), not
    #: for its size: answer ``tag NO [LIMIT]``; the connection goes on (a LITERAL+ literal has
    #: been read and dropped with the rest of its command).
    busy: bool = False

    @property
    def must_close(self) -> bool:
        return (not self.synchronizing or self.before_login) and not self.busy


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A command line (excluding literals) or the whole command exceeded the
    limit. The connection discards input up to the next line end and goes on;
    the server answers ``tag BAD`` / ``* BAD`` (or says BYE and closes)."""

    tag: bytes | None
    limit: int


@dataclass(frozen=True, slots=True)
class IdleDone:
    """The client ended IDLE with DONE: answer the IDLE tag with OK."""


@dataclass(frozen=True, slots=True)
class SaslResponse:
    """One decoded base64 line of an AUTHENTICATE exchange."""

    data: bytes

    def __repr__(self) -> str:
        return f"SaslResponse(<{len(self.data)} bytes>)"


@dataclass(frozen=True, slots=True)
class SaslCancelled:
    """The client sent ``*``: answer ``tag BAD`` (RFC 9051 6.2.2) and stop."""


@dataclass(frozen=True, slots=True)
class SaslInvalid:
    """The SASL response line was not valid base64: answer ``tag BAD``."""

    message: str


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed (EOF), or the connection is dead after a fatal event."""


Event = Union[
    CommandReceived, InvalidCommand, ContinuationNeeded, LiteralRejected, LineTooLong,
    IdleDone, SaslResponse, SaslCancelled, SaslInvalid, ConnectionClosed,
]
