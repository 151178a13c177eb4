"""SEARCH over a real Store: every key, decoding, dates, sets, cheap-first evaluation, speed."""

from __future__ import annotations

import base64
import time
from datetime import datetime, timezone

import pytest

from postoffice.protocols.imap.grammar.reader import Reader
from postoffice.protocols.imap.grammar.search import SearchAnd, SearchFlag, parse_search_key
from postoffice.servers.imap import search as search_mod
from postoffice.servers.imap.search import search
from postoffice.store import ANSWERED, DELETED, DRAFT, FLAGGED, SEEN, MessageMeta, Store


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=timezone.utc)

PLAIN = (
    b"From: Alice Example <alice@example.org>\r\n"
    b"To: bob@example.com\r\n"
    b"Cc: carol@example.net\r\n"
    b"Subject: Hello world\r\n"
    b"Date: Mon, 15 Jan 2024 10:00:00 +0000\r\n"
    b"Message-ID: <plain@example.org>\r\n"
    b"\r\n"
    b"The quick brown fox jumps over the lazy dog.\r\n"
)

MULTIPART = (
    b"From: =?UTF-8?Q?J=C3=BCrgen?= <juergen@example.de>\r\n"
    b"To: bob@example.com\r\n"
    b"Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=\r\n"
    b"Date: Thu, 01 Feb 2024 23:30:00 -0500\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XYZ"\r\n'
    b"\r\n"
    b"--XYZ\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    + base64.encodebytes("See the attached report, Grüße.\r\n".encode()).replace(b"\n", b"\r\n")
    + b"--XYZ\r\n"
    b"Content-Type: application/pdf; name=report.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    + base64.encodebytes(b"%PDF hidden attachment words").replace(b"\n", b"\r\n")
    + b"--XYZ--\r\n"
)

EIGHTBIT = (
    "From: caf\u00e9@example.fr\r\n"
    "To: bob@example.com\r\n"
    "Bcc: dave@example.org\r\n"
    "Subject: Caf\u00e9 menu\r\n"
    "X-Custom: secret-header\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Prix: 5=E2=82=AC le caf=C3=A9\r\n"
).encode("utf-8")

HTML = (
    b"From: eve@example.com\r\n"
    b"Date: Sun, 31 Dec 2023 23:59:59 -1000\r\n"
    b"Content-Type: text/html; charset=iso-8859-1\r\n"
    b"\r\n"
    b"<p>Bonjour \xe0 tous</p>\r\n"
)

# (raw, flag bits, keywords, internal date)
MESSAGES = [
    (PLAIN, SEEN | ANSWERED, "$Work", ts(2024, 1, 15, 12, 0, 0)),
    (MULTIPART, FLAGGED, "Junk", ts(2024, 2, 10, 0, 30, 0)),
    (EIGHTBIT, DELETED | DRAFT, "", ts(2024, 3, 1, 8, 0, 0)),
    (HTML, 0, "", NOW.timestamp() - 100),
]


@pytest.fixture
async def box(store: Store):
    await store.add_domain("example.com")
    account = await store.add_account("bob@example.com", "x")
    mailbox = await store.get_mailbox(account.id, "INBOX")
    assert mailbox is not None
    await store.append(account.id, mailbox.id, MESSAGES)
    metas = await store.list_messages(mailbox.id)
    # make the UIDs sparse-looking: bump modseq of message 2 only
    await store.store_flags(account.id, mailbox.id, [2], "add", 0, ["Later"])
    await store.store_flags(account.id, mailbox.id, [2], "remove", 0, ["Later"])
    metas = await store.list_messages(mailbox.id)
    return mailbox.id, metas


def key(text: str):
    return parse_search_key(Reader(text.encode()))


async def run(store: Store, box, text: str, **kw) -> list[int]:
    mailbox_id, metas = box
    kw.setdefault("now", NOW)
    return await search(store, mailbox_id, metas, key(text), **kw)


