"""`postoffice serve`: a supervisor process and ``[server] workers`` worker processes.

The supervisor
- prepares once what must not race: the schema migrations, the first panel login, the
  self-signed certificate (so N workers never generate N of them);
- takes ``<run_dir>/postoffice.pid`` (an exclusive lock: one server per run directory, which is
  the data directory unless ``[server] run_dir`` names another: several nodes on one PostgreSQL
  share data_dir, each with its own run_dir) and writes its pid there: it is the process to signal;
- opens every listening socket: for each mail listener one socket per worker, all bound to the
  same address with SO_REUSEPORT, so the kernel spreads new connections evenly over the workers
  (a shared socket would let whichever worker wakes first take a burst of connections). The
  supervisor keeps them open: a restarted worker gets the same sockets back, and connections
  that arrived meanwhile wait in that socket's backlog instead of being refused. The panel's
  HTTP socket goes to worker 0 only (see app.py for where the singletons run and why);
- runs the event-bus hub (services/unixbus.py) that carries change events, the POP3 maildrop
  locks, throttle counts, the session registry and the verified-logins cache between the
  workers; hands that cache over to the next start across a graceful restart
  (services/logincache.py);
- shares a memory segment with the workers holding their connection counts, so the per-address
  and total connection limits hold for the server as a whole (servers/connshare.py);
- starts the workers (``postoffice worker``, an internal command, with the sockets inherited)
  and restarts one that exits, after a back-off that grows while it keeps failing quickly
  (0.1 s doubling up to 30 s; back to 0.1 s once a worker has run for a minute);
- on SIGTERM or SIGINT passes SIGTERM to every worker, which stops accepting, tells its sessions
  (421 / BYE / -ERR, as a single process did) and exits; then closes the sockets and exits.

A worker stops itself when its supervisor disappears (the hub's connection closes; and the
kernel sends it SIGTERM through PR_SET_PDEATHSIG), so killing the supervisor never leaves
orphans holding the ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import cpu
from .servers import connshare
from .services import logincache
from .config import Config, ConfigError, HostPort
from .services.unixbus import BusHub, UnixBusClient, socket_path

log = logging.getLogger(__name__)

BACKOFF_FIRST = 0.1
BACKOFF_MAX = 30.0
#: A worker that ran this long before exiting is restarted without delay growth.
HEALTHY_AFTER = 60.0
START_TIMEOUT = 120.0
DRAIN_TIMEOUT = 30.0
#: After a clean stop, how long the workers' own helper processes (forkserver, resource tracker)
#: get to exit by themselves before they are ended.
ORPHAN_GRACE = 1.0


def restart_delay(failures: int) -> float:
    """Seconds before restarting a worker that exited ``failures`` times in a row without
    running HEALTHY_AFTER seconds (0: it had been running well; restart at once)."""
    return 0.0 if failures <= 0 else min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 1))


@dataclass
class Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    failures: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    restarts: int = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


def bind_listener(name: str, addr: HostPort, count: int) -> list[socket.socket]:
    """``count`` sockets bound to ``addr`` with SO_REUSEPORT (one per worker)."""
    family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
    port = addr.port
    if port:
        # SO_REUSEPORT would let us join another server's sockets on this port (same user) and
        # silently share its connections: check first that nobody listens there.
        probe = socket.socket(family, socket.SOCK_STREAM)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((addr.host, port))
        finally:
            probe.close()
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((addr.host, port))
            port = sock.getsockname()[1]  # port 0: the others join the one the first got
            # No listen() here: the worker's listen() (when it starts serving) opens the port,
            # so a client never waits on a port whose worker is still starting. Once listening,
            # the socket stays so while the supervisor holds it, across worker restarts.
            sock.set_inheritable(True)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


class Supervisor:
    def __init__(self, config: Config, config_path: str | None) -> None:
        self.config = config
        self.config_path = config_path
        self.count = config.server.worker_count()
        self.sockets: dict[str, list[socket.socket]] = {}
        self.bound: dict[str, HostPort] = {}
        self.workers = [Worker(i) for i in range(self.count)]
        self.hub = BusHub(socket_path(config.run_path))
        # The connection limits' counts, shared by the workers (servers/connshare.py).
        self.counts_fd = connshare.create(self.count)
        self.counts = connshare.SharedCounts(self.counts_fd, self.count, None)
        self.hub.on_ready = self._on_ready
        self.stopping = False
        self._stop = asyncio.Event()
        self._pidfile: Any = None

    # -- start -----------------------------------------------------------------------------------
    def lock_pidfile(self) -> None:
        path = self.config.run_path / "postoffice.pid"
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+")  # noqa: SIM115 - held open (and locked) while the server runs
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            other = fh.read().strip()
            fh.close()
            hint = "" if self.config.server.run_dir else (
                " (a second node sharing this data_dir needs its own [server] run_dir)")
            raise ConfigError(f"another postoffice server (pid {other or '?'}) is running on "
                              f"{self.config.run_path}{hint}") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._pidfile = fh

    def bind(self) -> None:
        for name, addr in self.config.listen.addresses().items():
            try:
                self.sockets[name] = bind_listener(name, addr, 1 if name == "http" else self.count)
            except OSError as exc:
                self.close_sockets()
                raise ConfigError(f"cannot listen on {addr} for {name}: {exc.strerror or exc}") from None
            self.bound[name] = HostPort(addr.host, self.sockets[name][0].getsockname()[1])

    def close_sockets(self) -> None:
        for socks in self.sockets.values():
            for sock in socks:
                sock.close()
        self.sockets.clear()

    def _worker_sockets(self, index: int) -> dict[str, int]:
        fds = {}
        for name, socks in self.sockets.items():
            if name == "http":
                if index == 0:
                    fds[name] = socks[0].fileno()
            else:
                fds[name] = socks[index].fileno()
        return fds

    def _on_ready(self, node: str) -> None:
        # node: "worker<index>:<pid>@<host>" (worker_node)
        head, _, pid = node.partition("@")[0].partition(":")
        if head.startswith("worker") and head[6:].isdigit():
            index = int(head[6:])
            if index < len(self.workers) and str(self.workers[index].pid) == pid:
                self.workers[index].ready.set()

    async def _spawn(self, worker: Worker) -> None:
        fds = self._worker_sockets(worker.index)
        args = [sys.executable, "-m", "postoffice"]
        if self.config_path:
            args += ["--config", self.config_path]
        args += ["worker", "--index", str(worker.index), "--parent", str(os.getpid()),
                 "--bus", str(self.hub.path),
                 "--sockets", ",".join(f"{name}={fd}" for name, fd in fds.items()),
                 "--counts", str(self.counts_fd)]
        worker.ready = asyncio.Event()
        worker.process = await asyncio.create_subprocess_exec(*args, pass_fds=[*fds.values(), self.counts_fd])
        worker.started = time.monotonic()

    async def start(self) -> None:
        """Everything up to all workers ready. Raises ConfigError when a worker cannot start."""
        _become_subreaper()
        self.lock_pidfile()
        if self.config.security.login_cache_handover:
            self.hub.logins = logincache.load(self.config.run_path)  # (only the pid file's holder may)
        self.bind()
        await self.hub.start()
        for worker in self.workers:
            await self._spawn(worker)
        for worker in self.workers:
            assert worker.process is not None
            ready = asyncio.ensure_future(worker.ready.wait())
            exited = asyncio.ensure_future(worker.process.wait())
            done, _ = await asyncio.wait({ready, exited}, timeout=START_TIMEOUT,
                                         return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            exited.cancel()
            if ready not in done:
                code = worker.process.returncode
                await self.stop()
                raise ConfigError(f"worker {worker.index} did not start"
                                  + (f" (exit status {code})" if code is not None else ""))

    # -- run ---------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Keep the workers running until ``request_stop``; then drain them."""
        keepers = [asyncio.ensure_future(self._keep(w)) for w in self.workers]
        await self._stop.wait()
        await self.stop()
        for task in keepers:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def request_stop(self) -> None:
        self._stop.set()

    async def _keep(self, worker: Worker) -> None:
        while not self.stopping:
            assert worker.process is not None
            code = await worker.process.wait()
            self.counts.clear(worker.index)  # its connections died with it
            if self.stopping:
                return
            ran = time.monotonic() - worker.started
            worker.failures = 0 if ran >= HEALTHY_AFTER else worker.failures + 1
            delay = restart_delay(worker.failures)
            how = f"signal {-code}" if code < 0 else f"status {code}"
            log.error("worker %d (pid %s) exited with %s after %.1f s; restarting in %.1f s",
                      worker.index, worker.pid, how, ran, delay)
            self.end_orphans()
            await asyncio.sleep(delay)
            if self.stopping:
                return
            await self._spawn(worker)
            worker.restarts += 1

    def end_orphans(self, *, stopping: bool = False) -> None:
        """End what a dead worker left behind. A worker killed outright cannot stop its CPU pool
        (postoffice/cpu.py): the forkserver and pool processes do not notice and would live on
        holding memory. As the subreaper they became our children: every child that is not a
        running worker is such a leftover. ``stopping``: after the workers stopped cleanly,
        whose helpers are on their way out anyway (not worth a warning)."""
        for _ in range(5):  # a killed forkserver's own children are adopted in turn
            orphans = self._leftovers()
            if not orphans:
                return
            for pid in orphans:
                log.log(logging.DEBUG if stopping else logging.WARNING,
                        "ending pid %d, left behind by a worker that exited", pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for pid in orphans:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)  # SIGKILLed: returns at once

    async def _helpers_gone(self, seconds: float) -> None:
        """Wait up to ``seconds`` for children other than running workers to exit."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for pid in self._leftovers():  # reap the ones that exited, or they stay listed as zombies
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
            if not self._leftovers():
                return
            await asyncio.sleep(0.05)

    def _leftovers(self) -> list[int]:
        """Our children that are not running workers (subreaper: what workers left behind)."""
        workers = {w.pid for w in self.workers if w.process is not None and w.process.returncode is None}
        return [pid for pid in _children(os.getpid()) if pid not in workers]

    async def stop(self) -> None:
        """SIGTERM to every worker, wait for them (SIGKILL after DRAIN_TIMEOUT), close up."""
        self.stopping = True
        live = [w.process for w in self.workers if w.process is not None and w.process.returncode is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        if live:
            _, pending = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in live], timeout=DRAIN_TIMEOUT)
            if pending:
                for proc in live:
                    if proc.returncode is None:
                        log.error("worker pid %d did not stop within %.0f s; killing it", proc.pid, DRAIN_TIMEOUT)
                        with contextlib.suppress(ProcessLookupError):
                            proc.kill()
                await asyncio.wait(pending, timeout=5)
        await self._helpers_gone(ORPHAN_GRACE)  # a stopped worker's forkserver exits by itself
        self.end_orphans(stopping=True)
        self.close_sockets()
        if self.config.security.login_cache_handover and self._pidfile is not None:
            logincache.save(self.config.run_path, self.hub.logins)
        await self.hub.close()
        if self._pidfile is not None:
            with contextlib.suppress(OSError):
                (self.config.run_path / "postoffice.pid").unlink()
            self._pidfile.close()
            self._pidfile = None


def _become_subreaper() -> None:
    """PR_SET_CHILD_SUBREAPER (Linux): orphaned descendants of our workers become our children
    (`Supervisor.end_orphans`) instead of init's."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER = 36
    except (OSError, AttributeError):
        pass


