"""``sbuild build`` with a URI: the URI is always the SOURCE, in either argument order,
whether TARGET exists or not (issue 9, item 7: ``build --force OUT docker://…`` read an
existing OUT as the SOURCE and failed with "directory docker:/… does not exist")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from .conftest import REPO

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "builder", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, stdin=subprocess.DEVNULL, timeout=300, env=env)


@pytest.mark.parametrize("existing", [True, False], ids=["out-exists", "no-out"])
@pytest.mark.parametrize("force", [True, False], ids=["force", "no-force"])
@pytest.mark.parametrize("order", ["target-source", "source-target"])
def test_force_out_uri_reads_the_uri_as_source(registry, tmp_path, order, force, existing):
    env = {**os.environ, "APPTAINER_CACHEDIR": str(tmp_path / "cache")}
    out, uri = tmp_path / "out.sif", f"docker://{registry.host}/{REPO}:1.0"
    if existing:
        out.write_bytes(b"an older image")
    pair = [out, uri] if order == "target-source" else [uri, out]
    r = cli("build", *(["--force"] if force else []), "--nohttps", "--arch", "amd64", *pair, env=env)
    assert "does not exist" not in r.stderr, r.stderr
    if existing and not force:
        assert r.returncode == 2, r.stderr
        assert f"{out} already exists" in r.stderr and out.read_bytes() == b"an older image"
        return
    assert r.returncode == 0, r.stderr
    assert f"building {out} from {uri}" in r.stderr
    assert out.read_bytes()[:200] != b"an older image" and out.stat().st_size > 4096
