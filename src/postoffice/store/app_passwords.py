"""App passwords: per-address device passwords scoped to protocols (services/app_passwords.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .db import Tx
from .records import AccountChanged, NotFound
from .rows import StoreBase


@dataclass(frozen=True)
class AppPassword:
    id: int
    account_id: int
    name: str
    protocols: tuple[str, ...]
    created_at: float
    expires_at: float | None
    last_used_at: float | None

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (time.time() if now is None else now)


_COLUMNS = "id, account_id, name, protocols, created_at, expires_at, last_used_at"


def _row(r: tuple) -> AppPassword:  # type: ignore[type-arg]
    return AppPassword(r[0], r[1], r[2], tuple(r[3].split()), r[4], r[5], r[6])


class AppPasswordStore(StoreBase):
    async def add_app_password(self, account_id: int, name: str, token_hash: str, protocols: tuple[str, ...],
                               expires_at: float | None) -> AppPassword:
        def op(tx: Tx) -> AppPassword:
            if not tx.one("SELECT 1 FROM accounts WHERE id = ?", (account_id,)):
                raise NotFound(f"account {account_id}")
            new_id = tx.insert("INSERT INTO app_passwords (account_id, name, token_hash, protocols, created_at, "
                               "expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                               (account_id, name, token_hash, " ".join(protocols), time.time(), expires_at))
            return _row(tx.one(f"SELECT {_COLUMNS} FROM app_passwords WHERE id = ?", (new_id,)))
        return await self.db.write(op)

    async def list_app_passwords(self, account_id: int) -> list[AppPassword]:
        rows = await self.db.read(lambda tx: tx.all(
            f"SELECT {_COLUMNS} FROM app_passwords WHERE account_id = ? ORDER BY id", (account_id,)))
        return [_row(r) for r in rows]

    async def find_app_password(self, account_id: int, token_hash: str) -> AppPassword | None:
        row = await self.db.read(lambda tx: tx.one(
            f"SELECT {_COLUMNS} FROM app_passwords WHERE account_id = ? AND token_hash = ?", (account_id, token_hash)))
        return _row(row) if row else None

    async def remove_app_password(self, account_id: int, app_id: int) -> None:
        """Revoke: sessions that logged in with it are ended (AccountChanged re-checks them)."""
        def op(tx: Tx) -> None:
            if not tx.execute("DELETE FROM app_passwords WHERE account_id = ? AND id = ?", (account_id, app_id)).rowcount:
                raise NotFound(f"app password {app_id}")
            tx.emit(AccountChanged(account_id))
        await self.db.write(op)

    async def touch_app_password(self, app_id: int) -> None:
        await self.db.write(lambda tx: tx.execute("UPDATE app_passwords SET last_used_at = ? WHERE id = ?",
                                                  (time.time(), app_id)), durable=False)


__all__ = ["AppPassword", "AppPasswordStore"]
