"""The import rules between sbuild's layers (issue 14), read from the source with ``ast``.

Lower layers never import higher ones:

- ``base`` imports nothing of ours but itself;
- ``grammar`` imports only ``base``;
- ``builder.recipe`` (the recipe model) imports only ``base`` and ``grammar``;
- ``builder.images`` imports only ``base`` and itself;
- ``runtime`` imports only ``base``, itself and ``builder.images.probe``; what loading that
  probe loads (``builder/__init__``, ``builder/images/__init__``, the probe and the header
  readers it needs) imports nothing else of ours;
- outside ``runtime/``, the runtime is reached through its public API only: ``runtime``
  itself and the launch steps the CLI drives (``RUNTIME_PUBLIC``; never ``runtime._sys``,
  ``runtime.process``, ``runtime.namespaces`` and the other internals);
- ``builder.sources`` never imports ``builder.steps``, ``builder.commands`` or ``builder.cli``;
  ``builder.steps`` never imports ``builder.commands`` or ``builder.cli``;
- nothing imports ``builder.cli`` but ``builder.__main__``;
- no import cycle between packages (a package is ``base``, ``grammar``, ``runtime``, or the
  first two dotted parts under ``builder``: ``builder.sources``, ``builder.steps``, …).

Every ``import`` and ``from … import`` counts, absolute or relative, at module level or
inside a function or an ``if TYPE_CHECKING:`` block; nothing is executed. Imports made with
``importlib`` from a string table (the CLI's command table, the lazy ``__getattr__`` of a
package) are not seen.

``KNOWN`` lists the edges that break a rule today, each with who removes it; an edge that
breaks a rule and is not listed fails the test, and a listed edge that no longer breaks one
fails the second test, so the list only shrinks.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("base", "grammar", "builder", "runtime")

# Modules the runtime loads through builder.images.probe (package __init__s included).
PROBE_CLOSURE = {"builder", "builder.images", "builder.images.probe", "builder.images.headers",
                 "builder.images.sif"}
# The runtime as the rest of sbuild may use it: the package (run_action, run_in_sandbox,
# call_in_userns, ...) and the launch steps the CLI drives itself (runtime/__init__.py says which).
RUNTIME_PUBLIC = {"runtime", "runtime.description", "runtime.plan", "runtime.prefetch", "runtime.instances",
                  "runtime.capabilities"}

# (importer, imported) edges that break a rule and are tolerated for now, each with the reason and
# who removes it. Empty: keep it so.
KNOWN: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _modules() -> dict[str, Path]:
    """Every module of ours by dotted name (a package by its own name, not ``__init__``)."""
    found = {}
    for top in OURS:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_ours(name: str) -> bool:
    return name.split(".")[0] in OURS


def _package_of(module: str, path: Path) -> str:
    """The package relative imports in ``module`` start from."""
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _targets(node: ast.ImportFrom, module: str, path: Path) -> Iterator[str]:
    if node.level:
        base = _package_of(module, path).split(".")
        base = base[: len(base) - node.level + 1]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    for alias in node.names:
        # ``from pkg import mod`` imports the submodule pkg.mod when there is one
        sub = f"{source}.{alias.name}"
        yield sub if sub in MODULES else source


@functools.cache
def _edges() -> list[Edge]:
    """Every import of ours in the product packages (read once per session)."""
    edges = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = list(_targets(node, module, path))
            else:
                continue
            edges += [Edge(module, name, path, node.lineno) for name in dict.fromkeys(names) if _is_ours(name)]
    return edges


def _within(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _layer_rule(edge: Edge) -> str | None:
    """The layer rule ``edge`` breaks, or None."""
    a, b = edge.importer, edge.imported
    if _within(a, "base") and not _within(b, "base"):
        return "base imports nothing of ours"
    if _within(a, "grammar") and not _within(b, "base", "grammar"):
        return "grammar imports only base"
    if _within(a, "builder.recipe") and not _within(b, "base", "grammar", "builder.recipe"):
        return "the recipe model (builder.recipe) imports only base and grammar"
    if _within(a, "builder.images") and not _within(b, "base", "builder.images"):
        return "builder.images imports only base and itself"
    if a in PROBE_CLOSURE and not (_within(b, "base") or b in PROBE_CLOSURE):
        return (f"{a} is loaded by the runtime (through builder.images.probe): it imports only base "
                f"and {sorted(PROBE_CLOSURE)}")
    if _within(a, "runtime") and not (_within(b, "base", "runtime") or b == "builder.images.probe"):
        return "runtime imports only base, runtime and builder.images.probe"
    if not _within(a, "runtime") and _within(b, "runtime") and b not in RUNTIME_PUBLIC:
        return f"outside runtime/, the runtime is imported only through its public API {sorted(RUNTIME_PUBLIC)}"
    if _within(a, "builder.sources") and _within(b, "builder.steps", "builder.commands", "builder.cli"):
        return "builder.sources never imports builder.steps, builder.commands or builder.cli"
    if _within(a, "builder.steps") and _within(b, "builder.commands", "builder.cli"):
        return "builder.steps never imports builder.commands or builder.cli"
    if _within(b, "builder.cli") and a not in ("builder.cli", "builder.__main__"):
        return "nothing imports builder.cli but builder.__main__"
    return None


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "builder" else parts[0]


def _package_graph(edges: list[Edge]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for e in edges:
        a, b = _package(e.importer), _package(e.imported)
        if a != b:
            graph.setdefault(a, set()).add(b)
    return graph


def _path(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """A shortest package path from ``start`` to ``goal`` (breadth first), or None."""
    paths, seen = [[start]], {start}
    while paths:
        nxt = []
        for path in paths:
            for b in sorted(graph.get(path[-1], ())):
                if b == goal:
                    return [*path, b]
                if b not in seen:
                    seen.add(b)
                    nxt.append([*path, b])
        paths = nxt
    return None


def _violations(edges: list[Edge]) -> list[tuple[Edge, str]]:
    """Each edge that breaks a layer rule, and each edge that closes a cycle between packages.

    Cycles are looked for without the KNOWN edges: the ones today's KNOWN edges close are
    known too, and any other cycle is new.
    """
    found = [(e, rule) for e in edges if (rule := _layer_rule(e))]
    graph = _package_graph([e for e in edges if (e.importer, e.imported) not in KNOWN])
    for e in edges:
        a, b = _package(e.importer), _package(e.imported)
        if (e.importer, e.imported) not in KNOWN and a != b and (back := _path(graph, b, a)):
            found.append((e, "no import cycle between packages: " + " -> ".join([a, *back])))
    return found


def _known_still_needed(edges: list[Edge]) -> set[tuple[str, str]]:
    """The KNOWN edges that exist and break a layer rule or lie on a cycle between packages."""
    graph = _package_graph(edges)
    needed = set()
    for e in edges:
        a, b = _package(e.importer), _package(e.imported)
        if (e.importer, e.imported) in KNOWN and (_layer_rule(e) or (a != b and _path(graph, b, a))):
            needed.add((e.importer, e.imported))
    return needed


def test_resolves_the_imports_it_checks():
    """The walk sees the edges it must (a guard against a parser that finds nothing)."""
    edges = _edges()
    assert any(_within(e.importer, "runtime") and e.imported == "builder.images.probe" for e in edges)
    assert ("builder.images.probe", "builder.images.headers") in {(e.importer, e.imported) for e in edges}
    assert any(_within(e.importer, "builder.recipe") and e.imported == "grammar" for e in edges)
    unresolved = sorted({e.imported for e in edges} - set(MODULES))
    assert not unresolved, f"imports of modules that do not exist: {unresolved}"


@pytest.mark.parametrize(("module", "source", "expected"), [
    ("runtime.mounts", "from . import _sys", "runtime._sys"),
    ("runtime.mounts", "from .description import Bind", "runtime.description"),
    ("builder.steps.userns", "from ..images import probe", "builder.images.probe"),
    ("builder.steps.userns", "from ..images import ImageInfo", "builder.images"),
    ("builder.images", "from . import probe", "builder.images.probe"),
    ("builder.images", "from .. import bundle", "builder.bundle"),
    ("builder.cli", "from builder.commands import build", "builder.commands.build"),
])
def test_relative_and_from_imports_resolve(module, source, expected):
    path = ROOT / (module.replace(".", "/") + ("/__init__.py" if module == "builder.images" else ".py"))
    node = ast.parse(source).body[0]
    assert list(_targets(node, module, path)) == [expected]


@pytest.mark.parametrize(("importer", "imported", "rule"), [
    ("base.errors", "builder.bundle", "base imports nothing"),
    ("grammar", "builder.recipe", "grammar imports only base"),
    ("builder.recipe.model", "builder.images", "recipe model"),
    ("builder.images.convert", "builder.steps", "builder.images imports only base"),
    ("builder.images.sif", "builder.images.convert", "loaded by the runtime"),
    ("builder", "builder.recipe", "loaded by the runtime"),
    ("runtime.plan", "builder.images", "runtime imports only"),
    ("builder.steps.container", "runtime.process", "public API"),
    ("builder.sources.shub", "builder.commands.pull", "builder.sources never imports"),
    ("builder.steps.apps", "builder.cli", "builder.steps never imports"),
    ("builder.commands.build", "builder.cli", "nothing imports builder.cli"),
])
def test_each_rule_catches_its_edge(importer, imported, rule):
    """Each rule fires on an edge that breaks it (the rules themselves can fail)."""
    found = _layer_rule(Edge(importer, imported, ROOT / "x.py", 1))
    assert found is not None and rule in found


@pytest.mark.parametrize(("importer", "imported"), [
    ("runtime.lower", "builder.images.probe"), ("builder.steps.container", "runtime"),
    ("builder.__main__", "builder.cli"), ("builder.recipe.scan", "grammar"),
    ("builder.steps.pipeline", "builder.sources"), ("builder.commands.run", "runtime.plan"),
])
def test_allowed_edges_pass(importer, imported):
    assert _layer_rule(Edge(importer, imported, ROOT / "x.py", 1)) is None


def test_no_import_breaks_a_layer_rule():
    new = [(e, rule) for e, rule in _violations(_edges()) if (e.importer, e.imported) not in KNOWN]
    lines = [f"{e.where()}: {e.importer} imports {e.imported}: breaks '{rule}'" for e, rule in new]
    assert not new, "imports that break a layer rule (fix the import; KNOWN is for edges that predate the rule):\n" \
        + "\n".join(lines)


def test_known_exceptions_still_break_a_rule():
    """A KNOWN edge that is gone or now allowed is removed from KNOWN, so the list only shrinks."""
    stale = sorted(KNOWN - _known_still_needed(_edges()))
    assert not stale, "KNOWN edges that no longer break a rule (remove them from KNOWN):\n" \
        + "\n".join(f"{a} -> {b}" for a, b in stale)
