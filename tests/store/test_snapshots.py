"""store/snapshots.py: a snapshot is read back only when whole and saved under the same key."""

from __future__ import annotations

from pathlib import Path

from postoffice.store.snapshots import Snapshots

ROWS = {1: (10, 1.5, 2.5, "subject", 0, "a", "a", "b", "b", "", "<m@x>", ["<r@x>"])}


def test_round_trip_and_key(tmp_path: Path) -> None:
    snaps = Snapshots(tmp_path / "sort")
    assert snaps.read(7, ("k", 1)) is None  # nothing saved yet
    snaps.write(7, ("k", 1), (1, ROWS))
    assert snaps.read(7, ("k", 1)) == (1, ROWS)
    assert snaps.read(7, ("k", 2)) is None  # saved under another key (UIDVALIDITY, format)
    assert not [p for p in (tmp_path / "sort").iterdir() if p.name.startswith(".")]  # no temp file left


def test_damaged_or_torn_files_read_as_missing(tmp_path: Path) -> None:
    snaps = Snapshots(tmp_path)
    snaps.write(1, "k", ROWS)
    whole = snaps.path(1).read_bytes()
    for broken in (whole[:-5], whole[:10], b"", b"garbage\n" + whole, whole[:-1] + bytes([whole[-1] ^ 1])):
        snaps.path(1).write_bytes(broken)
        assert snaps.read(1, "k") is None


def test_remove_except_keeps_live_mailboxes(tmp_path: Path) -> None:
    snaps = Snapshots(tmp_path)
    for ident in (1, 2, 3):
        snaps.write(ident, "k", {})
    assert snaps.remove_except({2}) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2"]
    assert Snapshots(tmp_path / "absent").remove_except(set()) == 0
