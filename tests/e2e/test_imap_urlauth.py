"""URLAUTH (RFC 4467) end to end over TLS: GENURLAUTH / URLFETCH as in the RFC's example
(section 8), access identifiers, RESETKEY, EXPIRE, tampering, and CATENATE of an authorized
URL naming another user's message (forwarding without re-upload)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest

from tests.support.imapwire import Wire
from tests.support.server import RunningServer

PASSWORD = "password1"
_numbers = itertools.count(1)
MESSAGE = (b"From: joe@example.com\r\nSubject: motto\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nintro\r\n"
           b"--b\r\nContent-Type: text/plain\r\n\r\nSi vis pacem, para bellum.\r\n\r\n--b--\r\n")
PART = b"Si vis pacem, para bellum.\r\n"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("imapurlauth") / "data") as server:
        yield server


def q(address: str) -> bytes:
    """A user name in a URL: "@" percent-encoded (RFC 5092 enc-user)."""
    return address.encode().replace(b"@", b"%40")


def login(srv: RunningServer, address: str) -> Wire:
    w = Wire.tls(srv)
    assert w.cmd(b"L LOGIN %s %s" % (address.encode(), PASSWORD.encode()))[-1].startswith(b"L OK")
    return w


@pytest.fixture
def people(srv: RunningServer) -> Iterator[tuple[str, Wire, str, Wire, Wire]]:
    n = next(_numbers)
    joe, fred, carl = f"joe{n}@example.com", f"fred{n}@example.com", f"carl{n}@example.com"
    acct = srv.add_account(joe, PASSWORD)
    srv.add_account(fred, PASSWORD)
    srv.add_account(carl, PASSWORD)
    srv.call(srv.store.deliver([(acct.id, "INBOX")], MESSAGE))
    wj, wf, wc = login(srv, joe), login(srv, fred), login(srv, carl)
    yield joe, wj, fred, wf, wc
    for w in (wj, wf, wc):
        w.close()


def gen(w: Wire, rump: bytes, mech: bytes = b"INTERNAL") -> list[bytes]:
    return w.cmd(b'g GENURLAUTH "%s" %s' % (rump, mech))


def authorized(lines: list[bytes]) -> bytes:
    assert lines[-1].startswith(b"g OK"), lines
    m = re.match(rb'\* GENURLAUTH "([^"]+)"$', lines[0])
    assert m, lines
    return m.group(1)


def fetch(w: Wire, url: bytes) -> bytes | None:
    lines = w.cmd(b'f URLFETCH "%s"' % url)
    assert lines[-1].startswith(b"f OK"), lines
    head = b'* URLFETCH "%s" ' % url
    assert lines[0].startswith(head), lines
    rest = lines[0][len(head):]
    if rest == b"NIL":
        return None
    assert rest.startswith(b"{")
    return rest[rest.index(b"}\r\n") + 3:]


def test_rfc4467_example_and_access(people: tuple[str, Wire, str, Wire, Wire]) -> None:
    joe, wj, fred, wf, wc = people
    caps = wj.cmd(b"c CAPABILITY")[0]
    assert b" URLAUTH" in caps
    base = b"imap://%s@mail.test/INBOX/;uid=1/;section=2" % q(joe)
    # RFC 4467 section 8: a002 URLFETCH of the generated URL returns the part
    url = authorized(gen(wj, base + b";urlauth=anonymous"))
    assert re.fullmatch(rb".*;urlauth=anonymous:internal:[0-9a-f]{64}", url)
    assert fetch(wf, url) == PART and fetch(wc, url) == PART and fetch(wj, url) == PART
    # user+fred: only fred
    url = authorized(gen(wj, base + b";urlauth=user+" + q(fred)))
    assert fetch(wf, url) == PART and fetch(wc, url) is None
    # a changed token, a changed URL, an unknown mechanism: NIL
    bad = url[:-1] + (b"0" if url[-1:] != b"0" else b"1")
    assert fetch(wf, bad) is None
    assert fetch(wf, url.replace(b"section=2", b"section=1")) is None
    assert fetch(wf, url.replace(b":internal:", b":other:")) is None
    # submit+joe: for a submission server; not fetchable over URLFETCH here
    submit = authorized(gen(wj, base + b";urlauth=submit+" + q(joe)))
    assert fetch(wj, submit) is None
    # RESETKEY: every URL made with the old key stops working
    anon = authorized(gen(wj, base + b";urlauth=anonymous"))
    assert wj.cmd(b"r RESETKEY INBOX INTERNAL")[-1].startswith(b"r OK")
    assert fetch(wf, anon) is None and fetch(wf, url) is None
    fresh = authorized(gen(wj, base + b";urlauth=anonymous"))
    assert fresh != anon and fetch(wf, fresh) == PART
    assert wj.cmd(b"r2 RESETKEY")[-1].startswith(b"r2 OK")
    assert fetch(wf, fresh) is None
    # imaptest's form, user@domain with the domain as the host (Dovecot accepts it): the same
    # account; another user or domain is refused
    local, domain = joe.split("@")
    short = b"imap://%s@%s/INBOX/;uid=1/;section=2" % (local.encode(), domain.encode())
    assert fetch(wf, authorized(gen(wj, short + b";urlauth=anonymous"))) == PART
    for other in (b"imap://%s@example.org/INBOX/;uid=1" % local.encode(),
                  b"imap://%s@%s/INBOX/;uid=1" % (fred.split("@")[0].encode(), domain.encode())):
        assert gen(wj, other + b";urlauth=anonymous")[-1].startswith(b"g NO [BADURL"), other
    # several URLs in one URLFETCH, each answered
    one = authorized(gen(wj, base + b";urlauth=authuser"))
    lines = wf.cmd(b'f2 URLFETCH "%s" "%s"' % (one, bad))
    assert lines[-1].startswith(b"f2 OK") and lines[0].endswith(b'"%s" NIL' % bad)


def test_genurlauth_refusals_and_expiry(people: tuple[str, Wire, str, Wire, Wire]) -> None:
    joe, wj, fred, wf, wc = people
    base = b"imap://%s@mail.test/INBOX/;uid=1" % q(joe)
    assert gen(wf, base + b";urlauth=anonymous")[-1].startswith(b"g NO [BADURL")    # not fred's
    assert gen(wj, base + b";urlauth=anonymous", b"FOO")[-1].startswith(b"g NO")
    assert gen(wj, base)[-1].startswith(b"g NO [BADURL")                              # no ;URLAUTH=
    assert gen(wj, base + b";urlauth=nobody")[-1].startswith(b"g NO [BADURL")        # bad access
    assert gen(wj, base.replace(b"uid=1", b"uid=9") + b";urlauth=anonymous")[-1].startswith(b"g NO [BADURL")
    assert gen(wj, base + b";urlauth=anonymous:internal:00")[-1].startswith(b"g NO [BADURL")
    past = base + b";expire=2001-01-01T00:00:00Z;urlauth=anonymous"
    assert gen(wj, past)[-1].startswith(b"g NO [BADURL")
    future = authorized(gen(wj, base + b";expire=2999-01-01T00:00:00Z;urlauth=anonymous"))
    assert fetch(wf, future) == MESSAGE
    assert fetch(wf, future.replace(b"2999", b"2998")) is None  # the expiry is signed too
    assert wj.cmd(b"x RESETKEY Nowhere")[-1].startswith(b"x NO")


def test_catenate_with_an_authorized_url(people: tuple[str, Wire, str, Wire, Wire]) -> None:
    """Fred forwards joe's attachment: his APPEND names it by URL, no download/upload."""
    joe, wj, fred, wf, wc = people
    url = authorized(gen(wj, b"imap://%s@mail.test/INBOX/;uid=1/;section=2;urlauth=authuser" % q(joe)))
    head = b"From: fred@example.com\r\nSubject: fwd\r\n\r\n"
    lines = wf.cmd(b'a APPEND INBOX CATENATE (TEXT {%d+}\r\n%s URL "%s")' % (len(head), head, url))
    assert lines[-1].startswith(b"a OK [APPENDUID"), lines
    assert wf.cmd(b"e EXAMINE INBOX")[-1].startswith(b"e OK")
    got = wf.cmd(b"b UID FETCH 1 BODY.PEEK[]")[0]
    assert got.endswith(head + PART + b")")
    # a submit+ URL serves its owner's own CATENATE (but not URLFETCH, nor anyone else)
    submit = authorized(gen(wj, b"imap://%s@mail.test/INBOX/;uid=1/;section=2;urlauth=submit+%s" % (q(joe), q(joe))))
    assert wj.cmd(b'd APPEND INBOX CATENATE (URL "%s")' % submit)[-1].startswith(b"d OK [APPENDUID")
    assert wf.cmd(b'd2 APPEND INBOX CATENATE (URL "%s")' % submit)[-1].startswith(b"d2 NO [BADURL")
    # without the authorization, joe's message is out of fred's reach
    plain = b"imap://%s@mail.test/INBOX/;uid=1/;section=2" % q(joe)
    assert wf.cmd(b'c APPEND INBOX CATENATE (URL "%s")' % plain)[-1].startswith(b"c NO [BADURL")