def _children(parent: int) -> list[int]:
    """Pids whose parent is ``parent`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == parent:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return out


# -- the worker side ---------------------------------------------------------------------------

def _die_with_parent(parent: int) -> None:
    """PR_SET_PDEATHSIG: the kernel sends SIGTERM when the supervisor dies (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


def parse_sockets(text: str) -> dict[str, socket.socket]:
    out = {}
    for item in filter(None, text.split(",")):
        name, _, fd = item.partition("=")
        out[name] = socket.socket(fileno=int(fd))
    return out


def worker_node(index: int) -> str:
    """A worker's name on the event bus: unique among every node's workers (the pid alone is not,
    across hosts or containers)."""
    return f"worker{index}:{os.getpid()}@{socket.gethostname()}"


async def run_worker(config: Config, index: int, parent: int, bus: Path, sockets: dict[str, socket.socket],
                     counts_fd: int | None = None) -> None:
    """One worker. Its events and locks travel over the supervisor's hub, or, when the store is
    PostgreSQL, over LISTEN/NOTIFY to every worker of every node (services/pgbus.py: each worker
    listens itself; the hub then only carries "ready" and tells the worker when the supervisor
    is gone). The verified-logins cache always goes through this node's hub."""
    from .app import Postoffice

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    _die_with_parent(parent)
    # The message parser's processes and the hashing threads: this worker's share of the CPUs.
    cpu.configure(config.server.worker_count())
    office = Postoffice.open(config, node=worker_node(index))
    if counts_fd is not None:
        office.connection_counts = connshare.SharedCounts(counts_fd, config.server.worker_count(), index)
    hub = UnixBusClient(bus, on_lost=stop.set, logins=True)
    hub.on_login = office.auth.learn
    transport: Any = hub
    try:
        if config.postgres_url is not None:
            from .services.pgbus import PgTransport

            await hub.start(office.bus)
            transport = PgTransport(config.postgres_url)
        await office.join_bus(transport)
        if hub.logins is not None:
            office.auth.share_cache(*hub.logins)
        office.auth.on_verified = hub.send_login
        await office.start(sockets=sockets, singletons=index == 0)
        hub.ready()
        await stop.wait()
        await office.stop()
    finally:
        await office.bus.detach()
        if transport is not hub:
            await hub.close()
        office.close()
        cpu.shutdown()
