"""The spam filter's verdicts (issue 15, migration 15): one row per message and local
recipient account, so the panel can count received, rejected and junked mail per day; whether
filtering is on per domain and per address (migration 16); the Junk threshold and the allow and
block lists of senders per domain and per address (migration 17, services/spampolicy.py)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from .db import Tx
from .rows import StoreBase

__all__ = ["VerdictStore", "PolicyRow", "ListRows"]

#: {"allow": entries, "block": entries} of one domain or address.
ListRows = dict[str, frozenset[str]]
#: One account's spam settings as stored: (filtering on, Junk threshold, its own lists, its
#: domain's lists); services/spampolicy.py makes a SpamPolicy of it.
PolicyRow = tuple[bool, "float | None", ListRows, ListRows]
NO_LISTS: ListRows = {"allow": frozenset(), "block": frozenset()}


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
                f"ORDER BY at, {tx.dialect.insertion_order}", (account_id, since))]
        return await self.db.read(op)

    async def verdict_counts(self, domain_id: int, since: float) -> tuple[list[tuple[int, str, int]], list[tuple[int, str, int]]]:
        """For the domain's addresses since ``since``: (day, action, count) with day the whole
        days after ``since`` (0, 1, ...), and (account_id, action, count)."""
        def op(tx: Tx) -> tuple[list[tuple[int, str, int]], list[tuple[int, str, int]]]:
            where = ("FROM filter_verdicts v JOIN accounts a ON a.id = v.account_id "
                     "WHERE a.domain_id = ? AND v.at >= ?")
            days = tx.all(f"SELECT {tx.dialect.whole_days('v.at - ?')} AS day, v.action, count(*) {where} "
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
        return await self.db.read(lambda tx: _wanted(tx, account_ids))

    # -- Junk threshold, allow and block lists (migration 17) -------------------------------

    async def spam_threshold(self, *, domain_id: int | None = None, account_id: int | None = None) -> float | None:
        """The stored Junk threshold of one domain or one address (None: not set)."""
        table, column, key = _switch(domain_id, account_id, "spam_threshold")
        return await self.db.read(lambda tx: tx.scalar(f"SELECT score FROM {table} WHERE {column} = ?", (key,)))

    async def set_spam_threshold(self, score: float | None, *, domain_id: int | None = None,
                                 account_id: int | None = None) -> None:
        """Set the Junk threshold of a domain or an address; None removes it."""
        table, column, key = _switch(domain_id, account_id, "spam_threshold")

        def op(tx: Tx) -> None:
            if score is None:
                tx.execute(f"DELETE FROM {table} WHERE {column} = ?", (key,))
            else:
                tx.execute(f"INSERT INTO {table} ({column}, score) VALUES (?, ?) "
                           f"ON CONFLICT ({column}) DO UPDATE SET score = excluded.score", (key, score))
        await self.db.write(op)

    async def sender_lists(self, *, domain_id: int | None = None, account_id: int | None = None) -> dict[str, list[str]]:
        """{"allow": [...], "block": [...]} of one domain or one address, sorted."""
        table, column, key = _switch(domain_id, account_id, "sender_lists")

        def op(tx: Tx) -> dict[str, list[str]]:
            lists: dict[str, list[str]] = {"allow": [], "block": []}
            for kind, entry in tx.all(f"SELECT kind, entry FROM {table} WHERE {column} = ? ORDER BY entry", (key,)):
                lists[kind].append(entry)
            return lists
        return await self.db.read(op)

    async def add_sender_entry(self, kind: str, entry: str, *, limit: int, domain_id: int | None = None,
                               account_id: int | None = None) -> bool:
        """Add ``entry`` (cleaned by spampolicy.clean_entry) to a list; False when the list
        already holds ``limit`` entries. Adding an entry that is there changes nothing."""
        table, column, key = _switch(domain_id, account_id, "sender_lists")

        def op(tx: Tx) -> bool:
            if tx.scalar(f"SELECT count(*) FROM {table} WHERE {column} = ? AND kind = ?", (key, kind)) >= limit:
                return False
            tx.execute(f"INSERT INTO {table} ({column}, kind, entry) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                       (key, kind, entry))
            return True
        return bool(await self.db.write(op))

    async def remove_sender_entry(self, kind: str, entry: str, *, domain_id: int | None = None,
                                  account_id: int | None = None) -> bool:
        """Remove an entry; False when the list did not hold it."""
        table, column, key = _switch(domain_id, account_id, "sender_lists")

        def op(tx: Tx) -> bool:
            return tx.execute(f"DELETE FROM {table} WHERE {column} = ? AND kind = ? AND entry = ?",
                              (key, kind, entry)).rowcount > 0
        return bool(await self.db.write(op))

    async def spam_policies(self, account_ids: Sequence[int]) -> dict[int, PolicyRow]:
        """Each account's switch, Junk threshold (its own, else its domain's) and lists, in one read."""
        if not account_ids:
            return {}

        def op(tx: Tx) -> dict[int, PolicyRow]:
            marks = ",".join("?" * len(account_ids))
            ids = tuple(account_ids)
            wanted = _wanted(tx, account_ids)
            rows = tx.all(
                "SELECT a.id, a.domain_id, coalesce(t.score, d.score) FROM accounts a "
                "LEFT JOIN account_spam_threshold t ON t.account_id = a.id "
                "LEFT JOIN domain_spam_threshold d ON d.domain_id = a.domain_id "
                f"WHERE a.id IN ({marks})", ids)
            own = _lists(tx.all(f"SELECT account_id, kind, entry FROM account_sender_lists WHERE account_id IN ({marks})",
                                ids))
            domain_ids = tuple({row[1] for row in rows})
            domains = _lists(tx.all(
                f"SELECT domain_id, kind, entry FROM domain_sender_lists WHERE domain_id IN ({','.join('?' * len(domain_ids))})",
                domain_ids)) if domain_ids else {}
            return {row[0]: (wanted[row[0]], row[2], own.get(row[0], NO_LISTS), domains.get(row[1], NO_LISTS))
                    for row in rows}
        return await self.db.read(op)


def _wanted(tx: Tx, account_ids: Sequence[int]) -> dict[int, bool]:
    marks = ",".join("?" * len(account_ids))
    rows = tx.all(
        "SELECT a.id, s.enabled, d.enabled FROM accounts a "
        "LEFT JOIN account_spam_filter s ON s.account_id = a.id "
        "LEFT JOIN domain_spam_filter d ON d.domain_id = a.domain_id "
        f"WHERE a.id IN ({marks})", tuple(account_ids))
    wanted = {row[0]: bool(row[1] if row[1] is not None else (row[2] if row[2] is not None else 1))
              for row in rows}
    return {account_id: wanted.get(account_id, True) for account_id in account_ids}


def _lists(rows: list[tuple[int, str, str]]) -> dict[int, ListRows]:
    found: dict[int, dict[str, set[str]]] = {}
    for key, kind, entry in rows:
        found.setdefault(key, {"allow": set(), "block": set()})[kind].add(entry)
    return {key: {kind: frozenset(entries) for kind, entries in kinds.items()} for key, kinds in found.items()}

def _switch(domain_id: int | None, account_id: int | None, table: str = "spam_filter") -> tuple[str, str, int]:
    """(table, key column, key) of a per-domain or per-address setting."""
    if (domain_id is None) == (account_id is None):
        raise ValueError("give exactly one of domain_id and account_id")
    if domain_id is not None:
        return f"domain_{table}", "domain_id", domain_id
    assert account_id is not None
    return f"account_{table}", "account_id", account_id
