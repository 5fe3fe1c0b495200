"""Helpers for the recipe tests: Go's zero values when comparing against upstream JSON."""

from __future__ import annotations

import copy
from typing import Any

_SCRIPT = {"args": "", "script": ""}


def go_zero_filled(expected: dict[str, Any]) -> dict[str, Any]:
    """Upstream JSON predates some fields; Go's decoder gives them zero values."""
    out = copy.deepcopy(expected)
    out.setdefault("header", None)
    out.setdefault("customData", None)
    image = out.setdefault("imageData", {})
    image.setdefault("metadata", None)
    scripts = image.setdefault("imageScripts", {})
    for name in ("help", "environment", "runScript", "test", "startScript"):
        scripts[name] = {**_SCRIPT, **scripts.get(name, {})}
    build = out.setdefault("buildData", {})
    build_scripts = build.setdefault("buildScripts", {})
    for name in ("pre", "setup", "post", "test", "arguments"):
        build_scripts[name] = {**_SCRIPT, **build_scripts.get(name, {})}
    return out
