"""FETCH BODY[section] / BINARY[section] extraction (RFC 9051 section 6.4.5, RFC 3516).

Works on the stored raw message plus the :class:`~postoffice.mail.mime.Part` tree computed at
delivery; no MIME re-parse.  Only the header block of the addressed part is re-split for
HEADER.FIELDS (a few dozen lines).
"""

from __future__ import annotations

import binascii
from typing import Iterable, Sequence

from .headers import b64decode_lenient, split_fields
from .mime import Part

HEADER = "HEADER"
HEADER_FIELDS = "HEADER.FIELDS"
HEADER_FIELDS_NOT = "HEADER.FIELDS.NOT"
TEXT = "TEXT"
MIME = "MIME"
SECTION_TEXTS = (None, HEADER, HEADER_FIELDS, HEADER_FIELDS_NOT, TEXT, MIME)


class UnknownCTE(Exception):
    """BINARY asked for a part whose Content-Transfer-Encoding we cannot decode; answer
    ``NO [UNKNOWN-CTE]`` (RFC 3516 section 4.3)."""

    def __init__(self, encoding: str) -> None:
        super().__init__(encoding)
        self.encoding = encoding


def resolve_part(tree: Part, parts: Sequence[int]) -> Part | None:
    """The part addressed by IMAP part numbers (``[]`` = the root message), or None.

    RFC 9051 6.4.5: a non-multipart message (top level or encapsulated) has only part 1, which
    is the message's own body; a message/rfc822 part's sub-parts are those of its
    encapsulated message.
    """
    cur = tree
    msg_context = True  # `cur` is a message (root or encapsulated) rather than a body part
    for n in parts:
        if n < 1:
            return None
        container = cur
        if not msg_context and cur.message is not None:
            container = cur.message
            msg_context = True
        if container.type == "multipart" and container.children:
            if n > len(container.children):
                return None
            cur = container.children[n - 1]
            msg_context = False
        elif msg_context and n == 1:
            cur = container
            msg_context = False
        else:
            return None
    return cur


def _header_fields(raw: bytes, msg: Part, names: Iterable[str | bytes], negate: bool) -> bytes:
    want = {
        (n.encode("utf-8", "surrogateescape") if isinstance(n, str) else n).lower().strip()
        for n in names
    }
    out = bytearray()
    for name, fs, _vs, fe in split_fields(raw, msg.header_start, msg.body_start):
        if not name:
            continue
        if (name in want) != negate:
            field = raw[fs:fe]
            out += field
            if not field.endswith(b"\n"):
                out += b"\r\n"
    out += b"\r\n"  # the blank line that ends the (subset) header
    return bytes(out)


def section_bytes(
    raw: bytes,
    tree: Part,
    parts: Sequence[int] = (),
    text: str | None = None,
    fields: Iterable[str | bytes] = (),
) -> bytes | None:
    """Content of ``BODY[<parts>.<text> (<fields>)]``; None when the section does not exist
    (the server then sends NIL or an empty string).

    ``text`` is None (the part's content; the whole message for ``parts == []``), ``"HEADER"``,
    ``"HEADER.FIELDS"``, ``"HEADER.FIELDS.NOT"``, ``"TEXT"`` or ``"MIME"``.
    """
    if text is not None:
        text = text.upper()
    if text not in SECTION_TEXTS:
        return None
    if not parts:
        if text is None:
            return raw
        if text == MIME:
            return None  # MIME must be prefixed by a part number
        msg: Part | None = tree
    else:
        part = resolve_part(tree, parts)
        if part is None:
            return None
        if text is None:
            return raw[part.body_start : part.body_end]
        if text == MIME:
            return raw[part.header_start : part.body_start]
        # HEADER*/TEXT with part numbers: only for message/rfc822|global parts.
        # (resolve_part returns the message itself for "1" of a non-multipart message; that
        # is the body of the message, not an encapsulated message, so it does not qualify.)
        msg = part.message
        if msg is None:
            return None
    if text == HEADER:
        return raw[msg.header_start : msg.body_start]
    if text == TEXT:
        return raw[msg.body_start : msg.body_end]
    return _header_fields(raw, msg, fields, negate=(text == HEADER_FIELDS_NOT))


def partial(data: bytes, start: int, count: int | None = None) -> bytes:
    """``<start.count>`` partial fetch (RFC 9051 6.4.5): octets from ``start``; empty if
    ``start`` is past the end."""
    if start >= len(data):
        return b""
    if count is None:
        return data[start:]
    return data[start : start + count]


def decode_transfer(data: bytes, encoding: str | None) -> bytes:
    """Undo a Content-Transfer-Encoding.  Raises :class:`UnknownCTE` for unknown ones."""
    enc = (encoding or "7bit").lower()
    if enc in ("7bit", "8bit", "binary"):
        return data
    if enc == "base64":
        return b64decode_lenient(data)
    if enc == "quoted-printable":
        return decode_qp(data)
    raise UnknownCTE(enc)


def decode_qp(data: bytes) -> bytes:
    """Quoted-printable decoding per RFC 2045 section 6.7: trailing white space of every
    encoded line is removed (rule 3: it may have been added in transport), a line that then
    ends in "=" is a soft line break (rule 5, so ``=`` + white space + CRLF is one too), every
    other line break is a CRLF; ``=XX`` is an octet (lower-case hex accepted, as the RFC's
    note on robust decoders suggests); a malformed ``=`` is kept as it is."""
    out: list[bytes] = []
    lines = data.split(b"\n")
    last = len(lines) - 1
    for k, line in enumerate(lines):
        line = line.rstrip(b" \t\r")  # rule 3 (and the CR of the line break)
        if line.endswith(b"="):
            out.append(line[:-1])  # soft line break
        elif k < last:
            out.append(line + b"\r\n")
        else:
            out.append(line)
    joined = b"".join(out)
    try:
        # no "=" is left at a line end and no white space before one, so a2b_qp only turns
        # =XX into octets here
        return binascii.a2b_qp(joined)
    except (binascii.Error, ValueError):
        return joined


def binary_bytes(raw: bytes, tree: Part, parts: Sequence[int] = ()) -> bytes | None:
    """``BINARY[<parts>]`` (RFC 3516): the part content with its transfer encoding removed.

    ``[]`` is the whole message, unchanged.  Multiparts and encapsulated messages are
    returned as-is (only leaf parts carry a decodable encoding).  None if there is no such part;
    raises :class:`UnknownCTE`.
    """
    if not parts:
        return raw
    part = resolve_part(tree, parts)
    if part is None:
        return None
    data = raw[part.body_start : part.body_end]
    if part.type == "multipart" or part.message is not None:
        return data
    return decode_transfer(data, part.encoding)


def binary_size(raw: bytes, tree: Part, parts: Sequence[int] = ()) -> int | None:
    """``BINARY.SIZE[<parts>]``: octet count of the decoded part (identity for 7/8bit)."""
    if parts:
        part = resolve_part(tree, parts)
        if part is not None and (part.encoding or "7bit").lower() in ("7bit", "8bit", "binary"):
            return part.size
    data = binary_bytes(raw, tree, parts)
    return None if data is None else len(data)
