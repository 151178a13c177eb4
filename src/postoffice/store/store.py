"""The Store: domains, accounts, aliases, mailboxes, messages and the outbound queue.

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
from array import array
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

from ..mail import analyze
from ..mail.mime import canonicalize_crlf
from . import migrations
from .blobs import BlobStore
from .db import Database, Tx
from .records import (
    DELETED,
    PROTOCOLS,
    SEEN,
    SPECIAL_FOLDERS,
    Account,
    AccountChanged,
    Alias,
    AlreadyExists,
    BlobInfo,
    Delivered,
    Domain,
    FlagsChanged,
    InvalidName,
    Mailbox,
    MailboxesChanged,
    MailboxStatus,
    MessageMeta,
    MessagesAdded,
    MessagesExpunged,
    NotFound,
    QuotaExceeded,
)

T = TypeVar("T")
#: Threads writing message bodies (see Store.__init__).
BLOB_WRITERS = 32
BLOB_GRACE_SECONDS = 3600

_ACCOUNT_COLUMNS = (
    "id, domain_id, address, display_name, password_hash, password_changed_at, imap_enabled, "
    "pop3_enabled, smtp_enabled, quota_bytes, forward_to, pop3_policy, pop3_since, created_at"
)
_MAILBOX_COLUMNS = "id, account_id, name, special_use, uidvalidity, uidnext, highestmodseq, subscribed"
_MESSAGE_COLUMNS = "uid, flags, keywords, size, internal_date, modseq, blob_id"


def _account(row: Any) -> Account:
    return Account(
        id=row[0], domain_id=row[1], address=row[2], display_name=row[3], password_hash=row[4],
        password_changed_at=row[5], imap_enabled=bool(row[6]), pop3_enabled=bool(row[7]),
        smtp_enabled=bool(row[8]), quota_bytes=row[9], forward_to=row[10], pop3_policy=row[11],
        pop3_since=row[12], created_at=row[13],
    )


def _mailbox(row: Any) -> Mailbox:
    return Mailbox(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bool(row[7]))


def _message(row: Any) -> MessageMeta:
    return MessageMeta(row[0], row[1], row[2], row[3], row[4], row[5], row[6])


def _domain(row: Any) -> Domain:
    return Domain(row[0], row[1], row[2], row[3], row[4])


def validate_mailbox_name(name: str) -> str:
    """Mailbox names are '/'-separated paths of non-empty parts; INBOX is canonical upper case.

    Names live only in the database, so they cannot reach the file system, but we still refuse
    what no client can mean: empty parts, control characters, and '.'/'..' parts."""
    if not name or len(name) > 1000:
        raise InvalidName("mailbox name is empty or too long")
    parts = name.split("/")
    if parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    for part in parts:
        if not part or part in (".", "..") or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in part):
            raise InvalidName(f"invalid mailbox name {name!r}")
        if "*" in part or "%" in part:
            raise InvalidName("mailbox names may not contain * or %")
    return "/".join(parts)


class Store:
    """All persistent state. Construct with `Store.open`; close with `close`."""

    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db = db
        self.blobs = blobs
        # Body writes wait mostly on fsync, and the file system commits concurrent fsyncs
        # together: many writers in parallel go much faster than the default executor's
        # cpu+4 threads (measured: 6 threads ~1,000 blobs/s, 16 threads ~2,900/s).
        self._writers = concurrent.futures.ThreadPoolExecutor(BLOB_WRITERS, thread_name_prefix="postoffice-blob")

    @classmethod
    def open(cls, data_dir: Path, database: Path | None = None,
             on_commit: Callable[[list[Any]], None] | None = None) -> Store:
        data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(database or data_dir / "postoffice.db", on_commit=on_commit)
        db.write_sync(migrations.migrate)
        blobs = BlobStore(data_dir / "blobs")
        blobs.clean_tmp()
        return cls(db, blobs)

    def close(self) -> None:
        self.db.close()
        self._writers.shutdown(wait=True)

    async def data_version(self) -> int:
        """Changes whenever another process (the CLI) commits to the database."""
        return int(await self.db.read(lambda tx: tx.scalar("PRAGMA data_version")))

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
            cur = tx.execute("INSERT INTO domains (name, created_at) VALUES (?, ?)", (name, now))
            return Domain(int(cur.lastrowid or 0), name, "any", None, now)
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
            cur = tx.execute(
                "INSERT INTO accounts (domain_id, address, display_name, password_hash, "
                "password_changed_at, quota_bytes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (row[0], address, display_name, password_hash, now, quota_bytes, now))
            account_id = int(cur.lastrowid or 0)
            self._create_mailbox(tx, account_id, "INBOX", None)
            for name, use in SPECIAL_FOLDERS:
                self._create_mailbox(tx, account_id, name, use)
            return _account(tx.one(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (account_id,)))
        return await self.db.write(op)

    async def get_account(self, address: str) -> Account | None:
        row = await self.db.read(lambda tx: tx.one(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE address = ?", (address,)))
        return _account(row) if row else None

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
            cur = tx.execute("INSERT INTO aliases (domain_id, address, targets, created_at) VALUES (?, ?, ?, ?)",
                             (row[0], address, "\n".join(targets), time.time()))
            return Alias(int(cur.lastrowid or 0), row[0], address, tuple(targets))
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
            cur = tx.execute("INSERT INTO admins (username, password_hash, role, created_at) VALUES (?, ?, ?, ?)",
                             (username, password_hash, role, time.time()))
            return int(cur.lastrowid or 0)
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
            cur = tx.execute("INSERT INTO api_tokens (admin_id, name, token_hash, created_at) VALUES (?, ?, ?, ?)",
                             (admin_id, name, token_hash, time.time()))
            return int(cur.lastrowid or 0)
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

    # == mailboxes =============================================================================

    def _next_uidvalidity(self, tx: Tx) -> int:
        last = int(tx.scalar("SELECT value FROM settings WHERE name = 'uidvalidity'") or 0)
        value = max(last + 1, int(time.time()))
        tx.execute("INSERT INTO settings (name, value) VALUES ('uidvalidity', ?) "
                   "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (str(value),))
        return value

    def _create_mailbox(self, tx: Tx, account_id: int, name: str, special_use: str | None) -> int:
        cur = tx.execute(
            "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity, created_at) VALUES (?, ?, ?, ?, ?)",
            (account_id, name, special_use, self._next_uidvalidity(tx), time.time()))
        return int(cur.lastrowid or 0)

    async def list_mailboxes(self, account_id: int) -> list[Mailbox]:
        rows = await self.db.read(lambda tx: tx.all(
            f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = ? ORDER BY name", (account_id,)))
        return [_mailbox(r) for r in rows]

    async def get_mailbox(self, account_id: int, name: str) -> Mailbox | None:
        row = await self.db.read(lambda tx: tx.one(
            f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, name)))
        return _mailbox(row) if row else None

    async def get_mailbox_by_id(self, mailbox_id: int) -> Mailbox | None:
        row = await self.db.read(lambda tx: tx.one(
            f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE id = ?", (mailbox_id,)))
        return _mailbox(row) if row else None

    async def special_mailbox(self, account_id: int, special_use: str) -> Mailbox | None:
        row = await self.db.read(lambda tx: tx.one(
            f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = ? AND special_use = ? "
            "ORDER BY id LIMIT 1", (account_id, special_use)))
        return _mailbox(row) if row else None

    async def create_mailbox(self, account_id: int, name: str, special_use: str | None = None) -> Mailbox:
        """Create ``name`` and any missing parents (RFC 9051 §6.3.4)."""
        name = validate_mailbox_name(name)

        def op(tx: Tx) -> Mailbox:
            if tx.scalar("SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, name)):
                raise AlreadyExists(f"mailbox {name} already exists")
            parts = name.split("/")
            for depth in range(1, len(parts)):
                parent = "/".join(parts[:depth])
                if not tx.scalar("SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?",
                                 (account_id, parent)):
                    self._create_mailbox(tx, account_id, parent, None)
            mailbox_id = self._create_mailbox(tx, account_id, name, special_use)
            tx.emit(MailboxesChanged(account_id))
            return _mailbox(tx.one(f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE id = ?", (mailbox_id,)))
        return await self.db.write(op)

    async def delete_mailbox(self, account_id: int, name: str) -> None:
        """Delete a mailbox and its messages. INBOX cannot be deleted (RFC 9051 §6.3.5); a
        mailbox with children keeps existing as their parent in our model, so it is refused."""
        def op(tx: Tx) -> None:
            row = tx.one("SELECT id FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, name))
            if not row:
                raise NotFound(f"no mailbox {name}")
            if name == "INBOX":
                raise InvalidName("INBOX cannot be deleted")
            if tx.scalar("SELECT 1 FROM mailboxes WHERE account_id = ? AND name LIKE ? ESCAPE '\\'",
                         (account_id, _like_prefix(name + "/"))):
                raise AlreadyExists(f"mailbox {name} has child mailboxes; delete them first")
            uids = tuple(r[0] for r in tx.all("SELECT uid FROM messages WHERE mailbox_id = ?", (row[0],)))
            if uids:
                tx.emit(MessagesExpunged(account_id, row[0], uids, 0))
            tx.execute("DELETE FROM mailboxes WHERE id = ?", (row[0],))
            tx.emit(MailboxesChanged(account_id, deleted_mailbox_id=row[0]))
        await self.db.write(op)

    async def rename_mailbox(self, account_id: int, old: str, new: str) -> None:
        """Rename a mailbox and its children. Renaming INBOX moves its messages to a new
        mailbox and leaves INBOX empty (RFC 9051 §6.3.6)."""
        new = validate_mailbox_name(new)

        def op(tx: Tx) -> None:
            row = tx.one("SELECT id FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, old))
            if not row:
                raise NotFound(f"no mailbox {old}")
            if tx.scalar("SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, new)):
                raise AlreadyExists(f"mailbox {new} already exists")
            if new.startswith(old + "/"):
                raise InvalidName("cannot rename a mailbox into itself")
            parts = new.split("/")
            for depth in range(1, len(parts)):
                parent = "/".join(parts[:depth])
                if not tx.scalar("SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, parent)):
                    self._create_mailbox(tx, account_id, parent, None)
            if old == "INBOX":
                target = self._create_mailbox(tx, account_id, new, None)
                self._move_all(tx, account_id, row[0], target)
            else:
                children = tx.all("SELECT id, name FROM mailboxes WHERE account_id = ? AND name LIKE ? ESCAPE '\\'",
                                  (account_id, _like_prefix(old + "/")))
                tx.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (new, row[0]))
                for child_id, child_name in children:
                    tx.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (new + child_name[len(old):], child_id))
            tx.emit(MailboxesChanged(account_id))
        await self.db.write(op)

    def _move_all(self, tx: Tx, account_id: int, source: int, target: int) -> None:
        uids = [r[0] for r in tx.all("SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid", (source,))]
        if uids:
            self._copy(tx, account_id, source, uids, target)
            self._expunge(tx, account_id, source, uids)

    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None:
        def op(tx: Tx) -> None:
            if not tx.execute("UPDATE mailboxes SET subscribed = ? WHERE account_id = ? AND name = ?",
                              (int(subscribed), account_id, name)).rowcount:
                raise NotFound(f"no mailbox {name}")
        await self.db.write(op)

    async def mailbox_status(self, mailbox_id: int) -> MailboxStatus:
        def op(tx: Tx) -> MailboxStatus:
            box = tx.one("SELECT uidnext, uidvalidity, highestmodseq FROM mailboxes WHERE id = ?", (mailbox_id,))
            if not box:
                raise NotFound("mailbox is gone")
            row = tx.one(
                "SELECT count(*), coalesce(sum(flags & ? = 0), 0), coalesce(sum(flags & ? != 0), 0), "
                "coalesce(sum(size), 0) FROM messages WHERE mailbox_id = ?", (SEEN, DELETED, mailbox_id))
            return MailboxStatus(row[0], row[1], row[2], row[3], box[0], box[1], box[2])
        return await self.db.read(op)

    # == messages ==============================================================================

    async def list_messages(self, mailbox_id: int) -> list[MessageMeta]:
        """Every message of the mailbox in UID order (what SELECT needs)."""
        rows = await self.db.read(lambda tx: tx.all(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE mailbox_id = ? ORDER BY uid", (mailbox_id,)))
        return [_message(r) for r in rows]

    async def flag_index(self, mailbox_id: int) -> tuple[Mailbox | None, array, bytearray, array, dict[int, str]]:
        """One snapshot of the mailbox row and every message's (uid, flag bits, modseq, keywords)
        as compact arrays in UID order: the IMAP server's shared per-mailbox index (no
        per-message objects, so SELECT of a large mailbox stays cheap)."""
        def op(tx: Tx) -> tuple[Mailbox | None, array, bytearray, array, dict[int, str]]:
            uids, bits, modseqs, keywords = array("I"), bytearray(), array("Q"), {}
            row = tx.one(f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE id = ?", (mailbox_id,))
            if row is None:
                return None, uids, bits, modseqs, keywords
            cur = tx.conn.cursor()
            cur.row_factory = None
            # Column-wise: one fetchall, then each array built by C-level iteration (no Python
            # loop per message). ``messages_index`` (migration 4) covers the query.
            rows = cur.execute("SELECT uid, flags & 255, modseq, keywords FROM messages WHERE mailbox_id = ? "
                               "ORDER BY uid", (mailbox_id,)).fetchall()
            uids = array("I", map(itemgetter(0), rows))
            bits = bytearray(map(itemgetter(1), rows))
            modseqs = array("Q", map(itemgetter(2), rows))
            keywords = {r[0]: r[3] for r in rows if r[3]}
            return _mailbox(row), uids, bits, modseqs, keywords
        return await self.db.read(op)

    async def message_details(self, mailbox_id: int) -> tuple[array, array, array]:
        """(uids, sizes, internal dates) of every message as arrays in UID order: the
        immutable per-message data the IMAP index loads when a FETCH or SEARCH first needs
        RFC822.SIZE / INTERNALDATE (covered by ``messages_index``, no per-message objects)."""
        def op(tx: Tx) -> tuple[array, array, array]:
            cur = tx.conn.cursor()
            cur.row_factory = None
            rows = cur.execute("SELECT uid, size, internal_date FROM messages WHERE mailbox_id = ? ORDER BY uid",
                               (mailbox_id,)).fetchall()
            return (array("I", map(itemgetter(0), rows)), array("Q", map(itemgetter(1), rows)),
                    array("d", map(itemgetter(2), rows)))
        return await self.db.read(op)

    async def get_messages(self, mailbox_id: int, uids: Iterable[int]) -> list[MessageMeta]:
        uid_list = sorted(set(uids))

        def op(tx: Tx) -> list[Any]:
            out: list[Any] = []
            for start in range(0, len(uid_list), 500):
                chunk = uid_list[start:start + 500]
                out.extend(tx.all(
                    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE mailbox_id = ? AND uid IN "
                    f"({','.join('?' * len(chunk))}) ORDER BY uid", (mailbox_id, *chunk)))
            return out
        return [_message(r) for r in await self.db.read(op)]

    async def blob_info(self, blob_ids: Iterable[str]) -> dict[str, BlobInfo]:
        ids = list(set(blob_ids))

        def op(tx: Tx) -> list[Any]:
            out: list[Any] = []
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                out.extend(tx.all(
                    "SELECT id, size, header_size, envelope, bodystructure, body, structure FROM blobs "
                    f"WHERE id IN ({','.join('?' * len(chunk))})", chunk))
            return out
        return {r[0]: BlobInfo(*r) for r in await self.db.read(op)}

    async def read_blob(self, blob_id: str) -> bytes:
        return await asyncio.to_thread(self.blobs.get, blob_id)

    @staticmethod
    def _blob_row(blob_id: str, raw: bytes) -> tuple[Any, ...]:
        """Parse the message once (mail.analyze) and keep what FETCH and SEARCH reuse."""
        info = analyze(raw)
        return (
            blob_id, len(raw), info.tree.body_start, info.envelope, info.bodystructure, info.body,
            info.tree.to_json(), info.subject, info.from_, info.to, info.cc, info.bcc, info.message_id,
            info.in_reply_to, info.date.timestamp() if info.date else None, time.time(),
        )

    def _write_blob(self, raw: bytes) -> tuple[str, tuple[Any, ...], int]:
        """Write the body file durably (in canonical CRLF form) and parse it (a worker thread).

        Returns (blob id, blobs row, stored size)."""
        data = canonicalize_crlf(raw)
        blob_id = self.blobs.put(data)
        return blob_id, self._blob_row(blob_id, data), len(data)

    async def _put_blob(self, raw: bytes) -> tuple[str, tuple[Any, ...], int]:
        """:meth:`_write_blob` off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._writers, self._write_blob, raw)

    @staticmethod
    def _insert_blob(tx: Tx, row: tuple[Any, ...]) -> None:
        tx.execute("INSERT INTO blobs (id, size, header_size, envelope, bodystructure, body, structure, subject, "
                   "from_addr, to_addr, cc_addr, bcc_addr, message_id, in_reply_to, sent_date, created_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING", row)

    @staticmethod
    def _insert_message(tx: Tx, account_id: int, box: Sequence[Any], item: tuple[str, int, int, str, float]) -> int:
        """One message into a mailbox whose (id, uidnext, highestmodseq) the caller just read
        in this transaction; returns its uid (:meth:`_insert_messages` for one, one SELECT less)."""
        mailbox_id, uid, modseq = box[0], box[1], box[2] + 1
        blob, size, flags, kw, date = item
        tx.execute(
            "INSERT INTO messages (mailbox_id, uid, blob_id, size, flags, keywords, internal_date, modseq, saved_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (mailbox_id, uid, blob, size, flags, kw, date, modseq, time.time()))
        tx.execute("UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?", (uid + 1, modseq, mailbox_id))
        tx.emit(MessagesAdded(account_id, mailbox_id, (uid,), modseq))
        return uid

    def _insert_messages(self, tx: Tx, account_id: int, mailbox_id: int,
                         items: Sequence[tuple[str, int, int, str, float]]) -> tuple[int, list[int]]:
        """Insert (blob_id, size, flags, keywords, internal_date) rows; return (modseq, uids)."""
        box = tx.one("SELECT uidnext, highestmodseq FROM mailboxes WHERE id = ?", (mailbox_id,))
        if box is None:
            raise NotFound("mailbox is gone")
        first_uid, modseq = box[0], box[1] + 1
        uids = list(range(first_uid, first_uid + len(items)))
        now = time.time()
        tx.executemany(
            "INSERT INTO messages (mailbox_id, uid, blob_id, size, flags, keywords, internal_date, modseq, saved_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(mailbox_id, uid, blob, size, flags, kw, date, modseq, now)
             for uid, (blob, size, flags, kw, date) in zip(uids, items)])
        tx.execute("UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?",
                   (first_uid + len(items), modseq, mailbox_id))
        tx.emit(MessagesAdded(account_id, mailbox_id, tuple(uids), modseq))
        return modseq, uids

    async def deliver(self, targets: Sequence[tuple[int, str]], raw: bytes, *,
                      enforce_quota: bool = True) -> list[Delivered]:
        """Durably store ``raw`` once and file it into each (account id, mailbox name).

        The body is written and fsynced first, then one transaction adds the index rows; the
        coroutine returns after that commit, so a caller may acknowledge the message then.
        A missing mailbox falls back to INBOX. Raises QuotaExceeded (nothing stored) when an
        account would go over its quota, OSError when the disk refuses the body."""
        done: concurrent.futures.Future[list[Delivered]] = concurrent.futures.Future()

        def op(tx: Tx, blob_id: str, row: tuple[Any, ...], size: int) -> list[Delivered]:
            self._insert_blob(tx, row)
            out = []
            for account_id, mailbox_name in targets:
                # One statement for the account, its quota and the target mailbox's counters.
                acct = tx.one("SELECT a.address, a.quota_bytes, b.id, b.uidnext, b.highestmodseq FROM accounts a "
                              "LEFT JOIN mailboxes b ON b.account_id = a.id AND b.name = ? WHERE a.id = ?",
                              (mailbox_name, account_id))
                if acct is None:
                    raise NotFound(f"account {account_id} is gone")
                if enforce_quota and acct[1] and self._quota_used(tx, account_id) + size > acct[1]:
                    raise QuotaExceeded(acct[0])
                box = acct[2:] if acct[2] is not None else tx.one(
                    "SELECT id, uidnext, highestmodseq FROM mailboxes WHERE account_id = ? AND name = 'INBOX'",
                    (account_id,))
                if box is None:
                    raise NotFound("mailbox is gone")
                uid = self._insert_message(tx, account_id, box, (blob_id, size, 0, "", time.time()))
                out.append(Delivered(account_id, box[0], uid))
            return out

        def work() -> None:
            # Body file and parse here, then straight on to the database thread: the event loop
            # is woken once, when the commit is done (not once more in between).
            if done.cancelled():
                return
            try:
                blob_id, row, size = self._write_blob(raw)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
                try:
                    done.set_exception(exc)
                except concurrent.futures.InvalidStateError:
                    pass
                return
            self.db.submit(lambda tx: op(tx, blob_id, row, size), write=True, future=done)

        self._writers.submit(work)
        return await asyncio.wrap_future(done)

    async def append(self, account_id: int, mailbox_id: int, messages: Sequence[tuple[bytes, int, str, float]],
                     *, enforce_quota: bool = True) -> tuple[int, list[int]]:
        """IMAP APPEND (several messages for MULTIAPPEND, all or none, RFC 3502).

        Each message is (raw, flag bits, keywords, internal date). Returns (uidvalidity, uids)."""
        # The bodies are written (and fsynced) concurrently: MULTIAPPEND of many messages
        # should cost about one disk sync, not one per message.
        blobs = await asyncio.gather(*(self._put_blob(raw) for raw, _, _, _ in messages))

        def op(tx: Tx) -> tuple[int, list[int]]:
            box = tx.one("SELECT uidvalidity, account_id FROM mailboxes WHERE id = ?", (mailbox_id,))
            if box is None or box[1] != account_id:
                raise NotFound("mailbox is gone")
            total = sum(size for _, _, size in blobs)
            acct = tx.one("SELECT address, quota_bytes FROM accounts WHERE id = ?", (account_id,))
            if enforce_quota and acct[1] and self._quota_used(tx, account_id) + total > acct[1]:
                raise QuotaExceeded(acct[0])
            for _, row, _ in blobs:
                self._insert_blob(tx, row)
            items = [(blob_id, size, flags, kw, date)
                     for (blob_id, _, size), (_, flags, kw, date) in zip(blobs, messages)]
            _, uids = self._insert_messages(tx, account_id, mailbox_id, items)
            return box[0], uids
        return await self.db.write(op)

    async def store_flags(self, account_id: int, mailbox_id: int, uids: Sequence[int], mode: str,
                          bits: int, keywords: Sequence[str], *, unchangedsince: int | None = None,
                          origin: object = None) -> tuple[list[tuple[int, int, str, int]], list[int]]:
        """Change flags: mode is 'set', 'add' or 'remove'.

        Returns (changed, failed): changed lists (uid, bits, keywords, modseq) of messages whose
        flags actually changed; failed lists UIDs refused by UNCHANGEDSINCE (RFC 7162 §3.1.3)."""
        uid_list = sorted(set(uids))

        def op(tx: Tx) -> tuple[list[tuple[int, int, str, int]], list[int]]:
            box = tx.one("SELECT highestmodseq FROM mailboxes WHERE id = ?", (mailbox_id,))
            if box is None:
                raise NotFound("mailbox is gone")
            modseq = box[0] + 1
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
                tx.execute("UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", (modseq, mailbox_id))
                tx.emit(FlagsChanged(account_id, mailbox_id, tuple(changed), origin))
            return changed, sorted(failed)
        return await self.db.write(op, durable=False)

    def _expunge(self, tx: Tx, account_id: int, mailbox_id: int, uids: Sequence[int]) -> tuple[int, list[int]]:
        box = tx.one("SELECT highestmodseq FROM mailboxes WHERE id = ?", (mailbox_id,))
        if box is None:
            raise NotFound("mailbox is gone")
        modseq = box[0] + 1
        gone: list[int] = []
        for start in range(0, len(uids), 500):
            chunk = list(uids[start:start + 500])
            gone.extend(r[0] for r in tx.all(
                f"DELETE FROM messages WHERE mailbox_id = ? AND uid IN ({','.join('?' * len(chunk))}) RETURNING uid",
                (mailbox_id, *chunk)))
        if gone:
            gone.sort()
            tx.executemany("INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)",
                           [(mailbox_id, uid, modseq) for uid in gone])
            tx.execute("UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", (modseq, mailbox_id))
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
            cursor = tx.conn.cursor()
            cursor.row_factory = None  # plain tuples: a login may list 10,000s of messages
            return cursor.execute(sql + " ORDER BY m.uid", params).fetchall()
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
                modseq = tx.scalar("SELECT highestmodseq FROM mailboxes WHERE id = ?", (mailbox_id,)) + 1
                tx.executemany("UPDATE messages SET flags = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?",
                               [(r[1] | SEEN, modseq, mailbox_id, r[0]) for r in unseen])
                tx.execute("UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", (modseq, mailbox_id))
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
            rows.extend(tx.all(f"SELECT uid, blob_id, size, flags, keywords, internal_date FROM messages "
                               f"WHERE mailbox_id = ? AND uid IN ({','.join('?' * len(chunk))})", (source, *chunk)))
        rows.sort(key=lambda r: r[0])
        if not rows:
            return []
        _, new_uids = self._insert_messages(tx, account_id, target, [(r[1], r[2], r[3], r[4], r[5]) for r in rows])
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

    async def search_fields(self, mailbox_id: int) -> dict[int, dict[str, Any]]:
        """Header fields kept for SEARCH, per UID: subject, from, to, cc, bcc, sent_date..."""
        rows = await self.db.read(lambda tx: tx.all(
            "SELECT m.uid, b.subject, b.from_addr, b.to_addr, b.cc_addr, b.bcc_addr, b.message_id, "
            "b.in_reply_to, b.sent_date FROM messages m JOIN blobs b ON b.id = m.blob_id "
            "WHERE m.mailbox_id = ?", (mailbox_id,)))
        keys = ("subject", "from", "to", "cc", "bcc", "message_id", "in_reply_to", "sent_date")
        return {r[0]: dict(zip(keys, r[1:])) for r in rows}

    # == queue (outbound) ======================================================================

    async def enqueue(self, mail_from: str, recipients: Sequence[str], raw: bytes, *,
                      account_id: int | None = None, envid: str | None = None, ret: str | None = None) -> int:
        """Durably queue a message for remote recipients; returns the queue id."""
        blob_id, row, _ = await self._put_blob(raw)

        def op(tx: Tx) -> int:
            self._insert_blob(tx, row)
            now = time.time()
            cur = tx.execute("INSERT INTO queue (mail_from, blob_id, account_id, created_at, next_attempt, envid, ret) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)", (mail_from, blob_id, account_id, now, now, envid, ret))
            queue_id = int(cur.lastrowid or 0)
            tx.executemany("INSERT INTO queue_recipients (queue_id, recipient, domain, updated_at) VALUES (?, ?, ?, ?)",
                           [(queue_id, rcpt, rcpt.rpartition("@")[2].lower(), now) for rcpt in recipients])
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
        return sum(await asyncio.to_thread(lambda: [self.blobs.remove(i, cutoff) for i in ids]))

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

        Runs as one write on the database thread, so two workers never claim the same entry."""
        def op(tx: Tx) -> list[dict[str, Any]]:
            ids = [r[0] for r in tx.all(
                "SELECT id FROM queue WHERE next_attempt <= ? AND (claimed_until IS NULL OR claimed_until <= ?) "
                "ORDER BY next_attempt, id LIMIT ?", (now, now, limit))]
            out = []
            for queue_id in ids:
                tx.execute("UPDATE queue SET claimed_until = ? WHERE id = ?", (now + lease, queue_id))
                entry = self._queue_entry(tx, queue_id)
                if entry is not None:
                    out.append(entry)
            return out
        return await self.db.write(op)

    async def queue_release(self, queue_ids: Sequence[int] | None = None) -> None:
        """Drop claims (None: every claim -- a single node starting up after a crash)."""
        if queue_ids is None:
            await self.db.write(lambda tx: tx.execute("UPDATE queue SET claimed_until = NULL"))
            return
        await self.db.write(lambda tx: tx.executemany(
            "UPDATE queue SET claimed_until = NULL WHERE id = ?", [(i,) for i in queue_ids]))

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
                    self._insert_messages(tx, account_id, box[0], [(blob_id, size, 0, "", now)])
                elif address:
                    cur = tx.execute("INSERT INTO queue (mail_from, blob_id, account_id, created_at, next_attempt) "
                                     "VALUES ('', ?, NULL, ?, ?)", (blob_id, now, now))
                    tx.execute("INSERT INTO queue_recipients (queue_id, recipient, domain, updated_at) "
                               "VALUES (?, ?, ?, ?)", (cur.lastrowid, address, address.rpartition("@")[2].lower(), now))
            pending = tx.scalar("SELECT count(*) FROM queue_recipients WHERE queue_id = ? AND status = 'pending'",
                                (queue_id,))
            if not pending:
                tx.execute("DELETE FROM queue WHERE id = ?", (queue_id,))
                return True
            tx.execute("UPDATE queue SET attempts = attempts + 1, next_attempt = ?, claimed_until = NULL, "
                       "delay_notified = CASE WHEN ? THEN 1 ELSE delay_notified END WHERE id = ?",
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


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


__all__ = ["Store", "validate_mailbox_name", "PROTOCOLS"]
