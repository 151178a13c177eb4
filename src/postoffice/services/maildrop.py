"""The POP3 maildrop: one lock per address, the snapshot taken at login, the POP policy at QUIT.

The maildrop is the account's INBOX (RFC 1939 §8 leaves its shape to the server).

Lock
    `MaildropService.open` takes an exclusive lock on the account before it snapshots INBOX
    (RFC 1939 §8: "exclusive-access lock on the maildrop"); a second POP3 session of the same
    address, on 110 or 995, gets ``-ERR [IN-USE]`` (RFC 2449 §8.1.1) until the first one ends.
    The lock is keyed by account id and released by `release` whatever way the session ends:
    QUIT, a dropped connection, an inactivity timeout, an administrator switching POP3 off, or
    the server shutting down. With several worker processes it is also taken on the shared event
    bus (``EventBus.try_lock``: the supervisor's hub holds it for the worker's connection), so a
    session on another worker gets [IN-USE] too; a crashed worker holds no stale lock (the hub
    drops its locks when its connection closes). IMAP is never locked out: it works beside POP3
    at any time.

Snapshot
    Taken once at login: (uid, size, blob id) of the INBOX messages POP3 may offer, in UID
    order, numbered 1..n for the whole session. The UIDL unique-id is ``<uidvalidity>.<uid>`` of
    INBOX: UIDs never repeat within a UIDVALIDITY, so the value is stable for the life of the
    message and identical across sessions and ports (RFC 1939 §7). Carrying the blob id lets
    RETR go straight to the message file without a database round trip. Messages are left out
    when they were *retired* (see below) or, when the address has "only messages that arrive
    from now on" (``Account.pop3_since``), when they were saved to INBOX before that time.

Commit (UPDATE state, RFC 1939 §6)
    Only QUIT in TRANSACTION commits; DELE only marks. The address's POP3 policy, read fresh at
    QUIT, says what "deleted by the POP3 client" means (like Gmail's POP settings):

    ==========  ========================================================================
    delete      expunge from INBOX (the default; IMAP sessions see EXPUNGE / VANISHED)
    keep        leave the message untouched in INBOX for IMAP and webmail, retired from POP3
    mark-read   set \\Seen (IMAP sessions see the flag change), retired from POP3
    trash       move to the \\Trash folder (created if missing)
    archive     move to the \\Archive folder (created if missing)
    ==========  ========================================================================

    Each policy is one database transaction. A retired message is recorded in
    ``pop3_retired`` (store migration 2) so the next POP3 session does not offer it again:
    otherwise a client that "deletes after download" would download it on every poll. Moving
    a retired message within IMAP to another folder and back gives it a new UID, and POP3
    offers it again, which is what a user doing that expects. Messages that vanished during
    the session (expunged or moved over IMAP) are skipped silently: QUIT never fails for them.
    If a Trash/Archive folder can neither be found nor created (or the policy value is not
    one of these), the message is kept and retired instead: a policy never loses mail.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import weakref
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

from ..store import Account, Mailbox, Store, StoreError

log = logging.getLogger(__name__)

#: Read-ahead for sequential RETR/TOP: how many messages and octets one disk read may cover.
READ_AHEAD_MESSAGES = 32
READ_AHEAD_BYTES = 2 << 20

_FOLDERS = {"trash": ("\\Trash", "Trash"), "archive": ("\\Archive", "Archive")}


class _Later(enum.Enum):
    LATER = "LATER"


LATER: Final = _Later.LATER


class MaildropBusy(Exception):
    """Another POP3 session holds this address's maildrop."""


class DropMessage(NamedTuple):
    """One message of the snapshot (a tuple: a 10,000-message login builds 10,000 of them)."""

    uidl: str  # "<uidvalidity>.<uid>"
    uid: int
    size: int
    blob_id: str


