"""Spam filtering on port 25 with a real rspamd (issue 15): rspamd's action decides between
550, 451, Junk and INBOX; rspamd down or slow never loses mail and never hangs the session."""

from __future__ import annotations

import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.rspamd import GREYLIST_MARKER, GTUBE, JUNK_MARKER, Rspamd
from tests.support.server import RunningServer
from tests.support.smtp import RawSmtp, body_after_trace, counts, messages


def message(subject: str, body: bytes = b"Hello Alice,\r\nsee you tomorrow.\r\n", extra: bytes = b"") -> bytes:
    return (b"From: Sender <sender@outside.example>\r\nTo: alice@example.com\r\n"
            b"Subject: " + subject.encode() + b"\r\nMessage-ID: <" + subject.encode().replace(b" ", b".")
            + b"@outside.example>\r\n" + extra + b"\r\n" + body)


def send(port: int, data: bytes, rcpt: str = "alice@example.com") -> tuple[int, str]:
    """DATA over a raw session: (code, text) of the reply to the end of data."""
    with RawSmtp(port) as c:
        assert c.cmd("EHLO mx.outside.example")[0] == 250
        assert c.cmd("MAIL FROM:<sender@outside.example>")[0] == 250
        assert c.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        return c.cmd(data.decode("latin-1") + ".")


def verdicts(srv: RunningServer, address: str) -> list[str]:
    account = srv.call(srv.store.get_account(address))
    return [action for _, action, _, _ in srv.call(srv.store.filter_verdicts(account.id))]


@pytest.fixture(scope="session")
def rspamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rspamd]:
    daemon = Rspamd(tmp_path_factory.mktemp("rspamd")).start()
    yield daemon
    daemon.stop()


def serve(data: Path, **filter_settings: object) -> RunningServer:
    srv = RunningServer(data, hostname="mail.example.com", filter=filter_settings)
    srv.__enter__()
    for address in ("alice@example.com", "bob@example.com"):
        srv.add_account(address, "password1")
    return srv


@pytest.fixture(scope="module")
def srv(rspamd: Rspamd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    s = serve(tmp_path_factory.mktemp("filtered") / "data", rspamd=rspamd.url)
    yield s
    s.__exit__(None, None, None)


def test_gtube_is_rejected_with_550_and_nothing_is_stored(srv: RunningServer) -> None:
    before = counts(srv)
    code, text = send(srv.port("smtp"), message("gtube", GTUBE + b"\r\n"))
    assert (code, text) == (550, "5.7.1 Gtube pattern")  # rspamd's own message
    assert counts(srv) == before
    assert verdicts(srv, "alice@example.com")[-1] == "reject"


def test_clean_message_goes_to_inbox_tagged_no(srv: RunningServer) -> None:
    sent = message("lunch tomorrow")
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=30) as client:
        assert client.sendmail("sender@outside.example", ["bob@example.com"], sent) == {}
    stored = messages(srv, "bob@example.com")[-1]
    # ours: between Return-Path and Received
    assert body_after_trace(b"\r\n".join(line for line in stored.split(b"\r\n")[:5]
                                          if not line.startswith(b"X-Spam-"))
                            + b"\r\n" + b"\r\n".join(stored.split(b"\r\n")[5:])) == sent
    header = stored.split(b"\r\n\r\n", 1)[0]
    assert header.startswith(b"Return-Path: <sender@outside.example>\r\nX-Spam-Status: No, score=0.00 required=15.00\r\n"
                             b"X-Spam-Score: 0.00\r\nX-Spam-Action: no action\r\nReceived: ") and b"X-Spam-Action: no action\r\n" in header
    assert b"X-Spam-Flag" not in header
    assert messages(srv, "bob@example.com", "Junk") == []
    assert verdicts(srv, "bob@example.com")[-1] == "no action"


