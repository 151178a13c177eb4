"""The selected-mailbox view of one IMAP session, over a shared per-mailbox index.

Two layers (the shape of Dovecot's index files, kept in memory):

``MailboxIndex`` (one per open mailbox, shared by every session that has it selected, from
`IndexRegistry`): the current (uid, flag bits, keywords, modseq) of every message as compact
arrays in UID order, plus UIDVALIDITY / UIDNEXT / HIGHESTMODSEQ. It is loaded once with
``Store.flag_index`` (the sizes and internal dates, immutable, with ``Store.message_details``
the first time a FETCH or SEARCH needs them: ``details()``) and then kept current from its own event-bus subscription
(``refresh()`` applies the queued MessagesAdded / FlagsChanged / MessagesExpunged events;
only new messages cost a query). Applying events is idempotent (modseq comparisons, UIDs
only grow), so the subscription is taken *before* the snapshot is read and an event that is
already in the snapshot changes nothing.

Several worker processes: every change to a mailbox takes the next MODSEQ of that mailbox, in
the database transaction (store/messages.py), so a mailbox's changes are numbered 1, 2, 3...
in commit order. Another worker's event may arrive after a later one made here; the index sees
the hole (an event numbered above HIGHESTMODSEQ + 1) and reads what it missed from the
database (``Store.index_delta``: rows and tombstones above its HIGHESTMODSEQ) before applying
anything further, then tells this process's sessions about the flag changes and expunges it
found (``EventBus.publish_local``). The late event, when it comes, changes nothing. So the index
never shows a HIGHESTMODSEQ with an older change missing, and UIDs only ever join at the end.

``SelectedMailbox`` (per session): what this client has been told -- the sequence-number ->
UID map (``uids``, an array, ascending) -- and its own subscription to the mailbox. ``sync``
turns the changes other sessions (and deliveries) made into the untagged responses RFC 9051
section 5.2 / 7.4 asks for:

* new messages: the view grows by every index UID above its last one -> ``* n EXISTS``;
* flag changes made elsewhere -> ``* seq FETCH (UID u FLAGS (...) [MODSEQ (m)])``; changes
  this session made itself (``origin``) were already answered by its STORE/FETCH;
* expunges -> ``* seq EXPUNGE`` (highest first, so each number is valid when sent) or, with
  QRESYNC enabled, ``* VANISHED uids`` -- but only when the command allows it. RFC 9051
  section 7.5.1: no EXPUNGE while answering FETCH, STORE or SEARCH (the UID forms are fine)
  nor when no command is in progress. Until then the expunged UIDs stay in ``uids`` (the
  sequence numbers the client knows stay valid) and are listed in ``pending_expunge``;
  FETCH of flags, size or date still answers for them from the index's ``departed`` memory
  (RFC 2180 4.1.1, as Dovecot does), of anything else returns nothing (EXPUNGEISSUED).

Invariants: ``uids`` is strictly ascending; ``len(uids)`` is the last EXISTS the client was
sent; every UID in ``uids`` is either in the index or in ``pending_expunge``.
"""

from __future__ import annotations

import asyncio
import logging
from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, NamedTuple

from ...protocols.imap import responses as r
from ...protocols.imap.grammar.sequence_set import SequenceSet
from ...store.records import FLAG_NAMES
from ...store import (
    FlagsChanged, Mailbox, MessagesAdded, MessagesExpunged, NotFound, Store, bits_to_flags,
)

__all__ = ["MailboxIndex", "IndexRegistry", "SelectedMailbox"]

#: Released indexes kept warm (still following events) for a quick re-SELECT.
log = logging.getLogger(__name__)
KEEP_WARM = 8
#: Above this many removals at once, arrays are rebuilt instead of deleted from in place.
_REBUILD_AT = 64
#: Change events queued for one SELECTed session (a client silent for up to 30 minutes while
#: mail arrives) and for a mailbox index (kept warm, or followed by silent sessions only). Past
#: that, events are dropped and the session resynchronises from the index, the index from the
#: database: memory stays bounded and the client still hears every EXPUNGE and flag change.
SESSION_QUEUE_LIMIT = 1000
INDEX_QUEUE_LIMIT = 10000
#: Expunged messages whose last flags, size and date an index remembers (see ``departed``).
DEPARTED_KEEP = 4096


