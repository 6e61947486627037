"""Imports flow one way: commands -> engine -> agents -> (process, tickets, graph, git) -> bottom.

Every module of the package is parsed (not imported), and every import counts: at the top,
inside functions, and under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sage_stream"

LOWER = ("process", "tickets", "graph", "git", "durable", "faults", "findings", "text", "paths", "errors")

# module (or package) -> what it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "agents": ("engine", "commands", "validation"),
    **{lower: ("engine", "agents", "commands", "validation") for lower in LOWER},
    "engine": ("commands",),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, name: str, *, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in module `name`'s source, wherever it is."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # `from sage_stream import engine` imports a package too
                yield node.lineno, f"{module}.{alias.name}"


def layer_of(module: str) -> str | None:
    """`sage_stream.engine.stream` -> "engine"; None outside the package."""
    parts = module.split(".")
    if parts[0] != "sage_stream" or len(parts) < 2:
        return None
    return parts[1]


MODULES = sorted(path for path in PACKAGE.rglob("*.py") if "example" not in path.relative_to(PACKAGE).parts)


def test_every_layer_named_in_the_rules_exists() -> None:
    layers = {layer_of(module_name(path)) for path in MODULES}
    assert set(FORBIDDEN) <= layers
    assert {"commands", "validation"} <= layers


@pytest.mark.parametrize("path", MODULES, ids=[module_name(path) for path in MODULES])
def test_imports_only_point_down(path: Path) -> None:
    layer = layer_of(module_name(path))
    forbidden = FORBIDDEN.get(layer or "", ())
    wrong = sorted({
        f"{module_name(path)} (line {line}) imports {module}, but {layer} must not import {layer_of(module)}/"
        for line, module in imported_modules(path.read_text(encoding="utf-8"), module_name(path),
                                             is_package=path.name == "__init__.py")
        if layer_of(module) in forbidden
    })
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_imports_inside_functions_and_under_type_checking() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from sage_stream.engine.stream import StreamRun\n"
        "def late():\n"
        "    import sage_stream.commands.stream\n"
        "    from sage_stream import validation\n"
        "    from ..agents import base\n"
        "    from .store import IndexStore\n"
    )
    found = {module: line for line, module in imported_modules(source, "sage_stream.tickets.probe")}
    assert found["sage_stream.engine.stream"] == 3
    assert found["sage_stream.commands.stream"] == 5
    assert found["sage_stream.validation"] == 6
    assert found["sage_stream.agents"] == 7
    assert found["sage_stream.tickets.store"] == 8
    assert {layer_of(module) for module in found} >= {"engine", "commands", "validation", "agents", "tickets"}
