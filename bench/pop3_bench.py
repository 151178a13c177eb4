"""POP3 throughput: LIST, UIDL and RETR of every message of a 10,000-message maildrop,
postoffice against Dovecot's POP3 server in the same run, same messages, same client.

    .venv/bin/python bench/pop3_bench.py [--messages 10000] [--runs 3] [--tls] [--no-dovecot]

Both servers run as their own processes on loopback ports: postoffice with ``postoffice serve``
(uvloop) on a data directory filled through the store, Dovecot (Debian ``dovecot-pop3d``, started
from a config written to a temporary directory: passwd-file, maildir) with the same messages as
maildir files. Both are warmed up once (page cache, Dovecot's index), then each measurement is
the best of ``--runs``, the servers taking turns run by run (a busy moment on a shared machine
then hurts both alike):

* LIST and UIDL: the whole listing, 10 times per run; messages/s = listed messages per second;
* RETR: every message once per run, one command at a time (as poplib or fetchmail do) and
  pipelined 64 deep (RFC 2449 PIPELINING, as a throughput-minded client does);
* a whole session (connect, USER/PASS, STAT, QUIT), which includes opening the maildrop.

Passwords as in production: postoffice with its default argon2 parameters, Dovecot with
SHA512-CRYPT; each server caches a verified login (postoffice's credential cache, Dovecot's
``auth_cache_size``), so a session after the first does not pay for the hash.

MB/s counts the octets the client received (10^6 octets per MB). The bodies RETR returns are
hashed and compared between the two servers. ``--tls`` runs the same over implicit TLS (995-style)
with postoffice's generated certificate used by both. Not a test: prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ADDRESS = "bench@example.com"
PASSWORD = "benchmark-password"
DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"
WORDS = ("the quick brown fox jumps over the lazy dog mail server message inbox folder client "
         "download delete protocol session maildrop octets network latency throughput").split()


# -- messages -------------------------------------------------------------------------------------


def make_messages(count: int, seed: int = 1939) -> list[bytes]:
    """Plausible mail: headers, text lines (some starting with "."), sizes from 1 KB to ~200 KB
    with most around 4-12 KB; CRLF line ends."""
    rnd = random.Random(seed)
    out = []
    for n in range(count):
        size = int(min(200_000, max(800, rnd.lognormvariate(8.8, 0.9))))
        head = (
            f"Return-Path: <sender{n % 97}@example.org>\r\n"
            f"Received: from mx.example.org (mx.example.org [192.0.2.{n % 250}]) by mail.example.com\r\n"
            f"\twith ESMTPS id {n:08x}; Thu, 1 Feb 2024 10:{n % 60:02d}:00 +0000\r\n"
            f"From: Sender {n % 97} <sender{n % 97}@example.org>\r\n"
            f"To: Bench <{ADDRESS}>\r\n"
            f"Subject: benchmark message {n} {' '.join(rnd.choices(WORDS, k=5))}\r\n"
            f"Date: Thu, 1 Feb 2024 10:{n % 60:02d}:00 +0000\r\n"
            f"Message-ID: <{n}.{seed}@example.org>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        ).encode()
        lines = []
        total = len(head)
        while total < size:
            line = " ".join(rnd.choices(WORDS, k=rnd.randint(4, 13)))
            if rnd.random() < 0.02:
                line = "." + line  # dot-stuffing must happen
            lines.append(line)
            total += len(line) + 2
        out.append(head + ("\r\n".join(lines) + "\r\n").encode())
    return out


# -- a small, fast POP3 client --------------------------------------------------------------------


class Client:
    def __init__(self, port: int, tls: ssl.SSLContext | None) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock: socket.socket = tls.wrap_socket(sock, server_hostname="localhost") if tls else sock
        self.buf = bytearray()
        self.received = 0
        self.status()

    def _fill(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("server closed the connection")
        self.received += len(data)
        self.buf += data

    def status(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            self._fill()
        line = bytes(self.buf[:end])
        del self.buf[:end + 2]
        if not line.startswith(b"+OK"):
            raise RuntimeError(line.decode(errors="replace"))
        return line

    def body(self) -> bytes:
        """The rest of a multi-line response, terminator included."""
        if self.buf.startswith(b".\r\n"):
            del self.buf[:3]
            return b".\r\n"
        start = 0
        while (end := self.buf.find(b"\r\n.\r\n", start)) < 0:
            start = max(0, len(self.buf) - 4)
            self._fill()
        data = bytes(self.buf[:end + 5])
        del self.buf[:end + 5]
        return data

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, line: str) -> bytes:
        self.send(line.encode() + b"\r\n")
        return self.status()

    def multiline(self, line: str) -> bytes:
        self.command(line)
        return self.body()

    def login(self) -> int:
        self.command(f"USER {ADDRESS}")
        self.command(f"PASS {PASSWORD}")
        return int(self.command("STAT").split()[1])

    def close_after_login(self) -> None:
        self.login()
        self.close()

    def close(self) -> None:
        try:
            self.command("QUIT")
        finally:
            self.sock.close()


# -- measurements ---------------------------------------------------------------------------------


def measure(ports: dict[str, int], tls: ssl.SSLContext | None,
            runs: int) -> dict[str, dict[str, tuple[float, float]]]:
    """{server: {operation: (messages/s, MB/s)}}, best of ``runs``. The servers take turns
    run by run, so a busy moment on the machine does not favour one of them; "_digest" is a
    hash of every RETR body a server sent."""
    clients = {name: Client(port, tls) for name, port in ports.items()}
    counts = {name: client.login() for name, client in clients.items()}
    digests = {name: hashlib.sha256() for name in clients}
    results: dict[str, dict[str, tuple[float, float]]] = {name: {} for name in clients}

    def listing(client: Client, count: int, verb: str) -> int:
        body = client.multiline(verb)
        assert body.count(b"\r\n") == count + 1, verb
        return count

    def retr_one_at_a_time(client: Client, count: int, digest: Any) -> int:
        for n in range(1, count + 1):
            client.command(f"RETR {n}")
            digest.update(client.body())
        return count

    def retr_pipelined(client: Client, count: int, depth: int = 64) -> int:
        sent = 0
        for n in range(1, min(depth, count) + 1):
            client.send(b"RETR %d\r\n" % n)
            sent = n
        for _ in range(count):
            client.status()
            client.body()
            if sent < count:
                sent += 1
                client.send(b"RETR %d\r\n" % sent)
        return count

    operations: list[tuple[str, Callable[[str], int]]] = [
        ("LIST", lambda name: sum(listing(clients[name], counts[name], "LIST") for _ in range(10))),
        ("UIDL", lambda name: sum(listing(clients[name], counts[name], "UIDL") for _ in range(10))),
        ("RETR one at a time", lambda name: retr_one_at_a_time(clients[name], counts[name], digests[name])),
        ("RETR pipelined x64", lambda name: retr_pipelined(clients[name], counts[name])),
    ]
    for name, client in clients.items():  # warm-up: page cache, indexes
        listing(client, counts[name], "LIST")
        listing(client, counts[name], "UIDL")
        retr_pipelined(client, counts[name])
    for op, once in operations:
        rates: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
        for _ in range(runs):
            for name, client in clients.items():
                before = client.received
                start = time.perf_counter()
                done = once(name)
                elapsed = time.perf_counter() - start
                rates[name].append((done / elapsed, (client.received - before) / elapsed / 1e6))
        for name in clients:
            results[name][op] = max(rates[name])
    for name, client in clients.items():
        client.close()
        results[name]["_digest"] = (float(int(digests[name].hexdigest()[:12], 16)), 0.0)
    logins: dict[str, list[float]] = {name: [] for name in clients}
    for port in ports.values():  # unmeasured: fills the login caches (postoffice: every worker's)
        for _ in range(10):
            Client(port, tls).close_after_login()
    for _ in range(runs):  # a whole session: connect, USER/PASS (the snapshot), STAT, QUIT
        for name, port in ports.items():
            start = time.perf_counter()
            for _ in range(5):
                Client(port, tls).close_after_login()
            logins[name].append((time.perf_counter() - start) / 5)
    for name in clients:
        results[name]["_login"] = (min(logins[name]), 0.0)
    return results


# -- postoffice -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited ({proc.returncode}):\n{log.read_text(errors='replace')[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not start listening on {port}")


def start_postoffice(tmp: Path, messages: list[bytes]) -> tuple[subprocess.Popen[bytes], int, int, Path]:
    sys.path.insert(0, str(ROOT / "src"))
    from postoffice import config as config_module
    from postoffice.services.accounts import AccountService
    from postoffice.services.auth import Authenticator
    from postoffice.store import Store

    data = tmp / "postoffice"
    plain, tls = free_port(), free_port()
    cfg = tmp / "postoffice.toml"
    cfg.write_text(
        f'hostname = "localhost"\ndata_dir = "{data}"\nlog_level = "warning"\n'
        '[listen]\nsmtp = ""\nsubmission = ""\nsubmissions = ""\nimap = ""\nimaps = ""\nhttp = ""\n'
        f'pop3 = "127.0.0.1:{plain}"\npop3s = "127.0.0.1:{tls}"\n'
        # default argon2 parameters (the server caches a verified login, as Dovecot's auth cache does)
        "[security]\nallow_plaintext_auth = true\n"
    )
    config = config_module.load(cfg, env={})

    async def fill() -> None:
        store = Store.open(config.data_path, config.database_target)
        try:
            accounts = AccountService(store, Authenticator(store, config.security))
            await accounts.add_domain("example.com")
            account = await accounts.add_account(ADDRESS, PASSWORD)
            inbox = await store.get_mailbox(account.id, "INBOX")
            assert inbox is not None
            now = time.time()
            for start in range(0, len(messages), 250):
                await store.append(account.id, inbox.id,
                                   [(raw, 1, "", now) for raw in messages[start:start + 250]])
        finally:
            store.close()

    started = time.perf_counter()
    asyncio.run(fill())
    print(f"  postoffice store filled in {time.perf_counter() - started:.1f} s")
    log = tmp / "postoffice.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "postoffice", "--config", str(cfg), "serve"],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=tmp)
    wait_port(plain, proc, "postoffice", log)
    wait_port(tls, proc, "postoffice", log)
    return proc, plain, tls, data / "tls"


# -- Dovecot --------------------------------------------------------------------------------------


def start_dovecot(tmp: Path, messages: list[bytes], tls_dir: Path) -> tuple[subprocess.Popen[bytes], int, int, str]:
    root = tmp / "dovecot"
    home = root / "home"
    maildir = home / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    base = 1_700_000_000
    for n, raw in enumerate(messages):
        lf = raw.replace(b"\r\n", b"\n")  # maildir stores LF; S= is the file size, W= the CRLF size
        (maildir / "cur" / f"{base + n}.M{n}P1.bench,S={len(lf)},W={len(raw)}:2,S").write_bytes(lf)
    uid = gid = 65534  # nobody: Dovecot does not serve mail as root
    if os.geteuid() == 0:
        for path in [home, *home.rglob("*")]:
            os.chown(path, uid, gid)
    else:
        uid, gid = os.getuid(), os.getgid()
    # SHA512-CRYPT with the auth cache on, as in the other benchmarks (bench/README.md)
    hashed = subprocess.run([DOVEADM, "pw", "-s", "SHA512-CRYPT", "-p", PASSWORD],
                            capture_output=True, text=True).stdout.strip()
    if not hashed:
        print("  note: doveadm pw failed: Dovecot checks a PLAIN password")
        hashed = "{PLAIN}" + PASSWORD
    (root / "passwd").write_text(f"{ADDRESS}:{hashed}:{uid}:{gid}::{home}::\n")
    plain, tls = free_port(), free_port()
    run = root / "run"
    run.mkdir()
    conf = root / "dovecot.conf"
    conf.write_text(f"""
