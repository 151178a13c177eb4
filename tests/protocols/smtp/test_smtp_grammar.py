"""Grammar, command parsing and reply serialisation (no connection state)."""

from __future__ import annotations

import pytest

from postoffice.protocols.smtp import replies as r
from postoffice.protocols.smtp.commands import (
    Auth,
    Bdat,
    Data,
    Ehlo,
    Expn,
    Helo,
    Help,
    InvalidCommand,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Rset,
    StartTls,
    Vrfy,
    parse_command,
)
from postoffice.protocols.smtp.grammar import (
    Body,
    Extensions,
    GrammarError,
    Mailbox,
    MailParams,
    RcptParams,
    is_domain,
    parse_forward_path,
    parse_reverse_path,
    xtext_decode,
    xtext_encode,
)
from postoffice.protocols.smtp.replies import Reply, ehlo_reply, greeting

A = Mailbox("a", "example.org")

GOOD = [
    (b"EHLO client.example", Ehlo("client.example")),
    (b"ehlo [192.0.2.1]", Ehlo("[192.0.2.1]")),
    (b"HELO my_pc", Helo("my_pc")),
    (b"MAIL FROM:<a@example.org>", MailFrom(A)),
    (b"mail from:<a@example.org>", MailFrom(A)),
    (b"MAIL FROM: <a@example.org>", MailFrom(A)),
    (b"MAIL FROM:<>", MailFrom(None)),
    (b"MAIL FROM:<@relay.example,@r2.example:a@example.org>", MailFrom(A)),
    (b'MAIL FROM:<"john doe"@example.org>', MailFrom(Mailbox("john doe", "example.org"))),
    (b'MAIL FROM:<"a\\"b"@example.org>', MailFrom(Mailbox('a"b', "example.org"))),
    (b"MAIL FROM:<a@[192.0.2.1]>", MailFrom(Mailbox("a", "[192.0.2.1]"))),
    (b"MAIL FROM:<a@[IPv6:2001:db8::1]>", MailFrom(Mailbox("a", "[IPv6:2001:db8::1]"))),
    (b"MAIL FROM:<a@[x-tag:stuff]>", MailFrom(Mailbox("a", "[x-tag:stuff]"))),
    (b"MAIL FROM:<a@example.org> SIZE=1000", MailFrom(A, MailParams(size=1000))),
    (b"MAIL FROM:<a@example.org> BODY=8bitmime", MailFrom(A, MailParams(body=Body.EIGHT_BIT_MIME))),
    (b"MAIL FROM:<a@example.org> BODY=7BIT", MailFrom(A, MailParams(body=Body.SEVEN_BIT))),
    (b"MAIL FROM:<a@example.org> BODY=BINARYMIME", MailFrom(A, MailParams(body=Body.BINARY_MIME))),
    (b"MAIL FROM:<a@example.org> AUTH=<>", MailFrom(A, MailParams(auth=""))),
    (b"MAIL FROM:<a@example.org> AUTH=e+2Bx@example.org", MailFrom(A, MailParams(auth="e+x@example.org"))),
    (b"MAIL FROM:<a@example.org> RET=hdrs ENVID=QQ314159",
     MailFrom(A, MailParams(ret="HDRS", envid="QQ314159"))),
    ("MAIL FROM:<jörg@bücher.example> SMTPUTF8".encode(),
     MailFrom(Mailbox("jörg", "bücher.example"), MailParams(smtputf8=True))),
    (b"MAIL FROM:<a@example.org>  SIZE=1   BODY=8BITMIME",
     MailFrom(A, MailParams(size=1, body=Body.EIGHT_BIT_MIME))),
    (b"RCPT TO:<a@example.org>", RcptTo(A)),
    (b"RCPT TO:<Postmaster>", RcptTo(Mailbox("Postmaster", ""))),
    (b"RCPT TO:<a@example.org> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+2Bb@example.org",
     RcptTo(A, RcptParams(frozenset({"SUCCESS", "DELAY"}), ("rfc822", "a+b@example.org")))),
    (b"RCPT TO:<a@example.org> NOTIFY=NEVER", RcptTo(A, RcptParams(frozenset({"NEVER"})))),
    (b"DATA", Data()),
    (b"BDAT 100", Bdat(100, False)),
    (b"BDAT 0 LAST", Bdat(0, True)),
    (b"bdat 5 last", Bdat(5, True)),
    (b"RSET", Rset()),
    (b"NOOP", Noop("")),
    (b"NOOP hello there", Noop("hello there")),
    (b"QUIT", Quit()),
    (b"STARTTLS", StartTls()),
    (b"AUTH PLAIN", Auth("PLAIN", None)),
    (b"auth plain AGEAYg==", Auth("PLAIN", b"\x00a\x00b")),
    (b"AUTH PLAIN =", Auth("PLAIN", b"")),
    (b"AUTH LOGIN YWxpY2U=", Auth("LOGIN", b"alice")),
    (b"VRFY postmaster", Vrfy("postmaster")),
    (b"EXPN staff", Expn("staff")),
    (b"HELP", Help("")),
    (b"HELP MAIL", Help("MAIL")),
]


