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
