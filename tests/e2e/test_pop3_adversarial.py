"""POP3 under attack: raw sockets doing what hostile probes and broken clients do, on 110
(STLS) and 995 (implicit TLS). Every test also checks that the server logged no error or
traceback, and the maildrop tests that nothing was deleted unless QUIT completed."""

from __future__ import annotations

import base64
import itertools
import logging
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import RunningServer

PASSWORD = "password1"
_numbers = itertools.count(1)

MESSAGES = [
    b"From: a@example.org\r\nSubject: one\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nno final CRLF",
    b"",
    b"From: c@example.org\r\nSubject: three\r\n\r\n" + b"".join(b"line %d\r\n" % i for i in range(50)),
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("pop3adv") / "data",
                       limits={"pop3_timeout": 2, "max_connections_per_ip": 12},
                       security={"throttle_block_after": 1000}) as server:
        yield server


@pytest.fixture(autouse=True)
def no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No test may make the server log an error or a traceback."""
    caplog.set_level(logging.INFO)
    yield
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


class Client:
    """A line-oriented raw POP3 client over a plain or TLS socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(10)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                rest, self.buf = self.buf, b""
                return rest
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def cmd(self, command: bytes) -> bytes:
        self.send(command + b"\r\n")
        return self.line()

    def body(self) -> bytes:
        """A multi-line body, still dot-stuffed, without its terminator."""
        while True:
            end = self.buf.find(b"\r\n.\r\n")
            if self.buf.startswith(b".\r\n"):
                self.buf = self.buf[3:]
                return b""
            if end >= 0:
                body, self.buf = self.buf[: end + 2], self.buf[end + 5:]
                return body
            data = self.sock.recv(1 << 20)
            assert data, "connection closed inside a multi-line reply"
            self.buf += data

    def lines(self) -> list[bytes]:
        body = self.body()
        return body.split(b"\r\n")[:-1] if body else []

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def unstuff(body: bytes) -> bytes:
    return b"\r\n".join(l[1:] if l.startswith(b".") else l for l in body.split(b"\r\n"))


def plain(srv: RunningServer) -> Client:
    client = Client(socket.create_connection(("127.0.0.1", srv.port("pop3"))))
    assert client.line().startswith(b"+OK")
    return client


def upgrade(srv: RunningServer, client: Client) -> Client:
    tls = srv.client_tls().wrap_socket(client.sock, server_hostname="mail.test")
    return Client(tls)


def starttls(srv: RunningServer) -> Client:
    client = plain(srv)
    assert client.cmd(b"STLS").startswith(b"+OK")
    return upgrade(srv, client)


def implicit(srv: RunningServer, rcvbuf: int | None = None) -> Client:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", srv.port("pop3s")))
    client = Client(srv.client_tls().wrap_socket(sock, server_hostname="mail.test"))
    assert client.line().startswith(b"+OK")
    return client


def new_account(srv: RunningServer, messages: list[bytes] = MESSAGES) -> tuple[str, int]:
    address = f"adv{next(_numbers)}@example.com"
    account = srv.add_account(address, PASSWORD)
    for raw in messages:
        srv.call(srv.store.deliver([(account.id, "INBOX")], raw))
    return address, account.id


def login(client: Client, address: str) -> bytes:
    assert client.cmd(b"USER " + address.encode()).startswith(b"+OK")
    reply = client.cmd(b"PASS " + PASSWORD.encode())
    assert reply.startswith(b"+OK"), reply
    return reply


def inbox_uids(srv: RunningServer, account_id: int) -> list[int]:
    inbox = srv.call(srv.store.get_mailbox(account_id, "INBOX"))
    return [m.uid for m in srv.call(srv.store.list_messages(inbox.id))]


ESTABLISHED = "01"  # TCP_ESTABLISHED in the kernel's table


def tcp_state(local_port: int, remote_port: int) -> str | None:
    """The state of the TCP socket 127.0.0.1:local_port -> 127.0.0.1:remote_port (None if there is
    none), read from the kernel's table /proc/net/tcp, so no tool such as `ss` is needed."""
    ends = [f"0100007F:{local_port:04X}", f"0100007F:{remote_port:04X}"]
    with open("/proc/net/tcp") as table:
        for line in table:
            fields = line.split()
            if fields[1:3] == ends:
                return fields[3]
    return None


