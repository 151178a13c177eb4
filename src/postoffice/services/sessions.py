"""Open protocol sessions: who is connected now, and ending them when access is withdrawn.

Every server registers each authenticated session here. The panel's "Connected devices" view
lists them; when an account's switches or its domain policy change (an `AccountChanged` event
from the store), every open session of that account is re-checked with the protocol-access
decision and the ones no longer allowed are told to close, with the reason (IMAP sends
``* BYE [ALERT] <reason>`` and POP3 ``-ERR [AUTH] <reason>``).

Several worker processes: each registry holds its own process's sessions (``local``) and a
mirror of the others' (``all`` lists both), kept by `SessionOpened` / `SessionClosed` events on
the shared event bus. A process that (re)joins asks the others to announce theirs
(`SessionsWanted`); one that leaves is forgotten (`NodeGone`, sent by the supervisor's hub).
The `AccountChanged` event reaches every process, and each ends its own sessions, so switching
a protocol off ends that address's sessions on every worker.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..store import AccountChanged, Store
from .access import protocol_access
from .events import NodeGone, SessionClosed, SessionOpened, SessionsWanted

log = logging.getLogger(__name__)
_ids = itertools.count(1)


@dataclass
class OpenSession:
    protocol: str  # imap | pop3 | smtp
    account_id: int
    address: str
    remote: str
    tls: bool
    port: int
    since: float = field(default_factory=time.time)
    client_id: str = ""  # IMAP ID name/version, when the client sent one
    id: int = field(default_factory=lambda: next(_ids))
    # Called with a reason to end the session; set by the server.
    terminate: Callable[[str], Awaitable[None] | None] | None = None
    node: str = ""  # the worker process that holds it ("" = this one)
    app_password: str = ""  # the name of the app password it logged in with ("" = main password)
    app_password_id: int | None = None


class SessionRegistry:
    def __init__(self, store: Store, bus: Any = None) -> None:
        self.store = store
        self.bus = bus
        self._sessions: dict[int, OpenSession] = {}
        self._remote: dict[tuple[str, int], OpenSession] = {}
        # Both of the above by account: a login counts its address's sessions (the per-user
        # and IP limit), which must not cost a pass over a thousand others in a login storm.
        self._by_account: dict[int, dict[tuple[str, int], OpenSession]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- this process's sessions -----------------------------------------------------------
    def add(self, session: OpenSession) -> OpenSession:
        self._sessions[session.id] = session
        self._index(("", session.id), session)
        self._announce(session)
        return session

    def changed(self, session: OpenSession) -> None:
        """A field of a registered session changed (the IMAP ID arrived after login)."""
        if self._sessions.get(session.id) is session:
            self._announce(session)

    def remove(self, session: OpenSession) -> None:
        if self._sessions.pop(session.id, None) is None:
            return
        self._unindex(("", session.id), session.account_id)
        if self._shared:
            self.bus.publish([SessionClosed(self.bus.node, session.id)])

    def is_open(self, session: OpenSession | None) -> bool:
        """True while ``session`` is registered here (not yet ended or withdrawn)."""
        return session is not None and self._sessions.get(session.id) is session

    def local(self) -> list[OpenSession]:
        return sorted(self._sessions.values(), key=lambda s: s.since)

    @property
    def _shared(self) -> bool:
        return self.bus is not None and self.bus.shared

    def _announce(self, session: OpenSession) -> None:
        if self._shared:
            self.bus.publish([SessionOpened(
                self.bus.node, session.id, session.protocol, session.account_id, session.address,
                session.remote, session.tls, session.port, session.since, session.client_id,
                session.app_password)])

    # -- every worker's sessions -----------------------------------------------------------
    def for_account(self, account_id: int) -> list[OpenSession]:
        return sorted(self._by_account.get(account_id, {}).values(), key=lambda s: s.since)

    def _index(self, key: tuple[str, int], session: OpenSession) -> None:
        self._by_account.setdefault(session.account_id, {})[key] = session

    def _unindex(self, key: tuple[str, int], account_id: int) -> None:
        of_account = self._by_account.get(account_id)
        if of_account is not None:
            of_account.pop(key, None)
            if not of_account:
                del self._by_account[account_id]

    def all(self) -> list[OpenSession]:
        return sorted([*self._sessions.values(), *self._remote.values()], key=lambda s: s.since)

    def _mirror(self, event: Any) -> None:
        if isinstance(event, SessionsWanted):
            # Ours too: a transport that reconnected asks (the others may have taken this
            # process for gone meanwhile and forgotten its sessions).
            for session in self._sessions.values():
                self._announce(session)
            return
        if event.node == getattr(self.bus, "node", None):
            return  # our own announcement, heard back
        if isinstance(event, SessionOpened):
            key = (event.node, event.id)
            self._forget(key)  # announced again (changed, or asked for)
            self._remote[key] = session = OpenSession(
                protocol=event.protocol, account_id=event.account_id, address=event.address,
                remote=event.remote, tls=event.tls, port=event.port, since=event.since,
                client_id=event.client_id, id=event.id, node=event.node, app_password=event.app_password)
            self._index(key, session)
        elif isinstance(event, SessionClosed):
            self._forget((event.node, event.id))
        elif isinstance(event, NodeGone):
            for key in [k for k in self._remote if k[0] == event.node]:
                self._forget(key)

    def _forget(self, key: tuple[str, int]) -> None:
        gone = self._remote.pop(key, None)
        if gone is not None:
            self._unindex(key, gone.account_id)

    def on_event(self, event: Any) -> None:
        """Event-bus listener: re-check access after an account or domain change; mirror the
        other workers' sessions."""
        if isinstance(event, (SessionOpened, SessionClosed, NodeGone, SessionsWanted)):
            self._mirror(event)
        elif isinstance(event, AccountChanged):
            affected = [s for s in self._sessions.values()
                        if event.account_id is None or s.account_id == event.account_id]
            if affected:
                task = asyncio.ensure_future(self._recheck(affected))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _recheck(self, sessions: list[OpenSession]) -> None:
        for session in sessions:
            account = await self.store.get_account_by_id(session.account_id)
            if account is None:
                await self._terminate(session, "this address has been removed")
                continue
            domain = await self.store.get_domain_by_id(account.domain_id)
            if domain is None:
                await self._terminate(session, "this address has been removed")
                continue
            decision = protocol_access(account, domain, session.protocol)
            if not decision.allowed:
                await self._terminate(session, decision.reason)
                continue
            if session.app_password_id is not None:
                # Revoked (or expired) app password: its sessions end (issue 16).
                apps = {a.id: a for a in await self.store.list_app_passwords(account.id)}
                app = apps.get(session.app_password_id)
                if app is None or app.expired():
                    await self._terminate(session, f"the app password \u201c{session.app_password}\u201d was revoked"
                                          if app is None else f"the app password \u201c{app.name}\u201d has expired")

    async def _terminate(self, session: OpenSession, reason: str) -> None:
        log.info("ending %s session of %s: %s", session.protocol, session.address, reason)
        self.remove(session)
        if session.terminate is not None:
            try:
                result = session.terminate(reason)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:  # noqa: BLE001 - the other sessions must still be ended
                log.exception("ending %s session of %s failed", session.protocol, session.address)
