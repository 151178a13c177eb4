"""IMAP end to end with imaplib and imapclient: every command on 993 (TLS) and 143 (STARTTLS),
the extensions the server advertises, and the plaintext-login rules."""

from __future__ import annotations

import imaplib
import itertools
import ssl
from collections.abc import Iterator
from datetime import datetime, timezone

import imapclient
import pytest

from tests.support.imapwire import Wire
from tests.support.pg import BACKENDS, backend_overrides
from tests.support.server import RunningServer

PASSWORD = "password1"
_numbers = itertools.count(1)


def message(n: int, subject: str = "", body: str = "") -> bytes:
    subject = subject or f"message {n}"
    body = body or f"body of message {n}"
    return (f"From: Sender {n} <s{n}@example.org>\r\nTo: rcpt@example.com\r\nSubject: {subject}\r\n"
            f"Date: Mon, 1 Jan 2024 10:0{n % 10}:00 +0000\r\nMessage-ID: <m{n}@example.org>\r\n\r\n"
            f"{body}\r\n").encode()


@pytest.fixture(scope="module", params=BACKENDS)
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("imap") / "data"
    with RunningServer(data, **backend_overrides(request.param, request)) as server:
        yield server


def new_account(srv: RunningServer, count: int = 3, **kw: object) -> tuple[str, int]:
    address = f"user{next(_numbers)}@example.com"
    account = srv.add_account(address, PASSWORD, **kw)
    for i in range(1, count + 1):
        srv.call(srv.store.deliver([(account.id, "INBOX")], message(i)))
    return address, account.id


def imaps(srv: RunningServer) -> imaplib.IMAP4_SSL:
    return imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.client_tls(), timeout=10)


def client(srv: RunningServer, address: str) -> imapclient.IMAPClient:
    c = imapclient.IMAPClient("127.0.0.1", port=srv.port("imaps"), ssl=True, ssl_context=srv.client_tls(),
                              timeout=10)
    c.login(address, PASSWORD)
    return c


# -- connection, capabilities, authentication -------------------------------------------------------

def test_greeting_and_capabilities_on_993(srv: RunningServer) -> None:
    m = imaps(srv)
    caps = set(m.capabilities)
    for cap in ("IMAP4REV1", "IMAP4REV2", "IDLE", "CONDSTORE", "QRESYNC", "UIDPLUS", "MOVE", "AUTH=PLAIN",
                "SASL-IR", "LITERAL+", "LIST-EXTENDED", "LIST-STATUS", "SPECIAL-USE", "STATUS=SIZE",
                "CHILDREN", "QUOTA", "UTF8=ACCEPT", "NAMESPACE", "ESEARCH", "ENABLE", "ID", "UNSELECT"):
        assert cap in caps, cap
    assert "STARTTLS" not in caps and "LOGINDISABLED" not in caps
    m.logout()


def test_143_logindisabled_until_starttls(srv: RunningServer) -> None:
    address, _ = new_account(srv, 0)
    m = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=10)
    assert "LOGINDISABLED" in m.capabilities and "STARTTLS" in m.capabilities
    assert not any(c.startswith("AUTH=") for c in m.capabilities)
    typ, data = m._simple_command("LOGIN", address, PASSWORD)
    assert typ == "NO" and b"PRIVACYREQUIRED" in data[0]
    m.starttls(ssl_context=srv.client_tls())
    assert "LOGINDISABLED" not in m.capabilities and "AUTH=PLAIN" in m.capabilities
    assert m.login(address, PASSWORD)[0] == "OK"
    m.logout()


def test_starttls_twice_and_on_993_is_bad(srv: RunningServer) -> None:
    wire = Wire.tls(srv)
    assert wire.cmd(b"s1 STARTTLS")[-1].startswith(b"s1 BAD")
    wire.close()


