"""Open protocol sessions: who is connected now, and ending them when access is withdrawn.

Every server registers each authenticated session here. The panel's "Connected devices" view
lists them; when an account's switches or its domain policy change (an `AccountChanged` event
from the store), every open session of that account is re-checked with the protocol-access
decision and the ones no longer allowed are told to close, with the reason (IMAP sends
``* BYE [ALERT] <reason>`` and POP3 ``-ERR [AUTH] <reason>``).
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


class SessionRegistry:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._sessions: dict[int, OpenSession] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def add(self, session: OpenSession) -> OpenSession:
        self._sessions[session.id] = session
        return session

    def remove(self, session: OpenSession) -> None:
        self._sessions.pop(session.id, None)

    def for_account(self, account_id: int) -> list[OpenSession]:
        return sorted((s for s in self._sessions.values() if s.account_id == account_id), key=lambda s: s.since)

    def all(self) -> list[OpenSession]:
        return sorted(self._sessions.values(), key=lambda s: s.since)

    def on_event(self, event: Any) -> None:
        """Event-bus listener: re-check access after an account or domain change."""
        if isinstance(event, AccountChanged):
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
