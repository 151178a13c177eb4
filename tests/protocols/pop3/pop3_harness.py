"""A fake POP3 server shell around Pop3Connection + Pop3Session, for socket-free tests.

It performs the session's actions the way servers/pop3.py must, against an in-memory account
table and maildrop, and records what a real server would have done (commits, TLS, close).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from postoffice.protocols.pop3 import (
    NEED_DATA,
    AuthInvalid,
    AuthOk,
    Authenticate,
    AuthResult,
    Close,
    CommitDeletions,
    Maildrop,
    MaildropResult,
    OpenMaildrop,
    Output,
    Pop3Connection,
    Pop3Policy,
    Pop3Session,
    SendMessage,
    StartTls,
)

MESSAGES: dict[str, bytes] = {
    "uid-a": b"Subject: one\r\n\r\nfirst body\r\n",
    "uid-b": b"Subject: two\r\nFrom: b@example.org\r\n\r\nline 1\r\n.dotted\r\nline 3\r\n",
    "uid-c": b"Subject: three\r\n\r\n" + b"x" * 100 + b"\r\n",
}


@dataclass
class FakeServer:
    policy: Pop3Policy = field(default_factory=lambda: Pop3Policy(allow_plaintext_auth=True))
    tls_active: bool = False
    messages: dict[str, bytes] = field(default_factory=lambda: dict(MESSAGES))
    accounts: dict[str, str] = field(default_factory=lambda: {"alice": "secret"})
    auth_override: AuthResult | None = None
    maildrop_override: MaildropResult | None = None
    unreadable: set[str] = field(default_factory=set)
    commit_ok: bool = True

    def __post_init__(self) -> None:
        self.conn = Pop3Connection()
        self.session = Pop3Session(self.policy, tls_active=self.tls_active)
        self.committed: list[tuple[str, ...]] = []
        self.authenticated: list[Authenticate] = []
        self.discarded: list[bytes] = []
        self.closed = False
        self.out = bytearray(self.conn.send(self.session.greeting()))

    def feed(self, data: bytes) -> bytes:
        start = len(self.out)
        self.conn.receive_data(data)
        while not self.closed:
            event = self.conn.next_event()
            if event is NEED_DATA:
                break
            self.run(self.session.handle(event))
        return bytes(self.out[start:])

    def run(self, outputs: list[Output]) -> None:
        queue = deque(outputs)
        session = self.session
        while queue:
            out = queue.popleft()
            if isinstance(out, Authenticate):
                self.authenticated.append(out)
                if self.auth_override is not None:
                    result: AuthResult = self.auth_override
                elif self.accounts.get(out.username) == out.password:
                    result = AuthOk(out.username)
                else:
                    result = AuthInvalid()
                queue.extend(session.on_auth_result(result))
            elif isinstance(out, OpenMaildrop):
                drop = self.maildrop_override or Maildrop(
                    [(uid, len(data)) for uid, data in self.messages.items()]
                )
                queue.extend(session.on_maildrop(drop))
            elif isinstance(out, SendMessage):
                data = None if out.uid in self.unreadable else self.messages[out.uid]
                queue.extend(session.on_message(out, data))
            elif isinstance(out, CommitDeletions):
                self.committed.append(out.uids)
                queue.extend(session.on_commit_result(self.commit_ok))
            elif isinstance(out, StartTls):
                self.discarded.append(self.conn.start_tls())
                self.tls_active = True
                queue.extend(session.on_tls_started())
            elif isinstance(out, Close):
                self.closed = True
            else:
                self.out += self.conn.send(out)


def transcript(server: FakeServer, script: str) -> None:
    """Run ``C: ...`` / ``S: ...`` lines; consecutive C lines are sent in one write
    (pipelined) and the following S lines must be exactly what came back."""
    lines = [line.strip("\n") for line in script.strip().splitlines() if line.strip()]
    i = 0
    while i < len(lines):
        sent = []
        while i < len(lines) and lines[i].lstrip().startswith("C:"):
            sent.append(lines[i].lstrip()[3:])
            i += 1
        expected = []
        while i < len(lines) and lines[i].lstrip().startswith("S:"):
            expected.append(lines[i].lstrip()[3:])
            i += 1
        got = server.feed("".join(s + "\r\n" for s in sent).encode()) if sent else bytes(server.out)
        # An empty SASL challenge is "+ " on the wire (RFC 5034 §4); scripts write it "S: +".
        want = "".join(("+ " if e == "+" else e) + "\r\n" for e in expected).encode()
        assert got == want, f"after {sent!r}:\n got: {got!r}\nwant: {want!r}"


def login(server: FakeServer) -> None:
    server.feed(b"USER alice\r\nPASS secret\r\n")
    assert server.session.state.value == "TRANSACTION"