def test_add_header_range_goes_to_junk_with_headers_and_forged_ones_removed(srv: RunningServer) -> None:
    inbox = len(messages(srv, "alice@example.com"))
    forged = b"X-Spam-Status: No, score=-100\r\nX-Spam-Flag:\r\n NO\r\n"
    code, text = send(srv.port("smtp"), message(f"cheap pills {JUNK_MARKER}", extra=forged))
    assert code == 250, text
    assert len(messages(srv, "alice@example.com")) == inbox
    junk = messages(srv, "alice@example.com", "Junk")
    assert len(junk) == 1
    header = junk[0].split(b"\r\n\r\n", 1)[0]
    assert b"X-Spam-Status: Yes, score=8.00" in header
    assert b"X-Spam-Flag: YES\r\n" in header and b"X-Spam-Score: 8.00\r\n" in header
    assert b"X-Spam-Action: add header\r\n" in header
    assert b"score=-100" not in header and b" NO\r\n" not in header  # the sender's copies are gone
    assert b"Subject: cheap pills " + JUNK_MARKER.encode() in header
    assert verdicts(srv, "alice@example.com")[-1] == "add header"


def test_greylist_range_is_deferred_with_451(srv: RunningServer) -> None:
    before = counts(srv)
    code, text = send(srv.port("smtp"), message(f"maybe {GREYLIST_MARKER}"))
    assert (code, text) == (451, "4.7.1 Message deferred by the spam filter; try again later")
    assert counts(srv) == before
    assert verdicts(srv, "alice@example.com")[-1] == "greylist"


def test_bdat_is_checked_too(srv: RunningServer) -> None:
    data = message("bdat gtube", GTUBE + b"\r\n")
    with RawSmtp(srv.port("smtp")) as c:
        c.cmd("EHLO mx.outside.example")
        c.cmd("MAIL FROM:<sender@outside.example>")
        c.cmd("RCPT TO:<bob@example.com>")
        c.send(b"BDAT %d LAST\r\n" % len(data) + data)
        assert c.reply()[0] == 550


@pytest.fixture
def stoppable(tmp_path: Path) -> Iterator[Rspamd]:
    daemon = Rspamd(tmp_path / "rspamd").start()
    yield daemon
    daemon.stop()


@pytest.mark.parametrize("on_failure", ["accept", "tempfail"])
def test_rspamd_stopped_mid_run(stoppable: Rspamd, tmp_path: Path, on_failure: str) -> None:
    srv = serve(tmp_path / "data", rspamd=stoppable.url, on_failure=on_failure, timeout=5)
    try:
        assert send(srv.port("smtp"), message("before the stop"))[0] == 250
        assert b"X-Spam-Status: No" in messages(srv, "alice@example.com")[-1]
        stoppable.stop()
        started = time.monotonic()
        code, text = send(srv.port("smtp"), message("after the stop"))
        assert time.monotonic() - started < 5  # a refused connection is seen at once
        stored = messages(srv, "alice@example.com")
        if on_failure == "accept":
            assert code == 250, text
            assert len(stored) == 2
            assert b"X-Spam-Status: unknown" in stored[-1].split(b"\r\n\r\n", 1)[0]
            assert b"Subject: after the stop" in stored[-1]
        else:
            assert (code, text) == (451, "4.7.1 The spam filter is not available; try again later")
            assert len(stored) == 1
        assert verdicts(srv, "alice@example.com") == ["no action", "unknown"]
    finally:
        srv.__exit__(None, None, None)


