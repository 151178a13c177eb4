"""Two-factor login records (services/totp.py, web/pages/twofactor.py) and the per-address
"app passwords only" switch."""

from __future__ import annotations

import time

from .db import Tx
from .records import AccountChanged
from .rows import StoreBase


class TwoFactorStore(StoreBase):
    async def get_totp(self, kind: str, name: str) -> tuple[str, int | None] | None:
        """(secret, last accepted step) when 2FA is on for this login."""
        row = await self.db.read(lambda tx: tx.one(
            "SELECT secret, last_step FROM panel_totp WHERE kind = ? AND name = ?", (kind, name)))
        return (row[0], row[1]) if row else None

    async def enable_totp(self, kind: str, name: str, secret: str, step: int, recovery_hashes: list[str]) -> None:
        def op(tx: Tx) -> None:
            tx.execute("DELETE FROM panel_totp WHERE kind = ? AND name = ?", (kind, name))
            tx.execute("DELETE FROM panel_recovery_codes WHERE kind = ? AND name = ?", (kind, name))
            tx.execute("INSERT INTO panel_totp (kind, name, secret, last_step, enabled_at) VALUES (?, ?, ?, ?, ?)",
                       (kind, name, secret, step, time.time()))
            tx.executemany("INSERT INTO panel_recovery_codes (kind, name, code_hash) VALUES (?, ?, ?)",
                           [(kind, name, h) for h in recovery_hashes])
        await self.db.write(op)

    async def disable_totp(self, kind: str, name: str) -> None:
        def op(tx: Tx) -> None:
            tx.execute("DELETE FROM panel_totp WHERE kind = ? AND name = ?", (kind, name))
            tx.execute("DELETE FROM panel_recovery_codes WHERE kind = ? AND name = ?", (kind, name))
            if kind == "user":  # app-passwords-only needs 2FA: it goes with it
                row = tx.one("SELECT id FROM accounts WHERE address = ?", (name,))
                if row is not None:
                    tx.execute("DELETE FROM account_security WHERE account_id = ?", (row[0],))
                    tx.emit(AccountChanged(row[0]))
        await self.db.write(op)

    async def accept_totp_step(self, kind: str, name: str, step: int) -> bool:
        """Record ``step`` as used; False when it (or a later one) was used already."""
        def op(tx: Tx) -> bool:
            return bool(tx.execute("UPDATE panel_totp SET last_step = ? WHERE kind = ? AND name = ? AND "
                                   "(last_step IS NULL OR last_step < ?)", (step, kind, name, step)).rowcount)
        return await self.db.write(op)

    async def use_recovery_code(self, kind: str, name: str, code_hash: str) -> bool:
        def op(tx: Tx) -> bool:
            return bool(tx.execute("UPDATE panel_recovery_codes SET used_at = ? WHERE kind = ? AND name = ? AND "
                                   "code_hash = ? AND used_at IS NULL", (time.time(), kind, name, code_hash)).rowcount)
        return await self.db.write(op)

    async def recovery_codes_left(self, kind: str, name: str) -> int:
        return int(await self.db.read(lambda tx: tx.scalar(
            "SELECT count(*) FROM panel_recovery_codes WHERE kind = ? AND name = ? AND used_at IS NULL",
            (kind, name))) or 0)

    async def app_passwords_only(self, account_id: int) -> bool:
        row = await self.db.read(lambda tx: tx.one(
            "SELECT app_passwords_only FROM account_security WHERE account_id = ?", (account_id,)))
        return bool(row and row[0])

    async def set_app_passwords_only(self, account_id: int, on: bool) -> None:
        def op(tx: Tx) -> None:
            tx.execute("INSERT INTO account_security (account_id, app_passwords_only) VALUES (?, ?) "
                       "ON CONFLICT (account_id) DO UPDATE SET app_passwords_only = excluded.app_passwords_only",
                       (account_id, int(on)))
        await self.db.write(op)


__all__ = ["TwoFactorStore"]
