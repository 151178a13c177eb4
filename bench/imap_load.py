"""IMAP load generator: N clients each repeating the cycle an IMAP stress tester runs, counting
commands per second, against postoffice (``[server] workers = 1`` and ``= 0``, one worker per
CPU) and Dovecot in the same run (or any server).

    .venv/bin/python bench/imap_load.py [--clients 1,10,50] [--duration 10] [--users 10] [--no-dovecot]
    .venv/bin/python bench/imap_load.py --host H --port P [--tls] --user U --password PW   # any server

The client is ``bench/imap_loadgen.c`` (built here with gcc -O2; one thread per client, blocking
sockets), so the load generator takes as little CPU from the servers as possible; its CPU share
is printed with each figure. ``--client python`` uses the asyncio client below instead, pinned
with sched_setaffinity to the last CPU (its share of that CPU is printed: above 50% it is the
bottleneck, and the figure says more about the client than the server). Every client count runs
against every server in turn, ``--rounds`` times (default 3, interleaved), and the median counts.

One cycle per client, each step one command (all counted):

    LOGIN, LIST "" "*", STATUS INBOX (MESSAGES UNSEEN), SELECT INBOX,
    FETCH a:b (UID FLAGS ENVELOPE) (a random range of up to 10), STORE x,y +FLAGS (\\Seen),
    STORE z +FLAGS (\\Deleted), EXPUNGE, APPEND INBOX (a 0.6-4 KB message), LOGOUT

A new TCP connection per cycle. Clients are spread over ``--users`` accounts (each INBOX starts
with ``--prefill`` messages; APPEND and EXPUNGE keep it roughly that size). Each client count
runs ``--warmup`` seconds unmeasured, then ``--duration`` seconds measured; the rate is the
OK answers received in that window per second; NO and BAD answers are counted apart and not
in the rate (a STORE on a message another client just expunged may legitimately get NO, but a
server answering NO fast must not look fast). "first/last quarter" (all tagged answers) shows
whether the rate drops as the server runs.

The same work on both sides. postoffice runs as ``postoffice serve`` with its default argon2
parameters; a login it has verified is answered from its cache of verified credentials, i.e.
one HMAC-SHA256 per LOGIN. Dovecot 2.3 (Debian ``dovecot-imapd``, config written to a temporary
directory) verifies the password on every LOGIN even when its auth cache holds the hash, so it
gets a scheme of the same cost: salted SHA-512 (``SSHA512``; ``--dovecot-scheme SHA512-CRYPT``
for 5,000 rounds, ~1 ms a login in its single auth process, what this bench used before).
Durability: postoffice has every answered change on disk (message files and their directory
fsynced, SQLite ``synchronous=FULL``); Dovecot does that with ``mail_fsync = always``, while its
default ``optimized`` leaves flag changes (maildir renames), expunges and its index files to
the kernel. Both rows are run. Both keep mail and indexes on the same file system (the
temporary directory). Dovecot also gets its documented settings for a server that alone
accesses its mail (``maildir_very_dirty_syncs``, ``mailbox_list_index``), maildir, imap-login
in high-performance mode, ssl off on loopback.
Target: postoffice at least Dovecot's OK commands/s with 10 and 50 clients, with at most 1% of
its answers NO or BAD (more fails the target whatever the rate). Not a test: prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import Imap, ImapError  # noqa: E402


#: Dovecot's documented settings for a server that alone accesses its mail (as postoffice alone
#: accesses its store): no re-scan of the maildir on every sync, the mailbox list index.
DOVECOT_TUNING = "maildir_very_dirty_syncs = yes\nmailbox_list_index = yes\n"


class Stats:
    def __init__(self) -> None:
        self.commands = 0
        self.errors = 0
        self.cycles = 0
        self.failures = 0  # cycles aborted (connection closed, BAD...)
        self.latency: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        self.last_error = ""


async def client_loop(n: int, host: str, port: int, tls: ssl.SSLContext | None, address: str,
                      password: str, stats: Stats, stop: asyncio.Event) -> None:
    rnd = random.Random(n)
    serial = n * 10_000_000

    async def cmd(c: Imap, verb: str, text: str, literal: bytes | None = None) -> list[bytes]:
        start = time.perf_counter()
        untagged, tagged = await c.command(text, literal, check=False)
        lat = stats.latency[verb]
        lat[0] += 1
        lat[1] += time.perf_counter() - start
        stats.commands += 1
        ok = tagged.split(b" ", 2)[1:2] == [b"OK"]
        if not ok:
            stats.errors += 1
            stats.last_error = f"{verb}: {tagged.decode(errors='replace').strip()}"
            if verb in ("LOGIN", "SELECT"):
                raise ImapError(stats.last_error)
        return untagged

    while not stop.is_set():
        c = None
        try:
            c = await Imap.connect(host, port, tls)
            await cmd(c, "LOGIN", f'LOGIN "{address}" "{password}"')
            await cmd(c, "LIST", 'LIST "" "*"')
            await cmd(c, "STATUS", "STATUS INBOX (MESSAGES UNSEEN)")
            lines = await cmd(c, "SELECT", "SELECT INBOX")
            exists = 0
            for line in lines:
                m = re.match(rb"\* (\d+) EXISTS", line)
                if m:
                    exists = int(m.group(1))
            if exists:
                a = rnd.randint(1, exists)
                b = min(exists, a + rnd.randint(0, 9))
                await cmd(c, "FETCH", f"FETCH {a}:{b} (UID FLAGS ENVELOPE)")
                x, y = rnd.randint(1, exists), rnd.randint(1, exists)
                await cmd(c, "STORE", f"STORE {x},{y} +FLAGS (\\Seen)")
                await cmd(c, "STORE", f"STORE {rnd.randint(1, exists)} +FLAGS (\\Deleted)")
                await cmd(c, "EXPUNGE", "EXPUNGE")
            serial += 1
            await cmd(c, "APPEND", "APPEND INBOX", common.make_message(serial, rnd, address))
            await cmd(c, "LOGOUT", "LOGOUT")
            stats.cycles += 1
        except (ImapError, OSError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.LimitOverrunError) as e:
            stats.failures += 1
            stats.last_error = f"{type(e).__name__}: {e}"
            await asyncio.sleep(0.05)
        finally:
            if c is not None:
                await c.close()


async def run_load(host: str, port: int, tls: ssl.SSLContext | None, addresses: list[str], password: str,
                   clients: int, duration: float, warmup: float) -> dict[str, object]:
    stats = Stats()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(client_loop(i, host, port, tls, addresses[i % len(addresses)], password,
                                             stats, stop)) for i in range(clients)]
    await asyncio.sleep(warmup)
    c0, e0, y0, f0 = stats.commands, stats.errors, stats.cycles, stats.failures
    lat0 = {k: tuple(v) for k, v in stats.latency.items()}
    timeline = []
    cpu0 = time.process_time()
    start = time.perf_counter()
    last = stats.commands
    for second in range(1, int(duration) + 1):
        await asyncio.sleep(max(0.0, start + second - time.perf_counter()))
        timeline.append(stats.commands - last)
        last = stats.commands
    await asyncio.sleep(max(0.0, start + duration - time.perf_counter()))
    elapsed = time.perf_counter() - start
    client_cpu = (time.process_time() - cpu0) / elapsed
    commands, errors = stats.commands - c0, stats.errors - e0
    cycles, failures = stats.cycles - y0, stats.failures - f0
    latency = {k: ((v[1] - lat0.get(k, (0, 0.0))[1]) / max(1, v[0] - lat0.get(k, (0, 0.0))[0]))
               for k, v in stats.latency.items()}
    stop.set()
    await asyncio.wait(tasks, timeout=30)
    for t in tasks:
        t.cancel()
    q = max(1, len(timeline) // 4)
    return {
        **answer_counts(commands, errors, elapsed), "cycles": cycles,
        "failures": failures, "first": sum(timeline[:q]) / q, "last": sum(timeline[-q:]) / q,
        "latency": latency, "last_error": stats.last_error, "timeline": timeline,
        "client_cpu": client_cpu,
    }


MAX_ERROR_SHARE = 0.01  # more NO/BAD answers than this fails the target


def answer_counts(answers: int, errors: int, elapsed: float) -> dict[str, float]:
    """The rate counts OK answers only; NO/BAD answers are reported apart, with their share."""
    return {"rate": (answers - errors) / elapsed, "commands": answers - errors, "errors": errors,
            "error_share": errors / answers if answers else 0.0}


SHOW_TIMELINE = False
LOADGEN_SOURCE = Path(__file__).resolve().parent / "imap_loadgen.c"


def build_loadgen(tmp: Path) -> Path | None:
    """Compile imap_loadgen.c; None (with a note) when gcc is missing or fails."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        print("  note: no C compiler: falling back to the Python client")
        return None
    out = tmp / "imap_loadgen"
    done = subprocess.run([gcc, "-O2", "-pthread", "-o", str(out), str(LOADGEN_SOURCE)], capture_output=True, text=True)
    if done.returncode:
        print(f"  note: building imap_loadgen failed ({done.stderr.strip()[:200]}): using the Python client")
        return None
    return out


