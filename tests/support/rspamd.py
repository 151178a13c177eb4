"""A real rspamd (Debian package ``rspamd``) for the spam filter tests, run from a temp dir.

The Debian service is not used: each `Rspamd` is its own ``rspamd -f`` with a minimal config
on 127.0.0.1 ports chosen free: one normal worker, one controller, no plugins, no hyperscan
and a five-entry TLD list (the full list takes rspamd 30 s to compile on a busy 2-core
machine; this config starts in ~2 s). GTUBE is rspamd's own (the core checks it, action
``reject``). One test-only rule, ``POSTOFFICE_TEST_JUNK`` (score 8, above ``add_header`` = 6),
fires on ``JUNK_MARKER`` in the Subject, so a test can put a message in the "add header" range;
``POSTOFFICE_TEST_GREY`` (score 5, above ``greylist`` = 4) on ``GREYLIST_MARKER``;
``POSTOFFICE_TEST_LOW`` (score 3: "no action", but a score a Junk threshold can act on) on
``LOW_MARKER``. Bayes
learning (the controller's /learnspam, /learnham; password "test") keeps its tokens in the local
Redis (127.0.0.1:6379, database 14); tests learn messages with unique Message-IDs.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.support.tools import require_tool, stop_process_group

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
JUNK_MARKER = "postoffice-junk-test"
GREYLIST_MARKER = "postoffice-greylist-test"
LOW_MARKER = "postoffice-low-score-test"

_RULES = """
rspamd_config.POSTOFFICE_TEST_JUNK = {
  callback = function(task)
    local subject = task:get_header('Subject')
    return subject ~= nil and string.find(subject, '%(marker)s', 1, true) ~= nil
  end,
  score = 8.0,
  description = 'test-only: a marker in the Subject scores in the add header range',
}
rspamd_config.POSTOFFICE_TEST_GREY = {
  callback = function(task)
    local subject = task:get_header('Subject')
    return subject ~= nil and string.find(subject, '%(grey)s', 1, true) ~= nil
  end,
  score = 5.0,
  description = 'test-only: a marker in the Subject scores in the greylist range',
}
rspamd_config.POSTOFFICE_TEST_LOW = {
  callback = function(task)
    local subject = task:get_header('Subject')
    return subject ~= nil and string.find(subject, '%(low)s', 1, true) ~= nil
  end,
  score = 3.0,
  description = 'test-only: a marker in the Subject scores 3, below every action',
}
"""

_CONFIG = """
options {
  pidfile = "%(dir)s/rspamd.pid";
  dbdir = "%(dir)s";
  tempdir = "%(dir)s";
  disable_hyperscan = true;
  url_tld = "%(dir)s/tlds.dat";
  filters = "";
}
logging { type = "file"; filename = "%(dir)s/rspamd.log"; level = "info"; }
worker "normal" { bind_socket = "127.0.0.1:%(port)d"; count = 1; }
worker "controller" { bind_socket = "127.0.0.1:%(controller)d"; count = 1; password = "test"; enable_password = "test"; }
actions { reject = 15; add_header = 6; greylist = 4; }
classifier "bayes" {
  backend = "redis";
  servers = "127.0.0.1:6379";
  database = "14";
  min_tokens = 1;
  min_learns = 1;
  statfile { symbol = "BAYES_HAM"; spam = false; }
  statfile { symbol = "BAYES_SPAM"; spam = true; }
}
lua = "%(dir)s/rules.lua";
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Rspamd:
    def __init__(self, directory: Path) -> None:
        self.program = require_tool("rspamd", "rspamd")
        self.dir = directory
        self.port = _free_port()
        self.controller = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def controller_url(self) -> str:
        return f"http://127.0.0.1:{self.controller}"

    def learned(self) -> list[tuple[str, str]]:
        """(spam|ham, Message-ID) of each message the controller has learned, from its log."""
        text = (self.dir / "rspamd.log").read_text(errors="replace")
        return re.findall(r"learned message as (spam|ham): (\S+)", text)

    def checked(self) -> list[tuple[str, str]]:
        """(Message-ID, authenticated user or "") of each message the normal worker checked."""
        text = (self.dir / "rspamd.log").read_text(errors="replace")
        found = []
        for msgid, fields in re.findall(r"rspamd_task_write_log: id: <([^>]*)>,([^(]*)", text):
            user = re.search(r" user: ([^,]*),", fields)
            found.append((msgid, user.group(1) if user else ""))
        return found

    def start(self, timeout: float = 60) -> Rspamd:
        self.dir.mkdir(parents=True, exist_ok=True)
        values = {"dir": str(self.dir), "port": self.port, "controller": self.controller, "marker": JUNK_MARKER,
                  "grey": GREYLIST_MARKER, "low": LOW_MARKER}
        (self.dir / "rules.lua").write_text(_RULES % values)
        (self.dir / "tlds.dat").write_text("com\norg\nnet\ntest\nexample\n")
        (self.dir / "rspamd.conf").write_text(_CONFIG % values)
        command = [self.program, "-f", "-c", str(self.dir / "rspamd.conf")]
        if os.geteuid() == 0:  # rspamd refuses to keep root unless told so (-u/-g, then -i)
            command += ["-u", "root", "-g", "root", "-i"]
        output = open(self.dir / "stdout.log", "wb")
        self.proc = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        output.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rspamd exited with {self.proc.returncode}: {self.log()}")
            if self.ping():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"rspamd did not answer within {timeout} s: {self.log()}")

    def ping(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as response:
                return bool(response.read().strip() == b"pong")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop rspamd and its workers (its own process group) and wait until the port is closed."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        stop_process_group(proc)
        deadline = time.monotonic() + 10
        while self.ping() and time.monotonic() < deadline:
            time.sleep(0.1)

    def log(self) -> str:
        parts = []
        for name in ("stdout.log", "rspamd.log"):
            path = self.dir / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)
