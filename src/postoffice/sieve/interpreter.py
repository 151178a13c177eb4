"""Running a parsed Sieve script against one message: a pure function to a list of actions.

:func:`evaluate` never does I/O: the caller (services/sieve.py) stores, queues and replies.
A runtime error (a bad regular expression, too many actions, incompatible actions) raises
:class:`SieveRuntimeError`; RFC 5228 §2.10.6 then asks for the implicit keep, which the
caller does (and tells the owner why).

Limits keep a script's work bounded: actions, redirects, variable sizes, regular-expression
pattern and subject sizes (Python's ``re`` has no time limit, so the text it runs on is cut
short), and the body bytes scanned (message.MAX_BODY_BYTES).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from .grammar import Node, Script
from .message import MessageFacts

MAX_ACTIONS = 64
MAX_REDIRECTS = 4
MAX_VARIABLE_LENGTH = 4096
MAX_VARIABLES = 128
MAX_REGEX_PATTERN = 1024
MAX_REGEX_SUBJECT = 64 * 1024
MAX_STEPS = 100_000
VACATION_MIN_DAYS = 1
VACATION_MAX_DAYS = 90
VACATION_DEFAULT_DAYS = 7


class SieveRuntimeError(Exception):
    """The script failed while running (the message falls back to INBOX)."""


# -- actions ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Keep:
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileInto:
    mailbox: str
    flags: tuple[str, ...] = ()
    copy: bool = False


@dataclass(frozen=True)
class Redirect:
    address: str
    copy: bool = False


@dataclass(frozen=True)
class Discard:
    pass


@dataclass(frozen=True)
class Reject:
    reason: str
    extended: bool = False  # ereject (RFC 5429 §2.1)


@dataclass(frozen=True)
class Vacation:
    """An auto-reply to ``recipient`` unless one went to it under ``handle`` in the last
    ``days`` (the caller keeps that record, RFC 5230 §4.2)."""

    recipient: str
    handle: str
    days: int
    subject: str
    from_address: str | None
    reason: str
    mime: bool
    in_reply_to: str | None
    references: str | None


@dataclass
class Outcome:
    actions: list[Any] = field(default_factory=list)

    @property
    def deliveries(self) -> list[Keep | FileInto]:
        return [a for a in self.actions if isinstance(a, (Keep, FileInto))]


# -- comparators and matching -------------------------------------------------------------------

_RELATIONS = {"gt": lambda c: c > 0, "ge": lambda c: c >= 0, "lt": lambda c: c < 0,
              "le": lambda c: c <= 0, "eq": lambda c: c == 0, "ne": lambda c: c != 0}
_DIGITS = re.compile(r"[0-9]*")


def _numeric(value: str) -> float:
    """RFC 4790 §9.1.1 i;ascii-numeric: the leading digits; none at all is positive infinity."""
    digits = _DIGITS.match(value).group(0)  # type: ignore[union-attr]
    return int(digits) if digits else float("inf")


def _compare(a: str, b: str, comparator: str) -> int:
    if comparator == "i;ascii-numeric":
        x, y = _numeric(a), _numeric(b)
    elif comparator == "i;ascii-casemap":
        x, y = _fold(a), _fold(b)
    else:
        x, y = a, b
    return (x > y) - (x < y)  # type: ignore[operator]


def _fold(value: str) -> str:
    return value.upper() if value.isascii() else _casemap(value)


def _casemap(value: str) -> str:
    # i;ascii-casemap folds only a-z (RFC 4790 §9.2): non-ASCII letters compare as octets.
    return "".join(c.upper() if "a" <= c <= "z" else c for c in value)


def _glob_to_regex(pattern: str, casefold: bool) -> re.Pattern[str]:
    """RFC 5228 §2.7.1 :matches: ``*`` any sequence, ``?`` one character, ``\\`` escapes;
    each wildcard is a group (RFC 5229 §3.2 match variables)."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if c == "*":
            out.append("(.*?)")
        elif c == "?":
            out.append("(.)")
        else:
            out.append(re.escape(c))
        i += 1
    flags = re.DOTALL | (re.IGNORECASE | re.ASCII if casefold else 0)
    return re.compile("".join(out) + r"\Z", flags)