def wait_for(predicate, timeout: float = 8.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.05)


TRANSACTION_ONLY = [b"STAT", b"LIST", b"LIST 1", b"RETR 1", b"DELE 1", b"NOOP", b"RSET", b"TOP 1 0",
                    b"UIDL", b"UIDL 1"]


# -- states and plaintext rules ------------------------------------------------------------------


def test_every_command_before_tls_on_110(srv: RunningServer) -> None:
    address, _ = new_account(srv)
    c = plain(srv)
    assert c.cmd(b"CAPA").startswith(b"+OK")
    caps = c.lines()
    assert b"STLS" in caps and b"USER" not in caps and not any(x.startswith(b"SASL") for x in caps)
    for command in (b"USER " + address.encode(), b"PASS " + PASSWORD.encode(), b"AUTH", b"AUTH PLAIN",
                    b"AUTH PLAIN " + base64.b64encode(f"\0{address}\0{PASSWORD}".encode()), b"AUTH LOGIN"):
        assert c.cmd(command).startswith(b"-ERR [AUTH] "), command
    for command in TRANSACTION_ONLY:
        assert c.cmd(command).startswith(b"-ERR "), command
    assert c.cmd(b"APOP x y").startswith(b"-ERR [AUTH] ")
    for command in (b"XYZZY", b"", b" NOOP", b"NOOP x", b"QUIT x", b"STLS x", b"CAPA x"):
        assert c.cmd(command).startswith(b"-ERR "), command
    assert c.cmd(b"QUIT").startswith(b"+OK")
    assert c.line() == b""
    c.close()


def test_every_command_after_user_after_pass_and_after_quit(srv: RunningServer) -> None:
    address, account_id = new_account(srv)
    before = inbox_uids(srv, account_id)
    c = implicit(srv)
    assert c.cmd(b"PASS " + PASSWORD.encode()) == b"-ERR send USER first"
    assert c.cmd(b"USER " + address.encode()).startswith(b"+OK")
    for command in TRANSACTION_ONLY:
        assert c.cmd(command).startswith(b"-ERR "), command
    assert c.cmd(b"STLS") == b"-ERR already using TLS"  # and STLS on 995
    login(c, address)
    for command in (b"USER x", b"PASS x", b"APOP x y", b"AUTH", b"AUTH PLAIN", b"STLS"):
        assert c.cmd(command).startswith(b"-ERR "), command
    assert c.cmd(b"NOOP x").startswith(b"-ERR ")
    assert c.cmd(b"QUIT x").startswith(b"-ERR ")
    assert c.cmd(b"DELE 1") == b"+OK message 1 deleted"
    assert c.cmd(b"RSET").startswith(b"+OK")
    assert c.cmd(b"QUIT").startswith(b"+OK")
    assert c.line() == b""  # closed after QUIT: nothing more is read
    c.close()
    assert inbox_uids(srv, account_id) == before


