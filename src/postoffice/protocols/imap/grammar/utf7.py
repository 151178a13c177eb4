"""Mailbox name encodings: modified UTF-7 (RFC 3501 section 5.1.3) and UTF-8
(RFC 9051 section 5.1, RFC 6855 UTF8=ACCEPT).

In modified UTF-7, printable US-ASCII other than "&" stands for itself, "&" is
"&-", and anything else is "&" + modified BASE64 (RFC 2045 alphabet with ","
instead of "/", no "=" padding) of UTF-16BE + "-".
"""

from __future__ import annotations

import binascii

__all__ = [
    "InvalidMailboxName",
    "utf7_encode",
    "utf7_decode",
    "decode_mailbox_name",
    "encode_mailbox_name",
]


class InvalidMailboxName(ValueError):
    """The raw name is not valid modified UTF-7 / UTF-8 or has forbidden characters."""


def utf7_encode(name: str) -> bytes:
    """Encode ``name`` as modified UTF-7 (``"☺!"`` -> ``b"&Jjo-!"``)."""
    out = bytearray()
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            b64 = binascii.b2a_base64(raw, newline=False).rstrip(b"=").replace(b"/", b",")
            out.extend(b"&" + b64 + b"-")
            pending.clear()

    for ch in name:
        o = ord(ch)
        if 0x20 <= o <= 0x7E:
            flush()
            out.extend(b"&-" if ch == "&" else ch.encode("ascii"))
        else:
            pending.append(ch)
    flush()
    return bytes(out)


def utf7_decode(raw: bytes) -> str:
    """Decode modified UTF-7 strictly; raises :class:`InvalidMailboxName`.

    Only the canonical encoding is accepted (what :func:`utf7_encode` would
    produce): RFC 3501 forbids encoding printable ASCII and adjacent shifts.
    """
    parts: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == 0x26:  # "&"
            j = raw.find(b"-", i + 1)
            if j < 0:
                raise InvalidMailboxName("unterminated '&' sequence in mailbox name")
            chunk = raw[i + 1 : j]
            if not chunk:
                parts.append("&")
            else:
                parts.append(_decode_b64_chunk(chunk))
            i = j + 1
        elif 0x20 <= c <= 0x7E:
            parts.append(chr(c))
            i += 1
        else:
            raise InvalidMailboxName("mailbox name has a byte not allowed in modified UTF-7")
    text = "".join(parts)
    if utf7_encode(text) != raw:
        raise InvalidMailboxName("mailbox name is not canonical modified UTF-7")
    return text


def _decode_b64_chunk(chunk: bytes) -> str:
    if any(b not in _B64_CHARS for b in chunk):
        raise InvalidMailboxName("invalid character in modified BASE64")
    padded = chunk.replace(b",", b"/") + b"=" * (-len(chunk) % 4)
    try:
        data = binascii.a2b_base64(padded, strict_mode=True)
    except binascii.Error:
        raise InvalidMailboxName("invalid modified BASE64 in mailbox name") from None
    if len(data) % 2:
        raise InvalidMailboxName("modified UTF-7 must encode UTF-16")
    try:
        return data.decode("utf-16-be")
    except UnicodeDecodeError:
        raise InvalidMailboxName("modified UTF-7 encodes invalid UTF-16") from None


_B64_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")


def _check_chars(name: str) -> None:
    # RFC 9051 section 5.1: names follow Net-Unicode (RFC 5198 section 2):
    # no C0/C1 controls, no DEL, no LINE/PARAGRAPH SEPARATOR.
    for ch in name:
        o = ord(ch)
        if o < 0x20 or 0x7F <= o <= 0x9F or o in (0x2028, 0x2029):
            raise InvalidMailboxName("mailbox name contains a control character")


def decode_mailbox_name(raw: bytes, utf8_enabled: bool) -> str:
    """Turn a mailbox name from a command into text.

    With UTF8=ACCEPT enabled (RFC 6855/9051) the name is UTF-8; otherwise it is
    modified UTF-7. "INBOX" is case-insensitive and always comes back as
    ``"INBOX"``. Raises :class:`InvalidMailboxName` (answer NO or BAD).
    """
    if raw.upper() == b"INBOX":
        return "INBOX"
    if utf8_enabled:
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidMailboxName("mailbox name is not valid UTF-8") from None
    else:
        name = utf7_decode(raw)
    _check_chars(name)
    return name


def encode_mailbox_name(name: str, utf8_enabled: bool) -> bytes:
    """Encode a mailbox name for a response (UTF-8 or modified UTF-7); the
    result still needs quoting with ``responses.astring``/``mailbox``."""
    if name.upper() == "INBOX":
        return b"INBOX"
    return name.encode("utf-8") if utf8_enabled else utf7_encode(name)
