"""The panel's rules and vacation settings written as Sieve, parsed and run."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from postoffice.sieve import Discard, FileInto, Keep, MessageFacts, Redirect, Vacation, evaluate, parse
from postoffice.sieve.rules import Filters, Rule, RuleError, VacationSettings, from_script, to_script

MSG = (b"From: Shop <news@shop.example>\r\nTo: alice@example.com\r\nSubject: Big \"sale\" \\ today\r\n"
       b"List-Id: <offers.shop.example>\r\n\r\nhi\r\n")


def run(filters: Filters, raw: bytes = MSG, now: datetime | None = None) -> list[object]:
    script = parse(to_script(filters))
    facts = MessageFacts.from_bytes(raw, envelope_from="news@shop.example", envelope_to="alice@example.com",
                                    user_addresses=("alice@example.com",),
                                    now=now or datetime(2026, 12, 4, tzinfo=timezone.utc))
    return evaluate(script, facts).actions


def test_each_action() -> None:
    move = Rule("subject", "contains", 'big "sale" \\', "move", "Offers")
    assert run(Filters((move,))) == [FileInto("Offers")]
    read = Rule("from", "contains", "shop.example", "read")
    assert run(Filters((read,))) == [Keep(("\\Seen",))]
    fwd = Rule("to", "is", "alice@example.com", "forward", "me@elsewhere.example")
    assert run(Filters((fwd,))) == [Redirect("me@elsewhere.example", copy=True), Keep()]
    header = Rule("header", "contains", "offers", "discard", header="List-Id")
    assert run(Filters((header,))) == [Discard()]
    assert run(Filters((Rule("subject", "is", "other", "discard"),))) == [Keep()]


def test_vacation_window() -> None:
    vac = VacationSettings(True, "Away", "Back on the 10th.\nRegards", "2026-12-01", "2026-12-09", 3)
    personal = MSG.replace(b"List-Id: <offers.shop.example>\r\n", b"")
    inside = [a for a in run(Filters((), vac), personal) if isinstance(a, Vacation)]
    assert inside and inside[0].days == 3 and inside[0].subject == "Away"
    assert inside[0].reason == "Back on the 10th.\nRegards"
    after = run(Filters((), vac), personal, now=datetime(2026, 12, 10, tzinfo=timezone.utc))
    assert not [a for a in after if isinstance(a, Vacation)]
    assert not [a for a in run(Filters((), vac)) if isinstance(a, Vacation)]  # list mail: never


def test_round_trip_and_validation() -> None:
    filters = Filters((Rule("subject", "contains", "x", "move", "A"),), VacationSettings(True, "", "t", "", "", 7))
    assert from_script(to_script(filters)) == filters
    assert from_script('require "fileinto";') is None
    with pytest.raises(RuleError) as err:
        to_script(Filters((Rule("subject", "contains", "x", "forward", "not an address"),)))
    assert err.value.field == "rules.0.target"
    with pytest.raises(RuleError):
        to_script(Filters((), VacationSettings(True, "", "t", "2026-12-09", "2026-12-01")))
    with pytest.raises(RuleError):
        to_script(Filters((Rule("subject", "contains", "a\nb", "discard"),)))
