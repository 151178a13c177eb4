"""SEARCH: evaluate a parsed search key over the selected mailbox's messages.

Entry point (called by the IMAP session for SEARCH, UID SEARCH and ESEARCH)::

    async def search(store: Store, mailbox_id: int, messages: Sequence[MessageMeta],
                     key: SearchKey, *, saved: Sequence[int] | None = None,
                     now: datetime | None = None) -> list[int]

``messages`` are the mailbox's messages in sequence order as the session sees them (index 0 is
sequence number 1; ascending UIDs): a sequence of ``MessageMeta``, or a :class:`Columns` of
the same values column-wise (what the session passes, straight from its shared in-memory
index: no query and no per-message object for flag/size/date/UID/MODSEQ keys; the blob ids
of the few messages phase two reads are then looked up by UID). The result is the matching *sequence numbers*, ascending;
the session maps them to UIDs for UID SEARCH / ESEARCH and computes MIN/MAX/COUNT/MODSEQ.

``saved`` is the RFC 5182 saved search result *as UIDs* (keep it as UIDs so expunges do not
shift it); ``$`` matches the messages whose UID is in it, used bare (``SEARCH $``) or after
UID (``UID SEARCH UID $``). ``saved=None`` (nothing saved yet) makes ``$`` match nothing
(RFC 5182 section 2.1). ``now`` is for OLDER/YOUNGER (default: the current time).

String arguments are bytes as the client sent them; they are decoded as UTF-8 (US-ASCII is a
subset). The session must refuse other charsets with ``NO [BADCHARSET (UTF-8 US-ASCII)]``.
Matching is a case-insensitive (Unicode casefold) substring test on decoded text
(RFC 9051 6.4.4): header fields are RFC 2047-decoded, body parts transfer- and
charset-decoded (``mail.analysis.search_text``).

How keys are evaluated: the key is compiled once into a tree whose leaves have a cost:

0. flags, keywords, sizes, internal dates, UIDs, sequence numbers, MODSEQ: straight from
   the metas, in memory (``UID SEARCH UNSEEN`` on 100,000 messages is one comprehension);
1. FROM/TO/CC/BCC/SUBJECT, HEADER Subject|Message-ID|In-Reply-To and the
   SENT* dates: one ``Store.search_fields`` query for the mailbox (only if such a key occurs);
2. other HEADER fields, BODY, TEXT: need the message blob.

Phase one evaluates the whole tree over *sets* of candidate messages in three-valued logic:
cheap leaves answer yes/no, expensive leaves answer "maybe", AND narrows its candidates
child by child (cheapest first), OR only tests the right side on what the left did not match.
Phase two reads the blobs of the "maybe" messages only (bounded concurrency, bounded batch
bytes, each blob read once however many expensive keys there are) and evaluates the full
tree per message in a worker thread, so the event loop stays responsive.

Decisions:

- RECENT, NEW (RECENT UNSEEN) and OLD (NOT RECENT) use the session's \\Recent messages
  (``recent``, RFC 3501 2.3.2; an IMAP4rev2 session has none: RECENT matches nothing).
- BEFORE/ON/SINCE compare the internal date's calendar day as written in its own zone (the one
  APPEND gave; UTC for delivered mail), RFC 9051 6.4.4; OLDER/YOUNGER compare the instant.
- SENTBEFORE/SENTON/SENTSINCE compare the Date: header's own calendar date, whatever its
  zone (RFC 3501 6.4.4; delivery keeps it as written, ``sent_local``; rows stored before that
  have only the UTC timestamp, whose UTC day is used); a message without a usable Date:
  header uses its internal date instead (common practice, e.g. Dovecot).
- OLDER n: internal date more than n seconds before ``now``; YOUNGER n: at most n seconds
  (RFC 5032; YOUNGER n is exactly NOT OLDER n).
- FROM/TO/CC/BCC match the envelope's addresses (RFC 9051 6.4.4 "in the envelope
  structure's FROM field"): ``Name <mailbox@host>`` per address, comments and source
  routes removed, names RFC 2047-decoded (stored at delivery, ``imapfmt.address_text``;
  messages stored before that keep their decoded header text). HEADER From|To|Cc|Bcc
  searches the header text itself.
- HEADER name "" matches every message having that field (RFC 9051 6.4.4); so do
  FROM/TO/... with "". SUBJECT searches the first Subject field (what delivery keeps).
- MODSEQ n matches modseq >= n (RFC 7162 3.1.5); the optional entry name is accepted and
  ignored: we keep one modseq per message, which RFC 7162 allows.
- LARGER/SMALLER use RFC822.SIZE (``meta.size``), strictly greater / smaller.
- A blob that cannot be read matches no blob-based key (it is treated as an empty message).
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timezone
from typing import Any

from postoffice.mail.analysis import header_value, search_text
from postoffice.mail.headers import decode_header_value, split_fields, unfold
from postoffice.mail.mime import Part, parse
from postoffice.protocols.imap.grammar.search import (
    SearchAll,
    SearchAnd,
    SearchBody,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchKey,
    SearchModSeq,
    SearchNew,
    SearchNot,
    SearchOld,
    SearchOlder,
    SearchOr,
    SearchSeqSet,
    SearchSize,
    SearchText,
    SearchUid,
    SearchYounger,
)
from postoffice.protocols.imap.grammar.sequence_set import SequenceSet
from postoffice.store import FLAG_BITS, MessageMeta, Store

__all__ = ["search", "Columns", "READ_CONCURRENCY"]

READ_CONCURRENCY = 8
INFO_BATCH = 500
READ_BATCH_MESSAGES = 64
READ_BATCH_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 200  # the parser allows 32 levels; anything deeper is refused, never a RecursionError

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

# HEADER fields answered from Store.search_fields (name -> key in its rows).
_FIELD_KEYS = {
    "subject": "subject", "from": "from", "to": "to", "cc": "cc", "bcc": "bcc",
    "message-id": "message_id", "in-reply-to": "in_reply_to",
}

# Stored as envelope addresses (mail.imapfmt.address_text), not as header text.
_ADDRESS_FIELDS = frozenset({"from", "to", "cc", "bcc"})

COST_META, COST_FIELDS, COST_BLOB = 0, 1, 2


def _internal_days(dates: Sequence[float], zones: Sequence[int] | None) -> Callable[[int], float]:
    """Message i -> days since 1970-01-01 of its INTERNALDATE as written in its own zone:
    RFC 9051 6.4.4 compares "internal date (disregarding time and timezone)", so
    "01-Jan-2024 23:30:00 +0200" is ON 1-Jan-2024 although it is 21:30 UTC."""
    if zones is None:
        return lambda i: dates[i] // 86400
    return lambda i: (dates[i] + zones[i] * 60) // 86400


def _needle(value: bytes) -> str:
    return value.decode("utf-8", "replace").casefold()


class _Doc:
    """One message's blob for phase two, with lazily decoded, casefolded text."""

    __slots__ = ("raw", "tree", "_body", "_header", "_values")

    def __init__(self, raw: bytes, tree: Part) -> None:
        self.raw = raw
        self.tree = tree
        self._body: str | None = None
        self._header: str | None = None
        self._values: dict[str, list[str]] = {}

    @property
    def body(self) -> str:
        if self._body is None:
            self._body = search_text(self.raw, self.tree).casefold()
        return self._body

    @property
    def header(self) -> str:
        if self._header is None:
            raw, tree = self.raw, self.tree
            self._header = "\n".join(
                decode_header_value(unfold(raw[fs:fe]))
                for _n, fs, _vs, fe in split_fields(raw, tree.header_start, tree.body_start)
            ).casefold()
        return self._header

    def values(self, name: str) -> list[str]:
        out = self._values.get(name)
        if out is None:
            out = self._values[name] = [v.casefold() for v in header_value(self.raw, self.tree, name)]
        return out