def test_plaintext_allowed_on_loopback_by_config(tmp_path) -> None:
    with RunningServer(tmp_path / "data", security={"allow_plaintext_auth_loopback": True}) as srv:
        srv.add_account("p@example.com", PASSWORD)
        m = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=10)
        assert "LOGINDISABLED" not in m.capabilities
        assert m.login("p@example.com", PASSWORD)[0] == "OK"
        m.logout()


def test_login_failures(srv: RunningServer) -> None:
    address, _ = new_account(srv, 0)
    wire = Wire.tls(srv)
    line = wire.cmd(f"a LOGIN {address} wrong".encode())[-1]
    assert line.startswith(b"a NO [AUTHENTICATIONFAILED]")
    assert wire.cmd(b"b SELECT INBOX")[-1].startswith(b"b BAD")
    wire.close()


def test_authenticate_plain_with_and_without_initial_response(srv: RunningServer) -> None:
    import base64

    address, _ = new_account(srv, 0)
    token = base64.b64encode(f"\0{address}\0{PASSWORD}".encode())
    wire = Wire.tls(srv)
    assert wire.cmd(b"a AUTHENTICATE PLAIN " + token)[-1].startswith(b"a OK")
    wire.close()
    wire = Wire.tls(srv)
    wire.send(b"a AUTHENTICATE PLAIN\r\n")
    assert wire.line().startswith(b"+")
    wire.send(token + b"\r\n")
    assert wire.until(b"a")[-1].startswith(b"a OK")
    wire.close()
    wire = Wire.tls(srv)
    wire.send(b"a AUTHENTICATE PLAIN\r\n")
    wire.line()
    assert wire.cmd(b"*", tag=b"a")[-1].startswith(b"a BAD")
    assert wire.cmd(b"b NOOP")[-1].startswith(b"b OK")
    wire.close()


def test_imap_switched_off_refuses_with_alert(srv: RunningServer) -> None:
    address, _ = new_account(srv, 0)
    srv.call(srv.store.update_account(address, imap_enabled=False))
    wire = Wire.tls(srv)
    line = wire.cmd(f"a LOGIN {address} {PASSWORD}".encode())[-1]
    assert line.startswith(b"a NO [ALERT] ") and b"IMAP" in line
    wire.close()


def test_switching_imap_off_ends_open_sessions(srv: RunningServer) -> None:
    address, _ = new_account(srv, 1)
    idle = Wire.tls(srv)
    idle.login(address, PASSWORD)
    idle.cmd(b"s SELECT INBOX")
    idle.send(b"i IDLE\r\n")
    assert idle.line().startswith(b"+")
    busy = Wire.tls(srv)
    busy.login(address, PASSWORD)
    srv.call(srv.store.update_account(address, imap_enabled=False))
    line = idle.line()
    assert line.startswith(b"* BYE [ALERT] ") and b"IMAP" in line
    assert idle.closed()
    # a session waiting between commands is told at once too
    assert busy.line().startswith(b"* BYE [ALERT] ")
    assert busy.closed()


def test_id_noop_namespace_enable_logout(srv: RunningServer) -> None:
    address, _ = new_account(srv, 0)
    c = client(srv, address)
    assert b"postoffice" in c.id_({"name": "pytest", "version": "1"})[0]
    c.noop()
    assert c.namespace().personal == (("", "/"),)
    assert c.enable("CONDSTORE", "UNKNOWN") == [b"CONDSTORE"]
    sessions = [s for s in srv.office.sessions.all() if s.address == address]
    assert sessions and sessions[0].client_id == "pytest 1"
    c.logout()


# -- mailboxes ------------------------------------------------------------------------------------------

