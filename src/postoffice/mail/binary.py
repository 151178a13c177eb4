"""Storing binary content that arrived in an IMAP literal8 (RFC 3516).

APPEND with ``~{n}`` may carry MIME parts whose content is raw binary (Content-Transfer-Encoding
``binary``, NUL octets, bare CR or LF that are data, not line ends). The store keeps messages in
canonical CRLF form and BODY[] is sent in an ordinary literal, which may not contain NUL
(RFC 3501 9, CHAR8); so such a part is stored *base64-encoded* with its Content-Transfer-Encoding
header changed to match, as RFC 3516 section 4.4 allows ("the server MAY ... convert binary
data to base64"), and BODYSTRUCTURE describes it so. BINARY[part] decodes it again: the client
gets exactly the octets it appended (RFC 3516 section 6). Everything else is left as it was.
"""

from __future__ import annotations

import base64

from .headers import split_fields
from .mime import parse

__all__ = ["encode_binary_parts"]

_CTE = b"content-transfer-encoding"


def _needs_encoding(raw: bytes, part: object) -> bool:
    body = raw[part.body_start:part.body_end]  # type: ignore[attr-defined]
    return part.encoding == "binary" or b"\x00" in body  # type: ignore[attr-defined]


def encode_binary_parts(raw: bytes) -> bytes:
    """``raw`` with every leaf part that holds binary data (CTE ``binary`` or a NUL octet)
    base64-encoded (76-character CRLF lines, RFC 2045 6.8) and its header saying so."""
    tree = parse(raw)
    edits: list[tuple[int, int, bytes]] = []  # (start, end, replacement), non-overlapping
    for part in tree.walk():
        if part.children or part.message is not None or not _needs_encoding(raw, part):
            continue
        body = raw[part.body_start:part.body_end]
        encoded = base64.encodebytes(body).replace(b"\n", b"\r\n")
        fields = [f for f in split_fields(raw, part.header_start, part.body_start) if f[0]]
        ctes = [f for f in fields if f[0] == _CTE]
        field = b"Content-Transfer-Encoding: base64\r\n"
        if ctes:
            _, fs, _, fe = ctes[0]
            edits.append((fs, fe, field))
            edits.extend((f[1], f[3], b"") for f in ctes[1:])
        else:  # after the last field (or at the top of an empty header block)
            at = fields[-1][3] if fields else part.header_start
            if fields and not raw[:at].endswith(b"\n"):
                field = b"\r\n" + field
            edits.append((at, at, field))
        # the body's own last line end is part of what follows (the boundary's CRLF)
        edits.append((part.body_start, part.body_end, encoded[:-2] if part.body_end < len(raw) else encoded))
    if not edits:
        return raw
    out = []
    pos = 0
    for start, end, text in sorted(edits, key=lambda e: (e[0], e[1])):
        out.append(raw[pos:start])
        out.append(text)
        pos = end
    out.append(raw[pos:])
    return b"".join(out)
