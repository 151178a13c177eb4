"""Sieve scripts per address (ManageSieve, the panel) and the vacation-reply record."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .db import Tx
from .records import AlreadyExists, NotFound, StoreError
from .rows import StoreBase


@dataclass(frozen=True)
class SieveScriptChanged:
    """An address's scripts changed (delivery's script cache forgets it)."""

    account_id: int


@dataclass(frozen=True)
class SieveScript:
    name: str
    content: str
    active: bool
    updated_at: float


class ScriptActive(StoreError):
    """The active script cannot be deleted (RFC 5804 §2.10: NO (ACTIVE))."""


class SieveStore(StoreBase):
    async def list_sieve_scripts(self, account_id: int) -> list[SieveScript]:
        rows = await self.db.read(lambda tx: tx.all(
            "SELECT name, content, active, updated_at FROM sieve_scripts WHERE account_id = ? ORDER BY name",
            (account_id,)))
        return [SieveScript(r[0], r[1], bool(r[2]), r[3]) for r in rows]

    async def get_sieve_script(self, account_id: int, name: str) -> SieveScript | None:
        row = await self.db.read(lambda tx: tx.one(
            "SELECT name, content, active, updated_at FROM sieve_scripts WHERE account_id = ? AND name = ?",
            (account_id, name)))
        return SieveScript(row[0], row[1], bool(row[2]), row[3]) if row else None

    async def active_sieve_script(self, account_id: int) -> SieveScript | None:
        row = await self.db.read(lambda tx: tx.one(
            "SELECT name, content, active, updated_at FROM sieve_scripts WHERE account_id = ? AND active = 1",
            (account_id,)))
        return SieveScript(row[0], row[1], True, row[3]) if row else None

    async def put_sieve_script(self, account_id: int, name: str, content: str, *, max_scripts: int = 0) -> None:
        """Create or replace a script (an active one stays active, RFC 5804 §2.6)."""
        def op(tx: Tx) -> None:
            now = time.time()
            cur = tx.execute("UPDATE sieve_scripts SET content = ?, updated_at = ? WHERE account_id = ? AND name = ?",
                             (content, now, account_id, name))
            if cur.rowcount:
                tx.emit(SieveScriptChanged(account_id))
                return
            if max_scripts and int(tx.scalar("SELECT count(*) FROM sieve_scripts WHERE account_id = ?",
                                             (account_id,)) or 0) >= max_scripts:
                raise StoreError(f"at most {max_scripts} scripts")
            tx.execute("INSERT INTO sieve_scripts (account_id, name, content, active, updated_at) VALUES (?, ?, ?, 0, ?)",
                       (account_id, name, content, now))
            tx.emit(SieveScriptChanged(account_id))
        await self.db.write(op)

    async def delete_sieve_script(self, account_id: int, name: str) -> None:
        def op(tx: Tx) -> None:
            row = tx.one("SELECT active FROM sieve_scripts WHERE account_id = ? AND name = ?", (account_id, name))
            if row is None:
                raise NotFound(name)
            if row[0]:
                raise ScriptActive(name)
            tx.execute("DELETE FROM sieve_scripts WHERE account_id = ? AND name = ?", (account_id, name))
            tx.emit(SieveScriptChanged(account_id))
        await self.db.write(op)

    async def rename_sieve_script(self, account_id: int, old: str, new: str) -> None:
        def op(tx: Tx) -> None:
            if tx.one("SELECT 1 FROM sieve_scripts WHERE account_id = ? AND name = ?", (account_id, new)):
                raise AlreadyExists(new)
            cur = tx.execute("UPDATE sieve_scripts SET name = ?, updated_at = ? WHERE account_id = ? AND name = ?",
                             (new, time.time(), account_id, old))
            if not cur.rowcount:
                raise NotFound(old)
        await self.db.write(op)

    async def activate_sieve_script(self, account_id: int, name: str | None) -> None:
        """Make ``name`` the one active script; ``None`` deactivates all (RFC 5804 §2.8)."""
        def op(tx: Tx) -> None:
            if name is not None and not tx.one("SELECT 1 FROM sieve_scripts WHERE account_id = ? AND name = ?",
                                               (account_id, name)):
                raise NotFound(name)
            tx.execute("UPDATE sieve_scripts SET active = 0 WHERE account_id = ? AND active = 1", (account_id,))
            if name is not None:
                tx.execute("UPDATE sieve_scripts SET active = 1 WHERE account_id = ? AND name = ?", (account_id, name))
            tx.emit(SieveScriptChanged(account_id))
        await self.db.write(op)

    async def vacation_reply_due(self, account_id: int, sender: str, handle: str, days: int,
                                 now: float | None = None) -> bool:
        """RFC 5230 §4.2: True (and remember it for ``days``) when no reply went to ``sender``
        under ``handle`` in the last ``days``; one transaction, so two deliveries at once
        cannot both reply."""
        def op(tx: Tx) -> bool:
            at = time.time() if now is None else now
            row = tx.one("SELECT until FROM sieve_vacation WHERE account_id = ? AND sender = ? AND handle = ?",
                         (account_id, sender, handle))
            if row is not None and row[0] > at:
                return False
            until = at + days * 86400
            if row is None:
                tx.execute("INSERT INTO sieve_vacation (account_id, sender, handle, until) VALUES (?, ?, ?, ?)",
                           (account_id, sender, handle, until))
            else:
                tx.execute("UPDATE sieve_vacation SET until = ? WHERE account_id = ? AND sender = ? AND handle = ?",
                           (until, account_id, sender, handle))
            # Old records are of no use: drop them as we go (bounded table).
            tx.execute("DELETE FROM sieve_vacation WHERE account_id = ? AND until < ?", (account_id, at))
            return True
        return await self.db.write(op)


__all__ = ["ScriptActive", "SieveScript", "SieveScriptChanged", "SieveStore"]
