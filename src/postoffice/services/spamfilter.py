"""Spam filtering with rspamd (issue 15): one ``/checkv2`` request per message received on
port 25, after the message is spooled and the SPF/DKIM/DMARC checks ran.

rspamd's "normal" worker takes the message as the request body and the envelope as HTTP
headers (rspamd's protocol: ``From``, one ``Rcpt`` per recipient, ``IP``, ``Helo``,
``Hostname``, ``User``, ``Queue-Id``, ``MTA-Name``) and answers with JSON whose ``action`` is
one of ``no action``, ``greylist``, ``add header``, ``rewrite subject``, ``soft reject`` or
``reject``. What the SMTP server does with each is `SpamVerdict.decision`.

rspamd down, refusing, slow or answering nonsense: ``[filter] on_failure`` says whether the
message is accepted and tagged ``X-Spam-Status: unknown`` (the default: mail is never lost)
or refused with 451 (the sender retries). No request waits longer than ``[filter] timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..store.spool import MessageSource

log = logging.getLogger(__name__)

#: rspamd actions and what they mean here.
ACCEPT = "accept"  # deliver to INBOX
JUNK = "junk"  # deliver to the Junk folder with X-Spam-* headers
TEMPFAIL = "tempfail"  # 451 4.7.1
REJECT = "reject"  # 550 5.7.1

_DECISIONS = {
    "no action": ACCEPT,
    "greylist": TEMPFAIL,
    "soft reject": TEMPFAIL,
    "add header": JUNK,
    "rewrite subject": JUNK,
    "reject": REJECT,
}

#: The header fields this server writes; copies arriving with the message are removed, so a
#: sender cannot pre-set "X-Spam-Status: No" for a client that trusts the first one it sees.
SPAM_FIELDS = (b"x-spam-status", b"x-spam-score", b"x-spam-action", b"x-spam-flag", b"x-virus-status")


@dataclass(frozen=True)
class SpamVerdict:
    """rspamd's answer, or ``action == "unknown"`` when rspamd could not be asked."""

    action: str
    score: float | None = None
    required_score: float | None = None
    message: str = ""  # rspamd's smtp_message (the text of a reject)
    symbols: tuple[str, ...] = field(default_factory=tuple)
    error: str = ""  # why rspamd could not be asked

    @property
    def failed(self) -> bool:
        return self.action == "unknown"

    def decision(self, on_failure: str = "accept") -> str:
        if self.failed:
            return TEMPFAIL if on_failure == "tempfail" else ACCEPT
        # An action this version does not know (a newer rspamd) is treated as "no action".
        return _DECISIONS.get(self.action, ACCEPT)

    def headers(self, junk: bool | None = None) -> bytes:
        """The X-Spam-* header fields for the stored copy, CRLF-terminated. ``junk``: whether
        the copy is treated as spam (a recipient's Junk threshold); None: rspamd's action says."""
        if self.failed:
            return b"X-Spam-Status: unknown (the spam filter could not be reached)\r\n"
        spam = self.decision() != ACCEPT if junk is None else junk
        score = f"{self.score:.2f}" if self.score is not None else "?"
        status = f"{'Yes' if spam else 'No'}, score={score}"
        if self.required_score is not None:
            status += f" required={self.required_score:.2f}"
        lines = [f"X-Spam-Status: {status}"]
        if spam:
            lines.append("X-Spam-Flag: YES")
        lines.append(f"X-Spam-Score: {score}")
        lines.append(f"X-Spam-Action: {self.action}")
        return "".join(_safe(line) + "\r\n" for line in lines).encode("ascii", "replace")


def _safe(text: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f]", " ", text)


def strip_spam_fields(block: bytes) -> bytes | None:
    """``block`` (a header block) without our X-Spam-*/X-Virus-Status fields, or None when it
    has none."""
    lowered = block.lower()
    if b"x-spam-" not in lowered and b"x-virus-" not in lowered:
        return None
    out: list[bytes] = []
    dropping = False
    changed = False
    for line in block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and line.strip():
            if not dropping:
                out.append(line)
            continue  # a continuation line belongs to the field before it
        name = line.split(b":", 1)[0].strip().lower() if b":" in line else b""
        dropping = name in SPAM_FIELDS
        if dropping:
            changed = True
        else:
            out.append(line)
    return b"".join(out) if changed else None