class Columns:
    """The values SEARCH reads, one sequence per attribute, index i = sequence number i + 1.

    ``keywords`` maps UID -> space-separated keywords (absent: none). ``sizes`` and ``dates``
    (INTERNALDATE instants) may be None when the key needs neither (``needs_details``);
    ``zones`` are the dates' zones in minutes east of UTC (None: all UTC). ``blob_ids`` (and
    ``metas``) are given for MessageMeta input; otherwise phase two looks the blobs up by UID.
    """

    __slots__ = ("uids", "flags", "keywords", "sizes", "dates", "modseqs", "blob_ids", "zones")

    def __init__(self, uids: Sequence[int], flags: Sequence[int], keywords: dict[int, str],
                 sizes: Sequence[int] | None, dates: Sequence[float] | None, modseqs: Sequence[int],
                 blob_ids: Sequence[str] | None = None, *, zones: Sequence[int] | None = None) -> None:
        self.uids, self.flags, self.keywords = uids, flags, keywords
        self.sizes, self.dates, self.modseqs, self.blob_ids = sizes, dates, modseqs, blob_ids
        self.zones = zones

    @classmethod
    def from_metas(cls, messages: Sequence[MessageMeta]) -> Columns:
        return cls([m.uid for m in messages], [m.flags for m in messages],
                   {m.uid: m.keywords for m in messages if m.keywords},
                   [m.size for m in messages], [m.internal_date for m in messages],
                   [m.modseq for m in messages], [m.blob_id for m in messages],
                   zones=[m.internal_zone for m in messages])

    def __len__(self) -> int:
        return len(self.uids)


