"""FETCH responses from a real Store: every item, sections, partials, BINARY, batching, speed."""

from __future__ import annotations

import base64
import time
from datetime import datetime, timezone

import pytest

from postoffice.protocols.imap.grammar.fetch_att import FetchAtt, Section, parse_fetch_atts
from postoffice.protocols.imap.grammar.reader import Reader
from postoffice.servers.imap import fetch as fetch_mod
from postoffice.servers.imap.fetch import FetchError, fetch_responses
from postoffice.store import ANSWERED, SEEN, MessageMeta, Store

ATTACHMENT = b"\x00\x01binary\xff" * 10

PLAIN = (
    b"From: Alice Example <alice@example.org>\r\n"
    b"To: bob@example.com\r\n"
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
    b"preamble\r\n"
    b"--XYZ\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"See the attached report.\r\n"
    b"--XYZ\r\n"
    b"Content-Type: application/octet-stream; name=report.bin\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"Content-Disposition: attachment; filename=report.bin\r\n"
    b"\r\n"
    + base64.encodebytes(ATTACHMENT).replace(b"\n", b"\r\n")
    + b"--XYZ\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"Subject: Inner\r\n"
    b"From: inner@example.net\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--XYZ\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Transfer-Encoding: x-uuencode\r\n"
    b"\r\n"
    b"begin 644 x\r\n"
    b"--XYZ--\r\n"
)

EIGHTBIT = (
    "From: caf\u00e9@example.fr\r\n"
    "Subject: Caf\u00e9 menu\r\n"
    "X-Custom: secret-header\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Prix: 5=E2=82=AC le caf=C3=A9\r\n"
).encode("utf-8")


EIGHTBIT_TEXT = EIGHTBIT.partition(b"\r\n\r\n")[2]


async def make_mailbox(store: Store, messages: list[bytes]) -> tuple[int, list[MessageMeta]]:
    await store.add_domain("example.com")
    account = await store.add_account("bob@example.com", "x")
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    for raw in messages:
        await store.deliver([(account.id, "INBOX")], raw)
    await store.store_flags(account.id, box.id, [1], "add", SEEN | ANSWERED, ["$Work"])
    return box.id, await store.list_messages(box.id)


def atts(text: str) -> tuple[FetchAtt, ...]:
    return parse_fetch_atts(Reader(text.encode()))


async def run(store: Store, metas: list[MessageMeta], spec: str, *, uid: bool = False,
              modseq: bool = False, seqs: list[int] | None = None) -> bytes:
    seqs = seqs or list(range(1, len(metas) + 1))
    chunks = [c async for c in fetch_responses(
        store, [(s, metas[s - 1]) for s in seqs], atts(spec), include_uid=uid, include_modseq=modseq)]
    return b"".join(chunks)


@pytest.fixture
async def box(store: Store):
    return await make_mailbox(store, [PLAIN, MULTIPART, EIGHTBIT])


async def test_meta_items(store: Store, box) -> None:
    _, metas = box
    out = await run(store, metas, "(FLAGS RFC822.SIZE INTERNALDATE MODSEQ)", uid=True)
    lines = out.split(b"\r\n")
    assert len(lines) == 4 and lines[-1] == b""
    m = metas[0]
    t = datetime.fromtimestamp(m.internal_date, timezone.utc)
    date = t.strftime("%d-%b-%Y %H:%M:%S +0000").lstrip("0").rjust(26).encode()
    assert lines[0] == (b'* 1 FETCH (UID 1 FLAGS (\\Answered \\Seen $Work) RFC822.SIZE %d '
                        b'INTERNALDATE "%s" MODSEQ (%d))' % (len(PLAIN), date, m.modseq))
    assert lines[1].startswith(b"* 2 FETCH (UID 2 FLAGS () RFC822.SIZE %d " % len(MULTIPART))


