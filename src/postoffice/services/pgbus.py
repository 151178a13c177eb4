"""The event bus across nodes: PostgreSQL LISTEN/NOTIFY (issue 14).

`PgTransport` is the `Transport` (services/events.py) of each worker process when the store is
PostgreSQL. Every worker of every node LISTENs itself, rather than the supervisor bridging the
Unix hub to the database: the supervisor stays free of any database code (app.py, supervisor.py:
nothing but a signal may take it down), a worker's locks live exactly as long as the worker's
own database session (as they lived on its hub connection), and no event takes two hops.
The cost is two database connections per worker.

Each process holds two connections:

- the *listener*: ``LISTEN postoffice_bus`` and nothing else; each notification is decoded and
  handed to ``bus.receive`` in the order PostgreSQL delivers them (commit order of the sending
  transactions);
- the *control* session: sends (``pg_notify``), the named locks and this process's membership.

Payloads are ``{"n": node, "s": seq, "e": events}`` (`encode_events`), each under NOTIFY's limit
of 8,000 bytes: a batch is split into several notifications, and an event too large for one on
its own is stored in ``bus_payloads`` and only its row id is sent (``"r"``); rows older than a
minute are deleted. The sequence number keeps two identical payloads of one transaction from
being folded into one (PostgreSQL delivers identical notifications of a transaction once).

Named locks (the POP3 maildrop, RFC 1939 §8) are session-level advisory locks
(``pg_try_advisory_lock(int4, int4)`` on a 64-bit hash of the name) on the control session:
a process that dies loses its connection and with it its locks, as it did on the hub.

Membership: each process inserts a ``bus_nodes`` row and holds an advisory lock on its id (in
its `Namespace`'s member class) for as long as its control session lives. Every process sweeps
every ``SWEEP_INTERVAL`` seconds: a row whose lock nobody holds belongs to a process that is
gone (killed, its machine down once TCP keepalives time out); the sweeper that deletes the row
announces `NodeGone`, so the other nodes drop its sessions from the connected-devices view.

Installations sharing one database each in their own schema (the test suite does this) must not
hear each other: NOTIFY channels and advisory locks belong to the database, not to a schema, so
the channel name and every lock key are derived from the schema the tables live in (`Namespace`).

Reconnection: when either connection fails the transport reconnects with a growing delay.
Notifications sent while it was away are lost, so after a reconnect every subscription of this
process is marked overflowed (it re-reads its source of truth, services/events.py), the locks
held before are taken again, and the process asks for every other one's sessions and announces
its own again (`SessionsWanted`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import struct
from dataclasses import dataclass
from typing import Any

import psycopg

from .events import EventBus, NodeGone, SessionsWanted, decode_events, dumps, encode_events

log = logging.getLogger(__name__)

#: NOTIFY payloads must stay under 8,000 bytes (PostgreSQL's limit); JSON here is ASCII only.
MAX_PAYLOAD = 7_900
SWEEP_INTERVAL = 2.0
RECONNECT_FIRST = 0.2
RECONNECT_MAX = 5.0
#: Stored large payloads are kept this long for listeners to read, then deleted.
PAYLOAD_KEEP_SECONDS = 60
#: Events waiting to be sent while the database is unreachable; beyond this they are dropped
#: (the receivers' subscriptions re-read the database when the transport comes back).
MAX_BACKLOG = 50_000
#: Connection settings: the server notices a vanished client (and frees its locks) within about
#: 25 s, the client a vanished server likewise (libpq keepalives).
KEEPALIVES = {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5", "keepalives_count": "3",
              "application_name": "postoffice-bus"}
SERVER_KEEPALIVES = "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"


def conninfo(dsn: str) -> str:
    """``dsn`` with the keepalive settings added (its own ``options``, a search_path say, kept)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    options = " ".join(filter(None, [str(conninfo_to_dict(dsn).get("options") or ""), SERVER_KEEPALIVES]))
    return make_conninfo(dsn, options=options, **KEEPALIVES)


SCHEMA = [
    """CREATE TABLE IF NOT EXISTS bus_nodes (
        id BIGSERIAL PRIMARY KEY,
        node TEXT NOT NULL,
        joined TIMESTAMPTZ NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS bus_payloads (
        id BIGSERIAL PRIMARY KEY,
        body TEXT NOT NULL,
        created TIMESTAMPTZ NOT NULL DEFAULT now())""",
]

