"""URLAUTH (RFC 4467): GENURLAUTH, URLFETCH and RESETKEY -- URLs that carry their own
authorization, so a message (or one attachment) can be handed to someone else, or to
CATENATE, without sharing a password.

* ``GENURLAUTH rump INTERNAL`` (section 6.1): the rump is an absolute IMAP URL naming a
  message of the logged-in user, ending in ``;URLAUTH=<access>`` (optionally with
  ``;EXPIRE=``). The answer appends ``:internal:<token>``, the token being the hex
  HMAC-SHA256 of the rump under the mailbox access key (section 7: at least 128 bits).
  The key is made on first use per user and mailbox (``Store.urlauth_key``).
* ``URLFETCH url...`` (section 6.2): every URL is answered, with its data or NIL when it is
  not valid: a malformed URL, an unknown mechanism, a token that does not verify, an
  expired one, an access identifier the session does not satisfy, a message or section
  that does not exist. Access identifiers (section 3): ``anonymous`` and ``authuser`` (any
  logged-in session of this server), ``user+<name>`` (only that user); ``submit+<name>`` is
  for a trusted submission server acting for <name>, and this server has none that logs in
  over IMAP, so such URLs fetch as NIL (they stay valid for CATENATE by their owner).
* ``RESETKEY [mailbox [INTERNAL]]`` (section 6.3): forget the key(s); every URL made with
  them stops working at once.

Comparisons of tokens use ``hmac.compare_digest``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

from ...protocols.imap import commands as c
from ...protocols.imap import responses as r
from ...protocols.imap.grammar.imapurl import ImapUrl, parse_imap_url
from ...protocols.imap.responses import Code
from ...mail.imapfmt import bodystructure
from ...mail.mime import Part
from ...mail.sections import UnknownCTE, binary_bytes, resolve_part, section_bytes
from ...mail.sections import partial as partial_bytes
from ...protocols.imap.grammar.fetch_att import Section
from .catenate import badurl, url_message, url_part
from .errors import Refused

if TYPE_CHECKING:
    from .session import Session

__all__ = ["do_genurlauth", "do_urlfetch", "do_resetkey", "fetch_authorized", "token"]

MECHANISM = b"INTERNAL"


def token(key: bytes, rump: bytes) -> bytes:
    return hmac.new(key, rump, hashlib.sha256).hexdigest().encode()


def _split(url: bytes) -> tuple[bytes, bytes, bytes | None, bytes | None]:
    """(rump, access, mechanism, token) of a URL with ``;URLAUTH=``; ValueError if none."""
    at = url.lower().rfind(b";urlauth=")
    if at < 0:
        raise ValueError("no ;URLAUTH=")
    rest = url[at + 9:]
    access, sep, tail = rest.partition(b":")
    if not access:
        raise ValueError("empty access identifier")
    rump = url[:at + 9] + access
    if not sep:
        return rump, access, None, None
    mech, sep2, tok = tail.partition(b":")
    if not sep2 or not mech or not tok:
        raise ValueError("malformed URLAUTH")
    return rump, access, mech, tok


def _valid_access(access: bytes) -> bool:
    low = access.lower()
    return low in (b"anonymous", b"authuser") or (
        (low.startswith(b"user+") or low.startswith(b"submit+")) and len(access) > access.index(b"+") + 1)


def _expired(u: ImapUrl) -> bool:
    if u.expire is None:
        return False
    try:
        when = datetime.fromisoformat(unquote_to_bytes(u.expire).decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return True  # an expiry we cannot read is not honoured
    if when.tzinfo is None:
        return True  # RFC 4467 section 3: the date-time must carry its offset
    return when <= datetime.now(timezone.utc)


async def _owner(s: Session, user: str) -> int | None:
    account = await s.app.store.get_account(user) or await s.app.store.get_account(user.lower())
    return account.id if account is not None else None


async def _mailbox_name(s: Session, u: ImapUrl) -> str | None:
    from ...protocols.imap.grammar.utf7 import InvalidMailboxName, decode_mailbox_name
    from ...store import InvalidName, validate_mailbox_name
    try:
        return validate_mailbox_name(decode_mailbox_name(u.mailbox, True))
    except (InvalidMailboxName, InvalidName, ValueError):
        return None


async def fetch_authorized(s: Session, url: bytes, *, catenate: bool = False) -> bytes | None:
    """The data a URLAUTH-authorized URL names, or None when it is not valid for this
    session (see the module docstring). ``submit+<user>`` URLs are honoured only for
    CATENATE by their owner (appending one's own message)."""
    target = await _authorized(s, url, catenate)
    if target is None:
        return None
    try:
        return await url_part(s, target[0], target[1], url)
    except Refused:
        return None


async def _authorized(s: Session, url: bytes, catenate: bool = False) -> tuple[int, ImapUrl] | None:
    """(owner account id, parsed URL) if ``url`` is valid for this session, else None."""
    assert s.account is not None
    try:
        u = parse_imap_url(url)
        rump, access, mech, tok = _split(url)
    except ValueError:
        return None
    if u.user is None or mech is None or tok is None or mech.upper() != MECHANISM or not _valid_access(access):
        return None
    me = s.account.address.lower()
    low = access.lower()
    if low.startswith(b"user+") or low.startswith(b"submit+"):
        who = unquote_to_bytes(access.split(b"+", 1)[1]).decode("utf-8", "replace").lower()
        if who != me:
            return None
        if low.startswith(b"submit+") and (not catenate or (u.account or "").lower() != me):
            return None
    if _expired(u):
        return None
    owner = await _owner(s, u.account or "")
    name = await _mailbox_name(s, u)
    if owner is None or name is None:
        return None
    key = await s.app.store.urlauth_key(owner, name, create=False)
    if key is None or not hmac.compare_digest(token(key, rump), tok.lower()):
        return None
    return owner, u


async def do_genurlauth(s: Session, tag: bytes, cmd: c.GenUrlAuth) -> bytes:
    assert s.account is not None
    out = []
    for url, mechanism in cmd.requests:
        if mechanism.encode() != MECHANISM:
            raise Refused(f"Unsupported URLAUTH mechanism {mechanism}", b"BADURL " + url.replace(b"]", b"%5D"))
        try:
            u = parse_imap_url(url)
            rump, access, mech, _tok = _split(url)
        except ValueError as exc:
            raise badurl(url, str(exc)) from None
        if mech is not None or rump != url:
            raise badurl(url, "GENURLAUTH takes a rump URL ending in ;URLAUTH=<access>")
        if not _valid_access(access):
            raise badurl(url, "unknown access identifier")
        if u.account is None or u.account.lower() != s.account.address.lower():
            raise badurl(url, "the URL must name the logged-in user")
        if u.expire is not None and _expired(u):
            raise badurl(url, "the expiry is in the past or unreadable")
        name = await _mailbox_name(s, u)
        if name is None:
            raise badurl(url, "invalid mailbox name")
        await url_part(s, s.account.id, u, url)  # the URL must name an existing message
        key = await s.app.store.urlauth_key(s.account.id, name, create=True)
        assert key is not None
        out.append(r.string(url + b":internal:" + token(key, rump)))
    s.send(r.untagged(b"GENURLAUTH " + b" ".join(out)))
    return r.ok(tag, "GENURLAUTH completed")


async def do_urlfetch(s: Session, tag: bytes, cmd: c.UrlFetch) -> bytes:
    items = []
    for url, params in zip(cmd.urls, cmd.params or (None,) * len(cmd.urls)):
        if params is not None:
            items.append(r.string(url) + b" " + await _extended(s, url, params))
            continue
        data = await fetch_authorized(s, url)
        items.append(r.string(url) + b" " + (b"NIL" if data is None else r.literal(data)))
    s.send(r.untagged(b"URLFETCH " + b" ".join(items)))
    return r.ok(tag, "URLFETCH completed")


async def _extended(s: Session, url: bytes, params: tuple[str, ...]) -> bytes:
    """RFC 5524 (URLAUTH=BINARY): ``(BODYPARTSTRUCTURE ...) (BINARY data)`` or ``(BODY
    data)`` for one URL, or NIL when it is not valid for this session. BINARY removes the
    part's transfer encoding (NIL when it is unknown) and BODYPARTSTRUCTURE then describes
    the decoded part, as Dovecot does (size of the decoded data, no line count)."""
    target = await _authorized(s, url)
    if target is None:
        return b"NIL"
    owner, u = target
    try:
        raw, tree = await url_message(s, owner, u, url)
    except Refused:
        return b"NIL"
    assert tree is not None
    sec = u.section or Section()
    part = resolve_part(tree, sec.part) if sec.part else tree
    body = section_bytes(raw, tree, sec.part, sec.text, sec.headers)
    if part is None or body is None:
        return b"NIL"
    binary = "BINARY" in params
    data = _decoded(raw, tree, sec) if binary else body
    out = []
    if "BODYPARTSTRUCTURE" in params:
        as_decoded = data if binary and not sec.text else None
        out.append(b"(BODYPARTSTRUCTURE " + _structure(raw, part, as_decoded) + b")")
    if data is not None and u.partial is not None:
        data = partial_bytes(data, u.partial[0], u.partial[1])
    if binary or "BODY" in params:
        value = b"NIL" if data is None else (r.literal8(data) if b"\x00" in data else r.literal(data))
        out.append(b"(" + (b"BINARY " if binary else b"BODY ") + value + b")")
    return b" ".join(out)


def _decoded(raw: bytes, tree: Part, sec: Section) -> bytes | None:
    """The section with its transfer encoding removed; None for an unknown encoding."""
    if sec.text:
        return section_bytes(raw, tree, sec.part, sec.text, sec.headers)
    try:
        return binary_bytes(raw, tree, sec.part)
    except UnknownCTE:
        return None


def _structure(raw: bytes, part: Part, decoded: bytes | None) -> bytes:
    """BODYSTRUCTURE of ``part``; with its ``decoded`` data, of a leaf as that data (a
    multipart or message is shown as it is)."""
    if decoded is None or part.type == "multipart" or part.message is not None:
        return bodystructure(raw, part)
    encoding = "binary" if b"\x00" in decoded or not decoded.isascii() else "7bit"
    leaf = dataclasses.replace(part, header_start=0, body_start=0, body_end=len(decoded), encoding=encoding,
                               lines=0 if part.lines is not None else None)
    return bodystructure(decoded, leaf)


async def do_resetkey(s: Session, tag: bytes, cmd: c.ResetKey) -> bytes:
    from .mailboxes import find_mailbox

    assert s.account is not None
    if any(m.encode() != MECHANISM for m in cmd.mechanisms):
        raise Refused("Unsupported URLAUTH mechanism", Code.CANNOT)
    if cmd.mailbox is None:
        await s.app.store.reset_urlauth_keys(s.account.id)
    else:
        box = await find_mailbox(s, cmd.mailbox)
        await s.app.store.reset_urlauth_keys(s.account.id, box.name)
    return r.ok(tag, "RESETKEY completed")