class _ReadAhead:
    """Messages read ahead for one session: a cache, and at most one batch being read."""

    def __init__(self) -> None:
        self.cache: dict[int, bytes | None] = {}
        self.pending: asyncio.Future[list[bytes | None]] | None = None
        self.pending_batch: list[int] = []
        self.next = 0  # first message neither cached nor being read
        self.last = -1  # the message served last

    async def land(self) -> None:
        """Wait for the batch being read and move it into the cache."""
        pending, batch = self.pending, self.pending_batch
        if pending is None:
            return
        try:
            data: list[bytes | None] = await pending
        except Exception:  # noqa: BLE001 - reported as unreadable messages
            log.exception("POP3 read-ahead failed")
            data = [None] * len(batch)
        if self.pending is pending:
            self.pending, self.pending_batch = None, []
            self.cache.update(zip(batch, data))

    def reset(self) -> None:
        if self.pending is not None:
            self.pending.cancel()
        self.pending, self.pending_batch = None, []
        self.cache.clear()
        self.next = 0


@dataclass
class Snapshot:
    """A locked maildrop as seen at login. Message ``n`` (1-based) is at index ``n - 1`` of the
    parallel sequences ``uidls``, ``uids``, ``sizes`` and ``blob_ids`` (columns rather than
    one object per message: a 10,000-message login then builds no per-message objects)."""

    account_id: int
    address: str
    mailbox_id: int
    uidvalidity: int
    uidls: list[str]  # "<uidvalidity>.<uid>"
    uids: Sequence[int]
    sizes: Sequence[int]
    blob_ids: Sequence[str]
    owner: object = field(repr=False, default=None)
    _by_uidl: dict[str, int] | None = field(default=None, repr=False)
    _ahead: _ReadAhead = field(default_factory=_ReadAhead, repr=False)

    def __len__(self) -> int:
        return len(self.uidls)

    def message(self, index: int) -> DropMessage:
        return DropMessage(self.uidls[index], self.uids[index], self.sizes[index], self.blob_ids[index])

    def index(self, uidl: str, number: int = 0) -> int | None:
        """0-based position of the message with this unique-id; ``number`` is the session's
        1-based message number for it, tried first (the session numbers the snapshot as is)."""
        uidls = self.uidls
        if 0 < number <= len(uidls) and uidls[number - 1] == uidl:
            return number - 1
        if self._by_uidl is None:
            self._by_uidl = {u: i for i, u in enumerate(uidls)}
        return self._by_uidl.get(uidl)


@dataclass(frozen=True)
class CommitReport:
    policy: str
    requested: int  # messages the client deleted
    applied: int  # of them, those still there to act on


