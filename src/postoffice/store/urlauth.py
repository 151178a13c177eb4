"""URLAUTH mailbox access keys (RFC 4467 section 7): one random key per user and mailbox,
made on first use by GENURLAUTH and replaced by RESETKEY (which invalidates every URL made
with the old one)."""

from __future__ import annotations

import secrets
import time

from .db import Tx
from .rows import StoreBase

__all__ = ["UrlAuthStore"]


class UrlAuthStore(StoreBase):
    async def urlauth_key(self, account_id: int, mailbox: str, *, create: bool) -> bytes | None:
        """The access key of ``mailbox`` (its name), made now when ``create`` and missing."""
        def op(tx: Tx) -> bytes | None:
            row = tx.one("SELECT key FROM urlauth_keys WHERE account_id = ? AND mailbox = ?", (account_id, mailbox))
            if row is not None:
                return bytes.fromhex(row[0])
            if not create:
                return None
            key = secrets.token_bytes(32)
            tx.execute("INSERT INTO urlauth_keys (account_id, mailbox, key, created_at) VALUES (?, ?, ?, ?)",
                       (account_id, mailbox, key.hex(), time.time()))
            return key
        if not create:
            return await self.db.read(op)
        return await self.db.write(op)

    async def reset_urlauth_keys(self, account_id: int, mailbox: str | None = None) -> None:
        """RESETKEY: forget the key of ``mailbox`` (every key of the user with None); a new
        one is made on the next GENURLAUTH."""
        def op(tx: Tx) -> None:
            if mailbox is None:
                tx.execute("DELETE FROM urlauth_keys WHERE account_id = ?", (account_id,))
            else:
                tx.execute("DELETE FROM urlauth_keys WHERE account_id = ? AND mailbox = ?", (account_id, mailbox))
        await self.db.write(op)
