"""More real clients from Debian against a running postoffice: msmtp, offlineimap, getmail6 and mutt.

Each client runs as a subprocess with HOME inside tmp_path (no user configuration leaks in), a
generated configuration file, and the server's generated certificate as its only trust anchor: every
client checks the certificate and the host name (127.0.0.1 or localhost, both in the certificate).
The clients come from `make test-deps` (Debian packages msmtp, offlineimap, getmail6, mutt); a
missing one fails its test as root and skips it otherwise (tests/support/tools.py). What each test
covers is listed in docs/clients.md.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.imapwire import Wire
from tests.support.server import RunningServer
from tests.support.smtp import body_after_trace, messages
from tests.support.tools import require_tool

PASSWORD = "password1"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("clients") / "data") as s:
        yield s


@pytest.fixture
def msmtp() -> str:
    return require_tool("msmtp", "msmtp")


@pytest.fixture
def offlineimap() -> str:
    return require_tool("offlineimap", "offlineimap")


@pytest.fixture
def getmail() -> str:
    return require_tool("getmail", "getmail6")


@pytest.fixture
def mutt() -> str:
    return require_tool("mutt", "mutt")


def cert(srv: RunningServer) -> Path:
    return srv.config.data_path / "tls" / "selfsigned.crt"


def make_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


def client_env(home: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8",
            "TMPDIR": str(home), **extra}


def run(argv: list[str], home: Path, *, stdin: bytes | None = None, timeout: float = 30,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, input=stdin, env=client_env(home), cwd=home, capture_output=True, timeout=timeout)
    result = subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode("utf-8", "replace"),
                                         done.stderr.decode("utf-8", "replace"))
    if check:
        assert result.returncode == 0, f"{argv[0]} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def deliver(srv: RunningServer, account: Any, raw: bytes, mailbox: str = "INBOX") -> None:
    srv.call(srv.store.deliver([(account.id, mailbox)], raw))


def imap(srv: RunningServer, address: str) -> Wire:
    wire = Wire.tls(srv)
    wire.login(address, PASSWORD)
    return wire


def maildir_files(folder: Path) -> list[Path]:
    return sorted([*(folder / "cur").glob("*"), *(folder / "new").glob("*")])


# ---------------------------------------------------------------------------------------- msmtp

@pytest.mark.parametrize(("listener", "host", "starttls", "auth"), [
    ("submissions", "127.0.0.1", "off", "plain"),  # 465, TLS from the first byte
    ("submission", "localhost", "on", "login"),    # 587, STARTTLS
])
def test_msmtp_submits(msmtp: str, srv: RunningServer, tmp_path: Path, listener: str, host: str,
                       starttls: str, auth: str) -> None:
    sender, rcpt = f"ms-{auth}@example.com", f"ms-rcpt-{auth}@example.com"
    srv.add_account(sender, PASSWORD)
    srv.add_account(rcpt, PASSWORD)
    home = make_home(tmp_path)
    rc = home / "msmtprc"
    rc.write_text(f"""\
account po
host {host}
port {srv.port(listener)}
tls on
tls_starttls {starttls}
tls_trust_file {cert(srv)}
auth {auth}
user {sender}
password {PASSWORD}
from {sender}
""")
    rc.chmod(0o600)
    # Date and Message-ID present, so msmtp adds nothing; a leading dot (dot-stuffing), 8-bit UTF-8.
    message = (f"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\nFrom: {sender}\r\nTo: {rcpt}\r\n"
               f"Subject: msmtp over {listener}\r\nMessage-ID: <msmtp-{auth}@example.com>\r\n"
               "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
               "Content-Transfer-Encoding: 8bit\r\n\r\n"
               "Hello.\r\n.a line with a leading dot\r\n.\r\nGrüße, ünïcødé\r\n").encode()
    run([msmtp, "-C", str(rc), "-a", "po", rcpt], home, stdin=message)
    stored = messages(srv, rcpt)
    assert len(stored) == 1
    assert stored[0].startswith(f"Return-Path: <{sender}>\r\n".encode())
    assert b" with ESMTPSA " in stored[0]
    assert body_after_trace(stored[0]) == message


# ----------------------------------------------------------------------------------- offlineimap

def offlineimaprc(srv: RunningServer, home: Path, address: str, maildir: Path) -> Path:
    rc = home / "offlineimaprc"
    rc.write_text(f"""\
