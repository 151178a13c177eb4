"""The `postoffice` command as an operator runs it: a real process, real ports."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

LISTENERS = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "http")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def write_config(tmp_path: Path, ports: dict[str, int]) -> Path:
    lines = [f'data_dir = "{tmp_path / "data"}"', 'hostname = "mail.test"', "[listen]"]
    lines += [f'{name} = "127.0.0.1:{port}"' for name, port in ports.items()]
    lines += ["[security]", "argon2_time_cost = 1", "argon2_memory_kib = 1024"]
    path = tmp_path / "postoffice.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def po(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "postoffice", "--config", str(config), *args],
                          capture_output=True, text=True, input=stdin, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, dict(zip(LISTENERS, free_ports(len(LISTENERS)))))


def test_domain_and_account_commands(config: Path) -> None:
    assert po(config, "domain", "add", "example.com").returncode == 0
    out = po(config, "account", "add", "alice@example.com", "--password-stdin", stdin="s3cret-pass\n")
    assert out.returncode == 0, out.stderr
    assert po(config, "account", "add", "bob@example.com", "--password", "another-pass").returncode == 0
    out = po(config, "account", "set", "alice@example.com", "--pop3", "off", "--smtp", "off")
    assert out.returncode == 0 and "POP3 off" in out.stdout
    out = po(config, "account", "list")
    assert "alice@example.com" in out.stdout and "bob@example.com" in out.stdout
    out = po(config, "domain", "set", "example.com", "--protocols", "imap-only")
    assert out.returncode == 0 and "imap-only" in out.stdout
    out = po(config, "domain", "list")
    assert "imap-only" in out.stdout
    assert po(config, "account", "passwd", "bob@example.com", "--password", "third-pass").returncode == 0
    assert po(config, "alias", "add", "info@example.com", "alice@example.com").returncode == 0
    assert "info@example.com" in po(config, "alias", "list").stdout
    assert po(config, "account", "remove", "bob@example.com", "--yes").returncode == 0
    assert "bob@" not in po(config, "account", "list").stdout


@pytest.mark.parametrize("args,message", [
    (("account", "add", "x@nowhere.org", "--password", "password1"), "not hosted"),
    (("domain", "add", "not a domain"), "not a valid domain"),
    (("account", "set", "ghost@example.com", "--imap", "off"), "no such address"),
    (("domain", "set", "example.com", "--protocols", "smtp-only"), "is not one of"),
    # issue #12: look-alike and invisible characters are refused where addresses are created
    (("account", "add", "u\u017fer@example.com", "--password", "password1"), "U+017F"),
    (("alias", "add", "in\u200bfo@example.com", "alice@example.com"), "U+200B"),
])
def test_mistakes_give_one_line_and_nonzero_exit(config: Path, args: tuple[str, ...], message: str) -> None:
    po(config, "domain", "add", "example.com")
    out = po(config, *args)
    assert out.returncode != 0
    assert message in (out.stderr + out.stdout)
    assert "Traceback" not in out.stderr


def test_bad_config_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[listen]\nimap = 143\nbogus = 1\n")
    out = po(path, "check-config")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "broken.toml" in out.stderr


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def test_serve_opens_every_listener_and_stops_on_sigterm(config: Path, tmp_path: Path) -> None:
    ports = dict(zip(LISTENERS, (int(line.split(":")[-1].rstrip('"')) for line in
                                 config.read_text().splitlines() if line.split(" ")[0] in LISTENERS)))
    proc = subprocess.Popen([sys.executable, "-m", "postoffice", "--config", str(config), "serve"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", ports["http"]), 1).close()
                break
            except OSError:
                time.sleep(0.1)
        greetings = {"smtp": b"220 ", "submission": b"220 ", "submissions": b"220 ", "imap": b"* OK",
                     "imaps": b"* OK", "pop3": b"+OK", "pop3s": b"+OK"}
        tls = ssl.create_default_context(cafile=str(tmp_path / "data" / "tls" / "selfsigned.crt"))
        for name, greeting in greetings.items():
            raw = socket.create_connection(("127.0.0.1", ports[name]), 5)
            sock = tls.wrap_socket(raw, server_hostname="localhost") if name.endswith("s") else raw
            with sock:
                assert read_line(sock).startswith(greeting), name
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/", timeout=5) as resp:
            assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "admin" in out and "password" in out  # the first panel login, printed once
    assert "Traceback" not in err


def test_port_in_use_is_one_clear_line(config: Path) -> None:
    text = config.read_text()
    busy = socket.create_server(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    lines = [f'imaps = "127.0.0.1:{port}"' if line.startswith("imaps ") else line for line in text.splitlines()]
    config.write_text("\n".join(lines) + "\n")
    try:
        proc = subprocess.run([sys.executable, "-m", "postoffice", "--config", str(config), "serve"],
                              capture_output=True, text=True, timeout=60)
    finally:
        busy.close()
    assert proc.returncode == 2
    assert f"127.0.0.1:{port}" in proc.stderr and "imaps" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_shutdown_says_goodbye_to_sessions_that_never_logged_in(tmp_path: Path) -> None:
    """RFC 5321 §3.8: a server that stops sends 421 to an open SMTP session (IMAP: BYE)."""
    from tests.support.server import RunningServer

    srv = RunningServer(tmp_path / "data").__enter__()
    smtp = socket.create_connection(("127.0.0.1", srv.port("smtp")), 5)
    imap = socket.create_connection(("127.0.0.1", srv.port("imap")), 5)
    pop3 = socket.create_connection(("127.0.0.1", srv.port("pop3")), 5)
    for sock in (smtp, imap, pop3):
        read_line(sock)  # the greeting
    srv.__exit__(None, None, None)
    assert read_line(smtp).startswith(b"421 4.3.2")
    assert read_line(imap).startswith(b"* BYE")
    assert read_line(pop3).startswith(b"-ERR")
    for sock in (smtp, imap, pop3):
        sock.close()


def test_app_password_commands(config: Path) -> None:
    assert po(config, "domain", "add", "example.com").returncode == 0
    assert po(config, "account", "add", "alice@example.com", "--password", "s3cret-pass").returncode == 0
    out = po(config, "app-password", "add", "alice@example.com", "--name", "Phone", "--protocols", "imap",
             "--expires-days", "30")
    assert out.returncode == 0 and "shown only this once" in out.stdout, out.stderr
    import re
    assert re.search(r"[a-z]{4}(-[a-z]{4}){4}", out.stdout)
    out = po(config, "app-password", "list", "alice@example.com")
    assert "Phone" in out.stdout and "imap" in out.stdout
    bad = po(config, "app-password", "add", "alice@example.com", "--name", "X", "--protocols", "ftp")
    assert bad.returncode != 0 and "imap, pop3, smtp" in bad.stderr + bad.stdout
    out = po(config, "app-password", "revoke", "alice@example.com", "1")
    assert out.returncode == 0 and "revoked" in out.stdout
    assert "Phone" not in po(config, "app-password", "list", "alice@example.com").stdout
    bad = po(config, "app-password", "revoke", "alice@example.com", "1")
    assert bad.returncode != 0


def test_spam_filter_command(config: Path) -> None:
    assert po(config, "domain", "add", "example.com").returncode == 0
    assert po(config, "account", "add", "alice@example.com", "--password", "another-pass").returncode == 0
    out = po(config, "spam-filter", "example.com")
    assert out.returncode == 0 and "example.com: spam filter on" in out.stdout
    assert "no spam filter is configured" in out.stdout
    out = po(config, "spam-filter", "Alice@Example.com", "off")
    assert out.returncode == 0 and "alice@example.com: spam filter off" in out.stdout, out.stderr
    assert "as its domain" not in out.stdout
    assert "spam filter on" in po(config, "spam-filter", "example.com").stdout
    out = po(config, "spam-filter", "alice@example.com", "inherit")
    assert "alice@example.com: spam filter on (as its domain)" in out.stdout
    assert "spam filter off" in po(config, "spam-filter", "example.com", "off").stdout
    assert "alice@example.com: spam filter off (as its domain)" in po(config, "spam-filter", "alice@example.com").stdout
    for args in (("nobody@example.com",), ("unknown.example",), ("example.com", "inherit")):
        out = po(config, "spam-filter", *args)
        assert out.returncode != 0 and out.stderr.count("\n") <= 1, (args, out.stderr)


def test_spam_threshold_and_senders_commands(config: Path) -> None:
    assert po(config, "domain", "add", "example.com").returncode == 0
    assert po(config, "account", "add", "alice@example.com", "--password", "another-pass").returncode == 0
    assert "example.com: Junk threshold not set" in po(config, "spam-threshold", "example.com").stdout
    out = po(config, "spam-threshold", "Alice@Example.com", "7.5")
    assert out.returncode == 0 and "alice@example.com: Junk threshold 7.5" in out.stdout, out.stderr
    assert "Junk threshold not set" in po(config, "spam-threshold", "alice@example.com", "none").stdout
    for args in (("alice@example.com", "0"), ("alice@example.com", "x"), ("nobody@example.com", "5")):
        out = po(config, "spam-threshold", *args)
        assert out.returncode != 0 and out.stderr.count("\n") <= 1, (args, out.stderr)
    out = po(config, "spam-senders", "example.com", "add", "block", "*.Spammer.Example")
    assert out.returncode == 0 and "example.com block: *.spammer.example" in out.stdout, out.stderr
    out = po(config, "spam-senders", "alice@example.com", "add", "allow", "news@shop.example")
    assert "alice@example.com allow: news@shop.example" in out.stdout
    bad = po(config, "spam-senders", "alice@example.com", "add", "allow", "not an address")
    assert bad.returncode != 0 and "is not an address, a domain or *.domain" in bad.stderr
    assert "example.com block: (none)" in po(config, "spam-senders", "example.com", "remove", "block",
                                             "*.spammer.example").stdout
    assert po(config, "spam-senders", "example.com", "remove", "block", "*.spammer.example").returncode != 0
