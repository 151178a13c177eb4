"""The spam filter's verdicts (issue 15, migration 15): one row per message and local
recipient account, so the panel can count received, rejected and junked mail per day; and
whether filtering is on per domain and per address (migration 16)."""

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

    async def verdict_counts(self, domain_id: int, since: float) -> tuple[list[tuple[int, str, int]], list[tuple[int, str, int]]]:
        """For the domain's addresses since ``since``: (day, action, count) with day the whole
        days after ``since`` (0, 1, ...), and (account_id, action, count)."""
        def op(tx: Tx) -> tuple[list[tuple[int, str, int]], list[tuple[int, str, int]]]:
            where = ("FROM filter_verdicts v JOIN accounts a ON a.id = v.account_id "
                     "WHERE a.domain_id = ? AND v.at >= ?")
            days = tx.all(f"SELECT CAST((v.at - ?) / 86400 AS INTEGER) AS day, v.action, count(*) {where} "
                          "GROUP BY day, v.action", (since, domain_id, since))
            accounts = tx.all(f"SELECT v.account_id, v.action, count(*) {where} GROUP BY v.account_id, v.action",
                              (domain_id, since))
            return ([(int(r[0]), r[1], int(r[2])) for r in days], [(int(r[0]), r[1], int(r[2])) for r in accounts])
        return await self.db.read(op)

    # -- on/off per domain and per address --------------------------------------------------

    async def spam_filter_setting(self, *, domain_id: int | None = None, account_id: int | None = None) -> bool | None:
        """The stored switch of one domain or one address (None: not set, i.e. inherited)."""
        table, column, key = _switch(domain_id, account_id)

        def op(tx: Tx) -> bool | None:
            row = tx.one(f"SELECT enabled FROM {table} WHERE {column} = ?", (key,))
            return None if row is None else bool(row[0])
        return await self.db.read(op)

    async def set_spam_filter(self, enabled: bool | None, *, domain_id: int | None = None,
                              account_id: int | None = None) -> None:
        """Switch filtering on or off for a domain or an address; None removes the setting."""
        table, column, key = _switch(domain_id, account_id)

        def op(tx: Tx) -> None:
            if enabled is None:
                tx.execute(f"DELETE FROM {table} WHERE {column} = ?", (key,))
            else:
                tx.execute(f"INSERT INTO {table} ({column}, enabled) VALUES (?, ?) "
                           f"ON CONFLICT ({column}) DO UPDATE SET enabled = excluded.enabled", (key, int(enabled)))
        await self.db.write(op)

    async def spam_filter_wanted(self, account_ids: Sequence[int]) -> dict[int, bool]:
        """Per account: is its mail filtered? The address's switch, else its domain's, else on."""
        if not account_ids:
            return {}

        def op(tx: Tx) -> dict[int, bool]:
            marks = ",".join("?" * len(account_ids))
            rows = tx.all(
                "SELECT a.id, s.enabled, d.enabled FROM accounts a "
                "LEFT JOIN account_spam_filter s ON s.account_id = a.id "
                "LEFT JOIN domain_spam_filter d ON d.domain_id = a.domain_id "
                f"WHERE a.id IN ({marks})", tuple(account_ids))
            wanted = {row[0]: bool(row[1] if row[1] is not None else (row[2] if row[2] is not None else 1))
                      for row in rows}
            return {account_id: wanted.get(account_id, True) for account_id in account_ids}
        return await self.db.read(op)


def _switch(domain_id: int | None, account_id: int | None) -> tuple[str, str, int]:
    if (domain_id is None) == (account_id is None):
        raise ValueError("give exactly one of domain_id and account_id")
    if domain_id is not None:
        return "domain_spam_filter", "domain_id", domain_id
    assert account_id is not None
    return "account_spam_filter", "account_id", account_id
