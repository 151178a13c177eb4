"""Server-side panel sessions (web/auth.py): the cookie names one; revoking deletes it."""

from __future__ import annotations

import time

from .db import Tx
from .rows import StoreBase


class PanelSessionStore(StoreBase):
    async def add_panel_session(self, session_hash: str, kind: str, name: str, max_age: float) -> None:
        def op(tx: Tx) -> None:
            now = time.time()
            tx.execute("DELETE FROM panel_sessions WHERE created_at < ?", (now - max_age,))  # expired ones
            tx.execute("INSERT INTO panel_sessions (id, kind, name, created_at) VALUES (?, ?, ?, ?)",
                       (session_hash, kind, name, now))
        await self.db.write(op)

    async def panel_session_alive(self, session_hash: str, kind: str, name: str, max_age: float) -> bool:
        row = await self.db.read(lambda tx: tx.one(
            "SELECT kind, name, created_at FROM panel_sessions WHERE id = ?", (session_hash,)))
        return row is not None and row[0] == kind and row[1] == name and row[2] > time.time() - max_age

    async def remove_panel_session(self, session_hash: str) -> None:
        await self.db.write(lambda tx: tx.execute("DELETE FROM panel_sessions WHERE id = ?", (session_hash,)))

    async def remove_panel_sessions(self, kind: str, name: str, keep: str | None = None) -> int:
        """End every session of this login (but ``keep``); returns how many ended."""
        return int(await self.db.write(lambda tx: tx.execute(
            "DELETE FROM panel_sessions WHERE kind = ? AND name = ? AND id != ?", (kind, name, keep or "")).rowcount))

    async def count_panel_sessions(self, kind: str, name: str) -> int:
        return int(await self.db.read(lambda tx: tx.scalar(
            "SELECT count(*) FROM panel_sessions WHERE kind = ? AND name = ?", (kind, name))) or 0)


__all__ = ["PanelSessionStore"]
