"""ENVELOPE / BODYSTRUCTURE / BODY for hand-written samples (expected strings checked by hand
against RFC 9051 section 9: body-type-1part, body-type-mpart, body-type-msg, envelope)."""

from __future__ import annotations

import email
import email.policy
import time
from pathlib import Path

import pytest

from postoffice.mail import (
    MAX_DEPTH,
    Part,
    analyze,
    binary_bytes,
    body,
    bodystructure,
    canonicalize_crlf,
    envelope,
    parse,
)

from . import imapcheck

DATA = Path(__file__).parent / "data"
RAW_AS_IS = {"barelf", "nobody", "eightbit"}  # byte-exact samples; the rest are made CRLF


def load(name: str) -> bytes:
    raw = (DATA / f"{name}.eml").read_bytes()
    return raw if name in RAW_AS_IS else canonicalize_crlf(raw)


ALL = sorted(p.stem for p in DATA.glob("*.eml"))

ALICE = b'(("Alice Example" NIL "alice" "example.org"))'
EXPECTED = {
    "plain": (
        b'("Wed, 17 Jan 2024 09:30:00 -0500" "Lunch tomorrow?" ' + ALICE + b" " + ALICE + b" "
        + ALICE + b' ((NIL NIL "bob" "example.com")) NIL NIL NIL "<plain-1@example.org>")',
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 43 4 NIL NIL NIL NIL)',
    ),
    "alternative": (
        b'("Thu, 18 Jan 2024 14:05:10 +0000" "Meeting notes" '
        b'(("Carol \\"CJ\\" Jones" NIL "carol" "example.net")) '
        b'((NIL NIL "list-bounces" "lists.example.net")) '
        b'((NIL NIL "list" "lists.example.net")) '
        b'(("Dave" NIL "dave" "example.com")(NIL NIL "eve" "example.com")) '
        b'((NIL NIL "frank" "example.com")) NIL "<plain-1@example.org>" "<alt-1@example.net>")',
        b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 16 1 NIL NIL NIL NIL)'
        b'("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "7BIT" 18 1 NIL NIL NIL NIL) '
        b'"ALTERNATIVE" ("BOUNDARY" "alt-b") NIL NIL NIL)',
    ),
    "attachment": (
        None,
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 13 1 NIL NIL NIL NIL)'
        b'("APPLICATION" "PDF" ("NAME" "report.pdf") "<pdf1@example.com>" "Quarterly report" '
        b'"BASE64" 102 "Q2hlY2sgSW50ZWdyaXR5IQ==" ("ATTACHMENT" ("FILENAME" "report.pdf")) '
        b'("en" "de") "http://example.com/report.pdf") "MIXED" ("BOUNDARY" "mixed42") NIL NIL NIL)',
    ),
    "nested": (
        None,
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 11 1 NIL NIL NIL NIL)'
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 314 '
        b'(NIL "Report" ((NIL NIL "grace" "example.com")) ((NIL NIL "grace" "example.com")) '
        b'((NIL NIL "grace" "example.com")) ((NIL NIL "heidi" "example.com")) NIL NIL NIL '
        b'"<att-1@example.com>") '
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 11 1 NIL NIL NIL NIL)'
        b'("IMAGE" "PNG" NIL NIL NIL "BASE64" 12 NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "inner") '
        b'NIL NIL NIL) 17 NIL ("INLINE" NIL) NIL NIL) "MIXED" ("BOUNDARY" "outer") NIL NIL NIL)',
    ),
    "barelf": (
        b'(NIL "bare LF" ((NIL NIL "kim" "example.com")) ((NIL NIL "kim" "example.com")) '
        b'((NIL NIL "kim" "example.com")) ((NIL NIL "lee" "example.com")) NIL NIL NIL NIL)',
        b'("TEXT" "PLAIN" ("CHARSET" "iso-8859-1") NIL NIL "8BIT" 12 2 NIL NIL NIL NIL)',
    ),
    "nobody": (
        b'(NIL "no body" ((NIL NIL "mallory" "example.com")) ((NIL NIL "mallory" "example.com")) '
        b'((NIL NIL "mallory" "example.com")) NIL NIL NIL NIL NIL)',
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)',
    ),
    "badboundary": (
        None,
        # no delimiter found: the body is exposed as one implicit text/plain part
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 82 4 NIL NIL NIL NIL) "MIXED" '
        b'("BOUNDARY" "never-used") NIL NIL NIL)',
    ),
    "groups": (
        b'(NIL "Groups" (("Peggy" NIL "peggy" "example.com")) (("Peggy" NIL "peggy" "example.com")) '
        b'(("Peggy" NIL "peggy" "example.com")) '
        b'((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) '
        b'((NIL NIL "Friends" NIL)(NIL NIL "rob" "example.com")("Sybil S." NIL "sybil" "example.com")'
        b'(NIL NIL NIL NIL)(NIL NIL "trent" "example.com")) '
        b'((NIL "@relay1.example,@relay2.example" "victor" "example.com")) NIL NIL)',
        None,
    ),
    "eightbit": (
        # 8-bit header text goes out as literals; encoded-words are left as they are.
        b'("21 Jan 2024 10:00 +0100" {17}\r\nGr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln '
        + b'(("=?ISO-8859-1?Q?Andr=E9?= Pirard" NIL "pirard" "example.be")) ' * 3
        + b'(({15}\r\nJ\xc3\xbcrgen M\xc3\xbcller NIL "juergen" "example.de")) NIL NIL NIL NIL)',
        None,
    ),
    "encoded": (
        b'("Mon, 22 Jan 2024 23:59:59 GMT" '
        b'"=?UTF-8?Q?Caf=C3=A9?= =?UTF-8?Q?_ol=C3=A9?= and =?iso-8859-1?q?=E0_la_carte?=" '
        + b'(("=?UTF-8?B?5bGx55Sw?=" NIL "yamada" "example.jp")) ' * 3
        + b'(("=?utf-8?q?Zo=C3=AB?=" NIL "zoe" "example.com")) NIL NIL NIL NIL)',
        b'("TEXT" "PLAIN" ("CHARSET" "UTF-8") NIL NIL "BASE64" 14 1 NIL NIL NIL NIL)',
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_expected_wire_forms(name: str) -> None:
    raw = load(name)
    info = analyze(raw)
    env, bs = EXPECTED[name]
    if env is not None:
        assert info.envelope == env
    if bs is not None:
        assert info.bodystructure == bs


@pytest.mark.parametrize("name", ALL)
def test_wire_forms_follow_abnf(name: str) -> None:
    raw = load(name)
    info = analyze(raw)
    imapcheck.check_envelope(imapcheck.parse(info.envelope))
    n_ext = imapcheck.check_body(imapcheck.parse(info.bodystructure), ext=True)
    n_plain = imapcheck.check_body(imapcheck.parse(info.body), ext=False)
    assert n_ext == n_plain >= 1
    assert info.body == body(raw, info.tree) == bodystructure(raw, info.tree, extensible=False)
    assert info.envelope == envelope(raw, info.tree)


def test_body_is_bodystructure_without_extensions() -> None:
    raw = load("attachment")
    assert analyze(raw).body == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 13 1)'
        b'("APPLICATION" "PDF" ("NAME" "report.pdf") "<pdf1@example.com>" "Quarterly report" '
        b'"BASE64" 102) "MIXED")'
    )


