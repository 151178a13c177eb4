"""The event bus: sessions subscribe to a mailbox or an account and hear changes, from this
process and from every other worker process.

One interface, several carriers. `EventBus` is what the rest of the server sees:

- ``publish(events)``: a change committed here (the store calls it after COMMIT, through
  ``publish_threadsafe`` from its database thread). Delivered to this process's subscribers at
  once, and handed to the transport, which carries it to every other process.
- ``receive(events)``: what the transport calls with events from other processes. Delivered to
  this process's subscribers only (never sent on again).
- ``publish_local(events)``: this process only (e.g. the IMAP index telling its sessions about
  changes it found in the database itself).
- ``try_lock(name)`` / ``unlock(name)``: a named exclusive lock held across every process (the
  POP3 maildrop lock, RFC 1939 §8). A lock dies with the process that held it.

Transports (`Transport`): none (one process: `postoffice serve` with the in-process test
server), the supervisor's Unix-socket hub (`services/unixbus.py`, what ``[server] workers``
uses), and later PostgreSQL LISTEN/NOTIFY for several nodes (issue 14). A transport carries
events as JSON (`encode_events` / `decode_events`): only the event types registered here cross
a process boundary, and decoding never runs code (the payload may come from Redis or a database
other programs can write to). The ``origin`` of a `FlagsChanged` (the session that made the
change) stays in its own process.

What a second transport must provide (issue 14, PostgreSQL LISTEN/NOTIFY across nodes):
``send`` may NOTIFY inside the committing transaction itself (delivery then follows commit
order), keeping each payload under NOTIFY's 8,000 bytes (split a batch; a large FlagsChanged
may carry only its mailbox and MODSEQ: the index catches up from the database anyway);
``try_lock``/``unlock`` map onto ``pg_try_advisory_lock``/``pg_advisory_unlock`` on the
listening connection, so a node that dies loses its locks with its connection; and since no
hub sees a node leave, `NodeGone` has to come from a heartbeat (a row per node, refreshed, and
announced gone when stale). Nothing above the transport changes.

Each subscription is an asyncio queue, so a slow session never blocks delivery; an IMAP session
drains its queue at the next command or at once while in IDLE (RFC 9051 §7.4, RFC 2177). A
subscription may be bounded (``limit``): a silent client's queue then stops growing at the
limit, further events are dropped and ``overflowed`` is set, and the subscriber resynchronises
from its source of truth instead of replaying events (the IMAP session from the mailbox index,
the index from the database). Events from another process may arrive out of commit order relative to this
process's own; consumers that care (the IMAP mailbox index) detect the gap from the per-mailbox
MODSEQ sequence and re-read the database (servers/imap/selected.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import socket
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ..store.records import (
    AccountChanged, FlagsChanged, MailboxesChanged, MessagesAdded, MessagesExpunged, MetadataChanged,
    SubscriptionChanged,
)

log = logging.getLogger(__name__)


# -- events that are not store changes ---------------------------------------------------------
# ``node`` names the process that published one (`EventBus.node`), so a listener can tell its
# own events from the others'.

@dataclass(frozen=True)
class SessionOpened:
    """A session logged in on ``node`` (the connected-devices view of every worker)."""

    node: str
    id: int
    protocol: str
    account_id: int
    address: str
    remote: str
    tls: bool
    port: int
    since: float
    client_id: str = ""
    app_password: str = ""


@dataclass(frozen=True)
class SessionClosed:
    node: str
    id: int


@dataclass(frozen=True)
class SessionsWanted:
    """A process (re)joined: every other one announces its open sessions again."""

    node: str


@dataclass(frozen=True)
class NodeGone:
    """A process left the bus (exited or was killed): forget its sessions. Sent by the hub."""

    node: str


@dataclass(frozen=True)
class LoginResult:
    """A failed login (``ok`` False), or a successful one that cleared the account's failure
    count: the per-IP and per-account throttles count across workers."""

    node: str
    remote_ip: str
    username: str
    ok: bool = False


@dataclass(frozen=True)
class QueueWork:
    """Something was queued for outbound delivery: wake the queue runner (wherever it runs)."""

    node: str


_EVENT_TYPES: dict[str, type] = {cls.__name__: cls for cls in (
    MessagesAdded, FlagsChanged, MessagesExpunged, MailboxesChanged, AccountChanged, SubscriptionChanged,
    MetadataChanged,
    SessionOpened, SessionClosed, SessionsWanted, NodeGone, LoginResult, QueueWork,
)}
# Fields that stay in their process (object references).
_LOCAL_FIELDS = {"origin"}


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def encode_events(events: Iterable[Any]) -> list[Any] | None:
    """JSON-ready form of the events that may leave this process; None if there are none."""
    out = []
    for event in events:
        name = type(event).__name__
        if _EVENT_TYPES.get(name) is not type(event):
            continue
        out.append([name, {f.name: getattr(event, f.name) for f in dataclasses.fields(event)
                           if f.name not in _LOCAL_FIELDS}])
    return out or None


def decode_events(items: Any) -> list[Any]:
    """Events from `encode_events` output (after a JSON round trip). Unknown types and
    malformed entries are dropped with a warning, never executed."""
    events = []
    for item in items if isinstance(items, list) else ():
        try:
            name, fields = item
            cls = _EVENT_TYPES[name]
            known = {f.name for f in dataclasses.fields(cls)} - _LOCAL_FIELDS
            events.append(cls(**{k: _tuples(v) for k, v in fields.items() if k in known}))
        except (KeyError, TypeError, ValueError, AttributeError):
            log.warning("dropped a malformed event from the bus: %.200r", item)
    return events


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# -- transports ----------------------------------------------------------------------------------

class Transport(Protocol):
    """Carries events between processes (see the module docstring)."""

    async def start(self, bus: EventBus) -> None:
        """Connect; from now on call ``bus.receive`` with every event other processes publish."""

    def send(self, events: list[Any]) -> None:
        """Send this process's events to every other process (called on the loop; must not block)."""

    async def try_lock(self, name: str) -> bool:
        """Take the named lock for this process if nobody holds it."""

    def unlock(self, name: str) -> None:
        """Release a lock this process holds."""

    async def close(self) -> None: ...


