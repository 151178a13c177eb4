"""POP3 commands as frozen dataclasses, and the parser for one command line.

Grammar (RFC 1939 §3, RFC 2449 §3, RFC 2595 §4, RFC 5034 §4)::

    command  = keyword *(SP argument) CRLF      ; keyword is 3-4 chars, case-insensitive
    msg      = 1*DIGIT                           ; 1-based, must not refer to a deleted message
    USER name           PASS string              APOP name digest
    STAT                LIST [msg]               RETR msg
    DELE msg            NOOP                     RSET
    QUIT                TOP msg n                UIDL [msg]
    CAPA                STLS                     AUTH [mechanism [initial-response]]

Parsing is purely syntactic: whether a message number exists or is deleted, and whether the
command is allowed in the current state, is decided by :mod:`.session`.  Bad syntax is returned
as an :class:`InvalidCommand` value whose ``message`` is the sentence to put after ``-ERR``.

Line limits: RFC 2449 §4 caps a command line at 255 octets including CRLF.  We enforce that for
every command except AUTH, which may carry a SASL initial response; RFC 5034 §4 tells clients
not to exceed 255 there either, but some do, so AUTH lines are accepted up to
:data:`MAX_AUTH_LINE` (512 octets, the RFC 1939 response-line length).  Continuation lines of a
SASL exchange are read in a separate mode with :data:`MAX_SASL_LINE` (12288 octets of base64 as
in RFC 4954 §4, matching :mod:`postoffice.protocols.sasl`; see :mod:`.connection`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Union

MAX_COMMAND_LINE: Final = 255  # RFC 2449 §4, including CRLF
MAX_AUTH_LINE: Final = 512  # our leniency for AUTH with an initial response, including CRLF
MAX_SASL_LINE: Final = 12288 + 2  # SASL continuation lines: RFC 4954 §4's 12288 plus CRLF
MAX_MESSAGE_NUMBER_DIGITS: Final = 9  # "RETR 9999999999" is "no such message", not a bignum
MAX_TOP_LINES: Final = 2**31 - 1  # TOP msg n with a larger n means the same: every line


@dataclass(frozen=True)
class User:
    """USER name (RFC 1939 §7)."""

    name: str


@dataclass(frozen=True)
class Pass:
    """PASS string (RFC 1939 §7). The password is the rest of the line, spaces included."""

    password: str


@dataclass(frozen=True)
class Apop:
    """APOP name digest (RFC 1939 §7). Parsed but never offered: we store only argon2 hashes."""

    name: str
    digest: str


@dataclass(frozen=True)
class Stat:
    """STAT (RFC 1939 §5)."""


@dataclass(frozen=True)
class List:
    """LIST [msg] (RFC 1939 §5)."""

    msg: int | None = None


@dataclass(frozen=True)
class Retr:
    """RETR msg (RFC 1939 §5)."""

    msg: int


@dataclass(frozen=True)
class Dele:
    """DELE msg (RFC 1939 §5)."""

    msg: int


@dataclass(frozen=True)
class Noop:
    """NOOP (RFC 1939 §5)."""


@dataclass(frozen=True)
class Rset:
    """RSET (RFC 1939 §5)."""


@dataclass(frozen=True)
class Quit:
    """QUIT (RFC 1939 §4 in AUTHORIZATION, §6 in TRANSACTION)."""


@dataclass(frozen=True)
class Top:
    """TOP msg n (RFC 1939 §7)."""

    msg: int
    lines: int


@dataclass(frozen=True)
class Uidl:
    """UIDL [msg] (RFC 1939 §7)."""

    msg: int | None = None


@dataclass(frozen=True)
class Capa:
    """CAPA (RFC 2449 §5)."""


@dataclass(frozen=True)
class Stls:
    """STLS (RFC 2595 §4)."""


@dataclass(frozen=True)
class Auth:
    """AUTH [mechanism [initial-response]] (RFC 5034 §4).

    ``mechanism`` is upper-cased; ``None`` means a bare ``AUTH``, answered with the list of
    mechanisms (a widespread pre-RFC 5034 extension clients still probe with).
    ``initial_response`` is the raw base64 text as sent (``b"="`` is an empty response).
    """

    mechanism: str | None = None
    initial_response: bytes | None = None


@dataclass(frozen=True)
class InvalidCommand:
    """A line that is not a valid command. ``message`` is the text after ``-ERR``."""

    message: str
    verb: str | None = None


Command = Union[
    User, Pass, Apop, Stat, List, Retr, Dele, Noop, Rset, Quit, Top, Uidl, Capa, Stls, Auth
]

ALL_COMMANDS: Final[tuple[type[Command], ...]] = (
    User, Pass, Apop, Stat, List, Retr, Dele, Noop, Rset, Quit, Top, Uidl, Capa, Stls, Auth,
)

# RFC 1939 §3: keywords are 3 or 4 characters; we accept any token and then look it up.
_DIGITS = re.compile(rb"[0-9]+")
_RETR_PREFIXES = frozenset({b"RETR ", b"retr ", b"Retr "})
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
# RFC 4422 §3.1 mechanism names: 1-20 of upper-case letters, digits, "-" and "_".
_MECHANISM = re.compile(rb"[A-Za-z0-9_-]{1,20}")
# base64 text or "=" (RFC 5034 §4); validity of the base64 itself is checked by the SASL layer.
_INITIAL_RESPONSE = re.compile(rb"[A-Za-z0-9+/=]+")


def _arguments(rest: bytes) -> list[bytes]:
    return rest.split(b" ") if rest else []


def _message_number(verb: str, arg: bytes) -> int | InvalidCommand:
    """``msg`` argument: 1-based decimal (RFC 1939 §5)."""
    if not _DIGITS.fullmatch(arg):
        return InvalidCommand(f"{verb} needs a message number, not {_show(arg)}", verb)
    if len(arg.lstrip(b"0")) > MAX_MESSAGE_NUMBER_DIGITS:
        # Syntactically fine but cannot exist; the session answers "no such message".
        return 10**MAX_MESSAGE_NUMBER_DIGITS
    number = int(arg)
    if number == 0:
        return InvalidCommand("message numbers start at 1", verb)
    return number


def _show(arg: bytes) -> str:
    text = arg[:20].decode("ascii", "replace")
    text = "".join(c if " " <= c <= "~" else "?" for c in text)
    return f'"{text}"' + ("..." if len(arg) > 20 else "")


def _decode(verb: str, arg: bytes) -> str | InvalidCommand:
    try:
        return arg.decode("utf-8")
    except UnicodeDecodeError:
        return InvalidCommand(f"{verb} argument is not valid UTF-8", verb)


def _no_args(verb: str, args: list[bytes], cls: type[Command]) -> Command | InvalidCommand:
    if args:
        return InvalidCommand(f"{verb} takes no arguments", verb)
    return cls()


def _optional_msg(
    verb: str, args: list[bytes], cls: type[List] | type[Uidl]
) -> Command | InvalidCommand:
    if not args:
        return cls()
    if len(args) > 1:
        return InvalidCommand(f"{verb} takes at most one argument, a message number", verb)
    number = _message_number(verb, args[0])
    return number if isinstance(number, InvalidCommand) else cls(number)


def _one_msg(
    verb: str, args: list[bytes], cls: type[Retr] | type[Dele]
) -> Command | InvalidCommand:
    if len(args) != 1:
        return InvalidCommand(f"{verb} takes exactly one argument, a message number", verb)
    number = _message_number(verb, args[0])
    return number if isinstance(number, InvalidCommand) else cls(number)


def parse_command(line: bytes) -> Command | InvalidCommand:
    """Parse one command line (with or without its CRLF) into a command or InvalidCommand."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    # Fast path for the command a download repeats thousands of times, "RETR n" with a plain
    # decimal number: exactly what the general path below returns for it, minus the splitting.
    if line[:5] in _RETR_PREFIXES:
        arg = line[5:]
        if 0 < len(arg) <= MAX_MESSAGE_NUMBER_DIGITS and arg.isdigit() and arg[0] != 48:  # "0"
            return Retr(int(arg))
    keyword, _, rest = line.partition(b" ")
    if not keyword:
        return InvalidCommand("empty command" if not rest else "command must not start with a space")
    try:
        verb = keyword.decode("ascii").upper()
    except UnicodeDecodeError:
        return InvalidCommand("unknown command")
    limit = MAX_AUTH_LINE if verb == "AUTH" else MAX_COMMAND_LINE
    if len(line) + 2 > limit:
        return InvalidCommand("line too long", verb if verb in _VERBS else None)

    if verb == "PASS":
        # RFC 1939 §7: PASS has one argument, so spaces are part of the password.
        if not rest:
            return InvalidCommand("PASS needs a password", verb)
        if b"\0" in rest:
            return InvalidCommand("PASS must not contain NUL", verb)
        password = _decode(verb, rest)
        return password if isinstance(password, InvalidCommand) else Pass(password)

    args = _arguments(rest)
    if any(not a for a in args):
        return InvalidCommand("arguments must be separated by a single space", verb if verb in _VERBS else None)

    if verb == "USER":
        if len(args) != 1:
            return InvalidCommand("USER takes exactly one argument, the user name", verb)
        if _CONTROL.search(args[0]):
            return InvalidCommand("USER name must not contain control characters", verb)
        name = _decode(verb, args[0])
        return name if isinstance(name, InvalidCommand) else User(name)
    if verb == "APOP":
        if len(args) != 2:
            return InvalidCommand("APOP takes a name and a digest", verb)
        name, digest = _decode(verb, args[0]), _decode(verb, args[1])
        if isinstance(name, InvalidCommand):
            return name
        if isinstance(digest, InvalidCommand):
            return digest
        return Apop(name, digest)
    if verb == "STAT":
        return _no_args(verb, args, Stat)
    if verb == "LIST":
        return _optional_msg(verb, args, List)
    if verb == "UIDL":
        return _optional_msg(verb, args, Uidl)
    if verb == "RETR":
        return _one_msg(verb, args, Retr)
    if verb == "DELE":
        return _one_msg(verb, args, Dele)
    if verb == "TOP":
        if len(args) != 2:
            return InvalidCommand("TOP takes a message number and a number of lines", verb)
        number = _message_number(verb, args[0])
        if isinstance(number, InvalidCommand):
            return number
        if not _DIGITS.fullmatch(args[1]):
            return InvalidCommand("the number of lines must be a non-negative integer", verb)
        # "TOP 1 99999999999999999999" asks for the whole body; capped so that it fits a C
        # ssize_t where the body is split (no OverflowError).
        return Top(number, min(int(args[1]), MAX_TOP_LINES))
    if verb == "NOOP":
        return _no_args(verb, args, Noop)
    if verb == "RSET":
        return _no_args(verb, args, Rset)
    if verb == "QUIT":
        return _no_args(verb, args, Quit)
    if verb == "CAPA":
        return _no_args(verb, args, Capa)
    if verb == "STLS":
        return _no_args(verb, args, Stls)
    if verb == "AUTH":
        if not args:
            return Auth()
        if len(args) > 2:
            return InvalidCommand("AUTH takes a mechanism and an optional initial response", verb)
        if not _MECHANISM.fullmatch(args[0]):
            return InvalidCommand("invalid SASL mechanism name", verb)
        mechanism = args[0].decode("ascii").upper()
        if len(args) == 1:
            return Auth(mechanism)
        if not _INITIAL_RESPONSE.fullmatch(args[1]):
            return InvalidCommand("the initial response must be base64 or \"=\"", verb)
        return Auth(mechanism, args[1])
    return InvalidCommand("unknown command")


_VERBS: Final = frozenset(
    ("USER", "PASS", "APOP", "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "QUIT", "TOP",
     "UIDL", "CAPA", "STLS", "AUTH")
)

VERB_OF: Final[dict[type[Command], str]] = {
    User: "USER", Pass: "PASS", Apop: "APOP", Stat: "STAT", List: "LIST", Retr: "RETR",
    Dele: "DELE", Noop: "NOOP", Rset: "RSET", Quit: "QUIT", Top: "TOP", Uidl: "UIDL",
    Capa: "CAPA", Stls: "STLS", Auth: "AUTH",
}