# Rows whose lock nobody holds are deleted; their nodes are announced gone unless the same node
# has a live row (it reconnected: announcing it gone would drop the sessions it re-announced).
_SWEEP = """
WITH dead AS (
  DELETE FROM bus_nodes n
   WHERE NOT EXISTS (SELECT 1 FROM pg_locks l
                      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                        AND l.classid = %(cls)s::bigint::oid AND l.objid = n.id::oid)
  RETURNING id, node)
SELECT DISTINCT d.node FROM dead d
 WHERE NOT EXISTS (SELECT 1 FROM bus_nodes b WHERE b.node = d.node AND b.id NOT IN (SELECT id FROM dead))"""


#: Failures that mean "the session is gone" (AttributeError: no session at all, reconnecting).
_CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, OSError, AttributeError)


def _int4s(text: str) -> tuple[int, int]:
    """Two int4 advisory-lock keys from a 64-bit hash of ``text``."""
    return struct.unpack(">ii", hashlib.sha256(text.encode()).digest()[:8])


@dataclass(frozen=True)
class Namespace:
    """The channel and lock keys of the installation whose tables live in ``schema``."""

    schema: str

    @property
    def channel(self) -> str:
        return "postoffice_bus_" + hashlib.sha256(self.schema.encode()).hexdigest()[:16]

    @property
    def member_class(self) -> int:
        """First key of the membership locks (the second is the member's row id; 0 guards the
        creation of the tables)."""
        return _int4s(f"{self.schema}\0members")[0] & 0x7FFFFFFF  # pg_locks shows it as an oid

    def lock(self, name: str) -> tuple[int, int]:
        return _int4s(f"{self.schema}\0{name}")


async def namespace_of(conn: Any) -> Namespace:
    cur = await conn.execute("SELECT current_schema()")
    return Namespace(str((await cur.fetchone())[0]))


def pack(items: list[Any], overhead: int) -> list[tuple[str, Any]]:
    """Encoded events in order, as pieces of NOTIFY payloads: ``("e", [events...])`` fitting
    under MAX_PAYLOAD with ``overhead`` bytes of envelope, or ``("r", json)`` for one event too
    large for any payload (it is stored and referenced)."""
    pieces: list[tuple[str, Any]] = []
    batch: list[Any] = []
    size = 0
    for item in items:
        text = dumps(item)
        if overhead + len(text) + 1 > MAX_PAYLOAD:
            if batch:
                pieces.append(("e", batch))
                batch, size = [], 0
            pieces.append(("r", text.decode()))
            continue
        if overhead + size + len(text) + 1 > MAX_PAYLOAD:
            pieces.append(("e", batch))
            batch, size = [], 0
        batch.append(item)
        size += len(text) + 1
    if batch:
        pieces.append(("e", batch))
    return pieces