@pytest.mark.parametrize(("line", "expected"), GOOD, ids=[g[0].decode() for g in GOOD])
def test_good_commands(line: bytes, expected: object) -> None:
    assert parse_command(line, utf8_transaction=False) == expected


BAD = [
    (b"", r.R500_SYNTAX),
    (b" EHLO x", r.R500_SYNTAX),
    (b"FOO bar", r.R500_UNRECOGNIZED),
    (b"TURN", r.R502_NOT_IMPLEMENTED),
    (b"EHLO", r.R501_SYNTAX_PARAMS),
    (b"EHLO a b", r.R501_SYNTAX_PARAMS),
    (b"EHLO x\x00", r.R500_SYNTAX),
    (b"EHLO \xff\xfe", r.R500_SYNTAX),
    (b"EHLO x\ty", r.R500_SYNTAX),
    (b"EHLO x\ny", r.R500_SYNTAX),
    (b"EHLO x\ry", r.R500_SYNTAX),
    (b"MAIL", r.R501_SYNTAX_PARAMS),
    (b"MAIL TO:<a@example.org>", r.R501_SYNTAX_PARAMS),
    (b"MAIL FROM:a@example.org", r.R501_BAD_SENDER),
    (b"MAIL FROM:<a@example.org", r.R501_BAD_SENDER),
    (b"MAIL FROM:<a@@example.org>", r.R501_BAD_SENDER),
    (b"MAIL FROM:<a..b@example.org>", r.R501_BAD_SENDER),
    (b"MAIL FROM:<.a@example.org>", r.R501_BAD_SENDER),
    (b"MAIL FROM:<a@example.org.>", r.R501_BAD_SENDER),
    (b"MAIL FROM:<a@-example.org>", r.R501_BAD_SENDER),
    (b"MAIL FROM:<a@exa_mple.org>", r.R501_BAD_SENDER),
    (b"MAIL FROM:<a>", r.R501_BAD_SENDER),
    (b"MAIL FROM:<a@[300.1.1.1]>", r.R501_BAD_SENDER),
    (b"MAIL FROM:<a@[IPv6:zz::1]>", r.R501_BAD_SENDER),
    (b"MAIL FROM:<a@" + b"x" * 64 + b".example>", r.R501_BAD_SENDER),
    (b"MAIL FROM:<a@example.org>garbage", r.R501_SYNTAX_PARAMS),
    (b"MAIL FROM:<a@example.org> SIZE=abc", r.R501_SYNTAX_PARAMS),
    (b"MAIL FROM:<a@example.org> SIZE=1 SIZE=2", r.R501_SYNTAX_PARAMS),
    (b"MAIL FROM:<a@example.org> BODY=9BIT", r.R501_SYNTAX_PARAMS),
    (b"MAIL FROM:<a@example.org> FOO=bar", r.R555_UNKNOWN_PARAM),
    (b"MAIL FROM:<a@example.org> RET=ALL", r.R501_SYNTAX_PARAMS),
    (b"MAIL FROM:<a@example.org> ENVID=" + b"x" * 101, r.R501_SYNTAX_PARAMS),
    (b"MAIL FROM:<a@example.org> ENVID=a+zz", r.R501_SYNTAX_PARAMS),
    (b"MAIL FROM:<a@example.org> SMTPUTF8=yes", r.R501_SYNTAX_PARAMS),
    (b"MAIL FROM:<a@example.org> =x", r.R501_SYNTAX_PARAMS),
    ("MAIL FROM:<jörg@example.org>".encode(), r.R553_NEED_SMTPUTF8),
    ("RCPT TO:<jörg@example.org>".encode(), r.R553_NEED_SMTPUTF8),
    (b"RCPT TO:<>", r.R501_BAD_RECIPIENT),
    (b"RCPT TO:<a@example.org> NOTIFY=NEVER,SUCCESS", r.R501_SYNTAX_PARAMS),
    (b"RCPT TO:<a@example.org> NOTIFY=SOMETIMES", r.R501_SYNTAX_PARAMS),
    (b"RCPT TO:<a@example.org> NOTIFY=SUCCESS,SUCCESS", r.R501_SYNTAX_PARAMS),
    (b"RCPT TO:<a@example.org> ORCPT=rfc822", r.R501_SYNTAX_PARAMS),
    (b"RCPT TO:<a@example.org> SIZE=1", r.R555_UNKNOWN_PARAM),
    (b"DATA now", r.R501_SYNTAX_PARAMS),
    (b"BDAT", r.R501_SYNTAX_PARAMS),
    (b"BDAT -1", r.R501_SYNTAX_PARAMS),
    (b"BDAT 10 FIRST", r.R501_SYNTAX_PARAMS),
    (b"BDAT 1 LAST x", r.R501_SYNTAX_PARAMS),
    (b"BDAT " + b"9" * 21, r.R501_SYNTAX_PARAMS),
    (b"RSET x", r.R501_SYNTAX_PARAMS),
    (b"STARTTLS now", r.R501_SYNTAX_PARAMS),
    (b"AUTH", r.R501_SYNTAX_PARAMS),
    (b"AUTH PLAIN a b", r.R501_SYNTAX_PARAMS),
    (b"AUTH PLAIN *", r.R501_AUTH_CANCELLED),
    (b"AUTH PLAIN ###", r.R501_BAD_BASE64),
    (b"VRFY", r.R501_SYNTAX_PARAMS),
    (b"EXPN", r.R501_SYNTAX_PARAMS),
]


