"""SORT, UID SORT, THREAD and UID THREAD (RFC 5256), SORT=DISPLAY (RFC 5957), ESORT (RFC 5267
section 3).

The search part is SEARCH's own (``search.search`` over the session's view, the same
columns and the same rules); what is added is ordering, from keys kept in memory:

``SortData`` hangs off the shared per-mailbox index (``MailboxIndex.sortdata``) and holds,
per UID, the values every sort key and both threading algorithms compare: RFC822.SIZE, the
INTERNALDATE, the sent date (the Date: field, else the INTERNALDATE; RFC 5256 section 2.2),
the base subject and the first From/To/Cc mailbox and display names already case-mapped
(i;ascii-casemap, the collation RFC 5256 requires), the reply flag, Message-ID and
References. They were computed once at delivery (``mail.sortkeys``, ``blobs.sortkeys``);
the first SORT or THREAD of a mailbox loads them with one query, later ones only load
messages that arrived since; a large load is saved as a snapshot (store/snapshots.py) that
the first SORT after a restart reads instead. Sorting itself runs in a worker thread when the
set is large, so a 100,000-message SORT does not stall the other sessions on the event loop.

Decisions:

* Ties are broken by sequence number (RFC 5256 section 3: messages that compare equal stay
  in mailbox order), also under REVERSE, which reverses only the key it precedes.
* A missing header sorts as the empty string (RFC 5256 section 3).
* Plain SORT/THREAD never send EXPUNGE while running (like SEARCH, RFC 9051 section 7.5.1);
  the UID forms may.
* ESORT (RFC 5267 section 3.1): MIN/MAX are the first/last message in sorted order, ALL the
  whole result in sorted order (ascending runs only become ranges, section 3.2), COUNT as for
  ESEARCH. SAVE is refused by the grammar (RFC 5182 defines it for SEARCH).
* With a MODSEQ search key, ``* SORT`` and ``* ESEARCH`` carry the highest mod-sequence of
  the result (RFC 7162 section 3.1.5), as SEARCH does.
"""

from __future__ import annotations

import asyncio
import hashlib
from array import array
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from ...protocols.imap import commands as c
from ...protocols.imap import responses as r
from ...protocols.imap.responses import Code
from ...cpu import gc_paused
from ...mail.sortkeys import SORTKEYS_VERSION
from .errors import Refused
from .thread import ThreadMessage, format_threads, orderedsubject, references

if TYPE_CHECKING:
    from .selected import MailboxIndex, SelectedMailbox
    from .session import Session

__all__ = ["SortData", "SortRow", "make_row", "sort_numbers", "do_sort", "do_thread", "THREADED_INLINE"]

T = TypeVar("T")

#: Up to this many matched messages are sorted/threaded on the event loop (microseconds);
#: larger sets go to a worker thread.
THREADED_INLINE = 2000
#: SORT/THREAD answers kept per mailbox (see SortData.results and _answer_key).
RESULT_CACHE = 4
CHARSETS = ("UTF-8", "US-ASCII")
#: A load that read this many rows from the database saves all rows as a snapshot
#: (store/snapshots.py), so the first SORT after a restart reads the database only for newer
#: UIDs (100,000 messages, bench/imap_bench.py: the first SORT ever 2.0-2.8 s, the first
#: after a restart 0.5 s).
SNAPSHOT_AFTER = 5000
#: The row layout below and the stored keys' version: a snapshot of another is not used.
SNAPSHOT_FORMAT = (1, SORTKEYS_VERSION)


async def _cpu(fn: Callable[[], T], size: int) -> T:
    """Run ``fn`` inline when ``size`` is small, otherwise in a worker thread with the
    cyclic GC paused (CPU-heavy work never runs on the event loop)."""
    if size <= THREADED_INLINE:
        return fn()

    def run() -> T:
        with gc_paused():
            return fn()
    return await asyncio.to_thread(run)


#: One message's sort row is a plain tuple (cheapest to build and to index, 100,000 at a time):
#: (size, arrival, sent, subject, reply, from, display from, to, display to, cc, message-id,
#: references); strings are already case-mapped (i;ascii-casemap) at delivery.
SortRow = tuple
SIZE, ARRIVAL, SENT, SUBJECT, REPLY, FROM, DISPLAYFROM, TO, DISPLAYTO, CC, MESSAGE_ID, REFERENCES = range(12)

_EMPTY: SortRow = (0, 0.0, 0.0, "", 0, "", "", "", "", "", "", [])

# sort key -> position in the row (RFC 5256 section 3, RFC 5957 section 3)
_KEY_INDEX = {
    "ARRIVAL": ARRIVAL, "DATE": SENT, "SIZE": SIZE, "SUBJECT": SUBJECT, "FROM": FROM, "TO": TO,
    "CC": CC, "DISPLAYFROM": DISPLAYFROM, "DISPLAYTO": DISPLAYTO,
}