def test_list_lsub_special_use_and_children(srv: RunningServer) -> None:
    address, _ = new_account(srv, 0)
    c = client(srv, address)
    c.create_folder("Work/Projects")
    names = {name: flags for flags, _, name in c.list_folders()}
    assert names["Work"] == (b"\\HasChildren",)
    assert names["Work/Projects"] == (b"\\HasNoChildren",)
    assert b"\\Sent" in names["Sent"] and b"\\Trash" in names["Trash"]
    assert [n for _, _, n in c.list_folders(pattern="%")].count("Work/Projects") == 0
    assert {n for _, _, n in c.list_folders("Work/", "%")} == {"Work/Projects"}
    special = {n for _, _, n in c.list_folders()}
    c.subscribe_folder("Work/Projects")
    assert "Work/Projects" in [n for _, _, n in c.list_sub_folders()]
    c.unsubscribe_folder("Work/Projects")
    assert "Work/Projects" not in [n for _, _, n in c.list_sub_folders()]
    assert "INBOX" in special
    c.logout()


def test_list_extended_and_status(srv: RunningServer) -> None:
    address, _ = new_account(srv, 2)
    wire = Wire.tls(srv)
    wire.login(address, PASSWORD)
    lines = wire.cmd(b'a LIST (SPECIAL-USE) "" "*"')
    assert {l.split()[-1] for l in lines[:-1]} == {b'"Sent"', b'"Drafts"', b'"Trash"', b'"Junk"', b'"Archive"'}
    lines = wire.cmd(b'b LIST "" ("INBOX" "Sent") RETURN (SUBSCRIBED CHILDREN STATUS (MESSAGES UNSEEN SIZE))')
    assert lines[-1].startswith(b"b OK")
    assert any(l.startswith(b"* STATUS INBOX (MESSAGES 2 UNSEEN 2 SIZE ") for l in lines)
    assert any(l.startswith(b'* STATUS "Sent" (MESSAGES 0') for l in lines)
    assert wire.cmd(b'c LIST "" ""')[0] == b'* LIST (\\Noselect) "/" ""'
    wire.cmd(b"d SUBSCRIBE Archive")
    lines = wire.cmd(b'e LIST (SUBSCRIBED) "" "*"')
    assert any(b"\\Subscribed" in l and l.endswith(b'"Archive"') for l in lines)
    assert wire.cmd(b'f LIST (RECURSIVEMATCH) "" "*"')[-1].startswith(b"f BAD")
    status = wire.cmd(b"g STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ)")
    # RFC 3501 6.3.10: both messages are recent, no session has selected INBOX yet
    assert status[0].startswith(b"* STATUS INBOX (MESSAGES 2 RECENT 2 UIDNEXT 3 UIDVALIDITY ")
    assert wire.cmd(b"h STATUS Nope (MESSAGES)")[-1].startswith(b"h NO [NONEXISTENT]")
    wire.close()


def test_create_delete_rename_rules(srv: RunningServer) -> None:
    address, _ = new_account(srv, 2)
    c = client(srv, address)
    c.create_folder("A/B")
    with pytest.raises(imapclient.exceptions.IMAPClientError, match="ALREADYEXISTS"):
        c.create_folder("A/B")
    with pytest.raises(imapclient.exceptions.IMAPClientError, match="HASCHILDREN"):
        c.delete_folder("A")
    c.rename_folder("A", "C")
    names = {n for _, _, n in c.list_folders()}
    assert {"C", "C/B"} <= names and "A" not in names
    with pytest.raises(imapclient.exceptions.IMAPClientError, match="CANNOT"):
        c.delete_folder("INBOX")
    with pytest.raises(imapclient.exceptions.IMAPClientError, match="NONEXISTENT"):
        c.delete_folder("Nope")
    # RFC 9051 6.3.6: renaming INBOX moves its messages and leaves INBOX empty
    c.rename_folder("INBOX", "Old")
    assert c.folder_status("Old", ["MESSAGES"])[b"MESSAGES"] == 2
    assert c.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 0
    c.delete_folder("C/B")
    c.delete_folder("C")
    c.logout()


@pytest.mark.parametrize("name", [b'"../x"', b'"a//b"', b'"/etc"', b'"a/./b"', b'"x*"', b'"bad&name"'])
def test_mailbox_names_cannot_escape(srv: RunningServer, name: bytes) -> None:
    address, _ = new_account(srv, 0)
    wire = Wire.tls(srv)
    wire.login(address, PASSWORD)
    line = wire.cmd(b"a CREATE " + name)[-1]
    assert line.startswith(b"a NO") or line.startswith(b"a BAD"), line
    wire.close()


