"""The panel's filter rules and vacation reply, written as Sieve (pure).

The rules editor covers the common cases (if From/To/Subject/a header contains or is ... ->
move to a folder / mark as read / forward a copy / discard) and the vacation reply (text,
subject, first and last day, how often per sender). :func:`to_script` writes them as a Sieve
script whose first line keeps the settings as JSON (``# postoffice-filters: {...}``), so the
editor reads back exactly what it wrote (:func:`from_script`); anything else (a script from a
ManageSieve client) is shown in the raw-script view instead.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import date

MARKER = "# postoffice-filters: "
FIELDS = ("from", "to", "subject", "header")
MATCHES = ("contains", "is")
ACTIONS = ("move", "read", "forward", "discard")
MAX_RULES = 50
_HEADER_NAME = re.compile(r"[!-9;-~]{1,100}\Z")  # RFC 5322 §3.6.8 field name
_ADDRESS = re.compile(r"[^\s@<>\",;]+@[^\s@<>\",;]+\Z")


class RuleError(ValueError):
    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Rule:
    field: str  # from | to | subject | header
    match: str  # contains | is
    value: str
    action: str  # move | read | forward | discard
    target: str = ""  # folder (move) or address (forward)
    header: str = ""  # the header name when field == "header"


@dataclass(frozen=True)
class VacationSettings:
    enabled: bool = False
    subject: str = ""
    text: str = ""
    start: str = ""  # YYYY-MM-DD or ""
    end: str = ""
    days: int = 7


@dataclass(frozen=True)
class Filters:
    rules: tuple[Rule, ...] = ()
    vacation: VacationSettings = field(default_factory=VacationSettings)


def quote(value: str) -> str:
    """A Sieve quoted string (RFC 5228 §2.4.2): backslash and double quote escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_date(value: str, name: str) -> str:
    value = value.strip()
    if not value:
        return ""
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise RuleError("a date is written YYYY-MM-DD", name) from None


def validate(filters: Filters) -> Filters:
    """Clean and check the settings; raises RuleError naming the field."""
    if len(filters.rules) > MAX_RULES:
        raise RuleError(f"at most {MAX_RULES} rules", "rules")
    rules = []
    for i, rule in enumerate(filters.rules):
        where = f"rules.{i}"
        if rule.field not in FIELDS:
            raise RuleError("choose From, To, Subject or a header", where + ".field")
        if rule.match not in MATCHES:
            raise RuleError("choose contains or is", where + ".match")
        if rule.action not in ACTIONS:
            raise RuleError("choose move, mark as read, forward or discard", where + ".action")
        value = rule.value.strip()
        if not value or len(value) > 500 or any(c in value for c in "\r\n\0"):
            raise RuleError("say what to look for (one line)", where + ".value")
        header = rule.header.strip()
        if rule.field == "header" and not _HEADER_NAME.match(header):
            raise RuleError("name the header field, e.g. List-Id", where + ".header")
        target = rule.target.strip()
        if rule.action == "move" and (not target or len(target) > 200 or any(c in target for c in "\r\n\0")):
            raise RuleError("choose the folder", where + ".target")
        if rule.action == "forward" and not _ADDRESS.match(target):
            raise RuleError("give the address to forward to", where + ".target")
        rules.append(Rule(rule.field, rule.match, value, rule.action,
                          target if rule.action in ("move", "forward") else "",
                          header if rule.field == "header" else ""))
    v = filters.vacation
    start, end = _check_date(v.start, "vacation.start"), _check_date(v.end, "vacation.end")
    if start and end and end < start:
        raise RuleError("the last day comes before the first", "vacation.end")
    if v.enabled and not v.text.strip():
        raise RuleError("write the reply", "vacation.text")
    if len(v.text) > 10000 or len(v.subject) > 200 or any(c in v.subject for c in "\r\n\0"):
        raise RuleError("the reply is too long", "vacation.text")
    if not 1 <= int(v.days) <= 90:
        raise RuleError("between 1 and 90 days", "vacation.days")
    vacation = VacationSettings(bool(v.enabled), v.subject.strip(), v.text.replace("\r\n", "\n").strip("\n"),
                                start, end, int(v.days))
    return Filters(tuple(rules), vacation)


def _test(rule: Rule) -> str:
    headers = {"from": quote("from"), "to": '["to", "cc"]', "subject": quote("subject"),
               "header": quote(rule.header)}[rule.field]
    return f"header :{rule.match} {headers} {quote(rule.value)}"


def to_script(filters: Filters) -> str:
    filters = validate(filters)
    data = {"rules": [asdict(r) for r in filters.rules], "vacation": asdict(filters.vacation)}
    lines = [MARKER + json.dumps(data, separators=(",", ":"), ensure_ascii=True),
             "# Written by the postoffice control panel: edit it there (changes made here are",
             "# kept only if you save this script from a Sieve client).",
             'require ["fileinto", "imap4flags", "copy", "vacation", "date", "relational"];', ""]
    v = filters.vacation
    if v.enabled:
        action = f"vacation :days {v.days}"
        if v.subject:
            action += f" :subject {quote(v.subject)}"
        action += f" {quote(v.text)};"
        window = []
        if v.start:
            window.append(f'currentdate :value "ge" "date" {quote(v.start)}')
        if v.end:
            window.append(f'currentdate :value "le" "date" {quote(v.end)}')
        if window:
            lines += [f"if allof({', '.join(window)}) {{", f"    {action}", "}"]
        else:
            lines.append(action)
    for rule in filters.rules:
        body = {"move": [f"fileinto {quote(rule.target)};", "stop;"],
                "read": ['addflag "\\\\Seen";'],
                "forward": [f"redirect :copy {quote(rule.target)};"],
                "discard": ["discard;", "stop;"]}[rule.action]
        lines.append(f"if {_test(rule)} {{")
        lines += ["    " + b for b in body]
        lines.append("}")
    return "\n".join(lines) + "\n"


def from_script(text: str | None) -> Filters | None:
    """The settings a panel-written script carries, or None (no script, or not ours)."""
    if not text or not text.startswith(MARKER):
        return None
    try:
        data = json.loads(text[len(MARKER):].split("\n", 1)[0])
        rules = tuple(Rule(**r) for r in data.get("rules", []))
        vacation = VacationSettings(**data.get("vacation", {}))
        return Filters(rules, vacation)
    except (ValueError, TypeError):
        return None


__all__ = ["ACTIONS", "FIELDS", "Filters", "MATCHES", "Rule", "RuleError", "VacationSettings", "from_script",
           "quote", "to_script", "validate"]
