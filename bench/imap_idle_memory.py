"""Memory per idle IMAP connection over TLS: N clients LOGIN, SELECT INBOX and IDLE on one
postoffice process (993-style implicit TLS), then Dovecot the same way, and a delivery is
checked to reach the idlers.

    .venv/bin/python bench/imap_idle_memory.py [--connections 5000] [--dovecot-connections 1000]
                                               [--users 10] [--no-dovecot]

The server's proportional set size (PSS, /proc/<pid>/smaps_rollup; for Dovecot the sum over the
master and all its children: imap-login, imap, auth, anvil...) is read once the server is warm
(one full session done) and again with all connections idling; the difference divided by the
number of connections is the cost of one idle TLS connection. RSS is shown too.

Then a message is APPENDed from another connection to the first account's INBOX and every idler
of that account must see ``* n EXISTS`` (the time until the last one does is printed); idlers of
the other accounts must see nothing. Clients are spread over ``--users`` accounts.

Target (postoffice): 5,000 idle TLS connections in one process, under 50 KB each.
Not a test: prints a table, exits 0 even when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import re
import ssl
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import Imap, ImapError  # noqa: E402


async def open_idlers(port: int, tls: ssl.SSLContext, addresses: list[str], count: int,
                      parallel: int) -> tuple[list[tuple[int, Imap]], int, str]:
    """(idling connections with their account index, failures, last error)."""
    sem = asyncio.Semaphore(parallel)
    failures = 0
    last = ""

    async def one(i: int) -> tuple[int, Imap] | None:
        nonlocal failures, last
        async with sem:
            c = None
            try:
                c = await Imap.connect("127.0.0.1", port, tls)
                await c.command(f'LOGIN "{addresses[i % len(addresses)]}" "{common.PASSWORD}"')
                await c.command("SELECT INBOX")
                tag = c.next_tag()
                c.writer.write(tag + b" IDLE\r\n")
                while not (line := await asyncio.wait_for(c.read_response(), 60)).startswith(b"+"):
                    if line.startswith(tag):
                        raise ImapError(line.decode(errors="replace"))
                return i % len(addresses), c
            except (OSError, ImapError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
                failures += 1
                last = f"{type(e).__name__}: {e}"
                if c is not None:
                    c.writer.transport.abort()
                return None
    done = await asyncio.gather(*(one(i) for i in range(count)))
    return [d for d in done if d is not None], failures, last


async def check_delivery(port: int, tls: ssl.SSLContext, address: str,
                         idlers: list[tuple[int, Imap]]) -> tuple[int, int, int, float]:
    """APPEND to account 0; returns (account-0 idlers notified, account-0 idlers, others notified,
    seconds until the last notification)."""
    c = await Imap.connect("127.0.0.1", port, tls)
    await c.command(f'LOGIN "{address}" "{common.PASSWORD}"')
    start = time.perf_counter()
    await c.command("APPEND INBOX", common.make_message(999_999, __import__("random").Random(1), address))
    last = 0.0

    async def wait_exists(conn: Imap, timeout: float) -> bool:
        nonlocal last
        try:
            while True:
                line = await asyncio.wait_for(conn.read_response(), timeout)
                if re.match(rb"\* \d+ EXISTS", line):
                    last = max(last, time.perf_counter() - start)
                    return True
        except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError, ssl.SSLError):
            return False
    mine = [conn for acct, conn in idlers if acct == 0]
    others = [conn for acct, conn in idlers if acct != 0][:200]
    got = await asyncio.gather(*(wait_exists(conn, 15) for conn in mine))
    wrong = await asyncio.gather(*(wait_exists(conn, 1) for conn in others))
    await c.command("LOGOUT", check=False)
    await c.close()
    return sum(got), len(mine), sum(wrong), last


async def measure(name: str, port: int, pids, addresses: list[str], count: int,
                  parallel: int) -> dict[str, object]:
    tls = common.client_tls()
    warm = await Imap.connect("127.0.0.1", port, tls)  # one full session: lazy imports, caches
    await warm.command(f'LOGIN "{addresses[0]}" "{common.PASSWORD}"')
    await warm.command("SELECT INBOX")
    await warm.command("LOGOUT", check=False)
    await warm.close()
    await asyncio.sleep(1.5)
    before = common.memory_kb(pids())
    started = time.perf_counter()
    idlers, failures, last_error = await open_idlers(port, tls, addresses, count, parallel)
    setup = time.perf_counter() - started
    gc.collect()
    await asyncio.sleep(3)
    after = common.memory_kb(pids())
    n = len(idlers)
    result: dict[str, object] = {
        "connections": n, "failures": failures, "setup": setup, "before": before, "after": after,
        "pss_per": (after[0] - before[0]) / n if n else 0.0, "rss_per": (after[1] - before[1]) / n if n else 0.0,
        "processes": len(pids()),
    }
    print(f"  {name}: {n:,} idle TLS connections opened in {setup:.1f} s ({failures} failed"
          f"{', last error: ' + last_error if failures else ''}); PSS {before[0] / 1024:.1f} -> "
          f"{after[0] / 1024:.1f} MiB, RSS {before[1] / 1024:.1f} -> {after[1] / 1024:.1f} MiB, "
          f"{result['processes']} processes")
    if n:
        got, mine, wrong, last = await check_delivery(port, tls, addresses[0], idlers)
        result.update(notified=got, expected=mine, wrong=wrong, notify_time=last)
        print(f"  {name}: delivery seen by {got}/{mine} idlers of the account in {last * 1000:.0f} ms; "
              f"{wrong} notifications to idlers of other accounts")
        if got < mine and name.startswith("dovecot"):
            try:
                instances = Path("/proc/sys/fs/inotify/max_user_instances").read_text().strip()
            except OSError:
                instances = "?"
            print(f"    (Dovecot's imap processes watch the maildir with inotify; beyond "
                  f"fs.inotify.max_user_instances = {instances} per user they poll every "
                  "mailbox_idle_check_interval = 30 s, so the rest see it later; we wait 15 s)")
    for _, c in idlers:
        c.writer.transport.abort()
    await asyncio.sleep(0.5)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--dovecot-connections", type=int, default=1000,
                        help="Dovecot needs one imap process per connection; per-connection memory hardly "
                             "depends on the count")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=100, help="connections being set up at once")
    parser.add_argument("--no-dovecot", action="store_true")
    args = parser.parse_args()
    common.try_uvloop()
    limit = common.raise_nofile(max(args.connections, args.dovecot_connections) * 3 + 1000)
    print(f"IMAP IDLE memory over TLS: {args.connections:,} connections to postoffice, "
          f"{args.dovecot_connections:,} to Dovecot, {args.users} accounts (open files limit {limit:,})")
    tmp = common.tmpdir("imapidle-")
    results: dict[str, dict[str, object]] = {}
    try:
        po = common.Postoffice(tmp / "postoffice", plain=False, tls=True)
        try:
            addresses = po.add_accounts(args.users)
            for n, address in enumerate(addresses):
                po.fill(address, common.make_messages(20, seed=n, to=address), durable=False)
            po.start()
            results["postoffice"] = asyncio.run(measure("postoffice", po.tls_port, po.pids, addresses,
                                                        args.connections, args.parallel))
        finally:
            po.stop()
        version = None if args.no_dovecot else common.dovecot_version()
        if not args.no_dovecot and version is None:
            print("  Dovecot is not installed (apt-get install dovecot-imapd): skipped")
        if version and args.dovecot_connections:
            tls_dir = tmp / "postoffice" / "data" / "tls"
            dc = common.Dovecot(tmp / "dovecot", plain=False, tls=True, cert=tls_dir / "selfsigned.crt",
                                key=tls_dir / "selfsigned.key", max_clients=args.dovecot_connections + 50)
            try:
                addresses = dc.add_accounts(args.users)
                for n, address in enumerate(addresses):
                    dc.fill(address, common.make_messages(20, seed=n, to=address))
                dc.start()
                results[f"dovecot {version}"] = asyncio.run(measure(
                    f"dovecot {version}", dc.tls_port, dc.pids, addresses, args.dovecot_connections,
                    args.parallel))
            except RuntimeError as e:
                print(f"  dovecot failed: {e}")
            finally:
                dc.stop()
    finally:
        common.rmtree(tmp)

    print()
    print(f"  {'':22}{'connections':>12}{'PSS KB/conn':>14}{'RSS KB/conn':>14}{'notified':>12}")
    for name, r in results.items():
        print(f"  {name:22}{r['connections']:>12,}{r['pss_per']:>14,.1f}{r['rss_per']:>14,.1f}"
              f"{str(r.get('notified', '-')) + '/' + str(r.get('expected', '-')):>12}")
    p = results.get("postoffice")
    if p:
        ok = p["connections"] >= args.connections and p["pss_per"] < 50
        print(f"\n  target {args.connections:,} idle TLS connections under 50 KB each: {common.verdict(ok)} "
              f"({p['connections']:,} held, {p['pss_per']:.1f} KB PSS each)")
        if p.get("expected") and p.get("notified") != p.get("expected"):
            print("  delivery did not reach every idler: target missed")


if __name__ == "__main__":
    main()
