"""A real clamd (Debian package ``clamav-daemon``) for the virus scanning tests, from a temp dir.

ClamAV's signature databases are downloaded by freshclam, which needs the network; the test
gives clamd a one-line database of its own instead: an ``.ndb`` body signature for the EICAR
test string (any file type, any offset), so clamd reports ``Eicar-Test-Signature.UNOFFICIAL``
(clamd's suffix for a signature not from ClamAV). clamd's mail parser still runs: the string is
found in a base64 attachment too. It starts in a few seconds (no real database to load).
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from tests.support.tools import require_tool, stop_process_group

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


class Clamd:
    def __init__(self, directory: Path) -> None:
        self.program = require_tool("clamd", "clamav-daemon")
        self.dir = directory
        self.socket = str(directory / "clamd.sock")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Clamd:
        (self.dir / "db").mkdir(parents=True, exist_ok=True)
        (self.dir / "db" / "eicar.ndb").write_text(f"Eicar-Test-Signature:0:*:{EICAR.hex()}\n")
        (self.dir / "clamd.conf").write_text(
            f"Foreground yes\nLocalSocket {self.socket}\nDatabaseDirectory {self.dir / 'db'}\n"
            f"LogFile {self.dir / 'clamd.log'}\nPidFile {self.dir / 'clamd.pid'}\n")
        output = open(self.dir / "stdout.log", "wb")
        self.proc = subprocess.Popen([self.program, "-c", str(self.dir / "clamd.conf")], stdout=output,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        output.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"clamd exited with {self.proc.returncode}: {self.log()}")
            if self.ping():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"clamd did not answer within {timeout} s: {self.log()}")

    def ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(1)
                s.connect(self.socket)
                s.sendall(b"zPING\0")
                return s.recv(16) == b"PONG\0"
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        stop_process_group(proc)

    def log(self) -> str:
        parts = []
        for name in ("stdout.log", "clamd.log"):
            path = self.dir / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)