def test_internaldate_format() -> None:
    ts = datetime(2024, 3, 5, 7, 8, 9, tzinfo=timezone.utc).timestamp()
    assert fetch_mod.internal_date(ts) == b'" 5-Mar-2024 07:08:09 +0000"'
    ts = datetime(1999, 12, 25, 23, 0, 0, tzinfo=timezone.utc).timestamp()
    assert fetch_mod.internal_date(ts) == b'"25-Dec-1999 23:00:00 +0000"'


def test_internaldate_is_written_in_its_own_zone() -> None:
    ts = datetime(2024, 1, 1, 21, 30, tzinfo=timezone.utc).timestamp()
    assert fetch_mod.internal_date(ts, 120) == b'" 1-Jan-2024 23:30:00 +0200"'
    assert fetch_mod.internal_date(ts, -570) == b'" 1-Jan-2024 12:00:00 -0930"'
    assert fetch_mod.internal_date(ts, 180) == b'" 2-Jan-2024 00:30:00 +0300"'


async def test_uid_and_modseq_added_once(store: Store, box) -> None:
    _, metas = box
    out = await run(store, metas, "(UID FLAGS)", uid=True, modseq=True, seqs=[2])
    assert out == b"* 2 FETCH (UID 2 FLAGS () MODSEQ (%d))\r\n" % metas[1].modseq
    out = await run(store, metas, "(FLAGS MODSEQ)", uid=True, modseq=True, seqs=[2])
    assert out == b"* 2 FETCH (UID 2 FLAGS () MODSEQ (%d))\r\n" % metas[1].modseq
    out = await run(store, metas, "FLAGS", seqs=[2])
    assert out == b"* 2 FETCH (FLAGS ())\r\n"
    out = await run(store, metas, "(BODY.PEEK[1] BODY[1] UID UID)", seqs=[2])
    assert out == b"* 2 FETCH (BODY[1] {24}\r\nSee the attached report. UID 2)\r\n"


async def test_envelope_bodystructure_body_precomputed(store: Store, box) -> None:
    _, metas = box
    infos = await store.blob_info([m.blob_id for m in metas])
    out = await run(store, metas, "(ENVELOPE BODYSTRUCTURE BODY)")
    for seq, m in enumerate(metas, 1):
        info = infos[m.blob_id]
        assert (b"* %d FETCH (ENVELOPE %s BODYSTRUCTURE %s BODY %s)\r\n"
                % (seq, info.envelope, info.bodystructure, info.body)) in out
    assert b'"Hello world"' in out and b'"MIXED"' in out.upper()


async def test_fetch_without_sections_reads_no_blob(store: Store, box, monkeypatch) -> None:
    _, metas = box
    calls = {"read": 0, "info": 0}
    real_read, real_info = store.read_blob, store.blob_info

    async def read(blob_id):
        calls["read"] += 1
        return await real_read(blob_id)

    async def info(ids):
        calls["info"] += 1
        return await real_info(ids)

    monkeypatch.setattr(store, "read_blob", read)
    monkeypatch.setattr(store, "blob_info", info)
    await run(store, metas, "(UID FLAGS INTERNALDATE RFC822.SIZE)")
    assert calls == {"read": 0, "info": 0}
    await run(store, metas, "ALL")
    assert calls == {"read": 0, "info": 1}
    await run(store, metas, "BODY.PEEK[]")
    assert calls == {"read": 3, "info": 1}  # whole message: no blob_info needed
    # BINARY.SIZE of an identity-encoded part needs only the stored tree; message 3's
    # part 1 is quoted-printable, so only that blob is read to measure the decoded size
    await run(store, metas, "BINARY.SIZE[1]")
    assert calls == {"read": 4, "info": 2}


