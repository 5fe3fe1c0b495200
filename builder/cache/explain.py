"""Why a stage missed the cache: the inputs that changed since the stage's last build.

``changes(before, after)`` compares two input records (``builder.cache.keys``) and names
each difference as a user thinks of it: ``section %post changed``, ``file /src/app.py
changed``, ``build arg VERSION changed (1.0 → 1.1)``, ``base image changed (sha256:… →
sha256:…)``, ``the previous stage changed``. ``describe(...)`` is the one line
``--cache-explain`` prints per stage. Values longer than a digest are not shown, only named.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["changes", "describe"]

_SHORT = 24


def _show(value: str | None) -> str:
    if value is None:
        return "none"
    if value.startswith("sha256:"):
        return value[:19]
    return value if len(value) <= _SHORT and "\n" not in value else "…"


def _what(name: str) -> str:
    if name == "base":
        return "base image"
    if name == "parent":
        return "the bootstrap checkpoint (base image or header)"
    if name.startswith("build-arg "):
        return "build arg " + name[len("build-arg "):]
    if name.startswith("header."):
        return "header " + name[len("header."):].capitalize()
    if name.startswith("from-stage "):
        return "stage " + name[len("from-stage "):] + " (used by %files from)"
    return name


def changes(before: Mapping[str, str] | None, after: Mapping[str, str]) -> list[str]:
    """The differences between two input records, one phrase each (``before`` None: first build)."""
    if before is None:
        return ["not built before"]
    found = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        what = _what(name)
        if old is None:
            found.append(f"{what} added")
        elif new is None:
            found.append(f"{what} removed")
        elif _show(old) == "…" or name.startswith(("section ", "files ")):
            found.append(f"{what} changed")
        else:
            found.append(f"{what} changed ({_show(old)} → {_show(new)})")
    return found or ["same inputs (the entry was removed, evicted or corrupt)"]


def describe(stage: str, phase: str, hit: str | None, reasons: list[str], key: str) -> str:
    """``stage NAME phase: hit (local)`` or ``… miss: section %post changed; …``."""
    head = f"cache: stage {stage} {phase} [{key[:12]}]"
    if hit:
        return f"{head}: hit ({hit})"
    return f"{head}: miss: " + "; ".join(reasons)
