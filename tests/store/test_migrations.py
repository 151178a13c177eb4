"""Schema migrations applied to a database that already holds data."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest

from postoffice.store import Store, migrations
from postoffice.store.db import Tx, connect


def test_migration_5_keeps_subscriptions_and_counts_old_mail_as_claimed(tmp_path: Path, monkeypatch) -> None:
    conn = sqlite3.connect(str(tmp_path / "old.db"), isolation_level=None)
    tx = Tx(conn)
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:4])
    migrations.migrate(tx)  # a database of the release before issue 11
    now = time.time()
    tx.execute("INSERT INTO domains (id, name, created_at) VALUES (1, 'example.com', ?)", (now,))
    tx.execute("INSERT INTO accounts (id, domain_id, address, password_hash, password_changed_at, created_at) "
               "VALUES (1, 1, 'a@example.com', 'x', ?, ?)", (now, now))
    for name, subscribed, uidnext in (("INBOX", 1, 7), ("Old", 0, 3)):
        tx.execute("INSERT INTO mailboxes (account_id, name, uidvalidity, uidnext, subscribed, created_at) "
                   "VALUES (1, ?, 1, ?, ?, ?)", (name, uidnext, subscribed, now))
    tx.execute("INSERT INTO blobs (id, size, header_size, sent_date, created_at) VALUES ('b', 1, 1, 0, ?)", (now,))
    monkeypatch.undo()
    assert migrations.migrate(tx)[0] == 5
    assert tx.all("SELECT account_id, name FROM subscriptions") == [(1, "INBOX")]
    assert tx.all("SELECT name, recent_uid FROM mailboxes ORDER BY name") == [("INBOX", 7), ("Old", 3)]
    assert tx.one("SELECT sent_date, sent_local FROM blobs") == (0, None)


def _database_at(path: Path, version: int) -> None:
    """A database as the postoffice of schema ``version`` left it."""
    conn = connect(path)
    tx = Tx(conn)
    saved = migrations.MIGRATIONS
    try:
        migrations.MIGRATIONS = saved[:version]
        conn.execute("BEGIN")
        migrations.migrate(tx)
        conn.execute("COMMIT")
    finally:
        migrations.MIGRATIONS = saved
        conn.close()


def test_addresses_made_by_casefold_are_rekeyed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue #12 (the re-keying migration): keys stored under the old rule (NFC + casefold) are put in the
    new form (lower case, look-alikes refused) so what users type still finds them."""
    data = tmp_path / "data"
    data.mkdir()
    before = next(i for i, steps in enumerate(migrations.MIGRATIONS) if migrations._renormalise_addresses in steps)
    _database_at(data / "postoffice.db", before)
    conn = connect(data / "postoffice.db")
    now = time.time()
    conn.execute("INSERT INTO domains (id, name, created_at) VALUES (1, 'example.com', ?)", (now,))
    conn.execute("UPDATE domains SET catch_all = 'Ꭰꭱ@example.com' WHERE id = 1")
    # casefold() maps Cherokee small letters to the capitals; the rule now lower-cases.
    rows = [(1, "Ꭰꭱ@example.com", ""), (2, "alice@example.com", "Ꭰꭱ@example.com bob@example.org"),
            (3, "ǆemal@example.com", "")]  # U+01C6 is a compatibility character: now refused
    for account_id, address, forward in rows:
        conn.execute("INSERT INTO accounts (id, domain_id, address, password_hash, password_changed_at, "
                     "forward_to, created_at) VALUES (?, 1, ?, 'x', ?, ?, ?)", (account_id, address, now, forward, now))
    conn.execute("INSERT INTO aliases (domain_id, address, targets, created_at) VALUES (1, 'Ꭰ@example.com', ?, ?)",
                 ("Ꭰꭱ@example.com\nalice@example.com", now))
    conn.close()

    caplog.set_level(logging.INFO)
    store = Store.open(data)
    try:
        def read(tx: Tx) -> tuple[list[str], list[str], str]:
            return ([r[0] for r in tx.all("SELECT address FROM accounts ORDER BY id")],
                    [r[0] + " -> " + r[1] for r in tx.all("SELECT address, targets FROM aliases")],
                    tx.scalar("SELECT catch_all FROM domains"))
        accounts, aliases, catch_all = store.db.read_sync(read)
        forward = store.db.read_sync(lambda tx: tx.scalar("SELECT forward_to FROM accounts WHERE id = 2"))
    finally:
        store.close()
    assert accounts == ["ꭰꭱ@example.com", "alice@example.com", "ǆemal@example.com"]
    assert aliases == ["ꭰ@example.com -> ꭰꭱ@example.com\nalice@example.com"]
    assert catch_all == "ꭰꭱ@example.com"
    assert forward == "ꭰꭱ@example.com bob@example.org"
    assert any("ǆemal@example.com" in r.getMessage() and "U+01C6" in r.getMessage() for r in caplog.records)