class RspamdClient:
    """An HTTP client for rspamd's normal worker (``[filter] rspamd``), one per process."""

    def __init__(self, url: str, *, timeout: float = 10.0, mta_name: str = "") -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.mta_name = mta_name
        self._client: Any = None

    def _http(self) -> Any:
        if self._client is None:
            import httpx  # imported lazily: only needed when filtering is on

            # (an https:// rspamd on another host: its certificate is verified)
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout),
                                             trust_env=False)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def check(self, message: MessageSource | bytes, *, ip: str, helo: str, mail_from: str,
                    rcpts: Sequence[str], queue_id: str = "", user: str = "",
                    hostname: str = "") -> SpamVerdict:
        """Ask rspamd about one message; never raises, never takes longer than the timeout."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._check(message, ip=ip, helo=helo, mail_from=mail_from, rcpts=rcpts,
                                         queue_id=queue_id, user=user, hostname=hostname)
        except (TimeoutError, asyncio.TimeoutError):
            return self._failure(f"no answer within {self.timeout:g} s")
        except Exception as exc:  # noqa: BLE001 - connection refused, bad JSON, ...: not the sender's fault
            return self._failure(f"{type(exc).__name__}: {exc}")

    def _failure(self, why: str) -> SpamVerdict:
        log.warning("rspamd at %s could not check a message: %s", self.url, why)
        return SpamVerdict("unknown", error=why)

    async def _check(self, message: MessageSource | bytes, *, ip: str, helo: str, mail_from: str,
                     rcpts: Sequence[str], queue_id: str, user: str, hostname: str) -> SpamVerdict:
        source = MessageSource.of(message)
        body = source.read() if source.in_memory else await asyncio.to_thread(source.read)
        headers: list[tuple[str, str]] = [("From", f"<{mail_from}>" if mail_from else "<>")]
        headers += [("Rcpt", f"<{rcpt}>") for rcpt in rcpts]
        if ip:
            headers.append(("IP", ip))
        if helo:
            headers.append(("Helo", helo))
        if hostname:
            headers.append(("Hostname", hostname))
        if user:
            headers.append(("User", user))
        if queue_id:
            headers.append(("Queue-Id", queue_id))
        if self.mta_name:
            headers.append(("MTA-Name", self.mta_name))
        headers = [(name, _safe(value)) for name, value in headers]
        response = await self._http().post(f"{self.url}/checkv2", content=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        answer = response.json()
        action = answer.get("action")
        if not isinstance(action, str):
            raise ValueError(f"no action in rspamd's answer: {str(answer)[:200]}")
        messages = answer.get("messages") or {}
        text = messages.get("smtp_message", "") if isinstance(messages, dict) else ""
        symbols = answer.get("symbols") or {}
        return SpamVerdict(
            action=action,
            score=_number(answer.get("score")),
            required_score=_number(answer.get("required_score")),
            message=_safe(str(text or ""))[:400],
            symbols=tuple(sorted(symbols)) if isinstance(symbols, dict) else (),
        )


class RspamdLearner:
    """Junk learning through rspamd's controller (``/learnspam``, ``/learnham``): what a user
    moves into Junk is spam, what they move out of it is ham (as Dovecot's IMAPSieve scripts do
    for rspamd). Runs after the IMAP command has answered, in the background; best effort."""

    def __init__(self, url: str, password: str = "", *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.password = password
        self.timeout = timeout
        self.learned = {"spam": 0, "ham": 0}
        self._client: Any = None
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def kind_of_move(source: Any, target: Any) -> str | None:
        """"spam" into Junk, "ham" out of Junk (except into Trash: deleting is no verdict)."""
        def role(box: Any) -> str:
            use = (getattr(box, "special_use", None) or "").lower()
            name = str(getattr(box, "name", "")).lower()
            if use == "\\junk" or name in ("junk", "spam"):
                return "junk"
            if use == "\\trash" or name == "trash":
                return "trash"
            return "other"
        before, after = role(source), role(target)
        if after == "junk" and before != "junk":
            return "spam"
        if before == "junk" and after == "other":
            return "ham"
        return None

    def schedule(self, kind: str, load: Callable[[], Awaitable[list[bytes]]]) -> None:
        """Learn the messages ``load()`` returns as ``kind``, without making the caller wait."""
        task = asyncio.get_running_loop().create_task(self._learn(kind, load))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self) -> None:
        """Until every scheduled learning has finished (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _learn(self, kind: str, load: Callable[[], Awaitable[list[bytes]]]) -> None:
        try:
            messages = await load()
            for raw in messages:
                async with asyncio.timeout(self.timeout):
                    response = await self._http().post(f"{self.url}/learn{kind}", content=raw,
                                                       headers={"Password": self.password} if self.password else {})
                # rspamd answers 208 for a message it has learned before: nothing to count
                if response.status_code == 200:
                    self.learned[kind] += 1
                elif response.status_code != 208:
                    log.warning("rspamd could not learn a message as %s: HTTP %d %s", kind,
                                response.status_code, response.text[:200])
        except Exception as exc:  # noqa: BLE001 - learning is best effort
            log.warning("rspamd learning (%s) failed: %s: %s", kind, type(exc).__name__, exc)

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout), trust_env=False)
        return self._client

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
