"""Two-factor login for the panel: TOTP (RFC 6238) with recovery codes.

- :func:`totp` is RFC 6238 with the RFC 4226 §5.3 dynamic truncation: HMAC-SHA1, 30-second
  steps from the Unix epoch, 6 digits (what every authenticator app uses by default).
- :func:`verify` accepts the current step and one step either side (RFC 6238 §5.2 allows a
  small window for clock drift) and never the same step twice for one login (§5.2: a code is
  used once), so a code seen over a shoulder cannot be replayed.
- Ten recovery codes are made when 2FA is switched on, shown once, stored as SHA-256 digests
  (they are random, 50 bits each), each usable once.
- The clock is a parameter: tests and the panel's ``office.clock`` can fix it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from collections.abc import Callable
from urllib.parse import quote

STEP = 30
DIGITS = 6
WINDOW = 1
RECOVERY_CODES = 10


def new_secret() -> str:
    """160 random bits in base32 (RFC 4226 §4 recommends 160), without padding."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii").rstrip("=")


def _key(secret: str) -> bytes:
    text = secret.strip().replace(" ", "").upper()
    return base64.b32decode(text + "=" * (-len(text) % 8))


def totp(secret: str, step: int) -> str:
    digest = hmac.new(_key(secret), struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    code = (struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 10 ** DIGITS
    return f"{code:0{DIGITS}d}"


def current_step(now: float) -> int:
    return int(now // STEP)


def verify(secret: str, code: str, now: float, last_step: int | None = None) -> int | None:
    """The step the code belongs to, or None; a step at or before ``last_step`` is refused."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    step = current_step(now)
    for candidate in range(step - WINDOW, step + WINDOW + 1):
        if last_step is not None and candidate <= last_step:
            continue
        if hmac.compare_digest(totp(secret, candidate), code):
            return candidate
    return None


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The otpauth:// URI authenticator apps read (Google Authenticator key URI format)."""
    label = quote(f"{issuer}:{account}", safe="@:")
    return f"otpauth://totp/{label}?secret={secret}&issuer={quote(issuer)}&algorithm=SHA1&digits={DIGITS}&period={STEP}"


def new_recovery_codes() -> list[str]:
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return ["-".join("".join(secrets.choice(alphabet) for _ in range(5)) for _ in range(2))
            for _ in range(RECOVERY_CODES)]


def recovery_hash(code: str) -> str:
    return hashlib.sha256(code.strip().lower().replace(" ", "").encode()).hexdigest()


Clock = Callable[[], float]
system_clock: Clock = time.time

__all__ = ["Clock", "new_recovery_codes", "new_secret", "provisioning_uri", "recovery_hash", "system_clock",
           "totp", "verify"]
