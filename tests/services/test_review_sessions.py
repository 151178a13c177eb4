"""Review: withdrawing a protocol ends every session of the account, even if one of them fails."""

from __future__ import annotations

import asyncio

from postoffice.services.sessions import OpenSession, SessionRegistry
from postoffice.store import AccountChanged


async def test_one_failing_terminate_does_not_spare_the_other_sessions(store) -> None:
    await store.add_domain("example.com")
    account = await store.add_account("alice@example.com", "x")
    registry = SessionRegistry(store)
    ended: list[str] = []

    def broken(reason: str) -> None:
        raise ConnectionResetError("peer went away")

    async def fine(reason: str) -> None:
        ended.append(reason)

    registry.add(OpenSession("imap", account.id, account.address, "192.0.2.1", True, 993, since=1.0,
                             terminate=broken))
    registry.add(OpenSession("imap", account.id, account.address, "192.0.2.2", True, 993, since=2.0,
                             terminate=fine))
    await store.update_account(account.address, imap_enabled=0)
    registry.on_event(AccountChanged(account.id, account.domain_id))
    await asyncio.gather(*registry._tasks, return_exceptions=True)
    assert ended and "IMAP is disabled" in ended[0]
    assert registry.for_account(account.id) == []


def test_sessions_by_account_follow_every_open_and_close() -> None:
    """for_account (what the per-user-and-IP limit counts at every login) is an index kept in
    step with this process's sessions and the other workers' announcements."""
    from types import SimpleNamespace

    from postoffice.services.events import NodeGone, SessionClosed, SessionOpened

    bus = SimpleNamespace(node="me", shared=True, publish=lambda events: None)
    registry = SessionRegistry(None, bus)  # type: ignore[arg-type]
    mine = registry.add(OpenSession("imap", 1, "a@example.com", "192.0.2.1", True, 993, since=3.0))
    registry.add(OpenSession("imap", 2, "b@example.com", "192.0.2.1", True, 993, since=1.0))

    def opened(node: str, ident: int, account: int, since: float) -> SessionOpened:
        return SessionOpened(node, ident, "pop3", account, "x@example.com", "192.0.2.9", True, 995, since, "", "")
    registry.on_event(opened("w1", 7, 1, 2.0))
    registry.on_event(opened("w2", 8, 1, 1.0))
    registry.on_event(opened("w2", 8, 1, 1.0))  # announced again: still one
    assert [(s.node, s.id) for s in registry.for_account(1)] == [("w2", 8), ("w1", 7), ("", mine.id)]
    registry.on_event(SessionClosed("w1", 7))
    registry.on_event(NodeGone("w2"))
    assert registry.for_account(1) == [mine]
    registry.remove(mine)
    registry.remove(mine)  # twice: nothing more happens
    assert registry.for_account(1) == [] and len(registry.for_account(2)) == 1
    assert registry._by_account.keys() == {2}  # nothing left behind for a closed account
