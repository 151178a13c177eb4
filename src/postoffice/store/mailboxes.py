"""Mailboxes: create (with parents), rename (the INBOX rule), delete, subscribe, status."""

from __future__ import annotations

import time
import unicodedata

from .db import Tx
from .records import (
    DELETED,
    SEEN,
    AlreadyExists,
    InvalidName,
    Mailbox,
    MailboxesChanged,
    MailboxStatus,
    MessagesExpunged,
    NotFound,
    SubscriptionChanged,
)
from .rows import _MAILBOX_COLUMNS, StoreBase, _mailbox

#: a name below the one `_under` gives, compared as it is (LIKE ignores ASCII case in SQLite
#: but not in PostgreSQL; mailbox names other than INBOX are case-sensitive, RFC 9051 §5.1)
_UNDER = "substr(name, 1, ?) = ?"


def _under(name: str) -> tuple[int, str]:
    prefix = name + "/"
    return len(prefix), prefix


def validate_mailbox_name(name: str) -> str:
    """Mailbox names are '/'-separated paths of non-empty parts; INBOX is canonical upper case;
    Unicode in NFC, so "café" typed on a Mac (NFD) and on a phone (NFC) is one mailbox
    (RFC 9051 §5.1: servers SHOULD normalise names to NFC; RFC 5198).

    Names live only in the database, so they cannot reach the file system, but we still refuse
    what no client can mean: empty parts, control characters, and '.'/'..' parts."""
    if not name.isascii():
        name = unicodedata.normalize("NFC", name)
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


