"""SMTP commands as frozen dataclasses, and :func:`parse_command` (one line -> one value).

Parsing is context-free except for two flags the connection passes in: whether the
session said EHLO (ESMTP parameters are only valid then, RFC 5321 §4.1.1.11 / RFC 1869)
and whether the current transaction declared SMTPUTF8 (RFC 6531 §3.4: UTF-8 recipients).
State rules (MAIL before RCPT...) are the connection's job, not the parser's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from postoffice.protocols import sasl
from postoffice.protocols.smtp import replies as r
from postoffice.protocols.smtp.grammar import (
    Extensions,
    GrammarError,
    MailParams,
    Mailbox,
    RcptParams,
    mail_params,
    parse_esmtp_params,
    parse_forward_path,
    parse_reverse_path,
    rcpt_params,
)
from postoffice.protocols.smtp.replies import Reply

__all__ = [
    "Auth",
    "Bdat",
    "Command",
    "Data",
    "Ehlo",
    "Expn",
    "Helo",
    "Help",
    "InvalidCommand",
    "MailFrom",
    "Noop",
    "Quit",
    "RcptTo",
    "Rset",
    "StartTls",
    "Vrfy",
    "parse_command",
]


@dataclass(frozen=True)
class Ehlo:
    domain: str  # domain or address literal, as sent (validate with grammar.is_domain)


@dataclass(frozen=True)
class Helo:
    domain: str


@dataclass(frozen=True)
class MailFrom:
    address: Mailbox | None  # None is the null reverse-path "<>"
    params: MailParams = field(default_factory=MailParams)


@dataclass(frozen=True)
class RcptTo:
    address: Mailbox
    params: RcptParams = field(default_factory=RcptParams)


@dataclass(frozen=True)
class Data:
    pass


@dataclass(frozen=True)
class Bdat:
    """RFC 3030 chunk. The connection emits it only once the chunk's octets are consumed."""

    size: int
    last: bool


@dataclass(frozen=True)
class Rset:
    pass


@dataclass(frozen=True)
class Noop:
    arg: str = ""


@dataclass(frozen=True)
class Quit:
    pass


@dataclass(frozen=True)
class StartTls:
    pass


@dataclass(frozen=True)
class Auth:
    """RFC 4954 AUTH. ``initial_response`` is already base64-decoded (b"" for "=")."""

    mechanism: str  # upper-cased
    initial_response: bytes | None


@dataclass(frozen=True)
class Vrfy:
    arg: str


@dataclass(frozen=True)
class Expn:
    arg: str


@dataclass(frozen=True)
class Help:
    arg: str = ""


@dataclass(frozen=True)
class InvalidCommand:
    """A line the connection answers itself: send ``reply`` and carry on."""

    reply: Reply
    line: bytes = b""


Command = (
    Ehlo | Helo | MailFrom | RcptTo | Data | Bdat | Rset | Noop | Quit | StartTls | Auth | Vrfy
    | Expn | Help
)

# RFC 5321 §4.1.1 / §4.2.4: recognised historical verbs we do not implement -> 502.
_NOT_IMPLEMENTED = frozenset({"TURN", "ETRN", "ATRN", "SEND", "SOML", "SAML", "VERB", "XEXCH50"})
_VERB = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_MECHANISM = re.compile(r"[A-Z0-9_-]{1,20}")  # RFC 4422 §3.1 sasl-mech
_BDAT_SIZE_DIGITS = 20
_MAIL_FROM = re.compile(r"FROM: *", re.IGNORECASE)
_RCPT_TO = re.compile(r"TO: *", re.IGNORECASE)


def _no_args(cmd: Command, arg: str) -> Command | InvalidCommand:
    return cmd if not arg else InvalidCommand(r.R501_SYNTAX_PARAMS)


def parse_command(
    line: bytes,
    *,
    esmtp: bool = True,
    utf8_transaction: bool = False,
    extensions: Extensions = Extensions(),
    chunking: bool = True,
) -> Command | InvalidCommand:
    """Parse one command line (without its CRLF). Never raises."""
    try:
        result = _parse(line, esmtp, utf8_transaction, extensions, chunking)
    except GrammarError as exc:
        result = InvalidCommand(exc.reply)
    if isinstance(result, InvalidCommand) and not result.line:
        result = InvalidCommand(result.reply, line)
    return result


