"""Store.flag_index from a snapshot plus the changes since (store/messages.py): the same index
a full read gives, and a full read whenever the snapshot does not fit the database."""

from __future__ import annotations

import asyncio
from array import array

import pytest

from postoffice.store import DELETED, FLAGGED, SEEN, Store
from postoffice.store import messages as messages_module


async def setup(store: Store, count: int) -> tuple[int, int]:
    await store.add_domain("example.com")
    account = await store.add_account("snap@example.com", "x")
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    await store.append(account.id, box.id, [(b"Subject: %d\r\n\r\nbody\r\n" % i, SEEN if i % 2 else 0,
                                             "$k%d" % i if i % 3 == 0 else "", 1.7e9 + i) for i in range(count)])
    return account.id, box.id


async def full_index(store: Store, mailbox_id: int) -> tuple:
    """flag_index with the snapshot out of the way: what the database alone says."""
    path = store.index_snapshots.path(mailbox_id)
    aside = path.with_name("aside")
    if path.exists():
        path.rename(aside)
    try:
        return await store.flag_index(mailbox_id)
    finally:
        if aside.exists():
            aside.rename(path)


async def snapshot_written(store: Store, mailbox_id: int) -> None:
    for _ in range(200):
        if store.index_snapshots.exists(mailbox_id):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no snapshot was written")


def no_full_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("the index was read whole although a snapshot fits")
    monkeypatch.setattr(messages_module, "_packed_columns", refuse)


async def test_a_restart_reads_the_snapshot_and_only_the_changes(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(messages_module, "INDEX_SNAPSHOT_AFTER", 10)
    account_id, mailbox_id = await setup(store, 30)
    first = await store.flag_index(mailbox_id)
    await snapshot_written(store, mailbox_id)
    # changes after the snapshot: flags and keywords set and cleared, expunges, new mail
    await store.store_flags(account_id, mailbox_id, [2, 3, 4], "add", FLAGGED, ["$new"])
    await store.store_flags(account_id, mailbox_id, [7, 10], "set", 0, [])  # clears $k6, $k9
    await store.store_flags(account_id, mailbox_id, [1, 5, 29], "add", DELETED, [])
    await store.expunge(account_id, mailbox_id)
    await store.append(account_id, mailbox_id, [(b"Subject: late\r\n\r\nx\r\n", 0, "$late", 1.8e9)])
    expected = await full_index(store, mailbox_id)
    assert expected[1] != first[1]
    with monkeypatch.context() as patch:
        no_full_reads(patch)
        got = await store.flag_index(mailbox_id)
    assert got == expected
    box, uids, bits, modseqs, keywords = got
    assert 1 not in uids and uids[-1] == 31 and keywords[31] == "$late"
    assert 7 not in keywords and set(keywords[4].split()) == {"$k3", "$new"}


async def test_a_snapshot_that_does_not_fit_is_not_used(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(messages_module, "INDEX_SNAPSHOT_AFTER", 10)
    account_id, mailbox_id = await setup(store, 20)
    await store.flag_index(mailbox_id)
    await snapshot_written(store, mailbox_id)
    key = messages_module.INDEX_SNAPSHOT_FORMAT
    uidvalidity, highest, uid_bytes, bit_bytes, modseq_bytes, keywords = store.index_snapshots.read(mailbox_id, key)
    expected = await full_index(store, mailbox_id)
    wrong = [
        (uidvalidity + 1, highest, uid_bytes, bit_bytes, modseq_bytes, keywords),  # another UIDVALIDITY
        (uidvalidity, highest + 5, uid_bytes, bit_bytes, modseq_bytes, keywords),  # newer than the database
        (uidvalidity, highest, uid_bytes[4:], bit_bytes[1:], modseq_bytes[8:], keywords),  # UID 1 missing
        (uidvalidity, highest, uid_bytes, bit_bytes[1:], modseq_bytes, keywords),  # torn arrays
        (uidvalidity, highest, uid_bytes, bit_bytes, modseq_bytes),  # another layout
    ]
    for data in wrong:
        store.index_snapshots.write(mailbox_id, key, data)
        assert await store.flag_index(mailbox_id) == expected
    # a snapshot holding a message the database never had (one restored from an older backup)
    extra = array("I", [99]).tobytes(), bytes([SEEN]), array("Q", [highest]).tobytes()
    store.index_snapshots.write(mailbox_id, key, (uidvalidity, highest, uid_bytes + extra[0], bit_bytes + extra[1],
                                                  modseq_bytes + extra[2], keywords))
    assert await store.flag_index(mailbox_id) == expected
    # and a snapshot that fits is used, after all that
    store.index_snapshots.write(mailbox_id, key, (uidvalidity, highest, uid_bytes, bit_bytes, modseq_bytes, keywords))
    with monkeypatch.context() as patch:
        no_full_reads(patch)
        assert await store.flag_index(mailbox_id) == expected
