"""CATENATE (RFC 4469): APPEND a message built from literal text and IMAP URLs (RFC 5092)
naming messages or parts in the user's own mailboxes -- forwarding an attachment without
downloading and uploading it again.

Each URL is resolved like a FETCH of ``BODY.PEEK[section]<partial>`` by the logged-in user:
the mailbox by name (percent-decoded UTF-8, RFC 5092 section 6), the UIDVALIDITY if given
must match, the UID must exist, the section must exist. Anything else answers
``NO [BADURL "url"]`` and nothing is appended (RFC 4469 section 5: the whole APPEND fails,
MULTIAPPEND included). Absolute URLs are accepted when their user (if any) is the logged-in
user; URLAUTH-authorized URLs (RFC 4467) are resolved as URLFETCH would resolve them.
The finished message must be within ``limits.imap_max_literal`` (``NO [TOOBIG]``) and not
empty.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...mail.mime import Part, parse
from ...mail.sections import partial as partial_bytes
from ...mail.sections import section_bytes
from ...protocols.imap.grammar.imapurl import ImapUrl, parse_imap_url
from ...protocols.imap.grammar.utf7 import InvalidMailboxName, decode_mailbox_name
from ...protocols.imap.responses import Code
from ...store import InvalidName, validate_mailbox_name
from .errors import Refused

if TYPE_CHECKING:
    from .session import Session

__all__ = ["build_message", "url_part", "badurl"]


def badurl(url: bytes, why: str) -> Refused:
    return _badurl(url, why)


def _badurl(url: bytes, why: str) -> Refused:
    # resp-text-code =/ "BADURL" SP url-resp-text (RFC 4469 section 5): no "]", CR or LF
    text = url.decode("utf-8", "replace").replace("]", "%5D").replace("\r", "").replace("\n", "")
    return Refused(f"Bad URL: {why}", b"BADURL " + text.encode())


async def _resolve(s: Session, url: bytes) -> bytes:
    assert s.account is not None
    try:
        u = parse_imap_url(url)
    except ValueError as exc:
        raise _badurl(url, str(exc)) from None
    if u.urlauth is not None:
        # A URLAUTH-authorized URL (RFC 4467) may name another user's message: it is
        # resolved exactly as URLFETCH would resolve it for this session.
        from .urlauth import fetch_authorized
        data = await fetch_authorized(s, url, catenate=True)
        if data is None:
            raise _badurl(url, "the URLAUTH-authorized URL is not valid")
        return data
    if u.account is not None and u.account.lower() != s.account.address.lower():
        raise _badurl(url, "the URL names another user")
    return await url_part(s, s.account.id, u, url)


async def url_part(s: Session, account_id: int, u: ImapUrl, url: bytes) -> bytes:
    """The octets a parsed IMAP URL names in the mailboxes of ``account_id`` (what FETCH
    BODY.PEEK[section]<partial> would return); Refused [BADURL] when it names nothing."""
    sec = u.section
    whole = sec is None or not (sec.part or sec.text)
    raw, tree = await url_message(s, account_id, u, url, with_tree=not whole)
    data: bytes | None = raw
    if not whole:
        assert sec is not None and tree is not None
        data = section_bytes(raw, tree, sec.part, sec.text, sec.headers)
        if data is None:
            raise _badurl(url, "no such section")
    assert data is not None
    if u.partial is not None:
        data = partial_bytes(data, u.partial[0], u.partial[1])
    return data


async def url_message(s: Session, account_id: int, u: ImapUrl, url: bytes, *,
                      with_tree: bool = True) -> tuple[bytes, Part | None]:
    """The message a parsed IMAP URL names: its octets and (``with_tree``) its MIME tree;
    Refused [BADURL] when there is none."""
    try:
        name = validate_mailbox_name(decode_mailbox_name(u.mailbox, True))
    except (InvalidMailboxName, InvalidName, ValueError):
        raise _badurl(url, "invalid mailbox name") from None
    box = await s.server.mailboxes.get(account_id, name)
    if box is None:
        raise _badurl(url, "no such mailbox")
    if u.uidvalidity is not None and u.uidvalidity != box.uidvalidity:
        raise _badurl(url, "UIDVALIDITY does not match")
    metas = await s.app.store.get_messages(box.id, [u.uid])
    if not metas:
        raise _badurl(url, "no such message")
    meta = metas[0]
    try:
        raw = await s.app.store.read_blob(meta.blob_id)
    except OSError:
        raise _badurl(url, "the message cannot be read") from None
    if not with_tree:
        return raw, None
    tree: Part | None = None
    infos = await s.app.store.blob_info([meta.blob_id])
    info = infos.get(meta.blob_id)
    if info is not None and info.structure:
        try:
            tree = Part.from_json(info.structure)
        except (ValueError, TypeError, IndexError):
            tree = None
    return raw, tree if tree is not None else parse(raw)


async def build_message(s: Session, parts: tuple[tuple[str, bytes], ...]) -> bytes:
    """The message a CATENATE list describes (see the module docstring)."""
    limit = s.app.config.limits.imap_max_literal
    out = bytearray()
    for kind, value in parts:
        out += value if kind == "TEXT" else await _resolve(s, value)
        if len(out) > limit:
            raise Refused(f"The message would be larger than the limit of {limit} octets", Code.TOOBIG)
    if not out:
        raise Refused("Empty messages cannot be appended")
    return bytes(out)
