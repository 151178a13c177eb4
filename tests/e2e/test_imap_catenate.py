"""CATENATE (RFC 4469) end to end over TLS: the RFC's section 6 example (a draft rebuilt from
its own header and parts plus a part of a message in INBOX), BADURL refusals, MULTIAPPEND
atomicity and partial URLs."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest

from tests.support.imapwire import Wire
from tests.support.server import RunningServer

PASSWORD = "password1"
_numbers = itertools.count(1)
BOUNDARY = b"------------030308070208000400050907"

DRAFT = (b"From: Joe <joe@example.com>\r\nTo: fred@example.org\r\nSubject: Re: the photo\r\n"
         b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"" + BOUNDARY[2:] + b"\"\r\n\r\n"
         b"--" + BOUNDARY[2:] + b"\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
         b"Here is the photo you asked for.\r\n"
         b"--" + BOUNDARY[2:] + b"--\r\n")
ORIGINAL = (b"From: fred@example.org\r\nSubject: photos\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"xx\"\r\n\r\n"
            b"--xx\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
            b"--xx\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n"
            b"--xx--\r\n")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("imapcatenate") / "data") as server:
        yield server


@pytest.fixture
def wire(srv: RunningServer) -> Iterator[Wire]:
    address = f"cat{next(_numbers)}@example.com"
    acct = srv.add_account(address, PASSWORD)
    srv.call(srv.store.deliver([(acct.id, "Drafts")], DRAFT))
    srv.call(srv.store.deliver([(acct.id, "INBOX")], ORIGINAL))
    w = Wire.tls(srv)
    assert w.cmd(b"a LOGIN %s %s" % (address.encode(), PASSWORD.encode()))[-1].startswith(b"a OK")
    w.address = address  # type: ignore[attr-defined]
    yield w
    w.close()


def uidvalidity(w: Wire, box: bytes) -> int:
    line = w.cmd(b"s STATUS %s (UIDVALIDITY)" % box)[0]
    return int(re.search(rb"UIDVALIDITY (\d+)", line).group(1))  # type: ignore[union-attr]


def lit(data: bytes) -> bytes:
    return b"{%d+}\r\n" % len(data) + data


def fetch_body(w: Wire, box: bytes, uid: int) -> bytes:
    assert w.cmd(b"x EXAMINE %s" % box)[-1].startswith(b"x OK")
    lines = w.cmd(b"y UID FETCH %d BODY.PEEK[]" % uid)
    assert lines[-1].startswith(b"y OK")
    head = lines[0]
    body = head[head.index(b"}\r\n") + 3:]
    return body[:body.rindex(b")")]


def test_rfc4469_example(wire: Wire) -> None:
    """Section 6: A003 APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE (URL header, TEXT,
    URL 1.MIME, URL 1, TEXT, URL of a part in INBOX, TEXT)."""
    caps = wire.cmd(b"c CAPABILITY")[0]
    assert b" CATENATE" in caps
    drafts, inbox = uidvalidity(wire, b"Drafts"), uidvalidity(wire, b"INBOX")
    sep = b"\r\n--" + BOUNDARY[2:] + b"\r\n"
    end = b"\r\n--" + BOUNDARY[2:] + b"--\r\n"
    cmd = (b"A003 APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE ("
           b'URL "/Drafts;UIDVALIDITY=%d/;UID=1/;section=HEADER" ' % drafts
           + b"TEXT " + lit(sep)
           + b' URL "/Drafts;UIDVALIDITY=%d/;UID=1/;section=1.MIME"' % drafts
           + b' URL "/Drafts;UIDVALIDITY=%d/;UID=1/;section=1"' % drafts
           + b" TEXT " + lit(sep)
           + b' URL "/INBOX;UIDVALIDITY=%d/;UID=1/;section=2.MIME"' % inbox
           + b' URL "/INBOX;UIDVALIDITY=%d/;UID=1/;section=2"' % inbox
           + b" TEXT " + lit(end) + b")")
    lines = wire.cmd(cmd)
    assert lines[-1].startswith(b"A003 OK [APPENDUID %d 2]" % drafts), lines
    got = fetch_body(wire, b"Drafts", 2)
    header = DRAFT[:DRAFT.index(b"\r\n\r\n") + 4]
    part1_mime = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    part1 = b"Here is the photo you asked for."
    png_mime = b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    assert got == header + sep + part1_mime + part1 + sep + png_mime + b"iVBORw0KGgo=" + end
    lines = wire.cmd(b"z UID FETCH 2 (FLAGS BODYSTRUCTURE)")
    assert b"$MDNSent" in lines[0] and b'"IMAGE" "PNG"' in lines[0].upper()


def test_badurl_and_atomicity(wire: Wire) -> None:
    inbox = uidvalidity(wire, b"INBOX")
    good = b'URL "/INBOX;UIDVALIDITY=%d/;UID=1"' % inbox
    bad = [
        b'URL "/INBOX;UIDVALIDITY=%d/;UID=1"' % (inbox + 1),        # UIDVALIDITY mismatch
        b'URL "/INBOX;UIDVALIDITY=%d/;UID=99"' % inbox,             # no such message
        b'URL "/Nowhere;UID=1"',                                     # no such mailbox
        b'URL "/INBOX;UID=1/;SECTION=7"',                            # no such section
        b'URL "imap://somebody.else@example.com/INBOX;UID=1"',       # another user's
        b'URL "/INBOX;UID=1/;URLAUTH=anonymous:internal:0123"',      # URLAUTH: not here
        b'URL "not a url"',
    ]
    for i, part in enumerate(bad):
        # MULTIAPPEND: a good message first, then the bad one -> neither is stored
        lines = wire.cmd(b"b%d APPEND INBOX CATENATE (%s) CATENATE (%s)" % (i, good, part))
        assert lines[-1].startswith(b"b%d NO [BADURL " % i), lines
    assert b"MESSAGES 1" in wire.cmd(b"s STATUS INBOX (MESSAGES)")[0]
    # the whole message, an absolute URL naming ourselves, and a partial range all work
    me = wire.address.encode()  # type: ignore[attr-defined]
    lines = wire.cmd(b'g APPEND INBOX CATENATE (%s URL "imap://%s@mail.test/INBOX;UID=1/;PARTIAL=0.20")' % (
        good, me.replace(b"@", b"%40")))
    assert lines[-1].startswith(b"g OK [APPENDUID"), lines
    assert fetch_body(wire, b"INBOX", 2) == ORIGINAL + ORIGINAL[:20]
    # HEADER.FIELDS with a percent-encoded list
    lines = wire.cmd(b'h APPEND INBOX CATENATE (URL "/INBOX;UID=1/;SECTION=HEADER.FIELDS%20(SUBJECT)" TEXT {4+}\r\nbody)')
    assert lines[-1].startswith(b"h OK"), lines
    assert fetch_body(wire, b"INBOX", 3) == b"Subject: photos\r\n\r\nbody"
    assert wire.cmd(b"e APPEND INBOX CATENATE ()")[-1].startswith(b"e BAD")
    assert wire.cmd(b"e2 APPEND INBOX CATENATE (TEXT {0+}\r\n)")[-1].startswith(b"e2 NO")
