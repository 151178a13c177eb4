"""Many sessions of one account stay in sync (RFC 9051 5.2 / 7.4): a change made in one
session reaches every other session with the mailbox selected -- at once during IDLE, at the
next command otherwise -- and a QRESYNC reconnect gets exactly what changed."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import imapclient
import pytest

from tests.support.imapwire import Wire
from tests.support.pg import BACKENDS, backend_overrides
from tests.support.server import RunningServer

PASSWORD = "password1"
_numbers = itertools.count(1)


def raw(n: int) -> bytes:
    return b"From: a@example.org\r\nSubject: sync %d\r\n\r\nbody %d\r\n" % (n, n)


@pytest.fixture(scope="module", params=BACKENDS)
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("imapsync") / "data"
    with RunningServer(data, **backend_overrides(request.param, request)) as server:
        yield server


def new_account(srv: RunningServer, count: int) -> tuple[str, int]:
    address = f"sync{next(_numbers)}@example.com"
    account = srv.add_account(address, PASSWORD)
    for i in range(1, count + 1):
        srv.call(srv.store.deliver([(account.id, "INBOX")], raw(i)))
    return address, account.id


def selected(srv: RunningServer, address: str, *extra: bytes) -> Wire:
    wire = Wire.tls(srv)
    wire.login(address, PASSWORD)
    for line in extra:
        wire.cmd(line)
    assert wire.cmd(b"s SELECT INBOX")[-1].startswith(b"s OK")
    return wire


def test_seen_on_one_connection_reaches_the_other_during_idle(srv: RunningServer) -> None:
    """Read on the computer, read on the mobile: imapclient IDLE sees it within a second."""
    address, _ = new_account(srv, 3)
    laptop = imapclient.IMAPClient("127.0.0.1", port=srv.port("imaps"), ssl_context=srv.client_tls(), timeout=10)
    laptop.login(address, PASSWORD)
    laptop.select_folder("INBOX")
    phone = imapclient.IMAPClient("127.0.0.1", port=srv.port("imaps"), ssl_context=srv.client_tls(), timeout=10)
    phone.login(address, PASSWORD)
    phone.select_folder("INBOX")
    phone.idle()
    start = time.monotonic()
    laptop.add_flags([2], [b"\\Seen"])
    responses = phone.idle_check(timeout=1)
    elapsed = time.monotonic() - start
    phone.idle_done()
    assert (2, b"FETCH", (b"UID", 2, b"FLAGS", (b"\\Seen",))) in responses, responses
    assert elapsed < 1
    # and new mail during IDLE
    phone.idle()
    srv.call(srv.store.deliver([(srv.call(srv.store.get_account(address)).id, "INBOX")], raw(4)))
    assert (4, b"EXISTS") in phone.idle_check(timeout=2)
    phone.idle_done()
    laptop.logout()
    phone.logout()


def test_updates_arrive_at_the_next_command(srv: RunningServer) -> None:
    address, account_id = new_account(srv, 3)
    a = selected(srv, address)
    b = selected(srv, address)
    a.cmd(b"x STORE 1 +FLAGS (\\Flagged)")
    srv.call(srv.store.deliver([(account_id, "INBOX")], raw(9)))
    lines = b.cmd(b"n NOOP")
    assert b"* 1 FETCH (UID 1 FLAGS (\\Flagged))" in lines
    assert b"* 4 EXISTS" in lines
    # the session that made the change is not told again
    # (b saw message 4 first, so it is b's \\Recent; a keeps its three, RFC 3501 2.3.2)
    assert a.cmd(b"m NOOP") == [b"* 4 EXISTS", b"* 3 RECENT", b"m OK NOOP completed"]


def test_expunge_is_held_back_during_fetch_store_search(srv: RunningServer) -> None:
    """RFC 9051 7.5.1: no EXPUNGE while answering FETCH, STORE or SEARCH; sequence numbers the
    client knows stay valid until the expunge is reported."""
    address, _ = new_account(srv, 4)
    a = selected(srv, address)
    b = selected(srv, address)
    a.cmd(b"d STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert a.cmd(b"e EXPUNGE") == [b"* 2 EXPUNGE", b"e OK EXPUNGE completed"]
    lines = b.cmd(b"f FETCH 1:4 UID")
    assert not any(l.endswith(b" EXPUNGE") for l in lines)
    # RFC 2180 4.1.1: the expunged message's data may still be returned (Dovecot does)
    assert lines == [b"* 1 FETCH (UID 1)", b"* 2 FETCH (UID 2)", b"* 3 FETCH (UID 3)", b"* 4 FETCH (UID 4)",
                     b"f OK FETCH completed"]
    # its body is gone: nothing for it, and the tagged OK says why
    lines = b.cmd(b"f2 FETCH 1:2 BODY.PEEK[]")
    assert lines[0].startswith(b"* 1 FETCH (BODY[] {") and not any(l.startswith(b"* 2 ") for l in lines)
    assert lines[-1].startswith(b"f2 OK [EXPUNGEISSUED]")
    lines = b.cmd(b"g STORE 3 +FLAGS (\\Seen)")
    assert lines[0] == b"* 3 FETCH (FLAGS (\\Seen))" and not any(l.endswith(b" EXPUNGE") for l in lines)
    assert not any(l.endswith(b" EXPUNGE") for l in b.cmd(b"h SEARCH ALL"))
    assert b.cmd(b"i NOOP")[0] == b"* 2 EXPUNGE"
    assert b.cmd(b"j FETCH 3 UID")[0] == b"* 3 FETCH (UID 4)"


def test_fetch_answers_for_a_message_expunged_elsewhere_until_told(srv: RunningServer) -> None:
    """imaptest's expunge script: FETCH of a message another session expunged, before this
    one is told, returns its last flags (RFC 2180 4.1.1); the EXPUNGE follows at NOOP."""
    address, _ = new_account(srv, 3)
    a = selected(srv, address)
    b = selected(srv, address)
    b.cmd(b"x FETCH 1:3 (RFC822.SIZE)")  # sizes and dates loaded: they are remembered too
    a.cmd(b"d STORE 3 +FLAGS.SILENT (\\Deleted \\Flagged)")
    a.cmd(b"e EXPUNGE")
    lines = b.cmd(b"f FETCH 3 (UID FLAGS RFC822.SIZE)")
    assert lines[0].startswith(b"* 3 FETCH (UID 3 FLAGS (\\Flagged \\Deleted) RFC822.SIZE ")
    assert lines[-1] == b"f OK FETCH completed"
    assert b.cmd(b"n NOOP")[0] == b"* 3 EXPUNGE"


def test_uid_commands_may_report_expunges(srv: RunningServer) -> None:
    address, _ = new_account(srv, 3)
    a = selected(srv, address)
    b = selected(srv, address)
    a.cmd(b"d UID MOVE 1 Trash")
    # the FETCH data still uses the numbers the client knows; the EXPUNGE follows
    assert b.cmd(b"f UID FETCH 1:* FLAGS") == [
        b"* 2 FETCH (UID 2 FLAGS ())", b"* 3 FETCH (UID 3 FLAGS ())", b"* 1 EXPUNGE",
        b"f OK UID FETCH completed"]
    assert b.cmd(b"g FETCH 1 UID")[0] == b"* 1 FETCH (UID 2)"


def test_expunge_during_idle_and_vanished_with_qresync(srv: RunningServer) -> None:
    address, _ = new_account(srv, 3)
    a = selected(srv, address)
    b = selected(srv, address, b"e ENABLE QRESYNC")
    b.send(b"i IDLE\r\n")
    assert b.line() == b"+ idling"
    a.cmd(b"x UID MOVE 2 Archive")
    assert b.line() == b"* VANISHED 2"
    b.send(b"DONE\r\n")
    assert b.until(b"i") == [b"i OK IDLE terminated"]


def test_qresync_reconnect_gets_exactly_the_changes(srv: RunningServer) -> None:
    address, account_id = new_account(srv, 5)
    first = selected(srv, address, b"e ENABLE QRESYNC")
    status = first.cmd(b"t STATUS INBOX (UIDVALIDITY HIGHESTMODSEQ)")[0]
    uidvalidity = int(status.split(b"UIDVALIDITY ")[1].split()[0])
    modseq = int(status.split(b"HIGHESTMODSEQ ")[1].rstrip(b")"))
    first.cmd(b"l LOGOUT")
    other = selected(srv, address)
    other.cmd(b"a STORE 2 +FLAGS (\\Seen)")
    other.cmd(b"b STORE 4 +FLAGS (\\Deleted)")
    other.cmd(b"c EXPUNGE")
    other.cmd(b"d UID MOVE 5 Archive")
    srv.call(srv.store.deliver([(account_id, "INBOX")], raw(6)))
    again = Wire.tls(srv)
    again.login(address, PASSWORD)
    again.cmd(b"e ENABLE QRESYNC")
    lines = again.cmd(b"s SELECT INBOX (QRESYNC (%d %d 1:5))" % (uidvalidity, modseq))
    assert lines[-1].startswith(b"s OK [READ-WRITE]")
    assert b"* 4 EXISTS" in lines
    assert b"* VANISHED (EARLIER) 4:5" in lines
    fetches = [l for l in lines if b"FETCH" in l]
    assert len(fetches) == 2
    assert fetches[0].startswith(b"* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ (")
    assert fetches[1].startswith(b"* 4 FETCH (UID 6 FLAGS (\\Recent) MODSEQ (")  # the new message
    assert lines.index(b"* VANISHED (EARLIER) 4:5") < lines.index(fetches[0])
    # UID FETCH ... (CHANGEDSINCE n VANISHED)
    lines = again.cmd(b"f UID FETCH 1:* FLAGS (CHANGEDSINCE %d VANISHED)" % modseq)
    assert lines[0] == b"* VANISHED (EARLIER) 4:5"
    assert len([l for l in lines if b"FETCH (" in l]) == 2
    # QRESYNC needs ENABLE first
    plain = Wire.tls(srv)
    plain.login(address, PASSWORD)
    assert plain.cmd(b"s SELECT INBOX (QRESYNC (%d %d))" % (uidvalidity, modseq))[-1].startswith(b"s BAD")


def test_many_sessions_one_account(srv: RunningServer) -> None:
    address, account_id = new_account(srv, 2)
    wires = [selected(srv, address) for _ in range(8)]
    for w in wires:
        w.send(b"i IDLE\r\n")
        assert w.line() == b"+ idling"
    wires[0].send(b"DONE\r\n")
    wires[0].until(b"i")
    wires[0].cmd(b"x STORE 1 +FLAGS (\\Seen)")
    for w in wires[1:]:
        assert w.line() == b"* 1 FETCH (UID 1 FLAGS (\\Seen))"
        w.send(b"DONE\r\n")
        assert w.until(b"i")[-1] == b"i OK IDLE terminated"


def test_mailbox_deleted_while_selected_elsewhere(srv: RunningServer) -> None:
    address, account_id = new_account(srv, 0)
    a = Wire.tls(srv)
    a.login(address, PASSWORD)
    a.cmd(b"c CREATE Temp")
    a.cmd(b"p APPEND Temp {3+}\r\nabc")
    b = Wire.tls(srv)
    b.login(address, PASSWORD)
    b.cmd(b"s SELECT Temp")
    assert a.cmd(b"d DELETE Temp")[-1].startswith(b"d OK")
    lines = b.cmd(b"n NOOP")
    assert lines == [b"* 1 EXPUNGE", b"n OK NOOP completed"]


def test_concurrent_flag_changes_converge(srv: RunningServer) -> None:
    address, _ = new_account(srv, 20)
    wires = [selected(srv, address) for _ in range(4)]

    def work(w: Wire, flag: bytes) -> None:
        for n in range(1, 21):
            w.cmd(b"t%d STORE %d +FLAGS.SILENT (%s)" % (n, n, flag))

    threads = [threading.Thread(target=work, args=(w, f)) for w, f in
               zip(wires, [b"\\Seen", b"\\Flagged", b"$A", b"$B"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = wires[0].cmd(b"f FETCH 1:* FLAGS")
    fetches = [l for l in lines if l.startswith(b"* ") and b"FETCH (FLAGS" in l]
    assert all(b"\\Seen" in l and b"\\Flagged" in l and b"$A" in l and b"$B" in l for l in fetches[-20:])


def test_append_and_copy_into_the_selected_mailbox_report_exists(srv: RunningServer) -> None:
    address, _ = new_account(srv, 1)
    a = selected(srv, address)
    lines = a.cmd(b"p APPEND INBOX {3+}\r\nabc")
    assert lines[0] == b"* 2 EXISTS" and lines[-1].startswith(b"p OK [APPENDUID ")
    assert a.cmd(b"c COPY 1:2 INBOX")[0] == b"* 4 EXISTS"


def _untagged(lines: list[bytes], model: list[int], flags: dict[int, bytes]) -> None:
    """Apply a command's untagged EXPUNGE / EXISTS / FETCH lines to a client's model."""
    import re
    for line in lines:
        if m := re.fullmatch(rb"\* (\d+) EXPUNGE", line):
            del model[int(m.group(1)) - 1]
        elif m := re.fullmatch(rb"\* (\d+) EXISTS", line):
            assert int(m.group(1)) >= len(model)
            model.extend([0] * (int(m.group(1)) - len(model)))  # UIDs learnt by the FETCH below
        elif m := re.match(rb"\* (\d+) FETCH \(UID (\d+) FLAGS \(([^)]*)\)", line):
            seq, uid = int(m.group(1)), int(m.group(2))
            assert model[seq - 1] in (0, uid), (line, model[seq - 1])
            model[seq - 1] = uid
            flags[uid] = m.group(3)


def test_a_silent_session_has_a_bounded_queue_and_still_ends_up_right(tmp_path, monkeypatch) -> None:
    """Issue #12: each SELECTed session's event queue is bounded. A client that stays silent
    while thousands of changes happen keeps at most the limit queued; when it speaks again it
    is resynchronised from the mailbox index and still gets every EXPUNGE and flag change."""
    from postoffice.servers.imap import selected as selected_module
    from postoffice.store import DELETED, FLAGGED, SEEN
    monkeypatch.setattr(selected_module, "SESSION_QUEUE_LIMIT", 10, raising=False)
    monkeypatch.setattr(selected_module, "INDEX_QUEUE_LIMIT", 15, raising=False)
    with RunningServer(tmp_path / "data") as srv:
        address = "silent@example.com"
        account = srv.add_account(address, PASSWORD)
        for i in range(1, 31):
            srv.call(srv.store.deliver([(account.id, "INBOX")], raw(i)))
        wire = selected(srv, address)
        lines = wire.cmd(b"f FETCH 1:* (UID FLAGS)")
        model: list[int] = []
        flags: dict[int, bytes] = {}
        _untagged([b"* %d EXISTS" % 30] + lines[:-1], model, flags)
        assert len(model) == 30 and all(model)
        box = srv.call(srv.store.get_mailbox(account.id, "INBOX"))
        store = srv.store
        # 200 changes made elsewhere while this client says nothing: flags, expunges, new mail
        for n in range(200):
            uid = model[n % 30]
            if n % 5 == 4:
                srv.call(store.deliver([(account.id, "INBOX")], raw(100 + n)))
            else:
                srv.call(store.store_flags(account.id, box.id, [uid], "add" if n % 2 else "remove",
                                           SEEN if n % 3 else FLAGGED, []))
        for uid in model[3:9]:
            srv.call(store.store_flags(account.id, box.id, [uid], "add", DELETED, []))
        srv.call(store.expunge(account.id, box.id))

        async def queued() -> list[int]:
            return [s.queue.qsize() for s in srv.office.bus._subscribers.get(("mailbox", box.id), ())]
        sizes = srv.call(queued())
        assert sizes and max(sizes) <= 15, sizes  # bounded, not 200+ events
        lines = wire.cmd(b"n NOOP")
        assert lines[-1].startswith(b"n OK")
        _untagged(lines[:-1], model, flags)
        final = wire.cmd(b"g FETCH 1:* (UID FLAGS)")
        truth_model: list[int] = []
        truth_flags: dict[int, bytes] = {}
        _untagged([b"* %d EXISTS" % (len(final) - 1)] + final[:-1], truth_model, truth_flags)
        assert [u for u in model if u] == truth_model[:len([u for u in model if u])]
        assert len(model) == len(truth_model)
        for uid in (u for u in model if u):
            assert flags[uid] == truth_flags[uid], (uid, flags[uid], truth_flags[uid])
        assert len(truth_model) == 30 - 6 + 40