CASES = [
    ("ALL", [1, 2, 3, 4]),
    ("ANSWERED", [1]), ("UNANSWERED", [2, 3, 4]),
    ("DELETED", [3]), ("UNDELETED", [1, 2, 4]),
    ("DRAFT", [3]), ("UNDRAFT", [1, 2, 4]),
    ("FLAGGED", [2]), ("UNFLAGGED", [1, 3, 4]),
    ("SEEN", [1]), ("UNSEEN", [2, 3, 4]),
    ("KEYWORD $work", [1]), ("KEYWORD JUNK", [2]), ("KEYWORD nothing", []),
    ("UNKEYWORD junk", [1, 3, 4]),
    ("RECENT", []), ("NEW", []), ("OLD", [1, 2, 3, 4]), ("NOT RECENT", [1, 2, 3, 4]),
    # decoded header text, case-insensitive
    ("FROM alice", [1]), ('FROM "J\u00fcrgen"', [2]), ("FROM EXAMPLE.DE", [2]),
    ('FROM "caf\u00e9"', [3]),
    ("TO bob@example.com", [1, 2, 3]), ("CC carol", [1]), ("BCC dave", [3]),
    ('SUBJECT "gr\u00fcsse aus"', [2]), ('SUBJECT "GR\u00dc\u00dfE"', [2]),
    ('SUBJECT "CAF\u00c9 MENU"', [3]), ("SUBJECT world", [1]),
    ('SUBJECT ""', [1, 2, 3]), ('CC ""', [1]),
    ("HEADER X-Custom SECRET", [3]), ('HEADER x-custom ""', [3]), ('HEADER X-Missing ""', []),
    ("HEADER Message-ID plain@", [1]), ('HEADER Message-ID ""', [1]),
    ("HEADER content-type html", [4]), ('HEADER Date "-0500"', [2]),
    # bodies: transfer- and charset-decoded text parts only
    ('BODY "quick brown"', [1]), ('BODY "attached report, gr\u00fc\u00dfe"', [2]),
    ('BODY "5\u20ac le caf\u00e9"', [3]), ('BODY "bonjour \u00e0"', [4]),
    ("BODY hidden", []), ("BODY secret", []), ("BODY hello", []),
    ("TEXT secret", [3]), ("TEXT hello", [1]), ("TEXT quick", [1]), ("TEXT example", [1, 2, 3, 4]),
    ('BODY ""', [1, 2, 3, 4]),
    # internal date (UTC day)
    ("ON 10-Feb-2024", [2]), ("BEFORE 10-Feb-2024", [1]), ("SINCE 10-Feb-2024", [2, 3, 4]),
    ("BEFORE 1-Jan-2024", []), ("SINCE 2-Jun-2024", []), ("ON 1-Jun-2024", [4]),
    # the Date: header's own calendar date, whatever its zone (RFC 3501 6.4.4): 2 is
    # 1-Feb-2024 23:30 -0500 (2-Feb in UTC), 4 is 31-Dec-2023 23:59:59 -1000 (1-Jan in UTC);
    # no Date: falls back to the internal date
    ("SENTON 1-Feb-2024", [2]), ("SENTON 2-Feb-2024", []), ("SENTBEFORE 2-Feb-2024", [1, 2, 4]),
    ("SENTSINCE 2-Feb-2024", [3]), ("SENTON 31-Dec-2023", [4]),
    ("SENTON 1-Jan-2024", []), ("SENTBEFORE 15-Jan-2024", [4]),
    ("SENTSINCE 15-Jan-2024", [1, 2, 3]), ("SENTON 1-Mar-2024", [3]),
    # sizes
    (f"LARGER {len(PLAIN)}", [2, 3]), (f"SMALLER {len(PLAIN)}", [4]),
    (f"LARGER {len(PLAIN) - 1}", [1, 2, 3]),
    # sets
    ("2:3", [2, 3]), ("*", [4]), ("3:*", [3, 4]), ("9", []), ("1,4", [1, 4]), ("*:2", [2, 3, 4]),
    ("UID 2", [2]), ("UID 3:*", [3, 4]), ("UID 99", []), ("UID 99:*", [4]),
    # logic
    ("NOT SEEN", [2, 3, 4]), ("OR SEEN FLAGGED", [1, 2]), ("(UNSEEN UNDELETED)", [2, 4]),
    ("OR BODY quick SUBJECT menu", [1, 3]), ("NOT BODY quick", [2, 3, 4]),
    ("(UNSEEN NOT BODY report)", [3, 4]), ("OR (SEEN BODY fox) (DRAFT TEXT secret)", [1, 3]),
    ("NOT (OR SEEN BODY bonjour)", [2, 3]), ("(1:3 TEXT example FROM alice)", [1]),
    # RFC 5032 relative to `now` (message 4 arrived 100 s before now)
    ("YOUNGER 200", [4]), ("OLDER 200", [1, 2, 3]), ("YOUNGER 100", [4]), ("OLDER 100", [1, 2, 3]),
    ("YOUNGER 99", []), ("OLDER 99", [1, 2, 3, 4]),
]


