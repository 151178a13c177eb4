"""Virus scanning on port 25 with a real clamd (issue 15): EICAR refused with 554 5.7.1, a
clean message tagged and delivered, clamd gone -> accepted and tagged (or 451, per config)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clamd import EICAR, Clamd
from tests.support.server import RunningServer
from tests.support.smtp import counts, messages

from tests.e2e.test_rspamd import message, send, verdicts


@pytest.fixture
def clamd(tmp_path: Path) -> Iterator[Clamd]:
    daemon = Clamd(tmp_path / "clamd").start()
    yield daemon
    daemon.stop()


def serve(data: Path, **filter_settings: object) -> RunningServer:
    srv = RunningServer(data, hostname="mail.example.com", filter=filter_settings)
    srv.__enter__()
    srv.add_account("alice@example.com", "password1")
    return srv


@pytest.mark.parametrize("on_failure", ["accept", "tempfail"])
def test_eicar_is_refused_clean_mail_tagged_and_clamd_down_follows_on_failure(
        clamd: Clamd, tmp_path: Path, on_failure: str) -> None:
    srv = serve(tmp_path / "data", clamav=clamd.socket, on_failure=on_failure, timeout=5)
    try:
        before = counts(srv)
        code, text = send(srv.port("smtp"), message("plain eicar", EICAR + b"\r\n"))
        assert (code, text) == (554, "5.7.1 Message rejected: virus found (Eicar-Test-Signature.UNOFFICIAL)")
        attachment = base64.encodebytes(EICAR).replace(b"\n", b"\r\n")
        mime = (b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n",
                b"--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b1\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=x.com\r\n\r\n"
                + attachment + b"--b1--\r\n")
        assert send(srv.port("smtp"), message("attached eicar", mime[1], extra=mime[0]))[0] == 554
        assert counts(srv) == before
        assert verdicts(srv, "alice@example.com") == ["virus", "virus"]
        forged = b"X-Virus-Status: clean\r\n"
        assert send(srv.port("smtp"), message("clean", extra=forged))[0] == 250
        stored = messages(srv, "alice@example.com")[-1]
        assert stored.split(b"\r\n\r\n")[0].count(b"X-Virus-Status: clean") == 1
        clamd.stop()
        code, text = send(srv.port("smtp"), message("while clamd is down", EICAR + b"\r\n"))
        if on_failure == "accept":
            assert code == 250
            assert b"X-Virus-Status: unknown" in messages(srv, "alice@example.com")[-1]
        else:
            assert (code, text) == (451, "4.7.1 The virus scanner is not available; try again later")
            assert len(messages(srv, "alice@example.com")) == 1
    finally:
        srv.__exit__(None, None, None)
