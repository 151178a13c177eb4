"""fetchmail (a real, widely used POP3 client) downloads from postoffice over 995 as a user would.

Needs Debian's ``fetchmail`` package (`make test-deps`); see tests/support/tools.py for when a
missing one fails or skips.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.server import RunningServer
from tests.support.tools import require_tool

PASSWORD = "password1"


def fetchmail() -> str:
    return require_tool("fetchmail", "fetchmail")


@pytest.fixture(autouse=True)
def fetchmail_installed() -> None:
    fetchmail()  # before any server starts

MESSAGES = [
    b"From: alice@example.org\r\nTo: carol@example.com\r\nSubject: plain\r\n"
    b"Message-ID: <one@example.org>\r\n\r\nHello Carol.\r\n",
    b"From: bob@example.org\r\nTo: carol@example.com\r\nSubject: dots\r\n"
    b"Message-ID: <two@example.org>\r\n\r\n.a line with a leading dot\r\n.\r\n..\r\nend\r\n",
    b"From: bob@example.org\r\nTo: carol@example.com\r\nSubject: big\r\nMessage-ID: <three@example.org>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    + b"".join(b"%06d the quick brown fox jumps over the lazy dog\r\n" % i for i in range(20000)),
]


def run_fetchmail(srv: RunningServer, home: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    out = home / "out"
    out.mkdir(exist_ok=True)
    rc = home / "fetchmailrc"
    cert = srv.config.data_path / "tls" / "selfsigned.crt"
    # One file per message: fetchmail runs the MDA once per message, each in a new shell ($$).
    rc.write_text(
        # "localhost": a name the generated certificate carries (the listener is on 127.0.0.1).
        f'poll localhost service {srv.port("pop3s")} protocol pop3 uidl\n'
        f'  user "carol@example.com" password "{PASSWORD}" is root here\n'
        f'  ssl sslcertck sslcertfile "{cert}"\n'
        f'  mda "cat > {out}/msg-$$.eml"\n'
    )
    rc.chmod(0o600)
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    return subprocess.run(
        [fetchmail(), "-f", str(rc), "--nodetach", "--nosyslog", "-v", *extra],
        env=env, capture_output=True, text=True, timeout=60, cwd=home,
    )


def downloaded(home: Path) -> list[bytes]:
    files = sorted((home / "out").glob("msg-*.eml"), key=lambda p: p.stat().st_mtime_ns)
    return [p.read_bytes() for p in files]


def arrived_intact(original: bytes, got: list[bytes]) -> bool:
    # fetchmail hands messages to the MDA with LF line ends and a Received: line on top.
    want = original.replace(b"\r\n", b"\n")
    return any(g.endswith(want) for g in got)


def test_fetchmail_downloads_and_deletes(tmp_path: Path) -> None:
    with RunningServer(tmp_path / "data") as srv:
        account = srv.add_account("carol@example.com", PASSWORD)
        for raw in MESSAGES:
            srv.call(srv.store.deliver([(account.id, "INBOX")], raw))
        home = tmp_path / "home"
        home.mkdir()
        result = run_fetchmail(srv, home)
        assert result.returncode == 0, result.stderr + result.stdout
        got = downloaded(home)
        assert len(got) == len(MESSAGES)
        for raw in MESSAGES:
            assert arrived_intact(raw, got)
        inbox = srv.call(srv.store.get_mailbox(account.id, "INBOX"))
        assert srv.call(srv.store.list_messages(inbox.id)) == []  # fetchmail deletes after download


def test_fetchmail_keep_uses_stable_uidl(tmp_path: Path) -> None:
    with RunningServer(tmp_path / "data") as srv:
        account = srv.add_account("carol@example.com", PASSWORD)
        for raw in MESSAGES[:2]:
            srv.call(srv.store.deliver([(account.id, "INBOX")], raw))
        home = tmp_path / "home"
        home.mkdir()
        first = run_fetchmail(srv, home, "--keep")
        assert first.returncode == 0, first.stderr + first.stdout
        assert len(downloaded(home)) == 2
        # Kept on the server; fetchmail remembers the UIDLs and fetches only what is new.
        srv.call(srv.store.deliver([(account.id, "INBOX")], MESSAGES[2]))
        second = run_fetchmail(srv, home, "--keep")
        assert second.returncode == 0, second.stderr + second.stdout
        got = downloaded(home)
        assert len(got) == 3 and arrived_intact(MESSAGES[2], got[2:])
        third = run_fetchmail(srv, home, "--keep")
        assert third.returncode == 1, third.stdout  # 1 = no mail
        assert len(downloaded(home)) == 3
