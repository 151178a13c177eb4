"""Schema migrations applied to a database that already holds data."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from postoffice.store import migrations
from postoffice.store.db import Tx


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
