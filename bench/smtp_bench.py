"""SMTP inbound benchmark: postoffice on port 25 against Postfix (+ Dovecot LMTP) on this machine.

    .venv/bin/python bench/smtp_bench.py [--messages 2000] [--sessions 10] [--size 5120]
                                         [--only postoffice|postfix] [--profile FILE] [--no-rspamd]

One load generator (asyncio, plain sockets, RFC 2920 pipelining: MAIL+RCPT+DATA in one write,
then the text) sends N unique messages of about SIZE bytes over S parallel sessions to one
local account, and times until the last 250.

* postoffice: ``postoffice serve`` in a subprocess (temp data dir, SQLite). Its 250 means
  "fsynced in the mailbox", so the acceptance time is also the in-mailbox time; the bench
  checks that the INBOX holds every message right after the last 250.
* postoffice + rspamd (issue 15): the same with ``[filter] rspamd`` pointing at a private rspamd
  (the test suite's minimal config); skipped if rspamd is not installed.
* Postfix: a private instance (``postfix -c <tmp>``) on a loopback port, relaying to a
  private Dovecot (``dovecot -c <tmp>``) over LMTP, which writes a Maildir. Two figures:
  acceptance (last 250, mail in Postfix's queue) and in-mailbox (Dovecot's Maildir holds all).
  Needs root and the Debian packages postfix and dovecot-lmtpd; skipped (with a note) if missing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = "bench.test"
USER = f"user@{DOMAIN}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5) as s:
                if s.recv(512).startswith(b"220"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered 220 on port {port}")


def make_messages(count: int, size: int) -> list[bytes]:
    filler_line = b"The quick brown fox jumps over the lazy dog, again and again. 0123456789\r\n"
    out = []
    for i in range(count):
        head = (f"From: Load Generator <load@sender.example>\r\nTo: {USER}\r\n"
                f"Subject: bench message {i}\r\nMessage-ID: <bench-{i}-{time.time_ns()}@sender.example>\r\n"
                f"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMIME-Version: 1.0\r\n"
                f"Content-Type: text/plain; charset=us-ascii\r\n\r\n").encode()
        body = bytearray(f"message {i}\r\n".encode())
        while len(head) + len(body) + len(filler_line) <= size:
            body += filler_line
        out.append(head + bytes(body))
    return out


# -- the load generator ------------------------------------------------------------------------


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed")
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            return b"".join(lines)


async def session(port: int, messages: list[bytes], failures: list[bytes]) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await read_reply(reader)
    writer.write(b"EHLO load.example\r\n")
    await read_reply(reader)
    last = 0.0
    for message in messages:
        writer.write(f"MAIL FROM:<load@sender.example> SIZE={len(message)}\r\nRCPT TO:<{USER}>\r\nDATA\r\n".encode())
        for _ in range(3):
            reply = await read_reply(reader)
            if reply[:1] not in (b"2", b"3"):
                failures.append(reply)
        writer.write(message + b".\r\n")
        reply = await read_reply(reader)
        if not reply.startswith(b"250"):
            failures.append(reply)
        last = time.perf_counter()
    writer.write(b"QUIT\r\n")
    try:
        await read_reply(reader)
    except ConnectionError:
        pass
    writer.close()
    return last


async def load(port: int, messages: list[bytes], sessions: int) -> tuple[float, float, list[bytes]]:
    failures: list[bytes] = []
    shares = [messages[i::sessions] for i in range(sessions)]
    start = time.perf_counter()
    ends = await asyncio.gather(*(session(port, share, failures) for share in shares))
    return start, max(ends), failures


def run_load(port: int, messages: list[bytes], sessions: int) -> tuple[float, float, list[bytes]]:
    try:
        import uvloop
        return uvloop.run(load(port, messages, sessions))  # type: ignore[no-any-return]
    except ImportError:
        return asyncio.run(load(port, messages, sessions))


# -- postoffice ----------------------------------------------------------------------------


def bench_postoffice(tmp: Path, messages: list[bytes], sessions: int, profile: str = "",
                     rspamd: str = "", database: str = "") -> dict[str, float]:
    """``database``: a ``postgresql://`` URL (issue 14; empty: SQLite in the data directory)."""
    port = free_port()
    name = "postoffice" + ("-rspamd" if rspamd else "") + ("-pg" if database else "")
    data = tmp / name
    config = tmp / f"{name}.toml"
    listen = {name: "127.0.0.1:0" for name in ("submission", "submissions", "imap", "imaps", "pop3", "pop3s")}
    listen["smtp"] = f"127.0.0.1:{port}"
    listen["http"] = ""
    lines = ['hostname = "mail.bench.test"', f'data_dir = "{data}"', 'log_level = "warning"', "[listen]"]
    lines += [f'{k} = "{v}"' for k, v in listen.items()]
    lines += ["[limits]", "max_connections_per_ip = 100"]
    # Like the Postfix side: no SPF/DKIM/DMARC look-ups (no DNS here), no queue runner.
    lines += ["[inbound]", "verify = false", "[outbound]", "enabled = false"]
    if rspamd:  # issue 15: every message also goes to rspamd's /checkv2
        lines += ["[filter]", f'rspamd = "{rspamd}"', 'on_failure = "tempfail"']
    if database:
        lines += ["[store]", f'database = "{database}"']
    config.write_text("\n".join(lines) + "\n")
    cli = [sys.executable, "-m", "postoffice", "--config", str(config)]
    env = {**os.environ, "PYTHONPATH": os.environ.get("BENCH_SRC", str(ROOT / "src"))}
    subprocess.run([*cli, "domain", "add", DOMAIN], check=True, env=env, capture_output=True)
    subprocess.run([*cli, "account", "add", USER, "--password-stdin"], input=b"benchpassword\n",
                   check=True, env=env, capture_output=True)
    server = subprocess.Popen([*cli, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port, process=server)
        spy = None
        if profile:  # py-spy (in the venv) samples the server during the load only
            spy_bin = Path(sys.executable).with_name("py-spy")
            fmt = "raw" if not profile.endswith(".svg") else "flamegraph"
            cmd = [str(spy_bin), "record", "-p", str(server.pid), "-o", profile, "-f", fmt,
                   "-r", "250", "--threads", *(["--gil"] if os.environ.get("BENCH_GIL") else [])]
            if os.environ.get("BENCH_PROFILER"):  # e.g. "strace -c -f -o {out} -p {pid}"
                cmd = os.environ["BENCH_PROFILER"].format(out=profile, pid=server.pid).split()
            spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        cpu_before = process_cpu(server.pid)
        start, end, failures = run_load(port, messages, sessions)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=30)
        stored = common.count_inbox(database or data / "postoffice.db", USER)
        cpu = process_cpu(server.pid) - cpu_before
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            _, err = server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            _, err = server.communicate()
    if failures:
        print(f"  postoffice: {len(failures)} failures, first: {failures[0]!r}")
    if err.strip():
        print("  postoffice stderr:", err.decode(errors="replace")[-2000:])
    elapsed = end - start
    return {"accepted_s": elapsed, "mailbox_s": elapsed, "stored": stored, "failures": len(failures),
            "cpu_s": cpu}


