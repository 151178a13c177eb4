"""External programs the end-to-end tests drive: Debian's mail clients and chromium.

`make test-deps` installs them (apt, as root; the list is DEBIAN_TEST_PACKAGES in the Makefile).
Whether a missing one skips or fails its test:

- strict (a failure): as root, where `make test-deps` can install everything, so a missing
  program is a broken setup (CI runs `make test` as root);
- not strict (a skip naming the package): as any other user, who cannot install packages.

POSTOFFICE_TEST_STRICT=1 or =0 overrides that either way (e.g. =0 as root on a machine without
access to the package archive). Every skip is counted, with its reason, in the last lines
`pytest` prints (tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest


def strict() -> bool:
    setting = os.environ.get("POSTOFFICE_TEST_STRICT", "").strip()
    if setting in ("0", "1"):
        return setting == "1"
    if setting:
        raise ValueError(f"POSTOFFICE_TEST_STRICT must be 0 or 1, not {setting!r}")
    return os.geteuid() == 0


def require_tool(program: str, package: str) -> str:
    """The absolute path of `program`; if it is missing, fail (strict) or skip the calling test."""
    path = shutil.which(program)
    if path is not None:
        return path
    reason = f"{program} not installed (Debian package {package}: `make test-deps`)"
    if strict():
        pytest.fail(f"{reason}; a failure, not a skip, because POSTOFFICE_TEST_STRICT is on "
                    f"(it is by default as root)", pytrace=False)
    pytest.skip(reason)


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a daemon started in its own process group (and its workers), SIGKILL after 15 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
