"""Two postoffice nodes on one PostgreSQL (issue 14): two real `postoffice serve` processes on
different ports, sharing the database (a fresh schema per test) and the data directory (the
blobs), each with its own run directory. Clients talk to either node; what one node does, the
other's sessions see. Skipped, with the reason, when no PostgreSQL answers (CI has one)."""

from __future__ import annotations

import imaplib
import os
import poplib
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_workers import read_until
from tests.foundation.test_cli import LISTENERS, free_ports
from tests.support.imapwire import Wire
from tests.support.pg import fresh_url

pytestmark = pytest.mark.skipif(not Path("/proc").exists(), reason="needs Linux /proc")

MESSAGE = b"From: bob@example.com\r\nTo: alice@example.com\r\nSubject: hi\r\n\r\nhello\r\n"
PASSWORD = "password1"


class Node:
    """One `postoffice serve` (its own process group, so it can be killed like a machine)."""

    def __init__(self, root: Path, name: str, shared: Path, url: str, workers: int = 1) -> None:
        self.name = name
        self.dir = root / name
        self.dir.mkdir()
        self.ports = dict(zip(LISTENERS, free_ports(len(LISTENERS))))
        lines = [f'data_dir = "{shared}"', 'hostname = "mail.test"', "[listen]"]
        lines += [f'{listener} = "127.0.0.1:{port}"' for listener, port in self.ports.items()]
        lines += ["[security]", "argon2_time_cost = 1", "argon2_memory_kib = 1024",
                  "allow_plaintext_auth_loopback = true",
                  "[server]", f"workers = {workers}", f'run_dir = "{self.dir / "run"}"',
                  "[outbound]", "enabled = false", "[inbound]", "verify = false",
                  "[store]", f'database = "{url}"']
        self.config = self.dir / "postoffice.toml"
        self.config.write_text("\n".join(lines) + "\n")
        self.log = (self.dir / "serve.log").open("w+")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Node:
        self.proc = subprocess.Popen([sys.executable, "-m", "postoffice", "--config", str(self.config), "serve"],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "COLUMNS": "200"})
        deadline = time.monotonic() + timeout
        while "postoffice is running" not in self.output():
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, "the node did not start:\n" + self.output()
            time.sleep(0.1)
        return self

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([sys.executable, "-m", "postoffice", "--config", str(self.config), *args],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def port(self, listener: str) -> int:
        return self.ports[listener]

    def imap(self) -> imaplib.IMAP4:
        imap = imaplib.IMAP4("127.0.0.1", self.ports["imap"], timeout=10)
        imap.login("alice@example.com", PASSWORD)
        return imap

    def wire(self) -> Wire:
        wire = Wire.plain(self)
        assert wire.cmd(f"a0 LOGIN alice@example.com {PASSWORD}".encode())[-1].startswith(b"a0 OK")
        return wire

    def pop3(self) -> poplib.POP3:
        return poplib.POP3("127.0.0.1", self.ports["pop3"], timeout=10)

    def smtp(self) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.ports["smtp"], timeout=10)

    def kill(self) -> None:
        """kill -9 of the whole node (supervisor, workers, their CPU pools) at once."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@pytest.fixture
def nodes(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Node, Node]]:
    url = fresh_url(request.getfixturevalue("postgres_database"))
    shared = tmp_path / "shared"
    a = Node(tmp_path, "a", shared, url, workers=2)
    b = Node(tmp_path, "b", shared, url)
    a.cli("domain", "add", "example.com")
    a.cli("account", "add", "alice@example.com", "--password", PASSWORD)
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        a.stop()
        b.stop()


def send(node: Node, subject: str) -> None:
    with node.smtp() as smtp:
        smtp.sendmail("bob@remote.test", ["alice@example.com"],
                      f"From: bob@remote.test\r\nTo: alice@example.com\r\nSubject: {subject}\r\n\r\nbody\r\n")


def subjects(imap: imaplib.IMAP4) -> list[str]:
    imap.select("INBOX")
    typ, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", data
    return [m.group(1).decode() for part in data if isinstance(part, tuple)
            for m in [re.search(rb"Subject: (\S+)", part[1])] if m]


def test_mail_accepted_on_one_node_reaches_idle_on_the_other_within_a_second(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    watcher = b.imap()
    watcher.select("INBOX")
    watcher.send(b"i1 IDLE\r\n")
    assert watcher.readline().startswith(b"+")
    started = time.monotonic()
    send(a, "first")
    acknowledged = time.monotonic() - started
    data, took = read_until(watcher.sock, b"* 1 EXISTS", 5)
    assert b"* 1 EXISTS" in data, data
    assert took - acknowledged < 1.0, f"node B's IDLE heard of it {took - acknowledged:.2f} s after node A's 250"
    watcher.sock.sendall(b"DONE\r\n")
    assert b"i1 OK" in read_until(watcher.sock, b"i1 OK", 5)[0]
    watcher.logout()


def modseqs(lines: list[bytes]) -> dict[int, int]:
    """UID -> MODSEQ from FETCH responses."""
    out = {}
    for line in lines:
        uid, mod = re.search(rb"UID (\d+)", line), re.search(rb"MODSEQ \((\d+)\)", line)
        if b" FETCH " in line and uid and mod:
            out[int(uid.group(1))] = int(mod.group(1))
    return out


def test_store_on_one_node_is_seen_on_the_other_with_the_same_modseqs_and_vanished(
        nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    actor, watcher = a.wire(), b.wire()
    for wire in (actor, watcher):
        assert wire.cmd(b"e1 ENABLE QRESYNC")[-1].startswith(b"e1 OK")
    for _ in range(3):
        imap = a.imap()
        imap.append("INBOX", None, None, MESSAGE)
        imap.logout()
    selected = watcher.cmd(b"s1 SELECT INBOX")
    uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)", b"\n".join(selected)).group(1))  # type: ignore[union-attr]
    before = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"\n".join(selected)).group(1))  # type: ignore[union-attr]
    assert actor.cmd(b"s2 SELECT INBOX")[-1].startswith(b"s2 OK")

    stored = actor.cmd(b"t1 UID STORE 1 +FLAGS (\\Seen)")
    assert stored[-1].startswith(b"t1 OK"), stored
    expunged = actor.cmd(b"t2 UID STORE 2 +FLAGS (\\Deleted)") + actor.cmd(b"t3 UID EXPUNGE 2")
    assert expunged[-1].startswith(b"t3 OK"), expunged
    on_a = modseqs(stored + expunged)  # UID 1 \Seen, UID 2 \Deleted: two MODSEQs

    # Node B's session hears both within a second, at a command ...
    heard: list[bytes] = []
    deadline = time.monotonic() + 1.0
    while not any(b"VANISHED 2" in line for line in heard):
        assert time.monotonic() < deadline, heard
        heard += watcher.cmd(b"n1 NOOP")
        time.sleep(0.02)
    # (UID 2's flag change may be folded into its expunge when both arrive before one command)
    seen_on_b = modseqs(heard)
    assert 1 in seen_on_b and all(on_a[uid] == mod for uid, mod in seen_on_b.items()), (heard, stored, expunged)
    # ... and a client resynchronising through node B gets the same state (RFC 7162 §3.2.5.2).
    fresh = b.wire()
    assert fresh.cmd(b"e2 ENABLE QRESYNC")[-1].startswith(b"e2 OK")
    resync = fresh.cmd(f"r1 SELECT INBOX (QRESYNC ({uidvalidity} {before}))".encode())
    assert any(line.startswith(b"* VANISHED (EARLIER) 2") for line in resync), resync
    assert modseqs(resync) == {1: on_a[1]}, resync
    highest = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"\n".join(resync)).group(1))  # type: ignore[union-attr]
    assert highest > max(on_a.values()), "the expunge got no MODSEQ above the STORE's"
    changed = fresh.cmd(f"f1 UID FETCH 1:* (FLAGS) (CHANGEDSINCE {before})".encode())
    assert modseqs(changed) == {1: on_a[1]} and b"\\Seen" in b"".join(changed), changed


def test_four_writers_through_both_nodes_get_unique_increasing_uids(nodes: tuple[Node, Node]) -> None:
    per_writer = 15
    got: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def writer(k: int, node: Node) -> None:
        try:
            imap = node.imap()
            uids = []
            for n in range(per_writer):
                typ, data = imap.append("INBOX", None, None, MESSAGE.replace(b"hi", f"w{k}-{n}".encode()))
                assert typ == "OK", data
                uids.append(int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1)))  # type: ignore[union-attr]
            got[k] = uids
            imap.logout()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k, nodes[k % 2])) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    everything = [uid for uids in got.values() for uid in uids]
    assert len(everything) == len(set(everything)) == 4 * per_writer, "a UID was handed out twice"
    for uids in got.values():
        assert uids == sorted(uids), f"one writer's UIDs went backwards: {uids}"
    for node in nodes:
        imap = node.imap()
        imap.select("INBOX")
        typ, data = imap.uid("SEARCH", "ALL")
        assert sorted(map(int, data[0].split())) == sorted(everything)
        imap.logout()


def test_pop3_on_one_node_is_in_use_while_the_other_holds_the_maildrop(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    first = a.pop3()
    first.user("alice@example.com")
    first.pass_(PASSWORD)
    second = b.pop3()
    second.user("alice@example.com")
    with pytest.raises(poplib.error_proto, match=r"IN-USE"):
        second.pass_(PASSWORD)
    first.quit()
    deadline = time.monotonic() + 5
    while True:  # the lock is released as the session ends, a moment after QUIT's answer
        third = b.pop3()
        third.user("alice@example.com")
        try:
            assert third.pass_(PASSWORD).startswith(b"+OK")
            break
        except poplib.error_proto:
            assert time.monotonic() < deadline, "node A's maildrop lock outlived its session"
            time.sleep(0.1)
    third.quit()


def test_switching_imap_off_ends_the_sessions_on_every_node(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    sessions = [a.imap(), a.imap(), b.imap()]
    for imap in sessions:
        imap.select("INBOX")
    b.cli("account", "set", "alice@example.com", "--imap", "off")
    for imap in sessions:
        data, took = read_until(imap.sock, b"BYE", 5)
        assert b"* BYE [ALERT]" in data and b"IMAP is disabled" in data, data
        assert took < 3.0


def api_token(node: Node) -> str:
    """A panel API token for the admin login, made through the shared store."""
    import asyncio

    from postoffice import config as config_module
    from postoffice.services.accounts import AccountService
    from postoffice.services.auth import Authenticator
    from postoffice.services.panel_users import PanelUsers
    from postoffice.store import Store

    config = config_module.load(node.config)

    async def make() -> str:
        store = Store.open(config.data_path, config.database_target, spool_dir=node.dir / "cli-spool")
        try:
            auth = Authenticator(store, config.security)
            users = PanelUsers(store, auth, AccountService(store, auth))
            row = await store.get_admin("admin")
            assert row is not None
            return (await users.create_token(await users.principal_for_admin(row), "nodes test"))[1]
        finally:
            store.close()
    return asyncio.run(make())


def test_the_panel_lists_and_ends_the_sessions_of_every_node(nodes: tuple[Node, Node]) -> None:
    """The connected-devices view (here through the panel's API) of either node lists the
    sessions of both; switching IMAP off there ends them on both."""
    import httpx

    a, b = nodes
    headers = {"Authorization": f"Bearer {api_token(a)}"}
    path = "/api/v1/domains/example.com/addresses/alice@example.com"
    on_a, on_b = a.imap(), b.imap()
    for node in (a, b):
        deadline = time.monotonic() + 5
        while True:
            listed = httpx.get(f"http://127.0.0.1:{node.ports['http']}{path}/sessions", headers=headers, timeout=10)
            assert listed.status_code == 200, listed.text
            if len(listed.json()) == 2:
                break
            assert time.monotonic() < deadline, f"node {node.name} lists {listed.json()}"
            time.sleep(0.1)
    switched = httpx.patch(f"http://127.0.0.1:{b.ports['http']}{path}", headers=headers, json={"imap": False},
                           timeout=10)
    assert switched.status_code == 200, switched.text
    for imap in (on_a, on_b):
        data, took = read_until(imap.sock, b"BYE", 5)
        assert b"* BYE [ALERT]" in data and b"IMAP is disabled" in data, data
        assert took < 3.0


def test_kill_9_of_one_node_under_smtp_load_loses_nothing_acknowledged(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    acknowledged: list[str] = []
    after_kill: list[str] = []
    killed = threading.Event()
    stop = threading.Event()

    def sender(k: int) -> None:
        n = 0
        while not stop.is_set():
            node = (a, b)[(k + n) % 2]
            subject = f"load-{k}-{n}"
            n += 1
            try:
                send(node, subject)
            except (OSError, smtplib.SMTPException):
                continue  # refused or cut: not acknowledged, the client would try again
            acknowledged.append(subject)
            if killed.is_set() and node is b:
                after_kill.append(subject)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        a.kill()
        killed.set()
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert after_kill, "node B stopped accepting mail when node A died"
    imap = b.imap()
    stored = set(subjects(imap))
    imap.logout()
    lost = [s for s in acknowledged if s not in stored]
    assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged messages are missing: {lost[:5]}"
    print(f"{len(acknowledged)} acknowledged, {len(after_kill)} by node B after the kill; none lost")


def test_a_second_server_on_the_same_run_dir_is_refused(nodes: tuple[Node, Node]) -> None:
    a, _ = nodes
    out = subprocess.run([sys.executable, "-m", "postoffice", "--config", str(a.config), "serve"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "is running on" in out.stderr, out.stderr