class MailboxStore(StoreBase):
    # == mailboxes =============================================================================

    def _next_uidvalidity(self, tx: Tx) -> int:
        # locked until the commit: a mailbox made on another node at the same time takes the next
        last = int(tx.scalar(tx.for_update("SELECT value FROM settings WHERE name = 'uidvalidity'")) or 0)
        value = max(last + 1, int(time.time()))
        tx.execute("INSERT INTO settings (name, value) VALUES ('uidvalidity', ?) "
                   "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (str(value),))
        return value

    def _create_mailbox(self, tx: Tx, account_id: int, name: str, special_use: str | None) -> int:
        return tx.insert(
            "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity, created_at) VALUES (?, ?, ?, ?, ?)",
            (account_id, name, special_use, self._next_uidvalidity(tx), time.time()))

    async def list_mailboxes(self, account_id: int) -> list[Mailbox]:
        rows = await self.db.read(lambda tx: tx.all(
            f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE account_id = ? ORDER BY name", (account_id,)))
        return [_mailbox(r) for r in rows]

    async def get_mailbox(self, account_id: int, name: str) -> Mailbox | None:
        if not name.isascii():
            name = unicodedata.normalize("NFC", name)  # stored names are NFC (validate_mailbox_name)
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
            created = self._create_parents(tx, account_id, name)
            mailbox_id = self._create_mailbox(tx, account_id, name, special_use)
            tx.emit(MailboxesChanged(account_id, created=(*created, name)))
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
            if tx.scalar(f"SELECT 1 FROM mailboxes WHERE account_id = ? AND {_UNDER}",
                         (account_id, *_under(name))):
                raise AlreadyExists(f"mailbox {name} has child mailboxes; delete them first")
            uids = tuple(r[0] for r in tx.all("SELECT uid FROM messages WHERE mailbox_id = ?", (row[0],)))
            if uids:
                tx.emit(MessagesExpunged(account_id, row[0], uids, 0))
            tx.execute("DELETE FROM mailboxes WHERE id = ?", (row[0],))
            tx.emit(MailboxesChanged(account_id, deleted_mailbox_id=row[0], deleted=(name,)))
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
            created = self._create_parents(tx, account_id, new)
            if old == "INBOX":  # INBOX stays: to the client, a new mailbox appeared
                target = self._create_mailbox(tx, account_id, new, None)
                self._move_all(tx, account_id, row[0], target)
                tx.emit(MailboxesChanged(account_id, created=(*created, new)))
            else:
                children = tx.all(f"SELECT id, name FROM mailboxes WHERE account_id = ? AND {_UNDER}",
                                  (account_id, *_under(old)))
                tx.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (new, row[0]))
                for child_id, child_name in children:
                    tx.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (new + child_name[len(old):], child_id))
                # subscriptions follow the renamed mailboxes (as Dovecot does); others stay
                for (sub,) in tx.all(f"SELECT name FROM subscriptions WHERE account_id = ? AND (name = ? OR {_UNDER})",
                                     (account_id, old, *_under(old))):
                    tx.execute("DELETE FROM subscriptions WHERE account_id = ? AND name = ?", (account_id, sub))
                    tx.execute("INSERT INTO subscriptions (account_id, name) VALUES (?, ?) ON CONFLICT DO NOTHING",
                               (account_id, new + sub[len(old):]))
                renamed = ((old, new), *((name, new + name[len(old):]) for _, name in children))
                tx.emit(MailboxesChanged(account_id, created=created, renamed=renamed))
        await self.db.write(op)

    def _create_parents(self, tx: Tx, account_id: int, name: str) -> tuple[str, ...]:
        """Create the missing parents of ``name``; their names, outermost first."""
        parts = name.split("/")
        created = []
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if not tx.scalar("SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, parent)):
                self._create_mailbox(tx, account_id, parent, None)
                created.append(parent)
        return tuple(created)

    def _move_all(self, tx: Tx, account_id: int, source: int, target: int) -> None:
        uids = [r[0] for r in tx.all("SELECT uid FROM messages WHERE mailbox_id = ? ORDER BY uid", (source,))]
        if uids:
            self._copy(tx, account_id, source, uids, target)
            self._expunge(tx, account_id, source, uids)

    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None:
        """SUBSCRIBE (the mailbox must exist: RFC 3501 6.3.6 lets the server check) or
        UNSUBSCRIBE (any name on the list, also one whose mailbox was deleted meanwhile:
        RFC 3501 6.3.7, RFC 5258 3.5). The list is its own table: DELETE keeps the name on it."""
        def op(tx: Tx) -> None:
            if subscribed:
                if not tx.scalar("SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, name)):
                    raise NotFound(f"no mailbox {name}")
                cur = tx.execute("INSERT INTO subscriptions (account_id, name) VALUES (?, ?) "
                                 "ON CONFLICT DO NOTHING", (account_id, name))
            else:  # a name not on the list: nothing to do (idempotent, as SUBSCRIBE is)
                cur = tx.execute("DELETE FROM subscriptions WHERE account_id = ? AND name = ?", (account_id, name))
            if cur.rowcount:
                tx.emit(SubscriptionChanged(account_id, name, subscribed))
        await self.db.write(op)

    async def list_subscriptions(self, account_id: int) -> list[str]:
        """The account's subscribed names, sorted (some may name no mailbox any more)."""
        return [r[0] for r in await self.db.read(lambda tx: tx.all(
            "SELECT name FROM subscriptions WHERE account_id = ? ORDER BY name", (account_id,)))]

    async def mailbox_status(self, mailbox_id: int) -> MailboxStatus:
        def op(tx: Tx) -> MailboxStatus:
            box = tx.one("SELECT uidnext, uidvalidity, highestmodseq, recent_uid FROM mailboxes WHERE id = ?",
                         (mailbox_id,))
            if not box:
                raise NotFound("mailbox is gone")
            row = tx.one(
                "SELECT count(*), coalesce(sum(CASE WHEN flags & ? = 0 THEN 1 ELSE 0 END), 0), "
                "coalesce(sum(CASE WHEN flags & ? != 0 THEN 1 ELSE 0 END), 0), coalesce(sum(size), 0), "
                "coalesce(sum(CASE WHEN uid >= ? THEN 1 ELSE 0 END), 0) FROM messages WHERE mailbox_id = ?",
                (SEEN, DELETED, box[3], mailbox_id))
            return MailboxStatus(row[0], row[1], row[2], row[3], box[0], box[1], box[2], row[4])
        return await self.db.read(op)

    # -- \Recent (RFC 3501 2.3.2) ---------------------------------------------------------------

    async def claim_recent(self, mailbox_id: int, upto: int) -> int:
        """Claim every message below UID ``upto`` not claimed yet as \\Recent for the calling
        session; returns the mailbox's previous ``recent_uid``, so the caller's messages are
        the UIDs in [returned value, upto). The read and the update are one transaction that
        locks the row (SQLite: the single writer, BEGIN IMMEDIATE; PostgreSQL: SELECT ... FOR
        UPDATE), so two sessions, in this worker process, another one or on another node, never
        claim the same message."""
        # not durable: a claim lost in a crash only makes a message recent once more
        return await self.db.write(lambda tx: claim_recent_in(tx, mailbox_id, upto), durable=False)

    async def first_unclaimed_uid(self, mailbox_id: int) -> int:
        """The mailbox's ``recent_uid`` (what a read-only session shows as \\Recent)."""
        first = await self.db.read(lambda tx: tx.scalar("SELECT recent_uid FROM mailboxes WHERE id = ?",
                                                       (mailbox_id,)))
        if first is None:
            raise NotFound("mailbox is gone")
        return int(first)


def claim_recent_in(tx: Tx, mailbox_id: int, upto: int) -> int:
    """`MailboxStore.claim_recent`'s work inside the caller's transaction."""
    first = tx.scalar(tx.for_update("SELECT recent_uid FROM mailboxes WHERE id = ?"), (mailbox_id,))
    if first is None:
        raise NotFound("mailbox is gone")
    if upto > first:
        tx.execute("UPDATE mailboxes SET recent_uid = ? WHERE id = ?", (upto, mailbox_id))
    return int(first)
