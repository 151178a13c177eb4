"""A message on its way to the store: its header block in memory, its body in memory or spooled.

`MessageSource` is what SMTP hands to delivery, DKIM and the store instead of one big ``bytes``:
``header`` holds the header block (and, for a small message, everything); ``body`` is a tuple of
segments, each bytes or a range of a spool file. Adding trace fields (`prepend`) or rewriting
the header block (`replace_header`) never copies the body; only the code that finally needs
the whole message contiguously (`read`: MIME analysis, DKIM, the blob write) reads it, and that
runs in a worker process (``postoffice.cpu``) for large messages. A MessageSource pickles
cheaply (the spooled body goes as a file name).

`SpoolWriter` builds one while DATA or BDAT arrives: it finds the end of the header block,
keeps the header in memory (it is bounded: ``max_header``) and writes the body to a file under
``run_dir/spool`` (run_dir: data_dir unless set) once it passes ``inline`` octets. The file is not durable and needs no
fsync: nothing is acknowledged until the store committed its own copy (``store.blobs``), and
`Spool.clean` removes at start-up the files of processes that are gone (left by a kill -9).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from ..mail.headers import find_header_end
from .blobs import process_alive

__all__ = ["FileRange", "MessageSource", "Spool", "SpoolWriter", "HeaderTooLarge", "needs_process"]

#: Body octets kept in memory before a message goes to a spool file.
INLINE_BODY = 256 * 1024
#: Octets collected in memory before they are written to the spool file in one call.
WRITE_BATCH = 1024 * 1024
#: Messages up to this size are parsed, hashed and signed in a thread; larger ones (and spooled
#: ones) in a worker process. The message code is linear (mail/), so below this it holds the GIL
#: for milliseconds at most; above it, long enough to be felt by every session of the process.
INLINE_PARSE_LIMIT = 256 * 1024


def needs_process(message: bytes | bytearray | MessageSource) -> bool:
    """True if CPU work over the whole of ``message`` belongs in a worker process."""
    if isinstance(message, MessageSource):
        return not message.in_memory or message.size > INLINE_PARSE_LIMIT
    return len(message) > INLINE_PARSE_LIMIT


@dataclass(frozen=True, slots=True)
class FileRange:
    path: str
    start: int
    end: int

    def read(self) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(self.start)
            data = f.read(self.end - self.start)
        if len(data) != self.end - self.start:
            raise OSError(f"spool file {self.path} is shorter than expected")
        return data

    def __len__(self) -> int:
        return self.end - self.start


Segment = Union[bytes, FileRange]


@dataclass(frozen=True, slots=True)
class MessageSource:
    """``header`` (in memory; starts with the header block) followed by the ``body`` segments."""

    header: bytes
    body: tuple[Segment, ...] = ()

    @classmethod
    def of(cls, message: bytes | bytearray | MessageSource) -> MessageSource:
        if isinstance(message, MessageSource):
            return message
        return cls(bytes(message))

    @property
    def size(self) -> int:
        return len(self.header) + sum(len(s) for s in self.body)

    def __len__(self) -> int:
        return self.size

    @property
    def in_memory(self) -> bool:
        return all(isinstance(s, bytes) for s in self.body)

    @property
    def spooled(self) -> tuple[str, ...]:
        """Spool files this message reads from."""
        return tuple(dict.fromkeys(s.path for s in self.body if isinstance(s, FileRange)))

    def header_end(self) -> int:
        """Offset in ``header`` just past the blank line ending the header block."""
        return find_header_end(self.header, 0, len(self.header))

    def header_block(self) -> bytes:
        return self.header[:self.header_end()]

    def prepend(self, data: bytes) -> MessageSource:
        """``data`` (whole header fields, CRLF-terminated) in front of the message."""
        return MessageSource(data + self.header, self.body) if data else self

    def replace_header(self, block: bytes) -> MessageSource:
        """The same message with its header block replaced by ``block``."""
        return MessageSource(block + self.header[self.header_end():], self.body)

    def read(self) -> bytes:
        """The whole message as one bytes object (reads spool files: not on an event loop)."""
        if not self.body:
            return self.header
        return b"".join([self.header, *(s if isinstance(s, bytes) else s.read() for s in self.body)])


class HeaderTooLarge(Exception):
    """The header block grew past ``max_header`` octets (SMTP answers 552)."""


class Spool:
    """The directory spool files go to (``run_dir/spool``: each node has its own)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def clean(self) -> None:
        """Remove the files of processes that are gone (a kill -9 mid-receive). A file is named
        after the pid that writes it: those of live processes (the node's other workers,
        receiving right now while one restarts, or while the CLI opens the store) stay. The
        directory is the node's own (``[server] run_dir``): pids mean nothing on another host."""
        for f in self.root.iterdir():
            pid = f.name.partition(".")[0]
            if not (pid.isdigit() and process_alive(int(pid))):
                f.unlink(missing_ok=True)

    def write(self, source: MessageSource | bytes | bytearray) -> MessageSource:
        """``source`` written to a new spool file, as a source reading it (blocking)."""
        path = self.new_path()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        pieces = (source.header, *source.body) if isinstance(source, MessageSource) else (source,)
        try:
            for piece in pieces:
                view = memoryview(piece.read() if isinstance(piece, FileRange) else piece)
                while view:
                    view = view[os.write(fd, view):]
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        os.close(fd)
        return MessageSource(b"", (FileRange(path, 0, len(source)),))

    def writer(self, *, max_header: int, inline: int = INLINE_BODY) -> SpoolWriter:
        return SpoolWriter(self, max_header=max_header, inline=inline)

    def new_path(self) -> str:
        return str(self.root / f"{os.getpid()}.{secrets.token_hex(8)}")


