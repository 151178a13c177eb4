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


async def test_a_bounded_subscription_drops_and_says_so() -> None:
    """Issue #12: a subscription with a limit stops growing there and reports the overflow
    once; the queue is emptied with it (the subscriber reads the truth afresh)."""
    import asyncio

    from postoffice.services.events import EventBus
    from postoffice.store.records import MessagesAdded
    bus = EventBus(asyncio.get_running_loop())
    bounded = bus.subscribe(mailbox_id=7, limit=3)
    unbounded = bus.subscribe(mailbox_id=7)
    bus.publish([MessagesAdded(1, 7, (n,), n) for n in range(1, 6)])
    assert bounded.queue.qsize() == 3 and bounded.overflowed
    assert unbounded.queue.qsize() == 5 and not unbounded.overflowed
    assert bounded.take_overflow() and bounded.queue.empty()
    assert not bounded.take_overflow()
    bus.publish([MessagesAdded(1, 7, (9,), 9)])
    assert [e.uids for e in bounded.pending()] == [(9,)]
