"""The store on a real SQLite file and on PostgreSQL: UIDs, modseqs, tombstones, delivery, mailboxes."""

from __future__ import annotations

import asyncio

import pytest

from postoffice.store import (
    DELETED,
    SEEN,
    AlreadyExists,
    FlagsChanged,
    InvalidName,
    MessagesAdded,
    MessagesExpunged,
    NotFound,
    QuotaExceeded,
    Store,
    validate_mailbox_name,
)

MESSAGE = b"From: a@example.org\r\nTo: alice@example.com\r\nSubject: hi\r\n\r\nHello\r\n"


async def make_account(store: Store, address: str = "alice@example.com", **kw):
    domain = address.rpartition("@")[2]
    if await store.get_domain(domain) is None:
        await store.add_domain(domain)
    return await store.add_account(address, "x", **kw)


async def inbox(store: Store, account):
    return await store.get_mailbox(account.id, "INBOX")


async def test_get_login_reads_account_domain_and_app_password_rule_together(store: Store) -> None:
    account = await make_account(store)
    assert await store.get_login("nobody@example.com") is None
    found, domain, only_app_passwords = await store.get_login(account.address)
    assert found == account and domain is not None and domain.name == "example.com"
    assert only_app_passwords is False
    await store.set_app_passwords_only(account.id, True)
    assert (await store.get_login(account.address))[2] is True


async def test_new_account_has_inbox_and_special_use_folders(store: Store) -> None:
    account = await make_account(store)
    boxes = {b.name: b.special_use for b in await store.list_mailboxes(account.id)}
    assert boxes == {"INBOX": None, "Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash",
                     "Junk": "\\Junk", "Archive": "\\Archive"}
    validities = [b.uidvalidity for b in await store.list_mailboxes(account.id)]
    assert len(set(validities)) == len(validities)


async def test_duplicate_account_and_alias_refused(store: Store) -> None:
    await make_account(store)
    with pytest.raises(AlreadyExists):
        await store.add_account("alice@example.com", "x")
    with pytest.raises(AlreadyExists):
        await store.add_alias("alice@example.com", ["bob@example.com"])
    with pytest.raises(NotFound):
        await store.add_account("bob@unknown.example", "x")


async def test_deliver_is_readable_and_parsed_once(store: Store) -> None:
    account = await make_account(store)
    [done] = await store.deliver([(account.id, "INBOX")], MESSAGE)
    assert done.uid == 1
    [meta] = await store.list_messages(done.mailbox_id)
    assert meta.size == len(MESSAGE) and meta.flags == 0
    assert await store.read_blob(meta.blob_id) == MESSAGE
    info = (await store.blob_info([meta.blob_id]))[meta.blob_id]
    assert info.envelope is not None and b'"hi"' in info.envelope
    assert info.bodystructure is not None and b'"TEXT" "PLAIN"' in info.bodystructure.upper()
    fields = await store.search_fields(done.mailbox_id)
    assert fields[1]["subject"] == "hi"


async def test_several_recipients_share_one_blob(store: Store) -> None:
    a = await make_account(store, "alice@example.com")
    b = await make_account(store, "bob@example.com")
    delivered = await store.deliver([(a.id, "INBOX"), (b.id, "INBOX")], MESSAGE)
    blobs = {(await store.list_messages(d.mailbox_id))[0].blob_id for d in delivered}
    assert len(blobs) == 1
    files = list(store.blobs.all_ids())
    assert files == list(blobs)


async def test_bare_lf_is_stored_as_crlf(store: Store) -> None:
    account = await make_account(store)
    [done] = await store.deliver([(account.id, "INBOX")], b"Subject: x\n\nbody\n")
    [meta] = await store.list_messages(done.mailbox_id)
    assert await store.read_blob(meta.blob_id) == b"Subject: x\r\n\r\nbody\r\n"
    assert meta.size == len(b"Subject: x\r\n\r\nbody\r\n")


async def test_uids_strictly_increase_and_are_never_reused(store: Store) -> None:
    account = await make_account(store)
    box = await inbox(store, account)
    uids = []
    for i in range(5):
        uids.append((await store.deliver([(account.id, "INBOX")], MESSAGE + str(i).encode()))[0].uid)
    assert uids == [1, 2, 3, 4, 5]
    await store.store_flags(account.id, box.id, [4, 5], "add", DELETED, [])
    assert await store.expunge(account.id, box.id) == [4, 5]
    after = (await store.deliver([(account.id, "INBOX")], MESSAGE))[0].uid
    assert after == 6
    assert [m.uid for m in await store.list_messages(box.id)] == [1, 2, 3, 6]