# -- dates (RFC 5260 §4.2) ----------------------------------------------------------------------

def _zone_text(dt: datetime) -> str:
    offset = dt.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}{minutes % 60:02d}"


def _date_part(dt: datetime, part: str) -> str | None:
    part = part.lower()
    if part == "year":
        return f"{dt.year:04d}"
    if part == "month":
        return f"{dt.month:02d}"
    if part == "day":
        return f"{dt.day:02d}"
    if part == "date":
        return dt.strftime("%Y-%m-%d")
    if part == "julian":
        # Modified Julian Day: days since 1858-11-17.
        return str((dt.date() - datetime(1858, 11, 17).date()).days)
    if part == "hour":
        return f"{dt.hour:02d}"
    if part == "minute":
        return f"{dt.minute:02d}"
    if part == "second":
        return f"{dt.second:02d}"
    if part == "time":
        return dt.strftime("%H:%M:%S")
    if part == "iso8601":
        text = dt.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if part == "std11":
        from email.utils import format_datetime
        return format_datetime(dt)
    if part == "zone":
        return _zone_text(dt)
    if part == "weekday":
        return str((dt.weekday() + 1) % 7)  # 0 = Sunday
    return None


def _zone(text: str) -> timezone | None:
    m = re.fullmatch(r"([+-])([0-9]{2})([0-9]{2})", text)
    if not m:
        return None
    delta = timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
    return timezone(-delta if m.group(1) == "-" else delta)


# -- the interpreter ----------------------------------------------------------------------------

class _Stop(Exception):
    pass


