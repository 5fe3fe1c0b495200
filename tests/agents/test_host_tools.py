"""Host tools and privilege, decided before anything is fetched: a missing dnf/zypper/pacstrap
makes ``check`` and ``build`` exit 3 naming the Debian package; ``doctor`` lists the tools; a
user without subordinate ids is refused with the reason and the mirror is never asked."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from agentfixtures import RECIPES

from builder.sources.pkgtools import HOST_TOOLS

SBUILD = str(RECIPES.parent / ".venv" / "bin" / "sbuild")


@pytest.mark.slow
@pytest.mark.parametrize("agent, header, package", [
    ("dnf", "MirrorURL: http://127.0.0.1:9/x\n", "dnf"),
    ("yum", "MirrorURL: http://127.0.0.1:9/x\n", "dnf"),
    ("zypper", "MirrorURL: http://127.0.0.1:9/x\n", "zypper"),
    ("arch", "", "arch-install-scripts"),
])
def test_missing_tool_exits_3_naming_the_package(agent, header, package, tmp_path):
    recipe = tmp_path / "r.def"
    recipe.write_text(f"Bootstrap: {agent}\n{header}")
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "LANG": "C.UTF-8"}  # nothing on PATH
    r = subprocess.run([SBUILD, "check", recipe], capture_output=True, text=True, env=env)
    assert r.returncode == 3, r.stderr
    assert f"apt-get install {package}" in r.stderr
    r = subprocess.run([SBUILD, "build", tmp_path / "out.sif", recipe], capture_output=True, text=True, env=env,
                       cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert f"hint: apt-get install {package}" in r.stderr
    assert not (tmp_path / "out.sif").exists()


def test_doctor_lists_the_agent_tools(sbuild):
    r = sbuild("doctor", "--json")
    names = {c["check"] for c in json.loads(r.out)}
    assert {tool for tools in HOST_TOOLS.values() for tool, _pkg in tools} <= names


def test_user_without_subids_is_refused_up_front(nobody, rpm_repos, server):
    tmp_path = Path(tempfile.mkdtemp(prefix="sbuild-nobody-", dir="/tmp"))  # (pytest's tmp is 0700)
    recipe = tmp_path / "r.def"
    recipe.write_text(f"Bootstrap: dnf\nMirrorURL: {server.url}/refused/\n")
    recipe.chmod(0o644)
    tmp_path.chmod(0o777)
    before = len(server.httpd.requests)
    r = subprocess.run(["setpriv", f"--reuid={nobody[0]}", f"--regid={nobody[1]}", "--clear-groups", "env", "-i",
                        "PATH=/usr/bin:/bin:/usr/sbin:/sbin", f"HOME={tmp_path}", SBUILD, "build",
                        tmp_path / "o.sif", recipe], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert "a rootless 'dnf' build needs subordinate ids: rpm installs files owned by other users" in r.stderr
    assert len(server.httpd.requests) == before  # nothing was fetched
    shutil.rmtree(tmp_path)