async def test_modseq_rises_on_every_change_and_tombstones_answer_vanished(store: Store) -> None:
    account = await make_account(store)
    box = await inbox(store, account)
    for i in range(3):
        await store.deliver([(account.id, "INBOX")], MESSAGE + bytes([65 + i]))
    seen = []
    status = await store.mailbox_status(box.id)
    seen.append(status.highestmodseq)
    changed, _ = await store.store_flags(account.id, box.id, [1], "add", SEEN, ["$Important"])
    assert changed[0][1] == SEEN and changed[0][2] == "$Important"
    seen.append((await store.mailbox_status(box.id)).highestmodseq)
    # a no-op change does not bump the modseq
    changed, _ = await store.store_flags(account.id, box.id, [1], "add", SEEN, [])
    assert changed == []
    assert (await store.mailbox_status(box.id)).highestmodseq == seen[-1]
    await store.store_flags(account.id, box.id, [2], "add", DELETED, [])
    seen.append((await store.mailbox_status(box.id)).highestmodseq)
    await store.expunge(account.id, box.id)
    seen.append((await store.mailbox_status(box.id)).highestmodseq)
    assert seen == sorted(set(seen))
    changed_msgs, vanished = await store.changes_since(box.id, seen[0])
    assert [m.uid for m in changed_msgs] == [1]
    assert vanished == [2]
    changed_msgs, vanished = await store.changes_since(box.id, seen[-1])
    assert changed_msgs == [] and vanished == []


async def test_unchangedsince_refuses_modified_messages(store: Store) -> None:
    account = await make_account(store)
    box = await inbox(store, account)
    await store.deliver([(account.id, "INBOX")], MESSAGE)
    await store.deliver([(account.id, "INBOX")], MESSAGE + b"2")
    base = (await store.mailbox_status(box.id)).highestmodseq
    await store.store_flags(account.id, box.id, [1], "add", SEEN, [])
    changed, failed = await store.store_flags(account.id, box.id, [1, 2], "add", DELETED, [], unchangedsince=base)
    assert failed == [1] and [c[0] for c in changed] == [2]


async def test_copy_and_move_assign_new_uids(store: Store) -> None:
    account = await make_account(store)
    box = await inbox(store, account)
    archive = await store.get_mailbox(account.id, "Archive")
    for i in range(3):
        await store.deliver([(account.id, "INBOX")], MESSAGE + bytes([65 + i]))
    validity, pairs = await store.copy_messages(account.id, box.id, [1, 3], archive.id)
    assert validity == archive.uidvalidity and pairs == [(1, 1), (3, 2)]
    _, pairs = await store.copy_messages(account.id, box.id, [2], archive.id, move=True)
    assert pairs == [(2, 3)]
    assert [m.uid for m in await store.list_messages(box.id)] == [1, 3]
    _, vanished = await store.changes_since(box.id, 0)
    assert vanished == [2]


async def test_events_are_published_after_commit(store: Store) -> None:
    account = await make_account(store)
    box = await inbox(store, account)
    sub = store.bus.subscribe(mailbox_id=box.id)  # type: ignore[attr-defined]
    await store.deliver([(account.id, "INBOX")], MESSAGE)
    await store.store_flags(account.id, box.id, [1], "add", DELETED, [])
    await store.expunge(account.id, box.id)
    events = []
    while len(events) < 3:
        events.extend(await sub.wait(2))
    assert [type(e) for e in events] == [MessagesAdded, FlagsChanged, MessagesExpunged]
    assert events[0].uids == (1,) and events[2].uids == (1,)


async def test_messages_added_carries_what_a_mailbox_index_keeps(store: Store) -> None:
    from postoffice.services.events import decode_events, dumps, encode_events

    account = await make_account(store)
    box = await inbox(store, account)
    sub = store.bus.subscribe(mailbox_id=box.id)  # type: ignore[attr-defined]
    await store.append(account.id, box.id, [(MESSAGE, SEEN, "$label1", 1_700_000_000.0, 120)])
    [event] = await sub.wait(2)
    assert isinstance(event, MessagesAdded)
    assert event.message_metas() == await store.get_messages(box.id, event.uids)
    # as it reaches another worker process, through the bus's JSON
    import json
    [copied] = decode_events(json.loads(dumps(encode_events([event]))))
    assert copied == event and copied.message_metas() == event.message_metas()


async def test_get_messages_with_info_is_both_reads_in_one(store: Store) -> None:
    account = await make_account(store)
    box = await inbox(store, account)
    for i in range(3):
        await store.deliver([(account.id, "INBOX")], MESSAGE + str(i).encode())
    metas, infos = await store.get_messages_with_info(box.id, [3, 1, 9])
    assert metas == await store.get_messages(box.id, [1, 3])
    assert infos == await store.blob_info([m.blob_id for m in metas])
    assert all(info.envelope for info in infos.values())


