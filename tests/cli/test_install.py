"""``pip install .`` gives the program's four names, each started as setup.sh's launcher is.

pip's console scripts run Python with site processing and ``import re`` (~10 ms per launch,
which put ``exec`` at 1.57x the mount+chroot floor, issue 13); pyproject.toml ships
``bin/<name>`` (``builder.commands.launcher.installed_script``) as wheel scripts instead, which
the installation owner's first command makes direct (``go_direct``: no sh hop).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builder.commands.launcher import NAMES, direct_script, installed_script

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_scripts_are_the_launcher_for_every_name():
    for name in NAMES:
        script = ROOT / "bin" / name
        assert script.read_text() == installed_script(), f"bin/{name} differs from installed_script()"
        assert os.access(script, os.X_OK), f"bin/{name} is not executable"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "[project.scripts]" not in pyproject  # (a console script of the same name would shadow it)
    for name in NAMES:
        assert f'"bin/{name}"' in pyproject


def _imports(argv: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, set[str]]:
    r = subprocess.run(argv, capture_output=True, text=True, env={**env, "PYTHONPROFILEIMPORTTIME": "1"})
    names = {line.rsplit("|", 1)[1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    return r, names


@pytest.mark.slow
def test_pip_install_gives_four_names_that_start_without_site(tmp_path):
    # (from a copy: an in-tree build leaves build/ in the checkout, and concurrent ones race there)
    tree = tmp_path / "src"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(".*", "build", "tests", "__pycache__", "*.egg-info"))
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable, "-m", "venv",
                    str(venv)], check=True)
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                        "--disable-pip-version-check", str(tree)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for name in NAMES:
        assert (venv / "bin" / name).read_text() == installed_script(), f"{name}: pip rewrote the script"
    # where .pyc files may not be written (base.importcache's rule), the sh launchers stay
    r = subprocess.run([str(venv / "bin" / "sbuild"), "--version"], capture_output=True, text=True,
                       env={**env, "PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 0 and (venv / "bin" / "sbuild").read_text() == installed_script(), r.stderr
    for round in ("as pip installed them", "after the owner's first command made them direct"):
        for name in NAMES:
            script = venv / "bin" / name
            # (the launch path up to the image lookup; run-singularity's IMAGE is the word "exec")
            r, imported = _imports([str(script), "exec", str(tmp_path / "missing.sif"), "true"], env)
            assert "image not found" in r.stderr and r.returncode in (2, 255), (round, name, r.stderr[-300:])
            assert "builder.cli" in imported, f"{name}, {round}: the package was not imported from the venv"
            assert "site" not in imported and "re" not in imported, f"{name}, {round}: started with site or re"
        # the first command replaced all four: the same code under a direct #! line, no sh
        for name in NAMES:
            assert (venv / "bin" / name).read_text() == direct_script(str(venv / "bin" / "python3")), name
            assert os.access(venv / "bin" / name, os.X_OK)
    r = subprocess.run([str(venv / "bin" / "apptainer"), "--version"], capture_output=True, text=True, env=env)
    assert r.stdout.startswith("apptainer version 1.5"), r.stdout + r.stderr
    # an argparse command (site loaded on demand) works too
    r = subprocess.run([str(venv / "bin" / "singularity"), "help", "exec"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "exec" in r.stdout, r.stderr
