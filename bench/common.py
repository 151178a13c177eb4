"""Shared helpers for the IMAP benchmarks (not a benchmark itself: running it does nothing).

* `make_messages`: small, varied, deterministic messages (CRLF);
* `Postoffice`: a generated configuration in a temporary directory, domain and accounts made
  with the CLI, mailboxes filled in-process through the store (group commit), then
  ``postoffice serve`` as its own process;
* `Dovecot`: Debian's Dovecot 2.3 started from a dovecot.conf written to a temporary directory
  (passwd-file with SHA512-CRYPT hashes and an auth cache, maildir written directly);
* `Imap`: a small asyncio IMAP client (plain or TLS) that parses what the benchmarks need;
* `pss_kb`: proportional/resident memory of processes from /proc/<pid>/smaps_rollup;
* `postgres_database`: a fresh PostgreSQL database for a postoffice on that backend (issue 14).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POSTOFFICE = ROOT / ".venv" / "bin" / "postoffice"
DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"
DOMAIN = "example.com"
PASSWORD = "bench-password-1234"
WORDS = ("the quick brown fox jumps over the lazy dog mail server message inbox folder client "
         "download delete protocol session mailbox octets network latency throughput flags "
         "select fetch search idle resync modseq").split()
SEEN = 1  # postoffice's flag bit for \Seen (store/records.py)
#: where `postgres_database` creates its databases (trust auth on the local server by default)
POSTGRES_ADMIN = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def postgres_database(admin_url: str = POSTGRES_ADMIN) -> Iterator[str]:
    """A new empty database ``po_bench_<random>`` on the server of ``admin_url``, as a URL for
    ``[store] database``; dropped at the end."""
    import psycopg

    name = f"po_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def count_inbox(database: str | Path, address: str) -> int:
    """Messages in ``address``'s INBOX, read through the store (SQLite file or PostgreSQL URL)."""
    sys.path.insert(0, str(ROOT / "src"))
    from postoffice.store.db import open_database
    db = open_database(database)
    try:
        return int(db.read_sync(lambda tx: tx.scalar(
            "SELECT count(*) FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id "
            "JOIN accounts a ON a.id = b.account_id WHERE a.address = ? AND b.name = 'INBOX'", (address,))))
    finally:
        db.close()


def user(n: int) -> str:
    return f"bench{n}@{DOMAIN}"


def try_uvloop() -> None:
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass


def raise_nofile(want: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- messages -------------------------------------------------------------------------------------


def make_message(n: int, rnd: random.Random, to: str = "bench0@example.com") -> bytes:
    """A plausible small message, 0.6-4 KB, CRLF."""
    size = rnd.randint(600, 4000)
    head = (
        f"Return-Path: <sender{n % 97}@example.org>\r\n"
        f"From: Sender {n % 97} <sender{n % 97}@example.org>\r\n"
        f"To: Bench <{to}>\r\n"
        f"Subject: message {n} {' '.join(rnd.choices(WORDS, k=4))}\r\n"
        f"Date: Thu, 1 Feb 2024 {n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d} +0000\r\n"
        f"Message-ID: <{n}.{rnd.randrange(1 << 30)}@example.org>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    body = []
    total = len(head)
    while total < size:
        line = " ".join(rnd.choices(WORDS, k=rnd.randint(4, 12)))
        body.append(line)
        total += len(line) + 2
    return (head + "\r\n".join(body) + "\r\n").encode()


def make_messages(count: int, seed: int = 7, to: str = "bench0@example.com") -> list[bytes]:
    rnd = random.Random(seed)
    return [make_message(n, rnd, to) for n in range(count)]


def seen_pattern(count: int, unseen_every: int = 10) -> list[bool]:
    """Which messages start \\Seen: all but every ``unseen_every``-th (a realistic inbox)."""
    return [n % unseen_every != 0 for n in range(count)]


# -- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{what} exited ({proc.returncode}):\n{text}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start listening on {port}")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def children(pid: int) -> list[int]:
    """pid and all its descendants (Dovecot's master forks imap-login, imap, auth...)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, ()))
    return out


def memory_kb(pids: Iterable[int]) -> tuple[int, int]:
    """(sum of Pss, sum of Rss) in KiB from /proc/<pid>/smaps_rollup."""
    pss = rss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                    elif line.startswith("Rss:"):
                        rss += int(line.split()[1])
        except OSError:
            pass
    return pss, rss


# -- postoffice -----------------------------------------------------------------------------------


class Postoffice:
    """postoffice in its own process, on loopback ports, data in ``tmp``."""

    def __init__(self, tmp: Path, *, plain: bool = True, tls: bool = False,
                 extra_config: str = "", database: str = "") -> None:
        """``database``: a ``postgresql://`` URL (empty: SQLite in the data directory)."""
        self.tmp = tmp
        self.database = database
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.data = tmp / "data"
        self.config = tmp / "postoffice.toml"
        self.port = free_port() if plain else 0
        self.tls_port = free_port() if tls else 0
        self.log = tmp / "postoffice.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.config.write_text(
            f'hostname = "localhost"\ndata_dir = "{self.data}"\nlog_level = "warning"\n'
            '[listen]\nsmtp = ""\nsubmission = ""\nsubmissions = ""\npop3 = ""\npop3s = ""\nhttp = ""\n'
            f'imap = "{"127.0.0.1:%d" % self.port if plain else ""}"\n'
            f'imaps = "{"127.0.0.1:%d" % self.tls_port if tls else ""}"\n'
            "[security]\nallow_plaintext_auth = true\n"
            "[limits]\nmax_connections_per_ip = 100000\nmax_connections = 100000\n"
            "[outbound]\nenabled = false\n" + (f'[store]\ndatabase = "{database}"\n' if database else "")
            + extra_config
        )

    def cli(self, *args: str) -> str:
        result = subprocess.run([str(POSTOFFICE), "--config", str(self.config), *args],
                                capture_output=True, text=True, cwd=self.tmp)
        if result.returncode:
            raise RuntimeError(f"postoffice {' '.join(args)}: {result.stdout}{result.stderr}")
        return result.stdout

    def add_accounts(self, count: int) -> list[str]:
        self.cli("domain", "add", DOMAIN)
        addresses = [user(n) for n in range(count)]
        for address in addresses:
            self.cli("account", "add", address, "--password", PASSWORD)
        return addresses

    def fill(self, address: str, messages: Sequence[bytes], seen: Sequence[bool] | None = None,
             *, batch: int = 100, concurrency: int = 8, durable: bool = True) -> float:
        """Append ``messages`` to INBOX in-process (before `start`); returns the seconds taken.

        Batches go through Store.append concurrently so the store's group commit can merge them;
        UIDs follow the batch commit order, which is fine for a benchmark. With ``durable`` off,
        os.fsync is a no-op in this (setup) process and one os.sync() runs at the end: the
        store does two fsyncs per message body (file and directory), which bounds a durable
        fill to about 1,000 messages/s on this disk."""
        sys.path.insert(0, str(ROOT / "src"))
        from postoffice.store import Store
        real_fsync = os.fsync
        if not durable:
            os.fsync = lambda fd: None  # type: ignore[assignment]
        try:
            return self._fill(Store, address, messages, seen, batch, concurrency)
        finally:
            os.fsync = real_fsync
            if not durable:
                os.sync()

    def _fill(self, Store: type, address: str, messages: Sequence[bytes], seen: Sequence[bool] | None,
              batch: int, concurrency: int) -> float:

        async def run() -> float:
            store = Store.open(self.data, self.database or None)
            try:
                account = await store.get_account(address)
                inbox = await store.get_mailbox(account.id, "INBOX")
                started = time.perf_counter()
                now = time.time()
                queue = list(range(0, len(messages), batch))
                queue.reverse()

                async def worker() -> None:
                    while queue:
                        start = queue.pop()
                        items = [(raw, SEEN if (seen and seen[start + i]) else 0, "", now - len(messages) + start + i)
                                 for i, raw in enumerate(messages[start:start + batch])]
                        await store.append(account.id, inbox.id, items)
                await asyncio.gather(*(worker() for _ in range(concurrency)))
                return time.perf_counter() - started
            finally:
                store.close()
        return asyncio.run(run())

    def start(self) -> None:
        self.proc = subprocess.Popen([str(POSTOFFICE), "--config", str(self.config), "serve"],
                                     stdout=self.log.open("wb"), stderr=subprocess.STDOUT, cwd=self.tmp)
        for port in (self.port, self.tls_port):
            if port:
                wait_port(port, self.proc, "postoffice", self.log)
        # The supervisor binds the ports before its workers are up; it prints the banner once
        # every worker is ready to answer.
        deadline = time.monotonic() + 120
        while "postoffice is running" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"postoffice did not start:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        return children(self.pid)

    def cafile(self) -> Path:
        found = sorted((self.data / "tls").glob("*.crt"))
        return found[0]

    def stop(self) -> None:
        stop(self.proc)


# -- Dovecot --------------------------------------------------------------------------------------


def dovecot_version() -> str | None:
    if not os.path.exists(DOVECOT):
        return None
    out = subprocess.run([DOVECOT, "--version"], capture_output=True, text=True).stdout.split()
    return out[0] if out else "?"


class Dovecot:
    """Dovecot on loopback ports from a config in ``tmp``; maildir under ``tmp/home/<user>``.

    Tuned as a busy production server would be: passwords are SHA512-CRYPT in a passwd-file
    with Dovecot's auth cache on; imap-login in "high-performance mode" (service_count = 0,
    one long-lived login process per core) and imap processes reused for up to
    ``imap_service_count`` sessions (the default, 1, forks a new imap process per login).
    Mail is owned by ``nobody`` because Dovecot will not serve mail as root."""

    def __init__(self, tmp: Path, *, plain: bool = True, tls: bool = False,
                 cert: Path | None = None, key: Path | None = None, max_clients: int = 1000,
                 imap_service_count: int = 100, mail_fsync: str = "optimized", extra_conf: str = "") -> None:
        self.tmp = tmp
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port() if plain else 0
        self.tls_port = free_port() if tls else 0
        self.cert, self.key = cert, key
        self.max_clients = max_clients
        self.imap_service_count = imap_service_count
        self.mail_fsync = mail_fsync  # optimized (Dovecot's default), always, never
        self.extra_conf = extra_conf  # more dovecot.conf lines (top level)
        self.proc: subprocess.Popen[bytes] | None = None
        self.uid = self.gid = 65534
        if os.geteuid() != 0:
            self.uid, self.gid = os.getuid(), os.getgid()
        self.log = tmp / "dovecot.log"

    def home(self, address: str) -> Path:
        return self.tmp / "home" / address.split("@")[0]

    def add_accounts(self, count: int, scheme: str = "SHA512-CRYPT") -> list[str]:
        """Homes and a passwd-file; every account's password hashed with ``scheme`` (Dovecot
        verifies it on every login, even when its auth cache holds the hash)."""
        hashed = subprocess.run([DOVEADM, "pw", "-s", scheme, "-p", PASSWORD],
                                capture_output=True, text=True).stdout.strip()
        if not hashed:
            hashed = "{PLAIN}" + PASSWORD
        addresses = [user(n) for n in range(count)]
        lines = []
        for address in addresses:
            home = self.home(address)
            for sub in ("cur", "new", "tmp"):
                (home / "Maildir" / sub).mkdir(parents=True, exist_ok=True)
            lines.append(f"{address}:{hashed}:{self.uid}:{self.gid}::{home}::\n")
        (self.tmp / "passwd").write_text("".join(lines))
        return addresses

    def fill(self, address: str, messages: Sequence[bytes], seen: Sequence[bool] | None = None) -> float:
        """Write maildir files directly (Dovecot indexes them on first SELECT)."""
        started = time.perf_counter()
        cur = self.home(address) / "Maildir" / "cur"
        base = 1_700_000_000
        for n, raw in enumerate(messages):
            lf = raw.replace(b"\r\n", b"\n")
            flags = "S" if seen and seen[n] else ""
            path = cur / f"{base + n}.M{n}P1.bench,S={len(lf)},W={len(raw)}:2,{flags}"
            path.write_bytes(lf)
            os.utime(path, (base + n, base + n))
        return time.perf_counter() - started

    def start(self) -> None:
        if os.geteuid() == 0:
            for path in [self.tmp / "home", *(self.tmp / "home").rglob("*")]:
                os.chown(path, self.uid, self.gid)
        run = self.tmp / "run"
        run.mkdir(exist_ok=True)
        (self.tmp / "state").mkdir(exist_ok=True)
        ssl_conf = "ssl = no\n"
        if self.tls_port:
            ssl_conf = f"ssl = yes\nssl_cert = <{self.cert}\nssl_key = <{self.key}\n"
        listeners = ""
        if self.port:
            listeners += f"  inet_listener imap {{\n    address = 127.0.0.1\n    port = {self.port}\n  }}\n"
        else:
            listeners += "  inet_listener imap {\n    port = 0\n  }\n"
        if self.tls_port:
            listeners += (f"  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {self.tls_port}\n"
                          "    ssl = yes\n  }\n")
        else:
            listeners += "  inet_listener imaps {\n    port = 0\n  }\n"
        limit = self.max_clients + 100
        conf = self.tmp / "dovecot.conf"
        conf.write_text(f"""
base_dir = {run}
state_dir = {self.tmp}/state
log_path = {self.log}
protocols = imap
listen = 127.0.0.1
{ssl_conf}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_cache_size = 10M
auth_cache_ttl = 1 hour
first_valid_uid = 1
mail_location = maildir:~/Maildir
mail_fsync = {self.mail_fsync}
{self.extra_conf}default_process_limit = {limit}
default_client_limit = {limit * 2}
default_vsz_limit = 0
passdb {{
  driver = passwd-file
  args = username_format=%u {self.tmp}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.tmp}/passwd
}}
protocol imap {{
  mail_max_userip_connections = {limit}
}}
service imap-login {{
{listeners}  service_count = 0
  process_min_avail = {os.cpu_count() or 2}
  client_limit = {limit * 2}
}}
service imap {{
  process_limit = {limit}
  service_count = {self.imap_service_count}
  process_min_avail = {os.cpu_count() or 2}
}}
service anvil {{
  chroot =
  client_limit = {limit * 2}
}}
service auth {{
  client_limit = {limit * 3}
}}
service stats {{
  client_limit = {limit * 3}
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
""")
        os.chmod(self.tmp, 0o755)
        p = self.tmp
        while p != p.parent:
            p = p.parent
            if str(p).startswith("/tmp/") or str(p) == "/tmp":
                break
            try:
                os.chmod(p, os.stat(p).st_mode | 0o005)
            except OSError:
                pass
        out = self.tmp / "stdout.log"
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(conf)], stdout=out.open("wb"),
                                     stderr=subprocess.STDOUT)
        port = self.port or self.tls_port
        try:
            wait_port(port, self.proc, "dovecot", out)
        except RuntimeError as e:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{e}\n{log}") from None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        return children(self.pid)

    def stop(self) -> None:
        stop(self.proc)