base_dir = {run}
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{tls_dir}/selfsigned.crt
ssl_key = <{tls_dir}/selfsigned.key
disable_plaintext_auth = no
auth_mechanisms = plain
auth_cache_size = 10M
auth_cache_ttl = 1 hour
first_valid_uid = 1
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {plain}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {tls}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
""")
    (root / "state").mkdir()
    os.chmod(root, 0o755)
    os.chmod(tmp, 0o755)
    version = subprocess.run([DOVECOT, "--version"], capture_output=True, text=True).stdout.split()[0]
    log = root / "dovecot.log"
    proc = subprocess.Popen([DOVECOT, "-F", "-c", str(conf)], stdout=(root / "stdout.log").open("wb"),
                            stderr=subprocess.STDOUT)
    log.touch()
    wait_port(plain, proc, "dovecot", root / "stdout.log")
    return proc, plain, tls, version


# -- main ------------------------------------------------------------------------------------------


def table(title: str, columns: dict[str, dict[str, tuple[float, float]]]) -> None:
    names = list(columns)
    ops = [op for op in next(iter(columns.values())) if not op.startswith("_")]
    print(f"\n{title}")
    print(f"  {'':22}" + "".join(f"{name:>30}" for name in names))
    for op in ops:
        cells = "".join(f"{columns[n][op][0]:>13,.0f} msg/s {columns[n][op][1]:>7.1f} MB/s" for n in names)
        print(f"  {op:22}{cells}")
    print(f"  {'session (login+STAT+QUIT)':22}" + "".join(
        f"{columns[n]['_login'][0] * 1000:>26.1f} ms" for n in names))
    if len(names) == 2:
        a, b = names
        ratio = ", ".join(f"{op} x{columns[a][op][0] / columns[b][op][0]:.2f}" for op in ops)
        print(f"  {a} / {b}: {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tls", action="store_true", help="also measure over implicit TLS")
    parser.add_argument("--no-dovecot", action="store_true")
    args = parser.parse_args()

    with_dovecot = not args.no_dovecot and os.path.exists(DOVECOT)
    if not args.no_dovecot and not with_dovecot:
        print("Dovecot is not installed (apt-get install dovecot-pop3d): measuring postoffice alone")
    messages = make_messages(args.messages)
    total = sum(len(m) for m in messages)
    print(f"POP3 benchmark: {len(messages)} messages, {total / 1e6:.1f} MB, loopback, best of {args.runs}")
    tmp = Path(tempfile.mkdtemp(prefix="pop3bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        po, po_plain, po_tls, tls_dir = start_postoffice(tmp, messages)
        procs.append(po)
        servers = {"postoffice": (po_plain, po_tls)}
        if with_dovecot:
            dc, dc_plain, dc_tls, version = start_dovecot(tmp, messages, tls_dir)
            procs.append(dc)
            servers[f"dovecot {version}"] = (dc_plain, dc_tls)
        modes: list[tuple[str, ssl.SSLContext | None, int]] = [("plain TCP", None, 0)]
        if args.tls:
            client_tls = ssl.create_default_context(cafile=str(tls_dir / "selfsigned.crt"))
            modes.append(("implicit TLS", client_tls, 1))
        for label, context, which in modes:
            columns = measure({name: ports[which] for name, ports in servers.items()}, context, args.runs)
            table(f"{label}:", columns)
            digests = {c["_digest"][0] for c in columns.values()}
            if len(columns) > 1:
                print("  RETR output identical on both servers: " + ("yes" if len(digests) == 1 else "NO"))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