def test_rspamd_that_never_answers_costs_at_most_the_timeout(tmp_path: Path) -> None:
    """A listener that accepts and then says nothing (a hung rspamd)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    srv = serve(tmp_path / "data", rspamd=f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=1.5)
    try:
        started = time.monotonic()
        code, _ = send(srv.port("smtp"), message("hung filter"))
        elapsed = time.monotonic() - started
        assert code == 250
        assert 1.4 <= elapsed < 6
        assert held  # rspamd's stand-in was really asked
        assert b"X-Spam-Status: unknown" in messages(srv, "alice@example.com")[-1]
    finally:
        srv.__exit__(None, None, None)
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


def test_switched_off_per_address_and_per_domain(srv: RunningServer) -> None:
    store = srv.store
    alice = srv.call(store.get_account("alice@example.com"))
    domain = srv.call(store.get_domain("example.com"))
    srv.call(store.set_spam_filter(False, account_id=alice.id))
    try:
        inbox = {a: len(messages(srv, f"{a}@example.com")) for a in ("alice", "bob")}
        junk = {a: len(messages(srv, f"{a}@example.com", "Junk")) for a in ("alice", "bob")}
        # One reply for both: alice (filter off) gets GTUBE in her INBOX, bob's copy goes to Junk.
        with RawSmtp(srv.port("smtp")) as c:
            c.cmd("EHLO mx.outside.example")
            c.cmd("MAIL FROM:<sender@outside.example>")
            assert c.cmd("RCPT TO:<alice@example.com>")[0] == 250
            assert c.cmd("RCPT TO:<bob@example.com>")[0] == 250
            c.cmd("DATA")
            code, text = c.cmd(message("mixed gtube", GTUBE + b"\r\n").decode() + ".")
        assert code == 250, text
        assert len(messages(srv, "alice@example.com")) == inbox["alice"] + 1
        assert len(messages(srv, "alice@example.com", "Junk")) == junk["alice"]
        assert len(messages(srv, "bob@example.com")) == inbox["bob"]
        assert len(messages(srv, "bob@example.com", "Junk")) == junk["bob"] + 1
        # The whole domain off: rspamd is not asked at all (no X-Spam-* fields), bob's setting
        # (none) follows the domain.
        srv.call(store.set_spam_filter(False, domain_id=domain.id))
        assert send(srv.port("smtp"), message("domain off", GTUBE + b"\r\n"), rcpt="bob@example.com")[0] == 250
        assert b"X-Spam-" not in messages(srv, "bob@example.com")[-1]
        # ... while an address switched on explicitly is still filtered.
        srv.call(store.set_spam_filter(True, account_id=alice.id))
        assert send(srv.port("smtp"), message("alice on", GTUBE + b"\r\n"))[0] == 550
    finally:
        srv.call(store.set_spam_filter(None, account_id=alice.id))
        srv.call(store.set_spam_filter(None, domain_id=domain.id))


def test_moving_into_and_out_of_junk_trains_rspamd(rspamd: Rspamd, tmp_path: Path) -> None:
    import imaplib
    import uuid

    srv = serve(tmp_path / "data", rspamd=rspamd.url, controller=rspamd.controller_url, controller_password="test")
    try:
        token = uuid.uuid4().hex
        spam_id, ham_id = f"<spam.{token}@outside.example>", f"<ham.{token}@outside.example>"
        body = b"Cheap watches and pills, lottery winner, transfer the fee today " + token.encode() + b"\r\n"
        for subject, msgid in (("offer", spam_id), ("minutes", ham_id)):
            data = message(subject, body).replace(b"<" + subject.encode() + b"@outside.example>", msgid.encode())
            assert send(srv.port("smtp"), data)[0] == 250
        learner = srv.office.spam_learner

        def learned() -> list[tuple[str, str]]:
            srv.call(learner.wait())
            return [(kind, f"<{msgid}>") for kind, msgid in rspamd.learned() if token in msgid]

        with imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.client_tls()) as imap:
            imap.login("alice@example.com", "password1")
            imap.select("INBOX")
            _, found = imap.uid("SEARCH", "HEADER", "Message-ID", spam_id)
            assert imap.uid("MOVE", found[0].decode(), "Junk")[0] == "OK"
            _, found = imap.uid("SEARCH", "HEADER", "Message-ID", ham_id)
            assert imap.uid("COPY", found[0].decode(), "Archive")[0] == "OK"  # not Junk: nothing learned
            assert learned() == [("spam", spam_id)]
            imap.select("Junk")
            assert imap.uid("MOVE", "1:*", "Trash")[0] == "OK"  # deleting spam is no verdict
            assert learned() == [("spam", spam_id)]
            imap.select("Trash")
            assert imap.uid("MOVE", "1:*", "Junk")[0] == "OK"  # Trash -> Junk: spam again (rspamd: already known)
            imap.select("Junk")
            # The user disagrees with the filter: the message goes back to the INBOX, learned as ham.
            assert imap.uid("MOVE", "1:*", "INBOX")[0] == "OK"
            imap.logout()
        entries = learned()
        assert entries[0] == ("spam", spam_id) and entries[-1] == ("ham", spam_id)
        assert learner.learned["ham"] == 1 and learner.learned["spam"] >= 1
    finally:
        srv.__exit__(None, None, None)