@pytest.mark.parametrize(("line", "reply"), BAD, ids=[repr(b[0])[:60] for b in BAD])
def test_bad_commands(line: bytes, reply: Reply) -> None:
    result = parse_command(line)
    assert result == InvalidCommand(reply, line)


def test_params_need_ehlo() -> None:
    line = b"MAIL FROM:<a@example.org> SIZE=10"
    assert parse_command(line, esmtp=False) == InvalidCommand(r.R555_UNKNOWN_PARAM, line)
    assert parse_command(b"MAIL FROM:<a@example.org>", esmtp=False) == MailFrom(A)


def test_utf8_rcpt_allowed_in_smtputf8_transaction() -> None:
    line = "RCPT TO:<ü@bücher.example>".encode()
    assert parse_command(line, utf8_transaction=True) == RcptTo(Mailbox("ü", "bücher.example"))


def test_disabled_extensions() -> None:
    ext = Extensions(eightbitmime=False, binarymime=False, smtputf8=False, dsn=False)
    for line in (b"MAIL FROM:<a@example.org> BODY=8BITMIME", b"MAIL FROM:<a@example.org> SMTPUTF8",
                 b"MAIL FROM:<a@example.org> RET=FULL", b"RCPT TO:<a@example.org> NOTIFY=NEVER",
                 b"MAIL FROM:<a@example.org> BODY=BINARYMIME"):
        assert parse_command(line, extensions=ext) == InvalidCommand(r.R555_UNKNOWN_PARAM, line)
    assert parse_command(b"BDAT 1", chunking=False) == InvalidCommand(r.R502_NOT_IMPLEMENTED, b"BDAT 1")