def bench_with_rspamd(tmp: Path, messages: list[bytes], args: argparse.Namespace) -> bool:
    """The same load with spam filtering on (issue 15): a private rspamd started from the test
    suite's minimal config (tests/support/rspamd.py: one normal worker, no plugins, so this is
    the cost of the round trip and rspamd's parsing, not of a full rule set)."""
    if shutil.which("rspamd") is None:
        print("postoffice + rspamd: skipped (rspamd not installed: apt-get install rspamd)")
        return True
    sys.path.insert(0, str(ROOT))
    from tests.support.rspamd import Rspamd

    daemon = Rspamd(tmp / "rspamd").start()
    try:
        cpu_before = process_cpu(daemon.proc.pid) + sum(process_cpu(p) for p in _children(daemon.proc.pid))
        result = bench_postoffice(tmp, messages, args.sessions, rspamd=daemon.url)
        rspamd_cpu = process_cpu(daemon.proc.pid) + sum(process_cpu(p) for p in _children(daemon.proc.pid)) - cpu_before
    finally:
        daemon.stop()
    report("postoffice + rspamd", args.messages, result)
    print(f"{'':<22} rspamd's own CPU {rspamd_cpu / args.messages * 1000:.2f} ms/msg")
    return result["stored"] == args.messages and not result["failures"]


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def process_cpu(pid: int) -> float:
    """User + system CPU seconds used so far by a process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    if os.environ.get("BENCH_CPU_SPLIT"):
        switches = 0
        per_name: dict[str, int] = {}
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                name = "main" if task.name == str(pid) else task.name
                for line in (task / "status").read_text().splitlines():
                    if "ctxt_switches" in line:
                        switches += int(line.split()[1])
                        per_name[name] = per_name.get(name, 0) + int(line.split()[1])
            except OSError:
                pass
        print("  context switches by thread:", sorted(per_name.items(), key=lambda kv: -kv[1])[:6])
        print(f"  (user {int(fields[11]) / os.sysconf('SC_CLK_TCK'):.2f} s, "
              f"system {int(fields[12]) / os.sysconf('SC_CLK_TCK'):.2f} s, context switches {switches})")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- Postfix + Dovecot LMTP ------------------------------------------------------------------


def postfix_available() -> str:
    if os.geteuid() != 0:
        return "needs root"
    for path in ("/usr/sbin/postfix", "/usr/sbin/dovecot", "/usr/lib/dovecot/lmtp"):
        if not Path(path).exists():
            return f"{path} missing (apt-get install postfix dovecot-lmtpd)"
    return ""


def start_dovecot(tmp: Path) -> tuple[Path, int, Path]:
    root = tmp / "dovecot"
    mail = root / "mail"
    for sub in ("run", "state", "mail"):
        (root / sub).mkdir(parents=True)
    user = pwd.getpwnam("dovecot")
    os.chown(mail, user.pw_uid, user.pw_gid)
    port = free_port()
    conf = root / "dovecot.conf"
    conf.write_text(f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
instance_name = bench-{os.getpid()}
protocols = lmtp
listen = 127.0.0.1
ssl = no
mail_location = maildir:{mail}/%d/%n
first_valid_uid = {user.pw_uid}
lmtp_save_to_detail_mailbox = no
passdb {{
  driver = static
  args = nopassword=y
}}
userdb {{
  driver = static
  args = uid={user.pw_uid} gid={user.pw_gid} home={mail}/%d/%n
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
  process_min_avail = 4
}}
service anvil {{
  chroot =
}}
""")
    subprocess.run(["/usr/sbin/dovecot", "-c", str(conf)], check=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5) as s:
                if s.recv(512).startswith(b"220"):
                    break
        except OSError:
            time.sleep(0.1)
    else:
        raise RuntimeError("dovecot lmtp did not start: " + (root / "dovecot.log").read_text()[-2000:])
    return conf, port, mail / DOMAIN / USER.split("@")[0]


