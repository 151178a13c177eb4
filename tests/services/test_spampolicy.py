"""The per-recipient spam settings' rules (services/spampolicy.py), without a server."""

from __future__ import annotations

import pytest

from postoffice.services.accounts import UserError
from postoffice.services.spamfilter import ACCEPT, JUNK, REJECT, TEMPFAIL, SpamVerdict
from postoffice.services.spampolicy import (
    SenderLists,
    SpamPolicy,
    clean_entry,
    clean_threshold,
    place,
    sender_keys,
)


@pytest.mark.parametrize("text, stored", [
    ("News@Shop.Example", "news@shop.example"),
    (" shop.example ", "shop.example"),
    ("@shop.example", "shop.example"),
    ("*.Shop.Example", "*.shop.example"),
    ("*.top", "*.top"),
    ("bücher.example", "xn--bcher-kva.example"),
])
def test_entries_are_stored_in_one_form(text: str, stored: str) -> None:
    assert clean_entry(text) == stored


@pytest.mark.parametrize("text", ["", "  ", "a b.example", "*", "*.", "shop..example", "x@", "@", "*.*.example",
                                  "sub.*.example", "[127.0.0.1]", "-bad-.example", "a@b@c.example"])
def test_bad_entries_are_refused_with_the_field(text: str) -> None:
    with pytest.raises(UserError) as refused:
        clean_entry(text)
    assert refused.value.field == "entry"


@pytest.mark.parametrize("value, score", [("", None), (None, None), ("7.5", 7.5), (3, 3.0), (" 12 ", 12.0)])
def test_thresholds(value: object, score: float | None) -> None:
    assert clean_threshold(value) == score


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf", "1001", True, [1]])
def test_bad_thresholds(value: object) -> None:
    with pytest.raises(UserError) as refused:
        clean_threshold(value)
    assert refused.value.field == "junk_score"


def test_sender_keys() -> None:
    assert sender_keys("A@Mx.Lists.Example") == {"a@mx.lists.example", "mx.lists.example", "*.lists.example",
                                                 "*.example"}
    assert sender_keys("") == set()


def test_precedence_address_before_domain_block_before_allow() -> None:
    both = SpamPolicy(own=SenderLists(allow=frozenset({"x.example"}), block=frozenset({"x.example"})))
    assert both.listing(["a@x.example"]) == "block"
    own_allow = SpamPolicy(own=SenderLists(allow=frozenset({"a@x.example"})),
                           domain=SenderLists(block=frozenset({"*.example"})))
    assert own_allow.listing(["a@x.example"]) == "allow"
    assert own_allow.listing(["b@x.example"]) == "block"
    assert own_allow.listing([""]) is None


ADD_HEADER = SpamVerdict("add header", score=8.0)
NO_ACTION = SpamVerdict("no action", score=3.0)


@pytest.mark.parametrize("threshold, verdict, decision", [
    (None, NO_ACTION, ACCEPT), (2.5, NO_ACTION, JUNK), (3.0, NO_ACTION, JUNK), (3.5, NO_ACTION, ACCEPT),
    (None, ADD_HEADER, JUNK), (10, ADD_HEADER, ACCEPT),
    (100, SpamVerdict("reject", score=15.0), REJECT), (1, SpamVerdict("greylist", score=5.0), TEMPFAIL),
    (1, SpamVerdict("unknown"), ACCEPT),
])
def test_threshold_moves_only_the_inbox_junk_line(threshold: float | None, verdict: SpamVerdict, decision: str) -> None:
    assert SpamPolicy(threshold=threshold).outcome([], verdict, "accept").decision == decision


def test_one_answer_for_the_transaction() -> None:
    blocker = SpamPolicy(own=SenderLists(block=frozenset({"bad.example"})))
    plain = SpamPolicy()
    gtube = SpamVerdict("reject", score=15.0)
    # everybody refuses: refused; blocked only when every refusal is a block
    assert place([1], {1: blocker}, ["x@bad.example"], None, "accept").blocked
    refused = place([1, 2], {1: blocker, 2: plain}, ["x@bad.example"], gtube, "accept")
    assert refused.refusal == REJECT and not refused.blocked
    # some accept: the refusing ones get Junk
    mixed = place([1, 2], {1: blocker, 2: plain}, ["x@bad.example"], NO_ACTION, "accept")
    assert mixed.refusal is None and mixed.mailboxes == {1: "Junk"} and mixed.junk
    # a temporary refusal wins over a permanent one: someone may take it later
    grey = SpamVerdict("greylist", score=5.0)
    assert place([1, 2], {1: blocker, 2: plain}, ["x@bad.example"], grey, "accept").refusal == TEMPFAIL
    # the filter down (tempfail configured) and someone with filtering off: INBOX, not Junk
    off = SpamPolicy(enabled=False)
    down = place([1, 2], {1: off, 2: plain}, ["x@ok.example"], SpamVerdict("unknown"), "tempfail")
    assert down.refusal is None and down.mailboxes == {}
    # no local account (a forwarding alias only): rspamd's verdict as it is
    assert place([], {}, ["x@ok.example"], gtube, "accept").refusal == REJECT