def test_offsets_of_nested_sample() -> None:
    raw = load("nested")
    tree = parse(raw)
    assert tree.type == "multipart" and len(tree.children) == 2
    text, msg = tree.children
    assert raw[text.header_start : text.header_end] == b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    assert raw[text.body_start : text.body_end] == b"Forwarding."
    assert msg.message is not None
    inner = msg.message
    assert raw[inner.header_start :].startswith(b"From: grace@example.com\r\n")
    assert raw[: inner.body_end].endswith(b"--inner--\r\n")
    assert [c.type + "/" + c.subtype for c in inner.children] == ["text/plain", "image/png"]
    assert raw[inner.children[1].body_start : inner.children[1].body_end] == b"iVBORw0KGgo="


def test_bare_lf_offsets() -> None:
    raw = load("barelf")
    tree = parse(raw)
    assert raw[tree.body_start : tree.body_end] == b"One \xe9t\xe9\nTwo\n"
    assert raw[tree.header_end - 2 : tree.header_end] == b"\n\n"


def test_preamble_epilogue_excluded() -> None:
    raw = load("alternative")
    tree = parse(raw)
    first, second = tree.children
    assert raw[first.body_start : first.body_end] == b"Caf=C3=A9 at 10."
    assert raw[second.body_start : second.body_end] == b"<p>Cafe at 10.</p>"


def test_missing_close_delimiter_runs_to_end() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n\r\none\r\n--zz\r\n\r\ntwo\r\n"
    tree = parse(raw)
    assert [raw[c.body_start : c.body_end] for c in tree.children] == [b"one", b"two\r\n"]


def test_boundary_prefix_and_transport_padding() -> None:
    raw = (b"Content-Type: multipart/mixed; boundary=ab\r\n\r\n--ab  \r\n\r\nx\r\n--abc\r\n"
           b"still x\r\n--ab--\t\r\n")
    tree = parse(raw)
    assert len(tree.children) == 1
    c = tree.children[0]
    assert raw[c.body_start : c.body_end] == b"x\r\n--abc\r\nstill x"


