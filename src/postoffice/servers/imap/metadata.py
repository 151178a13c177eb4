"""METADATA and METADATA-SERVER (RFC 5464): GETMETADATA and SETMETADATA on the server
(mailbox "") and on mailboxes.

* Entries live per account (store/metadata.py): mailboxes belong to one user here, so both
  /private and /shared entries of a mailbox are that user's to set.
* Server entries: ``/shared/admin`` (section 3.2.1: a URI for the administrator) is
  ``mailto:postmaster@<hostname>`` and read-only like every /shared server entry; users may
  keep /private server entries (section 3.2: "servers MAY allow").
* GETMETADATA: requested entries that do not exist come back NIL; ``DEPTH 1`` / ``infinity``
  add existing children / descendants; ``MAXSIZE n`` leaves out longer values and answers
  ``OK [METADATA LONGENTRIES m]`` with the longest left out (section 4.2.1).
* SETMETADATA: all or nothing; NIL removes; a value over ``MAX_VALUE`` octets is
  ``NO [METADATA MAXSIZE n]``, more than ``MAX_ENTRIES`` per mailbox ``NO [METADATA TOOMANY]``
  (section 4.3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...protocols.imap import commands as c
from ...protocols.imap import responses as r
from ...protocols.imap.responses import Code
from ...store.metadata import MetadataLimit
from .errors import Refused

if TYPE_CHECKING:
    from .session import Session

__all__ = ["do_getmetadata", "do_setmetadata", "MAX_VALUE", "MAX_ENTRIES"]

MAX_VALUE = 64 * 1024
MAX_ENTRIES = 200


async def _target(s: Session, mailbox: bytes) -> tuple[int, int, bytes]:
    """(mailbox id, UIDVALIDITY, the name as sent back) -- (0, 0, "") for the server."""
    from .mailboxes import find_mailbox, wire_name

    if mailbox == b"":
        return 0, 0, b'""'
    box = await find_mailbox(s, mailbox)
    return box.id, box.uidvalidity, r.mailbox(wire_name(s, box.name))


def _server_entries(s: Session) -> dict[str, bytes]:
    return {"/shared/admin": b"mailto:postmaster@" + s.app.config.hostname.encode("idna")}


async def do_getmetadata(s: Session, tag: bytes, cmd: c.GetMetadata) -> bytes:
    assert s.account is not None
    mailbox_id, uidvalidity, shown = await _target(s, cmd.mailbox)
    found = dict(await s.app.store.get_metadata(s.account.id, mailbox_id, uidvalidity, cmd.entries, cmd.depth))
    if mailbox_id == 0:
        for name, value in _server_entries(s).items():
            if any(name == e or (cmd.depth and name.startswith(e + "/")
                                 and (cmd.depth == -1 or "/" not in name[len(e) + 1:])) for e in cmd.entries):
                found[name] = value
    # a requested entry that does not exist (and, with DEPTH, has nothing below it) is NIL
    missing = {e for e in cmd.entries if not any(n == e or n.startswith(e + "/") for n in found)}
    items: list[bytes] = []
    longest = 0
    for name in sorted(set(found) | missing):
        value = found.get(name)
        if value is not None and cmd.maxsize is not None and len(value) > cmd.maxsize:
            longest = max(longest, len(value))
            continue
        items.append(r.astring(name) + b" " + (r.nstring(value) if b"\x00" not in (value or b"") else r.literal8(value)))
    if items:
        s.send(r.untagged(b"METADATA " + shown + b" (" + b" ".join(items) + b")"))
    if longest:
        return r.ok(tag, "GETMETADATA completed", b"METADATA LONGENTRIES %d" % longest)
    return r.ok(tag, "GETMETADATA completed")


async def do_setmetadata(s: Session, tag: bytes, cmd: c.SetMetadata) -> bytes:
    assert s.account is not None
    mailbox_id, uidvalidity, _shown = await _target(s, cmd.mailbox)
    for name, value in cmd.items:
        if mailbox_id == 0 and name.startswith("/shared"):
            raise Refused("Shared server entries are set by the administrator", Code.NOPERM)
        if value is not None and len(value) > MAX_VALUE:
            raise Refused(f"Values are limited to {MAX_VALUE} octets", b"METADATA MAXSIZE %d" % MAX_VALUE)
    try:
        await s.app.store.set_metadata(s.account.id, mailbox_id, uidvalidity, cmd.items, MAX_ENTRIES)
    except MetadataLimit:
        raise Refused(f"At most {MAX_ENTRIES} entries per mailbox", b"METADATA TOOMANY") from None
    return r.ok(tag, "SETMETADATA completed")
