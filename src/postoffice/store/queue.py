"""The outbound queue and the DKIM keys."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from .db import Tx
from .records import DELIVERY_ZONE
from .rows import StoreBase
from .spool import MessageSource


class QueueStore(StoreBase):
    # == queue (outbound) ======================================================================

    async def enqueue(self, mail_from: str, recipients: Sequence[str | tuple[str, str | None, str | None]],
                      raw: bytes | MessageSource, *, account_id: int | None = None, envid: str | None = None,
                      ret: str | None = None) -> int:
        """Durably queue a message for remote recipients; returns the queue id.

        A recipient is an address, or ``(address, notify, orcpt)`` with the RFC 3461 DSN
        parameters: ``notify`` "NEVER" or a comma list of SUCCESS/FAILURE/DELAY (None: not
        given), ``orcpt`` "addr-type;address" decoded from xtext (None: not given)."""
        rows = [(r, None, None) if isinstance(r, str) else (r[0], r[1], r[2]) for r in recipients]
        blob_id, row, _ = await self._put_blob(raw)

        def op(tx: Tx) -> int:
            self._insert_blob(tx, row)
            now = time.time()
            queue_id = tx.insert("INSERT INTO queue (mail_from, blob_id, account_id, created_at, next_attempt, "
                                 "envid, ret) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 (mail_from, blob_id, account_id, now, now, envid, ret))
            tx.executemany("INSERT INTO queue_recipients (queue_id, recipient, domain, updated_at, notify, orcpt) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           [(queue_id, rcpt, rcpt.rpartition("@")[2].lower(), now, notify, orcpt)
                            for rcpt, notify, orcpt in rows])
            return queue_id
        return await self.db.write(op)

    async def queue_entries(self) -> list[dict[str, Any]]:
        def op(tx: Tx) -> list[dict[str, Any]]:
            out = []
            for row in tx.all("SELECT id, mail_from, blob_id, account_id, created_at, next_attempt, attempts "
                              "FROM queue ORDER BY id"):
                entry = dict(row)
                entry["recipients"] = [dict(r) for r in tx.all(
                    "SELECT id, recipient, domain, status, last_error FROM queue_recipients WHERE queue_id = ? "
                    "ORDER BY id", (row[0],))]
                out.append(entry)
            return out
        return await self.db.read(op)

    # == outbound queue worker and DKIM keys (issue #7: outbound/worker.py, services/queue.py,
    # services/mailauth.py) ======================================================================

    _QUEUE_COLUMNS = ("id, mail_from, blob_id, account_id, created_at, next_attempt, attempts, "
                      "delay_notified, envid, ret, claimed_until")

    @classmethod
    def _queue_entry(cls, tx: Tx, queue_id: int) -> dict[str, Any] | None:
        row = tx.one(f"SELECT {cls._QUEUE_COLUMNS} FROM queue WHERE id = ?", (queue_id,))
        if row is None:
            return None
        entry = dict(row)
        entry["recipients"] = [dict(r) for r in tx.all(
            "SELECT id, recipient, domain, status, last_error, updated_at, notify, orcpt "
            "FROM queue_recipients WHERE queue_id = ? ORDER BY id", (queue_id,))]
        return entry

    async def queue_get(self, queue_id: int) -> dict[str, Any] | None:
        """One queue entry with all its recipients (any status), or None."""
        return await self.db.read(lambda tx: self._queue_entry(tx, queue_id))

    async def queue_claim(self, now: float, lease: float, limit: int) -> list[dict[str, Any]]:
        """Claim up to ``limit`` due, unclaimed entries until ``now + lease`` and return them.

        Each claim is a conditional UPDATE that re-checks the entry is still unclaimed: with
        PostgreSQL two nodes' queue runners claim side by side, and the second UPDATE of a row
        waits for the first's commit, then finds the claim taken and changes nothing (with
        SQLite the whole job runs under the one write lock anyway). The entry's ``claimed_until``
        is the claim's token for `queue_renew` and `queue_release`."""
        until = now + lease

        def op(tx: Tx) -> list[dict[str, Any]]:
            ids = [r[0] for r in tx.all(
                "SELECT id FROM queue WHERE next_attempt <= ? AND (claimed_until IS NULL OR claimed_until <= ?) "
                "ORDER BY next_attempt, id LIMIT ?", (now, now, limit))]
            out = []
            for queue_id in ids:
                claimed = tx.execute(
                    "UPDATE queue SET claimed_until = ? WHERE id = ? AND next_attempt <= ? "
                    "AND (claimed_until IS NULL OR claimed_until <= ?)", (until, queue_id, now, now)).rowcount
                entry = self._queue_entry(tx, queue_id) if claimed == 1 else None
                if entry is not None:
                    out.append(entry)
            return out
        return await self.db.write(op)

    async def queue_renew(self, claims: dict[int, float], until: float) -> dict[int, float]:
        """Extend claims (queue id -> the ``claimed_until`` it holds) to ``until``; returns the
        claims still held, with their new token. A claim that lapsed and was taken by another
        node (or finished meanwhile) is missing from the answer."""
        def op(tx: Tx) -> dict[int, float]:
            return {queue_id: until for queue_id, held in claims.items() if tx.execute(
                "UPDATE queue SET claimed_until = ? WHERE id = ? AND claimed_until = ?",
                (until, queue_id, held)).rowcount == 1}
        return await self.db.write(op)

    async def queue_release(self, claims: dict[int, float] | None = None) -> None:
        """Drop claims (queue id -> the ``claimed_until`` it holds; a claim since taken over is
        left alone). None: every claim -- only for a queue runner that is the only one (a single
        node starting after a crash); with several nodes, a crashed node's claims lapse."""
        if claims is None:
            await self.db.write(lambda tx: tx.execute("UPDATE queue SET claimed_until = NULL"))
            return
        await self.db.write(lambda tx: tx.executemany(
            "UPDATE queue SET claimed_until = NULL WHERE id = ? AND claimed_until = ?", list(claims.items())))

    async def queue_next_due(self) -> float | None:
        """The earliest next_attempt of an unclaimed entry (the worker sleeps until then)."""
        return await self.db.read(lambda tx: tx.scalar(
            "SELECT min(next_attempt) FROM queue WHERE claimed_until IS NULL"))

    async def queue_mark_delivered(self, recipient_ids: Sequence[int], note: str) -> None:
        """Record that the remote accepted these recipients (called right after each transaction)."""
        now = time.time()
        await self.db.write(lambda tx: tx.executemany(
            "UPDATE queue_recipients SET status = 'delivered', last_error = ?, updated_at = ? WHERE id = ?",
            [(note, now, rid) for rid in recipient_ids]))

    async def queue_finish(self, queue_id: int, *, failed: Sequence[tuple[int, str]] = (),
                           deferred: Sequence[tuple[int, str]] = (), next_attempt: float,
                           notice: tuple[int | None, str, bytes] | None = None,
                           delay_notified: bool = False) -> bool:
        """End one delivery attempt in one transaction.

        ``failed`` recipients become 'failed', ``deferred`` keep 'pending' with their error;
        ``notice`` = (account id or None, address, raw DSN) files a bounce or delay notice into
        that account's INBOX, or queues it with the null sender to ``address`` when the account
        is None -- in the same commit as the status change, so a crash can neither lose the
        notice nor send it twice. The entry is removed once no recipient is pending (returns
        True); otherwise it is unclaimed and rescheduled at ``next_attempt``."""
        blob: tuple[str, tuple[Any, ...], int] | None = None
        if notice is not None:
            blob = await self._put_blob(notice[2])

        def op(tx: Tx) -> bool:
            now = time.time()
            if tx.one("SELECT 1 FROM queue WHERE id = ?", (queue_id,)) is None:
                return True  # deleted meanwhile (queue delete)
            tx.executemany("UPDATE queue_recipients SET status = 'failed', last_error = ?, updated_at = ? "
                           "WHERE id = ? AND status = 'pending'", [(err, now, rid) for rid, err in failed])
            tx.executemany("UPDATE queue_recipients SET last_error = ?, updated_at = ? "
                           "WHERE id = ? AND status = 'pending'", [(err, now, rid) for rid, err in deferred])
            if notice is not None and blob is not None:
                account_id, address, _ = notice
                blob_id, row, size = blob
                self._insert_blob(tx, row)
                if account_id is not None and tx.one("SELECT 1 FROM accounts WHERE id = ?", (account_id,)):
                    box = tx.one("SELECT id FROM mailboxes WHERE account_id = ? AND name = 'INBOX'", (account_id,))
                    self._insert_messages(tx, account_id, box[0], [(blob_id, size, 0, "", now, DELIVERY_ZONE)])
                elif address:
                    notice_id = tx.insert("INSERT INTO queue (mail_from, blob_id, account_id, created_at, "
                                          "next_attempt) VALUES ('', ?, NULL, ?, ?)", (blob_id, now, now))
                    tx.execute("INSERT INTO queue_recipients (queue_id, recipient, domain, updated_at) "
                               "VALUES (?, ?, ?, ?)", (notice_id, address, address.rpartition("@")[2].lower(), now))
            pending = tx.scalar("SELECT count(*) FROM queue_recipients WHERE queue_id = ? AND status = 'pending'",
                                (queue_id,))
            if not pending:
                tx.execute("DELETE FROM queue WHERE id = ?", (queue_id,))
                return True
            tx.execute("UPDATE queue SET attempts = attempts + 1, next_attempt = ?, claimed_until = NULL, "
                       "delay_notified = CASE WHEN ? = 1 THEN 1 ELSE delay_notified END WHERE id = ?",
                       (next_attempt, 1 if delay_notified else 0, queue_id))
            return False
        return await self.db.write(op)

    async def queue_retry(self, queue_id: int | None = None) -> int:
        """Make one entry (None: every entry) due now; returns how many entries that touched."""
        if queue_id is None:
            return await self.db.write(lambda tx: tx.execute("UPDATE queue SET next_attempt = 0").rowcount)
        return await self.db.write(lambda tx: tx.execute(
            "UPDATE queue SET next_attempt = 0 WHERE id = ?", (queue_id,)).rowcount)

    async def queue_delete(self, queue_id: int) -> bool:
        """Remove an entry without notifying anyone (the operator's decision)."""
        return bool(await self.db.write(lambda tx: tx.execute("DELETE FROM queue WHERE id = ?", (queue_id,)).rowcount))

    async def dkim_keys(self, domain: str) -> list[dict[str, Any]]:
        """The DKIM keys of a domain: selector, algorithm, private_key (PEM), public_txt."""
        return await self.db.read(lambda tx: [dict(r) for r in tx.all(
            "SELECT selector, algorithm, private_key, public_txt, created_at FROM dkim_keys WHERE domain = ? "
            "ORDER BY id", (domain.lower(),))])

    async def dkim_add_keys(self, domain: str, keys: Sequence[tuple[str, str, str, str]]) -> list[dict[str, Any]]:
        """Store (selector, algorithm, private PEM, TXT value) unless the selector exists; return all keys.

        Two concurrent generators converge on whichever insert committed first."""
        now = time.time()
        await self.db.write(lambda tx: tx.executemany(
            "INSERT INTO dkim_keys (domain, selector, algorithm, private_key, public_txt, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (domain, selector) DO NOTHING",
            [(domain.lower(), sel, alg, pem, txt, now) for sel, alg, pem, txt in keys]))
        return await self.dkim_keys(domain)

    # == end of outbound section ===============================================================

    # == metrics (services/metrics.py) ==========================================================

    async def queue_counts(self) -> dict[str, Any]:
        """{"entries": n, "recipients": {status: n}} for the /metrics scrape."""
        def op(tx: Tx) -> dict[str, Any]:
            return {"entries": int(tx.scalar("SELECT count(*) FROM queue") or 0),
                    "recipients": {str(status): int(n) for status, n in tx.all(
                        "SELECT status, count(*) FROM queue_recipients GROUP BY status")}}
        return await self.db.read(op)