class _Run:
    def __init__(self, script: Script, facts: MessageFacts) -> None:
        self.script = script
        self.facts = facts
        self.requires = script.requires
        self.variables: dict[str, str] = {}
        self.match: list[str] = []
        self.flags: list[str] = []  # RFC 5232 §3: the internal variable
        self.actions: list[Any] = []
        self.implicit_keep = True
        self.steps = 0

    # -- strings --

    _VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*|[0-9]+)\}")

    def expand(self, value: Any) -> Any:
        """RFC 5229 §3: ``${name}`` and ``${n}`` in string arguments (when required)."""
        if isinstance(value, list):
            return [self.expand(v) for v in value]
        if not isinstance(value, str) or "variables" not in self.requires or "${" not in value:
            return value

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name.isdigit():
                n = int(name)
                return self.match[n] if n < len(self.match) else ""
            if "." in name:
                return m.group(0) if not name.replace(".", "").replace("_", "").isalnum() else ""
            return self.variables.get(name.lower(), "")
        return self._VAR.sub(sub, value)[:MAX_VARIABLE_LENGTH]

    def strings(self, value: Any) -> list[str]:
        value = self.expand(value)
        return [value] if isinstance(value, str) else list(value)

    # -- matching --

    def compare(self, node: Node, values: list[str], keys: list[str]) -> bool:
        """RFC 5228 §2.7: true when any value matches any key (relational :count compares the
        number of values, RFC 5231 §4.1)."""
        comparator = node.extra.get("comparator", "i;ascii-casemap")
        if comparator not in ("i;octet", "i;ascii-casemap", "i;ascii-numeric"):
            raise SieveRuntimeError(f"unknown comparator {comparator}")
        if comparator == "i;ascii-numeric" and "comparator-i;ascii-numeric" not in self.requires:
            raise SieveRuntimeError('comparator "i;ascii-numeric" used without require')
        mtype = node.args.get("match-type", ":is").lower()
        if mtype in (":count", ":value"):
            relation = _RELATIONS[str(node.extra.get("match-type", "eq")).lower()]
            if mtype == ":count":
                count = str(len(values))
                return any(relation(_compare(count, k, comparator)) for k in keys)
            return any(relation(_compare(v, k, comparator)) for v in values for k in keys)
        if comparator == "i;ascii-numeric" and mtype != ":is":
            raise SieveRuntimeError("i;ascii-numeric supports only :is, :value and :count")
        casefold = comparator == "i;ascii-casemap"
        for key in keys:
            for value in values:
                self.steps += 1
                if self.steps > MAX_STEPS:
                    raise SieveRuntimeError("the script does too much work")
                if mtype == ":is":
                    if _compare(value, key, comparator) == 0:
                        return True
                elif mtype == ":contains":
                    if (_fold(key) in _fold(value)) if casefold else (key in value):
                        return True
                elif mtype == ":matches":
                    m = _glob_to_regex(key, casefold).match(value)
                    if m:
                        self.match = [value, *m.groups()]
                        return True
                elif mtype == ":regex":
                    if len(key) > MAX_REGEX_PATTERN:
                        raise SieveRuntimeError("regular expression too long")
                    try:
                        rx = re.compile(key, re.IGNORECASE if casefold else 0)
                    except re.error as exc:
                        raise SieveRuntimeError(f"bad regular expression {key!r}: {exc}") from exc
                    m = rx.search(value[:MAX_REGEX_SUBJECT])
                    if m:
                        self.match = [m.group(0), *[g or "" for g in m.groups()]][:10]
                        return True
                else:
                    raise SieveRuntimeError(f"unknown match type {mtype}")
        return False

    @staticmethod
    def _index(node: Node, values: list[str]) -> list[str]:
        """RFC 5260 §6: ``:index n`` (1-based, ``:last`` counts from the end)."""
        if "index" not in node.args:
            return values
        n = int(node.extra.get("index", 0))
        if n < 1:
            raise SieveRuntimeError(":index must be at least 1")
        if n > len(values):
            return []
        return [values[-n] if "last" in node.args else values[n - 1]]

    def address_part(self, node: Node, address: str) -> str | None:
        part = node.args.get("address-part", ":all").lower()
        local, at, domain = address.rpartition("@")
        if not at:
            local, domain = address, ""
        if part == ":all":
            return address
        if part == ":localpart":
            return local
        if part == ":domain":
            return domain
        # RFC 5233 §4: "+" separates user and detail; no separator: :detail does not match.
        user, sep, detail = local.partition("+")
        if part == ":user":
            return user
        if part == ":detail":
            return detail if sep else None
        raise SieveRuntimeError(f"unknown address part {part}")

    # -- tests --

    def test(self, node: Node) -> bool:
        name = node.name
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise SieveRuntimeError("the script does too much work")
        if name == "true":
            return True
        if name == "false":
            return False
        if name == "not":
            return not self.test(node.args["test"])
        if name == "anyof":
            return any(self.test(t) for t in node.args["tests"])
        if name == "allof":
            return all(self.test(t) for t in node.args["tests"])
        if name == "exists":
            return all(self.facts.header(h, decode=False) for h in self.strings(node.args["header-names"]))
        if name == "size":
            size, limit = self.facts.size, int(node.args["limit"])
            return size > limit if node.args["comparator"].lower() == ":over" else size < limit
        if name == "header":
            values = []
            for h in self.strings(node.args["header-names"]):
                values.extend(self._index(node, self.facts.header(h)))
            return self.compare(node, values, self.strings(node.args["key-list"]))
        if name == "address":
            values = []
            for h in self.strings(node.args["header-list"]):
                found = self._index(node, self.facts.header(h))
                for _display, addr in getaddresses(found):
                    if addr:
                        part = self.address_part(node, addr)
                        if part is not None:
                            values.append(part)
            return self.compare(node, values, self.strings(node.args["key-list"]))
        if name == "envelope":
            values = []
            for part_name in self.strings(node.args["header-list"]):
                part_name = part_name.lower()
                if part_name == "from":
                    addr = self.facts.envelope_from
                elif part_name == "to":
                    addr = self.facts.envelope_to
                else:
                    continue
                # RFC 5228 §5.4: the null reverse-path matches "" with :all only.
                if addr == "":
                    if node.args.get("address-part", ":all").lower() == ":all":
                        values.append("")
                    continue
                part = self.address_part(node, addr)
                if part is not None:
                    values.append(part)
            return self.compare(node, values, self.strings(node.args["key-list"]))
        if name == "body":
            transform = node.args.get("body-transform", ":text").lower()
            if transform == ":raw":
                values = [self.facts.body_raw()]
            elif transform == ":content":
                values = self.facts.body_parts(self.strings(node.extra.get("body-transform", [])))
            else:
                values = self.facts.body_parts(None)
            return self.compare(node, values, self.strings(node.args["key-list"]))
        if name == "hasflag":
            names = node.args.get("variable-list")
            if names is not None:
                current: list[str] = []
                for var in self.strings(names):
                    current.extend(self.variables.get(var.lower(), "").split())
            else:
                current = list(self.flags)
            return self.compare(node, current, self.strings(node.args["list-of-flags"]))
        if name == "string":
            values = [v for v in self.strings(node.args["source"]) if v != ""] \
                if node.args.get("match-type", "").lower() == ":count" else self.strings(node.args["source"])
            return self.compare(node, values, self.strings(node.args["key-list"]))
        if name in ("date", "currentdate"):
            return self._date(node)
        raise SieveRuntimeError(f"unknown test {name}")

    def _date(self, node: Node) -> bool:
        if node.name == "currentdate":
            dates = [self.facts.now]
        else:
            dates = []
            for value in self._index(node, self.facts.header(self.expand(node.args["header-name"]))):
                text = value.rpartition(";")[2].strip() if node.args["header-name"].lower() == "received" else value
                try:
                    dt = parsedate_to_datetime(text)
                except (TypeError, ValueError, IndexError):
                    continue  # RFC 5260 §4: an unparseable date does not match
                if dt is not None:
                    dates.append(dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc))
        zone_tag = node.args.get("zone", "").lower()
        values = []
        for dt in dates:
            if zone_tag == ":zone":
                tz = _zone(self.expand(node.extra.get("zone", "")))
                if tz is None:
                    continue
                dt = dt.astimezone(tz)
            elif zone_tag != ":originalzone":
                dt = dt.astimezone(self.facts.now.tzinfo or timezone.utc)
            part = _date_part(dt, self.expand(node.args["date-part"]))
            if part is None:
                raise SieveRuntimeError(f"unknown date-part {node.args['date-part']!r}")
            values.append(part)
        return self.compare(node, values, self.strings(node.args["key-list"]))

    # -- commands --

    def run(self, nodes: tuple[Node, ...]) -> None:
        last_if: bool | None = None  # None: no if/elsif chain open
        for node in nodes:
            name = node.name
            if name == "require":
                continue
            if name == "if":
                last_if = self.test(node.args["test"])
                if last_if:
                    self.run(node.children)
                continue
            if name == "elsif":
                if last_if is None:
                    raise SieveRuntimeError("elsif without if")
                if not last_if:
                    last_if = self.test(node.args["test"])
                    if last_if:
                        self.run(node.children)
                continue
            if name == "else":
                if last_if is None:
                    raise SieveRuntimeError("else without if")
                if not last_if:
                    self.run(node.children)
                last_if = None
                continue
            last_if = None
            self.action(node)

    def add(self, action: Any) -> None:
        if len(self.actions) >= MAX_ACTIONS:
            raise SieveRuntimeError(f"more than {MAX_ACTIONS} actions")
        self.actions.append(action)

    def _flag_list(self, node: Node) -> tuple[str, ...]:
        if "flags" in node.args:
            return tuple(_split_flags(self.strings(node.extra.get("flags", []))))
        return tuple(self.flags)

    def action(self, node: Node) -> None:
        name = node.name
        if name == "stop":
            raise _Stop
        if name == "keep":
            self.add(Keep(self._flag_list(node)))
            self.implicit_keep = False
        elif name == "discard":
            self.add(Discard())
            self.implicit_keep = False
        elif name == "fileinto":
            copy = "copy" in node.args
            self.add(FileInto(self.expand(node.args["mailbox"]), self._flag_list(node), copy))
            if not copy:
                self.implicit_keep = False
        elif name == "redirect":
            if sum(isinstance(a, Redirect) for a in self.actions) >= MAX_REDIRECTS:
                raise SieveRuntimeError(f"more than {MAX_REDIRECTS} redirects")
            address = self.expand(node.args["address"]).strip()
            if "@" not in address or any(c in address for c in "<>\r\n ,"):
                raise SieveRuntimeError(f"redirect to an invalid address {address!r}")
            copy = "copy" in node.args
            self.add(Redirect(address, copy))
            if not copy:
                self.implicit_keep = False
        elif name in ("reject", "ereject"):
            self.add(Reject(self.expand(node.args["text"]), name == "ereject"))
            self.implicit_keep = False
        elif name == "vacation":
            self.vacation(node)
        elif name in ("setflag", "addflag", "removeflag"):
            flags = _split_flags(self.strings(node.args["list-of-flags"]))
            var = node.args.get("variable-name")
            current = (self.variables.get(self.expand(var).lower(), "").split() if var is not None
                       else list(self.flags))
            if name == "setflag":
                current = flags
            elif name == "addflag":
                lowered = {f.lower() for f in current}
                current = current + [f for f in flags if f.lower() not in lowered]
            else:
                remove = {f.lower() for f in flags}
                current = [f for f in current if f.lower() not in remove]
            current = list(dict.fromkeys(current))
            if var is not None:
                self._set(self.expand(var), " ".join(current))
            else:
                self.flags = current
        elif name == "set":
            self._set(self.expand(node.args["name"]), self._modify(node, self.expand(node.args["value"])))
        else:
            raise SieveRuntimeError(f"unknown command {name}")

    def _set(self, name: str, value: str) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise SieveRuntimeError(f"bad variable name {name!r}")
        if name.lower() not in self.variables and len(self.variables) >= MAX_VARIABLES:
            raise SieveRuntimeError("too many variables")
        self.variables[name.lower()] = value[:MAX_VARIABLE_LENGTH]

    @staticmethod
    def _modify(node: Node, value: str) -> str:
        """RFC 5229 §4.1: modifiers apply by precedence, highest first (case 40, first-case
        30, quoting 20, length 10)."""
        case = node.args.get("case", "").lower()
        if case == ":lower":
            value = value.lower()
        elif case == ":upper":
            value = value.upper()
        first = node.args.get("first-case", "").lower()
        if value and first == ":lowerfirst":
            value = value[0].lower() + value[1:]
        elif value and first == ":upperfirst":
            value = value[0].upper() + value[1:]
        if "quotewildcard" in node.args:
            value = re.sub(r"([*?\\])", r"\\\1", value)
        if node.args.get("encoding", "").lower() == ":quoteregex":
            value = re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\1", value)
        if "length" in node.args:
            value = str(len(value))
        return value

    def vacation(self, node: Node) -> None:
        """RFC 5230: decide whether this message earns a reply at all (§4.5, §5 and RFC 3834
        §2); whether one went to this sender recently is the caller's record (§4.2)."""
        if any(isinstance(a, Vacation) for a in self.actions):
            raise SieveRuntimeError("more than one vacation action (RFC 5230 §4.7)")
        days = node.extra.get("days", VACATION_DEFAULT_DAYS)
        days = min(max(int(days), VACATION_MIN_DAYS), VACATION_MAX_DAYS)  # §4.1
        subject = self.expand(node.extra["subject"]) if "subject" in node.extra else None
        from_address = self.expand(node.extra["from"]) if "from" in node.extra else None
        reason = self.expand(node.args["reason"])
        mime = "mime" in node.args
        addresses = [a.lower() for a in self.strings(node.extra.get("addresses", []))]
        # §4.2: the default handle is the same for the same reason, subject, from and mime.
        handle = self.expand(node.extra["handle"]) if "handle" in node.extra else hashlib.sha256(
            "\0".join([reason, subject or "", from_address or "", "1" if mime else "0"]).encode()).hexdigest()[:32]
        sender = self.facts.envelope_from
        if not self._should_reply(sender, addresses):
            return
        original_subject = (self.facts.header("subject") or [""])[0]
        if subject is None:
            subject = f"Auto: {original_subject}" if original_subject else "Automated reply"  # §4.3
        message_id = (self.facts.header("message-id", decode=False) or [None])[0]
        references = (self.facts.header("references", decode=False) or [None])[0]
        if message_id:
            references = f"{references} {message_id}" if references else message_id
        self.add(Vacation(sender, handle, days, subject, from_address, reason, mime, message_id, references))

    def _should_reply(self, sender: str, addresses: list[str]) -> bool:
        facts = self.facts
        if not sender:
            return False  # §5: never to the null reverse-path
        lowered = sender.lower()
        mine = {a.lower() for a in facts.user_addresses} | set(addresses) | {facts.envelope_to.lower()}
        if lowered in mine:
            return False  # §5: not to the user's own mail
        local = lowered.rpartition("@")[0]
        # §5 / RFC 3834 §2: not to mailing-list and system addresses
        if local.startswith("owner-") or local.endswith("-request") or local in (
                "mailer-daemon", "listserv", "majordomo", "postmaster", "mailer"):
            return False
        auto = [v.strip().lower() for v in facts.header("auto-submitted")]
        if any(v.split(";")[0].strip() != "no" for v in auto):
            return False  # RFC 3834 §2: automatic mail gets no automatic reply
        if any(v.strip().lower() in ("list", "bulk", "junk") for v in facts.header("precedence")):
            return False  # §5: lists and bulk mail
        if any(facts.header(h, decode=False) for h in ("list-id", "list-help", "list-subscribe",
                                                        "list-unsubscribe", "list-post", "list-owner",
                                                        "list-archive")):
            return False  # §5: RFC 2369 / RFC 2919 list mail
        # §4.5: only when one of the user's addresses is a recipient in the header.
        recipients = set()
        for h in ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"):
            for _d, addr in getaddresses(facts.header(h, decode=False)):
                recipients.add(addr.lower())
        return bool(recipients & mine)