_DETAIL_KEYS = (SearchSize, SearchDate, SearchOlder, SearchYounger)


def needs_details(key: SearchKey) -> bool:
    """Whether evaluating ``key`` reads sizes or internal dates (Columns.sizes / dates)."""
    stack, seen = [key], 0
    while stack and seen < 100_000:
        node = stack.pop()
        seen += 1
        if isinstance(node, _DETAIL_KEYS):
            return True
        if isinstance(node, SearchNot):
            stack.append(node.key)
        elif isinstance(node, SearchOr):
            stack.extend((node.left, node.right))
        elif isinstance(node, SearchAnd):
            stack.extend(node.keys)
    return False


# -- the compiled tree ------------------------------------------------------------------------

class _Node:
    cost = COST_META

    def sets(self, cand: set[int]) -> tuple[set[int], set[int]]:
        """(certainly matching, undecided without the blob) among ``cand``."""
        raise NotImplementedError

    def test(self, i: int, doc: _Doc) -> bool:
        raise NotImplementedError


class _Const(_Node):
    def __init__(self, value: bool) -> None:
        self.value = value

    def sets(self, cand: set[int]) -> tuple[set[int], set[int]]:
        return (set(cand) if self.value else set()), set()

    def test(self, i: int, doc: _Doc) -> bool:
        return self.value


class _Pred(_Node):
    """A leaf decided from memory: ``pred(index)``."""

    def __init__(self, pred: Callable[[int], bool], cost: int = COST_META) -> None:
        self.pred = pred
        self.cost = cost

    def sets(self, cand: set[int]) -> tuple[set[int], set[int]]:
        pred = self.pred
        return {i for i in cand if pred(i)}, set()

    def test(self, i: int, doc: _Doc) -> bool:
        return self.pred(i)


class _FlagBit(_Node):
    """A system flag leaf: one comprehension over the flag column (no call per message)."""

    def __init__(self, flags: Sequence[int], bit: int, present: bool) -> None:
        self.flags, self.bit, self.present = flags, bit, present

    def sets(self, cand: set[int]) -> tuple[set[int], set[int]]:
        flags, bit = self.flags, self.bit
        if len(cand) == len(flags):  # every message: scan the column in order
            if self.present:
                return {i for i, f in enumerate(flags) if f & bit}, set()
            return {i for i, f in enumerate(flags) if not f & bit}, set()
        if self.present:
            return {i for i in cand if flags[i] & bit}, set()
        return {i for i in cand if not flags[i] & bit}, set()

    def test(self, i: int, doc: _Doc) -> bool:
        return bool(self.flags[i] & self.bit) == self.present


class _Members(_Node):
    """A leaf that is a fixed set of indices (sequence sets, UID sets)."""

    def __init__(self, members: set[int]) -> None:
        self.members = members

    def sets(self, cand: set[int]) -> tuple[set[int], set[int]]:
        return cand & self.members, set()

    def test(self, i: int, doc: _Doc) -> bool:
        return i in self.members


class _Blob(_Node):
    """A leaf that needs the message text: ``pred(doc)``."""

    cost = COST_BLOB

    def __init__(self, pred: Callable[[_Doc], bool]) -> None:
        self.pred = pred

    def sets(self, cand: set[int]) -> tuple[set[int], set[int]]:
        return set(), set(cand)

    def test(self, i: int, doc: _Doc) -> bool:
        return self.pred(doc)


