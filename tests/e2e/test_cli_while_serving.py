"""The CLI changes an address while the server runs: its open sessions obey within seconds."""

from __future__ import annotations

import imaplib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.pg import BACKENDS, backend_overrides
from tests.support.server import RunningServer


@pytest.mark.parametrize("backend", BACKENDS)
def test_cli_switching_imap_off_ends_the_open_session(tmp_path: Path, backend: str,
                                                      request: pytest.FixtureRequest) -> None:
    with RunningServer(tmp_path / "data", **backend_overrides(backend, request)) as srv:
        srv.add_account("alice@example.com", "password1")
        imap = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.client_tls())
        imap.login("alice@example.com", "password1")
        imap.select("INBOX")
        config = tmp_path / "postoffice.toml"
        config.write_text(f'data_dir = "{tmp_path / "data"}"\n[store]\ndatabase = "{srv.config.store.database}"\n')
        out = subprocess.run([sys.executable, "-m", "postoffice", "--config", str(config), "account", "set",
                              "alice@example.com", "--imap", "off"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        deadline = time.monotonic() + 10
        bye = None
        while time.monotonic() < deadline and bye is None:
            try:
                imap.noop()
                time.sleep(0.2)
            except imaplib.IMAP4.abort as exc:  # the server said BYE and closed
                bye = str(exc)
        assert bye is not None and "IMAP is disabled" in bye
        refused = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.client_tls())
        try:
            refused.login("alice@example.com", "password1")
            raise AssertionError("login should be refused")
        except imaplib.IMAP4.error as exc:
            assert "IMAP is disabled for this address" in str(exc)
        finally:
            refused.shutdown()
