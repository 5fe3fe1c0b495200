"""``run library://…`` and ``run shub://…`` (issue 13, item 4): the image is downloaded once
(verified, through the blob cache), kept as a SIF named by its sha256 under
``<cache>/images/<kind>/``, and run; the second run uses that SIF."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs the images as root")


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "builder", *args], capture_output=True, text=True, cwd=ROOT,
                          stdin=subprocess.DEVNULL, timeout=120, env={**os.environ, **env})


def _entries(cache: Path, kind: str) -> list[str]:
    return sorted(p.name for p in (cache / "images" / kind).iterdir() if not p.name.startswith("."))


def test_run_library_uri_downloads_once(library, store, env):
    first = _run("run", "library://test/hello/hello:1.0", APPTAINER_LIBRARY=library.url)
    assert (first.returncode, first.stdout) == (0, "hello from the library image\n"), first.stderr
    entries = _entries(env, "library")
    assert len(entries) == 1 and (env / "blobs" / "sha256" / entries[0]).is_file()  # named by the image's sha256
    before = len(store.seen)
    second = _run("run", "library://test/hello/hello:1.0", APPTAINER_LIBRARY=library.url)
    assert (second.returncode, second.stdout) == (0, "hello from the library image\n"), second.stderr
    assert "Using cached SIF image" in second.stderr and len(store.seen) == before


def test_exec_shub_uri_converts_the_simg_to_a_cached_sif(shub, env):
    uri = f"shub://{shub.host}/vsoch/hello"
    r = _run("run", uri, APPTAINER_NOHTTPS="1")
    assert (r.returncode, r.stdout) == (0, "hello from the shub image\n"), r.stderr
    [entry] = _entries(env, "shub")
    assert (env / "images" / "shub" / entry).read_bytes()[32:41] == b"SIF_MAGIC"
