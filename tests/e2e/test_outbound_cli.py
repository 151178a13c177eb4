"""`postoffice queue ...` and `postoffice dkim ...` on a data directory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from postoffice.cli import main
from postoffice.store import Store


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "postoffice.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\nhostname = "mail.test"\n'
                    "[security]\nargon2_time_cost = 1\nargon2_memory_kib = 1024\n")
    return path


def _enqueue(tmp_path: Path) -> int:
    async def work() -> int:
        store = Store.open(tmp_path / "data")
        try:
            return await store.enqueue("alice@local.test", ["bob@remote.test", "carol@remote.test"],
                                       b"From: alice@local.test\r\nSubject: queued one\r\n\r\nhi\r\n")
        finally:
            store.close()
    return asyncio.run(work())


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    from postoffice import cli

    monkeypatch.setattr(cli.console, "width", 250)


def test_queue_commands(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    run = CliRunner().invoke
    assert "the queue is empty" in run(main, ["--config", str(cfg), "queue", "list"]).output
    qid = _enqueue(tmp_path)
    out = run(main, ["--config", str(cfg), "queue", "list"], terminal_width=200).output
    assert "alice@local.test" in out and "bob@remote.test" in out
    out = run(main, ["--config", str(cfg), "queue", "show", str(qid)], terminal_width=200).output
    assert "carol@remote.test" in out and "pending" in out and "Subject: queued one" in out
    result = run(main, ["--config", str(cfg), "queue", "retry", str(qid)])
    assert result.exit_code == 0 and "1 entry will be retried" in result.output
    result = run(main, ["--config", str(cfg), "queue", "show", "999"])
    assert result.exit_code == 1 and "no queue entry 999" in result.output
    assert run(main, ["--config", str(cfg), "queue", "delete", str(qid), "--yes"]).exit_code == 0
    assert "the queue is empty" in run(main, ["--config", str(cfg), "queue", "list"]).output


def test_dkim_commands(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    run = CliRunner().invoke
    result = run(main, ["--config", str(cfg), "dkim", "show", "local.test"])
    assert result.exit_code == 1 and "no such domain" in result.output
    assert run(main, ["--config", str(cfg), "domain", "add", "local.test"]).exit_code == 0
    first = run(main, ["--config", str(cfg), "dkim", "generate", "local.test"], terminal_width=200)
    assert first.exit_code == 0, first.output
    lines = [ln for ln in first.output.splitlines() if " IN TXT " in ln]
    assert lines[0].startswith('po-rsa._domainkey.local.test. IN TXT "v=DKIM1; k=rsa; p=')
    assert lines[1].startswith('po-ed25519._domainkey.local.test. IN TXT "v=DKIM1; k=ed25519; p=')
    again = run(main, ["--config", str(cfg), "dkim", "show", "local.test"], terminal_width=200)
    assert [ln for ln in again.output.splitlines() if " IN TXT " in ln] == lines  # keys are kept