def test_stls_twice_and_pipelined_commands_discarded(srv: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    address, _ = new_account(srv)
    c = plain(srv)
    # CVE-2011-0411: whatever follows STLS in the same packet is never executed.
    c.send(b"STLS\r\nUSER " + address.encode() + b"\r\nPASS " + PASSWORD.encode() + b"\r\nSTAT\r\n")
    assert c.line() == b"+OK begin TLS negotiation"
    c = upgrade(srv, c)
    assert c.cmd(b"STAT").startswith(b"-ERR ")  # not logged in: the PASS was dropped
    assert c.cmd(b"STLS") == b"-ERR already using TLS"
    assert c.cmd(b"CAPA").startswith(b"+OK")
    caps = c.lines()
    assert b"USER" in caps and b"SASL PLAIN LOGIN" in caps and b"STLS" not in caps
    login(c, address)
    c.close()
    assert any("discarded" in r.getMessage() for r in caplog.records)


def test_failed_or_abandoned_stls_handshake(srv: RunningServer) -> None:
    address, _ = new_account(srv)
    c = plain(srv)
    assert c.cmd(b"STLS").startswith(b"+OK")
    c.send(b"this is not a TLS ClientHello\r\n" * 4)
    assert c.sock.recv(100) == b""
    c.close()
    # A client that says STLS and then nothing is cut off after pop3_timeout, not 30 s.
    c = plain(srv)
    assert c.cmd(b"STLS").startswith(b"+OK")
    start = time.monotonic()
    assert c.sock.recv(100) == b""
    assert time.monotonic() - start < 6
    c.close()
    c = starttls(srv)
    login(c, address)
    c.close()


# -- authentication --------------------------------------------------------------------------------


def test_user_names_and_passwords_that_are_not(srv: RunningServer) -> None:
    address, _ = new_account(srv)
    c = implicit(srv)
    assert c.cmd(b"USER " + b"x" * 300) == b"-ERR line too long"
    assert c.cmd(b"USER a\0b").startswith(b"-ERR ")
    assert c.cmd(b"USER \xff\xfe@example.com").startswith(b"-ERR ")
    assert c.cmd(b"USER \xc3\xa9@example.com").startswith(b"+OK")  # UTF-8: a name like any
    assert c.cmd(b"PASS " + PASSWORD.encode()).startswith(b"-ERR [AUTH] ")
    assert c.cmd(b"USER " + address.encode()).startswith(b"+OK")
    assert c.cmd(b"PASS " + PASSWORD.encode() + b"\0").startswith(b"-ERR ")
    assert c.cmd(b"PASS") == b"-ERR PASS needs a password"
    assert c.cmd(b"USER a b").startswith(b"-ERR ")
    login(c, address)
    c.close()


def test_sasl_edge_cases(srv: RunningServer) -> None:
    address, _ = new_account(srv)
    other, _ = new_account(srv)
    c = implicit(srv)
    assert c.cmd(b"AUTH").startswith(b"+OK")  # RFC 5034 / common extension: the list
    assert c.lines() == [b"PLAIN", b"LOGIN"]
    assert c.cmd(b"AUTH CRAM-MD5").startswith(b"-ERR ")
    assert c.cmd(b"AUTH PLAIN !!!!").startswith(b"-ERR ")
    assert c.cmd(b"AUTH PLAIN =").startswith(b"-ERR [AUTH] ")
    assert c.cmd(b"AUTH PLAIN") == b"+ "
    assert c.cmd(b"*") == b"-ERR authentication cancelled"
    assert c.cmd(b"AUTH PLAIN") == b"+ "
    assert c.cmd(b"not base64!").startswith(b"-ERR ")
    assert c.cmd(b"AUTH PLAIN") == b"+ "
    assert c.cmd(b"A" * 20000).startswith(b"-ERR ")  # over-long response: aborted, session goes on
    assert c.cmd(b"NOOP").startswith(b"-ERR ")
    impersonate = base64.b64encode(f"{other}\0{address}\0{PASSWORD}".encode())
    assert c.cmd(b"AUTH PLAIN " + impersonate).startswith(b"-ERR [AUTH] ")
    assert c.cmd(b"AUTH LOGIN").startswith(b"+ ")
    assert c.cmd(base64.b64encode(address.encode())).startswith(b"+ ")
    assert c.cmd(base64.b64encode(b"wrong")).startswith(b"-ERR [AUTH] ")
    assert c.cmd(b"AUTH LOGIN " + base64.b64encode(address.encode() + b"\0x")).startswith(b"-ERR")
    assert c.cmd(b"AUTH LOGIN").startswith(b"+ ")
    assert c.cmd(base64.b64encode(address.encode())).startswith(b"+ ")
    assert c.cmd(base64.b64encode(PASSWORD.encode())).startswith(b"+OK")
    assert c.cmd(b"STAT") == b"+OK 3 %d" % sum(map(len, MESSAGES))
    c.close()


def test_repeated_failures_are_throttled(tmp_path: Path) -> None:
    with RunningServer(tmp_path / "data", security={"throttle_block_after": 4}) as server:
        server.add_account("t@example.com", PASSWORD)
        c = implicit(server)
        replies = [c.cmd(b"USER t@example.com") and c.cmd(b"PASS wrong") for _ in range(6)]
        assert all(r.startswith(b"-ERR [AUTH] ") for r in replies[:4]), replies
        assert all(r.startswith(b"-ERR [SYS/TEMP] ") for r in replies[4:]), replies
        assert c.cmd(b"NOOP").startswith(b"-ERR ")  # the session goes on
        c.close()


# -- transaction arguments -------------------------------------------------------------------------


def test_message_numbers_out_of_range_and_malformed(srv: RunningServer) -> None:
    address, account_id = new_account(srv)
    before = inbox_uids(srv, account_id)
    c = implicit(srv)
    login(c, address)
    for command in (b"RETR 0", b"RETR -1", b"RETR 99999", b"RETR 4294967296", b"RETR 1 2", b"RETR abc",
                    b"RETR", b"TOP 1 -1", b"TOP 1", b"TOP", b"TOP 0 1", b"TOP 99 1", b"LIST 0", b"LIST 4",
                    b"LIST 1 2", b"UIDL 0", b"UIDL 99", b"UIDL x", b"DELE 0", b"DELE 4",
                    b"RETR 99999999999999999999999999999999"):
        assert c.cmd(command).startswith(b"-ERR "), command
    # A huge line count means "the whole message" (it used to raise OverflowError).
    assert c.cmd(b"TOP 1 99999999999999999999999999999") == b"+OK top of message follows"
    assert unstuff(c.body()) == MESSAGES[0] + b"\r\n"
    assert c.cmd(b"TOP 1 99999999") == b"+OK top of message follows"
    assert unstuff(c.body()) == MESSAGES[0] + b"\r\n"
    assert c.cmd(b"DELE 1").startswith(b"+OK")
    assert c.cmd(b"DELE 1").startswith(b"-ERR ")
    assert c.cmd(b"RETR 1").startswith(b"-ERR ")
    assert c.cmd(b"TOP 1 0").startswith(b"-ERR ")
    assert c.cmd(b"LIST 1").startswith(b"-ERR ")
    assert c.cmd(b"STAT") == b"+OK 2 %d" % (len(MESSAGES[1]) + len(MESSAGES[2]))
    assert c.cmd(b"RSET").startswith(b"+OK")
    assert c.cmd(b"RETR 1").startswith(b"+OK")
    c.body()
    c.close()
    time.sleep(0.2)
    assert inbox_uids(srv, account_id) == before  # no QUIT: nothing deleted


def test_dot_stuffing_empty_message_and_exact_bytes(srv: RunningServer) -> None:
    odd = [b".", b".\r\n", b"\r\n.\r\n.", b"Subject: z\r\n\r\n" + b".\r\n" * 5 + b"..\r\n. x\r\n",
           b"a\r\n.\r\n"]
    address, account_id = new_account(srv, MESSAGES + odd)
    inbox = srv.call(srv.store.get_mailbox(account_id, "INBOX"))
    stored = [srv.call(srv.store.read_blob(m.blob_id)) for m in srv.call(srv.store.list_messages(inbox.id))]
    c = implicit(srv)
    login(c, address)
    assert c.cmd(b"LIST").startswith(b"+OK")
    sizes = c.lines()
    for n, data in enumerate(stored, 1):
        assert sizes[n - 1] == b"%d %d" % (n, len(data))
        assert c.cmd(b"RETR %d" % n) == b"+OK %d octets" % len(data)
        got = unstuff(c.body())
        assert got == (data if data.endswith(b"\r\n") or not data else data + b"\r\n"), (n, data, got)
    assert c.cmd(b"RETR 2") == b"+OK 0 octets"
    assert c.body() == b""
    assert c.cmd(b"TOP 2 5").startswith(b"+OK")
    assert c.body() == b""
    c.close()


def test_empty_maildrop(srv: RunningServer) -> None:
    address, _ = new_account(srv, [])
    c = implicit(srv)
    login(c, address)
    assert c.cmd(b"STAT") == b"+OK 0 0"
    assert c.cmd(b"LIST").startswith(b"+OK")
    assert c.sock and c.body() == b""
    assert c.cmd(b"UIDL").startswith(b"+OK")
    assert c.body() == b""
    for command in (b"RETR 1", b"TOP 1 0", b"DELE 1", b"LIST 1", b"UIDL 1"):
        assert c.cmd(command).startswith(b"-ERR "), command
    assert c.cmd(b"QUIT").startswith(b"+OK")
    c.close()


# -- framing ----------------------------------------------------------------------------------------


def test_long_lines_nul_bytes_and_bare_lf(srv: RunningServer) -> None:
    address, _ = new_account(srv)
    c = implicit(srv)
    for size in (256, 512, 10_000, 1_000_000):
        c.send(b"N" * size + b"\r\n")
        assert c.line() == b"-ERR line too long", size
    c.send(b"X" * 2_000_000)  # no line end at all: the buffer must not grow, nor the session end
    c.send(b"\r\n")
    assert c.line() == b"-ERR line too long"
    assert c.cmd(b"NO\0OP").startswith(b"-ERR ")
    assert c.cmd(b"\0\0\0").startswith(b"-ERR ")
    c.send(b"CAPA\n")  # bare LF: accepted leniently
    assert c.line().startswith(b"+OK")
    c.lines()
    c.send(b"USER " + address.encode() + b"\nPASS " + PASSWORD.encode() + b"\n")
    assert c.line().startswith(b"+OK") and c.line().startswith(b"+OK")
    c.send(b"STAT\n")
    assert c.line().startswith(b"+OK 3 ")
    c.close()


def test_a_thousand_pipelined_retrs(srv: RunningServer) -> None:
    address, _ = new_account(srv)
    c = implicit(srv)
    login(c, address)
    c.send(b"".join(b"RETR %d\r\n" % (i % 3 + 1) for i in range(1000)) + b"NOOP\r\n")
    for i in range(1000):
        n = i % 3
        assert c.line() == b"+OK %d octets" % len(MESSAGES[n])
        expected = MESSAGES[n] if MESSAGES[n].endswith(b"\r\n") or not MESSAGES[n] else MESSAGES[n] + b"\r\n"
        assert unstuff(c.body()) == expected
    assert c.line() == b"+OK"
    c.close()


# -- connections that misbehave -----------------------------------------------------------------


BIG = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 20_000  # 20 MB


def test_client_closing_mid_retr_of_a_big_message(srv: RunningServer) -> None:
    address, account_id = new_account(srv, [BIG, b"Subject: small\r\n\r\nsmall\r\n"])
    before = inbox_uids(srv, account_id)
    c = implicit(srv)
    login(c, address)
    c.send(b"DELE 2\r\nRETR 1\r\nDELE 1\r\nQUIT\r\n")
    assert c.line().startswith(b"+OK")
    assert c.line() == b"+OK %d octets" % len(BIG)
    c.sock.recv(10000)
    c.close()
    time.sleep(0.5)
    assert inbox_uids(srv, account_id) == before
    c = implicit(srv)
    assert login(c, address).endswith(b"2 messages (%d octets)" % (len(BIG) + 25))
    c.close()


@pytest.mark.parametrize("port", ["pop3", "pop3s"])
def test_client_that_stops_reading_is_cut_off_and_unlocked(srv: RunningServer, port: str) -> None:
    mid = b"Subject: mid\r\n\r\n" + b"y" * 50_000 + b"\r\n"
    address, account_id = new_account(srv, [BIG, mid])
    before = inbox_uids(srv, account_id)
    if port == "pop3s":
        c = implicit(srv, rcvbuf=4096)
    else:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", srv.port("pop3")))
        c = Client(sock)
        assert c.line().startswith(b"+OK") and c.cmd(b"STLS").startswith(b"+OK")
        c = upgrade(srv, c)
    login(c, address)
    c.send(b"RETR 2\r\n" if port == "pop3" else b"RETR 1\r\nRETR 1\r\nDELE 1\r\nDELE 2\r\nQUIT\r\n")
    time.sleep(3)  # pop3_timeout is 2 s
    other = implicit(srv)
    login(other, address)  # the lock was released
    assert other.cmd(b"STAT") == b"+OK 2 %d" % (len(BIG) + len(mid))
    other.close()
    # ... and the server side of the stalled connection is gone too (no leaked socket)
    client_port, server_port = c.sock.getsockname()[1], srv.port(port)
    assert tcp_state(client_port, server_port) is not None  # the client's end, still open, is listed
    wait_for(lambda: tcp_state(server_port, client_port) != ESTABLISHED, 10)
    c.close()
    assert inbox_uids(srv, account_id) == before


def test_second_session_on_the_other_port_is_in_use(srv: RunningServer) -> None:
    address, _ = new_account(srv)
    first = implicit(srv)
    login(first, address)
    second = starttls(srv)
    assert second.cmd(b"USER " + address.encode()).startswith(b"+OK")
    assert second.cmd(b"PASS " + PASSWORD.encode()).startswith(b"-ERR [IN-USE] ")
    assert second.cmd(b"STAT").startswith(b"-ERR ")  # still in AUTHORIZATION
    first.close()
    time.sleep(0.3)
    login(second, address)
    assert second.cmd(b"STAT").startswith(b"+OK 3 ")
    second.close()


def test_account_removed_mid_session(srv: RunningServer) -> None:
    address, _ = new_account(srv)
    c = implicit(srv)
    login(c, address)
    assert c.cmd(b"DELE 1").startswith(b"+OK")
    assert srv.office is not None
    srv.call(srv.office.accounts.remove_account(address))
    assert c.line().startswith(b"-ERR [AUTH] ")
    assert c.line() == b""
    c.close()


def test_messages_removed_over_imap_mid_session(srv: RunningServer) -> None:
    address, account_id = new_account(srv)
    c = implicit(srv)
    login(c, address)
    inbox = srv.call(srv.store.get_mailbox(account_id, "INBOX"))
    uids = inbox_uids(srv, account_id)
    srv.call(srv.store.remove_messages(account_id, inbox.id, uids[:2]))
    assert c.cmd(b"RETR 1") == b"+OK %d octets" % len(MESSAGES[0])  # the file outlives the row
    assert unstuff(c.body()) == MESSAGES[0] + b"\r\n"
    assert c.cmd(b"DELE 1").startswith(b"+OK")
    assert c.cmd(b"DELE 2").startswith(b"+OK")
    assert c.cmd(b"QUIT").startswith(b"+OK")
    c.close()
    assert inbox_uids(srv, account_id) == uids[2:]


def test_per_ip_connection_limit(srv: RunningServer) -> None:
    time.sleep(0.5)  # earlier sessions finish closing
    clients = []
    try:
        for _ in range(12):
            clients.append(plain(srv))
        refused = socket.create_connection(("127.0.0.1", srv.port("pop3")))
        refused.settimeout(10)
        assert refused.recv(200).startswith(b"-ERR [SYS/TEMP] ")
        refused.close()
    finally:
        for c in clients:
            c.close()
    time.sleep(0.3)
    c = plain(srv)
    c.close()


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), as a crashing client or a middlebox does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_connections_reset_at_every_stage(srv: RunningServer) -> None:
    """RSTs mid-RETR (995 and after STLS), after login, pre-login and mid-handshake, and TLS
    handshakes the client aborts: no traceback (the TLS transport used to raise AttributeError
    from get_write_buffer_size once torn down), nothing deleted, lock released."""
    big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 5000
    address, account_id = new_account(srv, [big])
    before = inbox_uids(srv, account_id)
    for how in ("pop3s", "stls"):
        c = implicit(srv) if how == "pop3s" else starttls(srv)
        login(c, address)
        c.send(b"RETR 1\r\nRETR 1\r\nDELE 1\r\nQUIT\r\n")
        c.sock.recv(1000)
        _reset(c.sock)
        time.sleep(0.3)
        c = implicit(srv)
        login(c, address)
        _reset(c.sock)
        time.sleep(0.3)
        c = implicit(srv)
        c.send(b"CAPA\r\n")
        _reset(c.sock)
    # a ClientHello, then RST
    sock = socket.create_connection(("127.0.0.1", srv.port("pop3s")))
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    sock.sendall(outgoing.read())
    time.sleep(0.2)
    _reset(sock)
    # clients that reject the certificate (an alert mid-handshake), on 995 and after STLS
    with pytest.raises(ssl.SSLError):
        ssl.create_default_context().wrap_socket(
            socket.create_connection(("127.0.0.1", srv.port("pop3s"))), server_hostname="mail.test")
    c = plain(srv)
    assert c.cmd(b"STLS").startswith(b"+OK")
    with pytest.raises(ssl.SSLError):
        ssl.create_default_context().wrap_socket(c.sock, server_hostname="mail.test")
    # not TLS at all on 995
    for junk in (b"\x16\x03\x01\x00\x05hello" + b"\0" * 100, b"CAPA\r\nUSER x\r\n"):
        sock = socket.create_connection(("127.0.0.1", srv.port("pop3s")))
        sock.sendall(junk)
        sock.settimeout(5)
        try:
            assert not sock.recv(100).startswith(b"+OK")  # an alert or nothing, never POP3
        except OSError:
            pass
        sock.close()
    time.sleep(0.5)
    c = implicit(srv)
    login(c, address)
    assert c.cmd(b"STAT") == b"+OK 1 %d" % len(big)
    c.close()
    assert inbox_uids(srv, account_id) == before

