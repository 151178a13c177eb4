"""The supervisor's event bus: a hub on a Unix socket that every worker process connects to.

`BusHub` runs in the supervisor (`postoffice serve`); `UnixBusClient` is the `Transport`
(services/events.py) each worker attaches to its `EventBus`. The socket is
``<run_dir>/bus.sock`` (run_dir: data_dir unless ``[server] run_dir`` says otherwise), created mode 0600: only the server's own user (the workers, and the
CLI announcing a change it committed) can connect.

Frames are a 4-byte big-endian length and a JSON object:

- ``{"op": "hello", "node": ...}``      first frame of a client, answered ``{"op": "welcome"}``:
                                         from then on the client hears every event published.
                                         A worker adds ``"logins": true`` and is welcomed with
                                         the login cache (``"logins": {key, entries}``)
- ``{"op": "login", "address": s, "mac": hex, "changed_at": x}``  a password argon2 verified
                                         (services/logincache.py); kept by the hub and sent on
                                         to every other worker
- ``{"op": "pub", "events": [...]}``    events (`encode_events`); the hub sends the same frame on
                                         to every other client, unchanged
- ``{"op": "lock", "id": n, "name": s}`` take a named lock; answered ``{"op": "locked", "id": n,
                                         "ok": bool}``
- ``{"op": "unlock", "name": s}``
- ``{"op": "ready"}``                    a worker finished starting (the supervisor waits for it)

A client that disconnects (a worker that exits or is killed) loses its locks at once, and the hub
tells the others with a `NodeGone` event, so its sessions leave the connected-devices view. A
worker whose hub disappears (the supervisor died) stops itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .events import EventBus, NodeGone, decode_events, dumps, encode_events
from .logincache import LoginCache, parse_welcome

log = logging.getLogger(__name__)

MAX_FRAME = 64 * 1024 * 1024
_LEN = struct.Struct(">I")
#: How long a worker waits for the hub to answer a lock request.
LOCK_TIMEOUT = 10.0


def socket_path(run_dir: Path) -> Path:
    return run_dir / "bus.sock"


@contextlib.contextmanager
def _short(path: Path) -> Any:
    """A path to ``path`` short enough for sun_path (108 bytes): through /proc/self/fd when the
    real one is longer (deep temporary directories)."""
    text = str(path)
    if len(text.encode()) < 100:
        yield text
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def frame(obj: Any) -> bytes:
    data = dumps(obj)
    return _LEN.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes] | None:
    """The next frame, decoded and raw (with its length); None at EOF."""
    try:
        head = await reader.readexactly(4)
        (size,) = _LEN.unpack(head)
        if size > MAX_FRAME:
            raise ValueError(f"frame of {size} bytes")
        body = await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    obj = json.loads(body)
    if not isinstance(obj, dict):
        raise ValueError("a frame must be a JSON object")
    return obj, head + body


class BusHub:
    """The supervisor's side: relays events between workers, holds the named locks."""

    def __init__(self, path: Path, logins: LoginCache | None = None) -> None:
        self.path = path
        self.logins = logins or LoginCache()
        self._server: asyncio.AbstractServer | None = None
        self._clients: dict[asyncio.StreamWriter, str] = {}
        self._login_clients: set[asyncio.StreamWriter] = set()  # the workers
        self._locks: dict[str, asyncio.StreamWriter] = {}
        self._handlers: set[asyncio.Task[Any]] = set()
        #: Called with the node name of every worker that reports it is ready.
        self.on_ready: Callable[[str], None] | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left behind by a supervisor that was killed
        old = os.umask(0o177)  # srw------- from the start: no window where others may connect
        try:
            with _short(self.path) as path:
                self._server = await asyncio.start_unix_server(self._serve, path=path, limit=1 << 20)
        finally:
            os.umask(old)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._clients):
            writer.close()
        for task in list(self._handlers):
            task.cancel()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    @property
    def nodes(self) -> list[str]:
        return [n for n in self._clients.values() if n]

    def _send_others(self, sender: asyncio.StreamWriter | None, data: bytes,
                     to: Any = None) -> None:
        for writer in list(self._clients if to is None else to):
            if writer is not sender and not writer.is_closing():
                writer.write(data)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            while True:
                got = await read_frame(reader)
                if got is None:
                    break
                msg, raw = got
                op = msg.get("op")
                if op == "pub":
                    self._send_others(writer, raw)
                elif op == "hello":
                    welcome: dict[str, Any] = {"op": "welcome"}
                    if msg.get("logins") is True:
                        welcome["logins"] = self.logins.welcome()
                        self._login_clients.add(writer)
                    writer.write(frame(welcome))  # before any event it is sent
                    self._clients[writer] = str(msg.get("node", ""))
                elif op == "login" and writer in self._login_clients:
                    self.logins.add(str(msg.get("address")), str(msg.get("mac")), float(msg.get("changed_at", 0)))
                    self._send_others(writer, raw, self._login_clients)
                elif op == "lock":
                    name = str(msg.get("name"))
                    holder = self._locks.get(name)
                    ok = holder is None or holder is writer
                    if ok:
                        self._locks[name] = writer
                    writer.write(frame({"op": "locked", "id": msg.get("id"), "ok": ok}))
                elif op == "unlock":
                    name = str(msg.get("name"))
                    if self._locks.get(name) is writer:
                        del self._locks[name]
                elif op == "ready":
                    if self.on_ready is not None:
                        self.on_ready(self._clients.get(writer, ""))
        except (ValueError, json.JSONDecodeError) as exc:
            log.warning("event bus: dropped a client that sent a bad frame: %s", exc)
        except asyncio.CancelledError:
            pass
        finally:
            node = self._clients.pop(writer, "")
            self._login_clients.discard(writer)
            for name in [n for n, w in self._locks.items() if w is writer]:
                del self._locks[name]
            if node:
                self._send_others(None, frame({"op": "pub", "events": encode_events([NodeGone(node)])}))
            writer.close()
            if task is not None:
                self._handlers.discard(task)


