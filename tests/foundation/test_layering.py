"""The sans-IO rule: protocols/, mail/ and sieve/ never touch sockets, the event loop or the
database.

Every import is resolved to an absolute module name with `ast` (relative imports against the
file's own package), so `from postoffice.store import Store`, `import postoffice.store`,
`from postoffice import store`, `from ...store import Store` and `from ... import store` are all
caught; the checker is tested on each of those forms below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src" / "postoffice"
PURE_PACKAGES = ["protocols", "mail", "sieve"]
# The standard library's I/O and the event loop, and the layers of postoffice that do I/O.
FORBIDDEN = ("asyncio", "socket", "ssl", "sqlite3", "selectors", "subprocess",
             "postoffice.store", "postoffice.servers", "postoffice.services", "postoffice.outbound",
             "postoffice.web")


def module_name(path: Path) -> str:
    """postoffice.protocols.imap.parser for src/postoffice/protocols/imap/parser.py."""
    parts = ["postoffice", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module that `source` (the text of `module`) imports, as absolute dotted names. For
    `from X import a` both X and X.a are listed, since `a` may be a submodule."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                assert len(base) == len(package) - (node.level - 1), f"{module}: relative import beyond the top"
                parent = ".".join(base + ([node.module] if node.module else []))
            else:
                parent = node.module or ""
            names.add(parent)
            names.update(f"{parent}.{alias.name}" for alias in node.names)
    return names


def forbidden(names: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in FORBIDDEN))


@pytest.mark.parametrize("path", [p for pkg in PURE_PACKAGES for p in sorted((SRC / pkg).rglob("*.py"))],
                         ids=lambda p: str(p.relative_to(SRC)))
def test_pure_modules_do_no_io(path: Path) -> None:
    names = imported_modules(path.read_text(), module_name(path), is_package=path.name == "__init__.py")
    bad = forbidden(names)
    assert not bad, f"{path.relative_to(SRC)} imports {bad}"


@pytest.mark.parametrize("line", [
    "import asyncio",
    "import socket as s",
    "from ssl import SSLContext",
    "import postoffice.store",
    "import postoffice.store.db as db",
    "from postoffice.store import Store",
    "from postoffice.store.records import MessageMeta",
    "from postoffice import store",
    "from postoffice import services, mail",
    "from ...store import Store",          # postoffice.store
    "from ...store.db import Database",
    "from ... import store",
    "from ...servers.imap.session import Session",
    "def f():\n    from ...services import auth",  # imports inside functions count too
])
def test_the_checker_catches_every_form(line: str) -> None:
    names = imported_modules(line, "postoffice.protocols.imap.example")
    assert forbidden(names), (line, names)


@pytest.mark.parametrize("line", [
    "from . import grammar",
    "from .grammar.search import SearchKey",
    "from ..sasl import decode",             # postoffice.protocols.sasl
    "from ...mail.address import parse",     # postoffice.mail
    "import email.message",
    "from postoffice.protocols.imap import commands",
    "from ...storeroom import x",            # a name that only starts like a forbidden one
])
def test_the_checker_allows_pure_imports(line: str) -> None:
    names = imported_modules(line, "postoffice.protocols.imap.example")
    assert not forbidden(names), (line, names)


def test_relative_imports_resolve_against_the_package() -> None:
    assert imported_modules("from ..store import X", "postoffice.mail.mime") == {"postoffice.store",
                                                                                 "postoffice.store.X"}
    # in a package's __init__, `.` is the package itself
    assert "postoffice.mail.store" in imported_modules("from . import store", "postoffice.mail", is_package=True)
    assert module_name(SRC / "protocols" / "imap" / "__init__.py") == "postoffice.protocols.imap"
