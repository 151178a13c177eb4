"""UIDBATCHES (RFC 10022) end to end: UID ranges that split the selected mailbox into batches,
newest first, tiling the UID space down to 1, and the refusals (TOOFEW, CLIENTBUG, TOOMANY)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from postoffice.servers.imap.batches import MAX_BATCHES, MIN_BATCH_SIZE, batch_ranges
from tests.support.imapwire import Wire
from tests.support.server import RunningServer

PASSWORD = "password1"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("imapbatches") / "data") as server:
        yield server


def selected(srv: RunningServer, address: str, count: int) -> Wire:
    account = srv.add_account(address, PASSWORD)
    for i in range(count):
        srv.call(srv.store.deliver([(account.id, "INBOX")], b"Subject: %d\r\n\r\nbody\r\n" % i))
    w = Wire.tls(srv)
    assert w.cmd(b"l LOGIN %s %s" % (address.encode(), PASSWORD.encode()))[-1].startswith(b"l OK")
    assert w.cmd(b"s SELECT INBOX")[-1].startswith(b"s OK")
    return w


def test_batches_of_the_selected_mailbox(srv: RunningServer) -> None:
    w = selected(srv, "batches@example.com", 6)
    assert b" UIDBATCHES" in w.cmd(b"c CAPABILITY")[0]
    assert w.cmd(b"a UIDBATCHES 1000") == [b'* UIDBATCHES (TAG "a") 6:1', b"a OK UIDBATCHES completed"]
    assert w.cmd(b"b UIDBATCHES 500 1:1")[0] == b'* UIDBATCHES (TAG "b") 6:1'
    # past the last batch: no ranges
    assert w.cmd(b"d UIDBATCHES 500 2:3")[0] == b'* UIDBATCHES (TAG "d")'
    assert w.cmd(b"e UIDBATCHES 100")[-1].startswith(b"e NO [TOOFEW]")
    assert w.cmd(b"f UIDBATCHES 1000 4:1")[-1].startswith(b"f BAD [CLIENTBUG]")
    assert w.cmd(b"g UIDBATCHES 500 1:%d" % (MAX_BATCHES + 1))[-1].startswith(b"g NO [TOOMANY]")
    # after an expunge the ranges still reach down to UID 1
    w.cmd(b"x STORE 1 +FLAGS.SILENT (\\Deleted)")
    w.cmd(b"y EXPUNGE")
    assert w.cmd(b"h UIDBATCHES 500")[0] == b'* UIDBATCHES (TAG "h") 6:1'
    assert w.cmd(b"n NOOP")[-1].startswith(b"n OK")


def test_empty_mailbox_and_not_selected(srv: RunningServer) -> None:
    w = selected(srv, "nobatches@example.com", 0)
    assert w.cmd(b"a UIDBATCHES 1000") == [b'* UIDBATCHES (TAG "a")', b"a OK UIDBATCHES completed"]
    assert w.cmd(b"u UNSELECT")[-1].startswith(b"u OK")
    assert w.cmd(b"b UIDBATCHES 1000")[-1].startswith(b"b BAD")


def test_ranges_tile_the_uid_space_newest_first() -> None:
    """The RFC's example shape: four batches over UIDs with gaps; each range starts one below
    the previous one's lowest UID and the oldest reaches 1."""
    uids = [u * 3 for u in range(1, 2001)]  # 3, 6, ..., 6000
    ranges = batch_ranges(uids, MIN_BATCH_SIZE)
    assert ranges == [(6000, 4503), (4502, 3003), (3002, 1503), (1502, 1)]
    assert batch_ranges(uids, MIN_BATCH_SIZE, 2, 3) == ranges[1:3]
    assert batch_ranges(uids, 700) == [(6000, 3903), (3902, 1803), (1802, 1)]
    assert batch_ranges([], 500) == [] and batch_ranges(uids, 500, 5, 9) == []
