"""The program under its four names: version lines as the real clients parse them, run-singularity.

Snakemake, cwltool and spython are installed from PyPI (pyproject's test extra); their own
version checks run against our ``apptainer``/``singularity`` on PATH, no mocks. Nextflow has no
version check (reference apptainer-cli.md §8): its binary only has to answer ``--version`` with
Apptainer's line, checked with a plain regex.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.cli.conftest import COMPAT

VERSION_LINE = re.compile(r"^apptainer version (\d+)\.(\d+)\.(\d+)\+sbuild\.[0-9A-Za-z.]+\n$")


@pytest.mark.parametrize("name", COMPAT)
def test_version_flag_says_apptainer_1_5_and_sbuild(cli, name):
    r = cli(name, "--version")
    assert r.status == 0 and r.err == ""
    m = VERSION_LINE.match(r.out)
    assert m, r.out
    assert (int(m[1]), int(m[2])) >= (1, 3)
    assert "sbuild" in r.out


@pytest.mark.parametrize("name", COMPAT)
def test_version_command_prints_the_bare_version(cli, name):
    r = cli(name, "version")
    assert r.status == 0 and r.out == cli(name, "--version").out.removeprefix("apptainer version ")


def test_sbuild_keeps_its_own_version_line(cli):
    r = cli("sbuild", "--version")
    assert r.status == 0 and re.match(r"^sbuild \S+\n$", r.out)


def _in_env(monkeypatch, cli_env):
    for key, value in cli_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SPYTHON_SINGULARITY_VERSION", raising=False)


def test_snakemake_accepts_our_apptainer(monkeypatch, cli_env):
    from packaging.version import Version

    from snakemake.deployment.singularity import Singularity

    _in_env(monkeypatch, cli_env)
    monkeypatch.setattr(Singularity, "instance", None)  # a singleton: check again, against our binary
    checker = Singularity()
    checker.check()  # raises WorkflowError("Minimum ... version ...") if the line does not parse
    assert checker.binary == "apptainer"
    assert checker.version.startswith("apptainer version")
    assert checker.parseversion(checker.version) >= Version("1.3")


def test_cwltool_reads_apptainer_1_1_or_newer(monkeypatch, cli_env):
    from packaging.version import Version

    import cwltool.singularity as cs

    _in_env(monkeypatch, cli_env)
    monkeypatch.setattr(cs, "_SINGULARITY_VERSION", None)
    monkeypatch.setattr(cs, "_SINGULARITY_FLAVOR", "")
    version, flavor = cs.get_version()  # runs `singularity --version`
    assert flavor == "apptainer" and version >= Version("1.3")
    assert cs.is_apptainer_1_1_or_newer()  # cwltool then sends `run --no-eval`


def test_spython_reads_the_first_line_of_singularity_version(monkeypatch, cli_env):
    from spython.utils.terminal import get_singularity_version

    _in_env(monkeypatch, cli_env)
    text = get_singularity_version()
    assert text.startswith("apptainer version 1.")
    assert "version 3" not in text  # spython's stopall then sends `instance stop --all`


def test_nextflow_line_matches_apptainer(cli):
    # Nextflow runs `apptainer` without a version check; what a user's check would match:
    r = cli("apptainer", "--version")
    assert re.match(r"apptainer version (\d+\.\d+\.\d+)", r.out)


def test_run_singularity_runs_a_simg_by_its_first_line(cli, busybox_image, cli_env):
    """`./image.simg ARGS` runs the runscript with ARGS, as in Singularity (the kernel runs
    `/usr/bin/env run-singularity ./image.simg ARGS`)."""
    if os.getuid() != 0:
        pytest.skip("the .simg runs as root here (the unprivileged profiles are in tests/runtime)")
    simg = busybox_image["simg"]
    assert simg.read_bytes()[:31] == b"#!/usr/bin/env run-singularity\n"
    r = subprocess.run([str(simg), "a", "b c"], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "runscript args: a b c\n"
    assert cli("run-singularity", simg, "x").out == "runscript args: x\n"


@pytest.mark.parametrize("name", COMPAT)
def test_run_help_prints_the_images_help(cli, busybox_image, name):
    r = cli(name, "run-help", busybox_image["sandbox"])
    assert r.status == 0 and r.out == "Prints its arguments.\n"


def test_run_help_without_help_says_so(cli, tmp_path, busybox_image):
    import shutil

    sb = tmp_path / "nohelp"
    shutil.copytree(busybox_image["sandbox"], sb, symlinks=True)
    (sb / ".singularity.d" / "runscript.help").unlink()
    r = cli("apptainer", "run-help", sb)
    assert r.status == 0 and r.out == "No help sections were defined for this image\n"


@pytest.mark.parametrize("name", COMPAT)
def test_apptainer_exec_keeps_the_fast_path(busybox_image, name, tmp_path):
    """Global flags and the compat modules cost no argparse, logging or typing import on
    `apptainer --quiet exec IMG CMD` (the launcher starts Python with -S)."""
    from tests.cli.conftest import BIN, ROOT

    script = f"""
import sys
sys.path.append({str(ROOT)!r})
from builder.cli import main
code = main(["--quiet", "exec", {str(busybox_image['sandbox'])!r}, "true"], prog={name!r})
print(code, sorted(m for m in ("argparse", "logging", "typing", "re") if m in sys.modules))
"""
    r = subprocess.run([str(BIN / "python"), "-S", "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "0 []", r.stdout + r.stderr