[general]
accounts = po
metadata = {home}/.offlineimap
ui = basic

[Account po]
utf8foldernames = yes
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {maildir}

[Repository remote]
type = IMAP
remotehost = localhost
remoteport = {srv.port("imaps")}
remoteuser = {address}
remotepass = {PASSWORD}
ssl = yes
sslcacertfile = {cert(srv)}
""")
    return rc


def run_offlineimap(offlineimap: str, rc: Path, home: Path) -> None:
    result = run([offlineimap, "-o", "-u", "basic", "-c", str(rc)], home, timeout=60)
    output = result.stdout + result.stderr
    assert "ERROR" not in output and "Traceback" not in output, output


def test_offlineimap_syncs_both_ways(offlineimap: str, srv: RunningServer, tmp_path: Path) -> None:
    address = "oi@example.com"
    account = srv.add_account(address, PASSWORD)
    for i in range(3):
        deliver(srv, account, b"From: x@example.org\r\nSubject: server %d\r\nMessage-ID: <oi%d@example.org>\r\n"
                              b"\r\nhello %d\r\n" % (i, i, i))
    wire = imap(srv, address)
    assert wire.cmd(b'c CREATE "M&APw-ll"')[-1].startswith(b"c OK")  # "Müll" in modified UTF-7
    wire.cmd(b"l LOGOUT")
    deliver(srv, account, b"Subject: rubbish\r\n\r\nx\r\n", "Müll")
    home = make_home(tmp_path)
    mail = tmp_path / "mail"
    rc = offlineimaprc(srv, home, address, mail)

    # server -> local: every folder, every message
    run_offlineimap(offlineimap, rc, home)
    assert {p.name for p in mail.iterdir()} == {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive", "Müll"}
    assert len(maildir_files(mail / "Müll")) == 1
    local = maildir_files(mail / "INBOX")
    assert len(local) == 3
    by_uid = {int(p.name.split(",U=")[1].split(",")[0]): p for p in local}
    assert sorted(by_uid) == [1, 2, 3]
    # offlineimap stores messages with LF line ends
    assert by_uid[2].read_bytes() == b"From: x@example.org\nSubject: server 1\nMessage-ID: <oi1@example.org>\n\nhello 1\n"

    # local -> server: a flag (rename to add S), a new message, a deletion, a new folder
    seen = by_uid[1]
    seen.rename(mail / "INBOX" / "cur" / (seen.name + "S"))
    by_uid[3].unlink()
    new_local = b"From: oi@example.com\r\nSubject: from local\r\nMessage-ID: <local@example.com>\r\n\r\nhi\r\n"
    (mail / "INBOX" / "new" / "1700000000.local.host").write_bytes(new_local)
    for sub in ("cur", "new", "tmp"):
        (mail / "Projects" / sub).mkdir(parents=True)
    (mail / "Projects" / "new" / "1700000001.local.host").write_bytes(b"Subject: project\r\n\r\nx\r\n")
    for sub in ("cur", "new", "tmp"):
        (mail / "Entwürfe" / sub).mkdir(parents=True)
    (mail / "Entwürfe" / "new" / "1700000002.local.host").write_bytes(b"Subject: draft\r\n\r\nx\r\n")
    run_offlineimap(offlineimap, rc, home)

    wire = imap(srv, address)
    assert b"* 3 EXISTS" in wire.cmd(b"s SELECT INBOX")
    text = b"\n".join(wire.cmd(b"f UID FETCH 1:* (FLAGS BODY.PEEK[])"))
    assert b"UID 1 FLAGS (\\Seen)" in text
    assert b"UID 2 FLAGS ()" in text
    assert b"Subject: server 2" not in text          # deleted locally -> expunged on the server
    assert new_local in text                          # uploaded byte for byte
    assert wire.cmd(b"t STATUS Projects (MESSAGES)")[0] == b'* STATUS "Projects" (MESSAGES 1)'
    assert wire.cmd(b'u STATUS "Entw&APw-rfe" (MESSAGES)')[0] == b'* STATUS "Entw&APw-rfe" (MESSAGES 1)'

    # server -> local: a flag set over IMAP, new mail
    wire.cmd(b"a UID STORE 2 +FLAGS (\\Flagged \\Answered)")
    wire.cmd(b"l LOGOUT")
    deliver(srv, account, b"Subject: later\r\n\r\nx\r\n")
    run_offlineimap(offlineimap, rc, home)
    local = maildir_files(mail / "INBOX")
    assert len(local) == 4
    flags = {int(p.name.split(",U=")[1].split(",")[0]): p.name.rsplit(":2,", 1)[1] for p in local}
    assert flags[1] == "S" and flags[2] == "FR"
    assert sorted(flags)[-1] > 4  # the upload got its UID (UIDPLUS), then "later" came down


# -------------------------------------------------------------------------------------- getmail6

def getmailrc(srv: RunningServer, home: Path, retriever: str, port: str, address: str, maildir: Path,
              options: str) -> Path:
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    # getmail's Maildir destination refuses to run as root (the test suite may run as root), so
    # an MDA writes each message into the Maildir the same way (tmp/, then rename into new/).
    deliver_cmd = f"cat > {maildir}/tmp/$$.getmail && mv {maildir}/tmp/$$.getmail {maildir}/new/"
    rc = home / "getmailrc"
    rc.write_text(f"""\
