"""The protocol-access decision over every combination of switch and domain policy."""

from __future__ import annotations

import itertools

import pytest

from postoffice.services.access import protocol_access
from postoffice.store import Account, Domain


def account(imap: bool, pop3: bool, smtp: bool) -> Account:
    return Account(1, 1, "a@example.com", "", "h", 0.0, imap, pop3, smtp, 0, "", "delete", None, 0.0)


def domain(policy: str) -> Domain:
    return Domain(1, "example.com", policy, None, 0.0)


def expected(switches: dict[str, bool], policy: str, protocol: str) -> bool:
    if protocol != "smtp" and policy == "imap-only":
        return protocol == "imap"
    if protocol != "smtp" and policy == "pop3-only":
        return protocol == "pop3"
    return switches[protocol]


@pytest.mark.parametrize("imap,pop3,smtp", list(itertools.product([True, False], repeat=3)))
@pytest.mark.parametrize("policy", ["any", "imap-only", "pop3-only"])
@pytest.mark.parametrize("protocol", ["imap", "pop3", "smtp"])
def test_every_combination(imap: bool, pop3: bool, smtp: bool, policy: str, protocol: str) -> None:
    decision = protocol_access(account(imap, pop3, smtp), domain(policy), protocol)
    assert decision.allowed == expected({"imap": imap, "pop3": pop3, "smtp": smtp}, policy, protocol)
    if not decision.allowed:
        assert decision.reason.startswith(protocol.upper()) and "disabled" in decision.reason
        if policy != "any" and protocol != "smtp":
            assert "example.com" in decision.reason and "only" in decision.reason


def test_reason_names_the_administrator() -> None:
    decision = protocol_access(account(True, False, True), domain("any"), "pop3")
    assert decision.reason == "POP3 is disabled for this address by its administrator"


def test_unknown_protocol_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        protocol_access(account(True, True, True), domain("any"), "gopher")
