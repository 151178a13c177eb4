"""`postoffice migrate --from sqlite:PATH --to postgresql://...` (issue 14): an installation
filled through the real server moves to PostgreSQL, and a QRESYNC client that synchronised
before finds nothing to download again (RFC 7162 §3.2.5: same UIDVALIDITY, same
HIGHESTMODSEQ, no VANISHED, no FETCH); the history it did not see yet comes out the same."""

from __future__ import annotations

import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.imapwire import Wire
from tests.support.pg import fresh_url
from tests.support.server import RunningServer

PASSWORD = "password1"
ADDRESS = "alice@example.com"


def message(n: int) -> bytes:
    return b"From: bob@example.org\r\nTo: alice@example.com\r\nSubject: move %d\r\n\r\nbody %d\r\n" % (n, n)


def qresync_session(srv: RunningServer) -> Wire:
    wire = Wire.tls(srv)
    wire.login(ADDRESS, PASSWORD)
    assert wire.cmd(b"e ENABLE QRESYNC")[-1].startswith(b"e OK")
    return wire


def inbox_state(wire: Wire) -> tuple[int, int, int]:
    status = wire.cmd(b"t STATUS INBOX (UIDVALIDITY UIDNEXT HIGHESTMODSEQ)")[0]
    numbers = status.split(b"(")[1].rstrip(b")").split()
    values = dict(zip(numbers[::2], (int(v) for v in numbers[1::2])))
    return values[b"UIDVALIDITY"], values[b"UIDNEXT"], values[b"HIGHESTMODSEQ"]


def resync(wire: Wire, uidvalidity: int, modseq: int) -> list[bytes]:
    """What SELECT INBOX (QRESYNC ...) tells a client that knew the mailbox at ``modseq``
    (\\Recent left out: it belongs to a session, not to the mailbox)."""
    lines = wire.cmd(b"s SELECT INBOX (QRESYNC (%d %d))" % (uidvalidity, modseq))
    assert lines[-1].startswith(b"s OK"), lines
    return [line.replace(b"\\Recent", b"").replace(b"( ", b"(").replace(b" )", b")")
            for line in lines if b"VANISHED" in line or b"FETCH" in line]


def populate(srv: RunningServer) -> int:
    """Mail through SMTP and IMAP, flags, keywords, an expunge and a move; returns a MODSEQ
    from before the expunge."""
    srv.add_account(ADDRESS, PASSWORD)
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as smtp:
        for n in range(1, 5):
            smtp.sendmail("bob@example.org", [ADDRESS], message(n))
    wire = qresync_session(srv)
    literal = message(5)
    assert wire.cmd(b"a APPEND INBOX (\\Flagged) {%d+}\r\n%s" % (len(literal), literal))[-1].startswith(b"a OK")
    assert wire.cmd(b"s SELECT INBOX")[-1].startswith(b"s OK")
    wire.cmd(b"f STORE 1 +FLAGS (\\Seen $Important)")
    _, _, before_expunge = inbox_state(wire)
    wire.cmd(b"g STORE 2 +FLAGS (\\Deleted)")
    assert wire.cmd(b"x EXPUNGE")[-1].startswith(b"x OK")
    assert wire.cmd(b"m UID MOVE 3 Archive")[-1].startswith(b"m OK")
    wire.cmd(b"h STORE 1 -FLAGS (\\Seen)")
    wire.cmd(b"z LOGOUT")
    srv.call(srv.store.enqueue("alice@example.com", ["carol@remote.example"], message(6)))
    return before_expunge


def test_migrate_to_postgresql_keeps_what_a_qresync_client_knows(tmp_path: Path,
                                                                 request: pytest.FixtureRequest) -> None:
    url = fresh_url(request.getfixturevalue("postgres_database"))  # skips without PostgreSQL
    data = tmp_path / "data"
    with RunningServer(data, store={"database": ""}) as srv:  # SQLite, whatever POSTOFFICE_TEST_BACKEND says
        before_expunge = populate(srv)
        wire = qresync_session(srv)
        uidvalidity, uidnext, highest = inbox_state(wire)
        history = resync(wire, uidvalidity, before_expunge)
        body = wire.cmd(b"b UID FETCH 4 BODY.PEEK[]")[0]
        queued = srv.call(srv.store.queue_entries())
        wire.cmd(b"z LOGOUT")
    assert any(b"VANISHED" in line for line in history) and any(b"FETCH" in line for line in history)

    done = subprocess.run([sys.executable, "-m", "postoffice", "migrate", "--from", f"sqlite:{data / 'postoffice.db'}",
                           "--to", url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "counts verified" in done.stdout

    with RunningServer(data, store={"database": url}) as srv:
        wire = qresync_session(srv)
        assert inbox_state(wire) == (uidvalidity, uidnext, highest)
        assert resync(wire, uidvalidity, highest) == []  # nothing changed, nothing to download
        assert resync(wire, uidvalidity, before_expunge) == history
        assert wire.cmd(b"b UID FETCH 4 BODY.PEEK[]")[0] == body
        assert [(e["mail_from"], e["blob_id"], [r["recipient"] for r in e["recipients"]]) for e in
                srv.call(srv.store.queue_entries())] == \
               [(e["mail_from"], e["blob_id"], [r["recipient"] for r in e["recipients"]]) for e in queued]
        literal = message(7)
        answer = wire.cmd(b"a APPEND INBOX {%d+}\r\n%s" % (len(literal), literal))[-1]
        assert b"[APPENDUID %d %d]" % (uidvalidity, uidnext) in answer  # UIDs go on where they were
        assert srv.call(srv.store.add_domain("new.example")).id > 1  # ids go on after the copied ones


def test_migrate_refuses_a_target_that_holds_data(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = fresh_url(request.getfixturevalue("postgres_database"))
    data = tmp_path / "data"
    with RunningServer(data, store={"database": ""}) as srv:
        srv.add_account(ADDRESS, PASSWORD)
    with RunningServer(tmp_path / "other", store={"database": url}) as srv:
        srv.add_account("someone@example.net", PASSWORD)
    done = subprocess.run([sys.executable, "-m", "postoffice", "migrate", "--from", f"sqlite:{data / 'postoffice.db'}",
                           "--to", url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "not empty" in done.stderr
