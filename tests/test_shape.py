"""The shape rules of issue 14: no module over 400 lines, no function over 60 lines.

Applies to the product packages (``base``, ``builder``, ``runtime``, ``grammar``). A module's
size is its line count; a function's (methods and nested functions included) is
``end_lineno - lineno + 1`` from ``ast``, decorators not counted.

``KNOWN`` records today's offenders at their current size: a new offender fails, a known one
that grows past its recorded size fails, and a known one that is gone or back under the limit
fails the last test until it is removed from ``KNOWN``, so the list only shrinks.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("base", "builder", "runtime", "grammar")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# "path" for a module, "path::qualified.name" for a function -> its size when recorded.
KNOWN: dict[str, int] = {}


def _functions(tree: ast.AST, prefix: str = ""):
    """``(qualified name, lines)`` of every function under ``tree``, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{node.name}"
            if not isinstance(node, ast.ClassDef):
                yield name, node.end_lineno - node.lineno + 1
            yield from _functions(node, name + ".")
        else:
            yield from _functions(node, prefix)


@functools.cache
def _sizes() -> dict[str, tuple[int, int]]:
    """Every module and function by key -> (size, limit) (read once per session)."""
    found = {}
    for top in PACKAGES:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            text = path.read_text()
            found[rel] = (len(text.splitlines()), MAX_MODULE_LINES)
            for name, lines in _functions(ast.parse(text, filename=rel)):
                found[f"{rel}::{name}"] = (lines, MAX_FUNCTION_LINES)
    return found


def test_measures_modules_and_functions():
    """The walk sees what it measures (a guard against one that finds nothing)."""
    sizes = _sizes()
    assert sizes["builder/cli.py::main"][0] > 5
    assert any("." in key.partition("::")[2] for key in sizes)  # methods and nested functions
    assert len(sizes) > 500


def test_no_module_or_function_over_the_limit():
    offenders = []
    for key, (size, limit) in sorted(_sizes().items()):
        recorded = KNOWN.get(key)
        if size > limit and recorded is None:
            offenders.append(f"{key}: {size} lines (limit {limit}): split it")
        elif recorded is not None and size > recorded:
            offenders.append(f"{key}: {size} lines, grew past its recorded {recorded} (limit {limit})")
    assert not offenders, "modules and functions over the size limits:\n" + "\n".join(offenders)


def test_known_offenders_are_still_over_the_limit():
    sizes = _sizes()
    stale = [key for key in sorted(KNOWN) if key not in sizes or sizes[key][0] <= sizes[key][1]]
    assert not stale, "KNOWN entries now gone or within the limit (remove them from KNOWN):\n" + "\n".join(stale)
