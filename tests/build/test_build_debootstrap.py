"""recipes/debian.def built for real against the Debian mirror, as root and rootless (slow, network).

Rootless runs the CLI as the unprivileged test user: debootstrap and %post then run in a
subuid-mapped user namespace, and mksquashfs packs with -all-root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from builder.images import probe

pytestmark = [pytest.mark.slow, pytest.mark.network,
              pytest.mark.skipif(not shutil.which("debootstrap", path="/usr/sbin:/usr/bin"),
                                 reason="apt-get install debootstrap")]

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "debian.def"
SBUILD = str(ROOT / ".venv" / "bin" / "sbuild")
if not Path(SBUILD).exists():
    SBUILD = shutil.which("sbuild") or SBUILD


def owners(image: Path) -> set[str]:
    info = probe(image)
    listing = subprocess.run(["unsquashfs", "-lln", "-o", str(info.fs_offset), str(image)], check=True,
                             capture_output=True, text=True).stdout
    return {line.split()[1] for line in listing.splitlines() if line.split()}


@pytest.fixture(params=["root", "user"])
def builder_run(request):
    """``(run(*args) -> CompletedProcess, workdir)`` for root or the unprivileged user."""
    if os.geteuid() != 0:
        pytest.skip("run as root: the test builds as root and as a created unprivileged user")
    work = Path(tempfile.mkdtemp(prefix="sbuild-deb-", dir="/tmp"))
    (work / "tmp").mkdir()  # the build's --tmpdir, checked empty afterwards
    if request.param == "root":
        def run(*args):
            return subprocess.run([sys.executable, "-m", "builder", *map(str, args)], cwd=work, capture_output=True,
                                  text=True, stdin=subprocess.DEVNULL, timeout=600)
    else:
        user = request.getfixturevalue("unprivileged_user")
        user.chown(work)

        def run(*args):
            return user.run(SBUILD, *args, cwd=str(work), timeout=600, stdin=subprocess.DEVNULL)
    try:
        yield request.param, run, work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_debian_recipe_builds_and_runs(builder_run):
    who, run, work = builder_run
    target, tmp = work / "debian.sif", work / "tmp"
    r = run(RECIPE, target, "--tmpdir", tmp)
    assert r.returncode == 0, r.stderr[-3000:]
    listing = subprocess.run(["siftool", "list", str(target)], capture_output=True, text=True, check=True).stdout
    assert "|FS (Squashfs/*System/amd64)" in listing  # the primary partition, as Apptainer writes it
    r = run("run", target)
    assert r.returncode == 0 and r.stdout.startswith("12."), r.stderr
    found = owners(target)
    if who == "root":
        assert "0/42" in found  # real owners kept (/etc/shadow is root:shadow)
    else:
        assert found == {"0/0"}  # packed with -all-root
    assert not list(tmp.iterdir())  # the bundle (with subordinate-id files) was removed
