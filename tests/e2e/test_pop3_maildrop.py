"""POP3 maildrop rules end to end: deletion only at QUIT, the lock, the snapshot, life beside
IMAP (the store events IMAP sessions consume), the per-address POP policy and the protocol
switches, including an administrator ending an open session."""

from __future__ import annotations

import asyncio
import imaplib
import itertools
import poplib
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

from postoffice.store import SEEN, FlagsChanged, MessagesAdded, MessagesExpunged
from tests.support.server import RunningServer

PASSWORD = "password1"
_numbers = itertools.count(1)


def message(n: int, size: int = 0) -> bytes:
    body = b"".join(b"line %d of message %d\r\n" % (i, n) for i in range(max(1, size // 24)))
    return b"From: sender@example.org\r\nSubject: message %d\r\n\r\n" % n + body


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("maildrop") / "data", limits={"pop3_timeout": 5}) as server:
        yield server


class Box:
    """An address with messages, and what the store says about its folders."""

    def __init__(self, srv: RunningServer, count: int = 3, domain: str = "example.com") -> None:
        self.srv = srv
        self.address = f"box{next(_numbers)}@{domain}"
        self.account = srv.add_account(self.address, PASSWORD)
        self.inbox = srv.call(srv.store.get_mailbox(self.account.id, "INBOX"))
        self.raws = [message(n) for n in range(1, count + 1)]
        for raw in self.raws:
            self.deliver(raw)

    def deliver(self, raw: bytes) -> None:
        self.srv.call(self.srv.store.deliver([(self.account.id, "INBOX")], raw))

    def messages(self, folder: str = "INBOX") -> list[Any]:
        box = self.srv.call(self.srv.store.get_mailbox(self.account.id, folder))
        return self.srv.call(self.srv.store.list_messages(box.id))

    def uids(self, folder: str = "INBOX") -> list[int]:
        return [m.uid for m in self.messages(folder)]

    def set(self, **changes: Any) -> None:
        assert self.srv.office is not None
        self.srv.call(self.srv.office.accounts.update(self.address, **changes))

    def login(self, port: str = "pop3s") -> poplib.POP3:
        client = poplib.POP3_SSL("127.0.0.1", self.srv.port(port), context=self.srv.client_tls(), timeout=10) \
            if port == "pop3s" else self._stls()
        client.user(self.address)
        client.pass_(PASSWORD)
        return client

    def _stls(self) -> poplib.POP3:
        client = poplib.POP3("127.0.0.1", self.srv.port("pop3"), timeout=10)
        client.stls(self.srv.client_tls())
        return client

    def login_when_free(self, timeout: float = 5) -> poplib.POP3:
        """Log in, retrying while a session that just went away still holds the lock."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.login()
            except poplib.error_proto as exc:
                if b"[IN-USE]" not in exc.args[0] or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def watch(self) -> Any:
        """An event-bus subscription on INBOX: what an IMAP session of the address would hear."""
        assert self.srv.office is not None
        bus = self.srv.office.bus

        async def subscribe() -> Any:
            return bus.subscribe(mailbox_id=self.inbox.id)
        return self.srv.call(subscribe())

    def events(self, sub: Any, timeout: float = 2) -> list[Any]:
        async def wait() -> list[Any]:
            got = sub.pending()
            deadline = asyncio.get_running_loop().time() + timeout
            while not got and asyncio.get_running_loop().time() < deadline:
                got = await sub.wait(0.1)
            return got
        return self.srv.call(wait())


def uidls(client: poplib.POP3) -> list[bytes]:
    return [line.split()[1] for line in client.uidl()[1]]


def vanish(client: poplib.POP3) -> None:
    """The client's machine drops off the network: reset the connection, no QUIT."""
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.file.close()
    client.sock.close()


def read_unsolicited(client: poplib.POP3, timeout: float = 5) -> bytes:
    client.sock.settimeout(timeout)
    return client.file.readline()


# -- deletion rules ------------------------------------------------------------------------------


def test_dele_only_marks_and_quit_deletes(srv: RunningServer) -> None:
    box = Box(srv)
    before = box.uids()
    sub = box.watch()
    client = box.login()
    client.dele(1)
    client.dele(3)
    assert box.uids() == before  # nothing happens before QUIT
    assert b"2 messages deleted" in client.quit()
    assert box.uids() == [before[1]]
    expunged = [e for e in box.events(sub) if isinstance(e, MessagesExpunged)]
    assert expunged and expunged[0].uids == (before[0], before[2])  # IMAP sessions see EXPUNGE
    sub.close()


def test_dropped_connection_deletes_nothing(srv: RunningServer) -> None:
    box = Box(srv)
    client = box.login()
    client.dele(1)
    client.dele(2)
    vanish(client)  # no QUIT
    client = box.login_when_free()
    assert client.stat()[0] == 3
    client.quit()
    assert len(box.uids()) == 3


def test_rset_unmarks(srv: RunningServer) -> None:
    box = Box(srv)
    client = box.login()
    client.dele(1)
    client.rset()
    client.quit()
    assert len(box.uids()) == 3


def test_client_vanishing_mid_retr_deletes_nothing(srv: RunningServer) -> None:
    box = Box(srv, count=0)
    box.deliver(message(1, 4_000_000))
    box.deliver(message(2))
    client = box.login()
    client.dele(2)
    client._putcmd("RETR 1")
    assert client._getline()[0].startswith(b"+OK")
    client.file.read(10_000)
    vanish(client)  # gone in the middle of the message
    box.login_when_free().quit()
    assert len(box.uids()) == 2


def test_pipelined_quit_after_a_broken_retr_deletes_nothing(srv: RunningServer) -> None:
    box = Box(srv, count=0)
    box.deliver(message(1, 16_000_000))
    client = box.login()
    # The whole conversation in one packet: a client that then disappears must not lose the
    # message it never received, even though its QUIT reached the server.
    client.sock.sendall(b"RETR 1\r\nDELE 1\r\nQUIT\r\n")
    assert client._getline()[0].startswith(b"+OK")
    client.file.read(100_000)
    vanish(client)
    box.login_when_free().quit()
    assert len(box.uids()) == 1


# -- lock and snapshot ---------------------------------------------------------------------------


def test_second_session_gets_in_use_on_either_port(srv: RunningServer) -> None:
    box = Box(srv)
    first = box.login("pop3s")
    for port in ("pop3s", "pop3"):
        with pytest.raises(poplib.error_proto) as info:
            box.login(port)
        assert info.value.args[0].startswith(b"-ERR [IN-USE]")
    first.dele(1)
    first.quit()
    second = box.login("pop3")
    assert second.stat()[0] == 2
    second.quit()


def test_snapshot_is_fixed_at_login(srv: RunningServer) -> None:
    box = Box(srv)
    client = box.login()
    box.deliver(message(99))
    assert client.stat()[0] == 3
    assert len(client.list()[1]) == 3
    client.quit()
    client = box.login()
    assert client.stat()[0] == 4
    client.quit()


def test_uidl_survives_other_deletions(srv: RunningServer) -> None:
    box = Box(srv, count=4)
    client = box.login()
    before = uidls(client)
    client.dele(2)
    client.quit()
    client = box.login()
    assert uidls(client) == [before[0], *before[2:]]
    client.quit()


def test_reads_from_disk_in_order_and_out_of_order(srv: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker-thread path (files not in the page cache): batches read ahead in order,
    single reads otherwise; every byte as stored."""
    from postoffice.services import maildrop

    monkeypatch.setattr(maildrop, "_NOWAIT", 0)  # as if nothing were in the page cache
    monkeypatch.setattr(maildrop, "READ_AHEAD_MESSAGES", 4)
    box = Box(srv, count=0)
    raws = [message(n, 300 * n) for n in range(1, 12)]
    for raw in raws:
        box.deliver(raw)
    client = box.login()
    for n in (1, 2, 3, 4, 5, 6, 9, 10, 3, 11, 7):
        assert b"\r\n".join(client.retr(n)[1]) + b"\r\n" == raws[n - 1], n
    assert client.top(8, 0)[1][1] == b"Subject: message 8"
    assert b"\r\n".join(client.retr(8)[1]) + b"\r\n" == raws[7]
    client.quit()


# -- beside IMAP -----------------------------------------------------------------------------------


def test_message_expunged_over_imap_during_session(srv: RunningServer) -> None:
    box = Box(srv)
    uids = box.uids()
    blob = box.messages()[-1].blob_id
    client = box.login()
    # Another client (IMAP) expunges message 2; its file is still there: the snapshot serves it.
    srv.call(srv.store.remove_messages(box.account.id, box.inbox.id, [uids[1]]))
    # Message 3 is expunged and its file is gone as well: a clear error, the session goes on.
    srv.call(srv.store.remove_messages(box.account.id, box.inbox.id, [uids[2]]))
    srv.store.blobs.path(blob).unlink()
    assert b"\r\n".join(client.retr(2)[1]) + b"\r\n" == box.raws[1]
    with pytest.raises(poplib.error_proto) as info:
        client.retr(3)
    assert info.value.args[0].startswith(b"-ERR [SYS/TEMP]")
    assert client.noop() == b"+OK"
    client.dele(2)
    client.dele(3)
    client.dele(1)
    assert client.quit().startswith(b"+OK")  # QUIT does not fail for what already vanished
    assert box.uids() == []


def test_pop3_deletion_reaches_imap_subscribers_and_new_mail_is_announced(srv: RunningServer) -> None:
    box = Box(srv)
    sub = box.watch()
    box.deliver(message(7))
    assert any(isinstance(e, MessagesAdded) for e in box.events(sub))
    client = box.login()
    client.dele(4)
    client.quit()
    assert any(isinstance(e, MessagesExpunged) for e in box.events(sub))
    sub.close()


def test_beside_a_real_imap_session(srv: RunningServer) -> None:
    """imaplib on 993 next to poplib on 995: POP3's QUIT reaches IMAP as EXPUNGE, and an IMAP
    expunge during a POP3 session does not disturb it."""
    box = Box(srv, count=4)
    imap = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.client_tls(), timeout=10)
    imap.login(box.address, PASSWORD)
    assert imap.select("INBOX")[1] == [b"4"]
    client = box.login()
    imap.store("4", "+FLAGS", "\\Deleted")
    imap.expunge()  # gone for IMAP; still message 4 of the POP3 snapshot
    assert b"\r\n".join(client.retr(4)[1]) + b"\r\n" == box.raws[3]
    client.dele(1)
    client.dele(4)
    assert client.quit().startswith(b"+OK")
    deadline = time.monotonic() + 5
    expunged: list[Any] = []
    while not expunged and time.monotonic() < deadline:
        imap.noop()
        expunged = [r for r in imap.untagged_responses.pop("EXPUNGE", [])]
        time.sleep(0.05)
    assert expunged == [b"1"]
    assert imap.select("INBOX")[1] == [b"2"]
    imap.logout()


# -- per-address POP policy ----------------------------------------------------------------------


def download_and_delete_all(box: Box) -> list[bytes]:
    client = box.login_when_free()
    count = client.stat()[0]
    got = []
    for n in range(1, count + 1):
        got.append(b"\r\n".join(client.retr(n)[1]) + b"\r\n")
        client.dele(n)
    client.quit()
    return got


def test_policy_delete_is_the_default(srv: RunningServer) -> None:
    box = Box(srv)
    assert box.account.pop3_policy == "delete"
    assert download_and_delete_all(box) == box.raws
    assert box.uids() == []


def test_policy_keep_hides_downloaded_mail_from_pop3_only(srv: RunningServer) -> None:
    box = Box(srv)
    box.set(pop3_policy="keep")
    before = box.messages()
    assert download_and_delete_all(box) == box.raws
    assert box.messages() == before  # untouched for IMAP: same UIDs, flags, modseqs
    box.deliver(message(4))
    client = box.login()
    assert client.stat()[0] == 1  # only the new one: the kept ones are not downloaded again
    assert client.retr(1)[1][1] == b"Subject: message 4"
    client.quit()


def test_policy_mark_read(srv: RunningServer) -> None:
    box = Box(srv)
    box.set(pop3_policy="mark-read")
    sub = box.watch()
    client = box.login()
    client.retr(1)
    client.dele(1)
    client.retr(2)  # downloaded, not deleted: stays as it was
    client.quit()
    flags = {m.uid: m.flags for m in box.messages()}
    uids = sorted(flags)
    assert len(uids) == 3
    assert flags[uids[0]] & SEEN and not flags[uids[1]] & SEEN and not flags[uids[2]] & SEEN
    changed = [e for e in box.events(sub) if isinstance(e, FlagsChanged)]
    assert changed and changed[0].changes[0][0] == uids[0]  # IMAP sessions see \Seen
    client = box.login()
    assert client.stat()[0] == 2
    client.quit()
    sub.close()


@pytest.mark.parametrize(("policy", "folder"), [("trash", "Trash"), ("archive", "Archive")])
def test_policy_moves_to_folder(srv: RunningServer, policy: str, folder: str) -> None:
    box = Box(srv)
    box.set(pop3_policy=policy)
    client = box.login()
    client.dele(2)
    client.quit()
    assert len(box.uids()) == 2
    moved = box.messages(folder)
    assert len(moved) == 1
    assert srv.call(srv.store.read_blob(moved[0].blob_id)) == box.raws[1]


def test_policy_trash_creates_a_missing_trash_folder(srv: RunningServer) -> None:
    box = Box(srv)
    srv.call(srv.store.delete_mailbox(box.account.id, "Trash"))
    box.set(pop3_policy="trash")
    client = box.login()
    client.dele(1)
    client.quit()
    assert len(box.uids()) == 2 and len(box.uids("Trash")) == 1


def test_only_new_mail(srv: RunningServer) -> None:
    box = Box(srv)
    box.set(pop3_since=time.time())
    client = box.login()
    assert client.stat()[0] == 0
    client.quit()
    box.deliver(message(10))
    client = box.login()
    assert client.stat()[0] == 1
    client.quit()
    box.set(pop3_since=None)
    client = box.login()
    assert client.stat()[0] == 4
    client.quit()


# -- protocol switches -----------------------------------------------------------------------------


def test_pop3_off_refuses_login_with_reason(srv: RunningServer) -> None:
    box = Box(srv)
    box.set(pop3=False)
    with pytest.raises(poplib.error_proto) as info:
        box.login()
    line = info.value.args[0]
    assert line.startswith(b"-ERR [AUTH]") and b"POP3 is disabled for this address" in line


def test_domain_forced_to_imap_refuses_login(srv: RunningServer) -> None:
    assert srv.office is not None
    srv.add_domain("imaponly.example")
    box = Box(srv, domain="imaponly.example")
    srv.call(srv.office.accounts.set_domain_policy("imaponly.example", "imap-only"))
    with pytest.raises(poplib.error_proto) as info:
        box.login()
    line = info.value.args[0]
    assert line.startswith(b"-ERR [AUTH]") and b"imaponly.example" in line and b"IMAP only" in line


def test_switching_pop3_off_ends_open_session_and_deletes_nothing(srv: RunningServer) -> None:
    box = Box(srv)
    client = box.login()
    client.dele(1)
    box.set(pop3=False)
    line = read_unsolicited(client)
    assert line.startswith(b"-ERR [AUTH]") and b"disabled for this address" in line
    assert read_unsolicited(client) == b""  # closed
    assert len(box.uids()) == 3
    box.set(pop3=True)
    box.login_when_free().quit()  # the lock went with the session


def test_forcing_domain_to_imap_ends_open_session(srv: RunningServer) -> None:
    assert srv.office is not None
    srv.add_domain("switch.example")
    box = Box(srv, domain="switch.example")
    client = box.login("pop3")
    client.dele(2)
    srv.call(srv.office.accounts.set_domain_policy("switch.example", "imap-only"))
    line = read_unsolicited(client)
    assert line.startswith(b"-ERR [AUTH]") and b"switch.example" in line
    assert len(box.uids()) == 3


def test_server_shutdown_ends_sessions_without_deleting(tmp_path: Any) -> None:
    server = RunningServer(tmp_path / "data", limits={"pop3_timeout": 5})
    with server:
        box = Box(server)
        client = box.login()
        client.dele(1)
        assert server.office is not None
        server.call(server.office.stop())
        line = read_unsolicited(client)
        assert line.startswith(b"-ERR [SYS/TEMP]") and b"shutting down" in line
        assert len(box.uids()) == 3