# -- subscriptions -------------------------------------------------------------------------------

class Subscription:
    """Events for a set of keys, in publication order."""

    def __init__(self, bus: EventBus, keys: Iterable[tuple[str, int]], limit: int | None = None) -> None:
        self.bus = bus
        self.keys: set[tuple[str, int]] = set(keys)
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.limit = limit
        self.overflowed = False  # events were dropped since `take_overflow` last said so

    def offer(self, event: Any) -> None:
        """Queue ``event``, or drop it and mark the subscription overflowed when full."""
        if self.limit is not None and self.queue.qsize() >= self.limit:
            self.overflowed = True
            return
        self.queue.put_nowait(event)

    def take_overflow(self) -> bool:
        """True (once) when events were dropped: the queue is emptied too, since what is left
        of it describes a past the subscriber now reads afresh."""
        if not self.overflowed:
            return False
        self.overflowed = False
        self.pending()
        return True

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
    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, node: str | None = None) -> None:
        self.loop = loop
        # This process's name on the bus: unique among the processes sharing it.
        self.node = node or f"{socket.gethostname()}:{os.getpid()}"
        self._subscribers: defaultdict[tuple[str, int], set[Subscription]] = defaultdict(set)
        # Called with every event, e.g. the session registry watching for access changes.
        self.listeners: list[Any] = []
        self.transport: Transport | None = None
        self._locks: set[str] = set()  # without a transport: locks of this process

    @property
    def shared(self) -> bool:
        """True when other processes hear this one's events (a transport is attached)."""
        return self.transport is not None

    def subscribe(self, *, mailbox_id: int | None = None, account_id: int | None = None,
                  limit: int | None = None) -> Subscription:
        """Events about a mailbox and/or an account; at most ``limit`` queued (see Subscription)."""
        keys = []
        if mailbox_id is not None:
            keys.append(("mailbox", mailbox_id))
        if account_id is not None:
            keys.append(("account", account_id))
        sub = Subscription(self, keys, limit)
        for key in keys:
            self._subscribers[key].add(sub)
        return sub

    def publish(self, events: Iterable[Any]) -> None:
        """Events of a change made in this process: here, then to every other process."""
        events = list(events)
        self._deliver(events)
        if self.transport is not None and events:
            try:
                self.transport.send(events)
            except Exception:  # noqa: BLE001 - this process's sessions already heard it
                log.exception("sending events to the other processes failed")

    def receive(self, events: Iterable[Any]) -> None:
        """Events from another process (called by the transport)."""
        self._deliver(events)

    def publish_local(self, events: Iterable[Any]) -> None:
        """Events for this process's subscribers only."""
        self._deliver(events)

    def _deliver(self, events: Iterable[Any]) -> None:
        for event in events:
            targets: set[Subscription] = set()
            mailbox_id = getattr(event, "mailbox_id", None)
            if mailbox_id is not None:
                targets |= self._subscribers.get(("mailbox", mailbox_id), set())
            account_id = getattr(event, "account_id", None)
            if account_id is not None:
                targets |= self._subscribers.get(("account", account_id), set())
            for sub in targets:
                sub.offer(event)
            for listener in self.listeners:
                try:
                    listener(event)
                except Exception:  # noqa: BLE001 - one listener must not starve the others
                    log.exception("event listener failed on %r", type(event).__name__)

    def lost_events(self) -> None:
        """The transport may have missed events (it reconnected): every subscriber re-reads its
        source of truth at its next look, as after an overflow."""
        for subs in self._subscribers.values():
            for sub in subs:
                sub.overflowed = True

    def publish_threadsafe(self, events: list[Any]) -> None:
        if self.loop is None or self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.publish, events)

    # -- locks held across processes ----------------------------------------------------------

    async def try_lock(self, name: str) -> bool:
        if self.transport is not None:
            return await self.transport.try_lock(name)
        if name in self._locks:
            return False
        self._locks.add(name)
        return True

    def unlock(self, name: str) -> None:
        if self.transport is not None:
            self.transport.unlock(name)
        else:
            self._locks.discard(name)

    async def attach(self, transport: Transport) -> None:
        """Start carrying events to and from other processes through ``transport``."""
        await transport.start(self)
        self.transport = transport

    async def detach(self) -> None:
        transport, self.transport = self.transport, None
        if transport is not None:
            await transport.close()
