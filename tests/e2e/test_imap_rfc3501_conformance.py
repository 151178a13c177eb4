"""IMAP conformance defects of issue 11 (part A), end to end against a real server: exact
responses over a raw socket (``Wire``) where the wire form is the point, and the stdlib
imaplib / imapclient where it is what a user's client sees. One server for the module;
each test uses its own account."""

from __future__ import annotations

import imaplib
import itertools
import re
from collections.abc import Iterator

import imapclient
import pytest

from tests.support.imapwire import Wire
from tests.support.server import RunningServer

PASSWORD = "password1"
_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("imap11") / "data") as server:
        yield server


def new_account(srv: RunningServer, *messages: bytes) -> tuple[str, int]:
    address = f"i11a{next(_numbers)}@example.com"
    account = srv.add_account(address, PASSWORD)
    for raw in messages:
        srv.call(srv.store.deliver([(account.id, "INBOX")], raw))
    return address, account.id


def client(srv: RunningServer, address: str) -> imapclient.IMAPClient:
    c = imapclient.IMAPClient("127.0.0.1", port=srv.port("imaps"), ssl=True, ssl_context=srv.client_tls(),
                              timeout=10)
    c.login(address, PASSWORD)
    return c


def imaps(srv: RunningServer, address: str) -> imaplib.IMAP4_SSL:
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.client_tls(), timeout=10)
    m.login(address, PASSWORD)
    return m


def wire(srv: RunningServer, address: str) -> Wire:
    w = Wire.tls(srv)
    w.login(address, PASSWORD)
    return w


def ok(lines: list[bytes], tag: bytes) -> list[bytes]:
    assert lines[-1].startswith(tag + b" OK"), lines
    return lines[:-1]


# -- 7: ENVELOPE personal name from the legacy "user@domain (Real Name)" form ------------------

def test_envelope_name_from_trailing_comment(srv: RunningServer) -> None:
    address, _ = new_account(srv, b"From: real@example.org (Real Name)\r\nTo: a@example.com, b@example.com (Bee)\r\n"
                                  b"Subject: legacy\r\n\r\nbody\r\n")
    c = client(srv, address)
    c.select_folder("INBOX")
    env = c.fetch([1], ["ENVELOPE"])[1][b"ENVELOPE"]
    assert (env.from_[0].name, env.from_[0].mailbox, env.from_[0].host) == (b"Real Name", b"real", b"example.org")
    assert [(a.name, a.mailbox) for a in env.to] == [(None, b"a"), (b"Bee", b"b")]
    c.logout()


# -- 8: SEARCH FROM/TO/CC/BCC match the envelope addresses ---------------------------------------

def test_search_address_keys_use_envelope_addresses(srv: RunningServer) -> None:
    address, _ = new_account(
        srv,
        b"From: <@relay.example:alice@example.org>\r\nTo: bob(team-lead)@example.com\r\nSubject: one\r\n\r\nx\r\n",
        b"From: Carol <carol@example.net>\r\nTo: relay.example <list@example.com>\r\nSubject: two\r\n\r\nx\r\n",
    )
    m = imaps(srv, address)
    m.select("INBOX")
    assert m.search(None, "FROM", '"relay.example"') == ("OK", [b""])  # the route is not an address
    assert m.search(None, "HEADER", "FROM", '"relay.example"') == ("OK", [b"1"])
    assert m.search(None, "TO", '"team-lead"') == ("OK", [b""])  # a comment is not an address
    assert m.search(None, "TO", '"relay.example"') == ("OK", [b"2"])  # a display name is
    assert m.search(None, "FROM", "alice@example.org") == ("OK", [b"1"])
    assert m.search(None, "TO", '"bob@example.com"') == ("OK", [b"1"])
    m.logout()
