"""Build-time checks run before the work and say what to do: noexec/full TMPDIR, no room for the
image, an existing target, a missing mksquashfs. Mount-based cases need root (small tmpfs mounts,
always unmounted)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs (needs root)")

BIG = """
    Bootstrap: scratch

    %setup
        head -c 6000000 /dev/urandom > "$SINGULARITY_ROOTFS/big"
"""


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "sbuild-test", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@needs_root
def test_noexec_tmpdir_is_refused_before_anything_runs(sbuild, recipe, tmp_path, monkeypatch):
    path = recipe("Bootstrap: scratch\n\n%pre\n    touch pre-ran\n")
    monkeypatch.chdir(tmp_path)
    with tmpfs(tmp_path / "noexec", "noexec,size=64m") as tmp:
        r = sbuild(path, tmp_path / "x.simg", "--tmpdir", tmp)
        assert r.status == 3 and "noexec" in r.err and "--tmpdir or TMPDIR" in r.err
        assert not list(tmp.iterdir())
    assert not (tmp_path / "pre-ran").exists() and not (tmp_path / "x.simg").exists()


@needs_root
def test_apptainer_tmpdir_variable_is_checked_too(sbuild, recipe, tmp_path, monkeypatch):
    with tmpfs(tmp_path / "small", "size=8m") as tmp:
        monkeypatch.setenv("APPTAINER_TMPDIR", str(tmp))
        r = sbuild(recipe("Bootstrap: scratch\n"), tmp_path / "x.simg")
    assert r.status == 3 and "less than 32 MiB free" in r.err and "--tmpdir" in r.err


@needs_root
def test_no_room_for_the_image_is_said_before_packing(sbuild, recipe, tmp_path):
    with tmpfs(tmp_path / "out", "size=1m") as out:
        r = sbuild(recipe(BIG), out / "x.sif", "--tmpdir", tmp_path)
        assert r.status == 3, r.err
        assert f"no room for {out / 'x.sif'}" in r.err and "free" in r.err and "larger filesystem" in r.err
        assert not list(out.iterdir())  # no target, no temporary
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("sbuild-bundle-")]


@needs_root
def test_a_sandbox_on_another_filesystem_needs_room_for_a_copy(sbuild, recipe, tmp_path):
    with tmpfs(tmp_path / "out", "size=2m") as out:
        r = sbuild(recipe(BIG), "--sandbox", out / "sb", "--tmpdir", tmp_path)
        assert r.status == 3 and "no room" in r.err
        assert not list(out.iterdir())


def test_a_sandbox_on_the_same_filesystem_is_moved_without_a_copy(sbuild, recipe, tmp_path):
    r = sbuild(recipe(BIG), "--sandbox", tmp_path / "sb", "--tmpdir", tmp_path)
    assert r.status == 0, r.err
    assert (tmp_path / "sb" / "big").stat().st_size == 6000000


def test_existing_target_is_refused_before_building(sbuild, recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "t.sif"
    target.write_text("keep")
    r = sbuild(recipe("Bootstrap: scratch\n\n%pre\n    touch pre-ran\n"), target)
    assert r.status == 2 and "already exists" in r.err and "--force" in r.err
    assert target.read_text() == "keep" and not (tmp_path / "pre-ran").exists()
    (tmp_path / "sb").mkdir()
    (tmp_path / "sb" / "f").write_text("x")
    r = sbuild(recipe("Bootstrap: scratch\n"), "--sandbox", tmp_path / "sb")
    assert r.status == 2 and "--update" in r.err


@needs_root
@pytest.mark.skipif(not shutil.which("unshare"), reason="util-linux unshare")
def test_missing_mksquashfs_is_needed_only_when_asked_for(recipe, tmp_path):
    """sbuild packs with its own writer; mksquashfs is required (exit 3, before %pre, naming
    the package) only with --mksquashfs-args or SBUILD_PACKER=mksquashfs."""
    path = recipe("Bootstrap: scratch\n\n%pre\n    touch pre-ran\n")
    blank = tmp_path / "blank"
    blank.write_text("")
    mksquashfs = shutil.which("mksquashfs")
    hide = " && ".join(f"mount --bind {blank} {p}" for p in {mksquashfs, "/usr/bin/mksquashfs"} if p and
                       os.path.exists(p))
    script = f'{hide} && exec "$@"'
    base = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", sys.executable, "-m", "builder"]
    for extra, env in ((["--mksquashfs-args", "-comp xz"], {}), ([], {"SBUILD_PACKER": "mksquashfs"})):
        r = subprocess.run([*base, *extra, path, tmp_path / "x.simg"], capture_output=True, text=True,
                           cwd=tmp_path, env={**os.environ, **env})
        assert r.returncode == 3, r.stderr
        assert "mksquashfs not found" in r.stderr and "apt-get install squashfs-tools" in r.stderr
        assert not (tmp_path / "pre-ran").exists() and not (tmp_path / "x.simg").exists()
    r = subprocess.run([*base, path, tmp_path / "x.simg"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "pre-ran").exists()
    listing = subprocess.run(["unsquashfs", "-o", "31", "-l", tmp_path / "x.simg"], capture_output=True, text=True)
    assert "squashfs-root/.singularity.d/runscript" in listing.stdout
    r = subprocess.run([*base, "--sandbox", tmp_path / "sb", path], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
