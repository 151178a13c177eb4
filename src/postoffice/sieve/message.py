"""What a Sieve script may look at: the message's header fields, body and envelope (pure)."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.header import decode_header, make_header
from email.message import Message

#: The body tests look at no more than this many bytes of the message (RFC 5173 leaves the
#: limit to the implementation; a multi-megabyte attachment is not scanned).
MAX_BODY_BYTES = 1024 * 1024
#: Header fields beyond this many are not looked at.
MAX_FIELDS = 1000


def _find_header_end(raw: bytes) -> int:
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = raw.find(sep)
        if at >= 0:
            return at + len(sep)
    return len(raw)


def _decode_2047(value: str) -> str:
    """RFC 5228 §2.7.2: header values are compared after RFC 2047 decoding."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # noqa: BLE001 - a broken encoded word compares as itself
        return value


@dataclass
class MessageFacts:
    """The message as a script sees it. ``fields`` are (lower-case name, unfolded value) in
    order; ``envelope_from`` is "" for the null reverse-path; ``envelope_to`` is the
    recipient address this copy is for; ``user_addresses`` are the account's own addresses
    (vacation's "is it for me" and "is it from me" checks, RFC 5230 §4.5)."""

    raw: bytes
    fields: list[tuple[str, str]]
    envelope_from: str
    envelope_to: str
    user_addresses: tuple[str, ...] = ()
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    _parsed: Message | None = None

    @classmethod
    def from_bytes(cls, raw: bytes, *, envelope_from: str, envelope_to: str,
                   user_addresses: tuple[str, ...] = (), now: datetime | None = None) -> MessageFacts:
        end = _find_header_end(raw)
        head = raw[:end].decode("utf-8", "replace").replace("\r\n", "\n")
        # A field's lines are joined once at the end: adding each continuation line to the
        # value as it came was quadratic (a 1 MB field folded into 14,000 lines: seconds).
        pieces: list[tuple[str, list[str]]] = []
        for line in head.split("\n"):
            if not line:
                continue
            if line[0] in " \t" and pieces:
                pieces[-1][1].append(line.strip())
                continue
            name, sep, value = line.partition(":")
            if not sep or len(pieces) >= MAX_FIELDS:
                continue
            pieces.append((name.strip().lower(), [value.strip()]))
        fields = [(name, " ".join(parts)) for name, parts in pieces]
        return cls(raw, fields, envelope_from, envelope_to, user_addresses,
                   now or datetime.now(timezone.utc))

    @property
    def size(self) -> int:
        return len(self.raw)

    def header(self, name: str, *, decode: bool = True) -> list[str]:
        name = name.lower()
        values = [v for n, v in self.fields if n == name]
        return [_decode_2047(v) for v in values] if decode else values

    def parsed(self) -> Message:
        if self._parsed is None:
            self._parsed = email.message_from_bytes(self.raw[:MAX_BODY_BYTES], policy=email.policy.compat32)
        return self._parsed

    def body_raw(self) -> str:
        """RFC 5173 §5.1 ``:raw``: the undecoded body."""
        end = _find_header_end(self.raw)
        return self.raw[end:end + MAX_BODY_BYTES].decode("utf-8", "replace")

    def body_parts(self, types: list[str] | None) -> list[str]:
        """RFC 5173 §5.2 ``:content``: the decoded text of the parts whose type matches one of
        ``types`` ("text", "text/plain", "" for every type); ``None`` means ``:text``
        (RFC 5173 §5.3: the text/* parts)."""
        wanted = ["text"] if types is None else [t.lower() for t in types]
        out: list[str] = []
        for part in self.parsed().walk():
            if part.is_multipart():
                continue
            ctype = part.get_content_type().lower()
            main = ctype.partition("/")[0]
            if not any(w == "" or w == ctype or ("/" not in w and w == main) for w in wanted):
                continue
            payload = part.get_payload(decode=True) or b""
            charset = part.get_content_charset() or "us-ascii"
            try:
                text = payload.decode(charset, "replace")
            except LookupError:
                text = payload.decode("utf-8", "replace")
            out.append(text)
        return out


__all__ = ["MAX_BODY_BYTES", "MessageFacts"]
