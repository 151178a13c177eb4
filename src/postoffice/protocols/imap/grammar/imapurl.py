"""IMAP URLs naming one message or part (RFC 5092), as CATENATE uses them (RFC 4469 section 5)::

    imapurl        = "imap://" iserver ipath-query
    iserver        = [iuserinfo "@"] host [":" port]
    ipath-query    = ["/" [ icommand / ipath-list ]]        ; here: imessagepart
    imessagepart   = enc-mailbox [uidvalidity] iuid [isection] [ipartial]
    enc-mailbox    = 1*bchar                                ; percent-encoded UTF-8 (section 6)
    uidvalidity    = ";UIDVALIDITY=" nz-number
    iuid           = "/" ";UID=" nz-number
    isection       = "/" ";SECTION=" enc-section
    ipartial       = "/" ";PARTIAL=" number ["." nz-number]
    iurlauth-rump  = [";EXPIRE=" date-time] ";URLAUTH=" access

A relative URL (``/Drafts;UIDVALIDITY=385759045/;UID=20/;section=HEADER``, the form of the
RFC 4469 example) names a message on the current server. Keys are case-insensitive; the
section is the FETCH section syntax after percent-decoding (``HEADER.FIELDS%20(SUBJECT)``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from .fetch_att import Section, _section
from .reader import ParseError, Reader

__all__ = ["ImapUrl", "parse_imap_url"]

_PARAM = re.compile(rb";([A-Za-z]+)=([^;]*)")
_AUTHORITY = re.compile(rb"^imap://(?:([^@/]*)@)?([^/]*)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ImapUrl:
    mailbox: bytes                 # the mailbox name, percent-decoded (UTF-8)
    uid: int
    uidvalidity: int | None = None
    section: Section | None = None
    partial: tuple[int, int | None] | None = None  # (origin, length or None)
    user: str | None = None        # absolute URLs: the user name, percent-decoded
    host: str | None = None
    urlauth: bytes | None = None   # ";URLAUTH=..." as given (RFC 4467), None if absent
    expire: bytes | None = None    # ";EXPIRE=<date-time>" as given (RFC 4467 section 3)

    @property
    def account(self) -> str | None:
        """The account address the URL names: its user, or for a user without "@", as in
        imaptest's ``imap://user@domain/`` (Dovecot accepts it), user@host less the port."""
        if self.user is None or "@" in self.user or not self.host:
            return self.user
        return f"{self.user}@{self.host.rsplit(':', 1)[0]}"


def parse_imap_url(url: bytes) -> ImapUrl:
    """Parse an absolute or server-relative IMAP URL naming a message; ValueError if it
    is not one (the caller answers ``NO [BADURL url]``)."""
    user = host = None
    rest = url
    m = _AUTHORITY.match(url)
    if m is not None:
        userinfo, hostport = m.group(1), m.group(2)
        if userinfo is not None:
            # iuserinfo = enc-user [iauth] / [enc-user] iauth ; iauth = ";AUTH=" ...
            user = unquote_to_bytes(userinfo.split(b";", 1)[0]).decode("utf-8", "replace") or None
        host = hostport.decode("ascii", "replace")
        rest = url[m.end():]
    if not rest.startswith(b"/"):
        raise ValueError("not an IMAP URL naming a message")
    rest = rest[1:]
    cut = rest.find(b";")
    if cut <= 0:
        raise ValueError("the URL names no message (;UID= missing)")
    mailbox = unquote_to_bytes(rest[:cut].rstrip(b"/"))
    if not mailbox:
        raise ValueError("the URL names no mailbox")
    params: dict[bytes, bytes] = {}
    tail = rest[cut:]
    pos = 0
    while pos < len(tail):
        pm = _PARAM.match(tail, pos)
        if pm is None:
            raise ValueError("malformed URL parameters")
        key = pm.group(1).upper()
        value = pm.group(2)
        if key in params:
            raise ValueError(f"{key.decode()} given twice")
        # the "/" between parts belongs to the next ";KEY=" (iuid = "/" iuid-only ...)
        params[key] = value[:-1] if value.endswith(b"/") and key != b"URLAUTH" else value
        pos = pm.end()
    known = {b"UIDVALIDITY", b"UID", b"SECTION", b"PARTIAL", b"EXPIRE", b"URLAUTH"}
    if set(params) - known:
        raise ValueError("unknown URL parameter")
    if b"UID" not in params:
        raise ValueError("the URL names no message (;UID= missing)")
    uid = _nz(params[b"UID"])
    uidvalidity = _nz(params[b"UIDVALIDITY"]) if b"UIDVALIDITY" in params else None
    section = None
    if b"SECTION" in params:
        text = unquote_to_bytes(params[b"SECTION"])
        r = Reader(b"[" + text + b"]", 0)
        try:
            section = _section(r)
        except ParseError as exc:
            raise ValueError(f"invalid section: {exc.message}") from None
        if r.pos != len(r.data):
            raise ValueError("invalid section")
    partial = None
    if b"PARTIAL" in params:
        origin, _, length = params[b"PARTIAL"].partition(b".")
        if not origin.isdigit() or (length and not length.isdigit()):
            raise ValueError("invalid partial range")
        partial = (int(origin), int(length) if length else None)
    return ImapUrl(mailbox, uid, uidvalidity, section, partial, user, host, params.get(b"URLAUTH"),
                   params.get(b"EXPIRE"))


def _nz(value: bytes) -> int:
    if not value.isdigit() or len(value) > 10 or int(value) == 0 or int(value) > 2**32 - 1:
        raise ValueError("expected a non-zero 32-bit number")
    return int(value)
