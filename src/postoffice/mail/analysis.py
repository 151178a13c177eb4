"""Parse-once message summary for the store: :func:`analyze` at delivery, reuse for FETCH/SEARCH."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .headers import decode_charset, decode_header_value, memo_fields, parse_date, split_fields, unfold
from .imapfmt import address_text
from .imapfmt import body as body_fmt
from .imapfmt import bodystructure as bodystructure_fmt
from .imapfmt import envelope as envelope_fmt
from .mime import Part, parse
from .sections import UnknownCTE, decode_transfer


@dataclass(slots=True)
class MessageInfo:
    """Everything IMAP asks for repeatedly.  ``envelope``/``bodystructure``/``body`` are wire
    bytes; the text fields are decoded (RFC 2047) for SEARCH; ``from_``/``to``/``cc``/``bcc``
    are the envelope addresses written out (`imapfmt.address_text`: no comments, no routes);
    ``date`` is the Date header with its own zone."""

    size: int
    tree: Part
    envelope: bytes
    bodystructure: bytes
    body: bytes
    subject: str | None
    from_: str | None
    to: str | None
    cc: str | None
    bcc: str | None
    message_id: str | None
    in_reply_to: str | None
    references: str | None
    date: datetime | None

    def to_json(self) -> str:
        d: dict[str, Any] = {
            "v": 1,
            "size": self.size,
            "tree": self.tree.to_list(),
            # wire bytes may contain 8-bit literals; latin-1 maps octets 1:1 to code points
            "env": self.envelope.decode("latin-1"),
            "bs": self.bodystructure.decode("latin-1"),
            "body": self.body.decode("latin-1"),
            "subject": self.subject,
            "from": self.from_,
            "to": self.to,
            "cc": self.cc,
            "bcc": self.bcc,
            "mid": self.message_id,
            "irt": self.in_reply_to,
            "refs": self.references,
            "date": None if self.date is None else self.date.isoformat(),
        }
        return json.dumps(d, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> MessageInfo:
        d = json.loads(text)
        return cls(
            size=d["size"],
            tree=Part.from_list(d["tree"]),
            envelope=d["env"].encode("latin-1"),
            bodystructure=d["bs"].encode("latin-1"),
            body=d["body"].encode("latin-1"),
            subject=d["subject"],
            from_=d["from"],
            to=d["to"],
            cc=d["cc"],
            bcc=d["bcc"],
            message_id=d["mid"],
            in_reply_to=d["irt"],
            references=d["refs"],
            date=None if d["date"] is None else datetime.fromisoformat(d["date"]),
        )


def _header_map(raw: bytes, msg: Part) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = {}
    for name, _fs, vs, fe in split_fields(raw, msg.header_start, msg.body_start):
        if name:
            out.setdefault(name, []).append(unfold(raw[vs:fe]))
    return out


def header_value(raw: bytes, tree: Part, name: str) -> list[str]:
    """Decoded (RFC 2047, charset-tolerant) values of every ``name`` field of the top-level
    header, in message order (for SEARCH HEADER / FROM / SUBJECT ...)."""
    key = name.strip().lower().encode("utf-8", "surrogateescape")
    return [
        decode_header_value(unfold(raw[vs:fe]))
        for n, _fs, vs, fe in split_fields(raw, tree.header_start, tree.body_start)
        if n == key
    ]


def analyze(raw: bytes) -> MessageInfo:
    """Parse ``raw`` once.  Never raises for any input."""
    with memo_fields(raw):  # the top-level header block is split once, not three times
        return _analyze(raw)


def _analyze(raw: bytes) -> MessageInfo:
    tree = parse(raw)
    hm = _header_map(raw, tree)

    def first(name: bytes) -> str | None:
        v = hm.get(name)
        return decode_header_value(v[0]) if v else None

    def joined(name: bytes) -> str | None:
        v = hm.get(name)
        return ", ".join(decode_header_value(x) for x in v) if v else None

    def addresses(name: bytes) -> str | None:
        v = hm.get(name)
        return ", ".join(address_text(x) for x in v) if v else None

    date_raw = hm.get(b"date")
    return MessageInfo(
        size=len(raw),
        tree=tree,
        envelope=envelope_fmt(raw, tree),
        bodystructure=bodystructure_fmt(raw, tree, True),
        body=body_fmt(raw, tree),
        subject=first(b"subject"),
        from_=addresses(b"from"),
        to=addresses(b"to"),
        cc=addresses(b"cc"),
        bcc=addresses(b"bcc"),
        message_id=first(b"message-id"),
        in_reply_to=first(b"in-reply-to"),
        references=joined(b"references"),
        date=parse_date(date_raw[0]) if date_raw else None,
    )


def part_text(raw: bytes, part: Part) -> str:
    """Transfer- and charset-decoded text of one leaf part (unknown CTE: raw octets)."""
    data = raw[part.body_start : part.body_end]
    try:
        data = decode_transfer(data, part.encoding)
    except UnknownCTE:
        pass
    return decode_charset(data, part.param("charset"))


def search_text(raw: bytes, tree: Part) -> str:
    """Decoded text of every text/* leaf (including inside attached messages), joined by
    newlines, for SEARCH BODY / TEXT.  HTML is returned as-is (markup included)."""
    chunks = [
        part_text(raw, p)
        for p in tree.walk()
        if p.type == "text" and not p.children and p.message is None
    ]
    return "\n".join(chunks)

