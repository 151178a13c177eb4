from __future__ import annotations

import email
from datetime import datetime, timedelta, timezone
from email import policy

from postoffice.mail.dsn import DSNRecipient, build_delay_notice, build_dsn, is_bounce

ORIGINAL = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.org, carol@example.org\r\n"
    b"Subject: quarterly numbers\r\n"
    b"Message-ID: <abc@example.com>\r\n"
    b"\r\n"
    b"SECRET BODY TEXT\r\n"
)
ARRIVED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def parse(raw: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def test_failure_dsn_structure() -> None:
    raw = build_dsn(
        hostname="mx.example.com",
        original_sender="alice@example.com",
        recipients=[
            DSNRecipient(
                "bob@example.org", "failed", "5.1.1", remote_mta="mx.example.org",
                diagnostic="smtp; 550 5.1.1 <bob@example.org>: user unknown\r\nInjected: yes",
                original_recipient="rfc822;bob@example.org",
            ),
            DSNRecipient("carol@example.org", "failed", "5.4.4",
                         diagnostic="X-Postoffice; no MX"),
        ],
        original_message=ORIGINAL,
        arrival_date=ARRIVED,
        queue_id="q123",
    )
    msg = parse(raw)
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@mx.example.com>"
    assert msg["To"].addresses[0].addr_spec == "alice@example.com"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert "bob@example.org" in parts[0].get_content()

    # message/delivery-status parses as a list of header blocks: per-message, then recipients
    blocks = parts[1].get_payload()
    assert len(blocks) == 3
    assert blocks[0]["Reporting-MTA"] == "dns; mx.example.com"
    assert blocks[0]["Arrival-Date"] == "Tue, 02 Jan 2024 03:04:05 +0000"
    bob = blocks[1]
    assert bob["Final-Recipient"] == "rfc822; bob@example.org"
    assert bob["Original-Recipient"] == "rfc822; bob@example.org"  # written like Final-Recipient
    assert bob["Action"] == "failed"
    assert bob["Status"] == "5.1.1"
    assert bob["Remote-MTA"] == "dns; mx.example.org"
    assert bob["Diagnostic-Code"].startswith("smtp; 550 5.1.1")
    assert bob["Injected"] is None  # CR/LF in the remote reply cannot add fields
    assert blocks[2]["Status"] == "5.4.4" and blocks[2]["Remote-MTA"] is None

    returned = parts[2].get_payload()
    assert isinstance(returned, str)
    assert "Subject: quarterly numbers" in returned
    assert "SECRET BODY TEXT" not in raw.decode()


def test_delay_notice() -> None:
    until = ARRIVED + timedelta(days=5)
    raw = build_delay_notice(
        hostname="mx.example.com",
        original_sender="alice@example.com",
        recipients=[DSNRecipient("bob@example.org", "delayed", "4.4.1",
                                 remote_mta="mx.example.org",
                                 diagnostic="X-Postoffice; connection refused",
                                 will_retry_until=until)],
        original_message=ORIGINAL,
        arrival_date=ARRIVED,
    )
    msg = parse(raw)
    assert "Delayed" in msg["Subject"]
    block = list(msg.iter_parts())[1].get_payload()[1]
    assert block["Action"] == "delayed"
    assert block["Status"] == "4.4.1"
    assert block["Will-Retry-Until"] == "Sun, 07 Jan 2024 03:04:05 +0000"


def test_returned_headers_are_bounded() -> None:
    big = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"y" * 100) for i in range(2000))
    raw = build_dsn(
        hostname="mx.example.com", original_sender="a@example.com",
        recipients=[DSNRecipient("b@example.org", "failed", "5.0.0")],
        original_message=big + b"\r\nbody\r\n", max_header_bytes=4096,
    )
    assert len(raw) < 8192
    returned = list(parse(raw).iter_parts())[2].get_payload()
    assert "X-Postoffice-Truncated" in returned


def test_is_bounce() -> None:
    assert is_bounce("") and is_bounce("<>") and is_bounce(None)
    assert is_bounce("MAILER-DAEMON@example.com")
    assert not is_bounce("alice@example.com")
    assert not is_bounce("<alice@example.com>")
