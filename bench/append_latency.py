"""APPEND with a synchronizing literal (imaplib) against APPEND with LITERAL+, one after another.

    .venv/bin/python bench/append_latency.py [--count 1000] [--size 2000] [--no-dovecot]

imaplib - like Outlook and many migration tools - sends ``{n}``, waits for ``+``, then writes the
literal and the final CRLF in two calls. Under Nagle's algorithm that CRLF waits until the
literal is acknowledged, and a server that lets the kernel delay its ACK (40 ms on Linux) makes
every such APPEND cost that much (issue 10 measured 44 ms, 1,000 messages in 41 s). postoffice
asks for an immediate ACK while a literal is arriving (servers/listener.py, Connection.quickack).

Each server gets ``--count`` APPENDs of a ``--size`` octet message through imaplib, then as many
with LITERAL+ over a plain socket (TCP_NODELAY, one write per command), one at a time; the table
gives the total and the time per APPEND (mean, median, 95th percentile). Both servers store each
message durably (postoffice: fsync of the body and a committed index; Dovecot: mail_fsync =
optimized). Not a test: prints a table.
"""

from __future__ import annotations

import argparse
import imaplib
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def message(size: int) -> bytes:
    head = (b"From: Bench <bench@example.org>\r\nTo: bench0@example.com\r\nSubject: append bench\r\n"
            b"Date: Thu, 1 Feb 2024 10:00:00 +0000\r\nMessage-ID: <append@example.org>\r\n\r\n")
    line = b"the quick brown fox jumps over the lazy dog " * 2 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def imaplib_appends(port: int, count: int, msg: bytes) -> list[float]:
    client = imaplib.IMAP4("127.0.0.1", port, timeout=60)
    client.login(common.user(0), common.PASSWORD)
    times = []
    for _ in range(count):
        started = time.perf_counter()
        status, _ = client.append("INBOX", None, None, msg)
        times.append(time.perf_counter() - started)
        if status != "OK":
            raise RuntimeError(f"APPEND answered {status}")
    client.logout()
    return times


def literal_plus_appends(port: int, count: int, msg: bytes) -> list[float]:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(f'a LOGIN "{common.user(0)}" "{common.PASSWORD}"\r\n'.encode())
        while not reader.readline().startswith(b"a "):
            pass
        times = []
        for n in range(count):
            tag = b"p%d" % n
            started = time.perf_counter()
            sock.sendall(tag + b" APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\n")
            while True:
                line = reader.readline()
                if not line:
                    raise RuntimeError("connection closed")
                if line.startswith(tag + b" "):
                    break
            times.append(time.perf_counter() - started)
            if not line.startswith(tag + b" OK"):
                raise RuntimeError(line.decode(errors="replace").strip())
        return times


def row(name: str, how: str, times: list[float]) -> str:
    p95 = statistics.quantiles(times, n=20)[-1] if len(times) >= 20 else max(times)
    return (f"| {name} | {how} | {len(times):,} | {sum(times):.2f} s | {common.fmt_ms(statistics.mean(times))} | "
            f"{common.fmt_ms(statistics.median(times))} | {common.fmt_ms(p95)} |")


def measure(name: str, port: int, count: int, msg: bytes) -> None:
    runs: list[tuple[str, Callable[[int, int, bytes], list[float]]]] = [
        ("imaplib, synchronizing literal", imaplib_appends), ("LITERAL+", literal_plus_appends)]
    for how, run in runs:
        print(row(name, how, run(port, count, msg)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, default=2000, help="octets per message")
    parser.add_argument("--no-dovecot", action="store_true")
    args = parser.parse_args()
    msg = message(args.size)
    load = os.getloadavg()[0]
    print(f"{args.count:,} APPENDs of {len(msg):,} octets each, one at a time, loopback; load average {load:.1f}\n")
    print("| server | client | APPENDs | total | mean | median | p95 |")
    print("|---|---|---|---|---|---|---|")
    tmp = common.tmpdir("po-append-")
    try:
        po = common.Postoffice(tmp)
        po.add_accounts(1)
        po.start()
        measure("postoffice", po.port, args.count, msg)
    finally:
        if "po" in locals():
            po.stop()
        common.rmtree(tmp)
    version = common.dovecot_version()
    if args.no_dovecot or version is None:
        print("| Dovecot | not installed (make bench-deps) |")
        return
    tmp = common.tmpdir("dc-append-")
    dc = common.Dovecot(tmp)
    try:
        dc.add_accounts(1)
        dc.start()
        measure(f"Dovecot {version}", dc.port, args.count, msg)
    except RuntimeError as exc:
        print(f"| Dovecot | did not start: {str(exc)[:200]} |")
    finally:
        dc.stop()
        common.rmtree(tmp)


if __name__ == "__main__":
    main()
