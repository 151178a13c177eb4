"""Messages: durable delivery, APPEND, flags, expunge, copy/move, CONDSTORE changes, the POP3 maildrop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import time
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

from .. import cpu
from ..mail.sortkeys import load_stored, sort_keys
from ..mail.mime import canonicalize_crlf
from .db import Tx
from .mailboxes import claim_recent_in
from .prepare import blob_row, prepare_file
from .records import (
    ADDED_METAS_MAX,
    DELETED,
    DELIVERY_ZONE,
    SEEN,
    BlobInfo,
    Delivered,
    FlagsChanged,
    Mailbox,
    MessageMeta,
    MessagesAdded,
    MessagesExpunged,
    NotFound,
    QuotaExceeded,
)
from .rows import _MAILBOX_COLUMNS, _MESSAGE_COLUMNS, StoreBase, _mailbox, _message
from .spool import MessageSource, discard, needs_process


class MessageStore(StoreBase):
    # == messages ==============================================================================

    async def list_messages(self, mailbox_id: int) -> list[MessageMeta]:
        """Every message of the mailbox in UID order (what SELECT needs)."""
        rows = await self.db.read(lambda tx: tx.all(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE mailbox_id = ? ORDER BY uid", (mailbox_id,)))
        return [_message(r) for r in rows]

    async def flag_index(self, mailbox_id: int) -> tuple[Mailbox | None, array, bytearray, array, dict[int, str]]:
        """One snapshot of the mailbox row and every message's (uid, flag bits, modseq, keywords)
        as compact arrays in UID order: the IMAP server's shared per-mailbox index (no
        per-message objects, so SELECT of a large mailbox stays cheap).

        A mailbox of INDEX_SNAPSHOT_AFTER messages or more is also saved as a snapshot file
        (store/snapshots.py); the next load (after a restart) starts from it and reads from
        the database only what changed since its HIGHESTMODSEQ: rows with a higher MODSEQ and
        the tombstones of expunges (`_index_from_snapshot`)."""
        saved = None
        if self.index_snapshots.exists(mailbox_id):
            saved = await asyncio.to_thread(self.index_snapshots.read, mailbox_id, INDEX_SNAPSHOT_FORMAT)

        def op(tx: Tx) -> tuple[tuple[Mailbox | None, array, bytearray, array, dict[int, str]], int]:
            with tx.snapshot():  # the row and the messages as of one moment, whoever writes
                return snap(tx)

        def snap(tx: Tx) -> tuple[tuple[Mailbox | None, array, bytearray, array, dict[int, str]], int]:
            uids, bits, modseqs, keywords = array("I"), bytearray(), array("Q"), {}
            row = tx.one(f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE id = ?", (mailbox_id,))
            if row is None:
                return (None, uids, bits, modseqs, keywords), 0
            box = _mailbox(row)
            if saved is not None:
                loaded = _index_from_snapshot(tx, box, saved)
                if loaded is not None:
                    return (box, *loaded[:4]), loaded[4]
            uids, bits, modseqs = _packed_columns(tx, mailbox_id)
            # Few messages have keywords: only theirs are read (``messages_index`` covers both).
            keywords = dict(tx.tuples("SELECT uid, keywords FROM messages WHERE mailbox_id = ? AND keywords != ''",
                                      (mailbox_id,)))
            return (box, uids, bits, modseqs, keywords), len(uids)
        index, read = await self.db.read(op)
        box, uids, bits, modseqs, keywords = index
        if box is not None and read >= INDEX_SNAPSHOT_AFTER:  # in the background: SELECT does not wait
            data = (box.uidvalidity, box.highestmodseq, uids.tobytes(), bytes(bits), modseqs.tobytes(), dict(keywords))
            asyncio.get_running_loop().run_in_executor(
                None, self.index_snapshots.write, mailbox_id, INDEX_SNAPSHOT_FORMAT, data)
        return index

    async def message_details(self, mailbox_id: int) -> tuple[array, array, array, array]:
        """(uids, sizes, internal dates, their zones in minutes east of UTC) of every message
        as arrays in UID order: the immutable per-message data the IMAP index loads when a
        FETCH or SEARCH first needs RFC822.SIZE / INTERNALDATE (covered by ``messages_index``,
        no per-message objects)."""
        def op(tx: Tx) -> tuple[array, array, array, array]:
            rows = tx.tuples("SELECT uid, size, internal_date, internal_zone FROM messages WHERE mailbox_id = ? "
                             "ORDER BY uid", (mailbox_id,))
            return (array("I", map(itemgetter(0), rows)), array("Q", map(itemgetter(1), rows)),
                    array("d", map(itemgetter(2), rows)), array("h", map(itemgetter(3), rows)))
        return await self.db.read(op)

    async def sort_rows(self, mailbox_id: int, min_uid: int = 0) -> list[tuple[int, int, float, list[Any]]]:
        """(uid, RFC822.SIZE, internal date, stored sort keys) of the mailbox's messages with
        UID >= ``min_uid``, in UID order: what the IMAP index keeps for SORT and THREAD
        (RFC 5256); the keys are ``mail.sortkeys.SortKeys.stored()`` lists.

        The keys were computed at delivery (``blobs.sortkeys``); a blob stored before that
        column existed (or with keys of an older version) is read and parsed once here and
        its keys written back, so this happens once per message, not once per SORT."""
        rows = await self.db.read(lambda tx: tx.all(
            "SELECT m.uid, m.size, m.internal_date, m.blob_id, b.sortkeys FROM messages m "
            "JOIN blobs b ON b.id = m.blob_id WHERE m.mailbox_id = ? AND m.uid >= ? ORDER BY m.uid",
            (mailbox_id, min_uid)))

        def decode() -> tuple[list[Any], list[str]]:
            out: list[Any] = []
            missing: list[str] = []
            with cpu.gc_paused():  # 100,000 small lists
                for uid, size, date, blob_id, text in rows:
                    keys = load_stored(text)
                    if keys is None:
                        missing.append(blob_id)
                    out.append((uid, size, date, keys if keys is not None else blob_id))
            return out, missing
        out, missing = await asyncio.to_thread(decode)
        if missing:
            def compute() -> dict[str, Any]:
                done: dict[str, Any] = {}
                for blob_id in set(missing):
                    try:
                        done[blob_id] = sort_keys(self.blobs.get(blob_id))
                    except OSError:  # an unreadable body sorts as an empty message
                        done[blob_id] = sort_keys(b"")
                return done
            computed = await asyncio.to_thread(compute)
            out = [(u, n, d, computed[k].stored() if isinstance(k, str) else k) for u, n, d, k in out]
            await self.db.write(lambda tx: tx.executemany(
                "UPDATE blobs SET sortkeys = ? WHERE id = ?",
                [(k.to_json(), blob_id) for blob_id, k in computed.items()]))
        return out

    async def get_messages(self, mailbox_id: int, uids: Iterable[int]) -> list[MessageMeta]:
        uid_list = sorted(set(uids))
        return [_message(r) for r in await self.db.read(lambda tx: _message_rows(tx, mailbox_id, uid_list))]

    async def blob_info(self, blob_ids: Iterable[str]) -> dict[str, BlobInfo]:
        ids = list(set(blob_ids))
        return {r[0]: BlobInfo(*r) for r in await self.db.read(lambda tx: _blob_info_rows(tx, ids))}

    async def get_messages_with_info(self, mailbox_id: int, uids: Iterable[int]
                                     ) -> tuple[list[MessageMeta], dict[str, BlobInfo]]:
        """`get_messages` and the `blob_info` of those messages in one read (a FETCH of
        ENVELOPE or BODYSTRUCTURE needs both)."""
        uid_list = sorted(set(uids))

        def op(tx: Tx) -> tuple[list[Any], list[Any]]:
            rows = _message_rows(tx, mailbox_id, uid_list)
            return rows, _blob_info_rows(tx, list({r[6] for r in rows}))
        rows, infos = await self.db.read(op)
        return [_message(r) for r in rows], {r[0]: BlobInfo(*r) for r in infos}

    async def read_blob(self, blob_id: str) -> bytes:
        return await asyncio.to_thread(self.blobs.get, blob_id)

    def _write_blob(self, raw: bytes) -> tuple[str, tuple[Any, ...], int]:
        """Write the body file durably (in canonical CRLF form) and parse it (a writer thread,
        for small messages: see :meth:`_put_blob`). Returns (blob id, blobs row, stored size)."""
        data = canonicalize_crlf(raw)
        blob_id = self.blobs.put(data)
        return blob_id, blob_row(blob_id, data), len(data)

    async def _put_blob(self, raw: bytes | bytearray | MessageSource) -> tuple[str, tuple[Any, ...], int]:
        """The body written and parsed off the event loop: a small message in a writer thread,
        a large one (or a spooled one) in a worker process, whose Python parsing would otherwise
        hold this process's GIL for as long as it takes (``postoffice.cpu``). A bytearray (a
        large IMAP literal, never copied) is fine too."""
        if not needs_process(raw):
            data = raw.read() if isinstance(raw, MessageSource) else bytes(raw)
            return await asyncio.get_running_loop().run_in_executor(self._writers, self._write_blob, data)
        return await self._put_blob_elsewhere(raw)

    async def _put_blob_elsewhere(self, source: bytes | bytearray | MessageSource) -> tuple[str, tuple[Any, ...], int]:
        loop = asyncio.get_running_loop()
        spooled = None
        if not isinstance(source, MessageSource) or source.in_memory:
            # Handed over as a file, written here in a thread (os.write copies without the GIL),
            # not pickled: pickling 50 MB would hold this process's GIL for tens of ms.
            spooled = await loop.run_in_executor(self._writers, self.spool.write, source)
            source = spooled
        try:
            tmp, blob_id, row, size = await cpu.in_process(prepare_file, source, str(self.blobs.tmp))
        finally:
            if spooled is not None:
                await loop.run_in_executor(self._writers, discard, spooled)
        await loop.run_in_executor(self._writers, self.blobs.adopt, tmp, blob_id)
        return blob_id, row, size

    @staticmethod
    def _insert_blob(tx: Tx, row: tuple[Any, ...]) -> None:
        tx.execute("INSERT INTO blobs (id, size, header_size, envelope, bodystructure, body, structure, subject, "
                   "from_addr, to_addr, cc_addr, bcc_addr, message_id, in_reply_to, sent_date, created_at, sent_local, "
                   "sortkeys) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING", row)

    @staticmethod
    def _allocate_uids(tx: Tx, mailbox_id: int, count: int) -> tuple[int, int]:
        """Take ``count`` UIDs and the next MODSEQ of the mailbox in this transaction; returns
        (first uid, modseq). One UPDATE ... RETURNING: on PostgreSQL it locks the mailbox row
        until the commit, so writers on other nodes wait and get the following values; UIDs and
        MODSEQs are never handed out from memory (RFC 9051 §2.3.1.1, RFC 7162 §3.1)."""
        row = tx.one("UPDATE mailboxes SET uidnext = uidnext + ?, highestmodseq = highestmodseq + 1 WHERE id = ? "
                     "RETURNING uidnext, highestmodseq", (count, mailbox_id))
        if row is None:
            raise NotFound("mailbox is gone")
        return row[0] - count, row[1]

    @staticmethod
    def _next_modseq(tx: Tx, mailbox_id: int) -> int:
        """The MODSEQ a change to the mailbox's messages will carry (the caller stores it with
        `_set_highestmodseq` if it changes anything). The row is locked for the transaction on
        PostgreSQL, so concurrent writers take MODSEQs one after the other."""
        highest = tx.scalar(tx.for_update("SELECT highestmodseq FROM mailboxes WHERE id = ?"), (mailbox_id,))
        if highest is None:
            raise NotFound("mailbox is gone")
        return int(highest) + 1

    @staticmethod
    def _set_highestmodseq(tx: Tx, mailbox_id: int, modseq: int) -> None:
        tx.execute("UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", (modseq, mailbox_id))

    def _insert_messages(self, tx: Tx, account_id: int, mailbox_id: int,
                         items: Sequence[tuple[str, int, int, str, float, int]]) -> tuple[int, list[int]]:
        """Insert (blob_id, size, flags, keywords, internal_date, internal_zone) rows; return
        (modseq, uids)."""
        first_uid, modseq = self._allocate_uids(tx, mailbox_id, len(items))
        uids = list(range(first_uid, first_uid + len(items)))
        now = time.time()
        tx.executemany(
            "INSERT INTO messages (mailbox_id, uid, blob_id, size, flags, keywords, internal_date, internal_zone, "
            "modseq, saved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(mailbox_id, uid, blob, size, flags, kw, date, zone, modseq, now)
             for uid, (blob, size, flags, kw, date, zone) in zip(uids, items)])
        metas = tuple((uid, flags, kw, size, date, blob, zone)
                      for uid, (blob, size, flags, kw, date, zone) in zip(uids, items)) \
            if len(items) <= ADDED_METAS_MAX else ()
        tx.emit(MessagesAdded(account_id, mailbox_id, tuple(uids), modseq, metas))
        return modseq, uids

    async def deliver(self, targets: Sequence[tuple[int, str] | tuple[int, str, int, str]],
                      raw: bytes | MessageSource, *,
                      enforce_quota: bool = True) -> list[Delivered]:
        """Durably store ``raw`` once and file it into each (account id, mailbox name), or
        (account id, mailbox name, flag bits, keywords) when a filter set flags (RFC 5232).

        The body is written and fsynced first, then one transaction adds the index rows; the
        coroutine returns after that commit, so a caller may acknowledge the message then.
        A missing mailbox falls back to INBOX. Raises QuotaExceeded (nothing stored) when an
        account would go over its quota, OSError when the disk refuses the body."""
        done: concurrent.futures.Future[list[Delivered]] = concurrent.futures.Future()

        def op(tx: Tx, blob_id: str, row: tuple[Any, ...], size: int) -> list[Delivered]:
            self._insert_blob(tx, row)
            out = []
            for target in targets:
                account_id, mailbox_name = target[0], target[1]
                flags, keywords = (target[2], target[3]) if len(target) > 2 else (0, "")  # type: ignore[misc]
                # One statement for the account, its quota and the target mailbox.
                acct = tx.one("SELECT a.address, a.quota_bytes, b.id FROM accounts a "
                              "LEFT JOIN mailboxes b ON b.account_id = a.id AND b.name = ? WHERE a.id = ?",
                              (mailbox_name, account_id))
                if acct is None:
                    raise NotFound(f"account {account_id} is gone")
                if enforce_quota and acct[1] and self._quota_used(tx, account_id) + size > acct[1]:
                    raise QuotaExceeded(acct[0])
                mailbox_id = acct[2] if acct[2] is not None else tx.scalar(
                    "SELECT id FROM mailboxes WHERE account_id = ? AND name = 'INBOX'", (account_id,))
                if mailbox_id is None:
                    raise NotFound("mailbox is gone")
                _, uids = self._insert_messages(tx, account_id, mailbox_id,
                                                [(blob_id, size, flags, keywords, time.time(), DELIVERY_ZONE)])
                out.append(Delivered(account_id, mailbox_id, uids[0]))
            return out

        if needs_process(raw):
            blob_id, row, size = await self._put_blob_elsewhere(raw)
            return await self.db.write(lambda tx: op(tx, blob_id, row, size))
        data = raw.read() if isinstance(raw, MessageSource) else raw

        def work() -> None:
            # Body file and parse here, then straight on to the database thread: the event loop
            # is woken once, when the commit is done (not once more in between).
            if done.cancelled():
                return
            try:
                blob_id, row, size = self._write_blob(data)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
                try:
                    done.set_exception(exc)
                except concurrent.futures.InvalidStateError:
                    pass
                return
            self.db.submit(lambda tx: op(tx, blob_id, row, size), write=True, future=done)

        self._writers.submit(work)
        return await asyncio.wrap_future(done)

    async def append(self, account_id: int, mailbox_id: int,
                     messages: Sequence[tuple[bytes | MessageSource, int, str, float]
                                        | tuple[bytes | MessageSource, int, str, float, int]],
                     *, enforce_quota: bool = True) -> tuple[int, list[int]]:
        """IMAP APPEND (several messages for MULTIAPPEND, all or none, RFC 3502).

        Each message is (raw, flag bits, keywords, internal date) or (..., internal date, its
        zone in minutes east of UTC; without: ``DELIVERY_ZONE``). Returns (uidvalidity, uids)."""
        uidvalidity, uids, _ = await self._append(account_id, mailbox_id, messages, enforce_quota, claim=False)
        return uidvalidity, uids

    async def append_claiming_recent(self, account_id: int, mailbox_id: int,
                                     messages: Sequence[tuple[bytes | MessageSource, int, str, float, int]]
                                     ) -> tuple[int, list[int], int]:
        """`append` by a session that has this mailbox selected and shows \\Recent (IMAP4rev1):
        it also claims the mailbox's recent messages up to the new ones (`claim_recent`) in
        the same transaction, so the session need not write again right after to claim what
        it appended. Returns (uidvalidity, uids, the previous ``recent_uid``)."""
        return await self._append(account_id, mailbox_id, messages, True, claim=True)

    async def _append(self, account_id: int, mailbox_id: int, messages: Sequence[Any], enforce_quota: bool,
                      *, claim: bool) -> tuple[int, list[int], int]:
        # The bodies are written (and fsynced) concurrently: MULTIAPPEND of many messages
        # should cost about one disk sync, not one per message.
        blobs = await asyncio.gather(*(self._put_blob(m[0]) for m in messages))

        def op(tx: Tx) -> tuple[int, list[int], int]:
            box = tx.one("SELECT uidvalidity, account_id FROM mailboxes WHERE id = ?", (mailbox_id,))
            if box is None or box[1] != account_id:
                raise NotFound("mailbox is gone")
            total = sum(size for _, _, size in blobs)
            acct = tx.one("SELECT address, quota_bytes FROM accounts WHERE id = ?", (account_id,))
            if enforce_quota and acct[1] and self._quota_used(tx, account_id) + total > acct[1]:
                raise QuotaExceeded(acct[0])
            for _, row, _ in blobs:
                self._insert_blob(tx, row)
            items = [(blob_id, size, m[1], m[2], m[3], m[4] if len(m) > 4 else DELIVERY_ZONE)  # type: ignore[misc]
                     for (blob_id, _, size), m in zip(blobs, messages)]
            _, uids = self._insert_messages(tx, account_id, mailbox_id, items)
            recent_from = claim_recent_in(tx, mailbox_id, uids[-1] + 1) if claim and uids else 0
            return box[0], uids, recent_from
        return await self.db.write(op)

    async def store_flags(self, account_id: int, mailbox_id: int, uids: Sequence[int], mode: str,
                          bits: int, keywords: Sequence[str], *, unchangedsince: int | None = None,
                          origin: object = None) -> tuple[list[tuple[int, int, str, int]], list[int]]:
        """Change flags: mode is 'set', 'add' or 'remove'.

        Returns (changed, failed): changed lists (uid, bits, keywords, modseq) of messages whose
        flags actually changed; failed lists UIDs refused by UNCHANGEDSINCE (RFC 7162 §3.1.3)."""
        uid_list = sorted(set(uids))

        def op(tx: Tx) -> tuple[list[tuple[int, int, str, int]], list[int]]:
            modseq = self._next_modseq(tx, mailbox_id)
            changed: list[tuple[int, int, str, int]] = []
            failed: list[int] = []
            updates = []
            kwset = set(keywords)
            for start in range(0, len(uid_list), 500):
                chunk = uid_list[start:start + 500]
                rows = tx.all(f"SELECT uid, flags, keywords, modseq FROM messages WHERE mailbox_id = ? AND uid IN "
                              f"({','.join('?' * len(chunk))})", (mailbox_id, *chunk))
                for uid, old_bits, old_kw, old_modseq in rows:
                    if unchangedsince is not None and old_modseq > unchangedsince:
                        failed.append(uid)
                        continue
                    current = set(old_kw.split())
                    if mode == "set":
                        new_bits, new_kw = bits, kwset
                    elif mode == "add":
                        new_bits, new_kw = old_bits | bits, current | kwset
                    else:
                        new_bits, new_kw = old_bits & ~bits, current - kwset
                    if new_bits == old_bits and new_kw == current:
                        continue
                    kw_text = " ".join(sorted(new_kw))
                    updates.append((new_bits, kw_text, modseq, mailbox_id, uid))
                    changed.append((uid, new_bits, kw_text, modseq))
            if updates:
                tx.executemany("UPDATE messages SET flags = ?, keywords = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?",
                               updates)
                self._set_highestmodseq(tx, mailbox_id, modseq)
                tx.emit(FlagsChanged(account_id, mailbox_id, tuple(changed), origin))
            return changed, sorted(failed)
        return await self.db.write(op, durable=False)

    def _expunge(self, tx: Tx, account_id: int, mailbox_id: int, uids: Sequence[int]) -> tuple[int, list[int]]:
        modseq = self._next_modseq(tx, mailbox_id)
        gone: list[int] = []
        for start in range(0, len(uids), 500):
            chunk = list(uids[start:start + 500])
            gone.extend(r[0] for r in tx.all(
                f"DELETE FROM messages WHERE mailbox_id = ? AND uid IN ({','.join('?' * len(chunk))}) RETURNING uid",
                (mailbox_id, *chunk)))
        if gone:
            gone.sort()
            tx.executemany("INSERT INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?) "
                           "ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = excluded.modseq",
                           [(mailbox_id, uid, modseq) for uid in gone])
            self._set_highestmodseq(tx, mailbox_id, modseq)
            tx.emit(MessagesExpunged(account_id, mailbox_id, tuple(gone), modseq))
        return modseq, gone

    async def expunge(self, account_id: int, mailbox_id: int, uids: Sequence[int] | None = None) -> list[int]:
        """Remove messages flagged \\Deleted (all of them, or only those among ``uids`` for
        UID EXPUNGE, RFC 4315 §2.1). Returns the expunged UIDs in ascending order."""
        def op(tx: Tx) -> list[int]:
            deleted = [r[0] for r in tx.all(
                "SELECT uid FROM messages WHERE mailbox_id = ? AND flags & ? != 0 ORDER BY uid", (mailbox_id, DELETED))]
            if uids is not None:
                wanted = set(uids)
                deleted = [u for u in deleted if u in wanted]
            return self._expunge(tx, account_id, mailbox_id, deleted)[1]
        return await self.db.write(op, durable=False)

    async def remove_messages(self, account_id: int, mailbox_id: int, uids: Sequence[int]) -> list[int]:
        """Expunge the given messages whatever their flags (POP3 deletion at QUIT)."""
        return await self.db.write(lambda tx: self._expunge(tx, account_id, mailbox_id, sorted(set(uids)))[1])

    # -- POP3 maildrop (services/maildrop.py) ----------------------------------------------------

    async def pop3_snapshot(self, mailbox_id: int, since: float | None = None) -> list[tuple[int, int, str]]:
        """(uid, size, blob id) of the messages POP3 may offer, in UID order: every message of
        the mailbox not retired by `pop3_retire` and, with ``since``, saved after that time."""
        sql = ("SELECT m.uid, m.size, m.blob_id FROM messages m WHERE m.mailbox_id = ? AND NOT EXISTS "
               "(SELECT 1 FROM pop3_retired r WHERE r.mailbox_id = m.mailbox_id AND r.uid = m.uid)")
        params: tuple[Any, ...] = (mailbox_id,)
        if since is not None:
            sql += " AND m.saved_at > ?"
            params += (since,)

        def op(tx: Tx) -> list[tuple[int, int, str]]:
            return tx.tuples(sql + " ORDER BY m.uid", params)  # a login may list 10,000s of messages
        return await self.db.read(op)

    async def pop3_retire(self, account_id: int, mailbox_id: int, uids: Sequence[int], *,
                          mark_seen: bool = False) -> list[int]:
        """Hide messages from POP3 for good while they stay in the mailbox (the POP3 policies
        "keep" and "mark-read"), adding \\Seen first when ``mark_seen``; one transaction.

        Returns the UIDs that still existed. Retired UIDs of messages that are gone are
        forgotten on the way (UIDs never repeat, so they can never match again)."""
        uid_list = sorted(set(uids))

        def op(tx: Tx) -> list[int]:
            rows: list[Any] = []
            for start in range(0, len(uid_list), 500):
                chunk = uid_list[start:start + 500]
                rows.extend(tx.all(f"SELECT uid, flags, keywords FROM messages WHERE mailbox_id = ? AND uid IN "
                                   f"({','.join('?' * len(chunk))})", (mailbox_id, *chunk)))
            rows.sort(key=lambda r: r[0])
            unseen = [r for r in rows if not r[1] & SEEN] if mark_seen else []
            if unseen:
                modseq = self._next_modseq(tx, mailbox_id)
                tx.executemany("UPDATE messages SET flags = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?",
                               [(r[1] | SEEN, modseq, mailbox_id, r[0]) for r in unseen])
                self._set_highestmodseq(tx, mailbox_id, modseq)
                tx.emit(FlagsChanged(account_id, mailbox_id,
                                     tuple((r[0], r[1] | SEEN, r[2], modseq) for r in unseen)))
            now = time.time()
            tx.executemany("INSERT INTO pop3_retired (mailbox_id, uid, retired_at) VALUES (?, ?, ?) "
                           "ON CONFLICT DO NOTHING", [(mailbox_id, r[0], now) for r in rows])
            tx.execute("DELETE FROM pop3_retired WHERE mailbox_id = ? AND NOT EXISTS (SELECT 1 FROM messages m "
                       "WHERE m.mailbox_id = pop3_retired.mailbox_id AND m.uid = pop3_retired.uid)", (mailbox_id,))
            return [r[0] for r in rows]
        return await self.db.write(op)

    def _copy(self, tx: Tx, account_id: int, source: int, uids: Sequence[int], target: int) -> list[tuple[int, int]]:
        rows: list[Any] = []
        for start in range(0, len(uids), 500):
            chunk = list(uids[start:start + 500])
            rows.extend(tx.all(f"SELECT uid, blob_id, size, flags, keywords, internal_date, internal_zone "
                               f"FROM messages WHERE mailbox_id = ? AND uid IN ({','.join('?' * len(chunk))})",
                               (source, *chunk)))
        rows.sort(key=lambda r: r[0])
        if not rows:
            return []
        _, new_uids = self._insert_messages(tx, account_id, target, [tuple(r[1:]) for r in rows])
        return [(r[0], new) for r, new in zip(rows, new_uids)]

    async def copy_messages(self, account_id: int, source: int, uids: Sequence[int], target: int,
                            *, move: bool = False, enforce_quota: bool = True) -> tuple[int, list[tuple[int, int]]]:
        """COPY or MOVE (RFC 6851): returns (target uidvalidity, [(source uid, new uid)])."""
        uid_list = sorted(set(uids))

        def op(tx: Tx) -> tuple[int, list[tuple[int, int]]]:
            box = tx.one("SELECT uidvalidity, account_id FROM mailboxes WHERE id = ?", (target,))
            if box is None or box[0] is None or box[1] != account_id:
                raise NotFound("target mailbox is gone")
            if enforce_quota and not move:
                acct = tx.one("SELECT address, quota_bytes FROM accounts WHERE id = ?", (account_id,))
                if acct[1]:
                    added = sum(r[0] for r in tx.all(
                        f"SELECT size FROM messages WHERE mailbox_id = ? AND uid IN ({','.join('?' * len(uid_list))})",
                        (source, *uid_list))) if uid_list else 0
                    if self._quota_used(tx, account_id) + added > acct[1]:
                        raise QuotaExceeded(acct[0])
            pairs = self._copy(tx, account_id, source, uid_list, target)
            if move and pairs:
                self._expunge(tx, account_id, source, [p[0] for p in pairs])
            return box[0], pairs
        return await self.db.write(op)

    async def changes_since(self, mailbox_id: int, modseq: int) -> tuple[list[MessageMeta], list[int]]:
        """(messages changed after modseq, UIDs expunged after modseq) for CONDSTORE/QRESYNC."""
        def op(tx: Tx) -> tuple[list[Any], list[int]]:
            changed = tx.all(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE mailbox_id = ? AND modseq > ? "
                             "ORDER BY uid", (mailbox_id, modseq))
            vanished = [r[0] for r in tx.all("SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? "
                                             "ORDER BY uid", (mailbox_id, modseq))]
            return changed, vanished
        changed, vanished = await self.db.read(op)
        return [_message(r) for r in changed], vanished

    async def index_delta(self, mailbox_id: int, modseq: int) -> tuple[int, list[MessageMeta], list[tuple[int, int]]]:
        """(HIGHESTMODSEQ, messages changed or added after ``modseq``, (uid, modseq) of those
        expunged after it), read as of one moment: how an in-memory mailbox index catches up
        when it finds it missed a change (another worker's event not here yet)."""
        def op(tx: Tx) -> tuple[int, list[Any], list[tuple[int, int]]]:
            with tx.snapshot():
                highest = tx.scalar("SELECT highestmodseq FROM mailboxes WHERE id = ?", (mailbox_id,))
                changed = tx.all(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE mailbox_id = ? AND modseq > ? "
                                 "ORDER BY uid", (mailbox_id, modseq))
                vanished = [(r[0], r[1]) for r in tx.all(
                    "SELECT uid, modseq FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
                    (mailbox_id, modseq))]
                return int(highest or 0), changed, vanished
        highest, changed, vanished = await self.db.read(op)
        return highest, [_message(r) for r in changed], vanished

    async def search_fields(self, mailbox_id: int) -> dict[int, dict[str, Any]]:
        """Header fields kept for SEARCH, per UID: subject, from, to, cc, bcc, sent_date..."""
        rows = await self.db.read(lambda tx: tx.all(
            "SELECT m.uid, b.subject, b.from_addr, b.to_addr, b.cc_addr, b.bcc_addr, b.message_id, "
            "b.in_reply_to, b.sent_date, b.sent_local FROM messages m JOIN blobs b ON b.id = m.blob_id "
            "WHERE m.mailbox_id = ?", (mailbox_id,)))
        keys = ("subject", "from", "to", "cc", "bcc", "message_id", "in_reply_to", "sent_date", "sent_local")
        return {r[0]: dict(zip(keys, r[1:])) for r in rows}


#: A flag-index load that read this many messages from the database saves a snapshot.
INDEX_SNAPSHOT_AFTER = 5000
#: The snapshot's layout, and the machine's array item sizes and byte order it was written in.
INDEX_SNAPSHOT_FORMAT = (1, sys.byteorder, array("I").itemsize, array("Q").itemsize)


def _index_from_snapshot(tx: Tx, box: Mailbox, saved: Any
                         ) -> tuple[array, bytearray, array, dict[int, str], int] | None:
    """The flag index from a snapshot plus what changed since it was taken, and how many rows
    that read; None when the snapshot cannot be used (another UIDVALIDITY, a database older
    than the snapshot, too many changes, or a result that does not match the database: then
    the caller reads everything, so a wrong snapshot never becomes a wrong index)."""
    try:
        uidvalidity, highest, uid_bytes, bit_bytes, modseq_bytes, saved_keywords = saved
        if uidvalidity != box.uidvalidity or not 0 <= highest <= box.highestmodseq:
            return None
        uids, modseqs = array("I"), array("Q")
        uids.frombytes(uid_bytes)
        modseqs.frombytes(modseq_bytes)
        bits, keywords = bytearray(bit_bytes), dict(saved_keywords)
    except (TypeError, ValueError):
        return None
    if not len(uids) == len(bits) == len(modseqs):
        return None
    mailbox_id = box.id
    gone = tx.tuples("SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ?", (mailbox_id, highest))
    changed = tx.tuples("SELECT uid, flags, modseq, keywords FROM messages WHERE mailbox_id = ? AND modseq > ? "
                        "ORDER BY uid", (mailbox_id, highest))
    if len(gone) + len(changed) > max(1000, len(uids) // 10):
        return None  # reading everything is about as quick
    if gone:
        drop = {uid for (uid,) in gone}
        keep = [k for k, uid in enumerate(uids) if uid not in drop]
        if len(keep) < len(uids):
            uids = array("I", [uids[k] for k in keep])
            bits = bytearray(bits[k] for k in keep)
            modseqs = array("Q", [modseqs[k] for k in keep])
        for uid in drop:
            keywords.pop(uid, None)
    for uid, flags, modseq, kw in changed:
        at = bisect_left(uids, uid)
        if at < len(uids) and uids[at] == uid:
            bits[at], modseqs[at] = flags & 0xFF, modseq
        elif at == len(uids):
            uids.append(uid)
            bits.append(flags & 0xFF)
            modseqs.append(modseq)
        else:
            return None  # a message below the snapshot's last UID that it does not hold
        if kw:
            keywords[uid] = kw
        else:
            keywords.pop(uid, None)
    count, last = tx.one("SELECT COUNT(*), MAX(uid) FROM messages WHERE mailbox_id = ?", (mailbox_id,))
    if count != len(uids) or (last or 0) != (uids[-1] if uids else 0):
        return None  # e.g. a database restored from an older backup that has since moved on
    return uids, bits, modseqs, keywords, len(gone) + len(changed)


def _packed_columns(tx: Tx, mailbox_id: int) -> tuple[array, bytearray, array]:
    """(uids, flag bits, modseqs) of a mailbox's messages in UID order, read as three strings of
    fixed-width hex that the database concatenates and ``bytes.fromhex`` turns into the arrays'
    bytes: no Python object per message (fetching 100,000 rows as tuples cost several times as
    much, and more in a server process whose garbage collector then walks a large heap).
    SQLite keeps the ordered subquery's order in the aggregate (it never flattens an ordered
    subquery into an aggregate); the UIDs are checked to be ascending all the same."""
    hexed = tx.dialect.hex_concat
    u, f, m = tx.tuples(
        f"SELECT {hexed('uid', 8)}, {hexed('flags & 255', 2)}, {hexed('modseq', 16)} "
        "FROM (SELECT uid, flags, modseq FROM messages WHERE mailbox_id = ? ORDER BY uid) AS m", (mailbox_id,))[0]
    uids, modseqs = array("I"), array("Q")
    if u is None:
        return uids, bytearray(), modseqs
    uids.frombytes(bytes.fromhex(u))
    modseqs.frombytes(bytes.fromhex(m))
    if sys.byteorder == "little":  # the hex is big-endian
        uids.byteswap()
        modseqs.byteswap()
    bits = bytearray.fromhex(f)
    if uids.tolist() != sorted(uids):
        order = sorted(range(len(uids)), key=uids.__getitem__)
        uids = array("I", [uids[k] for k in order])
        bits = bytearray(bits[k] for k in order)
        modseqs = array("Q", [modseqs[k] for k in order])
    return uids, bits, modseqs


def _message_rows(tx: Tx, mailbox_id: int, uids: list[int]) -> list[Any]:
    """The rows of ``uids`` (sorted) in UID order."""
    return _rows_in(tx, f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE mailbox_id = ? AND uid IN ({{}}) ORDER BY uid",
                    (mailbox_id,), uids)


def _blob_info_rows(tx: Tx, ids: list[str]) -> list[Any]:
    return _rows_in(tx, "SELECT id, size, header_size, envelope, bodystructure, body, structure FROM blobs "
                        "WHERE id IN ({})", (), ids)


def _rows_in(tx: Tx, sql: str, params: tuple[Any, ...], values: list[Any]) -> list[Any]:
    """``sql`` (its ``{}`` the IN list) for ``values``, 500 at a time (SQLite's variable limit)."""
    out: list[Any] = []
    for start in range(0, len(values), 500):
        chunk = values[start:start + 500]
        out.extend(tx.all(sql.format(",".join("?" * len(chunk))), (*params, *chunk)))
    return out