def make_row(size: int, arrival: float, keys: list[Any]) -> SortRow:
    """A row from a message's size, INTERNALDATE and stored keys (``SortKeys.stored()``);
    without a usable Date: the sent date is the INTERNALDATE (RFC 5256 section 2.2)."""
    subject, reply, frm, dfrm, to, dto, cc, mid, refs, sent = keys
    return (size, arrival, arrival if sent is None else sent, subject, reply, frm, dfrm, to, dto,
            cc, mid, refs)


class SortData:
    """The per-UID sort rows of one mailbox (shared, like the index it belongs to)."""

    __slots__ = ("rows", "last_uid", "lock", "results")

    def __init__(self) -> None:
        self.rows: dict[int, SortRow] = {}
        self.last_uid = 0
        self.lock = asyncio.Lock()
        # Recent SORT/THREAD answers by (command, matched messages; see _answer_key): webmail
        # repeats the same SORT or THREAD on every page view.
        self.results: OrderedDict[Any, Any] = OrderedDict()

    def cached(self, key: Any) -> Any:
        if key is None:
            return None
        hit = self.results.get(key)
        if hit is not None:
            self.results.move_to_end(key)
        return hit

    def remember(self, key: Any, value: Any) -> None:
        if key is not None:
            self.results[key] = value
            while len(self.results) > RESULT_CACHE:
                self.results.popitem(last=False)

    @classmethod
    async def of(cls, index: MailboxIndex) -> SortData:
        """The index's sort rows, loading what is missing (everything the first time, then
        only UIDs above the highest loaded one: UIDs only grow, RFC 9051 section 2.3.1.1)."""
        data = index.sortdata
        if data is None:
            data = index.sortdata = cls()
        uids = index.uids
        if uids and uids[-1] > data.last_uid:
            async with data.lock:
                if uids and uids[-1] > data.last_uid:
                    await data._load(index)
        return data

    async def _load(self, index: MailboxIndex) -> None:
        snapshots = index.store.sort_snapshots
        key = (SNAPSHOT_FORMAT, index.uidvalidity)
        if self.last_uid == 0:  # after a restart: the rows saved by the last large load
            saved = await asyncio.to_thread(snapshots.read, index.mailbox_id, key)
            if saved is not None:
                self.last_uid, self.rows = saved
        rows = await index.store.sort_rows(index.mailbox_id, self.last_uid + 1)

        def build() -> dict[int, SortRow]:
            return {uid: make_row(size, arrival, keys) for uid, size, arrival, keys in rows}
        new = await _cpu(build, len(rows))
        self.rows.update(new)
        if rows:
            self.last_uid = max(self.last_uid, rows[-1][0])
        # Expunged messages leave rows behind; drop them once they are many.
        if len(self.rows) > 2 * len(index.uids) + 1000:
            keep = set(index.uids)
            self.rows = {u: row for u, row in self.rows.items() if u in keep}
        if len(rows) >= SNAPSHOT_AFTER:  # written in the background: this SORT does not wait
            snapshot = (self.last_uid, dict(self.rows))
            asyncio.get_running_loop().run_in_executor(None, snapshots.write, index.mailbox_id, key, snapshot)

    def row(self, uid: int) -> SortRow:
        return self.rows.get(uid, _EMPTY)


def sort_numbers(rows: list[tuple[int, SortRow]], criteria: tuple[Any, ...]) -> list[int]:
    """The numbers of ``rows`` ((number, row) in mailbox order) sorted by ``criteria``.

    One stable sort per criterion, the last criterion first; the input order (mailbox
    order) is the final tie-break (RFC 5256 section 3). ``reverse=True`` keeps equal items
    in their order, so REVERSE does not reverse the tie-break.
    """
    items = rows
    for crit in reversed(criteria):
        k = _KEY_INDEX[crit.key]
        items = sorted(items, key=lambda item, k=k: item[1][k], reverse=crit.reverse)
    return [n for n, _row in items]


async def matches(s: Session, view: SelectedMailbox, key: Any) -> tuple[list[int], Any]:
    """Sequence numbers matching a search key (SEARCH's own evaluation) and the columns."""
    from .messages import _search_columns
    from .search import needs_details
    from .search import search as run_search

    columns, present = await _search_columns(view, needs_details(key))
    saved = list(s.saved) if s.saved is not None else None
    seqs = await run_search(s.app.store, view.mailbox_id, columns, key, saved=saved,
                            now=datetime.now(timezone.utc), recent=view.recent_predicate())
    if present is not None:  # leave out what was expunged meanwhile (still in the view)
        seqs = [n for n in seqs if n - 1 in present]
    return seqs, columns