async def test_quota_is_enforced_and_nothing_stored(store: Store) -> None:
    account = await make_account(store, quota_bytes=len(MESSAGE) + 10)
    await store.deliver([(account.id, "INBOX")], MESSAGE)
    with pytest.raises(QuotaExceeded):
        await store.deliver([(account.id, "INBOX")], MESSAGE + b"more")
    assert len(await store.list_messages((await inbox(store, account)).id)) == 1
    assert await store.quota_used(account.id) == len(MESSAGE)


async def test_mailbox_create_rename_delete(store: Store) -> None:
    account = await make_account(store)
    await store.create_mailbox(account.id, "Work/Projects/2026")
    names = [b.name for b in await store.list_mailboxes(account.id)]
    assert "Work" in names and "Work/Projects" in names
    await store.rename_mailbox(account.id, "Work", "Job")
    names = [b.name for b in await store.list_mailboxes(account.id)]
    assert "Job/Projects/2026" in names and "Work/Projects" not in names
    with pytest.raises(AlreadyExists):
        await store.delete_mailbox(account.id, "Job")  # has children
    await store.delete_mailbox(account.id, "Job/Projects/2026")
    with pytest.raises(InvalidName):
        await store.delete_mailbox(account.id, "INBOX")


async def test_children_are_found_by_their_exact_parent_name(store: Store) -> None:
    """Names are case-sensitive (RFC 9051 §5.1) and may hold LIKE's wildcards: "work/x" is no
    child of "Work", "a_b/c" none of "axb", on either backend."""
    account = await make_account(store)
    for name in ("Work", "work/x", "axb", "a_b/c", "Work/y"):
        await store.create_mailbox(account.id, name)
    await store.set_subscribed(account.id, "work/x", True)
    await store.rename_mailbox(account.id, "Work", "Job")
    names = {b.name for b in await store.list_mailboxes(account.id)}
    assert {"Job", "Job/y", "work", "work/x", "axb", "a_b/c"} <= names and "Work/y" not in names
    assert "work/x" in await store.list_subscriptions(account.id)
    await store.delete_mailbox(account.id, "Job/y")
    await store.delete_mailbox(account.id, "Job")  # "work/x" is not its child
    await store.delete_mailbox(account.id, "axb")


async def test_renaming_inbox_moves_its_messages(store: Store) -> None:
    account = await make_account(store)
    await store.deliver([(account.id, "INBOX")], MESSAGE)
    await store.rename_mailbox(account.id, "INBOX", "Old")
    old = await store.get_mailbox(account.id, "Old")
    assert len(await store.list_messages(old.id)) == 1
    assert await store.list_messages((await inbox(store, account)).id) == []


@pytest.mark.parametrize("name", ["", "a//b", "/abs", "a/", "../x", "a/../b", "bad\x00", "tab\tname", "star*", "pct%"])
def test_invalid_mailbox_names(name: str) -> None:
    with pytest.raises(InvalidName):
        validate_mailbox_name(name)


def test_inbox_is_case_insensitive() -> None:
    assert validate_mailbox_name("inbox/Sub") == "INBOX/Sub"


async def test_concurrent_deliveries_are_group_committed(store: Store) -> None:
    account = await make_account(store)
    results = await asyncio.gather(*[store.deliver([(account.id, "INBOX")], MESSAGE + str(i).encode())
                                     for i in range(200)])
    assert sorted(r[0].uid for r in results) == list(range(1, 201))


async def test_garbage_collection_removes_only_unreferenced_blobs(store: Store) -> None:
    account = await make_account(store)
    box = await inbox(store, account)
    await store.deliver([(account.id, "INBOX")], MESSAGE)
    await store.deliver([(account.id, "INBOX")], MESSAGE + b"gone")
    await store.store_flags(account.id, box.id, [2], "add", DELETED, [])
    await store.expunge(account.id, box.id)
    assert await store.collect_garbage(grace=-1) == 1
    [meta] = await store.list_messages(box.id)
    assert await store.read_blob(meta.blob_id) == MESSAGE


async def test_garbage_collection_removes_files_of_refused_deliveries(store: Store) -> None:
    account = await make_account(store, quota_bytes=10)
    with pytest.raises(QuotaExceeded):
        await store.deliver([(account.id, "INBOX")], MESSAGE)  # the body was written first
    assert len(list(store.blobs.all_ids())) == 1
    assert await store.collect_garbage(grace=3600) == 0  # too young: maybe a delivery in flight
    assert await store.collect_garbage(grace=-1) == 1
    assert list(store.blobs.all_ids()) == []