def test_create_special_use(srv: RunningServer) -> None:
    address, _ = new_account(srv, 0)
    wire = Wire.tls(srv)
    wire.login(address, PASSWORD)
    assert wire.cmd(b'a CREATE "Flagged mail" (USE (\\Flagged))')[-1].startswith(b"a OK")
    lines = wire.cmd(b'b LIST "" "Flagged mail"')
    assert b"\\Flagged" in lines[0]
    assert wire.cmd(b'c CREATE "X" (USE (\\Bogus))')[-1].startswith(b"c NO [USEATTR]")
    wire.close()


def test_modified_utf7_and_utf8_accept_names(srv: RunningServer) -> None:
    address, _ = new_account(srv, 0)
    wire = Wire.tls(srv)
    wire.login(address, PASSWORD)
    assert wire.cmd(b'a CREATE "Entw&APw-rfe"')[-1].startswith(b"a OK")
    assert any(l.endswith(b'"Entw&APw-rfe"') for l in wire.cmd(b'b LIST "" "Entw*"'))
    wire.cmd(b"c ENABLE UTF8=ACCEPT")
    assert any(l.endswith('"Entwürfe"'.encode()) for l in wire.cmd(b'd LIST "" "Entw*"'))
    assert wire.cmd('e SELECT "Entwürfe"'.encode())[-1].startswith(b"e OK")
    wire.close()


def test_quota(tmp_path) -> None:
    with RunningServer(tmp_path / "data") as srv:
        account = srv.add_account("q@example.com", PASSWORD, quota_bytes=10 * 1024)
        srv.call(srv.store.deliver([(account.id, "INBOX")], message(1)))
        wire = Wire.tls(srv)
        wire.login("q@example.com", PASSWORD)
        lines = wire.cmd(b"a GETQUOTAROOT INBOX")
        assert lines[0] == b'* QUOTAROOT INBOX ""'
        assert lines[1] == b'* QUOTA "" (STORAGE 1 10)'
        assert wire.cmd(b'b GETQUOTA ""')[0] == b'* QUOTA "" (STORAGE 1 10)'
        assert wire.cmd(b'c SETQUOTA "" (STORAGE 5)')[-1].startswith(b"c NO")
        big = b"Subject: big\r\n\r\n" + b"x" * 20000 + b"\r\n"
        line = wire.cmd(b"d APPEND INBOX {%d+}\r\n" % len(big) + big)[-1]
        assert line.startswith(b"d NO [OVERQUOTA]")
        wire.close()


# -- messages -------------------------------------------------------------------------------------------

def test_select_examine_responses(srv: RunningServer) -> None:
    address, _ = new_account(srv, 3)
    wire = Wire.tls(srv)
    wire.login(address, PASSWORD)
    lines = wire.cmd(b"a SELECT INBOX")
    assert b"* 3 EXISTS" in lines
    assert any(l.startswith(b"* OK [UIDVALIDITY ") for l in lines)
    assert any(l.startswith(b"* OK [UIDNEXT 4]") for l in lines)
    assert any(l.startswith(b"* OK [HIGHESTMODSEQ ") for l in lines)
    assert any(l.startswith(b"* OK [UNSEEN 1]") for l in lines)
    assert any(b"PERMANENTFLAGS (" in l and b"\\*" in l for l in lines)
    assert lines[-1].startswith(b"a OK [READ-WRITE]")
    lines = wire.cmd(b"b EXAMINE INBOX")
    assert lines[0].startswith(b"* OK [CLOSED]")
    assert lines[-1].startswith(b"b OK [READ-ONLY]")
    assert wire.cmd(b"c SELECT Nope")[-1].startswith(b"c NO [NONEXISTENT]")
    assert wire.cmd(b"d FETCH 1 FLAGS")[-1].startswith(b"d BAD")  # the failed SELECT unselected
    wire.close()