class UnixBusClient:
    """A worker's (or the CLI's) connection to the hub: the `Transport` of its `EventBus`."""

    def __init__(self, path: Path, on_lost: Callable[[], None] | None = None, logins: bool = False) -> None:
        self.path = path
        self.on_lost = on_lost
        #: A worker: it shares the login cache (welcome: `logins`; then `send_login`/`on_login`).
        self.want_logins = logins
        self.logins: tuple[bytes, list[tuple[str, bytes, float]]] | None = None
        self.on_login: Callable[[str, bytes, float], None] | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[bool]] = {}
        self._closing = False

    async def connect(self, node: str) -> None:
        """Connect and say hello; returns once the hub has registered us (events published
        after that reach us: a worker reads the database only after this)."""
        with _short(self.path) as path:
            self._reader, self._writer = await asyncio.open_unix_connection(path, limit=1 << 20)
        self._write({"op": "hello", "node": node, **({"logins": True} if self.want_logins else {})})
        got = await read_frame(self._reader)
        if got is None or got[0].get("op") != "welcome":
            raise ConnectionError("the event bus hub did not answer")
        if self.want_logins:
            self.logins = parse_welcome(got[0].get("logins"))

    async def start(self, bus: EventBus) -> None:
        if self._writer is None:
            await self.connect(bus.node)
        self._task = asyncio.ensure_future(self._read(bus))

    def _write(self, obj: Any) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(frame(obj))

    def send(self, events: list[Any]) -> None:
        encoded = encode_events(events)
        if encoded:
            self._write({"op": "pub", "events": encoded})

    def send_login(self, address: str, mac: bytes, changed_at: float) -> None:
        self._write({"op": "login", "address": address, "mac": mac.hex(), "changed_at": changed_at})

    def ready(self) -> None:
        self._write({"op": "ready"})

    async def flush(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(ConnectionError):
                await self._writer.drain()

    async def try_lock(self, name: str) -> bool:
        if self._writer is None or self._writer.is_closing():
            return False
        request = next(self._ids)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[request] = future
        self._write({"op": "lock", "id": request, "name": name})
        try:
            return await asyncio.wait_for(future, LOCK_TIMEOUT)
        except asyncio.TimeoutError:
            log.error("event bus: no answer to a lock request for %s", name)
            self.unlock(name)  # in case the answer is only late
            return False
        finally:
            self._waiting.pop(request, None)

    def unlock(self, name: str) -> None:
        self._write({"op": "unlock", "name": name})

    async def _read(self, bus: EventBus) -> None:
        assert self._reader is not None
        try:
            while True:
                got = await read_frame(self._reader)
                if got is None:
                    break
                msg, _ = got
                op = msg.get("op")
                if op == "pub":
                    bus.receive(decode_events(msg.get("events")))
                elif op == "login" and self.on_login is not None:
                    with contextlib.suppress(KeyError, TypeError, ValueError):
                        self.on_login(str(msg["address"]), bytes.fromhex(msg["mac"]), float(msg["changed_at"]))
                elif op == "locked":
                    future = self._waiting.get(msg.get("id"))  # type: ignore[arg-type]
                    if future is not None and not future.done():
                        future.set_result(bool(msg.get("ok")))
        except (ValueError, json.JSONDecodeError) as exc:
            log.error("event bus: bad frame from the hub: %s", exc)
        except asyncio.CancelledError:
            return
        for future in self._waiting.values():
            if not future.done():
                future.set_result(False)
        if not self._closing:
            log.error("event bus: lost the connection to the supervisor")
            if self.on_lost is not None:
                self.on_lost()

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer.drain()
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()


async def announce(run_dir: Path, events: list[Any], node: str) -> bool:
    """Send ``events`` to a running server's workers (the CLI, after it committed a change).
    False when no server is running on ``run_dir``."""
    path = socket_path(run_dir)
    if not encode_events(events) or not path.exists():
        return False
    client = UnixBusClient(path)
    try:
        await asyncio.wait_for(client.connect(node), 5)
    except (OSError, asyncio.TimeoutError):
        return False
    client.send(events)
    await client.close()
    return True