class _Not(_Node):
    def __init__(self, child: _Node) -> None:
        self.child = child
        self.cost = child.cost

    def sets(self, cand: set[int]) -> tuple[set[int], set[int]]:
        yes, maybe = self.child.sets(cand)
        return cand - yes - maybe, maybe

    def test(self, i: int, doc: _Doc) -> bool:
        return not self.child.test(i, doc)


class _And(_Node):
    def __init__(self, children: list[_Node]) -> None:
        self.children = sorted(children, key=lambda c: c.cost)  # cheap keys first
        self.cost = max(c.cost for c in children)

    def sets(self, cand: set[int]) -> tuple[set[int], set[int]]:
        cur = cand
        maybe: set[int] = set()
        for child in self.children:
            yes, m = child.sets(cur)
            if m:
                cur = yes | m
                maybe = (maybe & cur) | m
            else:
                cur = yes
                maybe &= cur
            if not cur:
                break
        return cur - maybe, maybe

    def test(self, i: int, doc: _Doc) -> bool:
        return all(c.test(i, doc) for c in self.children)


class _Or(_Node):
    def __init__(self, left: _Node, right: _Node) -> None:
        self.left, self.right = sorted((left, right), key=lambda c: c.cost)
        self.cost = max(left.cost, right.cost)

    def sets(self, cand: set[int]) -> tuple[set[int], set[int]]:
        y1, m1 = self.left.sets(cand)
        y2, m2 = self.right.sets(cand - y1)
        return y1 | y2, (m1 - y2) | m2

    def test(self, i: int, doc: _Doc) -> bool:
        return self.left.test(i, doc) or self.right.test(i, doc)


# -- compiling keys ------------------------------------------------------------------------------

