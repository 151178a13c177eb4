"""swaks (the Debian package) sends through all three SMTP ports the way a user would."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.support.server import RunningServer
from tests.support.smtp import messages, queue
from tests.support.tools import require_tool


def swaks_path() -> str:
    # TLS also needs swaks' Perl modules (Net::SSLeay, IO::Socket::SSL): the Makefile installs them
    return require_tool("swaks", "swaks")


@pytest.fixture(scope="module", autouse=True)
def swaks_installed() -> None:
    swaks_path()  # before the server starts


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("swaks") / "data") as s:
        s.add_account("alice@example.com", "password1")
        s.add_account("bob@example.com", "password1")
        yield s


def swaks(*args: str) -> str:
    done = subprocess.run([swaks_path(), "--server", "127.0.0.1", "--timeout", "10", "--helo", "client.example",
                           *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_swaks_port_25(srv: RunningServer) -> None:
    out = swaks("--port", str(srv.port("smtp")), "--from", "someone@outside.example", "--to", "bob@example.com",
                "--header", "Subject: swaks on 25", "--body", "hello from outside")
    assert "250 2.0.0 Ok: queued as" in out
    stored = messages(srv, "bob@example.com")[-1]
    assert b"Subject: swaks on 25" in stored and b"hello from outside" in stored
    assert stored.startswith(b"Return-Path: <someone@outside.example>\r\nReceived: from client.example")


def test_swaks_port_25_relay_refused(srv: RunningServer) -> None:
    done = subprocess.run([swaks_path(), "--server", "127.0.0.1", "--port", str(srv.port("smtp")), "--from",
                           "someone@outside.example", "--to", "victim@elsewhere.example"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and "550 5.7.1 Relaying denied" in done.stdout


def test_swaks_587_starttls_auth(srv: RunningServer) -> None:
    out = swaks("--port", str(srv.port("submission")), "--tls", "--auth", "PLAIN",
                "--auth-user", "alice@example.com", "--auth-password", "password1",
                "--from", "alice@example.com", "--to", "bob@example.com,friend@remote.example",
                "--header", "Subject: swaks on 587")
    assert "235 2.7.0 Authentication successful" in out
    assert b"Subject: swaks on 587" in messages(srv, "bob@example.com")[-1]
    assert [r["recipient"] for r in queue(srv)[-1]["recipients"]] == ["friend@remote.example"]


def test_swaks_465_tls_on_connect_auth_login(srv: RunningServer) -> None:
    out = swaks("--port", str(srv.port("submissions")), "--tls-on-connect", "--auth", "LOGIN",
                "--auth-user", "bob@example.com", "--auth-password", "password1",
                "--from", "bob@example.com", "--to", "alice@example.com", "--header", "Subject: swaks on 465")
    assert "235 2.7.0 Authentication successful" in out
    assert b"Subject: swaks on 465" in messages(srv, "alice@example.com")[-1]


def test_swaks_587_without_tls_gets_no_auth(srv: RunningServer) -> None:
    done = subprocess.run([swaks_path(), "--server", "127.0.0.1", "--port", str(srv.port("submission")),
                           "--auth", "PLAIN", "--auth-user", "alice@example.com", "--auth-password", "password1",
                           "--from", "alice@example.com", "--to", "bob@example.com"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "Host did not advertise authentication" in done.stdout + done.stderr
