"""The Sieve interpreter without sockets: script + message facts -> actions."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from postoffice.sieve import (
    Discard,
    FileInto,
    Keep,
    MessageFacts,
    Redirect,
    Reject,
    SieveRuntimeError,
    SieveSyntaxError,
    Vacation,
    evaluate,
    parse,
)

MESSAGE = (
    b"From: Bob Example <bob+lists@example.net>\r\n"
    b"To: alice@example.com, carol@example.com\r\n"
    b"Cc: dave@example.org\r\n"
    b"Subject: =?utf-8?q?Caf=C3=A9_meeting?= [urgent]\r\n"
    b"Date: Tue, 01 Dec 2026 09:30:00 -0500\r\n"
    b"Message-ID: <m1@example.net>\r\n"
    b"X-Spam-Score: 7\r\n"
    b"X-Spam-Score: 2\r\n"
    b"Content-Type: multipart/mixed; boundary=b\r\n"
    b"\r\n"
    b"--b\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Please bring the r=C3=A9sum=C3=A9.\r\n"
    b"--b\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"\r\n"
    b"secret-binary-word\r\n"
    b"--b--\r\n"
)
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)


def facts(raw: bytes = MESSAGE, *, sender: str = "bob+lists@example.net",
          rcpt: str = "alice+work@example.com") -> MessageFacts:
    return MessageFacts.from_bytes(raw, envelope_from=sender, envelope_to=rcpt,
                                   user_addresses=("alice@example.com",), now=NOW)


def run(script: str, raw: bytes = MESSAGE, **kw: str) -> list[object]:
    return evaluate(parse(script), facts(raw, **kw)).actions


def test_no_script_actions_is_implicit_keep() -> None:
    assert run("# nothing\n") == [Keep()]


def test_fileinto_cancels_implicit_keep_and_copy_does_not() -> None:
    assert run('require "fileinto"; fileinto "Work";') == [FileInto("Work")]
    assert run('require ["fileinto", "copy"]; fileinto :copy "Work";') == [FileInto("Work", copy=True), Keep()]


def test_header_contains_decodes_rfc2047_and_casemap() -> None:
    script = 'require "fileinto"; if header :contains "subject" "CAFÉ" { fileinto "x"; } ' \
             'elsif header :contains "subject" "café" { fileinto "y"; }'
    # i;ascii-casemap folds ASCII letters only (RFC 4790 §9.2): "CAFÉ" is not "Café", "café" is
    assert run(script) == [FileInto("y")]
    assert run('require "fileinto"; if header :contains "Subject" "MEETING" { fileinto "m"; }') == [FileInto("m")]
    assert run('require "fileinto"; if header :contains :comparator "i;octet" "Subject" "MEETING" '
               '{ fileinto "m"; }') == [Keep()]


def test_address_parts_and_subaddress() -> None:
    base = 'require ["fileinto", "subaddress"]; if address {part} :is "from" "{key}" {{ fileinto "hit"; }}'
    assert run(base.format(part=":domain", key="EXAMPLE.NET")) == [FileInto("hit")]
    assert run(base.format(part=":localpart", key="bob+lists")) == [FileInto("hit")]
    assert run(base.format(part=":user", key="bob")) == [FileInto("hit")]
    assert run(base.format(part=":detail", key="lists")) == [FileInto("hit")]
    assert run(base.format(part=":all", key="bob@example.net")) == [Keep()]
    with pytest.raises(SieveSyntaxError):
        parse('if address :user "from" "bob" { discard; }')  # subaddress not required


def test_envelope() -> None:
    script = 'require ["envelope", "subaddress", "fileinto"]; if envelope :detail "to" "work" { fileinto "Work"; }'
    assert run(script) == [FileInto("Work")]
    assert run(script, rcpt="alice@example.com") == [Keep()]
    null = 'require "envelope"; if envelope :is "from" "" { discard; }'
    assert run(null, sender="") == [Discard()]
    assert run(null) == [Keep()]


def test_matches_and_variables() -> None:
    script = ('require ["variables", "fileinto"];\n'
              'if header :matches "subject" "* [*]" { set :upperfirst "tag" "${2}"; fileinto "Tags/${tag}"; }')
    assert run(script) == [FileInto("Tags/Urgent")]
    script = 'require ["variables", "fileinto"]; set :length "n" "hello"; fileinto "n${n}";'
    assert run(script) == [FileInto("n5")]
    script = 'require ["variables", "fileinto"]; set "a" "x"; if string :is "${a}" "x" { fileinto "ok"; }'
    assert run(script) == [FileInto("ok")]


def test_relational_count_and_value() -> None:
    script = ('require ["relational", "comparator-i;ascii-numeric", "fileinto"];\n'
              'if header :value "ge" :comparator "i;ascii-numeric" "x-spam-score" "5" { fileinto "Junk"; }')
    assert run(script) == [FileInto("Junk")]
    script = ('require ["relational", "comparator-i;ascii-numeric"];\n'
              'if address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] "3" { discard; }')
    assert run(script) == [Discard()]
    script = script.replace('"3"', '"4"')
    assert run(script) == [Keep()]


def test_index_picks_one_occurrence() -> None:
    script = ('require ["index", "relational", "comparator-i;ascii-numeric"];\n'
              'if header :index 1 :last :value "lt" :comparator "i;ascii-numeric" "x-spam-score" "5" { discard; }')
    assert run(script) == [Discard()]
    assert run(script.replace(":last ", "")) == [Keep()]


def test_regex() -> None:
    script = 'require ["regex", "variables", "fileinto"]; if header :regex "from" "<([a-z]+)\\\\+" { fileinto "${1}"; }'
    assert run(script) == [FileInto("bob")]
    with pytest.raises(SieveRuntimeError):
        run('require "regex"; if header :regex "subject" "(" { discard; }')


def test_body_text_content_raw() -> None:
    assert run('require "body"; if body :text :contains "résumé" { discard; }') == [Discard()]
    # :text looks at text parts only: the binary part's word is not seen
    assert run('require "body"; if body :text :contains "secret-binary" { discard; }') == [Keep()]
    assert run('require "body"; if body :content "application" :contains "secret-binary" { discard; }') == [Discard()]
    assert run('require "body"; if body :raw :contains "r=C3=A9sum" { discard; }') == [Discard()]


def test_date_and_currentdate() -> None:
    script = 'require "date"; if date :originalzone :is "date" "hour" "09" { discard; }'
    assert run(script) == [Discard()]
    script = 'require "date"; if date :zone "+0000" :is "date" "hour" "14" { discard; }'
    assert run(script) == [Discard()]
    script = ('require ["date", "relational"]; '
              'if currentdate :value "ge" "date" "2026-12-01" { discard; }')
    assert run(script) == [Discard()]
    assert run(script.replace("2026-12-01", "2027-01-01")) == [Keep()]


def test_imap4flags() -> None:
    script = ('require ["imap4flags", "fileinto"]; addflag "\\\\Seen"; addflag ["$Work", "\\\\Flagged"];'
              'removeflag "\\\\Flagged"; if hasflag :contains "$work" { fileinto "W"; }')
    assert run(script) == [FileInto("W", ("\\Seen", "$Work"))]
    script = 'require "imap4flags"; keep :flags "\\\\Answered";'
    assert run(script) == [Keep(("\\Answered",))]


def test_reject_ereject_and_conflicts() -> None:
    assert run('require "reject"; reject "go away";') == [Reject("go away")]
    assert run('require "ereject"; ereject "no";') == [Reject("no", extended=True)]
    with pytest.raises(SieveRuntimeError):
        run('require ["reject", "fileinto"]; fileinto "x"; reject "no";')


def test_redirect_and_stop() -> None:
    assert run('redirect "x@example.org"; stop; discard;') == [Redirect("x@example.org")]
    assert run('require "copy"; redirect :copy "x@example.org";') == [Redirect("x@example.org", copy=True), Keep()]
    with pytest.raises(SieveRuntimeError):
        run("".join(f'redirect "u{i}@example.org";' for i in range(5)))


def test_vacation_reply_facts() -> None:
    script = 'require "vacation"; vacation :days 3 :addresses ["carol@example.com"] "Away.";'
    actions = run(script)
    vac = [a for a in actions if isinstance(a, Vacation)]
    assert len(vac) == 1 and vac[0].recipient == "bob+lists@example.net" and vac[0].days == 3
    assert vac[0].subject.startswith("Auto: Café meeting")
    assert vac[0].in_reply_to == "<m1@example.net>"
    assert Keep() in actions


@pytest.mark.parametrize("header", [b"Precedence: list\r\n", b"Precedence: bulk\r\n",
                                    b"Auto-Submitted: auto-replied\r\n", b"List-Id: <l.example.net>\r\n"])
def test_vacation_never_to_lists_bulk_or_automatic(header: bytes) -> None:
    script = 'require "vacation"; vacation "Away.";'
    assert not [a for a in run(script, header + MESSAGE) if isinstance(a, Vacation)]


def test_vacation_not_to_null_sender_or_when_not_addressed() -> None:
    script = 'require "vacation"; vacation "Away.";'
    assert not [a for a in run(script, sender="") if isinstance(a, Vacation)]
    bcc_only = MESSAGE.replace(b"alice@example.com", b"someone@example.com")
    assert not [a for a in run(script, bcc_only) if isinstance(a, Vacation)]
    # ... unless :addresses names one of the header's recipients
    script = 'require "vacation"; vacation :addresses "carol@example.com" "Away.";'
    assert [a for a in run(script, bcc_only) if isinstance(a, Vacation)]


def test_syntax_errors() -> None:
    with pytest.raises(SieveSyntaxError):
        parse('fileinto "x";')  # fileinto not required
    with pytest.raises(SieveSyntaxError):
        parse('require "enotify"; keep;')
    with pytest.raises(SieveSyntaxError):
        parse("if true {" * 50 + "keep;" + "}" * 50)
    with pytest.raises(SieveSyntaxError):
        parse("if true { keep; ")
