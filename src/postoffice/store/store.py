"""The Store: domains, accounts, aliases, mailboxes, messages and the outbound queue.

The methods live in one module per area (directory, mailboxes, messages, queue); `Store`
composes them over one database thread and one blob directory.

Every public coroutine runs one function on the database thread (store.db). Functions that
change mail emit typed change events (store.records) which the event bus receives after the
commit. Invariants kept here, in one place:

- UIDs in a mailbox only grow: ``uidnext`` is advanced in the same transaction that inserts the
  rows, and expunged UIDs are never handed out again within a UIDVALIDITY.
- Each operation that changes messages takes the next ``highestmodseq`` of the mailbox and stamps
  every message it touched with it (RFC 7162 §3.1: several messages changed together may share
  one mod-sequence); expunges record tombstones with that modseq.
- A UIDVALIDITY is never reused for a mailbox name: it comes from a counter that only grows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import migrations
from .blobs import BlobStore
from .db import JobRunner, Tx, open_database
from .directory import DirectoryStore
from .mailboxes import MailboxStore, validate_mailbox_name
from .messages import MessageStore
from .queue import QueueStore
from .records import PROTOCOLS
from .rows import BLOB_GRACE_SECONDS, BLOB_WRITERS
from .sieve import SieveStore
from .snapshots import Snapshots
from .spool import Spool
from .app_passwords import AppPasswordStore
from .panel_sessions import PanelSessionStore
from .metadata import MetadataStore
from .twofactor import TwoFactorStore
from .urlauth import UrlAuthStore
from .verdicts import VerdictStore


class Store(DirectoryStore, MailboxStore, MessageStore, QueueStore, SieveStore, AppPasswordStore,
            PanelSessionStore, UrlAuthStore, TwoFactorStore, MetadataStore,
            VerdictStore):
    """All persistent state. Construct with `Store.open`; close with `close`."""

    def __init__(self, db: JobRunner, blobs: BlobStore, spool: Spool | None = None) -> None:
        self.db = db
        self.blobs = blobs
        # Received messages on their way in (SMTP DATA, large IMAP literals): store/spool.py.
        self.spool = spool or Spool(blobs.root.parent / "spool")
        # The IMAP SORT/THREAD rows of large mailboxes, so a restart does not rebuild them.
        self.sort_snapshots = Snapshots(blobs.root.parent / "cache" / "sort")
        # The flag index (uids, flags, modseqs) of large mailboxes: the first SELECT after a
        # restart reads it and only the changes since from the database (Store.flag_index).
        self.index_snapshots = Snapshots(blobs.root.parent / "cache" / "index")
        # Body writes wait mostly on fsync, and the file system commits concurrent fsyncs
        # together: many writers in parallel go much faster than the default executor's
        # cpu+4 threads (measured: 6 threads ~1,000 blobs/s, 16 threads ~2,900/s).
        self._writers = concurrent.futures.ThreadPoolExecutor(BLOB_WRITERS, thread_name_prefix="postoffice-blob")

    @classmethod
    def open(cls, data_dir: Path, database: str | Path | None = None,
             on_commit: Callable[[list[Any]], None] | None = None, spool_dir: Path | None = None) -> Store:
        """``database``: an SQLite file (default ``data_dir/postoffice.db``) or a
        ``postgresql://`` URL (store.pg); migrated to the current schema before use.
        ``spool_dir``: where messages being received are spooled (default ``data_dir/spool``;
        a node's own when several share data_dir)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        db = open_database(database or data_dir / "postoffice.db", on_commit=on_commit)
        try:
            db.write_sync(migrations.migrate)
        except BaseException:
            db.close()
            raise
        blobs = BlobStore(data_dir / "blobs")
        blobs.clean_tmp()
        spool = Spool(spool_dir or data_dir / "spool")
        spool.clean()  # files of messages that were being received when the server stopped
        return cls(db, blobs, spool)

    def close(self) -> None:
        # Writers first: a delivery whose body is being written still hands its index rows to
        # the database thread, which runs every job queued before it stops.
        self._writers.shutdown(wait=True)
        self.db.close()

    async def data_version(self) -> int:
        """Changes whenever another process (the CLI) commits to the database."""
        return int(await self.db.read(lambda tx: tx.scalar(tx.dialect.data_version)))

    # == housekeeping ==========================================================================

    async def collect_garbage(self, grace: float = BLOB_GRACE_SECONDS) -> int:
        """Remove blob rows and files no message or queue entry references any more."""
        def op(tx: Tx) -> list[str]:
            ids = [r[0] for r in tx.all(
                "SELECT id FROM blobs b WHERE created_at < ? AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob_id = b.id) "
                "AND NOT EXISTS (SELECT 1 FROM queue q WHERE q.blob_id = b.id)", (time.time() - grace,))]
            tx.executemany("DELETE FROM blobs WHERE id = ?", [(i,) for i in ids])
            return ids
        ids = await self.db.write(op)
        cutoff = time.time() - grace
        removed = sum(await asyncio.to_thread(lambda: [self.blobs.remove(i, cutoff) for i in ids]))
        await asyncio.to_thread(self.blobs.clean_tmp)  # what a crash left, in any node sharing the directory
        boxes = set(await self.db.read(lambda tx: [r[0] for r in tx.all("SELECT id FROM mailboxes")]))
        await asyncio.to_thread(self.sort_snapshots.remove_except, boxes)
        await asyncio.to_thread(self.index_snapshots.remove_except, boxes)
        return removed + await self._remove_orphan_files(cutoff)

    async def _remove_orphan_files(self, cutoff: float) -> int:
        """Files with no blob row at all: bodies written for a delivery that was then refused
        (over quota, failed commit) or whose removal was cut short. Old ones only: a delivery in
        flight has written its file but not yet committed its row."""
        files = await asyncio.to_thread(lambda: list(self.blobs.all_ids()))
        removed = 0
        for start in range(0, len(files), 500):
            chunk = files[start:start + 500]
            known = set(await self.db.read(lambda tx, chunk=chunk: [r[0] for r in tx.all(
                f"SELECT id FROM blobs WHERE id IN ({','.join('?' * len(chunk))})", chunk)]))
            orphans = [i for i in chunk if i not in known]
            if orphans:
                removed += sum(await asyncio.to_thread(lambda o=orphans: [self.blobs.remove(i, cutoff) for i in o]))
        return removed


__all__ = ["Store", "validate_mailbox_name", "PROTOCOLS"]
