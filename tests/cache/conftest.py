"""Fixtures of the build-cache tests: a per-test cache root, a recipe directory, and builds
through the CLI in this process (``build``) whose explanation lines are parsed."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

BUSYBOX = "/bin/busybox"
EPOCH = "1700000000"


@pytest.fixture(autouse=True)
def _cache_root(tmp_path, monkeypatch):
    if not Path(BUSYBOX).is_file():
        pytest.skip("busybox-static not installed (apt-get install busybox-static)")
    monkeypatch.delenv("SBUILD_BUILD_CACHE", raising=False)  # on here (tests/conftest.py turns it off)
    monkeypatch.setenv("SBUILD_CACHEDIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def write(tmp_path):
    def put(text: str, name: str = "r.def") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path
    return put


def outcome(err: str) -> dict[str, str]:
    """{"1 stage": "hit (local)" or "miss: …", "1 bootstrap": …, "image": "hit"} from --cache-explain."""
    found = {}
    for m in re.finditer(r"^cache: stage (\S+) (stage|bootstrap) \[\w+\]: (.*)$", err, re.M):
        found[f"{m.group(1)} {m.group(2)}"] = m.group(3)
    if re.search(r"^cache: image \[\w+\]: hit", err, re.M):
        found["image"] = "hit"
    return found


@pytest.fixture
def build(sbuild):
    def run(recipe: Path, target: str = "out.sif", *extra: str):
        r = sbuild("build", "--cache-explain", "--force", *extra, str(recipe), target)
        assert r.status == 0, r.err
        r.outcome = outcome(r.err)
        return r
    return run
