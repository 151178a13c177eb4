"""RFC 5321 / RFC 6531 grammar: paths, mailboxes, domains and ESMTP parameters.

Everything here works on ``str`` (the command line already decoded as UTF-8) and raises
:class:`GrammarError` carrying the reply to send; ``commands.parse_command`` turns that
into an ``InvalidCommand`` value, so no exception leaves the protocol layer.

The ABNF (RFC 5321 §4.1.2, with RFC 6531 §3.3 additions marked ``6531``)::

    Reverse-path   = Path / "<>"
    Forward-path   = Path                  ; or "<Postmaster>" (§4.1.1.3)
    Path           = "<" [ A-d-l ":" ] Mailbox ">"
    A-d-l          = At-domain *( "," At-domain )   ; source route: parsed, then ignored
    Mailbox        = Local-part "@" ( Domain / address-literal )
    Local-part     = Dot-string / Quoted-string
    Dot-string     = Atom *("."  Atom)
    Atom           = 1*atext               ; 6531: atext =/ UTF8-non-ascii
    Quoted-string  = DQUOTE *QcontentSMTP DQUOTE
    qtextSMTP      = %d32-33 / %d35-91 / %d93-126   ; 6531: =/ UTF8-non-ascii
    quoted-pairSMTP= %d92 %d32-126
    Domain         = sub-domain *("." sub-domain)
    sub-domain     = Let-dig [Ldh-str]     ; 6531: =/ U-label
    address-literal= "[" ( IPv4-address-literal / IPv6-address-literal /
                           General-address-literal ) "]"
    Mail-parameters= esmtp-param *(SP esmtp-param)
    esmtp-param    = esmtp-keyword ["=" esmtp-value]
    esmtp-keyword  = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
    esmtp-value    = 1*(%d33-60 / %d62-126)        ; 6531: =/ UTF8-non-ascii
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass

import idna

from postoffice.protocols.smtp import replies as r
from postoffice.protocols.smtp.replies import Reply

__all__ = [
    "Body",
    "Extensions",
    "GrammarError",
    "MailParams",
    "Mailbox",
    "RcptParams",
    "is_domain",
    "mail_params",
    "parse_esmtp_params",
    "parse_forward_path",
    "parse_reverse_path",
    "rcpt_params",
    "xtext_decode",
    "xtext_encode",
]

MAX_DOMAIN_OCTETS = 255  # RFC 5321 §4.5.3.1.2
MAX_PATH_OCTETS = 256  # RFC 5321 §4.5.3.1.3 (with the angle brackets)
MAX_ENVID_CHARS = 100  # RFC 3461 §4.4
MAX_ORCPT_CHARS = 500  # RFC 3461 §4.2


class GrammarError(Exception):
    """Syntax error; ``reply`` says what to answer."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(bytes(reply).decode("utf-8", "replace").strip())
        self.reply = reply


_NON_ASCII = "\u0080-\U0010ffff"
_ATEXT = "A-Za-z0-9!#$%&'*+\\-/=?^_`{|}~"


def _build(utf8: bool) -> re.Pattern[str]:
    extra = _NON_ASCII if utf8 else ""
    atom = f"[{_ATEXT}{extra}]+"
    dot_string = f"{atom}(?:\\.{atom})*"
    quoted = f'"(?:[\\x20\\x21\\x23-\\x5b\\x5d-\\x7e{extra}]|\\\\[\\x20-\\x7e])*"'
    label = f"[A-Za-z0-9{extra}](?:[A-Za-z0-9\\-{extra}]*[A-Za-z0-9{extra}])?"
    domain = f"{label}(?:\\.{label})*"
    literal = "\\[[\\x21-\\x5a\\x5e-\\x7e]+\\]"
    return re.compile(
        f"<(?:(?P<adl>@{domain}(?:,@{domain})*):)?"
        f"(?P<local>{dot_string}|{quoted})@(?P<domain>{domain}|{literal})>"
    )