async def test_body_sections(store: Store, box) -> None:
    _, metas = box
    out = await run(store, metas, "BODY[]", seqs=[1])
    assert out == b"* 1 FETCH (BODY[] {%d}\r\n%s)\r\n" % (len(PLAIN), PLAIN)
    header, _, text = MULTIPART.partition(b"\r\n\r\n")
    out = await run(store, metas, "(BODY.PEEK[HEADER] BODY[TEXT]<0.10>)", seqs=[2])
    assert out == (b"* 2 FETCH (BODY[HEADER] {%d}\r\n%s\r\n\r\n BODY[TEXT]<0> {10}\r\n%s)\r\n"
                   % (len(header) + 4, header, text[:10]))
    out = await run(store, metas, "BODY[1]", seqs=[2])
    assert out == b"* 2 FETCH (BODY[1] {24}\r\nSee the attached report.)\r\n"
    out = await run(store, metas, "BODY[1.MIME]", seqs=[2])
    mime = b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    assert out == b"* 2 FETCH (BODY[1.MIME] {%d}\r\n%s)\r\n" % (len(mime), mime)
    out = await run(store, metas, "BODY[HEADER.FIELDS (Subject From)]", seqs=[1])
    fields = b"From: Alice Example <alice@example.org>\r\nSubject: Hello world\r\n\r\n"
    assert out == b"* 1 FETCH (BODY[HEADER.FIELDS (Subject From)] {%d}\r\n%s)\r\n" % (len(fields), fields)
    out = await run(store, metas, "BODY[HEADER.FIELDS.NOT (Subject From Date Message-ID)]", seqs=[1])
    assert out.endswith(b"{23}\r\nTo: bob@example.com\r\n\r\n)\r\n")
    # encapsulated message sections
    out = await run(store, metas, "(BODY[3.HEADER] BODY[3.TEXT] BODY[3.1])", seqs=[2])
    # (the CRLF before a boundary belongs to the boundary, RFC 2046 5.1.1)
    assert out == (b"* 2 FETCH (BODY[3.HEADER] {43}\r\nSubject: Inner\r\nFrom: inner@example.net\r\n\r\n"
                   b" BODY[3.TEXT] {10}\r\ninner body BODY[3.1] {10}\r\ninner body)\r\n")
    # the 1 of a non-multipart message is its body
    out = await run(store, metas, "BODY[1]", seqs=[1])
    assert out.endswith(b"{46}\r\nThe quick brown fox jumps over the lazy dog.\r\n)\r\n")


async def test_missing_sections_are_nil_and_partials(store: Store, box) -> None:
    _, metas = box
    out = await run(store, metas, "(BODY[9] BODY[1.HEADER] BODY[2.9] BINARY[7] BINARY.SIZE[7])", seqs=[2])
    assert out == b"* 2 FETCH (BODY[9] NIL BODY[1.HEADER] NIL BODY[2.9] NIL BINARY[7] NIL BINARY.SIZE[7] 0)\r\n"
    out = await run(store, metas, "BODY[]<5000.10>", seqs=[1])
    assert out == b'* 1 FETCH (BODY[]<5000> {0}\r\n)\r\n'
    out = await run(store, metas, "BODY[]<6.5>", seqs=[1])
    assert out == b"* 1 FETCH (BODY[]<6> {5}\r\nAlice)\r\n"


async def test_rfc822_items(store: Store, box) -> None:
    _, metas = box
    header, _, text = PLAIN.partition(b"\r\n\r\n")
    out = await run(store, metas, "(RFC822.HEADER RFC822.TEXT RFC822)", seqs=[1])
    assert out == (b"* 1 FETCH (RFC822.HEADER {%d}\r\n%s\r\n\r\n RFC822.TEXT {%d}\r\n%s RFC822 {%d}\r\n%s)\r\n"
                   % (len(header) + 4, header, len(text), text, len(PLAIN), PLAIN))


