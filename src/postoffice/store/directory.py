"""Settings, domains, accounts, aliases, panel logins and API tokens."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from .db import Tx
from .records import (
    SPECIAL_FOLDERS,
    Account,
    AccountChanged,
    Alias,
    AlreadyExists,
    Domain,
    NotFound,
)
from .rows import _ACCOUNT_COLUMNS, StoreBase, _account, _domain


class DirectoryStore(StoreBase):
    # == settings ==============================================================================

    async def get_setting(self, name: str) -> str | None:
        return await self.db.read(lambda tx: tx.scalar("SELECT value FROM settings WHERE name = ?", (name,)))

    async def set_setting(self, name: str, value: str) -> None:
        await self.db.write(lambda tx: tx.execute(
            "INSERT INTO settings (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, value)))

    # == domains ===============================================================================

    async def add_domain(self, name: str) -> Domain:
        def op(tx: Tx) -> Domain:
            if tx.scalar("SELECT 1 FROM domains WHERE name = ?", (name,)):
                raise AlreadyExists(f"domain {name} already exists")
            now = time.time()
            domain_id = tx.insert("INSERT INTO domains (name, created_at) VALUES (?, ?)", (name, now))
            return Domain(domain_id, name, "any", None, now)
        return await self.db.write(op)

    async def get_domain(self, name: str) -> Domain | None:
        row = await self.db.read(lambda tx: tx.one(
            "SELECT id, name, protocol_policy, catch_all, created_at FROM domains WHERE name = ?", (name,)))
        return _domain(row) if row else None

    async def get_domain_by_id(self, domain_id: int) -> Domain | None:
        row = await self.db.read(lambda tx: tx.one(
            "SELECT id, name, protocol_policy, catch_all, created_at FROM domains WHERE id = ?", (domain_id,)))
        return _domain(row) if row else None

    async def list_domains(self) -> list[Domain]:
        rows = await self.db.read(lambda tx: tx.all(
            "SELECT id, name, protocol_policy, catch_all, created_at FROM domains ORDER BY name"))
        return [_domain(r) for r in rows]

    async def update_domain(self, name: str, *, protocol_policy: str | None = None,
                            catch_all: str | None | bool = False) -> Domain:
        def op(tx: Tx) -> Domain:
            row = tx.one("SELECT id FROM domains WHERE name = ?", (name,))
            if not row:
                raise NotFound(f"no domain {name}")
            if protocol_policy is not None:
                tx.execute("UPDATE domains SET protocol_policy = ? WHERE id = ?", (protocol_policy, row[0]))
            if catch_all is not False:
                tx.execute("UPDATE domains SET catch_all = ? WHERE id = ?", (catch_all or None, row[0]))
            tx.emit(AccountChanged(None, row[0]))
            return _domain(tx.one("SELECT id, name, protocol_policy, catch_all, created_at FROM domains "
                                  "WHERE id = ?", (row[0],)))
        return await self.db.write(op)

    async def remove_domain(self, name: str) -> None:
        def op(tx: Tx) -> None:
            row = tx.one("SELECT id FROM domains WHERE name = ?", (name,))
            if not row:
                raise NotFound(f"no domain {name}")
            for (account_id,) in tx.all("SELECT id FROM accounts WHERE domain_id = ?", (row[0],)):
                tx.emit(AccountChanged(account_id, row[0]))
            tx.execute("DELETE FROM domains WHERE id = ?", (row[0],))
        await self.db.write(op)

    # == accounts ==============================================================================

    async def add_account(self, address: str, password_hash: str, *, display_name: str = "",
                          quota_bytes: int = 0) -> Account:
        """Create the account with INBOX and the special-use folders (RFC 6154)."""
        def op(tx: Tx) -> Account:
            local, _, domain = address.rpartition("@")
            row = tx.one("SELECT id FROM domains WHERE name = ?", (domain,))
            if not row:
                raise NotFound(f"no domain {domain}: add it first")
            if tx.scalar("SELECT 1 FROM accounts WHERE address = ?", (address,)) or \
                    tx.scalar("SELECT 1 FROM aliases WHERE address = ?", (address,)):
                raise AlreadyExists(f"{address} already exists")
            now = time.time()
            account_id = tx.insert(
                "INSERT INTO accounts (domain_id, address, display_name, password_hash, "
                "password_changed_at, quota_bytes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (row[0], address, display_name, password_hash, now, quota_bytes, now))
            self._create_mailbox(tx, account_id, "INBOX", None)
            for name, use in SPECIAL_FOLDERS:
                self._create_mailbox(tx, account_id, name, use)
            # the folders every address starts with are subscribed (a CREATE later is not)
            tx.executemany("INSERT INTO subscriptions (account_id, name) VALUES (?, ?)",
                           [(account_id, n) for n in ["INBOX", *(name for name, _ in SPECIAL_FOLDERS)]])
            return _account(tx.one(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (account_id,)))
        return await self.db.write(op)

    async def get_account(self, address: str) -> Account | None:
        row = await self.db.read(lambda tx: tx.one(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE address = ?", (address,)))
        return _account(row) if row else None

    async def get_login(self, address: str) -> tuple[Account, Domain | None, bool] | None:
        """What a login needs, in one read: the account, its domain, and whether it accepts
        app passwords only on the mail protocols (issue 16). None for an unknown address."""
        def op(tx: Tx) -> tuple[Account, Domain | None, bool] | None:
            row = tx.one(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE address = ?", (address,))
            if not row:
                return None
            account = _account(row)
            domain = tx.one("SELECT id, name, protocol_policy, catch_all, created_at FROM domains WHERE id = ?",
                            (account.domain_id,))
            only = tx.scalar("SELECT app_passwords_only FROM account_security WHERE account_id = ?", (account.id,))
            return account, _domain(domain) if domain else None, bool(only)
        return await self.db.read(op)

    async def get_account_by_id(self, account_id: int) -> Account | None:
        row = await self.db.read(lambda tx: tx.one(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (account_id,)))
        return _account(row) if row else None

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        def op(tx: Tx) -> list[Any]:
            if domain is None:
                return tx.all(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY address")
            return tx.all(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE domain_id = "
                          "(SELECT id FROM domains WHERE name = ?) ORDER BY address", (domain,))
        return [_account(r) for r in await self.db.read(op)]

    _UPDATABLE = frozenset({"display_name", "password_hash", "imap_enabled", "pop3_enabled",
                            "smtp_enabled", "quota_bytes", "forward_to", "pop3_policy", "pop3_since"})

    async def update_account(self, address: str, **changes: Any) -> Account:
        unknown = set(changes) - self._UPDATABLE
        if unknown:
            raise ValueError(f"cannot update {', '.join(sorted(unknown))}")

        def op(tx: Tx) -> Account:
            row = tx.one("SELECT id, domain_id FROM accounts WHERE address = ?", (address,))
            if not row:
                raise NotFound(f"no account {address}")
            values = dict(changes)
            if "password_hash" in values:
                values["password_changed_at"] = time.time()
            if values:
                assignments = ", ".join(f"{key} = ?" for key in values)
                tx.execute(f"UPDATE accounts SET {assignments} WHERE id = ?", (*values.values(), row[0]))
            tx.emit(AccountChanged(row[0], row[1]))
            return _account(tx.one(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (row[0],)))
        return await self.db.write(op)

    async def rehash_password(self, account_id: int, old_hash: str, new_hash: str) -> bool:
        """Replace a password hash by one of the same password with other parameters, if it is
        still ``old_hash`` (no password change raced with it). Not a password change: no event,
        ``password_changed_at`` stays (sessions and caches bound to the password remain valid)."""
        return await self.db.write(lambda tx: tx.execute(
            "UPDATE accounts SET password_hash = ? WHERE id = ? AND password_hash = ?",
            (new_hash, account_id, old_hash)).rowcount == 1)

    async def remove_account(self, address: str) -> None:
        def op(tx: Tx) -> None:
            row = tx.one("SELECT id, domain_id FROM accounts WHERE address = ?", (address,))
            if not row:
                raise NotFound(f"no account {address}")
            tx.execute("DELETE FROM accounts WHERE id = ?", (row[0],))
            tx.emit(AccountChanged(row[0], row[1]))
        await self.db.write(op)

    async def quota_used(self, account_id: int) -> int:
        return await self.db.read(lambda tx: self._quota_used(tx, account_id))

    @staticmethod
    def _quota_used(tx: Tx, account_id: int) -> int:
        return int(tx.scalar(
            "SELECT coalesce(sum(m.size), 0) FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id "
            "WHERE b.account_id = ?", (account_id,)) or 0)

    # == aliases ===============================================================================

    async def add_alias(self, address: str, targets: Sequence[str]) -> Alias:
        def op(tx: Tx) -> Alias:
            domain = address.rpartition("@")[2]
            row = tx.one("SELECT id FROM domains WHERE name = ?", (domain,))
            if not row:
                raise NotFound(f"no domain {domain}: add it first")
            if tx.scalar("SELECT 1 FROM accounts WHERE address = ?", (address,)) or \
                    tx.scalar("SELECT 1 FROM aliases WHERE address = ?", (address,)):
                raise AlreadyExists(f"{address} already exists")
            alias_id = tx.insert("INSERT INTO aliases (domain_id, address, targets, created_at) VALUES (?, ?, ?, ?)",
                                 (row[0], address, "\n".join(targets), time.time()))
            return Alias(alias_id, row[0], address, tuple(targets))
        return await self.db.write(op)

    async def get_alias(self, address: str) -> Alias | None:
        row = await self.db.read(lambda tx: tx.one(
            "SELECT id, domain_id, address, targets FROM aliases WHERE address = ?", (address,)))
        return Alias(row[0], row[1], row[2], tuple(row[3].split())) if row else None

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        def op(tx: Tx) -> list[Any]:
            if domain is None:
                return tx.all("SELECT id, domain_id, address, targets FROM aliases ORDER BY address")
            return tx.all("SELECT id, domain_id, address, targets FROM aliases WHERE domain_id = "
                          "(SELECT id FROM domains WHERE name = ?) ORDER BY address", (domain,))
        return [Alias(r[0], r[1], r[2], tuple(r[3].split())) for r in await self.db.read(op)]

    async def remove_alias(self, address: str) -> None:
        def op(tx: Tx) -> None:
            if not tx.execute("DELETE FROM aliases WHERE address = ?", (address,)).rowcount:
                raise NotFound(f"no alias {address}")
        await self.db.write(op)

    # == admins (control panel logins) and API tokens ==========================================

    async def add_admin(self, username: str, password_hash: str, role: str = "admin") -> int:
        def op(tx: Tx) -> int:
            if tx.scalar("SELECT 1 FROM admins WHERE username = ?", (username,)):
                raise AlreadyExists(f"login {username} already exists")
            return tx.insert("INSERT INTO admins (username, password_hash, role, created_at) VALUES (?, ?, ?, ?)",
                             (username, password_hash, role, time.time()))
        return await self.db.write(op)

    async def get_admin(self, username: str) -> dict[str, Any] | None:
        row = await self.db.read(lambda tx: tx.one(
            "SELECT id, username, password_hash, role FROM admins WHERE username = ?", (username,)))
        return dict(row) if row else None

    async def count_admins(self) -> int:
        return int(await self.db.read(lambda tx: tx.scalar("SELECT count(*) FROM admins")) or 0)

    # -- panel logins, domain owners and API tokens (services/panel_users.py) ---------------

    async def list_admins(self) -> list[dict[str, Any]]:
        rows = await self.db.read(lambda tx: tx.all(
            "SELECT id, username, role, created_at FROM admins ORDER BY username"))
        return [dict(r) for r in rows]

    async def update_admin_password(self, username: str, password_hash: str) -> None:
        def op(tx: Tx) -> None:
            if not tx.execute("UPDATE admins SET password_hash = ? WHERE username = ?",
                              (password_hash, username)).rowcount:
                raise NotFound(f"no login {username}")
        await self.db.write(op)

    async def remove_admin(self, username: str) -> None:
        def op(tx: Tx) -> None:
            if not tx.execute("DELETE FROM admins WHERE username = ?", (username,)).rowcount:
                raise NotFound(f"no login {username}")
        await self.db.write(op)

    async def owned_domains(self, admin_id: int) -> list[str]:
        rows = await self.db.read(lambda tx: tx.all(
            "SELECT d.name FROM domain_owners o JOIN domains d ON d.id = o.domain_id "
            "WHERE o.admin_id = ? ORDER BY d.name", (admin_id,)))
        return [r[0] for r in rows]

    async def set_owned_domains(self, admin_id: int, domains: Sequence[str]) -> None:
        def op(tx: Tx) -> None:
            tx.execute("DELETE FROM domain_owners WHERE admin_id = ?", (admin_id,))
            for name in domains:
                row = tx.one("SELECT id FROM domains WHERE name = ?", (name,))
                if not row:
                    raise NotFound(f"no domain {name}")
                tx.execute("INSERT INTO domain_owners (admin_id, domain_id) VALUES (?, ?)", (admin_id, row[0]))
        await self.db.write(op)

    async def add_api_token(self, admin_id: int, name: str, token_hash: str) -> int:
        def op(tx: Tx) -> int:
            return tx.insert("INSERT INTO api_tokens (admin_id, name, token_hash, created_at) VALUES (?, ?, ?, ?)",
                             (admin_id, name, token_hash, time.time()))
        return await self.db.write(op)

    async def find_api_token(self, token_hash: str) -> dict[str, Any] | None:
        """The token with this hash and its owner's login, marking it used."""
        def op(tx: Tx) -> Any:
            row = tx.one("SELECT t.id, t.name, a.id AS admin_id, a.username, a.role FROM api_tokens t "
                         "JOIN admins a ON a.id = t.admin_id WHERE t.token_hash = ?", (token_hash,))
            if row:
                tx.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (time.time(), row[0]))
            return row
        row = await self.db.write(op)
        return dict(row) if row else None

    async def list_api_tokens(self, admin_id: int) -> list[dict[str, Any]]:
        rows = await self.db.read(lambda tx: tx.all(
            "SELECT id, name, created_at, last_used_at FROM api_tokens WHERE admin_id = ? ORDER BY id",
            (admin_id,)))
        return [dict(r) for r in rows]

    async def remove_api_token(self, admin_id: int, token_id: int) -> None:
        def op(tx: Tx) -> None:
            if not tx.execute("DELETE FROM api_tokens WHERE id = ? AND admin_id = ?", (token_id, admin_id)).rowcount:
                raise NotFound(f"no token {token_id}")
        await self.db.write(op)

    def setting_or_default_sync(self, name: str, default: Callable[[], str]) -> str:
        """Read a setting, storing ``default()`` first if it is missing (used before the loop serves)."""
        def op(tx: Tx) -> str:
            value = tx.scalar("SELECT value FROM settings WHERE name = ?", (name,))
            if value is None:
                value = default()
                tx.execute("INSERT INTO settings (name, value) VALUES (?, ?)", (name, value))
            return str(value)
        return self.db.write_sync(op)

    # -- end of panel section ---------------------------------------------------------------