def test_fetch_items(srv: RunningServer) -> None:
    address, _ = new_account(srv, 3)
    c = client(srv, address)
    c.select_folder("INBOX", readonly=True)
    data = c.fetch([1, 2, 3], ["UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE"])
    assert sorted(data) == [1, 2, 3]
    assert data[2][b"ENVELOPE"].subject == b"message 2"
    data = c.fetch("2", ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]", "BODY.PEEK[TEXT]<0.4>", "RFC822.HEADER", "BINARY.PEEK[1]"])
    assert data[2][b"BODY[HEADER.FIELDS (SUBJECT)]"].strip() == b"Subject: message 2"
    assert data[2][b"BODY[TEXT]<0>"] == b"body"
    c.select_folder("INBOX")
    data = c.fetch("1", ["BODY[]"])
    assert data[1][b"BODY[]"] == message(1)
    assert b"\\Seen" in c.get_flags([1])[1]  # implicit \Seen (RFC 9051 6.4.5)
    data = c.fetch("2", ["RFC822"])
    assert b"\\Seen" in data[2][b"FLAGS"]
    assert c.fetch("3", ["BODY.PEEK[]"])[3][b"BODY[]"] == message(3)
    assert b"\\Seen" not in c.get_flags([3])[3]
    c.logout()


def test_fetch_of_missing_sequence_numbers_is_bad(srv: RunningServer) -> None:
    address, _ = new_account(srv, 2)
    wire = Wire.tls(srv)
    wire.login(address, PASSWORD)
    wire.cmd(b"a SELECT INBOX")
    line = wire.cmd(b"b FETCH 5 FLAGS")[-1]
    assert line.startswith(b"b BAD") and b"does not exist" in line
    assert wire.cmd(b"c UID FETCH 99 FLAGS") == [b"c OK UID FETCH completed"]
    assert wire.cmd(b"d NOOP")[-1].startswith(b"d OK")
    wire.close()


def test_store_flags_silent_and_keywords(srv: RunningServer) -> None:
    address, _ = new_account(srv, 3)
    c = client(srv, address)
    c.select_folder("INBOX")  # the first session: the messages are \\Recent here (RFC 3501 2.3.2)
    assert c.add_flags([1, 2], [b"\\Flagged", b"$Important"]) == {
        1: (b"\\Recent", b"\\Flagged", b"$Important"), 2: (b"\\Recent", b"\\Flagged", b"$Important")}
    assert c.remove_flags([1], [b"$Important"]) == {1: (b"\\Recent", b"\\Flagged")}
    assert c.set_flags([3], [b"\\Answered"], silent=True) is None
    assert c.get_flags([1, 2, 3]) == {1: (b"\\Recent", b"\\Flagged"), 2: (b"\\Recent", b"\\Flagged", b"$Important"),
                                      3: (b"\\Recent", b"\\Answered")}
    c.select_folder("INBOX", readonly=True)
    with pytest.raises(imapclient.exceptions.IMAPClientError, match="read-only"):
        c.add_flags([1], [b"\\Seen"])
    c.logout()


def test_append_multiappend_and_literal_forms(srv: RunningServer) -> None:
    address, _ = new_account(srv, 0)
    c = client(srv, address)
    when = datetime(2023, 5, 4, 3, 2, 1, tzinfo=timezone.utc)
    resp = c.append("Drafts", message(7), flags=[b"\\Draft", b"\\Seen", b"$Label"], msg_time=when)
    assert b"APPENDUID" in resp
    c.select_folder("Drafts")
    data = c.fetch("1", ["FLAGS", "INTERNALDATE"])[1]
    assert set(data[b"FLAGS"]) == {b"\\Draft", b"\\Seen", b"$Label", b"\\Recent"}
    assert data[b"INTERNALDATE"].astimezone(timezone.utc) == when
    c.logout()
    wire = Wire.tls(srv)
    wire.login(address, PASSWORD)
    m1, m2 = message(8), message(9)
    line = wire.cmd(b"a APPEND INBOX (\\Seen) {%d+}\r\n%s {%d+}\r\n%s" % (len(m1), m1, len(m2), m2))[-1]
    assert line.startswith(b"a OK [APPENDUID ") and line.split()[4] == b"1:2]"
    wire.send(b"b APPEND INBOX {%d}\r\n" % len(m1))
    assert wire.line().startswith(b"+ ")
    wire.send(m1 + b"\r\n")
    assert wire.until(b"b")[-1].startswith(b"b OK [APPENDUID")
    assert wire.cmd(b"c APPEND Nowhere {3+}\r\nabc")[-1].startswith(b"c NO [TRYCREATE]")
    wire.close()