@pytest.mark.parametrize("text,expected", CASES, ids=[c[0] for c in CASES])
async def test_every_key(store: Store, box, text: str, expected: list[int]) -> None:
    assert await run(store, box, text) == expected


async def test_system_flags_by_ast(store: Store, box) -> None:
    mailbox_id, metas = box
    for flag, present, expected in [("\\Recent", True, []), ("\\Recent", False, [1, 2, 3, 4]),
                                    ("\\Unknown", True, []), ("\\Seen", True, [1])]:
        got = await search(store, mailbox_id, metas, SearchFlag(flag, present), now=NOW)
        assert got == expected, flag


async def test_modseq(store: Store, box) -> None:
    _, metas = box
    top = max(m.modseq for m in metas)
    assert metas[1].modseq == top  # message 2 was changed last
    assert await run(store, box, f"MODSEQ {top}") == [2]
    assert await run(store, box, f'MODSEQ "/flags/\\\\seen" all {top}') == [2]
    assert await run(store, box, "MODSEQ 1") == [1, 2, 3, 4]
    assert await run(store, box, f"MODSEQ {top + 1}") == []


async def test_saved_result_is_uids(store: Store, box) -> None:
    assert await run(store, box, "$") == []  # nothing saved
    assert await run(store, box, "$", saved=[2, 4]) == [2, 4]
    assert await run(store, box, "UID $", saved=[1, 3, 77]) == [1, 3]
    assert await run(store, box, "(UNSEEN $)", saved=[1, 2]) == [2]
    assert await run(store, box, "OR $ SEEN", saved=[]) == [1]


async def test_sequence_numbers_follow_the_session_view(store: Store, box) -> None:
    mailbox_id, metas = box
    view = [metas[0], metas[2], metas[3]]  # message 2 expunged in this session's view
    assert await search(store, mailbox_id, view, key("UNSEEN"), now=NOW) == [2, 3]
    assert await search(store, mailbox_id, view, key("*"), now=NOW) == [3]
    assert await search(store, mailbox_id, view, key("UID 2:3"), now=NOW) == [2]
    assert await search(store, mailbox_id, view, key("SUBJECT menu"), now=NOW) == [2]
    assert await search(store, mailbox_id, view, key("BODY bonjour"), now=NOW) == [3]
    assert await search(store, mailbox_id, [], key("ALL"), now=NOW) == []
    # a placeholder for a message expunged meanwhile (no blob) never matches blob keys
    ghost = MessageMeta(99, 0, "", 0, 0.0, 0, "")
    assert await search(store, mailbox_id, [*metas, ghost], key("TEXT example"), now=NOW) == [1, 2, 3, 4]
    assert await search(store, mailbox_id, [*metas, ghost], key("NOT BODY quick"), now=NOW) == [2, 3, 4, 5]


async def test_invalid_utf8_needle_does_not_crash(store: Store, box) -> None:
    mailbox_id, metas = box
    from postoffice.protocols.imap.grammar.search import SearchBody
    assert await search(store, mailbox_id, metas, SearchBody(b"\xff\xfe"), now=NOW) == []


class Counting:
    def __init__(self, store: Store, monkeypatch) -> None:
        self.reads: list[str] = []
        self.fields = 0
        self.infos = 0
        real_read, real_fields, real_info = store.read_blob, store.search_fields, store.blob_info

        async def read(blob_id):
            self.reads.append(blob_id)
            return await real_read(blob_id)

        async def fields(mailbox_id):
            self.fields += 1
            return await real_fields(mailbox_id)

        async def info(ids):
            self.infos += 1
            return await real_info(ids)
        monkeypatch.setattr(store, "read_blob", read)
        monkeypatch.setattr(store, "search_fields", fields)
        monkeypatch.setattr(store, "blob_info", info)


