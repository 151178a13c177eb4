"""ManageSieve (RFC 5804) with the real sieve-connect client, then Sieve at delivery end to end:
a script uploaded and activated over 4190 files mail delivered through SMTP (smtplib), and its
vacation reply goes out once per sender through the outbound queue to an aiosmtpd sink, never
to a ``Precedence: list`` sender."""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.outbound.worker_support import free_port, start_remote
from tests.support.dns_server import DNSTestServer, dns_server  # noqa: F401  (fixture)
from tests.support.server import RunningServer
from tests.support.smtp import messages
from tests.support.tools import require_tool

SCRIPT = """require ["fileinto", "vacation", "imap4flags"];
if header :contains "subject" "[news]" {
    fileinto :flags "\\\\Seen" "News";
    stop;
}
vacation :days 1 :subject "Out of office" "I am away until Monday.";
"""


def sieve_connect(srv: RunningServer, tmp_path: Path, *args: str, user: str = "alice@remote-ok.test",
                  password: str = "password-1") -> subprocess.CompletedProcess[str]:
    binary = require_tool("sieve-connect", "sieve-connect")
    read, write = os.pipe()
    os.write(write, password.encode() + b"\n")
    os.close(write)
    try:
        return subprocess.run([binary, "--server", "127.0.0.1", "--port", str(srv.port("managesieve")),
                               "--user", user, "--passwordfd", str(read), "--notlsverify", "--authmech", "PLAIN",
                               *args], capture_output=True, text=True, timeout=30, pass_fds=(read,), cwd=tmp_path)
    finally:
        os.close(read)


def wait_for(check: Callable[[], Any], timeout: float = 8.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def sink(dns_server: DNSTestServer) -> Iterator[tuple[Any, int]]:  # noqa: F811
    port = free_port("127.0.0.1")
    for domain in ("far.test", "lists.test"):
        dns_server.add(domain, "MX", (10, "mx.far.test"))
    dns_server.add("mx.far.test", "A", "127.0.0.1")
    controller, handler = start_remote("127.0.0.1", port)
    yield handler, port
    controller.stop()


def send(srv: RunningServer, sender: str, subject: str, extra: str = "") -> None:
    body = (f"From: <{sender}>\r\nTo: alice@remote-ok.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{time.monotonic_ns()}@far.test>\r\n{extra}\r\nhello\r\n")
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as smtp:
        smtp.sendmail(sender, ["alice@remote-ok.test"], body.encode())


def test_sieve_connect_upload_activate_then_filter_and_vacation(tmp_path: Path, dns_server: DNSTestServer,  # noqa: F811
                                                                sink: tuple[Any, int]) -> None:
    handler, port = sink
    with RunningServer(tmp_path / "data", outbound={"enabled": True, "dns": dns_server.nameserver,
                                                    "smtp_port": port, "retry_interval": 1}) as srv:
        alice = srv.add_account("alice@remote-ok.test", "password-1")
        srv.call(srv.store.create_mailbox(alice.id, "News"))
        (tmp_path / "filter.sieve").write_text(SCRIPT)
        done = sieve_connect(srv, tmp_path, "--upload", "--localsieve", "filter.sieve", "--remotesieve", "main")
        assert done.returncode == 0, done.stdout + done.stderr
        done = sieve_connect(srv, tmp_path, "--activate", "--remotesieve", "main")
        assert done.returncode == 0, done.stdout + done.stderr
        done = sieve_connect(srv, tmp_path, "--list")
        assert done.returncode == 0 and "main" in done.stdout and "ACTIVE" in done.stdout.upper(), done.stdout
        done = sieve_connect(srv, tmp_path, "--download", "--remotesieve", "main", "--localsieve", "back.sieve")
        assert done.returncode == 0, done.stdout + done.stderr
        assert (tmp_path / "back.sieve").read_text().replace("\r\n", "\n") == SCRIPT

        send(srv, "news@lists.test", "[news] weekly")
        news = wait_for(lambda: messages(srv, "alice@remote-ok.test", "News"))
        assert b"[news] weekly" in news[0]
        assert messages(srv, "alice@remote-ok.test") == []

        send(srv, "bob@far.test", "hello 1")
        send(srv, "bob@far.test", "hello 2")
        send(srv, "list@lists.test", "list mail", extra="Precedence: list\r\n")
        wait_for(lambda: len(messages(srv, "alice@remote-ok.test")) == 3)
        wait_for(lambda: handler.messages)
        time.sleep(1.0)  # anything else the queue would send has had time to leave
        assert [(m[0], m[1]) for m in handler.messages] == [("<>", ["bob@far.test"])]  # null reverse-path
        reply = handler.messages[0][2]
        assert b"Subject: Out of office" in reply and b"I am away until Monday." in reply
        assert b"Auto-Submitted: auto-replied" in reply


def test_sieve_connect_refused_when_imap_is_off_and_bad_scripts(tmp_path: Path) -> None:
    with RunningServer(tmp_path / "data") as srv:
        srv.add_account("alice@remote-ok.test", "password-1")
        (tmp_path / "bad.sieve").write_text('fileinto "x";\n')
        done = sieve_connect(srv, tmp_path, "--upload", "--localsieve", "bad.sieve", "--remotesieve", "bad")
        assert done.returncode != 0 and "fileinto" in (done.stdout + done.stderr), done.stdout + done.stderr
        done = sieve_connect(srv, tmp_path, "--list", password="wrong-password")
        assert done.returncode != 0
        srv.call(srv.office.accounts.update("alice@remote-ok.test", imap=False))
        done = sieve_connect(srv, tmp_path, "--list")
        assert done.returncode != 0 and "IMAP is disabled" in (done.stdout + done.stderr), done.stdout + done.stderr
