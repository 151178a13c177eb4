"""Junk thresholds and sender lists per domain and per address (migration 17), on SQLite and
PostgreSQL."""

from __future__ import annotations

from postoffice.store import Store


async def test_thresholds_lists_and_policies(store: Store) -> None:
    domain = await store.add_domain("example.com")
    alice = await store.add_account("alice@example.com", "x")
    bob = await store.add_account("bob@example.com", "x")
    assert await store.spam_threshold(domain_id=domain.id) is None
    await store.set_spam_threshold(7.5, domain_id=domain.id)
    await store.set_spam_threshold(12.0, account_id=alice.id)
    await store.set_spam_threshold(13.0, account_id=alice.id)  # replaced, not added
    assert await store.spam_threshold(account_id=alice.id) == 13.0
    assert await store.add_sender_entry("block", "spammer.example", limit=2, domain_id=domain.id)
    assert await store.add_sender_entry("block", "spammer.example", limit=2, domain_id=domain.id)  # already there
    assert await store.add_sender_entry("block", "*.bulk.example", limit=2, domain_id=domain.id)
    assert not await store.add_sender_entry("block", "third.example", limit=2, domain_id=domain.id)  # full
    assert await store.add_sender_entry("allow", "news@spammer.example", limit=2, account_id=alice.id)
    assert await store.sender_lists(domain_id=domain.id) == {"allow": [], "block": ["*.bulk.example",
                                                                                    "spammer.example"]}
    policies = await store.spam_policies([alice.id, bob.id])
    assert policies[alice.id] == (True, 13.0, {"allow": frozenset({"news@spammer.example"}), "block": frozenset()},
                                  {"allow": frozenset(), "block": frozenset({"spammer.example", "*.bulk.example"})})
    assert policies[bob.id][:2] == (True, 7.5) and policies[bob.id][2] == {"allow": frozenset(), "block": frozenset()}
    assert await store.remove_sender_entry("block", "spammer.example", domain_id=domain.id)
    assert not await store.remove_sender_entry("block", "spammer.example", domain_id=domain.id)
    await store.set_spam_threshold(None, account_id=alice.id)
    await store.set_spam_filter(False, account_id=bob.id)
    policies = await store.spam_policies([alice.id, bob.id])
    assert policies[alice.id][1] == 7.5 and policies[bob.id][0] is False
    await store.remove_domain("example.com")  # the settings go with the domain and its addresses
    assert await store.spam_policies([alice.id]) == {}