_PATH_ASCII = _build(False)
_PATH_UTF8 = _build(True)
_POSTMASTER = re.compile(r"<postmaster>", re.IGNORECASE)
_DOT_STRING_ASCII = re.compile(f"[{_ATEXT}]+(?:\\.[{_ATEXT}]+)*")
_DOT_STRING_UTF8 = re.compile(f"[{_ATEXT}{_NON_ASCII}]+(?:\\.[{_ATEXT}{_NON_ASCII}]+)*")
_LDH_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*")
_GENERAL_TAG = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_VALUE_ASCII = re.compile(r"[\x21-\x3c\x3e-\x7e]+")
_VALUE_UTF8 = re.compile(f"[\\x21-\\x3c\\x3e-\\x7e{_NON_ASCII}]+")
_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*")


@dataclass(frozen=True)
class Mailbox:
    """``local_part@domain``. ``local_part`` is unquoted; ``domain`` is a domain name or an
    address literal such as ``[192.0.2.1]``; it is ``""`` only for ``<Postmaster>``."""

    local_part: str
    domain: str

    def __str__(self) -> str:
        local = self.local_part
        if not _DOT_STRING_UTF8.fullmatch(local):
            local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{local}@{self.domain}" if self.domain else local

    @property
    def is_ascii(self) -> bool:
        return self.local_part.isascii() and self.domain.isascii()


def is_domain(text: str, *, utf8: bool = False) -> bool:
    """True if ``text`` is an RFC 5321 Domain (with U-labels allowed when ``utf8``)."""
    if not text or len(text.encode("utf-8")) > MAX_DOMAIN_OCTETS:
        return False
    if text.isascii():
        return bool(_LDH_DOMAIN.fullmatch(text)) and all(len(x) <= 63 for x in text.split("."))
    if not utf8:
        return False
    try:  # RFC 6531 §3.3: U-labels must be valid IDNA2008 (RFC 5890)
        idna.encode(text)
    except (idna.IDNAError, UnicodeError, ValueError):
        return False
    return True


def _check_literal(literal: str) -> bool:
    """RFC 5321 §4.1.3 address literals, ``[...]`` included."""
    content = literal[1:-1]
    if content[:5].lower() == "ipv6:":
        try:
            ipaddress.IPv6Address(content[5:])
        except ValueError:
            return False
        return True
    if ":" in content:  # General-address-literal = Standardized-tag ":" 1*dcontent
        tag, _, rest = content.partition(":")
        return bool(_GENERAL_TAG.fullmatch(tag)) and bool(rest)
    try:
        ipaddress.IPv4Address(content)
    except ValueError:
        return False
    return True


def _unquote(local: str) -> str:
    if local.startswith('"'):
        return re.sub(r"\\(.)", r"\1", local[1:-1])
    return local


def _parse_path(text: str, *, utf8: bool, bad: Reply) -> tuple[Mailbox, str]:
    m = (_PATH_UTF8 if utf8 else _PATH_ASCII).match(text)
    if m is None:
        if not utf8 and not text.isascii():
            m8 = _PATH_UTF8.match(text)
            if m8 is not None:
                # RFC 6531 §3.4: a non-ASCII address without SMTPUTF8 gets 553 5.6.7.
                raise GrammarError(r.R553_NEED_SMTPUTF8)
        raise GrammarError(bad)
    domain = m["domain"]
    if domain.startswith("["):
        if not _check_literal(domain):
            raise GrammarError(bad)
    elif not is_domain(domain, utf8=utf8):
        raise GrammarError(bad)
    if m["adl"]:
        for hop in m["adl"].split(","):
            if not is_domain(hop[1:], utf8=utf8):
                raise GrammarError(bad)
    return Mailbox(_unquote(m["local"]), domain), text[m.end() :]


