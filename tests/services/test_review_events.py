"""Review: closed subscriptions leave nothing behind in the bus."""

from __future__ import annotations

from postoffice.services.events import EventBus


def test_closed_subscriptions_do_not_accumulate() -> None:
    bus = EventBus()
    for mailbox_id in range(1000):  # every mailbox ever selected, account ever logged in
        sub = bus.subscribe(mailbox_id=mailbox_id, account_id=mailbox_id)
        sub.remove(("mailbox", mailbox_id))
        sub.add(("mailbox", mailbox_id + 1))
        sub.close()
    assert len(bus._subscribers) == 0
    live = bus.subscribe(mailbox_id=7)
    bus.publish([type("E", (), {"mailbox_id": 7})()])
    assert len(live.pending()) == 1