ENCODED = (b"From: joe@example.com\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
           b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVs\r\nbG8gd29ybGQ=\r\n"
           b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-unknown\r\n\r\nopaque\r\n"
           b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n"
           b"--b--\r\n")


def test_urlfetch_binary_and_bodypartstructure(srv: RunningServer) -> None:
    """RFC 5524 (imaptest's urlauth-binary): BINARY decodes the part (NIL for an unknown
    encoding, a literal8 for NUL), BODYPARTSTRUCTURE describes it (decoded, with BINARY), BODY
    is the part as stored; an invalid URL is NIL."""
    address = f"binary{next(_numbers)}@example.com"
    account = srv.add_account(address, PASSWORD)
    srv.call(srv.store.deliver([(account.id, "INBOX")], ENCODED))
    w = login(srv, address)
    assert b" URLAUTH=BINARY" in w.cmd(b"c CAPABILITY")[0]
    base = b"imap://%s@mail.test/INBOX/;uid=1/;section=" % q(address)
    one, two, three = (authorized(gen(w, base + n + b";urlauth=authuser")) for n in (b"1", b"2", b"3"))
    lines = w.cmd(b'f URLFETCH ("%s" BINARY BODYPARTSTRUCTURE)' % one)
    assert lines[0] == (b'* URLFETCH "%s" (BODYPARTSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL '
                        b'"7BIT" 11 0 NIL NIL NIL NIL)) (BINARY {11}\r\nhello world)' % one), lines
    lines = w.cmd(b'f URLFETCH ("%s" BODYPARTSTRUCTURE BODY)' % one)
    assert lines[0] == (b'* URLFETCH "%s" (BODYPARTSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL '
                        b'"BASE64" 18 2 NIL NIL NIL NIL)) (BODY {18}\r\naGVs\r\nbG8gd29ybGQ=)' % one), lines
    assert w.cmd(b'f URLFETCH ("%s" BINARY)' % two)[0] == b'* URLFETCH "%s" (BINARY NIL)' % two
    assert w.cmd(b'f URLFETCH ("%s" BINARY)' % three)[0] == b'* URLFETCH "%s" (BINARY ~{3}\r\n\x00\x01\x02)' % three
    bad = one[:-1] + (b"0" if one[-1:] != b"0" else b"1")
    assert w.cmd(b'f URLFETCH ("%s" BINARY) "%s"' % (bad, one))[0] == (
        b'* URLFETCH "%s" NIL "%s" {18}\r\naGVs\r\nbG8gd29ybGQ=' % (bad, one))
    w.close()