def _parse(
    line: bytes, esmtp: bool, utf8_tx: bool, ext: Extensions, chunking: bool
) -> Command | InvalidCommand:
    if b"\x00" in line or b"\r" in line or b"\n" in line:
        return InvalidCommand(r.R500_SYNTAX)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return InvalidCommand(r.R500_SYNTAX)
    if not text.isprintable():
        return InvalidCommand(r.R500_SYNTAX)
    verb, _, arg = text.partition(" ")
    if not _VERB.fullmatch(verb):
        return InvalidCommand(r.R500_SYNTAX if verb.isascii() else r.R500_UNRECOGNIZED)
    verb = verb.upper()
    bare_arg = arg.strip(" ")

    if verb in ("EHLO", "HELO"):
        # RFC 5321 §4.1.1.1: exactly one domain or address literal. Its validity is
        # policy (many clients send bare host names), so we only require one token.
        if not bare_arg or " " in bare_arg or (not bare_arg.isascii() and not ext.smtputf8):
            return InvalidCommand(r.R501_SYNTAX_PARAMS)
        return Ehlo(bare_arg) if verb == "EHLO" else Helo(bare_arg)
    if verb == "MAIL":
        return _mail(arg, esmtp, ext)
    if verb == "RCPT":
        return _rcpt(arg, esmtp, utf8_tx, ext)
    if verb == "DATA":
        return _no_args(Data(), bare_arg)
    if verb == "BDAT" and chunking:
        return _bdat(bare_arg)
    if verb == "RSET":
        return _no_args(Rset(), bare_arg)
    if verb == "NOOP":
        return Noop(bare_arg)
    if verb == "QUIT":
        return _no_args(Quit(), bare_arg)
    if verb == "STARTTLS":
        return _no_args(StartTls(), bare_arg)
    if verb == "AUTH":
        return _auth(bare_arg)
    if verb == "VRFY":
        return Vrfy(bare_arg) if bare_arg else InvalidCommand(r.R501_SYNTAX_PARAMS)
    if verb == "EXPN":
        return Expn(bare_arg) if bare_arg else InvalidCommand(r.R501_SYNTAX_PARAMS)
    if verb == "HELP":
        return Help(bare_arg)
    if verb in _NOT_IMPLEMENTED or verb == "BDAT":
        return InvalidCommand(r.R502_NOT_IMPLEMENTED)
    return InvalidCommand(r.R500_UNRECOGNIZED)


def _split_params(rest: str, esmtp: bool, utf8: bool) -> list[tuple[str, str | None]]:
    if not rest:
        return []
    if not rest.startswith(" "):
        raise GrammarError(r.R501_SYNTAX_PARAMS)
    pairs = parse_esmtp_params(rest, utf8=utf8)
    if pairs and not esmtp:
        # Parameters need EHLO (RFC 5321 §4.1.1.11): after HELO they are unknown.
        raise GrammarError(r.R555_UNKNOWN_PARAM)
    return pairs


def _mail(arg: str, esmtp: bool, ext: Extensions) -> MailFrom | InvalidCommand:
    m = _MAIL_FROM.match(arg)
    if m is None:
        return InvalidCommand(r.R501_SYNTAX_PARAMS)
    # Parse the path permissively first: SMTPUTF8, which allows a UTF-8 path, comes after it.
    address, rest = parse_reverse_path(arg[m.end() :], utf8=ext.smtputf8)
    params = mail_params(_split_params(rest, esmtp, utf8=ext.smtputf8), ext)
    if address is not None and not address.is_ascii and not params.smtputf8:
        return InvalidCommand(r.R553_NEED_SMTPUTF8)  # RFC 6531 §3.4
    return MailFrom(address, params)


def _rcpt(arg: str, esmtp: bool, utf8_tx: bool, ext: Extensions) -> RcptTo | InvalidCommand:
    m = _RCPT_TO.match(arg)
    if m is None:
        return InvalidCommand(r.R501_SYNTAX_PARAMS)
    address, rest = parse_forward_path(arg[m.end() :], utf8=utf8_tx)
    params = rcpt_params(_split_params(rest, esmtp, utf8=utf8_tx), ext)
    return RcptTo(address, params)


def _bdat(arg: str) -> Bdat | InvalidCommand:
    # RFC 3030 §2: bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] CRLF
    parts = arg.split(" ")
    size_text = parts[0]
    if (
        not size_text.isascii()
        or not size_text.isdigit()
        or len(size_text) > _BDAT_SIZE_DIGITS
        or len(parts) > 2
        or (len(parts) == 2 and parts[1].upper() != "LAST")
    ):
        return InvalidCommand(r.R501_SYNTAX_PARAMS)
    return Bdat(int(size_text), len(parts) == 2)


def _auth(arg: str) -> Auth | InvalidCommand:
    mechanism, _, initial = arg.partition(" ")
    mechanism = mechanism.upper()
    if not _MECHANISM.fullmatch(mechanism) or " " in initial:
        return InvalidCommand(r.R501_SYNTAX_PARAMS)
    if not initial:
        return Auth(mechanism, None)
    decoded = sasl.decode_response(initial.encode("ascii", "replace"))
    if decoded is sasl.CANCELLED:
        return InvalidCommand(r.R501_AUTH_CANCELLED)
    if decoded is sasl.INVALID or not initial.isascii():
        return InvalidCommand(r.R501_BAD_BASE64)
    assert isinstance(decoded, bytes)
    return Auth(mechanism, decoded)
