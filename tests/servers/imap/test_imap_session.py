"""The IMAP session's dispatch table and the selected-mailbox view over the shared index,
without sockets (a real store in tmp_path, its event bus on the test's loop)."""

from __future__ import annotations

import typing

import pytest

from postoffice.protocols.imap import STATE_COMMANDS, SequenceSet
from postoffice.protocols.imap import commands as c
from postoffice.servers.imap.selected import IndexRegistry, SelectedMailbox
from postoffice.servers.imap.session import HANDLERS
from postoffice.store import DELETED, SEEN, Store


def test_every_command_has_a_handler() -> None:
    commands = set(typing.get_args(c.Command))
    assert commands == set(HANDLERS)
    assert set().union(*STATE_COMMANDS.values()) <= set(HANDLERS)


async def _setup(store: Store, count: int) -> tuple[int, int]:
    account = await store.add_account("v@example.com", "x") if await store.get_domain("example.com") else None
    if account is None:
        await store.add_domain("example.com")
        account = await store.add_account("v@example.com", "x")
    for i in range(count):
        await store.deliver([(account.id, "INBOX")], b"Subject: %d\r\n\r\nx\r\n" % i)
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    return account.id, box.id


async def _open(store: Store, registry: IndexRegistry, mailbox_id: int) -> SelectedMailbox:
    box = await store.get_mailbox_by_id(mailbox_id)
    assert box is not None
    return await SelectedMailbox.open(registry, store.bus, box, box.name, False)  # type: ignore[attr-defined]


async def test_views_share_one_index_and_see_each_others_changes(store: Store) -> None:
    account_id, mailbox_id = await _setup(store, 3)
    registry = IndexRegistry(store, store.bus)  # type: ignore[attr-defined]
    me, other = object(), object()
    a = await _open(store, registry, mailbox_id)
    b = await _open(store, registry, mailbox_id)
    assert a.index is b.index and list(a.uids) == [1, 2, 3]
    await store.store_flags(account_id, mailbox_id, [2], "add", SEEN, (), origin=me)
    await store.deliver([(account_id, "INBOX")], b"Subject: new\r\n\r\nx\r\n")
    assert await a.sync(me, allow_expunge=True, qresync=False, condstore=False) == [b"* 4 EXISTS\r\n"]
    assert await b.sync(other, allow_expunge=True, qresync=False, condstore=True) == [
        b"* 4 EXISTS\r\n", b"* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ (%d))\r\n" % a.index.modseqs[1]]
    # expunges wait for a command that may report them; numbers stay stable meanwhile
    await store.store_flags(account_id, mailbox_id, [1, 3], "add", DELETED, ())
    await store.expunge(account_id, mailbox_id)
    held = await b.sync(other, allow_expunge=False, qresync=False, condstore=False)
    assert not any(line.endswith(b"EXPUNGE\r\n") for line in held)
    assert list(b.uids) == [1, 2, 3, 4] and b.pending_expunge == {1, 3}
    assert b.resolve(SequenceSet.parse(b"3"), False, None) == [2]
    assert await b.sync(other, allow_expunge=True, qresync=False, condstore=False) == [
        b"* 3 EXPUNGE\r\n", b"* 1 EXPUNGE\r\n"]
    assert await a.sync(me, allow_expunge=True, qresync=True, condstore=False) == [b"* VANISHED 1,3\r\n"]
    assert list(a.uids) == list(b.uids) == list(a.index.uids) == [2, 4]
    a.close(registry)
    b.close(registry)
    registry.close()


async def test_resolve_sequence_sets(store: Store) -> None:
    _, mailbox_id = await _setup(store, 5)
    registry = IndexRegistry(store, store.bus)  # type: ignore[attr-defined]
    v = await _open(store, registry, mailbox_id)
    assert v.resolve(SequenceSet.parse(b"2:*"), False, None) == [1, 2, 3, 4]
    assert v.resolve(SequenceSet.parse(b"4:99"), True, None) == [3, 4]
    assert v.resolve(SequenceSet.parse(b"*"), True, None) == [4]
    assert v.resolve(SequenceSet(saved=True), False, [2, 5, 9]) == [1, 4]
    assert v.resolve(SequenceSet(saved=True), False, None) == []
    with pytest.raises(ValueError):
        v.resolve(SequenceSet.parse(b"6"), False, None)
    v.close(registry)
    registry.close()


async def test_index_load_is_consistent_with_concurrent_changes(store: Store) -> None:
    account_id, mailbox_id = await _setup(store, 50)
    registry = IndexRegistry(store, store.bus)  # type: ignore[attr-defined]
    import asyncio

    task = asyncio.ensure_future(store.store_flags(account_id, mailbox_id, list(range(1, 51)), "add", SEEN, ()))
    v = await _open(store, registry, mailbox_id)
    await task
    await v.index.refresh()
    assert all(b & SEEN for b in v.index.bits)
    meta = {m.uid: m.modseq for m in await store.list_messages(mailbox_id)}
    assert dict(zip(v.index.uids, v.index.modseqs)) == meta
    v.close(registry)
    registry.close()


async def test_warm_index_of_a_deleted_mailbox_is_never_reused(store: Store) -> None:
    account_id, _ = await _setup(store, 0)
    registry = IndexRegistry(store, store.bus)  # type: ignore[attr-defined]
    old = await store.create_mailbox(account_id, "Temp")
    await store.append(account_id, old.id, [(b"Subject: x\r\n\r\ny\r\n", 0, "", 0.0)])
    v = await _open(store, registry, old.id)
    v.close(registry)  # now kept warm
    await store.delete_mailbox(account_id, "Temp")
    new = await store.create_mailbox(account_id, "Other")  # may get the same id
    w = await _open(store, registry, new.id)
    assert w.index.uidvalidity == new.uidvalidity and list(w.uids) == []
    w.close(registry)
    registry.close()