async def test_cheap_keys_first_and_no_io_for_flags(store: Store, box, monkeypatch) -> None:
    _, metas = box
    c = Counting(store, monkeypatch)
    await run(store, box, "(UNSEEN UNDELETED 1:* UID 1:* LARGER 1 BEFORE 1-Jan-2030 MODSEQ 1 OLDER 1)")
    assert (c.reads, c.fields, c.infos) == ([], 0, 0)
    await run(store, box, "SUBJECT hello")
    assert (c.reads, c.fields, c.infos) == ([], 1, 0)
    # BODY after a cheap key: only the remaining candidates' blobs are read, each once
    assert await run(store, box, "(BODY report UNSEEN TEXT report NOT DELETED)") == [2]
    assert sorted(c.reads) == sorted([metas[1].blob_id, metas[3].blob_id])
    c.reads.clear()
    # OR: the right side is only tested where the left did not match
    assert await run(store, box, "OR SEEN BODY report") == [1, 2]
    assert sorted(c.reads) == sorted(m.blob_id for m in metas[1:])
    c.reads.clear()
    assert await run(store, box, "(SEEN FLAGGED BODY fox)") == []
    assert c.reads == []


# Keywords cycle with period 5 and \Seen with period 3, so every combination of the two occurs.
BIG_KEYWORDS = ("", "$Work", "$Junk NonJunk", "NonJunk", "$Work $Junk")


def _big_metas(n: int) -> list[MessageMeta]:
    return [MessageMeta(uid, (SEEN if uid % 3 else 0) | (DELETED if uid % 11 == 0 else 0),
                        BIG_KEYWORDS[uid % 5], 1000 + uid, 1.7e9 + uid * 60, uid, "b%d" % uid)
            for uid in range(1, n + 1)]


async def test_unseen_on_100k_is_fast_and_in_memory(store: Store, monkeypatch) -> None:
    metas = _big_metas(100_000)
    c = Counting(store, monkeypatch)
    best = 10.0
    for _ in range(3):
        t0 = time.perf_counter()
        result = await search(store, 1, metas, SearchFlag("\\Seen", False))
        best = min(best, time.perf_counter() - t0)
    assert len(result) == 33_333 and result[:3] == [3, 6, 9]

    # Five keys that each remove messages the other four keep (checked below), so a search that
    # ignores any one of them, or returns nothing, fails.
    since = ts(2023, 12, 1)  # SINCE compares the internal date's UTC day; 1.7e9 is 14-Nov-2023
    conditions = [
        lambda m: not m.flags & SEEN,                                  # UNSEEN
        lambda m: not m.flags & DELETED,                               # UNDELETED
        lambda m: "nonjunk" in BIG_KEYWORDS[m.uid % 5].lower().split(),  # KEYWORD nonjunk
        lambda m: m.internal_date >= since,                            # SINCE 1-Dec-2023
        lambda m: not 30_000 <= m.uid <= 40_000,                       # NOT 30000:40000
    ]

    def expected(conds: list) -> list[int]:  # type: ignore[type-arg]
        return [seq for seq, m in enumerate(metas, 1) if all(c(m) for c in conds)]
    want = expected(conditions)
    assert len(want) > 1000
    for i in range(len(conditions)):
        assert expected(conditions[:i] + conditions[i + 1:]) != want, f"key {i} selects nothing"
    t0 = time.perf_counter()
    combo = await search(store, 1, metas, key("(UNSEEN UNDELETED KEYWORD nonjunk SINCE 1-Dec-2023 NOT 30000:40000)"))
    combo_time = time.perf_counter() - t0
    assert combo == want
    assert (c.reads, c.fields, c.infos) == ([], 0, 0)
    print(f"UID SEARCH UNSEEN x100k: {best * 1000:.0f} ms; 5-key AND: {combo_time * 1000:.0f} ms")
    assert best < 0.4


