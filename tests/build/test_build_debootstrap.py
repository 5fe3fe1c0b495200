"""debootstrap builds against the real Debian mirror (slow, network)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.network]


@pytest.mark.skipif(os.geteuid() != 0, reason="debootstrap builds need root (rootless not supported yet)")
@pytest.mark.skipif(not shutil.which("debootstrap", path="/usr/sbin:/usr/bin"), reason="apt-get install debootstrap")
def test_debian_recipe_builds_and_reports_os_release(sbuild, recipe, tmp_path):
    path = recipe("""
        Bootstrap: debootstrap
        OSVersion: bookworm
        MirrorURL: http://deb.debian.org/debian

        %runscript
            cat /etc/os-release
    """)
    target = tmp_path / "debian.sif"
    r = sbuild(path, target, "--notest")
    assert r.status == 0, r.err
    listing = subprocess.run(["siftool", "list", str(target)], capture_output=True, text=True, check=True).stdout
    assert "FS" in listing
    sandbox = tmp_path / "sb"
    assert sbuild("--sandbox", sandbox, target).status == 0
    assert 'VERSION_CODENAME=bookworm' in (sandbox / "usr/lib/os-release").read_text()