def run_loadgen(binary: Path, host: str, port: int, addresses: list[str], password: str, clients: int,
                duration: float, warmup: float) -> dict[str, object]:
    done = subprocess.run([str(binary), host, str(port), str(clients), str(warmup), str(duration), password,
                           *addresses], capture_output=True, text=True, timeout=warmup + duration + 120)
    if done.returncode:
        raise RuntimeError(f"imap_loadgen failed: {done.stderr.strip()}")
    r = json.loads(done.stdout)
    timeline = r["timeline"] or [0]
    q = max(1, len(timeline) // 4)
    return {  # the generator's "commands" are all tagged answers, "errors" the NO/BAD among them
        **answer_counts(r["commands"], r["errors"], r["elapsed"]), "cycles": r["cycles"], "failures": r["failures"], "first": sum(timeline[:q]) / q,
        "last": sum(timeline[-q:]) / q, "latency": {}, "last_error": r["last_error"], "timeline": timeline,
        "client_cpu": r["cpu"] / r["elapsed"],
    }


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system, with reaped children) of these processes."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15])
        except (OSError, ValueError, IndexError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def pin_to_last_cpu() -> int | None:
    """Pin this process (the Python client) to the last CPU it may use; returns that CPU."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[-1]})
        return cpus[-1]
    except (AttributeError, OSError):
        return None


def report(name: str, counts: list[int], results: dict[int, dict[str, object]]) -> None:
    for clients in counts:
        r = results.get(clients)
        if r is None:
            continue
        note = f"  last error: {r['last_error']}" if r["errors"] or r["failures"] else ""
        print(f"  {name:22} {clients:>4} clients  {r['rate']:>8,.0f} OK commands/s  "
              f"(first/last quarter {r['first']:,.0f}/{r['last']:,.0f}/s, {r['cycles']:,} cycles, "
              f"{r['errors']} NO/BAD = {r['error_share']:.2%} of answers, {r['failures']} aborted, load client {r['client_cpu']:.0%} of a CPU; "
              f"runs {'/'.join(f'{x:,.0f}' for x in r.get('rates', []))}){note}")
        if "server_cpu" in r:
            print(f"      server: {r['server_cpu']:.2f} CPU-seconds per second (of {len(os.sched_getaffinity(0))} CPUs), "
                  f"~{float(r['cpu_per_command']) * 1000:.2f} ms CPU per OK command")  # type: ignore[arg-type]
        if SHOW_TIMELINE:
            print("      per second: " + " ".join(str(v) for v in r["timeline"]))


def latency_table(all_results: dict[str, dict[int, dict[str, object]]], clients: int) -> None:
    names = [n for n in all_results if clients in all_results[n] and all_results[n][clients]["latency"]]
    if not names:
        return
    print(f"\n  mean latency per command with {clients} clients (ms):")
    verbs = ["LOGIN", "LIST", "STATUS", "SELECT", "FETCH", "STORE", "EXPUNGE", "APPEND", "LOGOUT"]
    print("  " + f"{'':22}" + "".join(f"{v:>9}" for v in verbs))
    for n in names:
        lat = all_results[n][clients]["latency"]
        print("  " + f"{n:22}" + "".join(f"{lat.get(v, 0) * 1000:>9.2f}" for v in verbs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,10,50", help="comma-separated client counts")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per client count")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--users", type=int, default=10, help="accounts the clients are spread over")
    parser.add_argument("--prefill", type=int, default=100, help="messages in each INBOX at start")
    parser.add_argument("--no-dovecot", action="store_true")
    parser.add_argument("--no-postoffice", action="store_true")
    parser.add_argument("--host", help="run against this server only (with --port, --user, --password)")
    parser.add_argument("--port", type=int)
    parser.add_argument("--tls", action="store_true", help="implicit TLS (certificate not verified)")
    parser.add_argument("--user", action="append", help="account (repeat for several)")
    parser.add_argument("--password", default=common.PASSWORD)
    parser.add_argument("--rounds", type=int, default=3, help="runs per client count and server; the median counts")
    parser.add_argument("--client", choices=("c", "python"), default="c",
                        help="load generator: imap_loadgen.c (default) or the asyncio client pinned to one CPU")
    parser.add_argument("--workers", default="1,0", help="postoffice [server] workers settings to run (0: one per CPU)")
    parser.add_argument("--postgres", nargs="?", const=common.POSTGRES_ADMIN, default="", metavar="ADMIN_URL",
                        help="also each postoffice on PostgreSQL (a fresh database on the server of "
                             "ADMIN_URL, default %(const)s)")
    parser.add_argument("--timeline", action="store_true", help="print commands completed each second")
    parser.add_argument("--dovecot-fsync", default="always,optimized",
                        help="Dovecot mail_fsync settings to run, one server each (always: every answered change "
                             "is on disk, as postoffice's; optimized: Dovecot's default)")
    parser.add_argument("--dovecot-scheme", default="SSHA512",
                        help="Dovecot password scheme (verified on every LOGIN; SSHA512 costs about what "
                             "postoffice's cached-login check does, SHA512-CRYPT 5,000 rounds ~1 ms)")
    args = parser.parse_args()
    global SHOW_TIMELINE
    SHOW_TIMELINE = args.timeline
    common.try_uvloop()
    common.raise_nofile(65536)
    counts = [int(c) for c in args.clients.split(",") if c.strip()]
    tls = common.client_tls() if args.tls else None
    print(f"IMAP load: cycle LOGIN LIST STATUS SELECT FETCH STORE STORE EXPUNGE APPEND LOGOUT; "
          f"{args.duration:g} s per client count after {args.warmup:g} s warm-up, median of {args.rounds}")
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    build_dir = common.tmpdir("imaploadgen-")
    loadgen = build_loadgen(build_dir) if args.client == "c" else None
    if loadgen is not None:
        print(f"  client: imap_loadgen (C, {LOADGEN_SOURCE.name}), not pinned; {ncpu} CPUs on this machine: "
              "whatever CPU the client uses is not available to the server")
    else:
        cpu = pin_to_last_cpu()
        print(f"  client: Python asyncio, pinned to CPU {cpu}; {ncpu} CPUs on this machine: the server's workers "
              "share that CPU with it")

    all_results: dict[str, dict[int, dict[str, object]]] = {}
    load = os.getloadavg()[0]
    if load > 1.0:
        print(f"  note: load average {load:.1f} before starting: other work on this machine skews the figures")

    server_pids: dict[int, int] = {}  # port -> pid of the server process (its descendants count too)

    def one_run(host: str, port: int, addresses: list[str], password: str, clients: int) -> dict[str, object]:
        pid = server_pids.get(port)
        pids = common.children(pid) if pid else []
        cpu0, t0 = cpu_seconds(pids), time.perf_counter()
        if loadgen is not None and tls is None:
            r = run_loadgen(loadgen, host, port, addresses, password, clients, args.duration, args.warmup)
        else:
            r = asyncio.run(run_load(host, port, tls, addresses, password, clients, args.duration, args.warmup))
        if pids:
            # Over warm-up and measurement alike: the server's CPU seconds per second and per
            # OK command. On a shared or small machine the first says how much CPU it got.
            used, wall = cpu_seconds(pids) - cpu0, time.perf_counter() - t0
            r["server_cpu"] = used / wall
            r["cpu_per_command"] = used / max(1.0, float(r["rate"]) * wall)  # type: ignore[arg-type]
        return r

    def run_all(targets: dict[str, tuple[str, int, list[str], str]]) -> None:
        """Each client count against every server in turn, ``--rounds`` times (interleaved, so
        background noise on the machine hits all servers alike); the median run counts."""
        for clients in counts:
            runs: dict[str, list[dict[str, object]]] = {name: [] for name in targets}
            for _ in range(args.rounds):
                for name, (host, port, addresses, password) in targets.items():
                    runs[name].append(one_run(host, port, addresses, password, clients))
            for name, results in runs.items():
                median = statistics.median_low([r["rate"] for r in results])
                chosen = next(r for r in results if r["rate"] == median)
                chosen["rates"] = [r["rate"] for r in results]
                all_results.setdefault(name, {})[clients] = chosen
                report(name, [clients], all_results[name])

    if args.host or args.port:
        if not args.user:
            parser.error("--user is required with --host/--port")
        run_all({f"{args.host or '127.0.0.1'}:{args.port}":
                 (args.host or "127.0.0.1", args.port or 143, args.user, args.password)})
    else:
        tmp = common.tmpdir("imapload-")
        dovecots: list[common.Dovecot] = []
        servers: list[common.Postoffice] = []
        targets: dict[str, tuple[str, int, list[str], str]] = {}
        databases = contextlib.ExitStack()
        backends = ["sqlite", *(["postgresql"] if args.postgres else [])]
        try:
            for workers, backend in itertools.product(
                    [] if args.no_postoffice else [int(w) for w in args.workers.split(",") if w.strip()], backends):
                url = databases.enter_context(common.postgres_database(args.postgres)) if backend == "postgresql" else ""
                po = common.Postoffice(tmp / f"postoffice-w{workers}-{backend}", database=url,
                                       extra_config=f"[server]\nworkers = {workers}\n")
                addresses = po.add_accounts(args.users)
                for n, address in enumerate(addresses):
                    po.fill(address, common.make_messages(args.prefill, seed=n, to=address),
                            common.seen_pattern(args.prefill), durable=False)
                po.start()
                servers.append(po)
                label = f"postoffice w={workers}" + (f" ({ncpu})" if workers == 0 else "") + (" pg" if url else "")
                targets[label] = ("127.0.0.1", po.port, addresses, common.PASSWORD)
                server_pids[po.port] = po.pid
            version = None if args.no_dovecot else common.dovecot_version()
            if not args.no_dovecot and version is None:
                print("  Dovecot is not installed (apt-get install dovecot-imapd): skipped")
            for fsync in ([] if version is None else [f for f in args.dovecot_fsync.split(",") if f.strip()]):
                dc = common.Dovecot(tmp / f"dovecot-{fsync}", max_clients=max(counts) * 2 + 10,
                                    mail_fsync=fsync, extra_conf=DOVECOT_TUNING)
                dovecots.append(dc)
                try:
                    addresses = dc.add_accounts(args.users, args.dovecot_scheme)
                    for n, address in enumerate(addresses):
                        dc.fill(address, common.make_messages(args.prefill, seed=n, to=address),
                                common.seen_pattern(args.prefill))
                    dc.start()
                    targets[f"dovecot {version} fsync={fsync}"] = ("127.0.0.1", dc.port, addresses, common.PASSWORD)
                    server_pids[dc.port] = dc.pid
                except RuntimeError as e:
                    print(f"  dovecot failed: {e}")
            run_all(targets)
            for po, label in zip(servers, [t for t in targets if t.startswith("postoffice")]):
                pss, rss = common.memory_kb([po.pid, *po.pids()])
                print(f"  {label} after the load (supervisor + workers): PSS {pss / 1024:.0f} MiB, "
                      f"RSS {rss / 1024:.0f} MiB")
        finally:
            for po in servers:
                po.stop()
            databases.close()
            for dc in dovecots:
                dc.stop()
            common.rmtree(tmp)
            common.rmtree(build_dir)

    names = list(all_results)
    print("\nOK commands/s (NO/BAD share of the answers)")
    print("  " + f"{'clients':>8}" + "".join(f"{n:>24}" for n in names))
    for clients in counts:
        print("  " + f"{clients:>8}" + "".join(
            f"{all_results[n][clients]['rate']:>15,.0f} ({all_results[n][clients]['error_share']:>5.1%})"
            if clients in all_results[n] else f"{'-':>24}"
            for n in names))
    for clients in counts:
        latency_table(all_results, clients)
    for dc_name in [n for n in names if n.startswith("dovecot")]:
        print()
        for po_name in [n for n in names if n.startswith("postoffice")]:
            po_res = all_results[po_name]
            for clients in counts:
                if clients in po_res and clients in all_results[dc_name]:
                    a, b = po_res[clients]["rate"], all_results[dc_name][clients]["rate"]
                    share = po_res[clients]["error_share"]
                    target = (" (target at 10 and 50 clients: at least Dovecot's OK rate and at most "
                              f"{MAX_ERROR_SHARE:.0%} NO/BAD: " + common.verdict(a >= b and share <= MAX_ERROR_SHARE)
                              + ")" if clients in (10, 50) else "")
                    errors = f", {share:.2%} NO/BAD" if share > MAX_ERROR_SHARE else ""
                    print(f"  {clients:>3} clients: {po_name} / {dc_name} = x{a / b:.2f}{errors}{target}")


if __name__ == "__main__":
    main()
