"""App passwords through the real protocols: a password scoped to IMAP logs in over IMAP (and
the connected-devices view names it), is refused on POP3 and SMTP with the reason, never opens
the panel, stops working when expired, and revoking it ends its sessions."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postoffice.services.app_passwords import AppPasswords
from tests.support.server import RunningServer


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer(tmp_path_factory.mktemp("apppw") / "data") as s:
        s.add_account("alice@example.com", "main-password-1")
        yield s


def create(srv: RunningServer, name: str, protocols: list[str], expires_at: float | None = None):
    return srv.call(AppPasswords(srv.store).create("alice@example.com", name, protocols, expires_at))


def imap_login(srv: RunningServer, password: str) -> imaplib.IMAP4_SSL:
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.client_tls(), timeout=10)
    m.login("alice@example.com", password)
    return m


def test_imap_scoped_password_logs_in_over_imap_only(srv: RunningServer) -> None:
    created = create(srv, "Phone", ["imap"])
    assert len(created.password) == 24 and created.password.count("-") == 4
    m = imap_login(srv, created.password)
    try:
        assert m.select("INBOX")[0] == "OK"
        [session] = [s for s in srv.office.sessions.all() if s.protocol == "imap"]
        assert session.app_password == "Phone"  # the connected-devices view shows it
    finally:
        m.logout()
    # typed without dashes, in capitals: still the same password
    imap_login(srv, created.password.replace("-", "").upper()).logout()

    pop = poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=srv.client_tls(), timeout=10)
    pop.user("alice@example.com")
    with pytest.raises(poplib.error_proto) as refused:
        pop.pass_(created.password)
    assert "not allowed for POP3" in str(refused.value) and "only IMAP" in str(refused.value)
    pop.close()

    with smtplib.SMTP_SSL("127.0.0.1", srv.port("submissions"), context=srv.client_tls(), timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPAuthenticationError) as smtp_refused:
            smtp.login("alice@example.com", created.password)
    assert smtp_refused.value.smtp_code == 535 and b"not allowed for SMTP" in smtp_refused.value.smtp_error

    # the main password still opens everything; the app password never opens the panel
    imap_login(srv, "main-password-1").logout()
    result = srv.call(srv.office.auth.check_password("alice@example.com", created.password, "127.0.0.1"))
    assert not result.ok


def test_protocol_access_still_applies_on_top(srv: RunningServer) -> None:
    created = create(srv, "Laptop", ["imap", "smtp"])
    srv.call(srv.office.accounts.update("alice@example.com", imap=False))
    try:
        with pytest.raises(imaplib.IMAP4.error, match="IMAP is disabled"):
            imap_login(srv, created.password)
    finally:
        srv.call(srv.office.accounts.update("alice@example.com", imap=True))
    imap_login(srv, created.password).logout()


def test_expired_password_is_refused_with_the_reason(srv: RunningServer) -> None:
    created = create(srv, "Tablet", ["imap"], expires_at=time.time() + 1.0)
    imap_login(srv, created.password).logout()
    time.sleep(1.2)
    with pytest.raises(imaplib.IMAP4.error, match="has expired"):
        imap_login(srv, created.password)


def test_revoking_ends_its_sessions(srv: RunningServer) -> None:
    created = create(srv, "Old phone", ["imap"])
    m = imap_login(srv, created.password)
    m.select("INBOX")
    srv.call(AppPasswords(srv.store).revoke("alice@example.com", created.app_password.id))
    deadline = time.monotonic() + 5
    ended = False
    while time.monotonic() < deadline and not ended:
        try:
            m.noop()
            time.sleep(0.1)
        except (imaplib.IMAP4.abort, OSError):
            ended = True
    assert ended
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(srv, created.password)
