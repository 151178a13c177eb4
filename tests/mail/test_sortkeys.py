"""RFC 5256 section 2.1 base subject extraction and the other SORT/THREAD keys (mail.sortkeys)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postoffice.mail.sortkeys import base_subject, casemap, load_stored, sort_keys


@pytest.mark.parametrize(("subject", "base", "reply"), [
    # (1) encoded-words decoded, tabs/continuations and runs of spaces become one space
    ("=?utf-8?q?caf=C3=A9?=  au\tlait", "café au lait", False),
    ("=?iso-8859-1?q?Re=3A_Gr=FC=DFe?=", "Grüße", True),   # the "Re:" was inside the encoded-word
    ("=?utf-8?b?W0ZXRDogaGVsbG9d?=", "hello", True),        # "[FWD: hello]" in base64
    ("Hello\r\n World", "Hello World", False),
    # (2) trailing "(fwd)" and whitespace, repeatedly
    ("Report (fwd) (FWD)  ", "Report", True),
    ("Report(fwd)", "Report", True),
    # (3) subj-leader: WSP, or *subj-blob subj-refwd ("re" / "fw" / "fwd", *WSP, [blob], ":")
    ("Re: Re: RE: re: hi", "hi", True),
    ("Fw: hi", "hi", True),
    ("FWD: hi", "hi", True),
    ("Re[2]: hi", "hi", True),
    ("Re [list]: hi", "hi", True),
    ("Re : hi", "hi", True),
    ("[list] Re: hi", "hi", True),
    ("[a] [b] Re: hi", "hi", True),
    ("Ref: hi", "Ref: hi", False),      # "ref" is not "re"
    ("Fwdx: hi", "Fwdx: hi", False),
    # (4) a leading subj-blob goes only if a non-empty subj-base remains
    ("[PATCH] hi", "hi", False),
    ("[PATCH] [v2] hi", "hi", False),
    ("[only a blob]", "[only a blob]", False),
    ("[a] [b]", "[b]", False),
    ("[blob]   ", "[blob]", False),
    # (5) (3) and (4) alternate until neither applies
    ("[list] hi: Re: x", "hi: Re: x", False),
    ("[list] Re: [list] Re: x", "x", True),
    # (6) "[fwd:" ... "]" is unwrapped, then everything again from (2)
    ("[Fwd: Re: hello (fwd)]", "hello", True),
    ("[fwd: [fwd: x]]", "x", True),
    ("[Fwd: x] tail", "tail", False),     # not a wrapper: "[Fwd: x]" is a subj-blob (step 4)
    # nothing left
    ("", "", False),
    ("Re:", "", True),
    ("   ", "", False),
])
def test_base_subject(subject: str, base: str, reply: bool) -> None:
    assert base_subject(subject) == (base, reply)


def test_base_subject_ignores_non_ascii_lookalikes() -> None:
    # re.IGNORECASE without ASCII would let U+0280 / U+212A style folds match; only ASCII does
    assert base_subject("ʀe: x") == ("ʀe: x", False)


@given(st.text(alphabet="Re:Fwd[]() \tab", max_size=40))
def test_base_subject_is_idempotent_and_trimmed(subject: str) -> None:
    base, _ = base_subject(subject)
    assert base_subject(base, decoded=True)[0] == base
    assert base == base.strip(" \t")


def test_casemap_is_ascii_only() -> None:
    assert casemap("abcXYZ éß") == "ABCXYZ éß"


def test_sort_keys_of_a_message() -> None:
    raw = (b"From: =?utf-8?q?J=C3=B6rg?= <joerg@example.org>, other@example.org\r\n"
           b"To: undisclosed: ;, \"\" <to@example.net>\r\n"
           b"Cc: cc1@example.com\r\n"
           b"Subject: Re: [list] Hello\r\n"
           b"Message-ID: <\"quoted id\"@example.org>\r\n"
           b"In-Reply-To: <ignored@x>\r\n"
           b"References: <a@x>\r\n <b@x> junk <>\r\n"
           b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\nbody\r\n")
    k = sort_keys(raw)
    assert k.subject == "Hello" and k.reply
    assert (k.from_mailbox, k.from_display) == ("joerg", "Jörg")
    # group markers are skipped; an empty display name falls back to the address (RFC 5957)
    assert (k.to_mailbox, k.to_display) == ("to", "to@example.net")
    assert k.cc_mailbox == "cc1"
    assert k.message_id == "quotedid@example.org"
    assert k.references == ("a@x", "b@x")
    assert k.sent == 760686745.0  # 1994-02-08 05:52:25 UTC
    # what is stored is what SORT compares: case-mapped strings (i;ascii-casemap)
    assert load_stored(k.to_json()) == ["HELLO", 1, "JOERG", "JöRG", "TO", "TO@EXAMPLE.NET", "CC1",
                                        "quotedid@example.org", ["a@x", "b@x"], 760686745.0]


def test_sort_keys_fallbacks() -> None:
    k = sort_keys(b"In-Reply-To: junk <first@x> <second@x>\r\nDate: garbage\r\n\r\n")
    assert k.references == ("first@x",)  # no References: the first In-Reply-To id only
    assert k.sent is None and k.message_id == "" and k.subject == "" and not k.reply
    assert (k.from_mailbox, k.from_display, k.cc_mailbox) == ("", "", "")
    assert sort_keys(b"") == k.__class__("", False, "", "", "", "", "", "", (), None)
    assert load_stored(None) is None and load_stored("garbage") is None
    assert load_stored('[999, "x"]') is None  # another version: recompute