[retriever]
type = {retriever}
server = localhost
port = {srv.port(port)}
username = {address}
password = {PASSWORD}
ca_certs = {cert(srv)}
{"mailboxes = ALL" if "IMAP" in retriever else ""}
{"record_mailbox = false" if "IMAP" in retriever else ""}

[destination]
type = MDA_external
path = /bin/sh
arguments = ("-c", "{deliver_cmd}")
allow_root_commands = true

[options]
verbose = 2
received = false
delivered_to = false
{options}
""")
    (home / "getmail").mkdir(exist_ok=True)
    return rc


def run_getmail(getmail: str, rc: Path, home: Path) -> str:
    result = run([getmail, "--rcfile", str(rc), "--getmaildir", str(home / "getmail")], home,
                 timeout=60)
    return result.stdout + result.stderr


def got(maildir: Path) -> list[bytes]:
    return [p.read_bytes() for p in maildir_files(maildir)]


def arrived(raw: bytes, files: list[bytes]) -> bool:
    # getmail hands the message to the MDA with LF line ends (and a Return-Path line on top).
    want = raw.replace(b"\r\n", b"\n")
    return any(f.endswith(b"\n" + want) for f in files)


GETMAIL_MESSAGES = [
    b"From: a@example.org\r\nSubject: one\r\nMessage-ID: <g1@example.org>\r\n\r\nfirst\r\n",
    b"From: b@example.org\r\nSubject: two\r\nMessage-ID: <g2@example.org>\r\n\r\n.dot\r\n.\r\n..\r\nend\r\n",
    b"From: c@example.org\r\nSubject: three\r\nMessage-ID: <g3@example.org>\r\n\r\n"
    + b"".join(b"%05d the quick brown fox\r\n" % i for i in range(5000)),
]


def test_getmail_pop3s_downloads_and_deletes(getmail: str, srv: RunningServer, tmp_path: Path) -> None:
    address = "gm-pop@example.com"
    account = srv.add_account(address, PASSWORD)
    for raw in GETMAIL_MESSAGES:
        deliver(srv, account, raw)
    home = make_home(tmp_path)
    maildir = tmp_path / "Maildir"
    rc = getmailrc(srv, home, "SimplePOP3SSLRetriever", "pop3s", address, maildir,
                   "delete = true\nread_all = true")
    out = run_getmail(getmail, rc, home)
    assert "3 messages" in out and "deleted" in out, out
    files = got(maildir)
    assert len(files) == 3
    assert all(arrived(raw, files) for raw in GETMAIL_MESSAGES)
    assert messages(srv, address) == []  # delete = true: gone from the server
    # nothing left: a second run retrieves nothing
    assert "0 messages" in run_getmail(getmail, rc, home)
    assert len(got(maildir)) == 3


def test_getmail_imaps_reads_without_changing(getmail: str, srv: RunningServer, tmp_path: Path) -> None:
    address = "gm-imap@example.com"
    account = srv.add_account(address, PASSWORD)
    for raw in GETMAIL_MESSAGES[:2]:
        deliver(srv, account, raw)
    deliver(srv, account, GETMAIL_MESSAGES[2], "Archive")
    home = make_home(tmp_path)
    maildir = tmp_path / "Maildir"
    rc = getmailrc(srv, home, "SimpleIMAPSSLRetriever", "imaps", address, maildir,
                   "delete = false\nread_all = false")
    run_getmail(getmail, rc, home)
    files = got(maildir)
    assert len(files) == 3  # mailboxes = ALL: INBOX and Archive
    assert all(arrived(raw, files) for raw in GETMAIL_MESSAGES)
    # read-only: everything still there, and not even \Seen (BODY.PEEK)
    wire = imap(srv, address)
    wire.cmd(b"s EXAMINE INBOX")
    # (and still \\Recent: getmail's EXAMINE claimed nothing, RFC 3501 2.3.2)
    assert b"\n".join(wire.cmd(b"f FETCH 1:* (FLAGS)")).count(b"FLAGS (\\Recent)") == 2
    wire.cmd(b"l LOGOUT")
    # getmail remembers what it has seen: only new mail comes next time
    deliver(srv, account, b"Subject: four\r\n\r\nlater\r\n")
    run_getmail(getmail, rc, home)
    files = got(maildir)
    assert len(files) == 4 and arrived(b"Subject: four\r\n\r\nlater\r\n", files)
    assert len(messages(srv, address)) == 3


# ------------------------------------------------------------------------------------------ mutt

def muttrc(srv: RunningServer, home: Path, address: str, *extra: str) -> Path:
    rc = home / "muttrc"
    lines = [
        f'set imap_user="{address}"',
        f'set imap_pass="{PASSWORD}"',
        f'set ssl_ca_certificates_file="{cert(srv)}"',
        f'set certificate_file="{home}/certificates"',  # never written: the CA file is enough
        f'set folder="imaps://127.0.0.1:{srv.port("imaps")}/"',
        'set spoolfile="+INBOX"',
        'set record=""',
        f'set header_cache="{home}/hcache"',
        "set imap_condstore=yes imap_qresync=yes imap_idle=yes",
        "set wait_key=no quit=yes move=no delete=yes confirmappend=no resolve=no",
        "set pipe_decode=no pipe_split=yes sort=date timeout=5",
        *extra,
    ]
    rc.write_text("\n".join(lines) + "\n")
    return rc


def mutt_on_a_terminal(mutt: str, rc: Path, home: Path, keys: str, timeout: float = 30) -> str:
    """Run mutt's full-screen interface on a pseudo-terminal, feeding `keys` through `push`.

    Returns what mutt drew. If mutt stops to ask something (a certificate it does not trust, a
    password) it never reaches the final <exit>, and the test fails with the screen in the message.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([mutt, "-n", "-F", str(rc), "-f", "=INBOX", "-e", f"push '{keys}'"],
                            stdin=slave, stdout=slave, stderr=slave, env=client_env(home, TERM="xterm"),
                            cwd=home, close_fds=True, start_new_session=True)
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the terminal's other side is closed
                    data = b""
                screen += data
                if data:
                    continue
            if proc.poll() is not None:
                break
    finally:
        os.close(master)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail("mutt did not finish; screen:\n" + screen.decode("utf-8", "replace")[-3000:])
    assert proc.returncode == 0, screen.decode("utf-8", "replace")[-3000:]
    return screen.decode("utf-8", "replace")


