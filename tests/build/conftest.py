"""Fixtures for the build tests: recipe writing and the independent tools that check images."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

BUSYBOX = "/bin/busybox"


@pytest.fixture
def recipe(tmp_path: Path):
    """Write a recipe (dedented) into tmp_path and return its path."""

    def write(text: str, name: str = "test.def") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


@pytest.fixture
def busybox() -> str:
    if not Path(BUSYBOX).is_file():
        pytest.skip("busybox-static not installed (apt-get install busybox-static)")
    return BUSYBOX
