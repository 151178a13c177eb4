"""SMTP wire conformance (RFC 5321, 6409, 3207, 4954, 1870, 6152, 6531, 2920, 3030, 2034/3463),
checked byte for byte on raw sockets against ports 25, 587 and 465."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import pytest

from tests.support.server import RunningServer
from tests.support.smtp import RawSmtp, body_after_trace, messages

LIMIT = 20000


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("smtp-conformance") / "data"
    with RunningServer(data, limits={"max_message_size": LIMIT}) as s:
        s.add_account("alice@example.com", "password1")
        s.add_account("bob@example.com", "password1")
        yield s


def raw_reply(c: RawSmtp) -> list[bytes]:
    """The lines of one reply exactly as sent (CRLF stripped)."""
    lines = []
    while True:
        line = c._line()
        lines.append(line)
        if line[3:4] != b"-":
            return lines


def raw_cmd(c: RawSmtp, line: str | bytes) -> list[bytes]:
    c.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
    return raw_reply(c)


def plain(user: str = "alice@example.com", password: str = "password1") -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def keywords(lines: list[bytes]) -> set[str]:
    return {line[4:].decode() for line in lines[1:]}


def test_greeting_and_ehlo_format_on_25(srv: RunningServer) -> None:
    with RawSmtp(srv.port("smtp")) as c:
        assert re.fullmatch(r"mail\.test( .*)?", c.greeting[1]) and c.greeting[0] == 220  # §4.2 / §4.3.1
        lines = raw_cmd(c, "EHLO client.example")
        # RFC 5321 §4.1.1.1: "250-" Domain ..., one keyword per line, the last one "250 ".
        assert lines[0] == b"250-mail.test"
        assert all(line.startswith(b"250-") for line in lines[:-1]) and lines[-1].startswith(b"250 ")
        assert keywords(lines) == {"PIPELINING", f"SIZE {LIMIT}", "8BITMIME", "CHUNKING", "SMTPUTF8",
                                   "DSN", "ENHANCEDSTATUSCODES", "STARTTLS"}  # no AUTH on 25
        assert raw_cmd(c, "HELO client.example") == [b"250 mail.test"]
        assert c.cmd("QUIT") == (221, "2.0.0 Bye")
        assert c.closed()


def test_ehlo_keywords_on_submission_ports(srv: RunningServer) -> None:
    with RawSmtp(srv.port("submission")) as c:
        before = keywords(raw_cmd(c, "EHLO laptop.example"))
        assert "STARTTLS" in before and not any(k.startswith("AUTH") for k in before)
        c.starttls(srv.client_tls())
        after = keywords(raw_cmd(c, "EHLO laptop.example"))
        assert "AUTH PLAIN LOGIN" in after and "STARTTLS" not in after  # RFC 3207 §4.2
    with RawSmtp(srv.port("submissions"), tls=srv.client_tls()) as c:
        words = keywords(raw_cmd(c, "EHLO laptop.example"))
        assert "AUTH PLAIN LOGIN" in words and "STARTTLS" not in words


def test_unknown_command_is_500_5_5_2(srv: RunningServer) -> None:
    # RFC 3463 §3.6: X.5.2 is "could not be interpreted ... the command is unrecognized";
    # X.5.1 is for out-of-sequence or unsupported commands (we used 5.5.1 for both).
    with RawSmtp(srv.port("smtp")) as c:
        c.cmd("EHLO client.example")
        assert c.cmd("FOO") == (500, "5.5.2 Command unrecognized")
        assert c.cmd("XYZZY bar") == (500, "5.5.2 Command unrecognized")
        assert c.cmd("RCPT TO:<bob@example.com>")[1].startswith("5.5.1")  # out of sequence


def test_session_commands_and_transaction_reset(srv: RunningServer) -> None:
    with RawSmtp(srv.port("smtp")) as c:
        c.cmd("EHLO client.example")
        assert c.cmd("NOOP") == (250, "2.0.0 OK")
        assert c.cmd("NOOP some text") == (250, "2.0.0 OK")
        assert c.cmd("MAIL FROM:<> FOO=BAR") == (555, "5.5.4 Parameter not recognized or not implemented")
        assert c.cmd("MAIL FROM:<>")[0] == 250  # null reverse-path accepted on 25 (bounces)
        assert c.cmd("RCPT TO:<BOB@Example.COM>")[0] == 250  # RFC 5321 §2.4: domain case
        assert c.cmd("RCPT TO:<bob@example.com> FOO=1")[0] == 555
        assert c.cmd("RSET") == (250, "2.0.0 Reset OK")
        assert c.cmd("RCPT TO:<bob@example.com>")[0] == 503
        assert c.cmd("MAIL FROM:<a@outside.example>")[0] == 250
        c.cmd("EHLO client.example")  # RFC 5321 §4.1.4: a second EHLO resets the transaction
        assert c.cmd("RCPT TO:<bob@example.com>")[0] == 503
        assert c.cmd("MAIL FROM:<a@outside.example> SIZE=1 BODY=8BITMIME")[0] == 250
        assert c.cmd("MAIL FROM:<a@outside.example>")[0] == 503  # nested MAIL
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("MAIL FROM:<a@outside.example> RET=HDRS")[0] == 250  # DSN is offered (RFC 3461)
        assert c.cmd("RSET")[0] == 250


def test_data_trace_headers_and_transparency(srv: RunningServer) -> None:
    before = len(messages(srv, "bob@example.com"))
    with RawSmtp(srv.port("smtp")) as c:
        c.cmd("EHLO mx.outside.example")
        c.cmd("MAIL FROM:<sender@outside.example>")
        c.cmd("RCPT TO:<bob@example.com>")
        code, text = c.cmd("DATA")
        assert code == 354 and not re.match(r"\d\.\d", text)  # no enhanced code on 3xx
        c.send(b"Subject: dots\r\n\r\n..leading dot\r\n...two\r\nend\r\n.\r\n")
        code, text = c.reply()
        assert code == 250 and text.startswith("2.0.0 ")
    stored = messages(srv, "bob@example.com")[before]
    assert stored.startswith(b"Return-Path: <sender@outside.example>\r\nReceived: from mx.outside.example ")
    # RFC 5321 §4.4: from Extended-Domain (TCP-info) by Domain with Protocol id ID for Path ; date
    received = stored.split(b"\r\n", 1)[1].split(b";", 1)[0].decode()
    assert re.fullmatch(r"Received: from mx\.outside\.example \(\[127\.0\.0\.1\]\)\r\n\tby mail\.test "
                        r"\(postoffice\) with ESMTP id [0-9A-F]+\r\n\tfor <bob@example\.com>", received)
    assert body_after_trace(stored) == b"Subject: dots\r\n\r\n.leading dot\r\n..two\r\nend\r\n"


def test_size_declared_and_sent_exactly_at_the_limit(srv: RunningServer) -> None:
    with RawSmtp(srv.port("smtp")) as c:
        c.cmd("EHLO mx.outside.example")
        assert c.cmd(f"MAIL FROM:<a@outside.example> SIZE={LIMIT + 1}") == (
            552, "5.3.4 Message size exceeds fixed maximum message size")  # RFC 1870 §6.1
        assert c.cmd(f"MAIL FROM:<a@outside.example> SIZE={LIMIT}")[0] == 250
        c.cmd("RCPT TO:<bob@example.com>")
        head = b"Subject: big\r\n\r\n"
        body = head + b"x" * (LIMIT - len(head) - 2) + b"\r\n"
        assert len(body) == LIMIT
        assert c.cmd("DATA")[0] == 354
        c.send(body + b".\r\n")
        assert c.reply()[0] == 250
        c.cmd("MAIL FROM:<a@outside.example>")
        c.cmd("RCPT TO:<bob@example.com>")
        c.cmd("DATA")
        c.send(b"x" + body + b".\r\n")
        assert c.reply()[0] == 552


def test_bdat_replies(srv: RunningServer) -> None:
    with RawSmtp(srv.port("smtp")) as c:
        c.cmd("EHLO mx.outside.example")
        c.cmd("MAIL FROM:<a@outside.example>")
        c.cmd("RCPT TO:<bob@example.com>")
        c.send(b"BDAT 18\r\nSubject: b\r\n\r\nhi\r\n")
        assert c.reply() == (250, "2.0.0 18 octets received")  # RFC 3030 §2, non-LAST chunk
        c.send(b"BDAT 0 LAST\r\n")
        code, text = c.reply()
        assert code == 250 and text.startswith("2.0.0 ")


def test_auth_replies(srv: RunningServer) -> None:
    with RawSmtp(srv.port("smtp")) as c:
        c.cmd("EHLO mx.outside.example")
        assert c.cmd("AUTH PLAIN " + plain())[0] == 503  # never on 25
    with RawSmtp(srv.port("submission")) as c:
        c.cmd("EHLO laptop.example")
        assert c.cmd("AUTH PLAIN " + plain()) == (530, "5.7.0 Must issue a STARTTLS command first")
        assert c.cmd("MAIL FROM:<alice@example.com>") == (530, "5.7.0 Authentication required")
    with RawSmtp(srv.port("submissions"), tls=srv.client_tls()) as c:
        c.cmd("EHLO laptop.example")
        assert c.cmd("AUTH CRAM-MD5") == (504, "5.5.4 Unrecognized authentication mechanism")
        assert c.cmd("AUTH PLAIN !!!!")[:1] == (501,)
        assert c.cmd("AUTH PLAIN " + plain(password="wrong")) == (535, "5.7.8 Authentication credentials invalid")
        # RFC 4954 §4 / §8: continue-req = "334" SP [base64] CRLF, the space even when empty.
        assert raw_cmd(c, "AUTH PLAIN") == [b"334 "]
        assert c.cmd("*")[0] == 501  # cancelled
        assert raw_cmd(c, "AUTH LOGIN") == [b"334 " + base64.b64encode(b"Username:")]
        assert c.cmd("not base64!") == (501, "5.5.2 Cannot decode response")
        assert raw_cmd(c, "AUTH PLAIN") == [b"334 "]
        # RFC 4954 §6: an over-long SASL line is 500 5.5.6, not the generic 5.5.2.
        assert c.cmd(b"A" * 13000) == (500, "5.5.6 Authentication Exchange line is too long")
        assert c.cmd("AUTH PLAIN " + plain()) == (235, "2.7.0 Authentication successful")
        assert c.cmd("AUTH PLAIN " + plain())[0] == 503  # already authenticated
        assert c.cmd("MAIL FROM:<alice@example.com> AUTH=<>")[0] == 250  # RFC 4954 §5


def test_submission_adds_missing_date_and_message_id(srv: RunningServer) -> None:
    # RFC 6409 §8.2 / §8.3: the MSA adds Date and Message-ID when the client left them out
    # (RFC 5322 §3.6 requires Date); present ones are never touched.
    before = len(messages(srv, "bob@example.com"))
    bare = b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: no date\r\n\r\nhi\r\n"
    full = (b"From: alice@example.com\r\nDate: Mon, 02 Mar 2026 10:00:00 +0100\r\n"
            b"Message-ID: <given@example.com>\r\n\r\nhi\r\n")
    with RawSmtp(srv.port("submissions"), tls=srv.client_tls()) as c:
        c.cmd("EHLO laptop.example")
        assert c.cmd("AUTH PLAIN " + plain())[0] == 235
        for message in (bare, full):
            c.cmd("MAIL FROM:<alice@example.com>")
            c.cmd("RCPT TO:<bob@example.com>")
            c.cmd("DATA")
            c.send(message + b".\r\n")
            assert c.reply()[0] == 250
    first, second = (body_after_trace(m) for m in messages(srv, "bob@example.com")[before:])
    head, _, body = first.partition(b"\r\n\r\n")
    assert head.startswith(b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: no date\r\n")
    assert re.search(rb"\r\nDate: \w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}(\r\n|$)", head)
    assert re.search(rb"\r\nMessage-ID: <[^<>@\s]+@mail\.test>(\r\n|$)", head)
    assert body == b"hi\r\n"
    assert second == full


def test_port_25_leaves_the_message_alone(srv: RunningServer) -> None:
    before = len(messages(srv, "bob@example.com"))
    bare = b"From: x@outside.example\r\nSubject: relay\r\n\r\nhi\r\n"
    with RawSmtp(srv.port("smtp")) as c:
        c.cmd("EHLO mx.outside.example")
        c.cmd("MAIL FROM:<x@outside.example>")
        c.cmd("RCPT TO:<bob@example.com>")
        c.cmd("DATA")
        c.send(bare + b".\r\n")
        assert c.reply()[0] == 250
    assert body_after_trace(messages(srv, "bob@example.com")[before]) == bare