def _split_flags(values: list[str]) -> list[str]:
    """RFC 5232 §3: each string is a space-separated list of flags."""
    out: list[str] = []
    for value in values:
        out.extend(value.split())
    return list(dict.fromkeys(out))


def evaluate(script: Script, facts: MessageFacts) -> Outcome:
    """Run ``script`` on the message; the outcome's actions include the implicit keep when no
    action cancelled it (RFC 5228 §2.10.2). Raises :class:`SieveRuntimeError`."""
    run = _Run(script, facts)
    try:
        run.run(script.commands)
    except _Stop:
        pass
    except RecursionError as exc:  # nesting is capped by the parser; belt and braces
        raise SieveRuntimeError("script nested too deeply") from exc
    actions = run.actions
    if run.implicit_keep:
        # RFC 5232 §3: the implicit keep uses the current internal flags.
        actions = [*actions, Keep(tuple(run.flags))]
    rejects = [a for a in actions if isinstance(a, Reject)]
    if rejects:
        # RFC 5429 §2.2: reject/ereject cannot be combined with keep, fileinto, redirect or
        # vacation, nor with each other.
        others = [a for a in actions if isinstance(a, (Keep, FileInto, Vacation)) or
                  (isinstance(a, Redirect) and not a.copy)]
        if len(rejects) > 1 or others:
            raise SieveRuntimeError("reject cannot be combined with keep, fileinto, redirect or vacation")
    return Outcome(actions)


__all__ = [
    "Discard", "FileInto", "Keep", "Outcome", "Redirect", "Reject", "SieveRuntimeError", "Vacation", "evaluate",
]
