"""Crash and disk-full behaviour of delivery, with a real child process and real files."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from postoffice.store import Store

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from postoffice.store import Store

    async def main(data_dir, size, run):
        store = Store.open(Path(data_dir))
        if await store.get_domain("example.com") is None:
            await store.add_domain("example.com")
            await store.add_account("alice@example.com", "x")
        account = await store.get_account("alice@example.com")
        i = 0
        while True:
            body = (b"Subject: message %d-%d\\r\\n\\r\\n" % (run, i)) + (b"x" * size) + b"\\r\\n"
            await store.deliver([(account.id, "INBOX")], body)
            print("%d-%d" % (run, i), flush=True)  # acknowledged: the delivery returned
            i += 1

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
    """
)


def _check_store(data_dir: Path) -> list[str]:
    """Open the store after the crash: every indexed message is complete; return their numbers."""
    async def inspect() -> list[str]:
        store = Store.open(data_dir)
        try:
            account = await store.get_account("alice@example.com")
            box = await store.get_mailbox(account.id, "INBOX")
            numbers = []
            for meta in await store.list_messages(box.id):
                raw = await store.read_blob(meta.blob_id)
                assert len(raw) == meta.size
                assert store.blobs.blob_id(raw) == meta.blob_id  # content matches its address
                numbers.append(raw.split(b"\r\n", 1)[0].split()[-1].decode())
            assert len(list(store.blobs.tmp.iterdir())) == 0  # crash leftovers cleaned at open
            return numbers
        finally:
            store.close()
    return asyncio.run(inspect())


def test_kill_9_during_delivery_loses_nothing_acknowledged(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    all_acked: list[str] = []
    for run in range(3):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(data_dir), str(20000 + run), str(run)],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        acked: list[str] = []
        deadline = time.monotonic() + 30
        while len(acked) < 20 + 10 * run and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acked.append(line.strip())
        os.kill(child.pid, signal.SIGKILL)  # mid-delivery: the child never stops delivering
        child.wait()
        assert acked, "the child acknowledged nothing"
        all_acked.extend(acked)
        stored = _check_store(data_dir)
        missing = set(all_acked) - set(stored)
        assert not missing, f"acknowledged messages lost after kill -9: {sorted(missing)}"
        # at most the one in flight may exist beyond what was acknowledged
        assert len(stored) - len(all_acked) <= run + 1


DISK_FULL_CHILD = textwrap.dedent(
    """
    import asyncio, resource, signal, sys
    from pathlib import Path
    from postoffice.store import Store

    async def main(data_dir):
        store = Store.open(Path(data_dir))
        await store.add_domain("example.com")
        account = await store.add_account("alice@example.com", "x")
        await store.deliver([(account.id, "INBOX")], b"Subject: small\\r\\n\\r\\nok\\r\\n")
        # From here on no file may grow past 2 MB: the big body cannot be written.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))
        try:
            await store.deliver([(account.id, "INBOX")], b"Subject: big\\r\\n\\r\\n" + b"y" * 3_000_000)
        except OSError as exc:
            print("refused", exc.errno, flush=True)
        await store.deliver([(account.id, "INBOX")], b"Subject: after\\r\\n\\r\\nstill fine\\r\\n")
        print("after-ok", flush=True)
        store.close()

    asyncio.run(main(sys.argv[1]))
    """
)


def test_a_full_disk_fails_the_delivery_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    out = subprocess.run([sys.executable, "-c", DISK_FULL_CHILD, str(data_dir)], capture_output=True,
                         text=True, timeout=60)
    assert "refused" in out.stdout, out.stderr
    assert "after-ok" in out.stdout, out.stderr

    async def inspect() -> list[bytes]:
        store = Store.open(data_dir)
        try:
            account = await store.get_account("alice@example.com")
            box = await store.get_mailbox(account.id, "INBOX")
            return [await store.read_blob(m.blob_id) for m in await store.list_messages(box.id)]
        finally:
            store.close()
    bodies = asyncio.run(inspect())
    subjects = [b.split(b"\r\n", 1)[0] for b in bodies]
    assert subjects == [b"Subject: small", b"Subject: after"]
    assert not any(f.stat().st_size > 2_000_000 for f in (data_dir / "blobs").rglob("*") if f.is_file())