async def test_recent_claims_never_overlap(store: Store) -> None:
    """RFC 3501 2.3.2: exactly one session gets a message as \\Recent. Claims made at once
    (as by sessions in several processes) hand out disjoint UID ranges that cover each
    message once; a claim below the watermark gets nothing."""
    import asyncio

    await store.add_domain("example.com")
    account = await store.add_account("recent@example.com", "x")
    box = await store.get_mailbox(account.id, "INBOX")
    for i in range(6):
        await store.deliver([(account.id, "INBOX")], b"Subject: %d\r\n\r\nx\r\n" % i)
    assert (await store.mailbox_status(box.id)).recent == 6
    uptos = [3, 7, 5, 7, 2, 4]
    firsts = await asyncio.gather(*(store.claim_recent(box.id, u) for u in uptos))
    claimed = [uid for first, upto in zip(firsts, uptos) for uid in range(first, upto)]
    assert sorted(claimed) == [1, 2, 3, 4, 5, 6]
    assert await store.first_unclaimed_uid(box.id) == 7
    assert (await store.mailbox_status(box.id)).recent == 0
    assert await store.claim_recent(box.id, 5) == 7  # nothing left below 5


async def test_flag_index_matches_the_messages_row_by_row(store: Store) -> None:
    """The IMAP index's arrays (read packed, store.messages._packed_columns) hold each
    message's UID, flag bits and MODSEQ in UID order, and the keywords of those that have
    some; an empty mailbox gives empty arrays."""
    account = await make_account(store)
    box = await inbox(store, account)
    _, uids, bits, modseqs, keywords = await store.flag_index(box.id)
    assert (list(uids), bytes(bits), list(modseqs), keywords) == ([], b"", [], {})
    for i in range(300):  # UIDs past 255 and 65535-wide hex, flags and modseqs of each kind
        await store.deliver([(account.id, "INBOX")], MESSAGE + str(i).encode())
    await store.store_flags(account.id, box.id, list(range(1, 300, 3)), "add", SEEN, [])
    await store.store_flags(account.id, box.id, [10, 260], "add", SEEN, ["$Work"])
    await store.store_flags(account.id, box.id, [7, 299], "add", DELETED, [])
    await store.expunge(account.id, box.id)
    _, uids, bits, modseqs, keywords = await store.flag_index(box.id)
    messages = await store.list_messages(box.id)
    assert list(uids) == [m.uid for m in messages] and len(uids) == 298
    assert list(bits) == [m.flags & 255 for m in messages]
    assert list(modseqs) == [m.modseq for m in messages]
    assert keywords == {m.uid: m.keywords for m in messages if m.keywords} == {10: "$Work", 260: "$Work"}


async def test_nul_in_text_is_stored_on_either_backend(store: Store) -> None:
    """A NUL (a remote server's garbage reply, a broken header) cannot go into PostgreSQL's
    text: it is kept as U+FFFD rather than failing the write."""
    account = await make_account(store)
    [delivered] = await store.deliver([(account.id, "INBOX")], b"Subject: a\x00b\r\n\r\nbody\r\n")
    fields = await store.search_fields(delivered.mailbox_id)
    assert fields[delivered.uid]["subject"] in ("a\x00b", "a\ufffdb")
    queue_id = await store.enqueue("alice@example.com", ["bob@remote.test"], MESSAGE)
    [entry] = await store.queue_entries()
    await store.queue_finish(queue_id, deferred=[(entry["recipients"][0]["id"], "4.0.0 \x00\x01 garbage")],
                             next_attempt=0)
    [entry] = await store.queue_entries()
    assert entry["recipients"][0]["last_error"] in ("4.0.0 \x00\x01 garbage", "4.0.0 \ufffd\x01 garbage")


async def test_internaldate_zone_is_kept_by_append_copy_and_move(store: Store) -> None:
    # RFC 9051 6.4.4 SEARCH dates and FETCH INTERNALDATE need the zone APPEND was given
    account = await make_account(store)
    box = await inbox(store, account)
    archive = await store.get_mailbox(account.id, "Archive")
    await store.deliver([(account.id, "INBOX")], MESSAGE)
    await store.append(account.id, box.id, [(MESSAGE + b"2", 0, "", 1704144600.0, 120),
                                            (MESSAGE + b"3", 0, "", 1704144600.0, -450),
                                            (MESSAGE + b"4", 0, "", 1704144600.0)])
    assert [m.internal_zone for m in await store.list_messages(box.id)] == [0, 120, -450, 0]
    uids, _, dates, zones = await store.message_details(box.id)
    assert list(uids) == [1, 2, 3, 4] and list(zones) == [0, 120, -450, 0] and dates[1] == 1704144600.0
    await store.copy_messages(account.id, box.id, [2], archive.id)
    await store.copy_messages(account.id, box.id, [3], archive.id, move=True)
    copied = await store.list_messages(archive.id)
    assert [(m.internal_date, m.internal_zone) for m in copied] == [(1704144600.0, 120), (1704144600.0, -450)]