# -- a small asyncio IMAP client ------------------------------------------------------------------


class ImapError(Exception):
    pass


_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")


class Imap:
    """One connection. ``command`` returns (untagged response lines, tagged line); a response
    line with literals comes back as one bytes object with the literal data inline."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.tag = 0
        self.capabilities: set[str] = set()
        self.greeting = b""

    @classmethod
    async def connect(cls, host: str, port: int, tls: ssl.SSLContext | None = None) -> Imap:
        reader, writer = await asyncio.open_connection(host, port, ssl=tls, limit=1 << 20,
                                                       server_hostname="localhost" if tls else None)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self = cls(reader, writer)
        self.greeting = await self.read_response()
        self._caps_from(self.greeting)
        return self

    def _caps_from(self, line: bytes) -> None:
        m = re.search(rb"\[CAPABILITY ([^\]]*)\]", line) or re.match(rb"\* CAPABILITY (.*)", line)
        if m:
            self.capabilities = {c.upper() for c in m.group(1).decode().split()}

    async def read_response(self) -> bytes:
        line = await self.reader.readuntil(b"\r\n")
        if not line.endswith(b"}\r\n"):
            return line
        parts = []
        while (m := _LITERAL.search(line)) is not None:
            parts.append(line)
            parts.append(await self.reader.readexactly(int(m.group(1))))
            line = await self.reader.readuntil(b"\r\n")
        parts.append(line)
        return b"".join(parts)

    def next_tag(self) -> bytes:
        self.tag += 1
        return b"a%d" % self.tag

    async def command(self, text: str | bytes, literal: bytes | None = None, *, check: bool = True
                      ) -> tuple[list[bytes], bytes]:
        tag = self.next_tag()
        data = text.encode() if isinstance(text, str) else text
        if literal is None:
            self.writer.write(tag + b" " + data + b"\r\n")
        elif "LITERAL+" in self.capabilities:
            self.writer.write(tag + b" " + data + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
        else:
            self.writer.write(tag + b" " + data + b" {%d}\r\n" % len(literal))
            while True:
                line = await self.read_response()
                if line.startswith(b"+"):
                    break
                if line.startswith(tag + b" "):
                    raise ImapError(line.decode(errors="replace").strip())
            self.writer.write(literal + b"\r\n")
        untagged = []
        prefix = tag + b" "
        while True:
            line = await self.read_response()
            if line.startswith(prefix):
                if check and not line.startswith(prefix + b"OK"):
                    raise ImapError(f"{data[:60]!r}: {line.decode(errors='replace').strip()}")
                if b"[CAPABILITY " in line:
                    self._caps_from(line)
                return untagged, line
            untagged.append(line)

    async def bulk(self, text: str) -> tuple[int, int, bytes]:
        """A command with a large response of single-line items (FETCH FLAGS, SEARCH): read in
        big chunks and stop at the tagged line. Returns (response lines, octets, tagged line)."""
        tag = self.next_tag()
        self.writer.write(tag + b" " + text.encode() + b"\r\n")
        needle = b"\r\n" + tag + b" "
        buf = bytearray()
        lines = octets = 0
        first = True
        while True:
            chunk = await self.reader.read(1 << 20)
            if not chunk:
                raise ImapError("connection closed")
            buf += chunk
            if first and buf.startswith(tag + b" "):
                at = 0
            else:
                at = buf.find(needle)
                at = at + 2 if at >= 0 else -1
            first = False
            if at < 0:
                # keep from the last CRLF on: a line or the tagged reply may straddle chunks
                cut = max(0, buf.rfind(b"\r\n"))
                lines += buf.count(b"\r\n", 0, cut)
                octets += cut
                del buf[:cut]
                continue
            end = buf.find(b"\r\n", at)
            while end < 0:
                more = await self.reader.read(1 << 16)
                if not more:
                    raise ImapError("connection closed")
                buf += more
                end = buf.find(b"\r\n", at)
            lines += buf.count(b"\r\n", 0, at)
            octets += end + 2
            tagged = bytes(buf[at:end + 2])
            if not tagged.startswith(tag + b" OK"):
                raise ImapError(f"{text}: {tagged.decode(errors='replace').strip()}")
            return lines, octets, tagged

    async def login(self, address: str, password: str) -> None:
        await self.command(f'LOGIN "{address}" "{password}"')
        if not self.capabilities or "IMAP4REV1" not in self.capabilities:
            for line in (await self.command("CAPABILITY"))[0]:
                self._caps_from(line)

    async def close(self) -> None:
        try:
            self.writer.close()
            await self.writer.wait_closed()
        except (OSError, ssl.SSLError, ConnectionError):
            pass


def client_tls(cafile: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.1f} ms"


def verdict(ok: bool) -> str:
    return "met" if ok else "target missed"


def tmpdir(prefix: str) -> Path:
    import tempfile
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)
    return path


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    pass  # shared helpers only: `make bench` runs every bench/*.py, this one does nothing
