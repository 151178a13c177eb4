"""Parsing Sieve scripts (RFC 5228): sievelib's parser, extended here, turned into our own tree.

sievelib (1.6) parses the base language and most extensions we run. What it lacks is added
here, at import, through its documented extension points (``commands.add_commands`` and the
shared argument definitions):

- ``comparator-i;ascii-numeric`` (RFC 4790 §9.1; relational tests use it, RFC 5231 §4);
- ``ereject`` (RFC 5429 §2.1);
- ``subaddress``: the ``:user`` and ``:detail`` address parts (RFC 5233 §4);
- ``index``: ``:index <n>`` and ``:last`` on header, address and date (RFC 5260 §6);
- the ``string`` test of ``variables`` (RFC 5229 §5).

sievelib keeps argument values in their source form (quoted strings with escapes, ``text:``
blocks with dot-stuffing, ``10K`` numbers); :func:`parse` decodes them into :class:`Node`
values: ``str``, ``list[str]``, ``int``, tag names, and nested nodes for tests.

What sievelib (and so this module) does not parse: ``encoded-character`` (RFC 5228 §2.4.2.4),
``mailbox`` (``:create``, ``mailboxexists``), ``enotify``, ``editheader``, ``spamtest``,
``foreverypart``/``mime``, ``include``. A script requiring one of those is refused.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from sievelib import commands as _commands
from sievelib.parser import Parser as _Parser

#: What this server runs (the ManageSieve SIEVE capability, RFC 5804 §1.7).
EXTENSIONS: tuple[str, ...] = (
    "fileinto", "reject", "ereject", "envelope", "variables", "vacation", "relational", "subaddress",
    "copy", "imap4flags", "body", "date", "index", "regex", "comparator-i;ascii-numeric",
)

#: Scripts larger than this are refused (parse time and memory stay bounded).
MAX_SCRIPT_BYTES = 64 * 1024
#: Block nesting deeper than this is refused.
MAX_NESTING = 32


class SieveSyntaxError(ValueError):
    """The script does not parse (message names the line)."""


@dataclass(frozen=True)
class Node:
    """One command or test: ``args`` by sievelib's argument names (tags as ``":name"``),
    ``extra`` the values following tags (``:days 3`` -> extra["days"] = 3)."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    children: tuple[Node, ...] = ()


@dataclass(frozen=True)
class Script:
    requires: frozenset[str]
    commands: tuple[Node, ...]


# -- sievelib extensions ------------------------------------------------------------------------

def _extend_sievelib() -> None:
    numeric = '"i;ascii-numeric"'
    values = _commands.comparator["extra_arg"]["values"]
    if numeric not in values:
        values.append(numeric)
    part = _commands.address_part
    part.setdefault("extension_values", {}).update({":user": "subaddress", ":detail": "subaddress"})

    index_args: list[Any] = [
        {"name": "index", "type": ["tag"], "values": [":index"], "extra_arg": {"type": "number"},
         "required": False, "extension": "index"},
        {"name": "last", "type": ["tag"], "values": [":last"], "required": False, "extension": "index"},
    ]
    for cls in (_commands.HeaderCommand, _commands.AddressCommand, _commands.DateCommand):
        if not any(a["name"] == "index" for a in cls.args_definition):
            cls.args_definition = index_args + list(cls.args_definition)

    class ErejectCommand(_commands.ActionCommand):
        extension = "ereject"
        args_definition = [{"name": "text", "type": ["string"], "required": True}]

    class StringCommand(_commands.TestCommand):
        extension = "variables"
        args_definition = [
            _commands.comparator,
            _commands.match_type,
            {"name": "source", "type": ["string", "stringlist"], "required": True},
            {"name": "key-list", "type": ["string", "stringlist"], "required": True},
        ]

    _commands.add_commands([ErejectCommand, StringCommand])


_extend_sievelib()
_lock = threading.Lock()


# -- decoding -----------------------------------------------------------------------------------

_NUMBER = re.compile(r"([0-9]+)([KMGkmg]?)\Z")
_QUANTIFIER = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