def test_mailbox_names_are_put_in_nfc_without_merging(tmp_path: Path) -> None:
    """Issue #12: names are looked up in NFC now; a stored NFD name is renamed to NFC, and
    when its NFC twin exists too it becomes "<name> (2)" so both stay reachable."""
    data = tmp_path / "data"
    data.mkdir()
    before = next(i for i, steps in enumerate(migrations.MIGRATIONS) if migrations._nfc_mailbox_names in steps)
    _database_at(data / "postoffice.db", before)
    conn = connect(data / "postoffice.db")
    now = time.time()
    conn.execute("INSERT INTO domains (id, name, created_at) VALUES (1, 'example.com', ?)", (now,))
    conn.execute("INSERT INTO accounts (id, domain_id, address, password_hash, password_changed_at, created_at) "
                 "VALUES (1, 1, 'a@example.com', 'x', ?, ?)", (now, now))
    for name in ("caf\u00e9", "cafe\u0301", "the\u0301", "the\u0301/sub"):
        conn.execute("INSERT INTO mailboxes (account_id, name, uidvalidity, created_at) VALUES (1, ?, 1, ?)",
                     (name, now))
    conn.execute("INSERT INTO subscriptions (account_id, name) VALUES (1, ?)", ("the\u0301",))
    conn.close()
    store = Store.open(data)
    try:
        names = store.db.read_sync(lambda tx: [r[0] for r in tx.all("SELECT name FROM mailboxes ORDER BY id")])
        subs = store.db.read_sync(lambda tx: [r[0] for r in tx.all("SELECT name FROM subscriptions")])
    finally:
        store.close()
    assert names == ["caf\u00e9", "caf\u00e9 (2)", "th\u00e9", "th\u00e9/sub"]
    assert subs == ["th\u00e9"]


async def test_messages_stored_before_zones_keep_their_instant_in_utc(tmp_path: Path) -> None:
    """Migration 18 adds ``messages.internal_zone``: older rows get 0 (UTC, what FETCH showed
    before) and the IMAP index still reads sizes, dates and zones in one covering-index pass."""
    data = tmp_path / "data"
    data.mkdir()
    _database_at(data / "postoffice.db", 17)
    conn = connect(data / "postoffice.db")
    now = time.time()
    conn.execute("INSERT INTO domains (id, name, created_at) VALUES (1, 'example.com', ?)", (now,))
    conn.execute("INSERT INTO accounts (id, domain_id, address, password_hash, password_changed_at, created_at) "
                 "VALUES (1, 1, 'a@example.com', 'x', ?, ?)", (now, now))
    conn.execute("INSERT INTO mailboxes (id, account_id, name, uidvalidity, created_at) VALUES (1, 1, 'INBOX', 1, ?)",
                 (now,))
    conn.execute("INSERT INTO blobs (id, size, header_size, sent_date, created_at) VALUES ('b', 5, 2, 0, ?)", (now,))
    conn.execute("INSERT INTO messages (mailbox_id, uid, blob_id, size, internal_date, modseq, saved_at) "
                 "VALUES (1, 1, 'b', 5, 1704144600.0, 1, ?)", (now,))
    conn.close()
    store = Store.open(data)
    try:
        uids, sizes, dates, zones = await store.message_details(1)
        plan = store.db.read_sync(lambda tx: tx.all(
            "EXPLAIN QUERY PLAN SELECT uid, size, internal_date, internal_zone FROM messages WHERE mailbox_id = 1"))
    finally:
        store.close()
    assert (list(uids), list(sizes), list(dates), list(zones)) == ([1], [5], [1704144600.0], [0])
    assert "COVERING INDEX messages_index" in " ".join(str(tuple(row)) for row in plan)
