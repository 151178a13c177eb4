"""NOTIFY (RFC 5465): which changes a session hears about without asking, and the untagged
responses that tell it.

``NOTIFY SET`` gives the session a `Notifier`: a bounded subscription to every event of the
account on the event bus (from this worker process and the others: services/events.py) and the
event groups that say what to report for which mailbox. The changes are told

* between commands, as they happen (the server reads the client's next command and the news
  at the same time: ``ImapHandler``), and in IDLE (section 4);
* at the start and at the end of each command, before its tagged response.

What is told (section 5):

* the selected mailbox: its SELECTED or SELECTED-DELAYED group only (section 6.1; the other
  groups never cover it for message events). Its updates are what every command already
  reports (EXISTS, FETCH FLAGS, EXPUNGE/VANISHED: `SelectedMailbox.sync`); NOTIFY makes them
  come between commands too, and MessageNew's FETCH attributes follow each new message's EXISTS.
  SELECTED tells expunges at once (the client then uses UIDs only, section 5.3);
  SELECTED-DELAYED keeps them for a command that may report them (RFC 9051 section 7.5.1).
  Without a SELECTED group the selected mailbox is reported as in plain IMAP, at commands;
* other mailboxes: MessageNew / MessageExpunge / FlagChange give ``* STATUS name (MESSAGES
  UIDNEXT UIDVALIDITY UNSEEN [HIGHESTMODSEQ])`` (HIGHESTMODSEQ once CONDSTORE is on or where
  FlagChange is asked for; several events of one mailbox make one STATUS); MailboxName gives
  ``* LIST`` for each name created, deleted (``\\NonExistent``) or renamed (``OLDNAME``,
  section 5.4); SubscriptionChange a ``* LIST`` with or without ``\\Subscribed`` (section 5.5);
  MailboxMetadataChange and ServerMetadataChange ``* METADATA name entry...`` without values
  (section 5.6, 5.7; RFC 5464 section 4.4.2). AnnotationChange needs ANNOTATE (RFC 5257), which
  the server does not have: it is refused with ``NO [BADEVENT (...)]`` like any unknown event
  (section 3.1).

Which group applies to a mailbox: the first in the command that covers it (so ``(MAILBOXES
Lists (...)) (PERSONAL NONE)`` hears about Lists only). INBOXES are the mailboxes mail may be
delivered to; a Sieve script may file into any of them, so INBOXES is PERSONAL, as section 6.3
asks of a server that cannot tell. SUBSCRIBED follows the subscription list as it changes
(section 6.4).

A change this client made itself is not reported to it (section 5: SHOULD): changes of the
selected mailbox carry their session (`SelectedMailbox.sync`), and for the rest the names a
command worked on (``own_names``: APPEND's mailbox, CREATE's name...) are left out of the news
taken at the end of that command.

Falling behind (section 5.8): the subscription holds at most ``QUEUE_LIMIT`` events (a client
that does not read its socket stops the server from writing, and the news piles up). Past that,
the session is told ``* OK [NOTIFICATIONOVERFLOW]`` and behaves as after NOTIFY NONE; the
selected mailbox keeps its own bounded queue and resynchronises from its index as before. The
same happens when the bus's transport lost events (it reconnected: ``EventBus.lost_events``),
told at the session's next command or next event.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from typing import TYPE_CHECKING, Any

from ...protocols.imap import commands as c
from ...protocols.imap import responses as r
from ...protocols.imap.grammar.fetch_att import FetchAtt
from ...protocols.imap.grammar.sequence_set import SequenceSet
from ...protocols.imap.grammar.utf7 import InvalidMailboxName
from ...protocols.imap.responses import Code
from ...store import (
    FlagsChanged, InvalidName, Mailbox, MailboxesChanged, MessagesAdded, MessagesExpunged, MetadataChanged,
    SubscriptionChanged,
)
from .mailboxes import SEPARATOR, mailbox_name, status_line, wire_name

if TYPE_CHECKING:
    from .selected import SelectedMailbox
    from .session import Session

__all__ = ["Notifier", "do_notify", "news", "own_names", "SUPPORTED_EVENTS", "QUEUE_LIMIT"]

log = logging.getLogger(__name__)

#: What BADEVENT lists (section 3.1: every event the server supports).
SUPPORTED_EVENTS = ("MessageNew", "MessageExpunge", "FlagChange", "MailboxName", "SubscriptionChange",
                    "MailboxMetadataChange", "ServerMetadataChange")
MESSAGE_EVENTS = frozenset({"MessageNew", "MessageExpunge", "FlagChange"})
#: Events queued for one session before it is told NOTIFICATIONOVERFLOW (section 5.8).
QUEUE_LIMIT = 1000
_STATUS_ITEMS = ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN")
_EVENT_OF = {MessagesAdded: "MessageNew", MessagesExpunged: "MessageExpunge", FlagsChanged: "FlagChange"}


class Group:
    """One event group for mailboxes other than the selected one (section 6.2-6.6)."""

    __slots__ = ("kind", "names", "events")

    def __init__(self, kind: str, names: frozenset[str], events: frozenset[str]) -> None:
        self.kind = kind
        self.names = names
        self.events = events

    def covers(self, name: str, subscribed: set[str]) -> bool:
        if self.kind in ("PERSONAL", "INBOXES"):
            return True
        if self.kind == "SUBSCRIBED":
            return name in subscribed
        if self.kind == "MAILBOXES":  # no wildcard expansion (section 6.6)
            return name in self.names
        return any(name == n or name.startswith(n + SEPARATOR) for n in self.names)  # SUBTREE


class Notifier:
    """One session's NOTIFY settings and its subscription to the account's events."""

    __slots__ = ("sub", "selected_events", "delayed", "fetch_atts", "groups", "subscribed", "held")

    def __init__(self, sub: Any, selected: c.NotifyGroup | None, groups: list[Group], subscribed: set[str]) -> None:
        self.sub = sub
        self.selected_events = frozenset(selected.events or ()) if selected else frozenset()
        self.delayed = selected is not None and selected.filter == "SELECTED-DELAYED"
        self.fetch_atts: tuple[FetchAtt, ...] = selected.fetch_atts if selected else ()
        self.groups = groups
        self.subscribed = subscribed
        self.held: list[Any] = []  # events taken off the queue while waiting

    @property
    def watches_selected(self) -> bool:
        """Changes of the selected mailbox are pushed between commands (a SELECTED group)."""
        return bool(self.selected_events)

    def events_for(self, name: str) -> frozenset[str]:
        """The events asked for about mailbox ``name``: the first group covering it."""
        for group in self.groups:
            if group.covers(name, self.subscribed):
                return group.events
        return frozenset()

    async def wait(self) -> None:
        """Wait until an event arrives (it is kept for `take`), or return at once when events
        were lost (an overflow, or the bus's transport reconnected: `EventBus.lost_events`)."""
        if not self.sub.overflowed:
            self.held.append(await self.sub.queue.get())

    def take(self) -> list[Any]:
        events = self.held + self.sub.pending()
        self.held = []
        return events

    def close(self) -> None:
        self.sub.close()


# == the command ===================================================================================

async def do_notify(s: Session, tag: bytes, cmd: c.Notify) -> bytes:
    """NOTIFY SET / NONE (section 3.1). The tagged OK follows the selected mailbox's pending
    updates (the implicit NOOP: `Session.handle` syncs after every command)."""
    if cmd.groups is None:
        stop(s)
        return r.ok(tag, "NOTIFY completed")
    unsupported = sorted({e for g in cmd.groups for e in g.events or () if e not in SUPPORTED_EVENTS})
    if unsupported:  # a NO, not a BAD, naming every supported event (section 3.1)
        return r.no(tag, "Unsupported event " + " ".join(unsupported), Code.badevent(SUPPORTED_EVENTS))
    notifier = await _notifier(s, cmd)
    stop(s)
    s.notifier = notifier
    if cmd.status:
        for line in await _initial_status(s, notifier):
            s.send(line)
    return r.ok(tag, "NOTIFY completed")


def stop(s: Session) -> None:
    """NOTIFY NONE: no more notifications (what plain IMAP reports stays)."""
    if s.notifier is not None:
        s.notifier.close()
        s.notifier = None


async def _notifier(s: Session, cmd: c.Notify) -> Notifier:
    assert s.account is not None and cmd.groups is not None
    # subscribed before the subscription list is read: no change falls between the two
    sub = s.app.bus.subscribe(account_id=s.account.id, limit=QUEUE_LIMIT)
    try:
        selected = next((g for g in cmd.groups if g.filter in ("SELECTED", "SELECTED-DELAYED")), None)
        groups = [Group(g.filter, frozenset(_names(s, g.mailboxes)), frozenset(g.events or ()))
                  for g in cmd.groups if g is not selected]
        subscribed: set[str] = set()
        if any(g.kind == "SUBSCRIBED" for g in groups):
            subscribed = set(await s.app.store.list_subscriptions(s.account.id))
    except BaseException:
        sub.close()
        raise
    return Notifier(sub, selected, groups, subscribed)


def _names(s: Session, raws: tuple[bytes, ...]) -> list[str]:
    """The mailbox names of SUBTREE / MAILBOXES; invalid ones are ignored (a name that no
    mailbox has matches nothing until one is created)."""
    names = []
    for raw in raws:
        try:
            names.append(mailbox_name(s, raw))
        except (InvalidName, InvalidMailboxName):
            continue
    return names


async def _initial_status(s: Session, notifier: Notifier) -> list[bytes]:
    """NOTIFY SET STATUS: a STATUS for every mailbox, other than the selected one, that now
    has message events (section 3.1)."""
    assert s.account is not None
    selected_id = s.selected.mailbox_id if s.selected is not None else None
    return [await status_line(s, box, _status_items(s, events))
            for box in await s.server.mailboxes.list(s.account.id)
            if box.id != selected_id and (events := notifier.events_for(box.name)) & MESSAGE_EVENTS]


def _status_items(s: Session, events: frozenset[str]) -> tuple[str, ...]:
    # section 5.2-5.3: HIGHESTMODSEQ too once CONDSTORE (or QRESYNC) is enabled, and where
    # FlagChange is asked for: a flag change elsewhere shows in nothing else (as Dovecot)
    if s.condstore or "FlagChange" in events:
        return _STATUS_ITEMS + ("HIGHESTMODSEQ",)
    return _STATUS_ITEMS


# == telling ======================================================================================

def own_names(s: Session, command: Any) -> frozenset[str]:
    """The mailboxes a command of this session changes (its own changes are not news to it)."""
    if isinstance(command, c.Rename):
        raws: tuple[bytes, ...] = (command.mailbox, command.new_name)
    elif isinstance(command, (c.Create, c.Delete, c.Subscribe, c.Unsubscribe, c.Append, c.Copy, c.Move)):
        raws = (command.mailbox,)
    elif isinstance(command, c.SetMetadata):
        if command.mailbox == b"":
            return frozenset({""})
        raws = (command.mailbox,)
    else:
        return frozenset()
    return frozenset(_names(s, raws))


def _is_own(name: str, own: frozenset[str]) -> bool:
    # a command's own name, the children that follow it (RENAME, DELETE) or the parents it
    # makes (CREATE)
    return any(name == o or name.startswith(o + SEPARATOR) or o.startswith(name + SEPARATOR) for o in own)


async def news(s: Session, own: frozenset[str] = frozenset()) -> list[bytes]:
    """The untagged responses for the events queued since the last call (empty without NOTIFY)."""
    notifier = s.notifier
    if notifier is None:
        return []
    if notifier.sub.take_overflow():
        stop(s)
        log.info("IMAP NOTIFY of %s fell behind; notifications are off", s.account.address if s.account else "-")
        return [r.untagged_ok("Too many notifications; NOTIFY is now off, as after NOTIFY NONE",
                              Code.NOTIFICATIONOVERFLOW)]
    events = notifier.take()
    if not events:
        return []
    assert s.account is not None
    boxes = {b.id: b for b in await s.server.mailboxes.list(s.account.id)}
    selected_id = s.selected.mailbox_id if s.selected is not None else None
    lines: list[bytes] = []
    changed: dict[int, Mailbox] = {}  # mailboxes to send a STATUS for, in order
    for event in events:
        kind = _EVENT_OF.get(type(event))
        if kind is not None:
            box = boxes.get(event.mailbox_id)
            if (box is None or box.id == selected_id or _is_own(box.name, own)
                    or (kind == "FlagChange" and event.origin is s)):
                continue
            if kind in notifier.events_for(box.name):
                changed[box.id] = box
        elif isinstance(event, MailboxesChanged):
            lines.extend(_mailbox_name_lines(s, notifier, event, own))
        elif isinstance(event, SubscriptionChanged):
            lines.extend(_subscription_lines(s, notifier, event, own, boxes))
        elif isinstance(event, MetadataChanged):
            lines.extend(_metadata_lines(s, notifier, event, own))
    for box in changed.values():
        lines.append(await status_line(s, box, _status_items(s, notifier.events_for(box.name))))
    return lines


def _mailbox_name_lines(s: Session, notifier: Notifier, event: MailboxesChanged,
                        own: frozenset[str]) -> list[bytes]:
    """Section 5.4: a LIST for each name created, renamed (OLDNAME) or deleted (\\NonExistent)."""
    def wanted(name: str) -> bool:
        return not _is_own(name, own) and "MailboxName" in notifier.events_for(name)

    lines = []
    for name in event.created:
        if wanted(name):
            lines.append(r.list_response([], SEPARATOR, wire_name(s, name)))
    for old, new in event.renamed:
        if notifier.subscribed and old in notifier.subscribed:  # subscriptions follow RENAME
            notifier.subscribed.discard(old)
            notifier.subscribed.add(new)
        if wanted(new) or wanted(old):
            oldname = b"(" + r.mailbox(wire_name(s, old)) + b")"
            lines.append(r.list_response([], SEPARATOR, wire_name(s, new), extended={"OLDNAME": oldname}))
    for name in event.deleted:
        if wanted(name):
            lines.append(r.list_response(["\\NonExistent"], SEPARATOR, wire_name(s, name)))
    return lines


def _subscription_lines(s: Session, notifier: Notifier, event: SubscriptionChanged, own: frozenset[str],
                        boxes: dict[int, Mailbox]) -> list[bytes]:
    """Section 5.5: a LIST with \\Subscribed if and only if the name is subscribed now."""
    if event.subscribed:
        notifier.subscribed.add(event.name)  # SUBSCRIBED follows the list (section 6.4)
    else:
        notifier.subscribed.discard(event.name)
    if _is_own(event.name, own) or "SubscriptionChange" not in notifier.events_for(event.name):
        return []
    attrs = ["\\Subscribed"] if event.subscribed else []
    if not any(b.name == event.name for b in boxes.values()):
        attrs.append("\\NonExistent")
    return [r.list_response(attrs, SEPARATOR, wire_name(s, event.name))]


def _metadata_lines(s: Session, notifier: Notifier, event: MetadataChanged, own: frozenset[str]) -> list[bytes]:
    """Sections 5.6, 5.7: ``* METADATA mailbox entry...`` naming the changed entries (the
    client asks GETMETADATA for the values; RFC 5464 section 4.4.2)."""
    if event.mailbox == "":
        if own == {""} or not any("ServerMetadataChange" in g.events for g in notifier.groups):
            return []
        shown = b'""'
    else:
        if _is_own(event.mailbox, own) or "MailboxMetadataChange" not in notifier.events_for(event.mailbox):
            return []
        shown = r.mailbox(wire_name(s, event.mailbox))
    return [r.untagged(b"METADATA " + shown + b" " + b" ".join(r.astring(e) for e in event.entries))]


# == the selected mailbox ==========================================================================

async def fetch_new(s: Session, view: SelectedMailbox, last_uid: int) -> None:
    """MessageNew's FETCH attributes for the messages above ``last_uid`` that the last sync
    announced (section 5.2: EXISTS, then FETCH)."""
    from .messages import do_fetch

    notifier = s.notifier
    if notifier is None or not notifier.fetch_atts or s.selected is not view:
        return
    new = view.uids[bisect_right(view.uids, last_uid):]
    if new:
        await do_fetch(s, b"*", c.Fetch(SequenceSet.from_ints(new), notifier.fetch_atts, uid=True))

