"""IMAP on a large mailbox: SELECT, FETCH 1:* (UID FLAGS), UID SEARCH UNSEEN, SORT (REVERSE DATE),
THREAD REFERENCES and a QRESYNC resync after a few flag changes, postoffice against Dovecot in the same run, same messages.

    .venv/bin/python bench/imap_bench.py [--messages 100000] [--runs 5] [--changes 10] [--no-dovecot]

postoffice runs as its own process (``postoffice serve``) on a data directory filled in-process
through the store (Store.append batches, concurrently, so the group commit merges them); the
first 2,000 messages are stored durably (the real delivery path, two fsyncs per body) and the
rest with fsync turned off in the filling process and one sync at the end, to keep the setup
short. Dovecot (Debian ``dovecot-imapd``) runs from a dovecot.conf in a temporary directory
with the same messages written as maildir files. 90% of the messages start \\Seen.

Measured on one connection per server (ENABLE QRESYNC first):

* SELECT INBOX: the first one after the server starts, on an index each server has already
  built (postoffice loads its per-mailbox index from the database, Dovecot reads its index
  files), then best/median of ``--runs`` (UNSELECT between). Building the index is reported
  apart: postoffice builds it at delivery (part of the fill), Dovecot on the first SELECT of the
  fresh maildir, timed once before Dovecot is restarted for the measurements; and the first
  SELECT after the server is restarted once more (postoffice then starts from the index
  snapshot its first load saved, plus the changes since: store/messages.py ``flag_index``);
* FETCH 1:* (UID FLAGS) and UID SEARCH UNSEEN: best/median of ``--runs``;
* SORT (REVERSE DATE) UTF-8 ALL and THREAD REFERENCES UTF-8 ALL: the first (postoffice loads
  the sort keys kept since delivery into its index; it then saves them as a snapshot, and the
  first SORT after the server is restarted is timed too), best/median of ``--runs`` repeated on an
  unchanged mailbox (an answer may be reused), and best/median of ``--runs`` each right after
  an APPEND of a new message (computed afresh; the figure the target applies to); the
  messages form conversations of 5 (References / In-Reply-To / "Re:" subjects);
* QRESYNC: note UIDVALIDITY/HIGHESTMODSEQ, change flags on ``--changes`` messages from a second
  connection (one UID STORE each), then from a fresh connection time
  ``SELECT INBOX (QRESYNC (uidvalidity modseq))`` and count the FETCH/VANISHED responses; the
  same resync with no change since the modseq, and a plain SELECT, for comparison.

Targets (postoffice): SELECT < 100 ms, FETCH FLAGS of the whole mailbox < 1 s, SORT and THREAD
of the whole mailbox < 1 s each, a resync whose
cost follows what changed (10 changes cost about what 0 changes cost), not the mailbox size.
Not a test: prints a table, exits 0 even when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import Imap  # noqa: E402

DURABLE_SAMPLE = 2000


def number(lines: list[bytes], pattern: bytes) -> int | None:
    for line in lines:
        m = re.search(pattern, line)
        if m:
            return int(m.group(1))
    return None


async def timed(coro_factory, runs: int) -> tuple[float, float, object]:
    """(best, median, last result) of ``runs`` calls."""
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = await coro_factory()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), result


async def first_command(port: int, address: str, command: str, *before: str) -> float:
    """Seconds for ``command`` on a new connection after ``before`` (the first SELECT INBOX:
    Dovecot builds its index files; the first SORT after a restart: postoffice's snapshot)."""
    c = await Imap.connect("127.0.0.1", port)
    await c.login(address, common.PASSWORD)
    for earlier in before:
        await c.command(earlier)
    start = time.perf_counter()
    await c.command(command)
    elapsed = time.perf_counter() - start
    await c.command("LOGOUT", check=False)
    await c.close()
    return elapsed


FIRST_SORT = ("SORT (REVERSE DATE) UTF-8 ALL", "SELECT INBOX")


async def measure(port: int, address: str, runs: int, changes: int) -> dict[str, object]:
    out: dict[str, object] = {}
    c = await Imap.connect("127.0.0.1", port)
    await c.login(address, common.PASSWORD)
    qresync = "QRESYNC" in c.capabilities
    await c.command("ENABLE QRESYNC" if qresync else "ENABLE CONDSTORE", check=False)

    start = time.perf_counter()
    lines, _ = await c.command("SELECT INBOX")
    out["select_cold"] = time.perf_counter() - start
    exists = number(lines, rb"^\* (\d+) EXISTS")
    out["exists"] = exists

    async def select() -> list[bytes]:
        await c.command("UNSELECT")
        return (await c.command("SELECT INBOX"))[0]
    best, med, lines = await timed(select, runs)
    out["select"], out["select_med"] = best, med

    async def fetch() -> int:
        n, octets, _ = await c.bulk("FETCH 1:* (UID FLAGS)")
        return n
    best, med, count = await timed(fetch, runs)
    out["fetch"], out["fetch_med"], out["fetch_lines"] = best, med, count

    async def search() -> int:
        untagged, _ = await c.command("UID SEARCH UNSEEN")
        for line in untagged:
            if line.startswith(b"* SEARCH"):
                return len(line.split()) - 2
        return 0
    best, med, count = await timed(search, runs)
    out["search"], out["search_med"], out["search_hits"] = best, med, count

    # SORT and THREAD (RFC 5256): the first one loads the sort keys, then best/median.
    if "SORT" in c.capabilities:
        async def sort() -> int:
            untagged, _ = await c.command("SORT (REVERSE DATE) UTF-8 ALL")
            return sum(len(line.split()) - 2 for line in untagged if line.startswith(b"* SORT"))
        start = time.perf_counter()
        out["sort_hits"] = await sort()
        out["sort_first"] = time.perf_counter() - start
        best, med, _ = await timed(sort, runs)
        out["sort"], out["sort_med"] = best, med
        new_mail = (b"From: new@example.org\r\nSubject: new\r\nMessage-ID: <new%d@example.org>\r\n"
                    b"Date: Thu, 1 Feb 2024 12:00:00 +0000\r\n\r\nnew\r\n")
        appended = iter(range(1 << 30))
        out["appended"] = appended

        async def sort_changed() -> float:
            # a new message first, so no server can reuse its previous answer; only the SORT is timed
            await c.command("APPEND INBOX", new_mail % next(appended))
            await c.command("NOOP")
            start = time.perf_counter()
            await sort()
            return time.perf_counter() - start
        times = [await sort_changed() for _ in range(runs)]
        out["sort_changed"], out["sort_changed_med"] = min(times), statistics.median(times)
    if "THREAD=REFERENCES" in c.capabilities:
        async def thread() -> int:
            untagged, _ = await c.command("THREAD REFERENCES UTF-8 ALL")
            # top-level threads: "(" at depth 0
            count = 0
            for line in untagged:
                if line.startswith(b"* THREAD"):
                    depth = 0
                    for ch in line[8:]:
                        if ch == 0x28:
                            count += depth == 0
                            depth += 1
                        elif ch == 0x29:
                            depth -= 1
            return count
        start = time.perf_counter()
        out["threads"] = await thread()
        out["thread_first"] = time.perf_counter() - start
        best, med, _ = await timed(thread, runs)
        out["thread"], out["thread_med"] = best, med
        appended2 = out.pop("appended", None) or iter(range(1 << 30))
        thread_mail = (b"From: new@example.org\r\nSubject: new\r\nMessage-ID: <thread%d@example.org>\r\n"
                       b"Date: Thu, 1 Feb 2024 12:00:00 +0000\r\n\r\nnew\r\n")

        async def thread_changed() -> float:
            await c.command("APPEND INBOX", thread_mail % next(appended2))
            await c.command("NOOP")
            start = time.perf_counter()
            await thread()
            return time.perf_counter() - start
        times = [await thread_changed() for _ in range(runs)]
        out["thread_changed"], out["thread_changed_med"] = min(times), statistics.median(times)

    # QRESYNC: state before, changes from another connection, resync from a fresh one.
    lines = (await c.command("SELECT INBOX"))[0]
    uidvalidity = number(lines, rb"\[UIDVALIDITY (\d+)\]")
    modseq = number(lines, rb"\[HIGHESTMODSEQ (\d+)\]")
    uidnext = number(lines, rb"\[UIDNEXT (\d+)\]") or 2
    await c.command("LOGOUT", check=False)
    await c.close()
    if not qresync or uidvalidity is None or modseq is None:
        out["qresync"] = None
        return out
    other = await Imap.connect("127.0.0.1", port)
    await other.login(address, common.PASSWORD)
    await other.command("SELECT INBOX")
    rnd = random.Random(5)
    for uid in rnd.sample(range(1, uidnext), min(changes, uidnext - 1)):
        await other.command(f"UID STORE {uid} +FLAGS.SILENT (\\Flagged)")
    after = number((await other.command("STATUS INBOX (HIGHESTMODSEQ)"))[0], rb"HIGHESTMODSEQ (\d+)")
    await other.command("LOGOUT", check=False)
    await other.close()

    r = await Imap.connect("127.0.0.1", port)
    await r.login(address, common.PASSWORD)
    await r.command("ENABLE QRESYNC")

    async def resync(since: int) -> list[bytes]:
        untagged, _ = await r.command(f"SELECT INBOX (QRESYNC ({uidvalidity} {since}))")
        await r.command("UNSELECT")
        return untagged
    start = time.perf_counter()
    lines = await resync(modseq)
    out["qresync_first"] = time.perf_counter() - start
    best, med, lines = await timed(lambda: resync(modseq), runs)
    out["qresync"], out["qresync_med"] = best, med
    out["qresync_fetch"] = sum(1 for line in lines if re.match(rb"\* \d+ FETCH", line))
    out["qresync_vanished"] = sum(1 for line in lines if line.startswith(b"* VANISHED"))
    best, med, lines = await timed(lambda: resync(after or modseq), runs)
    out["qresync0"], out["qresync0_fetch"] = best, sum(1 for line in lines if re.match(rb"\* \d+ FETCH", line))
    await r.command("LOGOUT", check=False)
    await r.close()
    return out


def threaded(messages: list[bytes], size: int = 5) -> list[bytes]:
    """Make conversations of ``size`` messages: each message after a conversation's first
    replies to the one before it (Subject "Re: <first's subject>", In-Reply-To, References of
    the whole chain), so THREAD REFERENCES has real threads to build."""
    out: list[bytes] = []
    ids: list[bytes] = []
    first_subject = b""
    for n, raw in enumerate(messages):
        head, sep, body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        mid = next(line[12:] for line in lines if line.startswith(b"Message-ID: "))
        if n % size == 0:
            ids = []
            first_subject = next(line[9:] for line in lines if line.startswith(b"Subject: "))
        else:
            lines = [b"Subject: Re: " + first_subject if line.startswith(b"Subject: ") else line
                     for line in lines]
            lines.append(b"In-Reply-To: " + ids[-1])
            lines.append(b"References: " + b" ".join(ids))
        ids.append(mid)
        out.append(b"\r\n".join(lines) + sep + body)
    return out


def row(label: str, values: list[str], target: str = "") -> None:
    print(f"  {label:34}" + "".join(f"{v:>22}" for v in values) + (f"   {target}" if target else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--changes", type=int, default=10, help="flag changes before the QRESYNC resync")
    parser.add_argument("--no-dovecot", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    common.try_uvloop()

    version = None if args.no_dovecot else common.dovecot_version()
    if not args.no_dovecot and version is None:
        print("Dovecot is not installed (apt-get install dovecot-imapd): measuring postoffice alone")
    print(f"IMAP large-mailbox benchmark: {args.messages:,} messages, loopback, best of {args.runs}")
    started = time.perf_counter()
    messages = threaded(common.make_messages(args.messages))
    seen = common.seen_pattern(args.messages)
    print(f"  generated {len(messages):,} messages ({sum(map(len, messages)) / 1e6:.0f} MB) "
          f"in {time.perf_counter() - started:.1f} s")

    tmp = common.tmpdir("imapbench-")
    servers: dict[str, dict[str, object]] = {}
    po = dc = None
    try:
        po = common.Postoffice(tmp / "postoffice")
        address = po.add_accounts(1)[0]
        durable = min(DURABLE_SAMPLE, len(messages))
        t1 = t2 = 0.0
        t1 = po.fill(address, messages[:durable], seen[:durable], durable=True)
        print(f"  postoffice fill, durable (fsync per body + group commit): {durable:,} messages in "
              f"{t1:.1f} s = {durable / t1:,.0f} messages/s")
        if len(messages) > durable:
            t2 = po.fill(address, messages[durable:], seen[durable:], durable=False)
            print(f"  postoffice fill, fsync off (setup only): {len(messages) - durable:,} messages in "
                  f"{t2:.1f} s = {(len(messages) - durable) / t2:,.0f} messages/s")
        po.start()
        servers["postoffice"] = asyncio.run(measure(po.port, address, args.runs, args.changes))
        servers["postoffice"]["index_build"] = f"in the fill ({t1 + t2:.0f} s)"
        pss, rss = common.memory_kb([po.pid])
        print(f"  postoffice process after the run: PSS {pss / 1024:.0f} MiB, RSS {rss / 1024:.0f} MiB")
        po.stop()
        po.start()
        servers["postoffice"]["select_restart"] = asyncio.run(first_command(po.port, address, "SELECT INBOX"))
        servers["postoffice"]["sort_restart"] = asyncio.run(first_command(po.port, address, *FIRST_SORT))
        po.stop()

        if version:
            try:
                dc = common.Dovecot(tmp / "dovecot")
                address = dc.add_accounts(1)[0]
                t = dc.fill(address, messages, seen)
                print(f"  dovecot maildir written directly in {t:.1f} s")
                dc.start()
                build = asyncio.run(first_command(dc.port, address, "SELECT INBOX"))
                print(f"  dovecot index build (first SELECT of the fresh maildir): {build:.1f} s; "
                      "restarted to measure on the built index")
                dc.stop()
                dc.start()
                servers[f"dovecot {version}"] = asyncio.run(measure(dc.port, address, args.runs, args.changes))
                servers[f"dovecot {version}"]["index_build"] = f"1st SELECT {build:.2f} s"
                dc.stop()
                dc.start()
                servers[f"dovecot {version}"]["select_restart"] = asyncio.run(
                    first_command(dc.port, address, "SELECT INBOX"))
                servers[f"dovecot {version}"]["sort_restart"] = asyncio.run(first_command(dc.port, address, *FIRST_SORT))
            except Exception as e:  # noqa: BLE001 - a benchmark reports and goes on
                print(f"  dovecot failed: {e}")
            finally:
                if dc:
                    dc.stop()
    finally:
        if po:
            po.stop()
        if not args.keep:
            common.rmtree(tmp)

    names = list(servers)
    print()
    row("", names, "target (postoffice)")
    get = lambda key: [servers[n].get(key) for n in names]  # noqa: E731
    row("messages in INBOX", [f"{v:,}" if v is not None else "?" for v in get("exists")])
    row("index build (not in the SELECTs)", [v or "-" for v in get("index_build")])
    row("SELECT, first after the fill", [common.fmt_ms(v) for v in get("select_cold")])
    row("SELECT, first after a restart", [common.fmt_ms(v) if v is not None else "-"
                                          for v in get("select_restart")], "< 100 ms")
    row("SELECT, best / median", [f"{common.fmt_ms(a)} / {b * 1000:,.1f}" for a, b in
                                  zip(get("select"), get("select_med"))], "< 100 ms")
    row("FETCH 1:* (UID FLAGS), best / med", [f"{common.fmt_ms(a)} / {b * 1000:,.1f}" for a, b in
                                              zip(get("fetch"), get("fetch_med"))], "< 1 s")
    row("  FETCH responses", [f"{v:,}" for v in get("fetch_lines")])
    row("UID SEARCH UNSEEN, best / med", [f"{common.fmt_ms(a)} / {b * 1000:,.1f}" for a, b in
                                          zip(get("search"), get("search_med"))])
    row("  UIDs found", [f"{v:,}" for v in get("search_hits")])
    timing = lambda a, b: "-" if a is None else f"{common.fmt_ms(a)} / {b * 1000:,.1f}"  # noqa: E731
    row("SORT (REVERSE DATE), first", [common.fmt_ms(v) if v is not None else "-" for v in get("sort_first")])
    row("SORT (REVERSE DATE), 1st after restart", [common.fmt_ms(v) if v is not None else "-"
                                                       for v in get("sort_restart")], "< 1 s")
    row("SORT (REVERSE DATE), best / med", [timing(a, b) for a, b in zip(get("sort"), get("sort_med"))], "< 1 s")
    row("  after new mail, best / med", [timing(a, b) for a, b in zip(get("sort_changed"), get("sort_changed_med"))],
        "< 1 s")
    row("  numbers sorted", [f"{v:,}" if v is not None else "-" for v in get("sort_hits")])
    row("THREAD REFERENCES, first", [common.fmt_ms(v) if v is not None else "-" for v in get("thread_first")])
    row("THREAD REFERENCES, best / med", [timing(a, b) for a, b in zip(get("thread"), get("thread_med"))], "< 1 s")
    row("  after new mail, best / med", [timing(a, b) for a, b in zip(get("thread_changed"),
                                                                        get("thread_changed_med"))], "< 1 s")
    row("  threads", [f"{v:,}" if v is not None else "-" for v in get("threads")])
    row(f"QRESYNC resync, {args.changes} changes, first", [common.fmt_ms(v) for v in get("qresync_first")])
    row(f"QRESYNC resync, {args.changes} changes, best", [common.fmt_ms(v) for v in get("qresync")])
    row("  FETCH / VANISHED responses", [f"{a} / {b}" if a is not None else "-" for a, b in
                                         zip(get("qresync_fetch"), get("qresync_vanished"))])
    row("QRESYNC resync, 0 changes, best", [common.fmt_ms(v) for v in get("qresync0")])

    p = servers.get("postoffice")
    if p:
        print()
        print(f"  SELECT < 100 ms: {common.verdict(p['select'] < 0.1)} ({p['select'] * 1000:.1f} ms); "
              f"first SELECT after a restart (index snapshot and the changes since): "
              f"{common.verdict(p['select_restart'] < 0.1)} ({p['select_restart'] * 1000:.1f} ms); "
              f"first SELECT after the fill (the whole index read from the database): "
              f"{p['select_cold'] * 1000:.1f} ms")
        print(f"  FETCH 1:* (UID FLAGS) < 1 s: {common.verdict(p['fetch'] < 1.0)} ({p['fetch'] * 1000:.0f} ms)")
        if p.get("sort") is not None:
            print(f"  SORT (REVERSE DATE) < 1 s: {common.verdict(p['sort_changed'] < 1.0)} "
                  f"(computed after new mail {p['sort_changed'] * 1000:.0f} ms; repeated unchanged "
                  f"{p['sort'] * 1000:.0f} ms; first, loading the sort keys: {p['sort_first'] * 1000:.0f} ms; "
                  f"first after a restart: {p['sort_restart'] * 1000:.0f} ms)")
        if p.get("thread") is not None:
            print(f"  THREAD REFERENCES < 1 s: {common.verdict(p['thread_changed'] < 1.0)} "
                  f"(computed after new mail {p['thread_changed'] * 1000:.0f} ms; repeated unchanged "
                  f"{p['thread'] * 1000:.0f} ms; first: {p['thread_first'] * 1000:.0f} ms)")
        if p.get("qresync") is not None:
            extra = p["qresync"] - p["qresync0"]
            ok = p["qresync_fetch"] == args.changes and extra < max(0.005, p["qresync0"])
            print(f"  QRESYNC resync proportional to changes: {common.verdict(ok)} "
                  f"({args.changes} changes {p['qresync'] * 1000:.1f} ms vs none {p['qresync0'] * 1000:.1f} ms, "
                  f"{p['qresync_fetch']} FETCH responses)")
        for name in names[1:]:
            d = servers[name]
            if d.get("select") and p.get("select"):
                print(f"  vs {name}: SELECT x{d['select'] / p['select']:.2f}, FETCH x{d['fetch'] / p['fetch']:.2f}, "
                      f"SEARCH x{d['search'] / p['search']:.2f} (dovecot time / postoffice time: >1 = postoffice faster)")
    print(f"\n  total time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