class _Compiler:
    def __init__(self, messages: Columns, saved: Sequence[int] | None,
                 now: datetime | None, recent: Callable[[int], bool] | None = None) -> None:
        self.msgs = messages
        self.saved = saved
        self.recent = recent
        if now is None:
            now = datetime.now(timezone.utc)
        elif now.tzinfo is None:
            now = now.replace(tzinfo=timezone.utc)
        self.now = now.timestamp()
        self.fields: dict[int, dict[str, Any]] = {}  # filled before evaluation if needed
        self.needs_fields = False

    def uids(self) -> Sequence[int]:
        return self.msgs.uids

    def compile(self, key: SearchKey, depth: int = 0) -> _Node:
        if depth > MAX_DEPTH:
            raise ValueError("search key nested too deeply")
        msgs = self.msgs
        if isinstance(key, SearchAll):
            return _Const(True)
        if isinstance(key, SearchFlag):
            return self._flag(key.flag, key.present)
        if isinstance(key, SearchNew):  # RFC 3501 6.4.4: NEW is (RECENT UNSEEN)
            return _And([self._flag("\\Recent", True), self._flag("\\Seen", False)])
        if isinstance(key, SearchOld):  # OLD is NOT RECENT
            return self._flag("\\Recent", False)
        if isinstance(key, SearchSize):
            n = key.size
            sizes = msgs.sizes
            assert sizes is not None
            if key.op == "larger":
                return _Pred(lambda i: sizes[i] > n)
            return _Pred(lambda i: sizes[i] < n)
        if isinstance(key, SearchDate):
            return self._date(key)
        if isinstance(key, SearchModSeq):
            ms = key.modseq
            modseqs = msgs.modseqs
            return _Pred(lambda i: modseqs[i] >= ms)
        if isinstance(key, SearchOlder):
            limit = self.now - key.seconds
            dates = msgs.dates
            assert dates is not None
            return _Pred(lambda i: dates[i] < limit)
        if isinstance(key, SearchYounger):
            limit = self.now - key.seconds
            dates = msgs.dates
            assert dates is not None
            return _Pred(lambda i: dates[i] >= limit)
        if isinstance(key, SearchSeqSet):
            return self._seqset(key.seqset, uid=key.seqset.saved)
        if isinstance(key, SearchUid):
            return self._seqset(key.seqset, uid=True)
        if isinstance(key, SearchHeader):
            return self._header(key.field, _needle(key.value), key.address)
        if isinstance(key, SearchBody):
            needle = _needle(key.value)
            return _Blob(lambda d: needle in d.body)
        if isinstance(key, SearchText):
            needle = _needle(key.value)
            return _Blob(lambda d: needle in d.header or needle in d.body)
        if isinstance(key, SearchNot):
            return _Not(self.compile(key.key, depth + 1))
        if isinstance(key, SearchOr):
            return _Or(self.compile(key.left, depth + 1), self.compile(key.right, depth + 1))
        if isinstance(key, SearchAnd):
            if not key.keys:
                return _Const(True)
            return _And([self.compile(k, depth + 1) for k in key.keys])
        raise TypeError(f"unknown search key {key!r}")

    def _flag(self, flag: str, present: bool) -> _Node:
        msgs = self.msgs
        if flag.lower() == "\\recent":  # this session's \Recent messages (RFC 3501 2.3.2)
            recent, uids = self.recent, msgs.uids
            if recent is None:
                return _Const(not present)
            return _Pred(lambda i: recent(uids[i]) == present)
        if flag.startswith("\\"):
            bit = FLAG_BITS.get(flag.lower())
            if bit is None:  # an unknown system flag: never set
                return _Const(not present)
            return _FlagBit(msgs.flags, bit, present)
        # Keywords match case-insensitively (RFC 9051 2.3.2); cache per distinct keyword string.
        want = flag.casefold()
        cache: dict[str, bool] = {"": False}

        def has(kw: str) -> bool:
            hit = cache.get(kw)
            if hit is None:
                hit = cache[kw] = any(k.casefold() == want for k in kw.split())
            return hit
        kws, uids = msgs.keywords, msgs.uids
        if present:
            return _Pred(lambda i: has(kws.get(uids[i], "")))
        return _Pred(lambda i: not has(kws.get(uids[i], "")))

    def _date(self, key: SearchDate) -> _Node:
        msgs = self.msgs
        day = key.date.toordinal() - _EPOCH_ORDINAL  # days since 1970-01-01 (UTC)
        op = key.op
        dates, uids = msgs.dates, msgs.uids
        assert dates is not None
        internal_day = _internal_days(dates, msgs.zones)
        if key.sent:
            self.needs_fields = True
            fields = self.fields

            def days(i: int) -> float:
                # RFC 3501 6.4.4: the Date: header's own date, "disregarding time and timezone"
                row = fields.get(uids[i])
                if row:
                    local = row.get("sent_local")
                    if local:
                        return date.fromisoformat(local[:10]).toordinal() - _EPOCH_ORDINAL
                    sent = row.get("sent_date")  # stored before migration 5: UTC only
                    if sent is not None:
                        return sent // 86400
                return internal_day(i)
            cost = COST_FIELDS
        else:
            days = internal_day
            cost = COST_META
        if op == "before":
            return _Pred(lambda i: days(i) < day, cost)
        if op == "on":
            return _Pred(lambda i: days(i) == day, cost)
        return _Pred(lambda i: days(i) >= day, cost)

    def _seqset(self, seqset: SequenceSet, *, uid: bool) -> _Node:
        if seqset.saved:
            if not self.saved:
                return _Const(False)
            seqset = seqset.resolve_saved(SequenceSet.from_ints(self.saved))
            uid = True  # RFC 5182: the saved result is a set of messages, kept as UIDs
        n = len(self.msgs)
        members: set[int] = set()
        if uid:
            uids = self.uids()
            star = uids[-1] if uids else 0
            for lo, hi in seqset.ranges(star):
                a = bisect.bisect_left(uids, lo)
                b = bisect.bisect_right(uids, hi)
                members.update(range(a, b))
        else:
            for lo, hi in seqset.ranges(n):
                if lo > n:
                    break
                members.update(range(lo - 1, min(hi, n)))
        return _Members(members)

    def _header(self, field: str, needle: str, address: bool = False) -> _Node:
        name = field.strip().lower()
        # FROM/TO/CC/BCC read the stored envelope addresses; HEADER From/To/Cc/Bcc the text.
        key = _FIELD_KEYS.get(name) if address or name not in _ADDRESS_FIELDS else None
        if key is None:
            if needle:
                return _Blob(lambda d: any(needle in v for v in d.values(name)))
            return _Blob(lambda d: bool(d.values(name)))
        self.needs_fields = True
        uids, fields = self.msgs.uids, self.fields
        folded: dict[int, str | None] = {}

        def value(i: int) -> str | None:
            uid = uids[i]
            if uid in folded:
                return folded[uid]
            row = fields.get(uid)
            v = row.get(key) if row else None
            out = folded[uid] = None if v is None else v.casefold()
            return out
        if not needle:
            return _Pred(lambda i: value(i) is not None, COST_FIELDS)

        def match(i: int) -> bool:
            v = value(i)
            return v is not None and needle in v
        return _Pred(match, COST_FIELDS)