def test_copy_move_expunge_uidplus(srv: RunningServer) -> None:
    address, _ = new_account(srv, 4)
    wire = Wire.tls(srv)
    wire.login(address, PASSWORD)
    wire.cmd(b"a SELECT INBOX")
    line = wire.cmd(b"b COPY 1:2 Archive")[-1]
    assert line.startswith(b"b OK [COPYUID ") and line.split()[4:6] == [b"1:2", b"1:2]"]
    lines = wire.cmd(b"c UID MOVE 3 Trash")
    assert lines[0].startswith(b"* OK [COPYUID ") and lines[1] == b"* 3 EXPUNGE"
    assert wire.cmd(b"d COPY 1 Nowhere")[-1].startswith(b"d NO [TRYCREATE]")
    wire.cmd(b"e STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    assert wire.cmd(b"f UID EXPUNGE 2") == [b"* 2 EXPUNGE", b"f OK UID EXPUNGE completed"]
    assert wire.cmd(b"g EXPUNGE") == [b"* 1 EXPUNGE", b"g OK EXPUNGE completed"]
    assert wire.cmd(b"h FETCH 1 UID")[0] == b"* 1 FETCH (UID 4)"
    wire.cmd(b"i STORE 1 +FLAGS (\\Deleted)")
    assert wire.cmd(b"j CLOSE") == [b"j OK CLOSE completed"]
    assert wire.cmd(b"k STATUS INBOX (MESSAGES)")[0] == b"* STATUS INBOX (MESSAGES 0)"
    wire.cmd(b"l SELECT Archive")
    wire.cmd(b"m STORE 1 +FLAGS (\\Deleted)")
    assert wire.cmd(b"n UNSELECT") == [b"n OK UNSELECT completed"]
    assert wire.cmd(b"o STATUS Archive (MESSAGES)")[0] == b'* STATUS "Archive" (MESSAGES 2)'
    wire.close()


def test_search_keys_esearch_and_searchres(srv: RunningServer) -> None:
    address, account_id = new_account(srv, 5)
    c = client(srv, address)
    c.select_folder("INBOX")
    c.add_flags([2, 4], [b"\\Seen"])
    assert c.search(["UNSEEN"]) == [1, 3, 5]
    assert c.search(["SUBJECT", "message 3"]) == [3]
    assert c.search(["BODY", "of message 4"]) == [4]
    assert c.search(["OR", "FROM", "s1@", "TO", "nobody"]) == [1]
    assert c.search(["CHARSET", "UTF-8", "TEXT", "message"]) == [1, 2, 3, 4, 5]
    with pytest.raises(imapclient.exceptions.IMAPClientError, match="BADCHARSET"):
        c.search(["CHARSET", "KOI8-R", "TEXT", "x"])
    wire = Wire.tls(srv)
    wire.login(address, PASSWORD)
    wire.cmd(b"a SELECT INBOX")
    assert wire.cmd(b"b SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN")[0] == \
        b'* ESEARCH (TAG "b") MIN 1 MAX 5 ALL 1,3,5 COUNT 3'
    assert wire.cmd(b"c UID SEARCH RETURN (COUNT) SEEN")[0] == b'* ESEARCH (TAG "c") UID COUNT 2'
    assert wire.cmd(b"d SEARCH RETURN (SAVE) SEEN") == [b"d OK SEARCH completed"]
    assert wire.cmd(b"e FETCH $ UID")[:2] == [b"* 2 FETCH (UID 2)", b"* 4 FETCH (UID 4)"]
    lines = wire.cmd(b"f SEARCH MODSEQ 1")
    assert lines[0].startswith(b"* OK [HIGHESTMODSEQ ")  # RFC 7162 3.1: CONDSTORE enabled now
    assert lines[1].startswith(b"* SEARCH 1 2 3 4 5 (MODSEQ ")
    wire.cmd(b"g ENABLE IMAP4rev2")
    assert wire.cmd(b"h SEARCH SEEN")[0] == b'* ESEARCH (TAG "h") ALL 2,4'
    wire.close()
    c.logout()


def test_condstore_store_unchangedsince_and_changedsince(srv: RunningServer) -> None:
    address, _ = new_account(srv, 3)
    wire = Wire.tls(srv)
    wire.login(address, PASSWORD)
    lines = wire.cmd(b"a SELECT INBOX (CONDSTORE)")
    modseq = int(next(l for l in lines if b"HIGHESTMODSEQ" in l).split()[3].rstrip(b"]"))
    lines = wire.cmd(b"b STORE 1 +FLAGS (\\Flagged)")
    assert lines[0].startswith(b"* 1 FETCH (FLAGS (\\Recent \\Flagged) MODSEQ (")
    new = int(lines[0].split(b"MODSEQ (")[1].split(b")")[0])
    assert new > modseq
    lines = wire.cmd(b"c STORE 1,2 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % modseq)
    assert lines[-1].startswith(b"c OK [MODIFIED 1]")
    assert wire.cmd(b"d FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % new)[0].startswith(b"* 2 FETCH (FLAGS (\\Recent \\Seen) MODSEQ")
    assert wire.cmd(b"e FETCH 1 MODSEQ")[0].startswith(b"* 1 FETCH (MODSEQ (")
    wire.close()


def test_idle_without_selection_and_done(srv: RunningServer) -> None:
    address, _ = new_account(srv, 0)
    wire = Wire.tls(srv)
    wire.login(address, PASSWORD)
    wire.send(b"i IDLE\r\n")
    assert wire.line() == b"+ idling"
    wire.send(b"DONE\r\n")
    assert wire.until(b"i") == [b"i OK IDLE terminated"]
    wire.send(b"j IDLE\r\n")
    wire.line()
    assert wire.cmd(b"NOTDONE", tag=b"j")[-1].startswith(b"j BAD")
    wire.close()


def test_pipelined_commands(srv: RunningServer) -> None:
    address, _ = new_account(srv, 2)
    wire = Wire.tls(srv)
    wire.send(f"a LOGIN {address} {PASSWORD}\r\nb SELECT INBOX\r\nc FETCH 1:* UID\r\nd LOGOUT\r\n".encode())
    lines = wire.until(b"d")
    tags = [l.split()[0] for l in lines if not l.startswith(b"*")]
    assert tags == [b"a", b"b", b"c", b"d"]
    assert wire.closed()


def test_imap4rev2_enabled_select_and_utf8_names(srv: RunningServer) -> None:
    address, _ = new_account(srv, 1)
    wire = Wire.tls(srv)
    wire.login(address, PASSWORD)
    assert wire.cmd(b"a ENABLE IMAP4rev2")[0] == b"* ENABLED IMAP4rev2"
    lines = wire.cmd(b"b SELECT INBOX")
    assert b'* LIST (\\HasNoChildren) "/" INBOX' in lines
    assert not any(l.endswith(b"RECENT") for l in lines)
    wire.cmd('c CREATE "Café"'.encode())
    assert any(l.endswith('"Café"'.encode()) for l in wire.cmd(b'd LIST "" "Caf*"'))
    wire.close()
