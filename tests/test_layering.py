# The import rules of DESIGN.md, checked by walking the AST of every module under src/laurelin.
#
# Layers, top to bottom: cli/django/testing -> supervisor -> server -> protocols -> asgi ->
# config/importer/logs. A module imports only from its own layer or below; asgi/ never imports
# protocols/ and supervisor/ never imports protocols/ or asgi/. Every import counts, including
# those inside functions and `if TYPE_CHECKING:` blocks. A module that is in no layer fails the
# test, so a new module gets its place decided rather than slipping through.
from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src"
PACKAGE = SRC / "laurelin"

# Prefix of a dotted module name -> layer (higher numbers sit higher). The longest prefix wins.
LAYERS: dict[str, int] = {
    # entry points and integrations
    "laurelin.cli": 5,
    "laurelin.__main__": 5,
    "laurelin.docgen": 5,
    "laurelin.django": 5,
    "laurelin.testing": 5,
    "laurelin.api": 5,
    "laurelin.apps": 5,
    "laurelin.management": 5,
    "laurelin.supervisor": 4,
    "laurelin.server": 3,
    "laurelin.protocols": 2,
    "laurelin.asgi": 1,
    # The bottom: plain data and helpers that depend on nothing above them. listeners.py and
    # tls.py build sockets and SSL contexts from Config for the server and supervisor alike.
    "laurelin": 0,
    "laurelin.config": 0,
    "laurelin.importer": 0,
    "laurelin.logs": 0,
    "laurelin.listeners": 0,
    "laurelin.tls": 0,
    "laurelin.pidfile": 0,
}
LAYER_NAMES = {
    5: "cli/django/testing",
    4: "supervisor",
    3: "server",
    2: "protocols",
    1: "asgi",
    0: "config/importer/logs",
}
# (importer, target): the one upward import allowed. The package root re-exports the public
# API (laurelin.run, laurelin.serve) from laurelin.api on first attribute access (a module
# __getattr__); nothing below imports the root for those names.
ALLOWED_UPWARD = {("laurelin", "laurelin.api")}
# (importer prefix, forbidden prefix): rules beyond "never import upwards".
FORBIDDEN = [
    ("laurelin.asgi", "laurelin.protocols"),
    ("laurelin.supervisor", "laurelin.protocols"),
    ("laurelin.supervisor", "laurelin.asgi"),
]


@dataclass(frozen=True)
class Import:
    module: str
    target: str
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(name: str) -> int | None:
    """The layer of a laurelin module (None if unassigned), by longest matching prefix."""
    best: tuple[int, int] | None = None
    for prefix, layer in LAYERS.items():
        if prefix == "laurelin" and name != "laurelin":
            continue  # the package itself, not everything in it
        if (name == prefix or name.startswith(prefix + ".")) and (
            best is None or len(prefix) > best[0]
        ):
            best = (len(prefix), layer)
    return None if best is None else best[1]


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports_in(source: str, module: str, is_package: bool = False) -> Iterator[Import]:
    """Every laurelin module `source` imports, wherever the import statement is."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = (
                _resolve_relative(module, is_package, node.level, node.module)
                if node.level
                else node.module or ""
            )
            for alias in node.names:
                # `from laurelin import config` imports the submodule laurelin.config.
                candidate = f"{base}.{alias.name}"
                yield Import(module, candidate if _is_module(candidate) else base, node.lineno)


def _is_module(name: str) -> bool:
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def violations(imports: list[Import]) -> list[str]:
    """What breaks the layering rules, one readable line each."""
    found = []
    for imp in imports:
        if not (imp.target == "laurelin" or imp.target.startswith("laurelin.")):
            continue
        here, there = layer_of(imp.module), layer_of(imp.target)
        if here is None or there is None:
            continue  # reported by test_every_module_has_a_layer
        if there > here and (imp.module, imp.target) not in ALLOWED_UPWARD:
            found.append(
                f"{imp.module}:{imp.line} imports {imp.target}: "
                f"{LAYER_NAMES[here]} must not import from {LAYER_NAMES[there]} above it"
            )
        for importer, forbidden in FORBIDDEN:
            in_importer = imp.module == importer or imp.module.startswith(importer + ".")
            if in_importer and (imp.target == forbidden or imp.target.startswith(forbidden + ".")):
                found.append(
                    f"{imp.module}:{imp.line} imports {imp.target}: {importer} never "
                    f"imports {forbidden}"
                )
    return found


def all_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def all_imports() -> list[Import]:
    imports = []
    for path in all_modules():
        name = module_name(path)
        imports += imports_in(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
    return imports


def test_every_module_has_a_layer() -> None:
    unassigned = [module_name(p) for p in all_modules() if layer_of(module_name(p)) is None]
    assert unassigned == [], "give these modules a layer in tests/test_layering.py"


def test_source_tree_follows_the_layering_rules() -> None:
    assert violations(all_imports()) == []


def test_the_walk_sees_the_imports_that_exist() -> None:
    # The server runs HTTP/1.1 connections, so it must import protocols: if the walk found
    # nothing, the rules above would pass vacuously.
    targets = {imp.target for imp in all_imports() if imp.module == "laurelin.server"}
    assert any(t.startswith("laurelin.protocols") for t in targets)


@pytest.mark.parametrize(
    ("module", "source", "complaint"),
    [
        ("laurelin.asgi.http", "from laurelin.protocols.http1 import X", "never imports"),
        ("laurelin.asgi.http", "from laurelin.server import Server", "must not import"),
        ("laurelin.supervisor.single", "import laurelin.asgi.lifespan", "never imports"),
        ("laurelin.supervisor.single", "from laurelin import protocols", "never imports"),
        ("laurelin.config", "from laurelin.cli import main", "must not import"),
        ("laurelin.logs", "from .server import Server", "must not import"),
        ("laurelin.protocols.http1", "from ..server import Server", "must not import"),
        (
            "laurelin.asgi.scope",
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from laurelin.protocols.settings import S\n",
            "never imports",
        ),
        ("laurelin.importer", "def f():\n    from laurelin.supervisor import run\n", "must not"),
    ],
)
def test_the_checker_catches_a_violation(module: str, source: str, complaint: str) -> None:
    found = violations(list(imports_in(source, module)))
    assert any(complaint in line for line in found), found


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("laurelin.cli", "from laurelin.supervisor import run_from_config"),
        ("laurelin.server", "from laurelin.protocols.http1 import HTTP1Connection"),
        ("laurelin.protocols.http1", "from laurelin.asgi.http import HTTPCycle"),
        ("laurelin.asgi.context", "from laurelin.importer import ASGIApp"),
        ("laurelin.protocols.http1", "from laurelin.logs import access_logger"),
        ("laurelin.supervisor.single", "from laurelin.listeners import open_listener"),
        ("laurelin.asgi.scope", "from .proxy import parse_forwarded"),
    ],
)
def test_the_checker_allows_imports_downwards(module: str, source: str) -> None:
    assert violations(list(imports_in(source, module))) == []