# -- the entry point -----------------------------------------------------------------------------

async def search(store: Store, mailbox_id: int, messages: Sequence[MessageMeta] | Columns, key: SearchKey, *,
                 saved: Sequence[int] | None = None, now: datetime | None = None,
                 recent: Callable[[int], bool] | None = None) -> list[int]:
    """Sequence numbers (ascending) of the messages matching ``key``; see the module docstring.
    ``recent`` (``uid -> bool``) tells the session's \\Recent messages (None: none)."""
    if not len(messages):
        return []
    cols = messages if isinstance(messages, Columns) else Columns.from_metas(messages)
    comp = _Compiler(cols, saved, now, recent)
    node = comp.compile(key)
    if comp.needs_fields:
        comp.fields.update(await store.search_fields(mailbox_id))
    yes, maybe = node.sets(set(range(len(cols))))
    if maybe:
        todo = sorted(maybe)
        if cols.blob_ids is not None and cols.sizes is not None:
            metas: Sequence[Any] = _MetaView(cols)
        else:  # blob ids (and sizes) of just these messages, by UID; gone -> placeholder
            got = {m.uid: m for m in await store.get_messages(mailbox_id, [cols.uids[i] for i in todo])}
            metas = {i: got.get(cols.uids[i]) or _GONE for i in todo}  # type: ignore[assignment]
        yes |= await _phase_two(store, metas, node, todo)
    return [i + 1 for i in sorted(yes)]


_GONE = MessageMeta(0, 0, "", 0, 0.0, 0, "")  # a message expunged meanwhile: no blob


class _MetaView:
    """``view[i].blob_id`` / ``.size`` over Columns that carry blob ids."""

    __slots__ = ("cols",)

    def __init__(self, cols: Columns) -> None:
        self.cols = cols

    def __getitem__(self, i: int) -> MessageMeta:
        c = self.cols
        assert c.blob_ids is not None and c.sizes is not None
        return MessageMeta(c.uids[i], 0, "", c.sizes[i], 0.0, 0, c.blob_ids[i])


async def _phase_two(store: Store, messages: Any, node: _Node,
                     todo: list[int]) -> set[int]:
    sem = asyncio.Semaphore(READ_CONCURRENCY)

    async def read(blob_id: str) -> bytes:
        if not blob_id:  # a placeholder for a message expunged meanwhile
            return b""
        async with sem:
            try:
                return await store.read_blob(blob_id)
            except OSError:
                return b""

    matched: set[int] = set()
    for start in range(0, len(todo), INFO_BATCH):
        chunk = todo[start:start + INFO_BATCH]
        infos = await store.blob_info({messages[i].blob_id for i in chunk})
        for batch in _read_batches(messages, chunk):
            raws = await asyncio.gather(*(read(messages[i].blob_id) for i in batch))
            structures = [
                (info.structure if (info := infos.get(messages[i].blob_id)) is not None else None)
                for i in batch
            ]
            matched.update(await asyncio.to_thread(_evaluate, node, batch, raws, structures))
    return matched


def _evaluate(node: _Node, batch: list[int], raws: list[bytes],
              structures: list[str | None]) -> list[int]:
    out = []
    for i, raw, structure in zip(batch, raws, structures):
        try:
            tree = Part.from_json(structure) if structure and raw else parse(raw)
        except (ValueError, TypeError, IndexError):
            tree = parse(raw)
        if node.test(i, _Doc(raw, tree)):
            out.append(i)
    return out


def _read_batches(messages: Any, chunk: list[int]) -> Iterator[list[int]]:
    batch: list[int] = []
    size = 0
    for i in chunk:
        s = messages[i].size
        if batch and (len(batch) >= READ_BATCH_MESSAGES or size + s > READ_BATCH_BYTES):
            yield batch
            batch = []
            size = 0
        batch.append(i)
        size += s
    if batch:
        yield batch
