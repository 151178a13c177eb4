"""Moving an installation from one database to another (``postoffice migrate``, issue 14).

Every table of the schema is copied row for row, keys included: message UIDs, UIDVALIDITY,
MODSEQs, the expunge tombstones QRESYNC answers VANISHED from, the queue, the accounts and
the panel's data. A client that synchronised against the old database finds exactly the same
mailboxes on the new one, so nothing is downloaded again. Message bodies stay where they are
(``data_dir/blobs``): the new database names them by the same content hashes.

The source is read in one transaction (one consistent moment, even if a server still writes
to it); the target is written in one transaction (a failure leaves it empty) and must hold no
data yet. Afterwards the row counts of every table and each mailbox's UIDVALIDITY, UIDNEXT and
HIGHESTMODSEQ are compared; `TransferError` says what differs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import migrations
from .db import JobRunner, Tx, connect, open_database
from .dialect import NUMBERED_ID

__all__ = ["TransferError", "copy_database", "tables"]

_CHUNK = 2000
_CREATE = re.compile(r"^\s*CREATE TABLE (\w+)", re.IGNORECASE)
_MAILBOX_STATE = "SELECT id, uidvalidity, uidnext, highestmodseq, recent_uid FROM mailboxes ORDER BY id"


class TransferError(Exception):
    """The copy cannot start or did not come out identical (one line for the operator)."""


def tables() -> dict[str, bool]:
    """Every table of the schema in the order the migrations create them (a table comes after
    those it references), each with whether the database numbers its rows (``id INTEGER
    PRIMARY KEY``)."""
    found = {}
    for steps in migrations.MIGRATIONS:
        for step in steps:
            match = _CREATE.match(step) if isinstance(step, str) else None
            if match:
                found[match.group(1)] = NUMBERED_ID.search(step) is not None
    return found


def copy_database(source: Path, target: str | Path,
                  progress: Callable[[str, int], None] = lambda table, rows: None) -> dict[str, int]:
    """Copy the SQLite database ``source`` into the empty database ``target`` (a URL or a
    path); both are brought to the current schema first. Returns rows copied per table."""
    if not source.is_file():
        raise TransferError(f"{source} does not exist")
    source_db = open_database(source)
    try:
        source_db.write_sync(migrations.migrate)
    finally:
        source_db.close()
    target_db = open_database(target)
    try:
        target_db.write_sync(migrations.migrate)
        reader = connect(source)
        try:
            reader.execute("BEGIN")  # one moment of the source, whatever writes meanwhile
            copied = target_db.write_sync(lambda tx: _copy_all(Tx(reader), tx, progress))
            _verify(Tx(reader), target_db, copied)
            reader.execute("COMMIT")
        finally:
            reader.close()
    finally:
        target_db.close()
    return copied


def _copy_all(src: Tx, dst: Tx, progress: Callable[[str, int], None]) -> dict[str, int]:
    names = tables()
    busy = [name for name in names if dst.scalar(f"SELECT count(*) FROM {name}")]
    if busy:
        raise TransferError(f"the target database is not empty (table {busy[0]} has rows)")
    copied = {}
    for name, numbered in names.items():
        copied[name] = _copy_table(src, dst, name, numbered)
        progress(name, copied[name])
    return copied


def _copy_table(src: Tx, dst: Tx, name: str, numbered: bool) -> int:
    cursor = src.conn.execute(f"SELECT * FROM {name}")
    columns = [d[0] for d in cursor.description]
    insert = f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    total = 0
    while rows := cursor.fetchmany(_CHUNK):
        dst.executemany(insert, [tuple(row) for row in rows])
        total += len(rows)
    if numbered and dst.dialect.next_id:
        # rows came with their ids: new rows must be numbered after them
        dst.execute(dst.dialect.next_id.format(table=name))
    return total


def _verify(src: Tx, target: JobRunner, copied: dict[str, int]) -> None:
    def counts(tx: Tx) -> tuple[dict[str, int], list[Any]]:
        return ({name: int(tx.scalar(f"SELECT count(*) FROM {name}")) for name in copied},
                [tuple(row) for row in tx.all(_MAILBOX_STATE)])
    want = counts(src)
    have = target.read_sync(counts)
    for name in copied:
        if want[0][name] != have[0][name]:
            raise TransferError(f"table {name}: {want[0][name]} rows in the source, {have[0][name]} copied")
    if want[1] != have[1]:
        raise TransferError("the mailboxes' UIDVALIDITY/UIDNEXT/HIGHESTMODSEQ differ after the copy")
