"""Helpers shared by the reliability scenario files (a plain module: conftest modules cannot be
imported by name under --import-mode=importlib)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SBUILD = str(ROOT / ".venv" / "bin" / "sbuild")
APPTAINER = str(ROOT / ".venv" / "bin" / "apptainer")
REPO = "test/hand"


def no_internal_error(text: str) -> None:
    """Assert that ``text`` (a command's stderr) shows no crash: no internal error, no traceback."""
    assert "internal error" not in text and "Traceback" not in text, text[-3000:]


def run_sbuild(*args, env: dict | None = None, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """``sbuild ARGS`` as a subprocess (bounded by ``timeout``), text output captured."""
    full = {**os.environ, **(env or {})}
    return subprocess.run([SBUILD, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=full, **kw)
