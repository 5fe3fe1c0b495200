"""Fixtures shared by every test area.

Each area (recipe, runtime, images, registry, build) keeps its own fixtures in
``tests/<area>/conftest.py``; only what several areas use lives here.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.cli import main

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CONFORMANCE = SHARED / "conformance"
RECIPES = ROOT / "recipes"


@pytest.fixture(scope="session")
def conformance() -> Path:
    """``../shared/conformance``, or a skip that says why it is missing."""
    if not CONFORMANCE.is_dir():
        pytest.skip(f"conformance data not found at {CONFORMANCE} (it sits beside the clone in CI)")
    return CONFORMANCE


@dataclass
class CliResult:
    status: int
    out: str
    err: str


@pytest.fixture
def sbuild():
    """Run ``sbuild ARGS…`` in this process and capture its status, stdout and stderr."""

    def run(*args: str | os.PathLike) -> CliResult:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main([str(a) for a in args])
        return CliResult(status, out.getvalue(), err.getvalue())

    return run