async def sorted_seqs(s: Session, view: SelectedMailbox, seqs: list[int], criteria: Any) -> list[int]:
    """``seqs`` (sequence numbers) in the order ``criteria`` give."""
    data = await SortData.of(view.index)
    uids = view.uids[:]

    def run() -> list[int]:
        row = data.row
        return sort_numbers([(n, row(uids[n - 1])) for n in seqs], criteria)
    return await _cpu(run, len(seqs))


async def sorted_uids(s: Session, view: SelectedMailbox, seqs: list[int], criteria: Any) -> list[int]:
    """The UIDs of ``seqs`` (sequence numbers) in the order ``criteria`` give."""
    uids = view.uids
    return [uids[n - 1] for n in await sorted_seqs(s, view, seqs, criteria)]


def _answer_key(what: Any, seqs: list[int], uids: Any) -> bytes:
    """What a SORT or THREAD answer depends on besides the immutable sort keys: the command
    (``what``), the matched messages' sequence numbers and their UIDs. A digest of those is
    the cache key (flag changes that leave the matched set alone, e.g. \\Seen under ALL,
    keep the answer; arrivals and expunges do not)."""
    h = hashlib.blake2b(repr(what).encode(), digest_size=16)
    h.update(array("I", seqs).tobytes())
    h.update(array("I", [uids[n - 1] for n in seqs]).tobytes())
    return h.digest()


async def _matches(s: Session, view: SelectedMailbox, cmd: c.Sort | c.Thread) -> tuple[list[int], Any]:
    """Sequence numbers matching the command's search key (SEARCH's own evaluation)."""
    from .messages import _uses_modseq

    if cmd.charset not in CHARSETS:
        # RFC 5256 section 3: US-ASCII and UTF-8 must be implemented, others are optional.
        raise Refused(f"Charset {cmd.charset} is not supported", Code.badcharset(CHARSETS))
    if _uses_modseq(cmd.key):
        s.enable_condstore()
    seqs, columns = await matches(s, view, cmd.key)
    return seqs, columns


async def do_sort(s: Session, tag: bytes, cmd: c.Sort) -> bytes:
    from . import context
    from .messages import _uses_modseq, _view

    view = _view(s)
    verb = "UID SORT" if cmd.uid else "SORT"
    context.check_tag(s, tag, cmd.return_options)
    seqs, columns = await _matches(s, view, cmd)
    data = await SortData.of(view.index)
    uids = view.uids
    cache = _answer_key(("SORT", cmd.criteria), seqs, uids)
    hit = data.cached(cache)
    if hit is not None:
        ordered, ordered_uids = hit
    else:
        ordered = await sorted_seqs(s, view, seqs, cmd.criteria)
        ordered_uids = [uids[n - 1] for n in ordered]
        data.remember(cache, (ordered, ordered_uids))
    numbers = ordered_uids if cmd.uid else ordered
    modseq = None
    if seqs and _uses_modseq(cmd.key):
        modseq = max(columns.modseqs[n - 1] for n in seqs)
    options = cmd.return_options
    if options is None:
        s.send(r.sort(numbers) if modseq is None else r.sort(numbers)[:-2] + b" (MODSEQ %d)\r\n" % modseq)
        return r.ok(tag, f"{verb} completed")
    # ESORT (RFC 5267 section 3.1): results in an ESEARCH response, in sort order.
    s.send(context.result(tag, cmd.uid, options, numbers, modseq, cmd.partial, ordered=True))
    if "UPDATE" in options:
        context.register(s, tag, cmd.uid, cmd.key, cmd.criteria, ordered_uids)
    return r.ok(tag, f"{verb} completed")


async def do_thread(s: Session, tag: bytes, cmd: c.Thread) -> bytes:
    from .messages import _view

    view = _view(s)
    verb = "UID THREAD" if cmd.uid else "THREAD"
    seqs, _columns = await _matches(s, view, cmd)
    data = await SortData.of(view.index)
    cache = _answer_key(("THREAD", cmd.algorithm, cmd.uid), seqs, view.uids)
    hit = data.cached(cache)
    if hit is not None:
        s.send(r.thread(hit))
        return r.ok(tag, f"{verb} completed")
    uids = view.uids[:]
    algorithm = orderedsubject if cmd.algorithm == "ORDEREDSUBJECT" else references

    def run() -> bytes:
        msgs = []
        for n in seqs:
            uid = uids[n - 1]
            row = data.row(uid)
            msgs.append(ThreadMessage(uid if cmd.uid else n, row[SENT], row[SUBJECT], bool(row[REPLY]),
                                      row[MESSAGE_ID], row[REFERENCES]))
        return format_threads(algorithm(msgs))
    text = await _cpu(run, len(seqs))
    data.remember(cache, text)
    s.send(r.thread(text))
    return r.ok(tag, f"{verb} completed")