def _decode_string(raw: str) -> str:
    if raw.startswith('"'):
        # RFC 5228 §2.4.2: \\ and \" stand for themselves; any other backslash is dropped.
        return re.sub(r"\\(.)", r"\1", raw[1:-1], flags=re.DOTALL)
    if raw.startswith("text:"):
        # RFC 5228 §2.4.2: the text after "text:" up to the line ending (a comment or
        # whitespace) is skipped; the final "." line is not part of the value; a line that
        # starts with ".." loses one dot.
        body = raw.split("\n", 1)[1] if "\n" in raw else ""
        lines = body.split("\n")
        if lines and lines[-1].rstrip("\r") == ".":
            lines = lines[:-1]
        out = [line[1:] if line.startswith("..") else line for line in lines]
        text = "\n".join(out)
        return text.replace("\r\n", "\n").replace("\n", "\r\n") + ("\r\n" if out else "")
    return raw


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, _commands.Command):
        return _convert(value, 0)
    if isinstance(value, str):
        if value.startswith('"') or value.startswith("text:"):
            return _decode_string(value)
        match = _NUMBER.match(value)
        if match:
            return int(match.group(1)) * _QUANTIFIER[match.group(2).lower()]
        return value
    return value


def _convert(command: Any, depth: int) -> Node:
    if depth > MAX_NESTING:
        raise SieveSyntaxError(f"blocks nested deeper than {MAX_NESTING}")
    args: dict[str, Any] = {}
    for name, value in command.arguments.items():
        if isinstance(value, _commands.Command):
            args[name] = _convert(value, depth + 1)
        elif isinstance(value, list) and value and isinstance(value[0], _commands.Command):
            args[name] = [_convert(v, depth + 1) for v in value]
        else:
            args[name] = _decode(value)
    extra = {name: _decode(value) for name, value in command.extra_arguments.items()}
    children = tuple(_convert(c, depth + 1) for c in command.children)
    return Node(command.name, args, extra, children)


def parse(script: str | bytes) -> Script:
    """Parse a script; raises :class:`SieveSyntaxError` naming the problem and its line."""
    data = script.encode("utf-8") if isinstance(script, str) else script
    if len(data) > MAX_SCRIPT_BYTES:
        raise SieveSyntaxError(f"script larger than {MAX_SCRIPT_BYTES} bytes")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SieveSyntaxError("script is not UTF-8 (RFC 5228 §2.2)") from exc
    # Cheap nesting check before the parser sees it (its bracket stack is unbounded).
    depth = deepest = 0
    for char in re.sub(rb'"(?:[^"\\]|\\.)*"|text:[\s\S]*?\r?\n\.\r?\n|#[^\n]*|/\*[\s\S]*?\*/', b"", data):
        if char in b"{(":
            depth += 1
            deepest = max(deepest, depth)
        elif char in b"})":
            depth -= 1
    if deepest > MAX_NESTING:
        raise SieveSyntaxError(f"blocks nested deeper than {MAX_NESTING}")
    with _lock:  # sievelib keeps per-parse state in module globals (thread-local, but be safe)
        parser = _Parser()
        ok = parser.parse(data)
        if not ok:
            raise SieveSyntaxError(parser.error or "syntax error")
        result = list(parser.result)
    requires: set[str] = set()
    nodes = []
    for command in result:
        node = _convert(command, 0)
        nodes.append(node)
    _check(nodes, requires, top=True)
    return Script(frozenset(requires), tuple(nodes))


def _check(nodes: list[Node] | tuple[Node, ...], requires: set[str], top: bool) -> None:
    """``require`` only at the top, before other commands (RFC 5228 §3.2); every extension
    named must be one we run (an unknown one is an error, not ignored)."""
    seen_other = False
    for node in nodes:
        if node.name == "require":
            if not top or seen_other:
                raise SieveSyntaxError("require must come before any other command (RFC 5228 §3.2)")
            caps = node.args["capabilities"]
            for cap in [caps] if isinstance(caps, str) else caps:
                if cap not in EXTENSIONS:
                    raise SieveSyntaxError(f"unsupported extension {cap!r}")
                requires.add(cap)
            continue
        seen_other = True
        _check(node.children, requires, top=False)


__all__ = ["EXTENSIONS", "MAX_NESTING", "MAX_SCRIPT_BYTES", "Node", "Script", "SieveSyntaxError", "parse"]
