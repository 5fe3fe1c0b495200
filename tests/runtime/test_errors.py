"""Bad input: each a one-line error with exit code 2 or 3, and nothing left behind."""

from __future__ import annotations

import subprocess

import pytest


def _one_line(r):
    lines = [l for l in r.err.splitlines() if not l.startswith("  hint:")]
    assert len(lines) == 1, r.err
    return lines[0]


def test_missing_image(profile, workdir):
    r = profile.sbuild("exec", workdir / "nope.sif", "true")
    assert r.status == 2
    assert "nope.sif" in _one_line(r)


def test_bad_magic(profile, workdir):
    bad = workdir / "bad.simg"
    bad.write_bytes(b"this is not an image at all" * 100)
    profile.own(bad)
    r = profile.sbuild("exec", bad, "true")
    assert r.status == 2 and "not an image" in _one_line(r)


def test_truncated_squashfs(profile, images, workdir):
    data = images["simg"].read_bytes()
    cut = workdir / "cut.simg"
    cut.write_bytes(data[: len(data) // 2])
    profile.own(cut)
    r = profile.sbuild("exec", cut, "true")
    assert r.status == 2
    _one_line(r)


def test_sif_without_system_partition(profile, workdir):
    sif = workdir / "nosys.sif"
    subprocess.run(["siftool", "new", str(sif)], check=True, capture_output=True)
    (workdir / "def").write_text("Bootstrap: scratch\n")
    subprocess.run(["siftool", "add", str(sif), str(workdir / "def"), "--datatype", "1"], check=True,
                   capture_output=True)
    profile.own(workdir)
    r = profile.sbuild("exec", sif, "true")
    assert r.status == 2 and "system partition" in _one_line(r)


@pytest.mark.parametrize("args", [["--overlay", "/no/such/overlay"], ["--env", "NOEQUALS"],
                                  ["--bind", "a:b:c:d"]])
def test_bad_flags(profile, images, args):
    r = profile.sbuild("exec", *args, images["sandbox"], "true")
    assert r.status == 2
    _one_line(r)
