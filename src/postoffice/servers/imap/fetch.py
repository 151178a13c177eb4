"""FETCH: turn (sequence number, message) pairs and parsed fetch items into untagged responses.

Entry point (called by the IMAP session for FETCH and UID FETCH)::

    async def fetch_responses(store: Store, items: Sequence[tuple[int, MessageMeta]],
                              atts: Sequence[FetchAtt], *, include_uid: bool,
                              include_modseq: bool, utf8: bool = False) -> AsyncIterator[bytes]

``items`` are ``(sequence number, message)`` in ascending order, as the session sees them.
The generator yields serialized ``* <seq> FETCH (...)\\r\\n`` responses, several joined
per chunk (about 256 KiB per chunk, or one large literal), so the caller can simply
``await conn.send(chunk)`` for each chunk.

- ``include_uid``: add ``UID`` even when not requested (UID FETCH always returns it,
  RFC 9051 6.4.8). It is written first.
- ``include_modseq``: add ``MODSEQ (n)`` (CONDSTORE enabled with CHANGEDSINCE, RFC 7162
  3.1.4.1). Items the client asked for are not repeated.
- ``recent``: ``uid -> bool``, the messages this session sees as ``\\Recent`` (IMAP4rev1
  only, RFC 3501 2.3.2), listed first in FLAGS; None: no message is.
- ``utf8``: UTF8=ACCEPT / IMAP4rev2 is in force. The precomputed ENVELOPE/BODYSTRUCTURE
  bytes are valid either way (non-ASCII strings are literals), so this only matters for
  future string items; it is accepted for the contract.

Data sources (MIME is parsed once, at delivery: mail/analysis.py; docs/develop.md):

- FLAGS, INTERNALDATE, RFC822.SIZE, UID, MODSEQ come from ``MessageMeta`` alone: no
  database query and no blob read (``FETCH 1:* (UID FLAGS)`` is a tight loop).
- ENVELOPE, BODYSTRUCTURE, BODY come from ``Store.blob_info`` (bytes computed at delivery),
  one call per batch of up to 1,000 messages.
- Sections (``BODY[...]``, ``BODY.PEEK[...]``, ``RFC822*``, ``BINARY*``) read the blob
  (concurrently, bounded by :data:`READ_CONCURRENCY` and by batch bytes) and use the Part
  tree stored at delivery (``Part.from_json``); MIME is never re-parsed. ``BODY[]`` /
  ``RFC822`` alone need no ``blob_info`` at all; ``BINARY.SIZE`` of an identity-encoded
  part needs no blob read.

Decisions:

- A section that does not exist (``BODY[7]`` of a two-part message, ``BODY[1.HEADER]``
  of a text part, ``BINARY[9]``) is returned as ``NIL``: the response grammar is
  ``nstring`` and NIL says "no such section", whereas "" would claim an empty part
  (RFC 9051 7.5.2 leaves the choice open; Dovecot answers NIL too). A partial whose origin
  lies past the end of an existing section is the empty string (RFC 9051 6.4.5).
  ``BINARY.SIZE`` of a missing part is ``0`` (its grammar needs a number).
- Partial responses are named with the origin only: ``BODY[]<0>`` (RFC 9051 7.5.2);
  BINARY follows ``FetchAtt.response_name()`` (``BINARY[1]<0>``), as RFC 3516 section 4.2 prose
  describes.
- All body data is sent as literals; BINARY data containing NUL is sent as a literal8
  (``~{n}``, RFC 3516 4.2).
- INTERNALDATE is written in the zone it was given in (APPEND's date-time; ``+0000`` for
  delivered mail): ``MessageMeta.internal_zone``.
- Implicit ``\\Seen`` (``FetchAtt.sets_seen``) is the session's job: it stores the flag
  before calling, passes the updated metas and adds ``FLAGS`` to ``atts`` (RFC 9051 6.4.5).
- Errors: a part with an unknown Content-Transfer-Encoding asked for with BINARY, or a blob
  that cannot be read, skips that message's response; the other messages are still sent and
  then :class:`FetchError` is raised (``code`` b"UNKNOWN-CTE" per RFC 3516 4.3, or
  b"CORRUPTION") for the session to answer ``tag NO [code] text``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from operator import attrgetter
from typing import Any

from postoffice.mail import imapfmt
from postoffice.mail.mime import Part, parse
from postoffice.mail.sections import (
    UnknownCTE,
    binary_bytes,
    binary_size,
    decode_transfer,
    partial,
    resolve_part,
    section_bytes,
)
from postoffice.protocols.imap.grammar.fetch_att import FetchAtt, Section
from postoffice.protocols.imap.responses import flag_list
from postoffice.store import BlobInfo, MessageMeta, Store, bits_to_flags

__all__ = ["fetch_responses", "FetchError", "internal_date", "CHUNK_BYTES", "READ_CONCURRENCY"]

CHUNK_BYTES = 256 * 1024          # yield when this much response data is pending
READ_CONCURRENCY = 8              # blob reads in flight at once
INFO_BATCH = 1000                 # messages per blob_info call
RAW_BATCH_MESSAGES = 64           # messages per blob-reading batch ...
RAW_BATCH_BYTES = 8 * 1024 * 1024  # ... and at most this many message bytes (at least one)

_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun",
           b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")
_IDENTITY_CTE = (None, "7bit", "8bit", "binary")


class FetchError(Exception):
    """FETCH could not return some data; the session answers ``tag NO [code] text``."""

    def __init__(self, code: bytes, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class _Corrupt(Exception):
    pass


_DAYS: dict[int, bytes] = {}


def internal_date(ts: float, zone: int = 0) -> bytes:
    """``"dd-Mon-yyyy hh:mm:ss +hhmm"`` (RFC 9051 date-time, day space-padded): the instant
    ``ts`` in the zone ``zone`` minutes east of UTC."""
    secs = math.floor(ts) + zone * 60
    day, rest = divmod(secs, 86400)
    prefix = _DAYS.get(day)
    if prefix is None:
        t = time.gmtime(day * 86400)
        prefix = b'"%2d-%s-%04d ' % (t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year)
        if len(_DAYS) < 100_000:
            _DAYS[day] = prefix
    hours, rest = divmod(rest, 3600)
    sign, offset = (b"-", -zone) if zone < 0 else (b"+", zone)
    return b'%s%02d:%02d:%02d %s%02d%02d"' % (prefix, hours, rest // 60, rest % 60, sign, *divmod(offset, 60))


def _flags_getter(recent: Callable[[int], bool] | None = None) -> Callable[[MessageMeta], bytes]:
    """``meta -> b"(\\Seen $Work)"``, cached per distinct (bits, keywords, recent); ``recent``
    says which UIDs the session sees as \\Recent (RFC 3501 2.3.2; None: none)."""
    cache: dict[tuple[int, str, bool], bytes] = {}

    def flags(m: MessageMeta) -> bytes:
        key = (m.flags, m.keywords, recent is not None and recent(m.uid))
        out = cache.get(key)
        if out is None:
            names = bits_to_flags(m.flags, m.keywords)
            out = cache[key] = flag_list(["\\Recent", *names] if key[2] else names)
        return out
    return flags


def _lit(data: bytes) -> bytes:
    return b"{%d}\r\n%s" % (len(data), data)


def _lit8(data: bytes) -> bytes:
    return b"~{%d}\r\n%s" % (len(data), data)


# An encoder turns (meta, BlobInfo or None, raw or None, tree or None) into b"NAME value".
_Encoder = Callable[[MessageMeta, Any, Any, Any], bytes]


def needs_blob_info(atts: Sequence[FetchAtt]) -> bool:
    """True when answering ``atts`` reads `Store.blob_info` (ENVELOPE, BODYSTRUCTURE, sections...)."""
    plan = _Plan(atts, False, False)
    return plan.need_info or plan.need_tree or plan.raw_maybe


class _Plan:
    """What a FETCH needs, decided once per command."""

    def __init__(self, atts: Sequence[FetchAtt], include_uid: bool, include_modseq: bool,
                 recent: Callable[[int], bool] | None = None) -> None:
        self.recent = recent
        seen: set[bytes] = set()
        ordered: list[FetchAtt] = []
        names = {a.name for a in atts}
        if include_uid and "UID" not in names:
            ordered.append(FetchAtt("UID"))
        for a in atts:
            # one answer per response name (BODY[1] and BODY.PEEK[1] are both "BODY[1]")
            rname = a.response_name()
            if rname not in seen:
                seen.add(rname)
                ordered.append(a)
        if include_modseq and "MODSEQ" not in names:
            ordered.append(FetchAtt("MODSEQ"))
        self.atts = ordered
        self.need_info = False     # blob_info row (envelope, structure...)
        self.need_tree = False     # the Part tree
        self.raw_always = False    # every message's blob must be read
        self.raw_maybe = False     # some items need the blob depending on the tree (BINARY.SIZE)
        self.encoders: list[_Encoder] = [self._encoder(a) for a in ordered]
        self.meta_only = not (self.need_info or self.need_tree or self.raw_always or self.raw_maybe)
        self.binary_size_atts = [a for a in ordered if a.name == "BINARY.SIZE"]

    # -- encoders: (meta, info, raw, tree) -> b"NAME value" ------------------------------
    def _encoder(self, att: FetchAtt) -> _Encoder:
        name = att.name
        if name == "UID":
            return lambda m, i, r, t: b"UID %d" % m.uid
        if name == "FLAGS":
            get = _flags_getter(self.recent)
            return lambda m, i, r, t: b"FLAGS " + get(m)
        if name == "INTERNALDATE":
            return lambda m, i, r, t: b"INTERNALDATE " + internal_date(m.internal_date, m.internal_zone)
        if name == "RFC822.SIZE":
            return lambda m, i, r, t: b"RFC822.SIZE %d" % m.size
        if name == "MODSEQ":
            return lambda m, i, r, t: b"MODSEQ (%d)" % m.modseq
        if name in ("ENVELOPE", "BODYSTRUCTURE") or (name == "BODY" and att.section is None):
            self.need_info = True
            field = {"ENVELOPE": "envelope", "BODYSTRUCTURE": "bodystructure", "BODY": "body"}[name]
            prefix = name.encode("ascii") + b" "
            return lambda m, i, r, t: prefix + getattr(i, field)
        if name in ("RFC822", "RFC822.HEADER", "RFC822.TEXT"):
            text = {"RFC822": None, "RFC822.HEADER": "HEADER", "RFC822.TEXT": "TEXT"}[name]
            att = FetchAtt("BODY", Section((), text))
            prefix = name.encode("ascii") + b" "
        else:
            prefix = att.response_name() + b" "
        self.raw_always = self.raw_always or name != "BINARY.SIZE"
        sec = att.section
        assert sec is not None
        parts, text, fields = sec.part, sec.text, sec.headers
        whole = not parts and text is None
        if not whole:
            self.need_tree = True
        rng = att.partial
        if name == "BINARY.SIZE":
            self.raw_maybe = True

            def bsize(m: MessageMeta, i: Any, raw: Any, tree: Any) -> bytes:
                if text is not None:
                    n = len(_binary_text(raw, tree, sec) or b"")
                else:
                    n = binary_size(raw if raw is not None else b"", tree, parts)
                return prefix + b"%d" % (n or 0)
            return bsize
        if name == "BINARY":
            def binary(m: MessageMeta, i: Any, raw: Any, tree: Any) -> bytes:
                if text is not None:
                    data = _binary_text(raw, tree, sec)
                else:
                    data = raw if whole else binary_bytes(raw, tree, parts)
                if data is None:
                    return prefix + b"NIL"
                if rng is not None:
                    data = partial(data, rng[0], rng[1])
                return prefix + (_lit8(data) if b"\x00" in data else _lit(data))
            return binary

        def body(m: MessageMeta, i: Any, raw: Any, tree: Any) -> bytes:
            data = raw if whole else section_bytes(raw, tree, parts, text, fields)
            if data is None:
                return prefix + b"NIL"
            if rng is not None:
                data = partial(data, rng[0], rng[1])
            return prefix + _lit(data)
        return body

    def meta_formatter(self) -> Callable[[int, MessageMeta], bytes]:
        """``(seq, meta) -> b"* seq FETCH (...)\\r\\n"`` for meta-only items, as one format."""
        fmts: list[bytes] = []
        getters: list[Callable[[MessageMeta], Any]] = []
        for a in self.atts:
            if a.name == "UID":
                fmts.append(b"UID %d")
                getters.append(attrgetter("uid"))
            elif a.name == "MODSEQ":
                fmts.append(b"MODSEQ (%d)")
                getters.append(attrgetter("modseq"))
            elif a.name == "RFC822.SIZE":
                fmts.append(b"RFC822.SIZE %d")
                getters.append(attrgetter("size"))
            elif a.name == "INTERNALDATE":
                fmts.append(b"INTERNALDATE %s")
                getters.append(lambda m: internal_date(m.internal_date, m.internal_zone))
            elif a.name == "FLAGS":
                fmts.append(b"FLAGS %s")
                getters.append(_flags_getter(self.recent))
            else:  # pragma: no cover - meta_only guarantees the above
                raise AssertionError(a.name)
        fmt = b"* %d FETCH (" + b" ".join(fmts) + b")\r\n"
        if len(getters) == 1:
            g0, = getters
            return lambda seq, m: fmt % (seq, g0(m))
        if len(getters) == 2:
            g0, g1 = getters
            return lambda seq, m: fmt % (seq, g0(m), g1(m))
        if len(getters) == 3:
            g0, g1, g2 = getters
            return lambda seq, m: fmt % (seq, g0(m), g1(m), g2(m))
        return lambda seq, m: fmt % (seq, *[g(m) for g in getters])

    def needs_raw(self, tree: Part | None) -> bool:
        if self.raw_always:
            return True
        if not self.raw_maybe:
            return False
        if tree is None:
            return True
        for a in self.binary_size_atts:
            parts = a.section.part if a.section else ()
            if not parts or a.section.text is not None:  # type: ignore[union-attr]
                return True
            p = resolve_part(tree, parts)
            if p is not None and p.encoding not in _IDENTITY_CTE:
                return True
        return False


async def fetch_responses(
    store: Store,
    items: Sequence[tuple[int, MessageMeta]],
    atts: Sequence[FetchAtt],
    *,
    include_uid: bool,
    include_modseq: bool,
    utf8: bool = False,
    recent: Callable[[int], bool] | None = None,
    known_infos: Mapping[str, BlobInfo] | None = None,
) -> AsyncIterator[bytes]:
    """Yield the untagged FETCH responses for ``items`` (see the module docstring). ``known_infos``:
    `Store.blob_info` rows the caller already read with the messages (others are read here).

    Raises :class:`FetchError` after yielding everything else when some message could not be
    answered (unknown transfer encoding for BINARY, unreadable blob)."""
    plan = _Plan(atts, include_uid, include_modseq, recent)
    encoders = plan.encoders
    error: FetchError | None = None

    if plan.meta_only:
        # The hot path: FLAGS/UID/INTERNALDATE/SIZE/MODSEQ straight from the metas, one
        # %-format per message, lines joined per slice sized to about CHUNK_BYTES.
        line = plan.meta_formatter()
        step, start, n = 1024, 0, len(items)
        while start < n:
            chunk = b"".join([line(seq, m) for seq, m in items[start:start + step]])
            start += step
            yield chunk
            step = max(16, min(65536, CHUNK_BYTES * step // max(1, len(chunk))))
        return

    sem = asyncio.Semaphore(READ_CONCURRENCY)

    async def read(blob_id: str) -> bytes | None:
        if not blob_id:
            return None
        async with sem:
            try:
                return await store.read_blob(blob_id)
            except OSError:
                return None

    reads_raw = plan.raw_always or plan.raw_maybe
    known = known_infos or {}
    for batch in _batches(items, reads_raw):
        infos: dict[str, BlobInfo] = {}
        if plan.need_info or plan.need_tree or plan.raw_maybe:
            infos = {m.blob_id: known[m.blob_id] for _, m in batch if m.blob_id in known}
            unread = [m.blob_id for _, m in batch if m.blob_id not in infos]
            if unread:
                infos.update(await store.blob_info(unread))
        trees: list[Part | None] = [None] * len(batch)
        if plan.need_tree or plan.raw_maybe:
            for k, (_, m) in enumerate(batch):
                info = infos.get(m.blob_id)
                if info is not None and info.structure:
                    trees[k] = Part.from_json(info.structure)
        raws: list[bytes | None] = [None] * len(batch)
        want = [k for k, (_, m) in enumerate(batch)
                if plan.needs_raw(trees[k]) or _info_incomplete(plan, infos.get(m.blob_id))
                or (trees[k] is None and plan.need_tree)]
        wanted = set(want)
        if want:
            got = await asyncio.gather(*(read(batch[k][1].blob_id) for k in want))
            for k, data in zip(want, got):
                raws[k] = data
                if data is None:
                    error = error or FetchError(b"CORRUPTION", "some message bodies could not be read")
        out = []
        pending = 0
        for k, (seq, m) in enumerate(batch):
            info: Any = infos.get(m.blob_id)
            raw, tree = raws[k], trees[k]
            try:
                if k in wanted and raw is None:
                    raise _Corrupt
                if (plan.need_info and _info_incomplete(plan, info)) or (
                        tree is None and (plan.need_tree or (raw is not None and plan.raw_maybe))):
                    # Rows from before analysis was stored: parse this one message now.
                    if raw is None:
                        raise _Corrupt
                    tree = tree or parse(raw)
                    info = _info_from_raw(m.blob_id, raw, tree)
                line = b"* %d FETCH (%s)\r\n" % (seq, b" ".join([e(m, info, raw, tree) for e in encoders]))
            except UnknownCTE as exc:
                error = error or FetchError(
                    b"UNKNOWN-CTE", f"cannot decode content-transfer-encoding {exc.encoding}")
                continue
            except _Corrupt:
                error = error or FetchError(b"CORRUPTION", "some message bodies could not be read")
                continue
            out.append(line)
            pending += len(line)
            if pending >= CHUNK_BYTES:
                yield b"".join(out)
                out = []
                pending = 0
        if out:
            yield b"".join(out)
    if error is not None:
        raise error


def _binary_text(raw: bytes, tree: Part, sec: Section) -> bytes | None:
    """BINARY of a section with a text specifier (``BINARY[2.MIME]``, ``BINARY[TEXT]``), which
    Dovecot accepts though RFC 3516's grammar has part numbers only. A header block is never
    transfer-encoded (RFC 2045 section 6 encodes bodies), so HEADER*, MIME are BODY[...]'s
    bytes; TEXT is decoded where it is the body of a single-part message, as BINARY[1] is."""
    data = section_bytes(raw, tree, sec.part, sec.text, sec.headers)
    if data is None or sec.text != "TEXT":
        return data
    msg = tree if not sec.part else getattr(resolve_part(tree, sec.part), "message", None)
    if msg is None or msg.type == "multipart" or msg.message is not None:
        return data
    return decode_transfer(data, msg.encoding)


def _info_incomplete(plan: _Plan, info: BlobInfo | None) -> bool:
    if not plan.need_info:
        return False
    return info is None or info.envelope is None or info.bodystructure is None or info.body is None


def _info_from_raw(blob_id: str, raw: bytes, tree: Part) -> BlobInfo:
    return BlobInfo(
        id=blob_id, size=len(raw), header_size=tree.body_start,
        envelope=imapfmt.envelope(raw, tree),
        bodystructure=imapfmt.bodystructure(raw, tree, True),
        body=imapfmt.body(raw, tree),
        structure=None,
    )


def _batches(items: Sequence[tuple[int, MessageMeta]], reads_raw: bool,
             ) -> Iterator[Sequence[tuple[int, MessageMeta]]]:
    """Split ``items``: up to INFO_BATCH messages, or (when blobs are read) at most
    RAW_BATCH_MESSAGES messages / RAW_BATCH_BYTES bytes of message data."""
    if not reads_raw:
        for start in range(0, len(items), INFO_BATCH):
            yield items[start:start + INFO_BATCH]
        return
    batch: list[tuple[int, MessageMeta]] = []
    size = 0
    for item in items:
        if batch and (len(batch) >= RAW_BATCH_MESSAGES or size + item[1].size > RAW_BATCH_BYTES):
            yield batch
            batch = []
            size = 0
        batch.append(item)
        size += item[1].size
    if batch:
        yield batch
