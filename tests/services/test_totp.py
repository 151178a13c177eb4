"""RFC 6238 TOTP: the RFC's own SHA-1 test vectors, the window and replay refusal."""

from __future__ import annotations

import base64

from postoffice.services import totp

# RFC 6238 Appendix B: the SHA-1 secret is the ASCII string "12345678901234567890"; the RFC
# lists 8-digit values, whose last 6 digits are the 6-digit codes.
SECRET = base64.b32encode(b"12345678901234567890").decode()
VECTORS = [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"), (1234567890, "89005924"),
           (2000000000, "69279037"), (20000000000, "65353130")]


def test_rfc6238_vectors() -> None:
    for t, code in VECTORS:
        assert totp.totp(SECRET, t // 30) == code[-6:], t


def test_verify_window_and_replay() -> None:
    now = 1_800_000_000.0
    code = totp.totp(SECRET, int(now // 30))
    step = totp.verify(SECRET, code, now)
    assert step == int(now // 30)
    assert totp.verify(SECRET, code, now + 30) == step  # one step late is still accepted
    assert totp.verify(SECRET, code, now + 90) is None  # three steps late is not
    assert totp.verify(SECRET, code, now, last_step=step) is None  # never twice
    assert totp.verify(SECRET, "12345", now) is None and totp.verify(SECRET, "abcdef", now) is None


def test_uri_and_recovery_codes() -> None:
    secret = totp.new_secret()
    assert len(base64.b32decode(secret + "=" * (-len(secret) % 8))) == 20
    uri = totp.provisioning_uri(secret, "alice@example.com", "mail.example.com")
    assert uri.startswith("otpauth://totp/mail.example.com:alice@example.com?secret=" + secret)
    codes = totp.new_recovery_codes()
    assert len(set(codes)) == 10 and all(len(c) == 11 for c in codes)
    assert totp.recovery_hash(codes[0].upper()) == totp.recovery_hash(codes[0])