def test_paths_return_rest() -> None:
    assert parse_reverse_path("<> SIZE=1", utf8=False) == (None, " SIZE=1")
    assert parse_forward_path("<a@example.org> X", utf8=False) == (A, " X")
    with pytest.raises(GrammarError):
        parse_forward_path("<a@exa mple.org>", utf8=False)


@pytest.mark.parametrize(
    ("domain", "utf8", "ok"),
    [("example.org", False, True), ("a-b.example", False, True), ("xn--bcher-kva.example", False, True),
     ("bücher.example", True, True), ("bücher.example", False, False), ("-a.example", False, False),
     ("a..b", False, False), ("", False, False), ("a" * 64 + ".example", False, False),
     (("a" * 60 + ".") * 5, False, False)],
)
def test_is_domain(domain: str, utf8: bool, ok: bool) -> None:
    assert is_domain(domain, utf8=utf8) is ok


def test_mailbox_str_quotes_when_needed() -> None:
    assert str(A) == "a@example.org"
    assert str(Mailbox("john doe", "example.org")) == '"john doe"@example.org'
    assert str(Mailbox('a"b', "example.org")) == '"a\\"b"@example.org'
    assert str(Mailbox("Postmaster", "")) == "Postmaster"


def test_xtext() -> None:
    assert xtext_decode("a+2Bb+3Dc") == "a+b=c"
    assert xtext_encode("a+b=c d") == "a+2Bb+3Dc+20d"
    assert xtext_decode(xtext_encode("user+tag@example.org")) == "user+tag@example.org"


# -- replies ---------------------------------------------------------------------------


def test_reply_single_line() -> None:
    assert bytes(r.R250_OK) == b"250 2.0.0 OK\r\n"
    assert bytes(r.R503_NEED_MAIL) == b"503 5.5.1 Need MAIL command\r\n"
    assert bytes(r.R354_START_DATA) == b"354 End data with <CR><LF>.<CR><LF>\r\n"


def test_reply_multi_line_carries_enhanced_code_on_each_line() -> None:
    reply = Reply(550, "5.7.1", "first\nsecond\nthird")
    assert bytes(reply) == b"550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n"


def test_reply_cannot_inject_lines() -> None:
    assert bytes(Reply(250, "2.0.0", "a\r\nb")) == b"250-2.0.0 a\r\n250 2.0.0 b\r\n"


def test_reply_validation() -> None:
    with pytest.raises(ValueError):
        Reply(250, "5.0.0", "mismatch")
    with pytest.raises(ValueError):
        Reply(99, None, "bad code")


def test_ehlo_and_greeting() -> None:
    assert bytes(ehlo_reply("mx.example", ["PIPELINING", "SIZE 10"])) == (
        b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
    )
    assert bytes(ehlo_reply("mx.example", [])) == b"250 mx.example\r\n"
    assert bytes(greeting("mx.example")) == b"220 mx.example ESMTP postoffice\r\n"


def test_every_constant_has_enhanced_code_unless_3xx() -> None:
    constants = {n: v for n, v in vars(r).items() if n.startswith("R") and isinstance(v, Reply)}
    assert len(constants) > 30
    for name, value in constants.items():
        assert name.startswith(f"R{value.code}_"), name
        assert (value.enhanced is None) == (300 <= value.code < 400), name
