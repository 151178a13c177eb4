"""IMAP METADATA entries (RFC 5464): per account, for the server (``mailbox_id`` 0) or one
mailbox (its id and UIDVALIDITY, so a later mailbox that reuses the id never inherits them;
RENAME keeps both, DELETE leaves rows nobody can reach, removed with the account)."""

from __future__ import annotations

from collections.abc import Sequence

from .db import Tx
from .records import MetadataChanged
from .rows import StoreBase

__all__ = ["MetadataStore", "MetadataLimit"]


class MetadataLimit(Exception):
    """SETMETADATA would leave more entries than allowed (RFC 5464 [METADATA TOOMANY])."""


class MetadataStore(StoreBase):
    async def get_metadata(self, account_id: int, mailbox_id: int, uidvalidity: int,
                           names: Sequence[str], depth: int) -> list[tuple[str, bytes]]:
        """Entries named (and, with ``depth`` 1 / -1 = infinity, their children / all
        descendants; RFC 5464 section 4.2.2), sorted by name."""
        def op(tx: Tx) -> list[tuple[str, bytes]]:
            rows = tx.all("SELECT name, value FROM metadata WHERE account_id = ? AND mailbox_id = ? AND "
                          "uidvalidity = ? ORDER BY name", (account_id, mailbox_id, uidvalidity))
            out = []
            for name, value in rows:
                for want in names:
                    if name == want:
                        out.append((name, bytes(value)))
                        break
                    if depth and name.startswith(want + "/"):
                        if depth == -1 or "/" not in name[len(want) + 1:]:
                            out.append((name, bytes(value)))
                            break
            return out
        return await self.db.read(op)

    async def set_metadata(self, account_id: int, mailbox_id: int, uidvalidity: int,
                           items: Sequence[tuple[str, bytes | None]], max_entries: int) -> None:
        """Set (or with None remove) every entry at once, or none (RFC 5464 section 4.3)."""
        def op(tx: Tx) -> None:
            for name, value in items:
                if value is None:
                    tx.execute("DELETE FROM metadata WHERE account_id = ? AND mailbox_id = ? AND uidvalidity = ? "
                               "AND name = ?", (account_id, mailbox_id, uidvalidity, name))
                else:
                    tx.execute("INSERT INTO metadata (account_id, mailbox_id, uidvalidity, name, value) "
                               "VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, mailbox_id, uidvalidity, name) "
                               "DO UPDATE SET value = excluded.value",
                               (account_id, mailbox_id, uidvalidity, name, value))
            count = tx.scalar("SELECT count(*) FROM metadata WHERE account_id = ? AND mailbox_id = ? "
                              "AND uidvalidity = ?", (account_id, mailbox_id, uidvalidity))
            if count > max_entries:
                raise MetadataLimit(count)  # the transaction is rolled back
            mailbox = tx.scalar("SELECT name FROM mailboxes WHERE id = ?", (mailbox_id,)) if mailbox_id else ""
            tx.emit(MetadataChanged(account_id, mailbox or "", tuple(name for name, _ in items)))
        await self.db.write(op)