def parse_reverse_path(text: str, *, utf8: bool) -> tuple[Mailbox | None, str]:
    """Parse ``Reverse-path``; None is the null path ``<>``. Returns (path, rest)."""
    if text.startswith("<>"):
        return None, text[2:]
    return _parse_path(text, utf8=utf8, bad=r.R501_BAD_SENDER)


def parse_forward_path(text: str, *, utf8: bool) -> tuple[Mailbox, str]:
    """Parse ``Forward-path`` (or ``<Postmaster>``, domain ""). Returns (path, rest)."""
    m = _POSTMASTER.match(text)
    if m is not None:
        return Mailbox(text[1 : m.end() - 1], ""), text[m.end() :]
    return _parse_path(text, utf8=utf8, bad=r.R501_BAD_RECIPIENT)


def parse_esmtp_params(text: str, *, utf8: bool) -> list[tuple[str, str | None]]:
    """Split ``Mail-parameters`` into (UPPER-CASE keyword, value or None) pairs.

    Duplicate keywords are a syntax error (501 5.5.4).
    """
    params: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    value_re = _VALUE_UTF8 if utf8 else _VALUE_ASCII
    for item in text.split(" "):
        if not item:
            continue  # tolerate runs of spaces
        keyword, eq, value = item.partition("=")
        if not _KEYWORD.fullmatch(keyword) or (eq and not value_re.fullmatch(value)):
            raise GrammarError(r.R501_SYNTAX_PARAMS)
        keyword = keyword.upper()
        if keyword in seen:
            raise GrammarError(r.R501_SYNTAX_PARAMS)
        seen.add(keyword)
        params.append((keyword, value if eq else None))
    return params


def xtext_decode(text: str) -> str:
    """RFC 3461 §4: ``xtext = *( xchar / hexchar )``, hexchar = "+" 2(upper HEXDIG)."""
    if not _XTEXT.fullmatch(text):
        raise GrammarError(r.R501_SYNTAX_PARAMS)
    raw = re.sub(r"\+([0-9A-F]{2})", lambda m: chr(int(m[1], 16)), text)
    return raw


def xtext_encode(text: str) -> str:
    """Inverse of :func:`xtext_decode` (for ASCII input; other code points as UTF-8 octets)."""
    out = []
    for byte in text.encode("utf-8"):
        if 33 <= byte <= 126 and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


class Body(enum.Enum):
    """RFC 6152 / RFC 3030 ``BODY=`` values."""

    SEVEN_BIT = "7BIT"
    EIGHT_BIT_MIME = "8BITMIME"
    BINARY_MIME = "BINARYMIME"


@dataclass(frozen=True)
class MailParams:
    """Typed MAIL FROM parameters.

    ``auth`` is the RFC 4954 §5 ``AUTH=`` mailbox, xtext-decoded ("" for ``AUTH=<>``);
    ``ret`` is "FULL" or "HDRS" and ``envid`` the decoded ENVID (RFC 3461 §4.3, §4.4).
    """

    size: int | None = None
    body: Body | None = None
    smtputf8: bool = False
    auth: str | None = None
    ret: str | None = None
    envid: str | None = None


@dataclass(frozen=True)
class RcptParams:
    """Typed RCPT TO parameters (RFC 3461 §4.1, §4.2).

    ``notify`` is None (not given), ``frozenset({"NEVER"})`` or a subset of
    SUCCESS/FAILURE/DELAY; ``orcpt`` is (addr-type, decoded address).
    """

    notify: frozenset[str] | None = None
    orcpt: tuple[str, str] | None = None


@dataclass(frozen=True)
class Extensions:
    """Which parameter-bearing extensions the connection accepts."""

    eightbitmime: bool = True
    binarymime: bool = True
    smtputf8: bool = True
    dsn: bool = True


