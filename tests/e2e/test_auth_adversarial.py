"""Logins under attack, the same on IMAP, POP3 and SMTP submission (issue #12): one
authorization-identity rule, one plaintext rule, one failure answer in one time."""

from __future__ import annotations

import base64
import imaplib
import poplib
import smtplib
from collections.abc import Iterator

import pytest

from tests.support.server import RunningServer

PASSWORD = "password1"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("authadv") / "data",
                       security={"throttle_block_after": 1000}) as server:
        server.add_account("alice@example.com", PASSWORD)
        server.add_account("bob@example.com", PASSWORD)
        yield server


def _plain(authzid: str, user: str, password: str) -> str:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()


def imap_plain(srv: RunningServer, authzid: str, user: str, password: str) -> tuple[bool, str]:
    with imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.client_tls()) as imap:
        try:
            typ, data = imap.authenticate("PLAIN", lambda _: f"{authzid}\0{user}\0{password}".encode())
        except imaplib.IMAP4.error as exc:
            return False, str(exc)
        return typ == "OK", data[0].decode()


def pop3_plain(srv: RunningServer, authzid: str, user: str, password: str) -> tuple[bool, str]:
    pop = poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=srv.client_tls())
    try:
        try:
            return True, pop._shortcmd("AUTH PLAIN " + _plain(authzid, user, password)).decode()
        except poplib.error_proto as exc:
            return False, str(exc)
    finally:
        pop.close()


def smtp_plain(srv: RunningServer, authzid: str, user: str, password: str) -> tuple[bool, str]:
    with smtplib.SMTP_SSL("127.0.0.1", srv.port("submissions"), context=srv.client_tls()) as smtp:
        smtp.ehlo("client.test")
        code, text = smtp.docmd("AUTH", "PLAIN " + _plain(authzid, user, password))
        return code == 235, f"{code} {text.decode()}"


LOGINS = {"imap": imap_plain, "pop3": pop3_plain, "smtp": smtp_plain}


@pytest.mark.parametrize("protocol", sorted(LOGINS))
def test_authzid_naming_the_same_address_is_accepted_everywhere(srv: RunningServer, protocol: str) -> None:
    # RFC 4422 §3.4.1: an authzid naming the authenticated identity itself is fine, in
    # whatever spelling the address normalisation treats as the same address.
    login = LOGINS[protocol]
    for authzid in ("alice@example.com", "ALICE@Example.COM", "alice@EXAMPLE.com."):
        ok, text = login(srv, authzid, "alice@example.com", PASSWORD)
        assert ok, (authzid, text)


@pytest.mark.parametrize("protocol", sorted(LOGINS))
def test_authzid_naming_someone_else_is_refused_everywhere(srv: RunningServer, protocol: str) -> None:
    ok, text = LOGINS[protocol](srv, "bob@example.com", "alice@example.com", PASSWORD)
    assert not ok, text