def start_postfix(tmp: Path, lmtp_port: int) -> tuple[Path, int]:
    etc = tmp / "postfix" / "etc"
    etc.mkdir(parents=True)
    spool = tmp / "postfix" / "spool"
    datadir = tmp / "postfix" / "data"
    port = free_port()
    (etc / "vmailbox").write_text(f"{USER} ok\n")
    (etc / "main.cf").write_text(f"""
compatibility_level = 3.6
queue_directory = {spool}
data_directory = {datadir}
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydomain = bench.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file = {tmp}/postfix/postfix.log
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_maps = texthash:{etc}/vmailbox
virtual_transport = lmtp:inet:127.0.0.1:{lmtp_port}
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
default_process_limit = 100
biff = no
alias_maps =
alias_database =
maillog_file_prefixes = {tmp}
""")
    spool.mkdir()
    datadir.mkdir()
    owner = pwd.getpwnam("postfix")
    os.chown(datadir, owner.pw_uid, owner.pw_gid)
    services = [
        f"127.0.0.1:{port} inet n - n - - smtpd",
        "pickup unix n - n 60 1 pickup",
        "cleanup unix n - n - 0 cleanup",
        "qmgr unix n - n 300 1 qmgr",
        "tlsmgr unix - - n 1000? 1 tlsmgr",
        "rewrite unix - - n - - trivial-rewrite",
        "bounce unix - - n - 0 bounce",
        "defer unix - - n - 0 bounce",
        "trace unix - - n - 0 bounce",
        "verify unix - - n - 1 verify",
        "flush unix n - n 1000? 0 flush",
        "proxymap unix - - n - - proxymap",
        "proxywrite unix - - n - 1 proxymap",
        "smtp unix - - n - - smtp",
        "relay unix - - n - - smtp",
        "showq unix n - n - - showq",
        "error unix - - n - - error",
        "retry unix - - n - - error",
        "discard unix - - n - - discard",
        "local unix - n n - - local",
        "virtual unix - n n - - virtual",
        "lmtp unix - - n - - lmtp",
        "anvil unix - - n - 1 anvil",
        "scache unix - - n - 1 scache",
        "postlog unix-dgram n - n - 1 postlogd",
    ]
    (etc / "master.cf").write_text("\n".join(services) + "\n")
    # A private instance with its own config directory, without touching /etc/postfix.
    subprocess.run(["/usr/sbin/postfix", "-c", str(etc), "check"], capture_output=True)
    started = subprocess.run(["/usr/sbin/postfix", "-c", str(etc), "start"], capture_output=True, text=True)
    if started.returncode != 0:
        raise RuntimeError(f"postfix did not start: {started.stdout}{started.stderr}")
    wait_port(port)
    return etc, port


