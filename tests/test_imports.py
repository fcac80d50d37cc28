"""The import rules of ARCHITECTURE.md, checked on the source with ``ast``:
imports only go downwards, so each part can be read, tested and replaced alone."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Set

CHAT = Path(__file__).resolve().parent.parent / "chat"

#: part -> the parts of ours it may import (a part is a top-level module or package).
ALLOWED: Dict[str, Set[str]] = {
    "protocol": set(),
    "dblock": set(),
    "auth": {"protocol"},
    "store": {"protocol", "dblock"},
    "server": {"protocol", "store", "auth", "dblock"},
    "serve": {"protocol", "store", "auth", "dblock", "server"},
    "client": {"protocol"},
    "tui": {"protocol", "client"},
    "irc": {"protocol"},
    "bench": {"protocol", "store", "auth", "client"},
}


def part_of(path: Path) -> str:
    rel = path.relative_to(CHAT)
    return rel.parts[0].removesuffix(".py")


def imported_parts(path: Path) -> Set[str]:
    """The parts of ``chat`` a module imports (absolute or relative), at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = path.relative_to(CHAT.parent).with_suffix("").parts[:-1]
    parts: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ((node.module,) if node.module else ()))
                names = [module] if node.module else [f"{module}.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            pieces = name.split(".")
            if pieces[0] == "chat" and len(pieces) > 1:
                parts.add(pieces[1])
    return parts


def test_every_module_imports_only_downwards():
    wrong = []
    for path in sorted(CHAT.rglob("*.py")):
        part = part_of(path)
        if part == "__init__" or path.name == "__main__.py":
            continue   # entry points: nothing imports them, they may start anything
        assert part in ALLOWED, f"{path}: a part ARCHITECTURE.md does not list"
        for other in imported_parts(path) - {part} - ALLOWED[part]:
            wrong.append(f"{path.relative_to(CHAT.parent)} imports chat.{other}")
    assert not wrong, "\n".join(wrong)


def test_the_rule_checker_sees_relative_imports(tmp_path):
    module = CHAT / "tui" / "app.py"
    assert "client" in imported_parts(module)
    assert "protocol" in imported_parts(CHAT / "server" / "ops.py")