class Departed(NamedTuple):
    """What a session may still report of a message expunged elsewhere (RFC 2180 4.1.1)."""

    bits: int
    keywords: str
    modseq: int
    size: int | None
    date: float | None
    zone: int = 0  # of ``date``, minutes east of UTC


class MailboxIndex:
    """The current flags of every message of one mailbox (shared; see module docstring)."""

    __slots__ = ("store", "bus", "mailbox_id", "sub", "uids", "bits", "modseqs", "keywords", "sizes", "dates",
                 "zones", "uidvalidity", "uidnext", "highestmodseq", "lock", "users", "gone", "removals", "sortdata",
                 "recent_claimed", "kwset", "departed")

    def __init__(self, store: Store, bus: Any, mailbox_id: int) -> None:
        self.store = store
        self.bus = bus
        self.mailbox_id = mailbox_id
        self.sub = bus.subscribe(mailbox_id=mailbox_id, limit=INDEX_QUEUE_LIMIT)
        self.uids = array("I")
        self.bits = bytearray()
        self.modseqs = array("Q")
        self.keywords: dict[int, str] = {}
        # every keyword any message here has had since the index was loaded (only grows): what
        # sessions compare with the FLAGS they announced (RFC 3501 7.2.6)
        self.kwset: set[str] = set()
        # RFC822.SIZE and INTERNALDATE (the instant, and the zone it was given in: minutes east
        # of UTC), aligned with ``uids``; None until ``details()``.
        self.sizes: array | None = None
        self.dates: array | None = None
        self.zones: array | None = None
        self.uidvalidity = 0
        self.uidnext = 1
        self.highestmodseq = 0
        self.lock = asyncio.Lock()
        self.users = 0
        self.gone = False  # the mailbox was deleted
        self.removals = 0  # bumped whenever messages leave the arrays (positions shift)
        self.sortdata: Any = None  # sort.SortData, loaded by the first SORT/THREAD
        # every UID below this is known to be claimed as \Recent by some session already (a
        # lower bound of the mailbox's ``recent_uid``): new mail below it needs no claim query
        self.recent_claimed = 0
        # the last state of messages that left the arrays (the newest DEPARTED_KEEP):
        # sessions not yet told of an expunge still answer FETCH for them from it
        self.departed: OrderedDict[int, Departed] = OrderedDict()

    async def load(self) -> None:
        box, uids, bits, modseqs, keywords = await self.store.flag_index(self.mailbox_id)
        if box is None:
            raise NotFound("mailbox is gone")
        self.uids, self.bits, self.modseqs, self.keywords = uids, bits, modseqs, keywords
        self.kwset = {k for kws in keywords.values() for k in kws.split()}
        self.uidvalidity = box.uidvalidity
        self.uidnext = max(box.uidnext, (uids[-1] + 1) if uids else 1)
        self.highestmodseq = box.highestmodseq

    def close(self) -> None:
        self.sub.close()

    async def details(self) -> None:
        """Load ``sizes`` and ``dates`` (once; afterwards `refresh` keeps them aligned)."""
        if self.sizes is not None:
            return
        async with self.lock:
            if self.sizes is not None:
                return
            await self._drain()
            uids, sizes, dates, zones = await self.store.message_details(self.mailbox_id)
            # The lock keeps `_apply` out, so ``self.uids`` did not change meanwhile; the
            # snapshot may be newer (more messages, fewer): a size and a date never change, so
            # align by UID. A message expunged from the table but still here gets zeros: it is
            # invisible to FETCH and SEARCH anyway.
            if uids != self.uids:
                at = {u: k for k, u in enumerate(uids)}
                pos = [at.get(u, -1) for u in self.uids]
                sizes = array("Q", [sizes[k] if k >= 0 else 0 for k in pos])
                dates = array("d", [dates[k] if k >= 0 else 0.0 for k in pos])
                zones = array("h", [zones[k] if k >= 0 else 0 for k in pos])
            self.sizes, self.dates, self.zones = sizes, dates, zones

    def _remember_departed(self, positions: list[int]) -> None:
        sized = self.sizes is not None and self.dates is not None and self.zones is not None
        for i in positions:
            uid = self.uids[i]
            self.departed[uid] = Departed(self.bits[i], self.keywords.get(uid, ""), self.modseqs[i],
                                          self.sizes[i] if sized else None,  # type: ignore[index]
                                          self.dates[i] if sized else None,  # type: ignore[index]
                                          self.zones[i] if sized else 0)  # type: ignore[index]
        while len(self.departed) > DEPARTED_KEEP:
            self.departed.popitem(last=False)

    # -- lookups -------------------------------------------------------------------------------
    def position(self, uid: int) -> int:
        """Index of ``uid`` in the arrays, or -1."""
        i = bisect_left(self.uids, uid)
        return i if i < len(self.uids) and self.uids[i] == uid else -1

    def flags_of(self, i: int) -> list[str]:
        return bits_to_flags(self.bits[i], self.keywords.get(self.uids[i], ""))

    def keywords_in_use(self) -> list[str]:
        return sorted(self.kwset)

    # -- staying current -----------------------------------------------------------------------
    async def refresh(self) -> None:
        """Apply every queued change event (cheap when there is none)."""
        if self.sub.queue.empty() and not self.sub.overflowed and not self.lock.locked():
            return
        async with self.lock:
            await self._drain()

    async def _drain(self) -> None:
        """Apply the queued events, or resynchronise if some were dropped (with the lock)."""
        while self.sub.overflowed or not self.sub.queue.empty():
            if self.sub.take_overflow():
                await self._resync()
            else:
                await self._apply(self.sub.pending())

    async def catch_up(self, account_id: int) -> None:
        """Read what other worker processes committed whose events are still on their way, so
        a SELECT made after another session's APPEND or STORE was answered shows it (one
        indexed query; nothing to apply in the usual case)."""
        async with self.lock:
            await self._drain()
            await self._catch_up(account_id)

    async def _resync(self) -> None:
        """Events were dropped (the queue was full): read every change above our HIGHESTMODSEQ
        from the database instead, and whether the mailbox still exists."""
        box = await self.store.get_mailbox_by_id(self.mailbox_id)
        if box is None or box.uidvalidity != self.uidvalidity:
            self.gone = True
            self._remove(list(self.uids))
            return
        await self._catch_up(box.account_id)

    def _append(self, meta: Any) -> None:
        """Add a message above every UID held (UIDs only grow: RFC 9051 section 2.3.1.1)."""
        self.uids.append(meta.uid)
        self.bits.append(meta.flags & 0xFF)
        self.modseqs.append(meta.modseq)
        if self.sizes is not None and self.dates is not None and self.zones is not None:
            self.sizes.append(meta.size)
            self.dates.append(meta.internal_date)
            self.zones.append(meta.internal_zone)
        if meta.keywords:
            self.keywords[meta.uid] = meta.keywords
            self.kwset.update(meta.keywords.split())

    def _missed(self, events: list[Any]) -> bool:
        """True when the events skip a MODSEQ: a change committed before them is not here yet."""
        expected = self.highestmodseq
        for event in events:
            if isinstance(event, FlagsChanged):
                modseq = max((c[3] for c in event.changes), default=0)
            elif isinstance(event, (MessagesAdded, MessagesExpunged)):
                modseq = event.modseq
            else:
                continue
            if modseq > expected + 1:
                return True
            expected = max(expected, modseq)
        return False

    async def _catch_up(self, account_id: int) -> None:
        """Read every change above our HIGHESTMODSEQ from the database (see module docstring)."""
        highest, changed, vanished = await self.store.index_delta(self.mailbox_id, self.highestmodseq)
        told: list[Any] = []
        if vanished:
            gone = [uid for uid, _ in vanished if self.position(uid) >= 0]
            if gone:
                self._remove(gone)
                told.append(MessagesExpunged(account_id, self.mailbox_id, tuple(gone), max(m for _, m in vanished)))
        flags = []
        for meta in changed:
            i = self.position(meta.uid)
            if i >= 0:
                if meta.modseq > self.modseqs[i]:
                    self.bits[i] = meta.flags & 0xFF
                    self.modseqs[i] = meta.modseq
                    if meta.keywords:
                        self.keywords[meta.uid] = meta.keywords
                        self.kwset.update(meta.keywords.split())
                    else:
                        self.keywords.pop(meta.uid, None)
                    flags.append((meta.uid, meta.flags, meta.keywords, meta.modseq))
            elif not self.uids or meta.uid > self.uids[-1]:
                self._append(meta)
                self.uidnext = max(self.uidnext, meta.uid + 1)
        if flags:
            told.append(FlagsChanged(account_id, self.mailbox_id, tuple(flags)))
        self.highestmodseq = max(self.highestmodseq, highest)
        if told:
            self.bus.publish_local(told)

    async def _apply(self, events: list[Any]) -> None:
        if self._missed(events):
            await self._catch_up(events[0].account_id)
        last = self.uids[-1] if self.uids else 0
        loaded: dict[int, Any] = {}
        new: list[int] = []
        caught_up = self.highestmodseq
        for e in events:
            if isinstance(e, MessagesAdded):
                if e.modseq <= caught_up:
                    continue  # already read from the database (a late event): it may be expunged since
                if e.metas:  # the event carries what the index keeps: nothing to read back
                    loaded.update((m.uid, m) for m in e.message_metas() if m.uid > last)
                else:
                    new.extend(u for u in e.uids if u > last)
        if new:
            loaded.update((m.uid, m) for m in await self.store.get_messages(self.mailbox_id, new))
        for event in events:
            if isinstance(event, MessagesAdded):
                for uid in event.uids:
                    meta = loaded.get(uid)
                    if meta is not None and (not self.uids or uid > self.uids[-1]):
                        self._append(meta)
                    self.uidnext = max(self.uidnext, uid + 1)
                self.highestmodseq = max(self.highestmodseq, event.modseq)
            elif isinstance(event, FlagsChanged):
                for uid, bits, kw, modseq in event.changes:
                    i = self.position(uid)
                    if i >= 0 and modseq > self.modseqs[i]:
                        self.bits[i] = bits & 0xFF
                        self.modseqs[i] = modseq
                        if kw:
                            self.keywords[uid] = kw
                            self.kwset.update(kw.split())
                        else:
                            self.keywords.pop(uid, None)
                    self.highestmodseq = max(self.highestmodseq, modseq)
            elif isinstance(event, MessagesExpunged):
                self._remove(event.uids)
                if event.modseq == 0:  # the mailbox itself was deleted (Store.delete_mailbox)
                    self.gone = True
                self.highestmodseq = max(self.highestmodseq, event.modseq)

    def _remove(self, uids: Iterable[int]) -> None:
        positions = sorted({i for i in map(self.position, uids) if i >= 0}, reverse=True)
        if not positions:
            return
        self.removals += 1
        self._remember_departed(positions)
        if len(positions) > _REBUILD_AT:
            drop = set(positions)
            keep = [i for i in range(len(self.uids)) if i not in drop]
            self.uids = array("I", [self.uids[i] for i in keep])
            self.bits = bytearray(self.bits[i] for i in keep)
            self.modseqs = array("Q", [self.modseqs[i] for i in keep])
            if self.sizes is not None and self.dates is not None and self.zones is not None:
                self.sizes = array("Q", [self.sizes[i] for i in keep])
                self.dates = array("d", [self.dates[i] for i in keep])
                self.zones = array("h", [self.zones[i] for i in keep])
        else:
            sized = self.sizes is not None and self.dates is not None and self.zones is not None
            for i in positions:
                del self.uids[i]
                del self.bits[i]
                del self.modseqs[i]
                if sized:
                    del self.sizes[i]  # type: ignore[union-attr]
                    del self.dates[i]  # type: ignore[union-attr]
                    del self.zones[i]  # type: ignore[union-attr]
        for uid in uids:
            self.keywords.pop(uid, None)