class SpoolWriter:
    """Collects one message as it arrives (see the module docstring).

    ``feed(chunk)`` is cheap and never blocks: the server calls it on the event loop with each
    piece of DATA/BDAT text. When ``pending_write`` is true the caller runs ``flush()`` in a
    thread. ``finish()`` (in a thread when ``spooled``) returns the `MessageSource`;
    ``discard()`` removes the file. Raises `HeaderTooLarge` from ``feed`` when the header
    block passes ``max_header`` octets without ending."""

    def __init__(self, spool: Spool, *, max_header: int, inline: int = INLINE_BODY) -> None:
        self.spool = spool
        self.max_header = max_header
        self.inline = inline
        self.header = bytearray()
        self.header_done = False
        self.body: list[bytes] = []
        self.body_size = 0
        self.pending = 0  # body octets in ``body`` not yet written to the file
        self.path: str | None = None
        self.written = 0  # octets in the file
        self._fd: int | None = None

    @property
    def size(self) -> int:
        return len(self.header) + self.body_size

    @property
    def spooled(self) -> bool:
        return self.path is not None

    @property
    def pending_write(self) -> bool:
        return self.pending >= WRITE_BATCH or (self.path is None and self.body_size > self.inline)

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        if not self.header_done:
            start = max(0, len(self.header) - 3)
            self.header += chunk
            end = _header_end(self.header, start)
            if end < 0:
                if len(self.header) > self.max_header:
                    raise HeaderTooLarge(len(self.header))
                return
            self.header_done = True
            rest = bytes(self.header[end:])
            del self.header[end:]
            if len(self.header) > self.max_header:
                raise HeaderTooLarge(len(self.header))
            chunk = rest
            if not chunk:
                return
        self.body.append(chunk)
        self.body_size += len(chunk)
        self.pending += len(chunk)

    def flush(self) -> None:
        """Write the collected body octets to the spool file (blocking: run in a thread)."""
        if not self.body:
            return
        if self._fd is None:
            self.path = self.spool.new_path()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        data = b"".join(self.body)
        self.body.clear()
        self.pending = 0
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.written += len(data)

    def finish(self) -> MessageSource:
        """The message (blocking when spooled: run in a thread)."""
        header = bytes(self.header)
        if self._fd is None:
            return MessageSource(header + b"".join(self.body) if self.body else header)
        self.flush()
        os.close(self._fd)
        self._fd = None
        assert self.path is not None
        return MessageSource(header, (FileRange(self.path, 0, self.written),))

    def discard(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.path = None
        self.body.clear()
        self.header.clear()


def _header_end(buf: bytearray, start: int) -> int:
    """End of the header block in ``buf`` (just past its blank line), searching from ``start``;
    -1 when it has not arrived yet. SMTP text is CRLF-canonical by now (bare line ends were
    refused or normalised), so a CRLF CRLF, or CRLF at the very start, ends it."""
    if buf[:2] == b"\r\n":
        return 2
    at = buf.find(b"\r\n\r\n", start)
    return at + 4 if at >= 0 else -1


def discard(source: MessageSource) -> None:
    """Remove the spool files of ``source`` (blocking)."""
    for path in source.spooled:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
