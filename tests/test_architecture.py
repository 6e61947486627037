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

LOWER = ("process", "tickets", "graph", "git", "durable", "faults", "findings", "text", "paths", "errors",
         "report")  # report: drawn from a run record's JSON, so the engine can write its live page

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


# Rooms small enough to live in: a newcomer reads a module, a class or a function in one sitting.
MAX_MODULE_LINES, MAX_CLASS_LINES, MAX_FUNCTION_LINES = 650, 400, 80


def oversized(source: str, name: str) -> list[str]:
    """What in `source` is over the limits, as messages naming it and its size."""
    found = []
    lines = source.count("\n")
    if lines > MAX_MODULE_LINES:
        found.append(f"module {name} is {lines} lines (at most {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(source)):
        size = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
        if isinstance(node, ast.ClassDef) and size > MAX_CLASS_LINES:
            found.append(f"class {name}.{node.name} is {size} lines (at most {MAX_CLASS_LINES})")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and size > MAX_FUNCTION_LINES:
            found.append(f"function {name}.{node.name} (line {node.lineno}) is {size} lines "
                         f"(at most {MAX_FUNCTION_LINES})")
    return found


@pytest.mark.parametrize("path", MODULES, ids=[module_name(path) for path in MODULES])
def test_modules_classes_and_functions_stay_small(path: Path) -> None:
    problems = oversized(path.read_text(encoding="utf-8"), module_name(path))
    assert not problems, "\n".join(problems)


def test_the_size_check_names_what_is_too_big() -> None:
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    source = f"class Big:\n    def method(self):\n{body}\n" + "\n" * MAX_MODULE_LINES
    problems = oversized(source, "probe")
    assert problems[0].startswith("module probe is")
    assert any(p.startswith("function probe.method (line 2) is 81 lines") for p in problems)
    assert not any(p.startswith("class") for p in problems)  # 82 lines: within the class limit