def count_maildir(path: Path) -> int:
    total = 0
    for sub in ("new", "cur"):
        try:
            total += sum(1 for _ in os.scandir(path / sub))
        except FileNotFoundError:
            pass
    return total


def bench_postfix(tmp: Path, messages: list[bytes], sessions: int) -> dict[str, float]:
    dovecot_conf, lmtp_port, maildir = start_dovecot(tmp)
    etc: Path | None = None
    try:
        etc, port = start_postfix(tmp, lmtp_port)
        start, end, failures = run_load(port, messages, sessions)
        deadline = time.monotonic() + 300
        while count_maildir(maildir) < len(messages) and time.monotonic() < deadline:
            time.sleep(0.005)
        in_mailbox = time.perf_counter()
        stored = count_maildir(maildir)
    finally:
        if etc is not None:
            subprocess.run(["/usr/sbin/postfix", "-c", str(etc), "stop"], capture_output=True)
        subprocess.run(["/usr/sbin/dovecot", "-c", str(dovecot_conf), "stop"], capture_output=True)
    if failures:
        print(f"  postfix: {len(failures)} failures, first: {failures[0]!r}")
    return {"accepted_s": end - start, "mailbox_s": in_mailbox - start, "stored": stored,
            "failures": len(failures)}


# -- main ----------------------------------------------------------------------------------


def report(name: str, n: int, r: dict[str, float]) -> None:
    print(f"{name:<22} accepted {n} in {r['accepted_s']:6.2f} s = {n / r['accepted_s']:7.1f} msg/s;  "
          f"all in the mailbox after {r['mailbox_s']:6.2f} s = {n / r['mailbox_s']:7.1f} msg/s;  "
          f"stored {int(r['stored'])}/{n}, failures {int(r['failures'])}"
          + (f";  server CPU {r['cpu_s'] / n * 1000:.2f} ms/msg" if r.get("cpu_s") else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--size", type=int, default=5 * 1024)
    parser.add_argument("--only", choices=("postoffice", "postfix"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--no-rspamd", action="store_true",
                        help="skip the postoffice + rspamd row (it needs the Debian package rspamd)")
    parser.add_argument("--postgres", nargs="?", const=common.POSTGRES_ADMIN, default="", metavar="ADMIN_URL",
                        help="also a postoffice row on PostgreSQL (a fresh database on the server of "
                             "ADMIN_URL, default %(const)s)")
    parser.add_argument("--profile", default="", metavar="FILE",
                        help="py-spy record the postoffice server during the load into FILE "
                             "(.svg: flame graph, else collapsed stacks)")
    args = parser.parse_args()
    messages = make_messages(args.messages, args.size)
    print(f"{args.messages} messages of {args.size} bytes over {args.sessions} sessions, "
          f"pipelined, to one local account; {os.cpu_count()} CPUs")
    tmp = Path(tempfile.mkdtemp(prefix="smtp-bench-"))
    os.chmod(tmp, 0o755)
    ok = True
    try:
        if args.only in (None, "postoffice"):
            result = bench_postoffice(tmp, messages, args.sessions, args.profile)
            report("postoffice (port 25)", args.messages, result)
            ok &= result["stored"] == args.messages and not result["failures"]
            if args.postgres:
                with common.postgres_database(args.postgres) as url:
                    result = bench_postoffice(tmp, messages, args.sessions, database=url)
                report("postoffice on PostgreSQL", args.messages, result)
                ok &= result["stored"] == args.messages and not result["failures"]
            if not args.no_rspamd:
                ok &= bench_with_rspamd(tmp, messages, args)
        if args.only in (None, "postfix"):
            why = postfix_available()
            if why:
                print(f"postfix + dovecot: skipped ({why})")
            else:
                result = bench_postfix(tmp, messages, args.sessions)
                report("postfix -> dovecot lmtp", args.messages, result)
    finally:
        if args.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
