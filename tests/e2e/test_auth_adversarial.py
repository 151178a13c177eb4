"""Logins under attack, the same on IMAP, POP3 and SMTP submission (issue #12): one
authorization-identity rule, one plaintext rule, one failure answer in one time."""

from __future__ import annotations

import base64
import imaplib
import poplib
import smtplib
import time
from collections.abc import Iterator

import pytest

from tests.support.server import RunningServer

PASSWORD = "password1"
DELAY = 0.4  # security.auth_failure_delay in this module


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("authadv") / "data",
                       security={"throttle_block_after": 1000, "throttle_delay_after": 1000,
                                 "auth_failure_delay": DELAY}) as server:
        server.add_account("alice@example.com", PASSWORD)
        server.add_account("bob@example.com", PASSWORD)
        server.add_account("user10@example.com", PASSWORD)
        yield server


def _plain(authzid: str, user: str, password: str) -> str:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()


class Attempt:
    """One login: did it work, the server's words, and how long the answer took."""

    def __init__(self) -> None:
        self.ok = False
        self.text = ""
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> Attempt:
        self._start = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self._start

    def __iter__(self) -> Iterator[object]:
        return iter((self.ok, self.text))


def imap_plain(srv: RunningServer, authzid: str, user: str, password: str) -> Attempt:
    with imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.client_tls()) as imap:
        with Attempt() as attempt:
            try:
                typ, data = imap.authenticate("PLAIN", lambda _: f"{authzid}\0{user}\0{password}".encode())
                attempt.ok, attempt.text = typ == "OK", data[0].decode()
            except imaplib.IMAP4.error as exc:
                attempt.text = str(exc)
        return attempt


def imap_login(srv: RunningServer, user: str, password: str) -> Attempt:
    with imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.client_tls()) as imap:
        with Attempt() as attempt:
            try:
                typ, data = imap.login(user, password)
                attempt.ok, attempt.text = typ == "OK", data[0].decode()
            except imaplib.IMAP4.error as exc:
                attempt.text = str(exc)
        return attempt


def pop3_plain(srv: RunningServer, authzid: str, user: str, password: str) -> Attempt:
    pop = poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=srv.client_tls())
    try:
        with Attempt() as attempt:
            try:
                attempt.text = pop._shortcmd("AUTH PLAIN " + _plain(authzid, user, password)).decode()
                attempt.ok = True
            except poplib.error_proto as exc:
                attempt.text = str(exc)
        return attempt
    finally:
        pop.close()


def pop3_user_pass(srv: RunningServer, user: str, password: str) -> Attempt:
    pop = poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=srv.client_tls())
    try:
        pop.user(user)
        with Attempt() as attempt:
            try:
                attempt.text = pop.pass_(password).decode()
                attempt.ok = True
            except poplib.error_proto as exc:
                attempt.text = str(exc)
        return attempt
    finally:
        pop.close()


def smtp_plain(srv: RunningServer, authzid: str, user: str, password: str) -> Attempt:
    with smtplib.SMTP_SSL("127.0.0.1", srv.port("submissions"), context=srv.client_tls()) as smtp:
        smtp.ehlo("client.test")
        with Attempt() as attempt:
            code, text = smtp.docmd("AUTH", "PLAIN " + _plain(authzid, user, password))
            attempt.ok, attempt.text = code == 235, f"{code} {text.decode()}"
        return attempt


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


PASSWORD_LOGINS = {
    "imap-login": imap_login,
    "imap-plain": lambda srv, user, password: imap_plain(srv, "", user, password),
    "pop3-user": pop3_user_pass,
    "pop3-plain": lambda srv, user, password: pop3_plain(srv, "", user, password),
    "smtp-plain": lambda srv, user, password: smtp_plain(srv, "", user, password),
}


@pytest.mark.parametrize("how", sorted(PASSWORD_LOGINS))
def test_failures_are_answered_late_alike_and_the_right_password_still_works(srv: RunningServer,
                                                                             how: str) -> None:
    """Dovecot's auth_failure_delay: an unknown user and a wrong password get the same words
    after the same delay; the right password from the same address works at once afterwards."""
    login = PASSWORD_LOGINS[how]
    wrong = login(srv, "alice@example.com", "not the password")
    unknown = login(srv, "nobody@example.com", "not the password")
    invalid = login(srv, "not-an-address", "not the password")
    for attempt in (wrong, unknown, invalid):
        assert not attempt.ok
        assert DELAY <= attempt.seconds < DELAY + 1.5, (how, attempt.seconds)
    assert unknown.text == wrong.text == invalid.text
    assert abs(unknown.seconds - wrong.seconds) < 0.25, (unknown.seconds, wrong.seconds)
    right = login(srv, "alice@example.com", PASSWORD)
    assert right.ok, right.text
    assert right.seconds < DELAY, right.seconds


@pytest.mark.parametrize("protocol", sorted(LOGINS))
def test_look_alike_login_names_are_not_the_account(srv: RunningServer, protocol: str) -> None:
    """Issue #12: casefold() made "uſer10" (U+017F) log in as user10; the one address rule
    (mail.address, used for logins too) refuses such names. ASCII case still does not matter."""
    login = LOGINS[protocol]
    for look_alike in ("u\u017fer10@example.com", "\uff55ser10@example.com", "user\u200b10@example.com",
                       "user10\u202e@example.com"):
        ok, text = login(srv, "", look_alike, PASSWORD)
        assert not ok, (look_alike, text)
    ok, text = login(srv, "", "USER10@Example.COM", PASSWORD)
    assert ok, text
