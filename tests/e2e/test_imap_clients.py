"""A real IMAP client against the server: mbsync (isync) syncing a mailbox both ways over 993.

mutt, offlineimap and getmail6 are driven in tests/e2e/test_real_clients.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support.imapwire import Wire
from tests.support.server import RunningServer
from tests.support.tools import require_tool

PASSWORD = "password1"


def mbsyncrc(srv: RunningServer, tmp: Path, address: str) -> Path:
    maildir = tmp / "mail"
    maildir.mkdir(exist_ok=True)
    cert = srv.config.data_path / "tls" / "selfsigned.crt"
    rc = tmp / "mbsyncrc"
    rc.write_text(f"""\
IMAPAccount po
Host localhost
Port {srv.port("imaps")}
User {address}
Pass {PASSWORD}
SSLType IMAPS
CertificateFile {cert}
AuthMechs PLAIN

IMAPStore po-remote
Account po

MaildirStore po-local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel po
Far :po-remote:
Near :po-local:
Patterns *
Create Both
Expunge Both
SyncState *
""")
    return rc


def run_mbsync(mbsync: str, rc: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([mbsync, "-c", str(rc), "-a"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def flags_by_subject(fetched: list[bytes]) -> dict[bytes, set[bytes]]:
    """{Subject: {flags}} from `FETCH (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])` responses."""
    found: dict[bytes, set[bytes]] = {}
    for line in fetched:
        match = re.match(rb"\* \d+ FETCH \(FLAGS \(([^)]*)\) .*?\r\nSubject: ([^\r]*)\r\n", line, re.S)
        if match:
            found[match[2]] = set(match[1].split())
    assert len(found) == len(fetched) - 1, fetched  # one per message, then the tagged OK
    return found


def maildir_messages(folder: Path) -> list[Path]:
    return sorted([*(folder / "cur").glob("*"), *(folder / "new").glob("*")])


def test_mbsync_syncs_both_ways(tmp_path: Path) -> None:
    mbsync = require_tool("mbsync", "isync")
    with RunningServer(tmp_path / "data") as srv:
        address = "sync@example.com"
        account = srv.add_account(address, PASSWORD)
        for i in range(3):
            srv.call(srv.store.deliver([(account.id, "INBOX")], b"Subject: server %d\r\n\r\nhello %d\r\n" % (i, i)))
        rc = mbsyncrc(srv, tmp_path, address)
        mail = tmp_path / "mail"

        # server -> local
        run_mbsync(mbsync, rc)
        local = maildir_messages(mail / "INBOX")
        assert len(local) == 3
        assert (mail / "Sent").is_dir() and (mail / "Archive").is_dir()

        # local -> server: a new message, a flag, a deletion, a new folder
        (mail / "INBOX" / "new" / "1700000000.local.host").write_bytes(b"Subject: from local\r\n\r\nhi\r\n")
        first = local[0]
        subject = [p.read_bytes().splitlines()[0].removeprefix(b"Subject: ") for p in local]
        first.rename(first.parent.parent / "cur" / (first.name.split(":2,")[0] + ":2,FS"))
        second = local[1]
        second.rename(second.parent.parent / "cur" / (second.name.split(":2,")[0] + ":2,ST"))
        (mail / "Projects" / "cur").mkdir(parents=True)
        (mail / "Projects" / "new").mkdir()
        (mail / "Projects" / "tmp").mkdir()
        (mail / "Projects" / "new" / "1700000001.local.host").write_bytes(b"Subject: project\r\n\r\nx\r\n")
        run_mbsync(mbsync, rc)

        wire = Wire.tls(srv)
        wire.login(address, PASSWORD)
        lines = wire.cmd(b"s SELECT INBOX")
        assert b"* 3 EXISTS" in lines  # 3 + 1 new - 1 expunged
        fetched = wire.cmd(b"f FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        flags = flags_by_subject(fetched)
        # :2,FS -> \Flagged and \Seen; :2,ST -> trashed, expunged (Expunge Both); new/ -> no flags
        assert flags == {subject[0]: {b"\\Flagged", b"\\Seen"}, subject[2]: set(), b"from local": set()}, flags
        assert wire.cmd(b"t STATUS Projects (MESSAGES)")[0] == b'* STATUS "Projects" (MESSAGES 1)'

        # server -> local again: a flag set over IMAP and new mail
        wire.cmd(b"a STORE 1 +FLAGS (\\Answered)")
        srv.call(srv.store.deliver([(account.id, "INBOX")], b"Subject: later\r\n\r\nx\r\n"))
        wire.cmd(b"l LOGOUT")
        run_mbsync(mbsync, rc)
        local = maildir_messages(mail / "INBOX")
        assert len(local) == 4
        assert any("R" in p.name.split(":2,")[-1] for p in local)  # \Answered arrived
        # nothing left to do: a second run changes nothing
        again = subprocess.run([mbsync, "-c", str(rc), "-a"], capture_output=True, text=True, timeout=60)
        assert again.returncode == 0
        assert len(maildir_messages(mail / "INBOX")) == 4