def mail_params(pairs: list[tuple[str, str | None]], ext: Extensions) -> MailParams:
    """Type-check MAIL parameters; unknown or unadvertised ones give 555 5.5.4."""
    size: int | None = None
    body: Body | None = None
    smtputf8 = False
    auth: str | None = None
    ret: str | None = None
    envid: str | None = None
    for keyword, value in pairs:
        if keyword == "SIZE":  # RFC 1870 §3: size-value = 1*20DIGIT
            if value is None or not value.isascii() or not value.isdigit() or len(value) > 20:
                raise GrammarError(r.R501_SYNTAX_PARAMS)
            size = int(value)
        elif keyword == "BODY":
            try:
                body = Body((value or "").upper())
            except ValueError:
                raise GrammarError(r.R501_SYNTAX_PARAMS) from None
            if (body is Body.EIGHT_BIT_MIME and not ext.eightbitmime) or (
                body is Body.BINARY_MIME and not ext.binarymime
            ):
                raise GrammarError(r.R555_UNKNOWN_PARAM)
        elif keyword == "SMTPUTF8" and ext.smtputf8:
            if value is not None:
                raise GrammarError(r.R501_SYNTAX_PARAMS)
            smtputf8 = True
        elif keyword == "AUTH":  # RFC 4954 §5: AUTH=<> or AUTH=xtext mailbox
            if value is None:
                raise GrammarError(r.R501_SYNTAX_PARAMS)
            auth = "" if value == "<>" else xtext_decode(value)
        elif keyword == "RET" and ext.dsn:
            if value is None or value.upper() not in ("FULL", "HDRS"):
                raise GrammarError(r.R501_SYNTAX_PARAMS)
            ret = value.upper()
        elif keyword == "ENVID" and ext.dsn:
            if value is None:
                raise GrammarError(r.R501_SYNTAX_PARAMS)
            envid = xtext_decode(value)
            # RFC 3461 §4.4: at most 100 characters of printable US-ASCII once decoded.
            if len(envid) > MAX_ENVID_CHARS or not all(32 <= ord(c) < 127 for c in envid):
                raise GrammarError(r.R501_SYNTAX_PARAMS)
        else:
            raise GrammarError(r.R555_UNKNOWN_PARAM)
    return MailParams(size, body, smtputf8, auth, ret, envid)


_NOTIFY_VALUES = frozenset({"SUCCESS", "FAILURE", "DELAY"})


def rcpt_params(pairs: list[tuple[str, str | None]], ext: Extensions) -> RcptParams:
    """Type-check RCPT parameters (DSN NOTIFY and ORCPT); others give 555 5.5.4."""
    notify: frozenset[str] | None = None
    orcpt: tuple[str, str] | None = None
    for keyword, value in pairs:
        if keyword == "NOTIFY" and ext.dsn:
            items = frozenset((value or "").upper().split(","))
            # RFC 3461 §4.1: "NEVER" alone, or a list of SUCCESS / FAILURE / DELAY.
            if items != {"NEVER"} and not (items and items <= _NOTIFY_VALUES):
                raise GrammarError(r.R501_SYNTAX_PARAMS)
            if len(items) != len((value or "").split(",")):
                raise GrammarError(r.R501_SYNTAX_PARAMS)
            notify = items
        elif keyword == "ORCPT" and ext.dsn:
            # RFC 3461 §4.2: ORCPT=addr-type ";" xtext, at most 500 characters.
            addr_type, semi, addr = (value or "").partition(";")
            if not semi or not _KEYWORD.fullmatch(addr_type) or not addr or len(value or "") > MAX_ORCPT_CHARS:
                raise GrammarError(r.R501_SYNTAX_PARAMS)
            addr = xtext_decode(addr)
            if any(ord(c) < 32 or ord(c) == 127 for c in addr):  # no CR/LF into a DSN
                raise GrammarError(r.R501_SYNTAX_PARAMS)
            orcpt = (addr_type.lower(), addr)
        else:
            raise GrammarError(r.R555_UNKNOWN_PARAM)
    return RcptParams(notify, orcpt)
