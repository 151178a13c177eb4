"""The sans-IO rule: protocols/ and mail/ never touch sockets, the event loop or the database."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src" / "postoffice"
FORBIDDEN = {"asyncio", "socket", "ssl", "sqlite3", "selectors", "subprocess"}
PURE_PACKAGES = ["protocols", "mail", "sieve"]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif node.level >= 2 and node.module and node.module.split(".")[0] in ("store", "servers", "services"):
                names.add("postoffice." + node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", [p for pkg in PURE_PACKAGES for p in sorted((SRC / pkg).rglob("*.py"))],
                         ids=lambda p: str(p.relative_to(SRC)))
def test_pure_modules_do_no_io(path: Path) -> None:
    bad = imported_modules(path) & (FORBIDDEN | {"postoffice.store", "postoffice.servers", "postoffice.services"})
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"
