"""`postoffice serve` with several worker processes: one server to its users.

Each test starts the real supervisor as a subprocess with ``[server] workers = 2``. Which worker
holds a connection is read from the kernel, not from the server: the connection's socket inode
in /proc/net/tcp, then which worker process has a descriptor on that inode. A client is put on a
given worker by connecting until the kernel's SO_REUSEPORT hash lands it there.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.services.logincache import handover_path
from tests.foundation.test_cli import LISTENERS, free_ports, write_config

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")

#: write_config's argon2 settings (cheap, for speed) and ones that take about 0.3 s a login.
CHEAP_HASH = "argon2_time_cost = 1\nargon2_memory_kib = 1024\n"
SLOW_HASH = "argon2_time_cost = 40\nargon2_memory_kib = 16384\n"
MESSAGE = b"From: bob@example.com\r\nTo: alice@example.com\r\nSubject: hi\r\n\r\nhello\r\n"


class Served:
    def __init__(self, tmp_path: Path, workers: int = 2, security: str = "", extra: str = "") -> None:
        self.ports = dict(zip(LISTENERS, free_ports(len(LISTENERS))))
        self.config = write_config(tmp_path, self.ports)
        self.data = tmp_path / "data"
        if security:  # instead of write_config's cheap argon2 settings
            self.config.write_text(self.config.read_text().replace(CHEAP_HASH, security))
        with self.config.open("a") as fh:
            fh.write("allow_plaintext_auth_loopback = true\n[server]\n"
                     f"workers = {workers}\n[outbound]\nenabled = false\n[inbound]\nverify = false\n{extra}")
        self.cli("domain", "add", "example.com")
        self.cli("account", "add", "alice@example.com", "--password", "password1")
        self.log = (tmp_path / "serve.log").open("w+")
        self.workers = workers
        self.start()

    def start(self) -> None:
        self.log.seek(0)
        self.log.truncate()
        self.proc = subprocess.Popen([sys.executable, "-m", "postoffice", "--config", str(self.config), "serve"],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "COLUMNS": "200"})
        self.wait_ready()

    def restart(self) -> None:
        """SIGTERM, then a new supervisor on the same configuration (the same log)."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(40)
        self.start()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([sys.executable, "-m", "postoffice", "--config", str(self.config), *args],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "postoffice is running" in self.output() and len(self.worker_pids()) == self.workers:
                return
            assert self.proc.poll() is None, self.output()
            time.sleep(0.1)
        raise AssertionError("the server did not start:\n" + self.output())

    def worker_pids(self) -> list[int]:
        return sorted(pid for pid in children(self.proc.pid) if b"\0worker\0" in cmdline(pid))

    def leftovers(self) -> list[int]:
        """Processes writing to this server's log that are neither the supervisor, a worker nor
        a descendant of a running worker (what a killed worker could leave behind)."""
        log = os.path.realpath(self.log.name)
        mine = {self.proc.pid}
        todo = self.worker_pids()
        while todo:
            pid = todo.pop()
            mine.add(pid)
            todo.extend(children(pid))
        out = []
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                if os.readlink(f"/proc/{entry}/fd/1") == log and int(entry) not in mine and alive(int(entry)):
                    out.append(int(entry))
            except OSError:
                continue
        return out

    def owner(self, sock: socket.socket, timeout: float = 10) -> int:
        """The pid of the worker that accepted ``sock`` (the server side of this connection)."""
        client_port = sock.getsockname()[1]
        server_port = sock.getpeername()[1]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            inode = None
            for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
                fields = line.split()
                local, remote = fields[1], fields[2]
                if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
                    inode = fields[9]
            if inode and inode != "0":
                for pid in self.worker_pids():
                    try:
                        fds = os.listdir(f"/proc/{pid}/fd")
                    except OSError:
                        continue
                    for fd in fds:
                        try:
                            if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                                return pid
                        except OSError:
                            continue
            time.sleep(0.05)
        raise AssertionError("no worker holds the connection")

    def imap_on(self, pid: int) -> imaplib.IMAP4:
        """A logged-in IMAP connection held by worker ``pid``."""
        imap = self.connect_on(pid)
        imap.login("alice@example.com", "password1")
        return imap

    def connect_on(self, pid: int) -> imaplib.IMAP4:
        """An IMAP connection held by worker ``pid``, not logged in."""
        for _ in range(200):
            imap = imaplib.IMAP4("127.0.0.1", self.ports["imap"], timeout=10)
            if self.owner(imap.sock) == pid:
                return imap
            imap.logout()
        raise AssertionError(f"could not get a connection onto worker {pid}")

    def pop3_on(self, pid: int) -> poplib.POP3:
        for _ in range(200):
            pop = poplib.POP3("127.0.0.1", self.ports["pop3"], timeout=10)
            if self.owner(pop.sock) == pid:
                return pop
            pop.quit()
        raise AssertionError(f"could not get a POP3 connection onto worker {pid}")

    def stop(self) -> int:
        if self.log.closed:
            return self.proc.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    srv = Served(tmp_path)
    try:
        yield srv
    finally:
        srv.stop()


def read_until(sock: socket.socket, needle: bytes, timeout: float) -> tuple[bytes, float]:
    """Bytes read until ``needle`` appears (or the timeout), and the seconds it took."""
    start = time.monotonic()
    data = b""
    while needle not in data:
        left = timeout - (time.monotonic() - start)
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - start


def children(parent: int) -> list[int]:
    out = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                out.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return out


def cmdline(pid: int) -> bytes:
    try:
        return b"\0" + Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    """The process exists and has not exited (a zombie waiting to be reaped has)."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def idle(imap: imaplib.IMAP4) -> socket.socket:
    imap.select("INBOX")
    imap.send(b"i1 IDLE\r\n")
    assert imap.readline().startswith(b"+")
    return imap.sock


def test_idle_on_one_worker_sees_changes_made_on_another_within_a_second(served: Served) -> None:
    a_pid, b_pid = served.worker_pids()
    watcher = served.imap_on(a_pid)
    actor = served.imap_on(b_pid)
    assert served.owner(watcher.sock) != served.owner(actor.sock)
    actor.append("INBOX", None, None, MESSAGE)
    sock = idle(watcher)

    actor.select("INBOX")
    actor.store("1", "+FLAGS", "(\\Flagged)")
    data, took = read_until(sock, b"\\Flagged", 5)
    assert b"* 1 FETCH" in data and b"\\Flagged" in data, data
    assert took < 1.0, f"the flag change took {took:.2f} s to reach the other worker"

    actor.append("INBOX", None, None, MESSAGE)  # a new message
    data, took = read_until(sock, b"* 2 EXISTS", 5)
    assert b"* 2 EXISTS" in data and took < 1.0, (data, took)

    actor.store("1", "+FLAGS", "(\\Deleted)")
    actor.expunge()
    data, took = read_until(sock, b"EXPUNGE", 5)
    assert b"* 1 EXPUNGE" in data and took < 1.0, (data, took)

    sock.sendall(b"DONE\r\n")
    data, _ = read_until(sock, b"i1 OK", 5)
    assert b"i1 OK" in data
    # The index on worker A agrees with the database: the surviving message, with its UID 2.
    typ, got = watcher.uid("FETCH", "1:*", "(FLAGS)")
    assert typ == "OK" and len([x for x in got if x]) == 1 and b"UID 2" in got[0], got
    actor.logout()
    watcher.logout()


def test_notify_on_one_worker_hears_mailbox_events_from_another(served: Served) -> None:
    """RFC 5465 across processes: the mailbox-level events (create, rename, subscribe) and new
    mail in a mailbox that is not selected travel the bus as well as the message events."""
    a_pid, b_pid = served.worker_pids()
    watcher = served.imap_on(a_pid)
    actor = served.imap_on(b_pid)
    sock = watcher.sock
    sock.sendall(b"n1 NOTIFY SET (personal (MessageNew MessageExpunge MailboxName SubscriptionChange))\r\n")
    data, _ = read_until(sock, b"n1 OK", 5)
    assert b"n1 OK" in data, data

    actor.create("Lists")
    data, took = read_until(sock, b"Lists", 5)
    assert data == b'* LIST () "/" "Lists"\r\n' and took < 1.0, (data, took)
    actor.append("Lists", None, None, MESSAGE)
    data, took = read_until(sock, b")\r\n", 5)
    assert re.fullmatch(rb'\* STATUS "Lists" \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 1\)\r\n', data), data
    assert took < 1.0, took
    actor.subscribe("Lists")
    data, _ = read_until(sock, b"Lists", 5)
    assert data == b'* LIST (\\Subscribed) "/" "Lists"\r\n', data
    actor.rename("Lists", "Old/Lists")  # the new parent is created
    data, _ = read_until(sock, b'("Lists"))\r\n', 5)
    assert data == b'* LIST () "/" "Old"\r\n* LIST () "/" "Old/Lists" ("OLDNAME" ("Lists"))\r\n', data
    sock.sendall(b"n2 NOTIFY NONE\r\n")
    data, _ = read_until(sock, b"n2 OK", 5)
    assert data.startswith(b"n2 OK"), data
    actor.logout()
    watcher.logout()


def test_switching_imap_off_ends_sessions_on_every_worker(served: Served) -> None:
    sessions = [served.imap_on(pid) for pid in served.worker_pids()]
    for imap in sessions:
        imap.select("INBOX")
    served.cli("account", "set", "alice@example.com", "--imap", "off")
    for imap in sessions:
        data, took = read_until(imap.sock, b"BYE", 5)
        assert b"* BYE [ALERT]" in data and b"IMAP is disabled" in data, data
        assert took < 3.0


def test_pop3_maildrop_lock_holds_across_workers(served: Served) -> None:
    a_pid, b_pid = served.worker_pids()
    first = served.pop3_on(a_pid)
    first.user("alice@example.com")
    first.pass_("password1")
    second = served.pop3_on(b_pid)
    second.user("alice@example.com")
    with pytest.raises(poplib.error_proto, match=r"IN-USE"):
        second.pass_("password1")
    first.quit()  # the lock goes with the session...
    third = served.pop3_on(b_pid)
    third.user("alice@example.com")
    assert third.pass_("password1").startswith(b"+OK")  # ...and the other worker may take it
    third.quit()


def test_killed_worker_is_restarted_and_the_listener_keeps_answering(served: Served) -> None:
    victim, survivor = served.worker_pids()
    os.kill(victim, signal.SIGKILL)
    # Every connection gets its greeting: the survivor's at once; those the kernel hashed to the
    # victim's socket wait in its backlog (the supervisor keeps the socket) for the replacement.
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", served.ports["imap"]), 10) as sock:
            data, _ = read_until(sock, b"\r\n", 15)
            assert data.startswith(b"* OK"), data
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pids = served.worker_pids()
        if len(pids) == 2 and victim not in pids and survivor in pids:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"no replacement worker: {served.worker_pids()}\n{served.output()}")
    replacement = next(p for p in served.worker_pids() if p != survivor)
    # What the killed worker started (its CPU pool's forkserver and processes) did not outlive it.
    deadline = time.monotonic() + 10
    while served.leftovers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert served.leftovers() == [], [cmdline(p)[:120] for p in served.leftovers()]
    imap = served.imap_on(replacement)
    assert imap.select("INBOX")[0] == "OK"
    imap.logout()
    assert "restarting" in served.output()


def test_sigterm_drains_every_worker(served: Served) -> None:
    # The supervisor is the process to signal: the startup table and the pid file name it.
    assert f"2 worker processes, supervisor pid {served.proc.pid}" in served.output()
    pidfile = served.config.parent / "data" / "postoffice.pid"
    assert pidfile.read_text().strip() == str(served.proc.pid)
    assert re.search(r"workers\s+2", served.cli("check-config").stdout)
    sessions = [served.imap_on(pid) for pid in served.worker_pids()]
    pop = served.pop3_on(served.worker_pids()[0])
    pids = served.worker_pids()
    helpers = [child for pid in pids for child in children(pid)]  # CPU pools' forkservers...
    served.proc.send_signal(signal.SIGTERM)
    for imap in sessions:
        data, _ = read_until(imap.sock, b"BYE", 10)
        assert b"* BYE [UNAVAILABLE]" in data, data
    data, _ = read_until(pop.sock, b"-ERR", 10)
    assert b"-ERR" in data and b"shutting down" in data, data
    assert served.proc.wait(30) == 0, served.output()
    assert not any(alive(pid) for pid in pids + helpers)
    # a clean stop is not a crash: the workers' helpers exit without "left behind" warnings
    assert "left behind" not in served.output(), served.output()
    assert not (served.config.parent / "data" / "postoffice.pid").exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", served.ports["imap"]), 2)


def api_token(data_dir: Path, config_path: Path) -> str:
    """A panel API token for the admin, made through the store as the panel would."""
    import asyncio

    from postoffice import config as config_module
    from postoffice.services.accounts import AccountService
    from postoffice.services.auth import Authenticator
    from postoffice.services.panel_users import PanelUsers
    from postoffice.store import Store

    async def make() -> str:
        store = Store.open(data_dir)
        try:
            auth = Authenticator(store, config_module.load(config_path).security)
            users = PanelUsers(store, auth, AccountService(store, auth))
            row = await store.get_admin("admin")
            assert row is not None
            return (await users.create_token(await users.principal_for_admin(row), "workers test"))[1]
        finally:
            store.close()
    return asyncio.run(make())


def test_connected_devices_lists_the_sessions_of_every_worker(served: Served) -> None:
    """The panel (in worker 0) lists the sessions held by every worker."""
    import json
    import urllib.request

    sessions = [served.imap_on(pid) for pid in served.worker_pids()]
    token = api_token(served.config.parent / "data", served.config)
    url = (f"http://127.0.0.1:{served.ports['http']}/api/v1/domains/example.com/addresses/"
           "alice@example.com/sessions")

    def listed_when(count: int) -> list[dict[str, object]]:
        deadline = time.monotonic() + 5
        while True:
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=10) as resp:
                listed = json.loads(resp.read())
            if len(listed) == count or time.monotonic() > deadline:
                return listed
            time.sleep(0.1)

    listed = listed_when(2)
    assert sorted(s["protocol"] for s in listed) == ["imap", "imap"], listed
    sessions[1].logout()  # a session on worker 1 ends: it leaves the list
    assert len(listed_when(1)) == 1
    sessions[0].logout()
    assert listed_when(0) == []


def test_workers_stop_when_the_supervisor_is_killed(served: Served) -> None:
    """kill -9 of the supervisor leaves no worker behind holding the ports."""
    pids = served.worker_pids()
    session = served.imap_on(pids[0])
    os.kill(served.proc.pid, signal.SIGKILL)
    served.proc.wait(10)
    data, _ = read_until(session.sock, b"BYE", 15)  # the worker drains: its session hears why
    assert b"* BYE" in data, data
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.1)
    assert not any(alive(pid) for pid in pids)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", served.ports["imap"]), 2)


def login_seconds(served: Served, pid: int, password: str = "password1") -> float:
    imap = served.connect_on(pid)
    start = time.monotonic()
    try:
        imap.login("alice@example.com", password)
        return time.monotonic() - start
    finally:
        imap.logout()


def test_a_login_verified_on_one_worker_costs_no_argon2_on_another_nor_after_a_restart(tmp_path: Path) -> None:
    """The login cache is shared through the supervisor and handed over across a graceful
    restart (services/logincache.py): a user's other connections and the login storm after a
    restart skip argon2. The hand-over file is gone once the new server has read it."""
    served = Served(tmp_path, security=SLOW_HASH)
    try:
        first, second = served.worker_pids()
        cold = login_seconds(served, first)
        assert cold > 0.1  # argon2 ran (SLOW_HASH)
        assert login_seconds(served, second) * 5 < cold  # the other worker was told
        served.restart()
        assert not handover_path(served.data).exists()  # read and deleted at start
        for pid in served.worker_pids():
            assert login_seconds(served, pid) * 5 < cold
        with pytest.raises(imaplib.IMAP4.error):  # the cache knows only the right password
            login_seconds(served, served.worker_pids()[0], "password2")
    finally:
        served.stop()
    assert not handover_path(served.data).exists() or handover_path(served.data).unlink() is None


def test_a_password_changed_while_stopped_voids_the_handed_over_login(tmp_path: Path) -> None:
    served = Served(tmp_path)
    try:
        served.imap_on(served.worker_pids()[0]).logout()
        served.proc.send_signal(signal.SIGTERM)
        served.proc.wait(40)
        assert "1 verified logins handed over" in served.output()
        assert handover_path(served.data).exists()
        served.cli("account", "passwd", "alice@example.com", "--password", "password2")
        served.start()
        with pytest.raises(imaplib.IMAP4.error):
            login_seconds(served, served.worker_pids()[0], "password1")
        login_seconds(served, served.worker_pids()[0], "password2")
    finally:
        served.stop()


def greeting(served: Served) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", served.ports["imap"]), 10)
    data, _ = read_until(sock, b"\r\n", 10)
    return sock, data


def test_the_per_address_limit_holds_across_workers(tmp_path: Path) -> None:
    """Two connections on each of the two workers make four from 127.0.0.1: the fifth is
    refused whichever worker the kernel gives it to (counted per worker, each has only two)."""
    served = Served(tmp_path, extra="[limits]\nmax_connections_per_ip = 4\n")
    try:
        held: dict[int, list[socket.socket]] = {pid: [] for pid in served.worker_pids()}
        while any(len(socks) < 2 for socks in held.values()):
            sock, data = greeting(served)
            assert data.startswith(b"* OK"), data
            socks = held[served.owner(sock)]
            if len(socks) < 2:
                socks.append(sock)
            else:  # a third on this worker: close it, and let the server count it gone
                sock.close()
                time.sleep(0.3)
        for _ in range(6):  # whichever worker each lands on
            sock, data = greeting(served)
            assert data.startswith(b"* BYE") and b"Too many connections" in data, data
            sock.close()
        assert "refused: limits.max_connections_per_ip = 4 reached" in served.output()
        held[served.worker_pids()[0]].pop().close()
        deadline = time.monotonic() + 5
        while True:  # one slot free again, on every worker
            sock, data = greeting(served)
            sock.close()
            if data.startswith(b"* OK") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert data.startswith(b"* OK"), data
    finally:
        served.stop()
