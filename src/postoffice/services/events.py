"""The in-process event bus: sessions subscribe to a mailbox or an account and hear changes.

The store hands every committed change event to `EventBus.publish` (from its database thread;
`publish_threadsafe` hops onto the loop). Each subscription is an unbounded asyncio queue, so a
slow session never blocks delivery; an IMAP session drains its queue at the next command or at
once while in IDLE (RFC 9051 §7.4, RFC 2177).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from typing import Any


class Subscription:
    """Events for a set of keys, in publication order."""

    def __init__(self, bus: EventBus, keys: Iterable[tuple[str, int]]) -> None:
        self.bus = bus
        self.keys: set[tuple[str, int]] = set(keys)
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def pending(self) -> list[Any]:
        """Every event received so far, without waiting."""
        items = []
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        return items

    async def wait(self, timeout: float | None = None) -> list[Any]:
        """Wait for at least one event (or the timeout), then return all that are queued."""
        try:
            first = await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return []
        return [first, *self.pending()]

    def add(self, key: tuple[str, int]) -> None:
        self.keys.add(key)
        self.bus._subscribers[key].add(self)

    def remove(self, key: tuple[str, int]) -> None:
        self.keys.discard(key)
        subs = self.bus._subscribers.get(key)
        if subs is not None:
            subs.discard(self)
            if not subs:  # or every mailbox ever selected keeps an entry
                del self.bus._subscribers[key]

    def close(self) -> None:
        for key in list(self.keys):
            self.remove(key)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop
        self._subscribers: defaultdict[tuple[str, int], set[Subscription]] = defaultdict(set)
        # Called with every event, e.g. the session registry watching for access changes.
        self.listeners: list[Any] = []

    def subscribe(self, *, mailbox_id: int | None = None, account_id: int | None = None) -> Subscription:
        keys = []
        if mailbox_id is not None:
            keys.append(("mailbox", mailbox_id))
        if account_id is not None:
            keys.append(("account", account_id))
        sub = Subscription(self, keys)
        for key in keys:
            self._subscribers[key].add(sub)
        return sub

    def publish(self, events: Iterable[Any]) -> None:
        for event in events:
            targets: set[Subscription] = set()
            mailbox_id = getattr(event, "mailbox_id", None)
            if mailbox_id is not None:
                targets |= self._subscribers.get(("mailbox", mailbox_id), set())
            account_id = getattr(event, "account_id", None)
            if account_id is not None:
                targets |= self._subscribers.get(("account", account_id), set())
            for sub in targets:
                sub.queue.put_nowait(event)
            for listener in self.listeners:
                listener(event)

    def publish_threadsafe(self, events: list[Any]) -> None:
        if self.loop is None or self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.publish, events)