def test_broken_content_type_defaults_to_text_plain() -> None:
    for ct in (b"garbage", b"text", b"/plain", b"multipart/mixed", b";;;"):
        raw = b"Content-Type: " + ct + b"\r\n\r\nhello\r\n"
        tree = parse(raw)
        assert (tree.type, tree.subtype) == ("text", "plain"), ct
        assert analyze(raw).bodystructure.startswith(b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII")')


def test_digest_default_is_message_rfc822() -> None:
    raw = (b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: one\r\n\r\nbody1\r\n"
           b"--d--\r\n")
    tree = parse(raw)
    (child,) = tree.children
    assert (child.type, child.subtype) == ("message", "rfc822")
    assert child.message is not None
    info = analyze(raw)
    imapcheck.check_body(imapcheck.parse(info.bodystructure), ext=True)


def test_message_global_and_params_quoting() -> None:
    raw = (b'Content-Type: multipart/mixed; boundary="a b"\r\n\r\n--a b\r\n'
           b'Content-Type: message/global\r\n\r\nSubject: x\r\n\r\ny\r\n--a b\r\n'
           b'Content-Type: application/x-thing; name="we\\"ird \\\\ name"\r\n\r\nz\r\n--a b--\r\n')
    info = analyze(raw)
    bs = info.bodystructure
    assert b'("MESSAGE" "GLOBAL" NIL NIL NIL "7BIT" 15 (' in bs
    assert b'("NAME" "we\\"ird \\\\ name")' in bs
    imapcheck.check_body(imapcheck.parse(bs), ext=True)


def test_empty_message() -> None:
    info = analyze(b"")
    assert info.envelope == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
    assert info.bodystructure == b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)'
    assert info.size == 0


def _depth(part: Part) -> int:
    d, stack = 0, [(part, 0)]
    while stack:
        p, k = stack.pop()
        d = max(d, k)
        stack.extend((c, k + 1) for c in p.children)
        if p.message is not None:
            stack.append((p.message, k + 1))
    return d


@pytest.mark.parametrize("kind", ["multipart", "rfc822", "same-boundary"])
def test_hostile_nesting_is_capped(kind: str) -> None:
    n = 10_000
    if kind == "multipart":
        raw = b"".join(
            b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(n)
        ) + b"leaf\r\n"
    elif kind == "rfc822":
        raw = b"Content-Type: message/rfc822\r\n\r\n" * n + b"Subject: deep\r\n\r\nbody\r\n"
    else:
        raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n" * n
    t = time.process_time()  # CPU time: the bound is about the work, not the machine's load
    info = analyze(raw)
    elapsed = time.process_time() - t
    assert elapsed < 2.0  # about 0.05-0.1 s; same-boundary about 0.5 s
    assert _depth(info.tree) <= MAX_DEPTH + 1
    imapcheck.check_body(imapcheck.parse(info.bodystructure), ext=True)
    again = Part.from_json(info.tree.to_json())
    assert again == info.tree


def test_many_parts_capped() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\n\r\nx\r\n" * 50_000
    tree = parse(raw)
    assert sum(1 for _ in tree.walk()) <= 10_001
    last = tree.children[-1]
    assert last.body_end == len(raw)


def test_typical_message_is_fast() -> None:
    raw = load("attachment") + b""
    big = raw.replace(b"See attached.", b"See attached. " * 2000)
    analyze(big)
    t = time.perf_counter()
    for _ in range(200):
        analyze(big)
    per = (time.perf_counter() - t) / 200
    assert per < 0.005, per  # well under a millisecond on a normal machine


# ------------------------------------------------ cross-check with the stdlib `email` ----

@pytest.mark.parametrize("name", ["plain", "alternative", "attachment", "nested", "encoded"])
def test_leaf_content_matches_stdlib_email(name: str) -> None:
    raw = load(name)
    tree = parse(raw)
    ours: list[bytes] = []

    def leaves(part: Part, prefix: list[int]) -> None:
        stack = [(part, prefix)]
        while stack:
            p, num = stack.pop(0)
            if p.is_multipart:
                for i, c in enumerate(p.children, 1):
                    stack.append((c, num + [i]))
            elif p.message is not None:
                m = p.message
                if m.is_multipart:
                    for i, c in enumerate(m.children, 1):
                        stack.append((c, num + [i]))
                else:
                    ours.append(binary_bytes(raw, tree, num + [1]) or b"")
            else:
                ours.append(binary_bytes(raw, tree, num or [1]) or b"")

    leaves(tree, [])
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    theirs = [
        p.get_payload(decode=True) for p in msg.walk()
        if not p.is_multipart()
    ]
    assert ours == theirs