class IndexRegistry:
    """Hands out the shared `MailboxIndex` of a mailbox; keeps a few released ones warm."""

    def __init__(self, store: Store, bus: Any) -> None:
        self.store = store
        self.bus = bus
        self._open: dict[int, MailboxIndex] = {}
        self._warm: OrderedDict[int, MailboxIndex] = OrderedDict()
        self._loading: dict[int, asyncio.Future[MailboxIndex]] = {}

    async def acquire(self, mailbox: Mailbox) -> MailboxIndex:
        """The index of ``mailbox``, loading it if needed. An index whose UIDVALIDITY differs
        from the mailbox row's belongs to a deleted mailbox whose id was reused: it is
        never handed out again (UIDVALIDITY values are never reused)."""
        mailbox_id = mailbox.id
        index = self._open.get(mailbox_id)
        if index is not None and index.uidvalidity != mailbox.uidvalidity:
            del self._open[mailbox_id]  # its remaining users keep it until they release it
            index = None
        if index is None:
            index = self._warm.pop(mailbox_id, None)
            if index is not None and index.uidvalidity != mailbox.uidvalidity:
                index.close()
                index = None
        if index is None:
            pending = self._loading.get(mailbox_id)
            if pending is not None:
                index = await asyncio.shield(pending)
            else:
                future: asyncio.Future[MailboxIndex] = asyncio.get_running_loop().create_future()
                self._loading[mailbox_id] = future
                index = MailboxIndex(self.store, self.bus, mailbox_id)
                try:
                    await index.load()
                except BaseException as exc:
                    index.close()
                    future.set_exception(exc)
                    future.exception()  # retrieved: no "never retrieved" warning
                    raise
                finally:
                    del self._loading[mailbox_id]
                future.set_result(index)
        index = self._open.setdefault(mailbox_id, index)
        index.users += 1
        return index

    def peek(self, mailbox: Mailbox) -> MailboxIndex | None:
        """The loaded (open or warm) index of ``mailbox``, or None; never loads one."""
        index = self._open.get(mailbox.id)
        if index is None:
            index = self._warm.get(mailbox.id)
        if index is None or index.gone or index.uidvalidity != mailbox.uidvalidity:
            return None
        return index

    def touch(self, mailbox: Mailbox) -> bool:
        """True if ``mailbox``'s index is loaded (a warm one becomes the most recently used)."""
        if self.peek(mailbox) is None:
            return False
        if mailbox.id in self._warm:
            self._warm.move_to_end(mailbox.id)
        return True

    async def prewarm(self, mailbox: Mailbox) -> None:
        """Load a mailbox's index into the warm set ahead of its SELECT (INBOX, right after a
        login: nearly every client selects it next), so the SELECT itself finds it ready."""
        try:
            self.release(await self.acquire(mailbox))
        except Exception:  # noqa: BLE001 - only an optimisation; SELECT loads it again
            log.debug("prewarming mailbox %s failed", mailbox.id, exc_info=True)

    def release(self, index: MailboxIndex) -> None:
        index.users -= 1
        if index.users > 0:
            return
        if self._open.get(index.mailbox_id) is not index or index.gone:
            if self._open.get(index.mailbox_id) is index:
                del self._open[index.mailbox_id]
            index.close()
            return
        del self._open[index.mailbox_id]
        self._warm[index.mailbox_id] = index
        while len(self._warm) > KEEP_WARM:
            _, old = self._warm.popitem(last=False)
            old.close()

    def close(self) -> None:
        for index in [*self._open.values(), *self._warm.values()]:
            index.close()
        self._open.clear()
        self._warm.clear()


