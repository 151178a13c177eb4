"""The shared authentication function: hashes, access decision, throttling, credential cache."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from postoffice.services.accounts import AccountService
from postoffice.services.auth import Authenticator, AuthStatus


async def setup(store, config, **security):
    sec = dataclasses.replace(config.security, **security)
    auth = Authenticator(store, sec)
    svc = AccountService(store, auth)
    await svc.add_domain("example.com")
    await svc.add_account("alice@example.com", "correct horse")
    return auth, svc


async def test_password_is_argon2id_and_login_works(store, config) -> None:
    auth, svc = await setup(store, config)
    account = await store.get_account("alice@example.com")
    assert account.password_hash.startswith("$argon2id$")
    result = await auth.authenticate("Alice@Example.COM", "correct horse", "192.0.2.1", "imap")
    assert result.ok and result.account.address == "alice@example.com"
    bad = await auth.authenticate("alice@example.com", "wrong", "192.0.2.1", "imap")
    assert bad.status is AuthStatus.BAD_CREDENTIALS
    unknown = await auth.authenticate("nobody@example.com", "x", "192.0.2.1", "imap")
    assert unknown.status is AuthStatus.BAD_CREDENTIALS


async def test_protocol_switch_refuses_with_reason(store, config) -> None:
    auth, svc = await setup(store, config)
    await svc.update("alice@example.com", pop3=False)
    result = await auth.authenticate("alice@example.com", "correct horse", "192.0.2.1", "pop3")
    assert result.status is AuthStatus.REFUSED
    assert result.reason == "POP3 is disabled for this address by its administrator"
    assert (await auth.authenticate("alice@example.com", "correct horse", "192.0.2.1", "imap")).ok
    await svc.set_domain_policy("example.com", "pop3-only")
    assert (await auth.authenticate("alice@example.com", "correct horse", "192.0.2.1", "pop3")).ok
    refused = await auth.authenticate("alice@example.com", "correct horse", "192.0.2.1", "imap")
    assert refused.status is AuthStatus.REFUSED and "POP3 only" in refused.reason


async def test_repeated_failures_are_slowed_then_blocked(store, config) -> None:
    auth, _ = await setup(store, config, throttle_delay_after=2, throttle_max_delay=0.4, throttle_block_after=6)
    timings = []
    for _ in range(5):
        start = time.monotonic()
        await auth.authenticate("alice@example.com", "wrong", "198.51.100.7", "imap")
        timings.append(time.monotonic() - start)
    assert timings[0] < 0.2 and timings[-1] >= 0.35, timings
    await auth.authenticate("alice@example.com", "wrong", "198.51.100.7", "imap")
    blocked = await auth.authenticate("alice@example.com", "correct horse", "198.51.100.7", "imap")
    assert blocked.status is AuthStatus.THROTTLED
    # the account is blocked from everywhere, too: a password-guessing botnet gains nothing
    other_ip = await auth.authenticate("alice@example.com", "correct horse", "203.0.113.9", "imap")
    assert other_ip.status is AuthStatus.THROTTLED


async def test_credential_cache_is_dropped_on_password_change(store, config) -> None:
    auth, svc = await setup(store, config)
    assert (await auth.authenticate("alice@example.com", "correct horse", "192.0.2.1", "imap")).ok
    assert (await auth.authenticate("alice@example.com", "correct horse", "192.0.2.1", "imap")).ok
    await svc.set_password("alice@example.com", "battery staple")
    assert not (await auth.authenticate("alice@example.com", "correct horse", "192.0.2.1", "imap")).ok
    assert (await auth.authenticate("alice@example.com", "battery staple", "192.0.2.1", "imap")).ok


def test_plaintext_login_rule(config) -> None:
    from postoffice.services.auth import password_login_allowed
    off = dataclasses.replace(config.security, allow_plaintext_auth=False, allow_plaintext_auth_loopback=False)
    loop = dataclasses.replace(off, allow_plaintext_auth_loopback=True)
    anywhere = dataclasses.replace(off, allow_plaintext_auth=True)
    assert password_login_allowed(off, tls=True, loopback=False)
    assert not password_login_allowed(off, tls=False, loopback=True)
    assert password_login_allowed(loop, tls=False, loopback=True)
    assert not password_login_allowed(loop, tls=False, loopback=False)
    assert password_login_allowed(anywhere, tls=False, loopback=False)


def test_authzid_rule() -> None:
    from postoffice.services.auth import authzid_permitted
    assert authzid_permitted("", "alice@example.com")
    assert authzid_permitted("Alice@EXAMPLE.com", "alice@example.com")
    assert authzid_permitted("alice@bücher.example", "alice@xn--bcher-kva.example")
    assert not authzid_permitted("bob@example.com", "alice@example.com")
    assert not authzid_permitted("alice", "alice@example.com")
    assert authzid_permitted("alice", "alice")  # not addresses: exactly the same text only


async def test_failures_wait_for_the_default_delay(store, config) -> None:
    """The shipped default (security.auth_failure_delay = 2 s, Dovecot's value), for an
    unknown user and a wrong password alike, while the right password is answered at once."""
    import asyncio

    from postoffice.config import Security
    assert Security().auth_failure_delay == 2.0
    auth, _ = await setup(store, config, auth_failure_delay=Security().auth_failure_delay)

    async def timed(user: str, password: str, ip: str) -> tuple[AuthStatus, float]:
        start = time.monotonic()
        result = await auth.authenticate(user, password, ip, "imap")
        return result.status, time.monotonic() - start

    (wrong, t_wrong), (unknown, t_unknown) = await asyncio.gather(
        timed("alice@example.com", "wrong", "192.0.2.10"), timed("nobody@example.com", "wrong", "192.0.2.11"))
    assert wrong is unknown is AuthStatus.BAD_CREDENTIALS
    assert 2.0 <= t_wrong < 3.0 and 2.0 <= t_unknown < 3.0, (t_wrong, t_unknown)
    ok, t_ok = await timed("alice@example.com", "correct horse", "192.0.2.10")
    assert ok is AuthStatus.OK and t_ok < 1.0, t_ok


async def test_an_outdated_hash_is_upgraded_after_a_login(store, config) -> None:
    old, _ = await setup(store, config, argon2_time_cost=1, argon2_memory_kib=1024)
    before = await store.get_account("alice@example.com")
    assert "m=1024,t=1" in before.password_hash
    auth = Authenticator(store, dataclasses.replace(config.security, argon2_time_cost=2, argon2_memory_kib=2048))
    assert (await auth.authenticate("alice@example.com", "correct horse", "192.0.2.1", "imap")).ok
    for _ in range(100):
        after = await store.get_account("alice@example.com")
        if after.password_hash != before.password_hash:
            break
        await asyncio.sleep(0.02)
    assert "m=2048,t=2" in after.password_hash
    assert after.password_changed_at == before.password_changed_at  # not a password change
    fresh = Authenticator(store, auth.security)  # no cached credentials: argon2 on the new hash
    assert (await fresh.authenticate("alice@example.com", "correct horse", "192.0.2.1", "imap")).ok
    assert (await fresh.authenticate("alice@example.com", "wrong", "192.0.2.1", "imap")).status \
        is AuthStatus.BAD_CREDENTIALS