async def test_binary(store: Store, box) -> None:
    _, metas = box
    out = await run(store, metas, "(BINARY.PEEK[2] BINARY.SIZE[2] BINARY[2]<2.6>)", seqs=[2])
    assert out == (b"* 2 FETCH (BINARY[2] ~{%d}\r\n%s BINARY.SIZE[2] %d BINARY[2]<2> {6}\r\nbinary)\r\n"
                   % (len(ATTACHMENT), ATTACHMENT, len(ATTACHMENT)))
    # quoted-printable decoded, no NUL: an ordinary literal
    decoded = "Prix: 5\u20ac le caf\u00e9\r\n".encode()
    out = await run(store, metas, "(BINARY[1] BINARY.SIZE[1])", seqs=[3])
    assert out == b"* 3 FETCH (BINARY[1] {%d}\r\n%s BINARY.SIZE[1] %d)\r\n" % (len(decoded), decoded, len(decoded))
    out = await run(store, metas, "(BINARY.SIZE[1] BINARY.SIZE[])", seqs=[2])
    assert out == b"* 2 FETCH (BINARY.SIZE[1] 24 BINARY.SIZE[] %d)\r\n" % len(MULTIPART)


async def test_binary_of_text_sections_and_open_partials(store: Store, box) -> None:
    """BINARY with a section text (Dovecot accepts them; imaptest's fetch-binary-mime): headers
    as BODY[] sends them, TEXT of a multipart as it is, TEXT of a single-part message decoded;
    a partial without length runs to the end."""
    _, metas = box
    header, _, text = MULTIPART.partition(b"\r\n\r\n")
    mime = b"Content-Type: message/rfc822\r\n\r\n"
    out = await run(store, metas, "(BINARY.PEEK[TEXT] BINARY.SIZE[TEXT] BINARY[3.MIME] BINARY.SIZE[3.MIME])", seqs=[2])
    assert out == (b"* 2 FETCH (BINARY[TEXT] {%d}\r\n%s BINARY.SIZE[TEXT] %d BINARY[3.MIME] {%d}\r\n%s "
                   b"BINARY.SIZE[3.MIME] %d)\r\n" % (len(text), text, len(text), len(mime), mime, len(mime)))
    out = await run(store, metas, "(BINARY.PEEK[3.HEADER.FIELDS (FROM)] BINARY.PEEK[3.TEXT])", seqs=[2])
    assert out == (b"* 2 FETCH (BINARY[3.HEADER.FIELDS (FROM)] {27}\r\nFrom: inner@example.net\r\n\r\n "
                   b"BINARY[3.TEXT] {10}\r\ninner body)\r\n")
    decoded = "Prix: 5\u20ac le caf\u00e9\r\n".encode()
    out = await run(store, metas, "(BINARY.PEEK[TEXT] BINARY.SIZE[TEXT] BINARY.PEEK[1]<9> BODY.PEEK[TEXT]<9>)", seqs=[3])
    assert out == (b"* 3 FETCH (BINARY[TEXT] {%d}\r\n%s BINARY.SIZE[TEXT] %d BINARY[1]<9> {%d}\r\n%s "
                   b"BODY[TEXT]<9> {%d}\r\n%s)\r\n" % (len(decoded), decoded, len(decoded), len(decoded) - 9,
                                                     decoded[9:], len(EIGHTBIT_TEXT) - 9, EIGHTBIT_TEXT[9:]))


async def test_unknown_cte_raises_after_other_messages(store: Store, box) -> None:
    _, metas = box
    got = []
    with pytest.raises(FetchError) as exc:
        async for chunk in fetch_responses(store, list(enumerate(metas, 1)), atts("(UID BINARY[4])"),
                                           include_uid=True, include_modseq=False):
            got.append(chunk)
    assert exc.value.code == b"UNKNOWN-CTE"
    data = b"".join(got)
    assert b"* 1 FETCH (UID 1 BINARY[4] NIL)" in data
    assert b"* 3 FETCH (UID 3 BINARY[4] NIL)" in data
    assert b"* 2 FETCH" not in data


async def test_eightbit_and_encoded_headers_untouched(store: Store, box) -> None:
    _, metas = box
    out = await run(store, metas, "BODY.PEEK[HEADER.FIELDS (SUBJECT)]", seqs=[3])
    value = "Subject: Caf\u00e9 menu\r\n\r\n".encode()
    assert out == b"* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {%d}\r\n%s)\r\n" % (len(value), value)


