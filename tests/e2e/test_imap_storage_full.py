"""A full disk during APPEND: a clear NO, nothing stored, the session goes on."""

from __future__ import annotations

import errno
import imaplib

import pytest

from tests.support.server import RunningServer


def test_append_on_a_full_disk(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    with RunningServer(tmp_path / "data") as srv:
        srv.add_account("alice@example.com", "password1")

        def disk_full(data: bytes) -> str:  # what the file system answers when it is full
            raise OSError(errno.ENOSPC, "No space left on device")

        imap = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.client_tls())
        imap.login("alice@example.com", "password1")
        monkeypatch.setattr(srv.store.blobs, "put", disk_full)
        typ, data = imap.append("INBOX", None, None, b"Subject: x\r\n\r\nbody\r\n")
        assert typ == "NO" and b"[UNAVAILABLE]" in data[0] and b"nothing was changed" in data[0]
        monkeypatch.undo()
        typ, data = imap.select("INBOX")
        assert typ == "OK" and data[0] == b"0"
        typ, _ = imap.append("INBOX", None, None, b"Subject: y\r\n\r\nbody\r\n")
        assert typ == "OK"
        imap.logout()
