"""The running server: composes the store, services, listeners and the web app on one loop.

`Postoffice` is the composition root of one process: each worker of `postoffice serve`
(supervisor.py) runs one, on the sockets the supervisor opened; the end-to-end tests start one
in-process on port 0 listeners (no supervisor, no shared bus).

The singletons (the outbound queue runner, the control panel / HTTP listener, hourly blob
garbage collection) run in one process of a node only: ``start(singletons=True)``, which the
supervisor passes to worker 0 alone. Several nodes on one PostgreSQL each run theirs: the queue
runners claim entries with leases (store/queue.py), and the collectors of a shared blob
directory agree with every node's deliveries through the file system (store/blobs.py). Worker 0 is a full worker, so a crash there is handled like any other
(restarted, with its sockets kept open by the supervisor); the supervisor itself stays small (no
database, no protocol code) so that nothing but a signal can take it down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any

from . import cpu
from .config import Config, ConfigError, HostPort
from .servers.inflight import InflightBudget
from .servers.listener import ConnectionLimiter, ListenerSpec, Listening, serve
from .services.accounts import AccountService
from .services.auth import Authenticator
from .services.events import EventBus, LoginResult, QueueWork, SessionsWanted
from .services.metrics import Metrics
from .services.sessions import SessionRegistry
from .store import AccountChanged, Store
from .tls import HostedDomains, server_context

log = logging.getLogger(__name__)

_SMTP_BUSY = b"421 4.7.0 Too many connections from your address, try again later\r\n"
_SMTP_STOP = b"421 4.3.2 Service shutting down, try again later\r\n"
_IMAP_BUSY = b"* BYE [UNAVAILABLE] Too many connections from your address\r\n"
_IMAP_STOP = b"* BYE [UNAVAILABLE] Server shutting down\r\n"
_POP3_BUSY = b"-ERR [SYS/TEMP] Too many connections from your address\r\n"
_POP3_STOP = b"-ERR [SYS/TEMP] Server shutting down\r\n"
_SIEVE_BUSY = b'BYE "Too many connections from your address"\r\n'
_SIEVE_STOP = b'BYE "Server shutting down"\r\n'
# ... when the server as a whole has limits.max_connections open.
_FULL = {
    "smtp": b"421 4.7.0 Too many connections to this server, try again later\r\n",
    "imap": b"* BYE [UNAVAILABLE] Too many connections to this server, try again later\r\n",
    "pop3": b"-ERR [SYS/TEMP] Too many connections to this server, try again later\r\n",
    "managesieve": b'BYE "Too many connections to this server, try again later"\r\n',
}

# listener name: (implicit TLS, answer when a client IP has too many connections, shutdown notice)
LISTENERS: dict[str, tuple[bool, bytes, bytes]] = {
    "smtp": (False, _SMTP_BUSY, _SMTP_STOP),
    "submission": (False, _SMTP_BUSY, _SMTP_STOP),
    "submissions": (True, _SMTP_BUSY, _SMTP_STOP),
    "imap": (False, _IMAP_BUSY, _IMAP_STOP),
    "imaps": (True, _IMAP_BUSY, _IMAP_STOP),
    "pop3": (False, _POP3_BUSY, _POP3_STOP),
    "pop3s": (True, _POP3_BUSY, _POP3_STOP),
    "managesieve": (False, _SIEVE_BUSY, _SIEVE_STOP),
}

#: The protocol each listener speaks (its ALPN id: tls.ALPN_IDS).
PROTOCOL_OF = {"smtp": "smtp", "submission": "smtp", "submissions": "smtp", "imap": "imap", "imaps": "imap",
               "pop3": "pop3", "pop3s": "pop3", "managesieve": "managesieve"}


@dataclass
class Postoffice:
    config: Config
    store: Store
    bus: EventBus
    auth: Authenticator
    sessions: SessionRegistry
    accounts: AccountService
    tls: ssl.SSLContext | None = None
    # One TLS context per protocol, each enforcing its ALPN id (tls.py; RFC 7301, ALPACA).
    tls_contexts: dict[str, ssl.SSLContext] = field(default_factory=dict)
    servers: dict[str, Listening] = field(default_factory=dict)
    bound: dict[str, HostPort] = field(default_factory=dict)
    _web: Any = None
    _web_task: Any = None
    _protocol_servers: dict[str, Any] = field(default_factory=dict)
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    # -- issue #7: outbound queue worker, inbound SPF/DKIM/DMARC checker, DKIM signer --
    worker: Any = None
    inbound_checker: Any = None
    dkim_signer: Any = None
    #: Issue 15: the rspamd client ([filter] rspamd; None when filtering is off).
    spam_filter: Any = None
    virus_scanner: Any = None  # clamd ([filter] clamav)
    spam_learner: Any = None  # rspamd's controller ([filter] controller): Junk learning
    metrics: Metrics | None = None  # /metrics (services/metrics.py)
    #: Octets of messages being received, over every connection of this process (SMTP DATA and
    #: BDAT, IMAP literals): servers/inflight.py.
    inflight: InflightBudget = field(default_factory=lambda: InflightBudget(0))
    #: Hosted domains whose names TLS recognises by SNI (tls.py), kept current while running.
    hosted: HostedDomains = field(default_factory=HostedDomains)
    #: A worker's view of the connection counts of every worker (servers/connshare.py).
    connection_counts: Any = None

    @classmethod
    def open(cls, config: Config, node: str | None = None) -> Postoffice:
        """Open the store and build the services (no listeners yet). Call inside the loop.
        ``node``: this process's name on the event bus (a worker's)."""
        bus = EventBus(asyncio.get_running_loop(), node)
        store = Store.open(config.data_path, config.database_target, on_commit=bus.publish_threadsafe,
                           spool_dir=config.run_path / "spool")
        auth = Authenticator(store, config.security)
        sessions = SessionRegistry(store, bus)
        bus.listeners.append(sessions.on_event)
        # -- metrics: counters fed by the bus, the authenticator and the listeners --
        metrics = Metrics(store, sessions)
        bus.listeners.append(metrics.on_event)
        auth.observe = metrics.auth_result
        office = cls(config, store, bus, auth, sessions, AccountService(store, auth), metrics=metrics,
                     inflight=InflightBudget(config.limits.max_inflight_bytes // cpu.workers()))

        def share_login(remote_ip: str, username: str, ok: bool) -> None:
            if bus.shared:  # throttles count every worker's failures
                bus.publish([LoginResult(bus.node, remote_ip, username, ok)])
        auth.share = share_login
        bus.listeners.append(office._on_event)
        return office

    def _on_event(self, event: Any) -> None:
        """What this process takes from the other workers' events (the rest: each service's
        own listener)."""
        if isinstance(event, LoginResult) and event.node != self.bus.node:
            self.auth.note_remote(event.remote_ip, event.username, event.ok)
        elif isinstance(event, QueueWork) and self.worker is not None:
            self.worker.wake()

    def queue_changed(self) -> None:
        """Something was queued for outbound delivery: wake the queue runner, in this process
        or (a worker without it) in the one that has it."""
        if self.worker is not None:
            self.worker.wake()
        elif self.bus.shared:
            self.bus.publish([QueueWork(self.bus.node)])

    async def join_bus(self, transport: Any) -> None:
        """Share events, locks and the session registry with the other worker processes."""
        await self.bus.attach(transport)
        self.bus.publish([SessionsWanted(self.bus.node)])

    def tls_context(self, listener: str) -> ssl.SSLContext | None:
        """The TLS context for a listener (``imaps``, ``submission``...) or a protocol, for
        implicit TLS and STARTTLS: it refuses a client offering only other protocols' ALPN ids."""
        protocol = PROTOCOL_OF.get(listener, listener)
        return self.tls_contexts.get(protocol, self.tls)

    def protocol_server(self, name: str) -> Any:
        from .servers.imap import ImapServer
        from .servers.pop3 import Pop3Server
        from .servers.smtp import SmtpServer

        if name in ("smtp", "submission", "submissions"):
            return SmtpServer(self, name)
        if name == "managesieve":
            from .servers.managesieve import ManageSieveServer
            return ManageSieveServer(self)
        # One IMAP server and one POP3 server behind both of their ports: the shared mailbox
        # indexes and the POP3 maildrop locks must be the same for 143 and 993, 110 and 995.
        protocol = "imap" if name in ("imap", "imaps") else "pop3"
        if protocol not in self._protocol_servers:
            self._protocol_servers[protocol] = ImapServer(self) if protocol == "imap" else Pop3Server(self)
        return self._protocol_servers[protocol]

    async def start(self, sockets: dict[str, socket.socket] | None = None, singletons: bool = True) -> None:
        """Bind every configured listener. Raises ConfigError naming a port that is taken.

        ``sockets``: listen on these already bound sockets (name -> socket) instead, and only
        on those (a worker; the supervisor hands the ``http`` one to worker 0 only).
        ``singletons``: run the queue runner, the panel and garbage collection here."""
        domains = [d.name for d in await self.store.list_domains()]
        self.hosted.replace(domains)
        self.tls = server_context(self.config, domains, hosted=self.hosted)
        self.tls_contexts = {protocol: server_context(self.config, domains, protocol, self.hosted)
                             for protocol in sorted(set(PROTOCOL_OF.values()))}
        if singletons:
            self._start_outbound()  # issue #7
        else:
            self._start_mail_hooks()
        limiter = ConnectionLimiter(self.config.limits.max_connections_per_ip, self.config.limits.max_connections,
                                    self.connection_counts)
        try:
            for name, addr in self.config.listen.addresses().items():
                sock = None
                if sockets is not None:
                    sock = sockets.get(name)
                    if sock is None:
                        continue
                if name == "http":
                    if singletons:
                        await self._start_web(addr, sock)
                    continue
                implicit, refuse, shutdown = LISTENERS[name]
                spec = ListenerSpec(name, addr.host, addr.port, implicit, refuse, shutdown,
                                    _FULL.get(PROTOCOL_OF.get(name, ""), b""))
                listening = await serve(spec, self.protocol_server(name), self.tls_context(name), limiter,
                                        on_accept=self.metrics.connection if self.metrics else None, sock=sock)
                self.servers[name] = listening
                self.bound[name] = HostPort(addr.host, listening.port)
        except OSError as exc:
            await self.stop()
            raise ConfigError(f"cannot listen on {addr} for {name}: {exc.strerror or exc}") from None
        if not self.bus.shared:
            # With a shared bus the CLI announces its changes there (cli.py); and every other
            # worker's commit would change the data version anyway.
            self._tasks.append(asyncio.ensure_future(self._watch_other_processes()))
        self._tasks.append(asyncio.ensure_future(self._follow_hosted_domains()))
        if singletons:
            self._tasks.append(asyncio.ensure_future(self._collect_garbage()))
        # The message parser's worker processes start now, in a thread, not on first use on
        # the event loop (postoffice/cpu.py).
        self._tasks.append(asyncio.ensure_future(asyncio.to_thread(cpu.warm)))
        if self.config.inbound.verify:  # DMARC's public suffix list: parsed once, not on the loop
            from .authn.orgdomain import load_public_suffix_list
            self._tasks.append(asyncio.ensure_future(asyncio.to_thread(load_public_suffix_list)))

    async def _watch_other_processes(self, interval: float = 2.0) -> None:
        """The CLI writes to the same database from another process; when it commits, re-check
        the open sessions so a protocol switched off with `postoffice account set` takes effect."""
        seen = await self.store.data_version()
        while True:
            await asyncio.sleep(interval)
            try:
                version = await self.store.data_version()
            except Exception:  # noqa: BLE001 - the store is closing
                return
            if version != seen:
                seen = version
                self.bus.publish([AccountChanged(None)])

    async def _follow_hosted_domains(self, interval: float = 3.0) -> None:
        """Keep `hosted` current: a domain added in the panel, the API, the CLI or on another
        worker is recognised by SNI within seconds, before the certificate is regenerated."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.hosted.replace(d.name for d in await self.store.list_domains())
            except Exception:  # noqa: BLE001 - the store is closing
                return

    async def _collect_garbage(self, interval: float = 3600.0) -> None:
        """Remove message files nothing references any more (after expunges), hourly."""
        while True:
            await asyncio.sleep(interval)
            try:
                removed = await self.store.collect_garbage()
                if removed:
                    log.info("removed %d unreferenced message files", removed)
            except Exception:  # noqa: BLE001 - retried next hour
                log.exception("garbage collection failed")

    async def _start_web(self, addr: HostPort, sock: socket.socket | None = None) -> None:
        import uvicorn

        from .web.app import create_app

        class EmbeddedServer(uvicorn.Server):
            def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
                return contextlib.nullcontext()  # the Postoffice process handles signals

        if sock is None:
            family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((addr.host, addr.port))
            sock.listen(1024)
        sock.setblocking(False)
        self.bound["http"] = HostPort(addr.host, sock.getsockname()[1])
        app = create_app(self)
        config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False,
                                proxy_headers=False, server_header=False)
        self._web = EmbeddedServer(config)
        task = asyncio.ensure_future(self._web.serve(sockets=[sock]))
        self._web_task = task
        self._tasks.append(task)
        while not self._web.started and not task.done():
            await asyncio.sleep(0.01)
        if task.done():
            task.result()

    def _start_mail_hooks(self) -> None:
        """Issue #7: the mail-authentication hooks (every worker receives and submits mail)."""
        from .services.mailauth import DkimSigner, InboundChecker

        if self.inbound_checker is None:
            self.inbound_checker = InboundChecker(self.config)
        if self.dkim_signer is None:
            self.dkim_signer = DkimSigner(self.store, self.config)
        if self.spam_filter is None and self.config.filter.rspamd:
            from .services.spamfilter import RspamdClient

            self.spam_filter = RspamdClient(self.config.filter.rspamd, timeout=self.config.filter.timeout,
                                            mta_name=self.config.hostname)
        if self.virus_scanner is None and self.config.filter.clamav:
            from .services.antivirus import ClamdClient

            self.virus_scanner = ClamdClient(self.config.filter.clamav, timeout=self.config.filter.timeout)
        if self.spam_learner is None and self.config.filter.controller:
            from .services.spamfilter import RspamdLearner

            self.spam_learner = RspamdLearner(self.config.filter.controller, self.config.filter.controller_password,
                                              timeout=self.config.filter.timeout)

    def _start_outbound(self) -> None:
        """Issue #7: the queue worker ([outbound] enabled) and the mail-authentication hooks."""
        from .outbound.worker import QueueWorker

        self._start_mail_hooks()
        if self.config.outbound.enabled and self.worker is None:
            # With PostgreSQL other nodes' runners share the queue: their claims are not stale.
            self.worker = QueueWorker(self.store, self.config, sole_runner=self.config.postgres_url is None)
            self.worker.start()

    async def stop(self) -> None:
        if self.worker is not None:  # issue #7: stop claiming queue entries first
            with contextlib.suppress(Exception):
                await self.worker.stop()
            self.worker = None
        for listening in self.servers.values():
            listening.server.close()  # stop accepting first
        for session in self.sessions.local():
            if session.terminate is not None:
                with contextlib.suppress(Exception):
                    result = session.terminate("the server is shutting down")
                    if asyncio.iscoroutine(result):
                        await asyncio.wait_for(result, 2)
        for name, listening in self.servers.items():
            await listening.close(LISTENERS[name][2])  # also the sessions that never logged in
        self.servers.clear()
        if self._web is not None:
            self._web.should_exit = True
        for task in self._tasks:
            if task is not self._web_task:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 5)
        self._tasks.clear()
        self._web = None
        if self.spam_filter is not None:
            with contextlib.suppress(Exception):
                await self.spam_filter.close()
        if self.spam_learner is not None:
            with contextlib.suppress(Exception):
                await self.spam_learner.close()

    def close(self) -> None:
        self.store.close()