async def test_body_search_1000_messages(store: Store, monkeypatch) -> None:
    await store.add_domain("example.com")
    account = await store.add_account("bob@example.com", "x")
    mailbox = await store.get_mailbox(account.id, "INBOX")
    assert mailbox is not None
    filler = b"".join(b"line %d of some ordinary text to search through\r\n" % i for i in range(220))
    raws = [b"Subject: m%d\r\nContent-Type: text/plain\r\n\r\n" % i + filler
            + (b"needle-%d\r\n" % i) for i in range(20)]
    await store.append(account.id, mailbox.id, [(r, 0, "", ts(2024, 1, 1)) for r in raws])
    real = await store.list_messages(mailbox.id)
    assert all(m.size > 10_000 for m in real)
    # 1,000 messages of ~10 KB (20 distinct real blobs, each read many times)
    metas = [MessageMeta(i, 0, "", real[i % 20].size, real[i % 20].internal_date, 1, real[i % 20].blob_id)
             for i in range(1, 1001)]
    monkeypatch.setattr(search_mod, "READ_BATCH_MESSAGES", 64)
    c = Counting(store, monkeypatch)
    t0 = time.perf_counter()
    result = await search(store, mailbox.id, metas, key("BODY needle-7"))
    elapsed = time.perf_counter() - t0
    print(f"BODY search x1000 (10 KB each): {elapsed * 1000:.0f} ms")
    assert result == [i for i in range(1, 1001) if i % 20 == 7]
    assert len(c.reads) == 1000 and c.infos == 2
    assert elapsed < 5


async def test_and_of_nothing_and_deep_nesting(store: Store, box) -> None:
    mailbox_id, metas = box
    assert await search(store, mailbox_id, metas, SearchAnd(()), now=NOW) == [1, 2, 3, 4]
    text = "NOT " * 30 + "SEEN"
    assert await run(store, box, text) == [1]


ADDRESSED = [
    (b"From: real@example.org (Display Person)\r\n"
     b'To: "Sales Team" <sales@example.com>\r\n'
     b"Cc: x(chatty-comment)@example.com\r\n"
     b"Subject: a\r\n\r\nbody\r\n", 0, "", ts(2024, 1, 1)),
    (b"From: <@route.example:bob@example.net>\r\n"
     b"Bcc: Hidden (comment-in-phrase) Person <hp@example.com>\r\n"
     b"Subject: b\r\n\r\nbody\r\n", 0, "", ts(2024, 1, 2)),
]


@pytest.mark.parametrize("text,expected", [
    # RFC 9051 6.4.4: FROM/TO/CC/BCC look at the envelope's addresses
    ('FROM "Display Person"', [1]), ("FROM real@example.org", [1]),
    ("CC chatty-comment", []), ("CC x@example.com", [1]),
    ('HEADER CC "chatty-comment"', [1]),  # HEADER is the field's text, comments and all
    ("FROM route.example", []), ('HEADER FROM "route.example"', [2]), ("FROM bob@example.net", [2]),
    ('TO "Sales Team <sales@"', [1]), ('TO "\\"Sales"', []), ('HEADER TO "\\"Sales"', [1]),
    ("BCC comment-in-phrase", []), ('BCC "Hidden Person"', [2]),
])
async def test_address_keys_search_the_envelope(store: Store, text: str, expected: list[int]) -> None:
    await store.add_domain("example.com")
    account = await store.add_account("bob@example.com", "x")
    mailbox = await store.get_mailbox(account.id, "INBOX")
    await store.append(account.id, mailbox.id, ADDRESSED)
    metas = await store.list_messages(mailbox.id)
    assert await search(store, mailbox.id, metas, key(text), now=NOW) == expected


async def test_sent_dates_of_rows_stored_before_the_original_date_was_kept(store: Store, box) -> None:
    """Blobs stored before migration 5 have only the UTC timestamp: their UTC day is used."""
    mailbox_id, _ = box
    await store.db.write(lambda tx: tx.execute("UPDATE blobs SET sent_local = NULL"))
    assert await run(store, box, "SENTON 2-Feb-2024") == [2]
    assert await run(store, box, "SENTON 1-Jan-2024") == [4]
    assert await run(store, box, "SENTON 1-Feb-2024") == []