def test_mutt_reads_flags_deletes_and_saves_over_imaps(mutt: str, srv: RunningServer, tmp_path: Path) -> None:
    address = "mutt-reader@example.com"
    account = srv.add_account(address, PASSWORD)
    raws = [b"From: Zed <z@example.org>\r\nTo: %s\r\nSubject: for mutt %d\r\n"
            b"Date: Thu, 2%d Nov 2026 10:00:00 +0000\r\nMessage-ID: <mutt%d@example.org>\r\n\r\nbody %d\r\n"
            % (address.encode(), i, i, i, i) for i in range(3)]
    for raw in raws:
        deliver(srv, account, raw)
    home = make_home(tmp_path)
    rc = muttrc(srv, home, address)
    out, listing = home / "piped.eml", home / "listing"
    # every message: its Subject line into `listing` (tag all, pipe each, untag); message 1: pipe
    # it to a file (UID FETCH BODY.PEEK[]) and flag it; message 2: delete it; message 3: save it to
    # Archive (UID COPY + \Deleted); then sync (STORE, EXPUNGE) and leave.
    mutt_on_a_terminal(mutt, rc, home,
                       f"<tag-pattern>~A<enter><tag-prefix><pipe-message>grep Subject: >> {listing}<enter>"
                       "<untag-pattern>~A<enter>"
                       f"<pipe-message>cat > {out}<enter><flag-message><next-entry>"
                       "<delete-message><next-entry><save-message>=Archive<enter>"
                       "<sync-mailbox><exit>")
    assert listing.read_text().splitlines() == [f"Subject: for mutt {i}" for i in range(3)]
    assert out.read_bytes() == raws[0].replace(b"\r\n", b"\n")
    wire = imap(srv, address)
    wire.cmd(b"s SELECT INBOX")
    left = b"\n".join(wire.cmd(b"f FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    assert b"for mutt 0" in left and b"\\Flagged" in left
    assert b"for mutt 1" not in left and b"for mutt 2" not in left
    assert wire.cmd(b"t STATUS Archive (MESSAGES)")[0] == b'* STATUS "Archive" (MESSAGES 1)'

    # Second start: mutt resynchronises its header cache with QRESYNC (UID FETCH ... CHANGEDSINCE
    # VANISHED) and must show a flag set and a message added elsewhere.
    wire.cmd(b"a STORE 1 +FLAGS (\\Answered)")
    wire.cmd(b"l LOGOUT")
    deliver(srv, account, b"From: y@example.org\r\nSubject: arrived later\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000"
                          b"\r\n\r\nx\r\n")
    listing.unlink()
    replied = home / "replied"
    mutt_on_a_terminal(mutt, rc, home,
                       f"<tag-pattern>~A<enter><tag-prefix><pipe-message>grep Subject: >> {listing}<enter>"
                       f"<untag-pattern>~A<enter><tag-pattern>~Q<enter>"
                       f"<tag-prefix><pipe-message>grep Subject: >> {replied}<enter><exit>")
    assert listing.read_text().splitlines() == ["Subject: for mutt 0", "Subject: arrived later"]
    assert replied.read_text().splitlines() == ["Subject: for mutt 0"]  # \Answered came through QRESYNC


def test_mutt_sends_over_smtps_and_files_into_sent(mutt: str, srv: RunningServer, tmp_path: Path) -> None:
    sender, rcpt = "mutt-sender@example.com", "mutt-rcpt@example.com"
    srv.add_account(sender, PASSWORD)
    srv.add_account(rcpt, PASSWORD)
    home = make_home(tmp_path)
    rc = muttrc(srv, home, sender,
                f'set from="Mutt Sender <{sender}>" use_from=yes',
                f'set smtp_url="smtps://{sender.replace("@", "%40")}@127.0.0.1:{srv.port("submissions")}/"',
                f'set smtp_pass="{PASSWORD}"',
                'set record="=Sent" copy=yes send_charset=utf-8')
    # batch mode (stdin is not a terminal): no screen at all
    run([mutt, "-n", "-F", str(rc), "-s", "sent by mutt", rcpt], home,
        stdin="Hello from mutt, ünïcødé.\n".encode())
    inbox = messages(srv, rcpt)
    assert len(inbox) == 1 and b"Subject: sent by mutt" in inbox[0]
    assert b" with ESMTPSA " in inbox[0]
    sent = messages(srv, sender, "Sent")  # mutt APPENDed its copy over IMAP
    assert len(sent) == 1 and b"Subject: sent by mutt" in sent[0]
    message_id = next(line for line in sent[0].split(b"\r\n") if line.lower().startswith(b"message-id:"))
    assert message_id in inbox[0]
    assert b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "Hello from mutt, ünïcødé.\r\n".encode() in inbox[0]
