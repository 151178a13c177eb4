"""Account management rules shared by the CLI, the panel and the API."""

from __future__ import annotations

import pytest

from postoffice.services.accounts import AccountService, UserError
from postoffice.services.auth import Authenticator


@pytest.fixture
async def svc(store, config) -> AccountService:
    s = AccountService(store, Authenticator(store, config.security))
    await s.add_domain("example.com")
    await s.add_account("alice@example.com", "password1")
    return s


@pytest.mark.parametrize("name", ["-bad.com", "no_underscore.com", "localhost", "a..b", "x" * 64 + ".com", ""])
async def test_invalid_domains(svc: AccountService, name: str) -> None:
    with pytest.raises(UserError) as exc:
        await svc.add_domain(name)
    assert exc.value.field == "name"


async def test_unicode_domain_is_stored_as_a_label(svc: AccountService) -> None:
    d = await svc.add_domain("Bücher.Example")
    assert d.name == "xn--bcher-kva.example"


async def test_duplicates_and_case_folding(svc: AccountService) -> None:
    with pytest.raises(UserError, match="already exists"):
        await svc.add_account("ALICE@example.com", "password2")
    with pytest.raises(UserError, match="already exists"):
        await svc.add_domain("EXAMPLE.com")


async def test_bad_addresses_and_passwords(svc: AccountService) -> None:
    with pytest.raises(UserError, match="not a valid email"):
        await svc.add_account("not an address", "password1")
    with pytest.raises(UserError, match="at least"):
        await svc.add_account("bob@example.com", "short")
    with pytest.raises(UserError, match="not hosted"):
        await svc.add_account("bob@elsewhere.org", "password1")


async def test_alias_loops_are_refused(svc: AccountService) -> None:
    await svc.add_alias("a@example.com", ["b@example.com"])
    await svc.add_alias("b@example.com", ["c@example.com"])
    with pytest.raises(UserError, match="loop"):
        await svc.add_alias("c@example.com", ["a@example.com"])
    with pytest.raises(UserError, match="loop"):
        await svc.add_alias("self@example.com", ["self@example.com"])


async def test_quota_below_use_is_refused(svc: AccountService, store) -> None:
    account = await store.get_account("alice@example.com")
    await store.deliver([(account.id, "INBOX")], b"Subject: x\r\n\r\n" + b"z" * 5000)
    with pytest.raises(UserError, match="below what the mailbox already uses"):
        await svc.update("alice@example.com", quota_bytes=1000)
    updated = await svc.update("alice@example.com", quota_bytes=100000)
    assert updated.quota_bytes == 100000


async def test_switches_and_policies(svc: AccountService) -> None:
    a = await svc.update("alice@example.com", imap=False, pop3_policy="archive")
    assert not a.imap_enabled and a.pop3_policy == "archive"
    with pytest.raises(UserError):
        await svc.update("alice@example.com", pop3_policy="shred")
    with pytest.raises(UserError):
        await svc.set_domain_policy("example.com", "smtp-only")
