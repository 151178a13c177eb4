"""A pathological message delays only its own session (issue 10) and costs bounded work (issue 12).

While a message with one huge folded header and a large body is received, DKIM-verified, parsed
and stored, NOOPs on other SMTP and IMAP connections of the same server keep being answered
promptly: the parse, the DKIM work and the hashing run in worker processes (postoffice/cpu.py).
Before, the same message on port 25 left every other session without an answer for ~50 s.

The clients here send pre-built bytes over raw sockets (``sendall`` releases the GIL), so the
test process's own Python work does not disturb the server, which runs in a thread of it.
"""

from __future__ import annotations

import imaplib
import smtplib
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest

from postoffice.authn.dkim import generate_dkim_keys
from tests.support.dns_server import DNSTestServer, dns_server  # noqa: F401  (fixture)
from tests.support.server import RunningServer
from tests.support.smtp import RawSmtp

KEYS = generate_dkim_keys("rsa-sha256", 1024)
FOLD = b"b" * 70


def folded_header(size: int) -> bytes:
    """One field of about ``size`` octets, folded every 73 octets."""
    return b"X-Folded: a" + b"".join(b"\r\n\t" + FOLD for _ in range(size // 73)) + b"\r\n"


def pathological(header_size: int, body_size: int, *, signed: bool) -> bytes:
    head = (b"From: Sender <sender@remote.example>\r\nTo: alice@example.com\r\nSubject: slow\r\n"
            b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <slow@remote.example>\r\n"
            + folded_header(header_size))
    body = (b"y" * 998 + b"\r\n") * (body_size // 1000)
    message = head + b"\r\n" + body
    if signed:
        message = dkim.sign(message, b"sel", b"remote.example", KEYS.private_key_pem,
                            include_headers=[b"from", b"to", b"subject"]) + message
    return message


class Pinger(threading.Thread):
    """NOOP on already open SMTP and IMAP connections, every 20 ms, timing each answer."""

    def __init__(self, srv: RunningServer) -> None:
        super().__init__(daemon=True)
        self.smtp = smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=30)
        self.smtp.ehlo("pinger.example")
        self.imap = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=30)
        self.imap.login("bob@example.com", "password1")
        self.samples: list[tuple[float, float]] = []  # (sent at, seconds to the answer)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for noop in (self.smtp.noop, self.imap.noop):
                started = time.perf_counter()
                noop()
                self.samples.append((started, time.perf_counter() - started))
            time.sleep(0.02)

    def during(self, start: float, end: float) -> list[float]:
        return [took for at, took in self.samples if start <= at <= end]

    def close(self) -> None:
        self.stop.set()
        self.join(30)
        self.smtp.quit()
        self.imap.logout()


@pytest.fixture
def srv(tmp_path: Path, dns_server: DNSTestServer) -> Iterator[RunningServer]:  # noqa: F811
    dns_server.add("sel._domainkey.remote.example", "TXT", KEYS.dns_txt)
    with RunningServer(tmp_path / "data", security={"allow_plaintext_auth": True},
                       limits={"max_message_size": 64 << 20, "imap_max_literal": 64 << 20},
                       inbound={"verify": True}, outbound={"enabled": False, "dns": dns_server.nameserver}) as s:
        s.add_account("alice@example.com", "password1")
        s.add_account("bob@example.com", "password1")
        yield s


def stored_sizes(srv: RunningServer, address: str) -> list[int]:
    async def sizes() -> list[int]:
        account = await srv.store.get_account(address)
        box = await srv.store.get_mailbox(account.id, "INBOX")
        return [m.size for m in await srv.store.list_messages(box.id)]
    return srv.call(sizes())


def assert_prompt(latencies: list[float]) -> None:
    # The target is 100 ms; before the work left the event loop the worst wait was ~50 s. The
    # 90th percentile carries the target (a shared 2-core machine can delay any one answer), the
    # maximum a 50x margin on the old behaviour.
    assert len(latencies) >= 5, latencies
    p90 = statistics.quantiles(latencies, n=10)[-1]
    assert p90 < 0.1 and max(latencies) < 1.0, (p90, max(latencies))


def test_port_25_pathological_message_does_not_stall_other_sessions(srv: RunningServer) -> None:
    message = pathological(1000 * 1024, 12 << 20, signed=True)
    wire = message.replace(b"\r\n.", b"\r\n..") + b".\r\n"
    pinger = Pinger(srv)
    pinger.start()
    try:
        with RawSmtp(srv.port("smtp"), timeout=120) as client:
            client.cmd("EHLO mx.remote.example")
            assert client.cmd("MAIL FROM:<sender@remote.example>")[0] == 250
            assert client.cmd("RCPT TO:<alice@example.com>")[0] == 250
            assert client.cmd("DATA")[0] == 354
            started = time.perf_counter()
            client.send(wire)
            code, text = client.reply()
            finished = time.perf_counter()
        time.sleep(0.1)
    finally:
        pinger.close()
    assert code == 250, text
    assert finished - started > 0.3  # the verification and the parse took a while: measured over that
    assert_prompt(pinger.during(started, finished))
    [size] = stored_sizes(srv, "alice@example.com")
    assert size > len(message)  # the whole message, with our trace and Authentication-Results on top
    stored = srv.call(srv.store.read_blob(srv.call(srv.store.list_messages(
        srv.call(srv.store.get_mailbox(srv.call(srv.store.get_account("alice@example.com")).id, "INBOX")).id))[0].blob_id))
    assert b"dkim=pass header.d=remote.example" in stored[:4096] and stored.endswith(message[-5000:])


def test_imap_append_of_a_pathological_message_does_not_stall_other_sessions(srv: RunningServer) -> None:
    message = pathological(8 << 20, 8 << 20, signed=False)  # APPEND has no header limit
    pinger = Pinger(srv)
    pinger.start()
    try:
        with socket.create_connection(("127.0.0.1", srv.port("imap")), timeout=120) as sock:
            reader = sock.makefile("rb")
            reader.readline()
            sock.sendall(b"a LOGIN alice@example.com password1\r\n")
            assert reader.readline().startswith(b"a OK")
            started = time.perf_counter()
            sock.sendall(b"b APPEND INBOX {%d+}\r\n" % len(message) + message + b"\r\n")
            answer = reader.readline()
            finished = time.perf_counter()
    finally:
        pinger.close()
    assert answer.startswith(b"b OK [APPENDUID "), answer
    assert finished - started > 0.3
    assert_prompt(pinger.during(started, finished))
    assert stored_sizes(srv, "alice@example.com") == [len(message)]


def test_an_absurd_header_block_is_refused_with_552(srv: RunningServer) -> None:
    message = pathological(3 << 20, 1000, signed=False)
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=30) as client:
        client.ehlo("mx.remote.example")
        started = time.perf_counter()
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("sender@remote.example", ["alice@example.com"], message)
        assert (refused.value.smtp_code, refused.value.smtp_error) == (552, b"5.3.4 Message header too large")
        assert time.perf_counter() - started < 10  # not the ~50 s the analysis of such a header took
        # The session goes on: a sane message right after is accepted.
        client.sendmail("sender@remote.example", ["alice@example.com"], pathological(2000, 1000, signed=False))
    assert len(stored_sizes(srv, "alice@example.com")) == 1
