"""NOTIFY (RFC 5465 section 8) in the sans-IO parser: the RFC's command forms (its section 3.1
examples with the event lists parenthesised as the grammar, and the verified errata, say), the
composition rules of sections 5 and 6.1 (BAD), and unknown events kept for BADEVENT."""

from __future__ import annotations

import pytest

from postoffice.protocols.imap import CommandReceived, InvalidCommand, Notify, NotifyGroup, parse_command
from postoffice.protocols.imap.grammar.fetch_att import FetchAtt, Section


def cmd(line: bytes) -> object:
    event = parse_command(line)
    assert isinstance(event, CommandReceived), event
    return event.command


def test_notify_none_and_set() -> None:
    assert cmd(b"a NOTIFY NONE") == Notify(None)
    assert cmd(b"a notify none") == Notify(None)
    got = cmd(b"b NOTIFY SET STATUS (selected (MessageNew (uid body.peek[header.fields (from to subject)]) "
              b"MessageExpunge)) (subtree Lists (MessageNew MessageExpunge))")
    assert got == Notify((
        NotifyGroup("SELECTED", ("MessageNew", "MessageExpunge"), (), (
            FetchAtt("UID"), FetchAtt("BODY", Section(text="HEADER.FIELDS", headers=("from", "to", "subject")),
                                      peek=True))),
        NotifyGroup("SUBTREE", ("MessageNew", "MessageExpunge"), (b"Lists",)),
    ), status=True)


def test_notify_filters_and_events() -> None:
    got = cmd(b'c NOTIFY SET (selected-delayed (messagenew messageexpunge flagchange)) (inboxes NONE) '
              b'(mailboxes (INBOX "Foo Bar") (MessageNew MessageExpunge XFutureEvent)) '
              b'(personal (MailboxName SubscriptionChange MailboxMetadataChange ServerMetadataChange)) '
              b'(subscribed (MessageNew MessageExpunge))')
    assert isinstance(got, Notify) and got.status is False
    assert got.groups == (
        NotifyGroup("SELECTED-DELAYED", ("MessageNew", "MessageExpunge", "FlagChange")),
        NotifyGroup("INBOXES", None),
        NotifyGroup("MAILBOXES", ("MessageNew", "MessageExpunge", "XFutureEvent"), (b"INBOX", b"Foo Bar")),
        NotifyGroup("PERSONAL", ("MailboxName", "SubscriptionChange", "MailboxMetadataChange",
                                 "ServerMetadataChange")),
        NotifyGroup("SUBSCRIBED", ("MessageNew", "MessageExpunge")),
    )
    # an unknown event with SELECTED is the server's to refuse (BADEVENT), not the grammar's
    assert cmd(b"d NOTIFY SET (selected (MessageNew MessageExpunge XFuture))").groups[0].events[-1] == "XFuture"


@pytest.mark.parametrize("line", [
    b"a NOTIFY", b"a NOTIFY SET", b"a NOTIFY SET STATUS", b"a NOTIFY NONE ", b"a NOTIFY bogus",
    b"a NOTIFY SET ()", b"a NOTIFY SET (personal)", b"a NOTIFY SET (personal ())",
    b"a NOTIFY SET (personal MessageNew MessageExpunge)",  # events need their parentheses
    b"a NOTIFY SET (personal (MessageNew MessageExpunge) )", b"a NOTIFY SET (personal (MessageNew MessageExpunge)) ",
    b"a NOTIFY SET (bogus (MessageNew MessageExpunge))", b"a NOTIFY SET (subtree (MessageNew MessageExpunge))",
    b"a NOTIFY SET (mailboxes () (MessageNew MessageExpunge))",
    # section 5: MessageNew and MessageExpunge together; FlagChange and AnnotationChange need both
    b"a NOTIFY SET (personal (MessageNew))", b"a NOTIFY SET (personal (MessageExpunge))",
    b"a NOTIFY SET (personal (FlagChange))", b"a NOTIFY SET (personal (MessageNew MessageExpunge AnnotationChange) "
    b"(MailboxName))",
    b"a NOTIFY SET (personal (AnnotationChange MailboxName))",
    # section 6.1: message events only with SELECTED, and one SELECTED group at most
    b"a NOTIFY SET (selected (MailboxName))", b"a NOTIFY SET (selected-delayed (SubscriptionChange))",
    b"a NOTIFY SET (selected (MessageNew MessageExpunge)) (selected-delayed (MessageNew MessageExpunge))",
    b"a NOTIFY SET (selected NONE) (selected NONE)",
    b"a NOTIFY SET (selected (MessageNew () MessageExpunge))",  # an empty fetch-att list
])
def test_notify_bad(line: bytes) -> None:
    event = parse_command(line)
    assert isinstance(event, InvalidCommand), event
