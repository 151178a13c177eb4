"""The outbound queue as the CLI and the panel see it: list, show, retry, delete.

Entries are plain dataclasses (no store rows leak out). ``retry`` makes an entry due now; a running
server picks it up within a second. ``delete`` drops an entry without a bounce -- the operator's
explicit decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..mail.dsn import is_bounce

__all__ = ["QueueService", "QueueEntry", "QueueRecipient", "QueueError"]


class QueueError(Exception):
    """A queue operation the operator can fix (unknown id)."""


@dataclass(frozen=True)
class QueueRecipient:
    recipient: str
    domain: str
    status: str  # pending | delivered | failed
    last_error: str


@dataclass(frozen=True)
class QueueEntry:
    id: int
    mail_from: str
    created_at: float
    next_attempt: float
    attempts: int
    size: int
    recipients: tuple[QueueRecipient, ...]
    in_flight: bool = False

    @property
    def is_bounce(self) -> bool:
        return is_bounce(self.mail_from)

    @property
    def pending(self) -> list[QueueRecipient]:
        return [r for r in self.recipients if r.status == "pending"]

    @property
    def last_error(self) -> str:
        return next((r.last_error for r in self.pending if r.last_error), "")


def _entry(row: dict[str, Any], size: int) -> QueueEntry:
    return QueueEntry(
        id=int(row["id"]), mail_from=row["mail_from"], created_at=float(row["created_at"]),
        next_attempt=float(row["next_attempt"]), attempts=int(row["attempts"]), size=size,
        recipients=tuple(QueueRecipient(r["recipient"], r["domain"], r["status"], r["last_error"] or "")
                         for r in row["recipients"]),
        in_flight=bool(row.get("claimed_until")),
    )


class QueueService:
    def __init__(self, store: Any, worker: Any = None) -> None:
        self.store = store
        self.worker = worker  # a running QueueWorker to wake after retry (optional)

    async def _sizes(self, blob_ids: list[str]) -> dict[str, int]:
        info = await self.store.blob_info(blob_ids)
        return {k: v.size for k, v in info.items()}

    async def list(self) -> list[QueueEntry]:
        rows = await self.store.queue_entries()
        sizes = await self._sizes([r["blob_id"] for r in rows])
        return [_entry(r, sizes.get(r["blob_id"], 0)) for r in rows]

    async def show(self, queue_id: int) -> tuple[QueueEntry, bytes]:
        """The entry and the first 64 KiB of the message's header section."""
        row = await self.store.queue_get(queue_id)
        if row is None:
            raise QueueError(f"no queue entry {queue_id}")
        sizes = await self._sizes([row["blob_id"]])
        try:
            raw = await self.store.read_blob(row["blob_id"])
        except OSError:
            raw = b""
        end = raw.find(b"\r\n\r\n")
        head = raw[: end if end >= 0 else len(raw)][:65536]
        return _entry(row, sizes.get(row["blob_id"], 0)), head

    async def retry(self, queue_id: int | None = None) -> int:
        """Make ``queue_id`` (None: everything) due now; returns the number of entries."""
        count = int(await self.store.queue_retry(queue_id))
        if queue_id is not None and not count:
            raise QueueError(f"no queue entry {queue_id}")
        if self.worker is not None:
            self.worker.wake()
        return count

    async def delete(self, queue_id: int) -> None:
        if not await self.store.queue_delete(queue_id):
            raise QueueError(f"no queue entry {queue_id}")