async def ensure_schema(conn: Any, space: Namespace) -> None:
    """The bus's two tables (its own, outside the store's migrations: they hold nothing that
    outlives the processes). Two nodes starting at once take turns."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (space.member_class,))
        for statement in SCHEMA:
            await conn.execute(statement)


async def notify_events(conn: Any, channel: str, node: str, seq: int, items: list[Any]) -> int:
    """NOTIFY encoded events on ``conn`` in one transaction (delivered together, at its commit,
    in order); returns the next sequence number."""
    overhead = len(dumps({"n": node, "s": 2 ** 53, "e": []}))
    payloads = []
    async with conn.transaction():
        for kind, value in pack(items, overhead):
            if kind == "r":
                cur = await conn.execute("INSERT INTO bus_payloads (body) VALUES (%s) RETURNING id", (value,))
                value = (await cur.fetchone())[0]
            payloads.append(dumps({"n": node, "s": seq, kind: value}).decode())
            seq += 1
        # One round trip; pg_notify keeps the order of its calls within the transaction.
        await conn.execute("SELECT pg_notify(%s, p) FROM unnest(%s::text[]) WITH ORDINALITY AS t(p, k) ORDER BY k",
                           (channel, payloads))
    return seq


class PgTransport:
    """A process's carrier of events and locks over PostgreSQL (see the module docstring)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.space: Namespace | None = None
        self.bus: EventBus | None = None
        self._listener: Any = None
        self._control: Any = None
        self._control_lock = asyncio.Lock()
        self._outbox: list[Any] = []  # encoded events waiting for the sender
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._held: set[str] = set()
        self._member_id: int | None = None
        self._seq = 0
        self._closing = False
        self._control_ok = asyncio.Event()
        self._reconnecting = asyncio.Lock()

    @property
    def channel(self) -> str:
        return self._space().channel

    def _space(self) -> Namespace:
        assert self.space is not None, "not started"
        return self.space

    def _key(self, name: str) -> tuple[int, int]:
        return self._space().lock(name)

    # -- connections ---------------------------------------------------------------------------
    async def _connect(self) -> Any:
        return await psycopg.AsyncConnection.connect(conninfo(self.dsn), autocommit=True)

    async def _open_listener(self) -> None:
        conn = await self._connect()
        await conn.execute(f"LISTEN {self.channel}")  # a name made of [a-z0-9_] (Namespace)
        self._listener = conn

    async def _open_control(self) -> None:
        conn = await self._connect()
        self.space = await namespace_of(conn)
        await ensure_schema(conn, self.space)
        assert self.bus is not None
        async with conn.transaction():  # the row becomes visible with its lock already held
            cur = await conn.execute("INSERT INTO bus_nodes (node) VALUES (%s) RETURNING id", (self.bus.node,))
            row = await cur.fetchone()
            await conn.execute("SELECT pg_advisory_lock(%s, %s::int4)", (self.space.member_class, row[0]))
        self._member_id = row[0]
        self._control = conn
        self._control_ok.set()

    async def start(self, bus: EventBus) -> None:
        """Connect both sessions; returns once LISTEN is active (events published after that
        reach us, so the caller may read the database next)."""
        self.bus = bus
        await self._open_control()
        await self._open_listener()
        self._tasks = [asyncio.ensure_future(self._listen()), asyncio.ensure_future(self._send()),
                       asyncio.ensure_future(self._sweep())]

    async def close(self) -> None:
        """Leave: announce this process gone (no sweep needed), close both sessions."""
        self._closing = True
        await self._drain_outbox()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        if self._control is not None and self.bus is not None and self._member_id is not None:
            with contextlib.suppress(Exception):
                async with self._control.transaction():
                    await self._control.execute("DELETE FROM bus_nodes WHERE id = %s", (self._member_id,))
                    await notify_events(self._control, self.channel, self.bus.node, self._seq,
                                        encode_events([NodeGone(self.bus.node)]) or [])
                # Now, not when the server gets round to ending the session after the close.
                await self._control.execute("SELECT pg_advisory_unlock_all()")
        for conn in (self._listener, self._control):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        self._listener = self._control = None

    async def _drain_outbox(self, timeout: float = 2.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while self._outbox and self._control is not None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    # -- sending -------------------------------------------------------------------------------
    def send(self, events: list[Any]) -> None:
        encoded = encode_events(events)
        if not encoded:
            return
        if len(self._outbox) > MAX_BACKLOG:
            log.error("event bus: the database has not taken events for a while; dropping %d", len(encoded))
            return
        self._outbox.extend(encoded)
        self._wake.set()

    async def _send(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                items, self._outbox = self._outbox, []
                conn = self._control
                try:
                    await self._flush(items)
                except _CONNECTION_ERRORS as exc:
                    log.warning("event bus: sending to PostgreSQL failed (%s); reconnecting", exc)
                    self._outbox[:0] = items
                    await self._reconnect_control(conn)
                except Exception:  # noqa: BLE001 - not the connection: these events cannot be sent
                    log.exception("event bus: dropped %d events PostgreSQL refused", len(items))

    async def _flush(self, items: list[Any]) -> None:
        assert self.bus is not None
        await self._control_ok.wait()
        async with self._control_lock:
            self._seq = await notify_events(self._control, self.channel, self.bus.node, self._seq, items)

    # -- receiving -----------------------------------------------------------------------------
    async def _listen(self) -> None:
        while True:
            try:
                async for note in self._listener.notifies():
                    await self._receive(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the connection broke: reconnect
                if self._closing:
                    return
                log.warning("event bus: lost the LISTEN connection (%s); reconnecting", exc)
            await self._reconnect_listener()

    async def _receive(self, payload: str) -> None:
        assert self.bus is not None
        try:
            message = json.loads(payload)
            if not isinstance(message, dict) or message.get("n") == self.bus.node:
                return  # our own, heard back
            items = message.get("e")
            if "r" in message:
                items = [await self._stored(int(message["r"]))]
        except (ValueError, TypeError) as exc:
            log.warning("event bus: dropped a malformed notification: %s", exc)
            return
        self.bus.receive(decode_events(items))

    async def _stored(self, ref: int) -> Any:
        await self._control_ok.wait()
        async with self._control_lock:
            cur = await self._control.execute("SELECT body FROM bus_payloads WHERE id = %s", (ref,))
            row = await cur.fetchone()
        if row is None:
            raise ValueError(f"stored event {ref} is gone")
        return json.loads(row[0])

    # -- locks ---------------------------------------------------------------------------------
    async def try_lock(self, name: str) -> bool:
        if name in self._held:
            return True  # this process has it (as the hub answers its holder)
        if self._control is None or not self._control_ok.is_set():
            return False
        try:
            async with self._control_lock:
                cur = await self._control.execute("SELECT pg_try_advisory_lock(%s, %s)", self._key(name))
                ok = bool((await cur.fetchone())[0])
        except Exception as exc:  # noqa: BLE001 - the sweeper reconnects
            log.warning("event bus: lock %s not taken: %s", name, exc)
            return False
        if ok:
            self._held.add(name)
        return ok

    def unlock(self, name: str) -> None:
        if name not in self._held:
            return
        self._held.discard(name)
        task = asyncio.ensure_future(self._unlock(name))
        self._tasks.append(task)
        task.add_done_callback(lambda t: t in self._tasks and self._tasks.remove(t))

    async def _unlock(self, name: str) -> None:
        # Advisory locks count: a try_lock of the same name that ran first took it a second time.
        with contextlib.suppress(Exception):
            async with self._control_lock:
                await self._control.execute("SELECT pg_advisory_unlock(%s, %s)", self._key(name))

    # -- membership ----------------------------------------------------------------------------
    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL * random.uniform(0.75, 1.25))
            conn = self._control
            try:
                async with self._control_lock:
                    cur = await self._control.execute(_SWEEP, {"cls": self._space().member_class})
                    gone = [r[0] for r in await cur.fetchall()]
                    await self._control.execute(
                        "DELETE FROM bus_payloads WHERE created < now() - make_interval(secs => %s)",
                        (PAYLOAD_KEEP_SECONDS,))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("event bus: the control connection failed (%s); reconnecting", exc)
                await self._reconnect_control(conn)
                continue
            if gone and self.bus is not None:
                log.info("event bus: node(s) gone: %s", ", ".join(gone))
                events = [NodeGone(node) for node in gone]
                self.bus.receive(events)
                self.send(events)

    async def _reconnect_control(self, broken: Any) -> None:
        """Replace the control session ``broken`` (once, however many tasks saw it fail)."""
        async with self._reconnecting:
            if self._control is not broken:
                return  # another task has replaced it already
            self._control_ok.clear()
            self._control = None
            if broken is not None:
                with contextlib.suppress(Exception):
                    await broken.close()
            await self._retry(self._open_control)
            for name in list(self._held):
                async with self._control_lock:
                    cur = await self._control.execute("SELECT pg_try_advisory_lock(%s, %s)", self._key(name))
                    if not (await cur.fetchone())[0]:
                        log.error("event bus: lock %s was taken by another node while we were away", name)
            self._rejoined()

    async def _reconnect_listener(self) -> None:
        old, self._listener = self._listener, None
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()
        await self._retry(self._open_listener)
        self._rejoined()

    async def _retry(self, connect: Any) -> None:
        delay = RECONNECT_FIRST
        while True:
            try:
                await connect()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the database is down: keep trying
                log.warning("event bus: cannot reach PostgreSQL (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(RECONNECT_MAX, delay * 2)

    def _rejoined(self) -> None:
        """Events may have been missed: subscribers re-read, sessions are exchanged again."""
        assert self.bus is not None
        self.bus.lost_events()
        self.bus.publish([SessionsWanted(self.bus.node)])


async def announce(dsn: str, events: list[Any], node: str) -> bool:
    """Send ``events`` to every node's workers (the CLI, after it committed a change)."""
    encoded = encode_events(events)
    if not encoded:
        return False
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        space = await namespace_of(conn)
        await ensure_schema(conn, space)
        await notify_events(conn, space.channel, node, 0, encoded)
    return True