class MaildropService:
    """Locks, snapshots and commits for every POP3 session of one store (one per process)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._locks: dict[int, object] = {}
        self.bus: Any = None  # the EventBus: locks across worker processes when it is shared
        # Message file names, built without pathlib on the RETR path (a few µs per message),
        # as long as the blob store lays files out as <root>/<2 hex>/<rest> (checked here).
        root = str(store.blobs.root)
        probe = "ab" + "0" * 62
        self._root = root if str(store.blobs.path(probe)) == f"{root}/ab/{probe[2:]}" else None

    def _path(self, blob_id: str) -> str:
        if self._root is None:
            return str(self.store.blobs.path(blob_id))
        return f"{self._root}/{blob_id[:2]}/{blob_id[2:]}"

    # -- lock ----------------------------------------------------------------------------------

    @property
    def _shared(self) -> bool:
        return self.bus is not None and self.bus.shared

    def holder(self, account_id: int) -> object | None:
        return self._locks.get(account_id)

    def release(self, snapshot: Snapshot | None) -> None:
        """Unlock (idempotent; only the owner's lock is released)."""
        if snapshot is not None and self._locks.get(snapshot.account_id) is snapshot.owner:
            del self._locks[snapshot.account_id]
            if self._shared:
                self.bus.unlock(f"pop3:{snapshot.account_id}")
        if snapshot is not None:
            snapshot._ahead.reset()

    # -- snapshot ------------------------------------------------------------------------------

    async def open(self, account: Account, owner: object) -> Snapshot:
        """Lock the address's maildrop and snapshot INBOX. Raises `MaildropBusy`, or
        `StoreError` / `OSError` when it cannot be read now (the lock is then not held)."""
        if account.id in self._locks:
            raise MaildropBusy(account.address)
        self._locks[account.id] = owner  # taken before the first await: no race on one loop
        shared = False
        try:
            if self._shared:
                if not await self.bus.try_lock(f"pop3:{account.id}"):
                    raise MaildropBusy(account.address)  # a session on another worker has it
                shared = True
            inbox = await self.store.get_mailbox(account.id, "INBOX")
            if inbox is None:
                raise StoreError(f"{account.address} has no INBOX")
            rows = await self.store.pop3_snapshot(inbox.id, account.pop3_since)
        except BaseException:
            if self._locks.get(account.id) is owner:
                del self._locks[account.id]
                if shared:
                    self.bus.unlock(f"pop3:{account.id}")
            raise
        uids, sizes, blob_ids = zip(*rows) if rows else ((), (), ())
        uidls = list(map(f"{inbox.uidvalidity}.".__add__, map(str, uids)))
        return Snapshot(account.id, account.address, inbox.id, inbox.uidvalidity, uidls, uids, sizes,
                        blob_ids, owner)

    # -- message bytes -------------------------------------------------------------------------

    def read_now(self, snapshot: Snapshot, index: int) -> bytes | None | _Later:
        """`read` without a coroutine when no waiting is needed: the message from the
        read-ahead, or from the page cache; LATER when `read` must be awaited instead."""
        ahead = snapshot._ahead
        if index in ahead.cache:
            if index != ahead.last:
                return LATER  # let read() trim and keep the read-ahead going
            return ahead.cache[index]
        if ahead.pending is not None:
            return LATER
        data = _read_cached(self._path(snapshot.blob_ids[index]), snapshot.sizes[index])
        if data is None:
            return LATER
        ahead.cache.clear()
        ahead.cache[index] = data
        ahead.last, ahead.next = index, index + 1
        return data

    async def read(self, snapshot: Snapshot, index: int) -> bytes | None:
        """The bytes of message ``index`` (0-based), or None when its file cannot be read.

        A file whose bytes are all in the page cache is read at once on the event loop
        (`_read_cached`: cheaper than a thread hop, and it cannot block). Otherwise the disk
        is needed and the read goes to a worker thread; as clients mostly fetch in order
        (RETR 1, RETR 2, ...), a sequential miss reads a batch of up to READ_AHEAD_MESSAGES /
        READ_AHEAD_BYTES, and the next batch is being read while the current one is sent, so
        a download from a cold disk does not wait for each file. Other misses read just the
        message asked for. The message served last stays in memory (TOP n, then RETR n).
        """
        ahead = snapshot._ahead
        if index not in ahead.cache and index in ahead.pending_batch:
            await ahead.land()
        sequential = index == ahead.last + 1
        if index not in ahead.cache:
            data = _read_cached(self._path(snapshot.blob_ids[index]), snapshot.sizes[index])
            if data is not None:  # in the page cache: no thread needed, nothing to read ahead
                ahead.reset()
                ahead.cache[index] = data
                ahead.last, ahead.next = index, index + 1
                return data
            ahead.reset()
            self._start(snapshot, index, batch=sequential)
            await ahead.land()
        data = ahead.cache[index]
        big = data is not None and len(data) > READ_AHEAD_BYTES  # not kept once served
        for done in [k for k in ahead.cache if k < index or (big and k == index)]:
            del ahead.cache[done]
        ahead.last = index
        if sequential and ahead.pending is None and ahead.next < len(snapshot) and (
                ahead.next - index <= READ_AHEAD_MESSAGES // 2
                or sum(len(b) for b in ahead.cache.values() if b) < READ_AHEAD_BYTES // 2):
            self._start(snapshot, ahead.next)
        if data is None:
            message = snapshot.message(index)
            log.warning("POP3 %s: message file %s of UID %d cannot be read", snapshot.address,
                        message.blob_id, message.uid)
        return data

    def _start(self, snapshot: Snapshot, index: int, batch: bool = True) -> None:
        """Begin reading message ``index`` (and, for a batch, those after it) in a thread."""
        sizes = snapshot.sizes
        wanted = [index]
        total = sizes[index]
        for nxt in range(index + 1, min(len(sizes), index + READ_AHEAD_MESSAGES) if batch else 0):
            total += sizes[nxt]
            if total > READ_AHEAD_BYTES:
                break
            wanted.append(nxt)
        files = [(self._path(snapshot.blob_ids[i]), sizes[i]) for i in wanted]
        ahead = snapshot._ahead
        ahead.pending = asyncio.ensure_future(
            asyncio.to_thread(lambda: [_read_file(path, size) for path, size in files]))
        ahead.pending_batch = wanted
        ahead.next = wanted[-1] + 1

    # -- UPDATE state --------------------------------------------------------------------------

    async def commit(self, snapshot: Snapshot, uidls: tuple[str, ...] | list[str]) -> CommitReport:
        """Apply the address's POP3 policy to the messages the client deleted (RFC 1939 §6).

        Does not release the lock: the caller does, whatever happens here."""
        uids = []
        for uidl in uidls:
            i = snapshot.index(uidl)
            if i is not None:
                uids.append(snapshot.uids[i])
        account = await self.store.get_account_by_id(snapshot.account_id)
        if account is None:
            return CommitReport("gone", len(uids), 0)  # the address was removed meanwhile
        policy = account.pop3_policy
        if not uids:
            return CommitReport(policy, 0, 0)
        store, mailbox_id = self.store, snapshot.mailbox_id
        if policy in _FOLDERS:
            target = await self._folder(account, policy)
            if target is not None:
                _, pairs = await store.copy_messages(account.id, mailbox_id, uids, target.id, move=True)
                return CommitReport(policy, len(uids), len(pairs))
            log.warning("POP3 %s: no %s folder; keeping the messages instead", account.address, policy)
            policy = "keep"
        if policy == "delete":
            gone = await store.remove_messages(account.id, mailbox_id, uids)
            return CommitReport(policy, len(uids), len(gone))
        if policy not in ("keep", "mark-read"):
            log.warning("POP3 %s: unknown POP3 policy %r; keeping the messages", account.address, policy)
            policy = "keep"
        done = await store.pop3_retire(account.id, mailbox_id, uids, mark_seen=policy == "mark-read")
        return CommitReport(policy, len(uids), len(done))

    async def _folder(self, account: Account, policy: str) -> Mailbox | None:
        special_use, name = _FOLDERS[policy]
        store = self.store
        found = await store.special_mailbox(account.id, special_use) or await store.get_mailbox(account.id, name)
        if found is not None:
            return found
        try:
            return await store.create_mailbox(account.id, name, special_use)
        except StoreError:
            return await store.get_mailbox(account.id, name)


_NOWAIT = getattr(os, "RWF_NOWAIT", 0)


def _read_cached(path: str, size: int) -> bytes | None:
    """The file's bytes if they are all in the page cache (preadv2 RWF_NOWAIT, Linux), read
    right here on the event loop: cheaper than a trip to a worker thread and never blocks on
    the disk. None when the disk would be needed (or the platform cannot tell)."""
    global _NOWAIT
    if not _NOWAIT or size <= 0 or size > READ_AHEAD_BYTES:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        buf = bytearray(size)
        if os.preadv(fd, [buf], 0, _NOWAIT) != size:
            return None  # partly cached (or not the expected file): the thread reads it
        return bytes(buf)
    except BlockingIOError:
        return None
    except OSError:  # EOPNOTSUPP and the like: this file system cannot say; stop asking
        _NOWAIT = 0
        return None
    finally:
        os.close(fd)


def _read_file(path: str, size: int) -> bytes | None:
    """A message file, whose size the snapshot knows (blobs are immutable): usually one
    read(2), without the stat and seek of ``Path.read_bytes``. None if it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, size)
        if len(data) < size:  # short read, or a file that is not what the index says
            parts = [data]
            while chunk := os.read(fd, max(size - len(data), 65536)):
                parts.append(chunk)
            data = b"".join(parts)
        return data
    except OSError:
        return None
    finally:
        os.close(fd)


_services: weakref.WeakKeyDictionary[Store, MaildropService] = weakref.WeakKeyDictionary()


def maildrop_service(store: Store) -> MaildropService:
    """The one MaildropService of ``store``: shared by the 110 and 995 listeners, so the lock
    holds across both ports."""
    service = _services.get(store)
    if service is None:
        service = _services[store] = MaildropService(store)
    return service
