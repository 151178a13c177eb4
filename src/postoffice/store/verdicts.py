"""The spam filter's verdicts (issue 15, migration 15): one row per message and local
recipient account, so the panel can count received, rejected and junked mail per day."""

from __future__ import annotations

import time
from collections.abc import Sequence

from .db import Tx
from .rows import StoreBase

__all__ = ["VerdictStore"]


class VerdictStore(StoreBase):
    async def record_filter_verdicts(self, queue_id: str, account_ids: Sequence[int], action: str,
                                     score: float | None, *, at: float | None = None) -> None:
        """Keep ``action`` (rspamd's, or "unknown") for each of ``account_ids``."""
        if not account_ids:
            return
        when = time.time() if at is None else at

        def op(tx: Tx) -> None:
            for account_id in account_ids:
                tx.execute("INSERT INTO filter_verdicts (queue_id, account_id, action, score, at) VALUES (?, ?, ?, ?, ?)",
                           (queue_id, account_id, action, score, when))
        await self.db.write(op, durable=False)  # a count: losing the last few in a crash is fine

    async def filter_verdicts(self, account_id: int, *, since: float = 0.0) -> list[tuple[str, str, float | None, float]]:
        """(queue_id, action, score, at) of the verdicts for ``account_id``, oldest first."""
        def op(tx: Tx) -> list[tuple[str, str, float | None, float]]:
            return [(row[0], row[1], row[2], row[3]) for row in tx.all(
                "SELECT queue_id, action, score, at FROM filter_verdicts WHERE account_id = ? AND at >= ? "
                "ORDER BY at, rowid", (account_id, since))]
        return await self.db.read(op)