async def test_missing_blob_is_corruption(store: Store, box) -> None:
    _, metas = box
    async def broken(blob_id):
        if blob_id == metas[0].blob_id:
            raise FileNotFoundError(blob_id)
        return await Store.read_blob(store, blob_id)
    store.read_blob = broken  # type: ignore[method-assign]
    got = []
    with pytest.raises(FetchError) as exc:
        async for chunk in fetch_responses(store, list(enumerate(metas, 1)), atts("BODY.PEEK[]"),
                                           include_uid=False, include_modseq=False):
            got.append(chunk)
    assert exc.value.code == b"CORRUPTION"
    assert b"* 1 FETCH" not in b"".join(got) and b"* 2 FETCH" in b"".join(got)


async def test_batches_many_messages(store: Store, monkeypatch) -> None:
    monkeypatch.setattr(fetch_mod, "RAW_BATCH_MESSAGES", 4)
    monkeypatch.setattr(fetch_mod, "CHUNK_BYTES", 512)
    msgs = [PLAIN.replace(b"Hello world", b"Message %d" % i) for i in range(20)]
    _, metas = await make_mailbox(store, msgs)
    chunks = [c async for c in fetch_responses(
        store, list(enumerate(metas, 1)), atts("(ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT)])"),
        include_uid=True, include_modseq=False)]
    assert len(chunks) > 1
    data = b"".join(chunks)
    for i in range(20):
        assert b"* %d FETCH (UID %d ENVELOPE" % (i + 1, i + 1) in data
        assert b"Subject: Message %d\r\n" % i in data


async def test_envelope_for_1000_messages_uses_few_queries(store: Store, monkeypatch) -> None:
    calls = []
    real = store.blob_info

    async def info(ids):
        ids = list(ids)
        calls.append(len(ids))
        return await real(ids)
    monkeypatch.setattr(store, "blob_info", info)
    _, real_metas = await make_mailbox(store, [PLAIN, MULTIPART, EIGHTBIT])
    metas = [MessageMeta(i, 0, "", 10, 0.0, 1, real_metas[i % 3].blob_id) for i in range(1, 1001)]
    calls.clear()
    t0 = time.perf_counter()
    data = b"".join([c async for c in fetch_responses(store, list(enumerate(metas, 1)), atts("ENVELOPE"),
                                                      include_uid=False, include_modseq=False)])
    print(f"FETCH ENVELOPE x1000: {(time.perf_counter() - t0) * 1000:.0f} ms")
    assert data.count(b" FETCH (ENVELOPE (") == 1000
    assert len(calls) == 1


def _big_metas(n: int) -> list[MessageMeta]:
    kws = ("", "$Work", "$Junk NonJunk")
    return [MessageMeta(uid, (SEEN if uid % 3 else 0) | (ANSWERED if uid % 7 == 0 else 0),
                        kws[uid % 3], 1000 + uid, 1.7e9 + uid, uid, "b%d" % uid)
            for uid in range(1, n + 1)]


async def test_flags_uid_fetch_100k_is_fast(store: Store) -> None:
    metas = _big_metas(100_000)
    items = list(enumerate(metas, 1))
    best = 10.0
    for _ in range(3):
        t0 = time.perf_counter()
        chunks = [c async for c in fetch_responses(store, items, atts("(UID FLAGS)"),
                                                   include_uid=True, include_modseq=False)]
        best = min(best, time.perf_counter() - t0)
    data = b"".join(chunks)
    assert data.count(b"\r\n") == 100_000
    assert b"* 7 FETCH (UID 7 FLAGS (\\Answered \\Seen $Work))\r\n" in data
    assert all(len(c) < 512 * 1024 for c in chunks) and len(chunks) > 5
    print(f"FETCH 1:* (UID FLAGS) x100k: {best * 1000:.0f} ms")
    assert best < 0.8


def test_fetch_atts_parse_helpers() -> None:
    # sanity of the helpers used above
    assert atts("BODY.PEEK[1.MIME]") == (FetchAtt("BODY", Section((1,), "MIME"), peek=True),)
