from __future__ import annotations

import pytest

from postoffice.protocols.pop3 import (
    Apop, Auth, Capa, Dele, InvalidCommand, List, Noop, Pass, Quit, Retr, Rset, Stat, Stls, Top,
    Uidl, User, parse_command,
)
from postoffice.protocols.pop3.commands import ALL_COMMANDS, VERB_OF

GOOD = [
    (b"USER alice", User("alice")),
    (b"user alice@example.org", User("alice@example.org")),
    (b"PASS secret", Pass("secret")),
    (b"PASS pass with spaces ", Pass("pass with spaces ")),
    (b"PASS p\xc3\xa4ss", Pass("p\u00e4ss")),
    (b"APOP mrose c4c9334bac560ecc979e58001b3e22fb", Apop("mrose", "c4c9334bac560ecc979e58001b3e22fb")),
    (b"STAT", Stat()),
    (b"stat", Stat()),
    (b"LIST", List()),
    (b"LIST 2", List(2)),
    (b"LiSt 007", List(7)),
    (b"RETR 1", Retr(1)),
    (b"RETR 99999", Retr(99999)),
    (b"RETR 99999999999999999999", Retr(10**9)),
    (b"DELE 3", Dele(3)),
    (b"NOOP", Noop()),
    (b"RSET", Rset()),
    (b"QUIT", Quit()),
    (b"TOP 1 0", Top(1, 0)),
    (b"top 2 10", Top(2, 10)),
    (b"UIDL", Uidl()),
    (b"UIDL 4", Uidl(4)),
    (b"CAPA", Capa()),
    (b"STLS", Stls()),
    (b"AUTH", Auth()),
    (b"AUTH plain", Auth("PLAIN")),
    (b"AUTH PLAIN AGFsaWNlAHNlY3JldA==", Auth("PLAIN", b"AGFsaWNlAHNlY3JldA==")),
    (b"AUTH PLAIN =", Auth("PLAIN", b"=")),
    (b"QUIT\r\n", Quit()),
    (b"QUIT\n", Quit()),
]


@pytest.mark.parametrize(("line", "command"), GOOD, ids=[g[0].decode("latin-1") for g in GOOD])
def test_parse_good(line: bytes, command: object) -> None:
    assert parse_command(line) == command


BAD = [
    (b"", "empty command"),
    (b" STAT", "command must not start with a space"),
    (b"FOO", "unknown command"),
    (b"\xff\xfe", "unknown command"),
    (b"RETR", "RETR takes exactly one argument, a message number"),
    (b"RETR 0", "message numbers start at 1"),
    (b"RETR -1", 'RETR needs a message number, not "-1"'),
    (b"RETR one", 'RETR needs a message number, not "one"'),
    (b"RETR 1 2", "RETR takes exactly one argument, a message number"),
    (b"RETR  1", "arguments must be separated by a single space"),
    (b"DELE x", 'DELE needs a message number, not "x"'),
    (b"LIST 1 2", "LIST takes at most one argument, a message number"),
    (b"UIDL 0", "message numbers start at 1"),
    (b"TOP 1", "TOP takes a message number and a number of lines"),
    (b"TOP 1 -1", "the number of lines must be a non-negative integer"),
    (b"TOP 1 x", "the number of lines must be a non-negative integer"),
    (b"TOP 0 1", "message numbers start at 1"),
    (b"STAT 1", "STAT takes no arguments"),
    (b"NOOP x", "NOOP takes no arguments"),
    (b"QUIT now", "QUIT takes no arguments"),
    (b"STLS x", "STLS takes no arguments"),
    (b"CAPA x", "CAPA takes no arguments"),
    (b"USER", "USER takes exactly one argument, the user name"),
    (b"USER a b", "USER takes exactly one argument, the user name"),
    (b"USER \xff", "USER argument is not valid UTF-8"),
    (b"PASS", "PASS needs a password"),
    (b"PASS \xff", "PASS argument is not valid UTF-8"),
    (b"APOP x", "APOP takes a name and a digest"),
    (b"AUTH PL@IN", "invalid SASL mechanism name"),
    (b"AUTH PLAIN a b", "AUTH takes a mechanism and an optional initial response"),
    (b"AUTH PLAIN *", 'the initial response must be base64 or "="'),
    (b"RETR \xd9\xa1", 'RETR needs a message number, not "??"'),  # Arabic-Indic digit one
]


@pytest.mark.parametrize(("line", "message"), BAD, ids=[b[0].decode("latin-1") for b in BAD])
def test_parse_bad(line: bytes, message: str) -> None:
    result = parse_command(line)
    assert isinstance(result, InvalidCommand)
    assert result.message == message


def test_command_line_limit_is_255_with_crlf() -> None:
    assert parse_command(b"USER " + b"a" * 248) == User("a" * 248)  # 253 + CRLF = 255
    assert parse_command(b"USER " + b"a" * 249) == InvalidCommand("line too long", "USER")


def test_auth_line_may_be_longer() -> None:
    response = b"A" * 400
    assert parse_command(b"AUTH PLAIN " + response) == Auth("PLAIN", response)
    assert parse_command(b"AUTH PLAIN " + b"A" * 500).message == "line too long"  # type: ignore[union-attr]


def test_every_command_has_a_verb() -> None:
    assert set(VERB_OF) == set(ALL_COMMANDS)