class SelectedMailbox:
    """One session's view of its selected mailbox (see module docstring)."""

    __slots__ = ("mailbox", "name", "readonly", "index", "sub", "uids", "pending_expunge",
                 "pending_flags", "held", "recent", "rev1", "announced", "synced_modseq")

    def __init__(self, mailbox: Mailbox, name: str, readonly: bool, index: MailboxIndex, sub: Any) -> None:
        self.mailbox = mailbox
        self.name = name
        self.readonly = readonly
        self.index = index
        self.sub = sub
        self.uids = array("I")
        self.pending_expunge: set[int] = set()
        self.pending_flags: set[int] = set()
        self.held: list[Any] = []  # events taken off the queue while waiting in IDLE
        # \Recent (RFC 3501 2.3.2), for IMAP4rev1 sessions only (``rev1``; RFC 9051 dropped
        # it): the half-open UID ranges this session sees as recent. A read-write session
        # claims them in the store (`claim_recent`), so no other session gets them; a
        # read-only one claims nothing and shows everything not claimed yet.
        self.recent: list[tuple[int, int]] = []
        self.rev1 = False
        self.announced: set[str] = set()  # the keywords the last FLAGS response listed
        # the index's HIGHESTMODSEQ when this view last took in every change event: after an
        # overflow, every message changed above it gets its flags sent again
        self.synced_modseq = 0

    @classmethod
    async def open(cls, registry: IndexRegistry, bus: Any, mailbox: Mailbox, name: str,
                   readonly: bool) -> SelectedMailbox:
        # before the snapshot: nothing is missed
        sub = bus.subscribe(mailbox_id=mailbox.id, limit=SESSION_QUEUE_LIMIT)
        try:
            index = await registry.acquire(mailbox)
        except BaseException:
            sub.close()
            raise
        view = cls(mailbox, name, readonly, index, sub)
        try:
            if bus.shared:
                await index.catch_up(mailbox.account_id)
            await index.refresh()
            while not index.sub.queue.empty() or index.sub.overflowed:
                await index.refresh()
        except BaseException:
            view.close(registry)
            raise
        # No await from here on: the copy and the discarded events describe the same moment.
        view.uids = array("I", index.uids)
        view.synced_modseq = index.highestmodseq
        sub.pending()
        sub.overflowed = False
        return view

    def close(self, registry: IndexRegistry) -> None:
        self.sub.close()
        registry.release(self.index)

    @property
    def exists(self) -> int:
        return len(self.uids)

    @property
    def mailbox_id(self) -> int:
        return self.mailbox.id

    # -- numbers -------------------------------------------------------------------------------
    def seq_of(self, uid: int) -> int:
        """Sequence number of ``uid`` (0 when the client does not know it)."""
        i = bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else 0

    def resolve(self, seqset: SequenceSet, uid: bool, saved: list[int] | None) -> list[int]:
        """Positions (0-based) in ``uids`` of the messages a sequence set names.

        Sequence numbers above EXISTS raise ValueError (the caller answers BAD); UIDs that
        do not exist are ignored (RFC 9051 6.4.9). ``$`` (RFC 5182) is the saved UIDs."""
        uids = self.uids
        if seqset.saved:
            if not saved:
                return []
            out = []
            for u in saved:
                i = bisect_left(uids, u)
                if i < len(uids) and uids[i] == u:
                    out.append(i)
            return out
        out = []
        if uid:
            star = uids[-1] if uids else 0
            for lo, hi in seqset.ranges(star):
                out.extend(range(bisect_left(uids, lo), bisect_right(uids, hi)))
            return out
        n = len(uids)
        for lo, hi in seqset.ranges(n):
            if hi > n:
                raise ValueError(f"message {hi} does not exist (the mailbox has {n} messages)")
            out.extend(range(lo - 1, hi))
        return out

    # -- FLAGS ---------------------------------------------------------------------------------
    def flags_lines(self) -> list[bytes]:
        """``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` for the keywords of the mailbox."""
        self.announced = set(self.index.kwset)
        keywords = sorted(self.announced)
        system = [name for _, name in FLAG_NAMES]
        out = [r.flags(system + keywords)]
        if not self.readonly:
            out.append(r.untagged_ok("Flags permitted", r.Code.permanentflags(system + keywords)))
        return out

    def new_keywords(self) -> list[bytes]:
        """RFC 3501 7.2.6: a keyword no FLAGS response has listed yet (set by STORE, COPY,
        APPEND or another session) is announced with FLAGS (and PERMANENTFLAGS) before any
        FETCH shows it. Cheap when nothing is new: the index's keyword set only grows."""
        if len(self.index.kwset) == len(self.announced):
            return []
        return self.flags_lines()

    # -- \Recent ------------------------------------------------------------------------------
    async def start_recent(self) -> None:
        """At SELECT/EXAMINE of an IMAP4rev1 session: claim (read-write) or look at (read-only)
        the messages not claimed as recent yet."""
        self.rev1 = True
        store, index = self.index.store, self.index
        if self.readonly:
            first = await store.first_unclaimed_uid(self.mailbox_id)
            self.recent = [(first, 1 << 32)]  # later arrivals too: nobody claims for this view
        elif self.uids:
            await self._claim(self.uids[-1] + 1)

    async def _claim(self, upto: int) -> None:
        index = self.index
        try:
            if not index.recent_claimed:
                # first claim through this index: a read (no write lock) settles the usual
                # SELECT of a mailbox without new mail
                index.recent_claimed = await index.store.first_unclaimed_uid(self.mailbox_id)
            if upto <= index.recent_claimed:
                return  # claimed already (by a session of this process, or before)
            first = await index.store.claim_recent(self.mailbox_id, upto)
        except NotFound:
            return  # the mailbox was deleted meanwhile; the sync reports that
        except Exception:  # noqa: BLE001 - a busy database must not cost the session its updates
            log.warning("claiming \\Recent in mailbox %s failed", self.mailbox_id, exc_info=True)
            return
        self.claimed(first, upto)

    @property
    def claims_recent(self) -> bool:
        """Whether new messages here become this session's \\Recent ones (a read-write
        IMAP4rev1 view): its APPENDs claim them as they commit (do_append)."""
        return self.rev1 and not self.readonly

    def claimed(self, first: int, upto: int) -> None:
        """The UIDs in [first, upto) were claimed as \\Recent for this view (``first``: the
        mailbox's ``recent_uid`` before the claim)."""
        index = self.index
        index.recent_claimed = max(index.recent_claimed, upto, first)
        if upto > first:
            if self.recent and self.recent[-1][1] == first:
                self.recent[-1] = (self.recent[-1][0], upto)
            else:
                self.recent.append((first, upto))

    def stop_recent(self) -> None:
        """ENABLE IMAP4rev2 while selected: no \\Recent from now on (RFC 9051)."""
        self.rev1 = False
        self.recent = []

    def is_recent(self, uid: int) -> bool:
        for lo, hi in self.recent:
            if lo <= uid < hi:
                return True
        return False

    def recent_predicate(self) -> Any:
        """``uid -> bool`` for FETCH FLAGS and SEARCH RECENT, or None when nothing is recent."""
        return self.is_recent if self.recent else None

    def recent_count(self) -> int:
        """How many messages of the view are recent (``* n RECENT``)."""
        uids = self.uids
        return sum(bisect_left(uids, hi) - bisect_left(uids, lo) for lo, hi in self.recent)

    # -- change delivery -----------------------------------------------------------------------
    async def wait(self) -> None:
        """Wait until a change event for this mailbox arrives (IDLE)."""
        self.held.append(await self.sub.queue.get())

    def quiet(self) -> bool:
        """True when `sync` has nothing to do: no queued event here or in the index, nothing
        pending, no message the client has not been told about (checked without awaiting)."""
        index = self.index
        if (self.held or self.pending_expunge or self.pending_flags or not self.sub.queue.empty()
                or self.sub.overflowed or not index.sub.queue.empty() or index.sub.overflowed
                or index.lock.locked()):
            return False
        iu = index.uids
        return not iu or (bool(self.uids) and iu[-1] <= self.uids[-1])

    async def sync(self, session: object, *, allow_expunge: bool, qresync: bool,
                   condstore: bool) -> list[bytes]:
        """Untagged responses for everything that changed since the last sync."""
        index = self.index
        await index.refresh()
        # No await from here to the end of the event loop below: the index and the queue
        # describe the same moment.
        if self.sub.take_overflow():
            self.held = []
            events: list[Any] = []
            self._resync_from_index()
        else:
            events = self.held + self.sub.pending()
            self.held = []
        self.synced_modseq = index.highestmodseq
        out: list[bytes] = self.new_keywords()  # before any FETCH shows a new keyword
        uids = self.uids
        last = uids[-1] if uids else 0
        for event in events:
            if isinstance(event, FlagsChanged):
                if event.origin is not session:
                    self.pending_flags.update(c[0] for c in event.changes if c[0] <= last)
            elif isinstance(event, MessagesExpunged):
                for uid in event.uids:
                    if uid <= last and self.seq_of(uid):
                        self.pending_expunge.add(uid)
        if allow_expunge and self.pending_expunge:
            out.extend(self._deliver_expunges(qresync))
        uids = self.uids
        last = uids[-1] if uids else 0
        start = bisect_right(index.uids, last)
        if start < len(index.uids):
            uids.extend(index.uids[start:])
            out.append(r.exists(len(uids)))
            if self.rev1:
                # RFC 3501 7.3.2: RECENT follows a change of the mailbox's size; the new mail
                # is this session's if no other session claimed it first (2.3.2)
                if not self.readonly:
                    await self._claim(uids[-1] + 1)
                out.append(r.recent(self.recent_count()))
        if self.pending_flags:
            for uid in sorted(self.pending_flags):
                if uid in self.pending_expunge:
                    continue
                seq, i = self.seq_of(uid), index.position(uid)
                if seq and i >= 0:
                    out.append(self.flags_response(seq, i, uid=True, modseq=condstore))
            self.pending_flags.clear()
        return out

    def _resync_from_index(self) -> None:
        """The session's queue overflowed: the events are gone, so compare what the client
        was told with the index instead. Messages it knows that the index no longer has are
        expunged; messages changed since the last sync get their flags again (possibly some
        the client already has: an extra FETCH is harmless, a missing one is not)."""
        index = self.index
        for uid in self.uids:
            i = index.position(uid)
            if i < 0:
                self.pending_expunge.add(uid)
            elif index.modseqs[i] > self.synced_modseq:
                self.pending_flags.add(uid)
        log.info("IMAP session on mailbox %d fell behind; resynchronised from the index", self.mailbox_id)

    def _deliver_expunges(self, qresync: bool) -> list[bytes]:
        gone = self.pending_expunge
        self.pending_expunge = set()
        positions = sorted((self.seq_of(u) - 1 for u in gone if self.seq_of(u)), reverse=True)
        if not positions:
            return []
        if qresync:
            out = [r.vanished(self.uids[i] for i in positions)]
        else:
            out = [r.expunge(i + 1) for i in positions]
        if len(positions) > _REBUILD_AT:
            self.uids = array("I", [u for u in self.uids if u not in gone])
        else:
            for i in positions:
                del self.uids[i]
        self.pending_flags.difference_update(gone)
        return out

    def flags_response(self, seq: int, i: int, *, uid: bool, modseq: bool) -> bytes:
        """``* seq FETCH (UID u FLAGS (...) MODSEQ (m))`` from the index entry ``i``."""
        index = self.index
        u = index.uids[i]
        items = []
        if uid:
            items.append(b"UID %d" % u)
        flags = bits_to_flags(index.bits[i], index.keywords.get(u, ""))
        if self.recent and self.is_recent(u):
            flags.insert(0, "\\Recent")
        items.append(b"FLAGS " + r.flag_list(flags))
        if modseq:
            items.append(b"MODSEQ (%d)" % index.modseqs[i])
        return b"* %d FETCH (%s)\r\n" % (seq, b" ".join(items))
