"""Several nodes (issue 14): SMTP ingest and IMAP load against postoffice on SQLite (one node),
on PostgreSQL with one node, and on PostgreSQL with two nodes sharing the database and the blob
directory (each node ``[server] workers = 1``; two nodes on one machine show what the shared
database and event bus cost, not what a second machine adds).

    .venv/bin/python bench/nodes_bench.py [--messages 1000] [--sessions 10] [--clients 10] [--duration 15]

* SMTP: ``--messages`` pipelined messages of ``--size`` bytes over ``--sessions`` sessions to one
  account on port 25 (bench/smtp_bench.py's generator), the sessions spread over the nodes;
  timed until the last 250, then checked: the INBOX holds every message, on every node.
* IMAP: bench/imap_load.py's C load generator, ``--clients`` clients spread over the nodes
  (all on the account the SMTP run filled), ``--duration`` seconds after a warm-up; OK answers
  per second summed over the nodes, and the NO/BAD share.

PostgreSQL: the server ``POSTOFFICE_TEST_PG_DSN`` names (default: the local one); a database is
created for the run and dropped after. Not a test: prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import imap_load  # noqa: E402
import smtp_bench  # noqa: E402
from common import free_port, wait_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "benchpassword"
ADMIN_DSN = os.environ.get("POSTOFFICE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


class Node:
    def __init__(self, tmp: Path, name: str, shared: Path, database: str) -> None:
        self.smtp, self.imap = free_port(), free_port()
        self.dir = tmp / name
        self.dir.mkdir(parents=True)
        self.log = self.dir / "serve.log"
        lines = ['hostname = "mail.bench.test"', f'data_dir = "{shared}"', 'log_level = "warning"', "[listen]",
                 f'smtp = "127.0.0.1:{self.smtp}"', f'imap = "127.0.0.1:{self.imap}"']
        lines += [f'{k} = ""' for k in ("submission", "submissions", "imaps", "pop3", "pop3s", "http")]
        lines += ["[security]", "allow_plaintext_auth = true",
                  "[limits]", "max_connections_per_ip = 100000", "max_connections = 100000",
                  "[inbound]", "verify = false", "[outbound]", "enabled = false",
                  "[server]", "workers = 1", f'run_dir = "{self.dir / "run"}"']
        if database:
            lines += ["[store]", f'database = "{database}"']
        self.config = self.dir / "postoffice.toml"
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, stdin: bytes | None = None) -> None:
        subprocess.run([sys.executable, "-m", "postoffice", "--config", str(self.config), *args],
                       check=True, capture_output=True, input=stdin)

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "postoffice", "--config", str(self.config), "serve"],
                                     stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_port(self.imap, self.proc, "postoffice", self.log)
        deadline = time.monotonic() + 120
        while "postoffice is running" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node did not start:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def cpu(self) -> float:
        assert self.proc is not None
        return imap_load.cpu_seconds([self.proc.pid, *smtp_bench._children(self.proc.pid)])

    def inbox_count(self) -> int:
        imap = imaplib.IMAP4("127.0.0.1", self.imap, timeout=30)
        imap.login(smtp_bench.USER, PASSWORD)
        count = int(imap.select("INBOX")[1][0])
        imap.logout()
        return count


def fresh_database() -> tuple[str, str]:
    """(URL of a new database, its name)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    name = f"po_bench_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(ADMIN_DSN)
    user = params.get("user", "postgres")
    return f"postgresql://{user}@{params.get('host', '127.0.0.1')}:{params.get('port', 5432)}/{name}", name


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def smtp_load(ports: list[int], messages: list[bytes], sessions: int) -> tuple[float, list[bytes]]:
    failures: list[bytes] = []
    shares = [messages[i::sessions] for i in range(sessions)]
    start = time.perf_counter()
    ends = await asyncio.gather(*(smtp_bench.session(ports[i % len(ports)], share, failures)
                                  for i, share in enumerate(shares)))
    return max(ends) - start, failures


def imap_run(loadgen: Path, nodes: list[Node], clients: int, duration: float) -> dict[str, float]:
    results: list[dict[str, Any]] = []

    def one(node: Node, count: int) -> None:
        results.append(imap_load.run_loadgen(loadgen, "127.0.0.1", node.imap, [smtp_bench.USER], PASSWORD,
                                             count, 3.0, duration))

    counts = [clients // len(nodes) + (1 if i < clients % len(nodes) else 0) for i in range(len(nodes))]
    threads = [threading.Thread(target=one, args=(node, n)) for node, n in zip(nodes, counts) if n]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answers = sum(float(r["commands"]) for r in results)
    errors = sum(float(r["errors"]) for r in results)
    return {"rate": sum(float(r["rate"]) for r in results), "error_share": errors / max(1.0, answers + errors)}


def bench(tmp: Path, label: str, database: str, count: int, args: argparse.Namespace,
          messages: list[bytes], loadgen: Path | None) -> None:
    shared = tmp / "shared"
    nodes = [Node(tmp, f"node{i}", shared, database) for i in range(count)]
    nodes[0].cli("domain", "add", smtp_bench.DOMAIN)
    nodes[0].cli("account", "add", smtp_bench.USER, "--password-stdin", stdin=PASSWORD.encode() + b"\n")
    try:
        for node in nodes:
            node.start()
        cpu0 = sum(n.cpu() for n in nodes)
        elapsed, failures = asyncio.run(smtp_load([n.smtp for n in nodes], messages, args.sessions))
        cpu = sum(n.cpu() for n in nodes) - cpu0
        stored = [n.inbox_count() for n in nodes]
        print(f"{label:<24} SMTP {len(messages) / elapsed:7.1f} msg/s  ({len(messages)} in {elapsed:.2f} s, "
              f"{len(failures)} refused, INBOX on each node: {stored}, server CPU {cpu / len(messages) * 1000:.1f} ms/msg)")
        if loadgen is not None:
            r = imap_run(loadgen, nodes, args.clients, args.duration)
            print(f"{'':<24} IMAP {r['rate']:7.1f} OK/s    ({args.clients} clients, NO/BAD {r['error_share']:.1%})")
    finally:
        for node in nodes:
            node.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--size", type=int, default=5 * 1024)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--duration", type=float, default=15.0)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    messages = smtp_bench.make_messages(args.messages, args.size)
    with tempfile.TemporaryDirectory(prefix="po-nodes-") as name:
        tmp = Path(name)
        loadgen = imap_load.build_loadgen(tmp)
        bench(tmp / "sqlite", "SQLite, 1 node", "", 1, args, messages, loadgen)
        try:
            url, db = fresh_database()
        except Exception as exc:  # noqa: BLE001
            print(f"PostgreSQL rows skipped: {exc}")
            return 0
        try:
            bench(tmp / "pg1", "PostgreSQL, 1 node", url, 1, args, messages, loadgen)
        finally:
            drop_database(db)
        url, db = fresh_database()
        try:
            bench(tmp / "pg2", "PostgreSQL, 2 nodes", url, 2, args, messages, loadgen)
        finally:
            drop_database(db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
