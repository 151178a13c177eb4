"""Review: the failure log must forget keys that no longer matter (memory stays bounded)."""

from __future__ import annotations

from postoffice.services.auth import FailureLog


def test_failure_log_forgets_keys_never_seen_again() -> None:
    log = FailureLog(window=60)
    # A password sprayer: every attempt names another (made-up) user, from another address.
    for i in range(10_000):
        log.add(f"user:nobody{i}@example.com", now=float(i % 10))
    assert log.count("user:nobody5@example.com", now=10.0) == 1  # still counted within the window
    # Long after the window, one more failure: the old keys are dropped, not kept forever.
    log.add("ip:192.0.2.1", now=1000.0)
    log.add("ip:192.0.2.1", now=1001.0)
    assert len(log._times) <= 2
    assert log.count("ip:192.0.2.1", now=1001.0) == 2
