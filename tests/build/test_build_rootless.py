"""Rootless builds: the CLI run as an unprivileged user (an implied --fakeroot, as in Apptainer)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]
SBUILD = str(ROOT / ".venv" / "bin" / "sbuild")
if not Path(SBUILD).exists():
    SBUILD = shutil.which("sbuild") or SBUILD

pytestmark = [pytest.mark.skipif(not Path("/bin/busybox").is_file(), reason="apt-get install busybox-static")]


@pytest.fixture
def userdir(unprivileged_user):
    """A scratch directory the unprivileged user owns (removed as root afterwards)."""
    work = Path(tempfile.mkdtemp(prefix="sbuild-rootless-", dir="/tmp"))
    unprivileged_user.chown(work)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def as_user(user, work: Path, *args, **kw) -> subprocess.CompletedProcess:
    return user.run(SBUILD, *args, cwd=str(work), stdin=subprocess.DEVNULL, **kw)


def test_unprivileged_user_builds_hello_and_runs_it(unprivileged_user, userdir):
    r = as_user(unprivileged_user, userdir, ROOT / "recipes" / "hello.def", "out.simg")
    assert r.returncode == 0, r.stderr
    image = userdir / "out.simg"
    assert image.stat().st_uid == unprivileged_user.uid
    listing = subprocess.run(["unsquashfs", "-lln", "-o", "31", str(image)], capture_output=True, text=True,
                             check=True).stdout
    assert {line.split()[1] for line in listing.splitlines()} == {"0/0"}  # mksquashfs -all-root
    r = as_user(unprivileged_user, userdir, "run", "out.simg", "x")
    assert r.stdout == "Hello from sbuild\narguments: x\n", r.stderr
    assert not [p for p in userdir.iterdir() if p.name.startswith(".out.simg")]


@pytest.mark.slow
def test_unwritable_target_directory_fails_before_the_build_starts(unprivileged_user, userdir):
    """A TARGET in a directory the user cannot write is refused up front (it used to fail only
    when the finished image was written, after every %post had run), and nothing is written."""
    locked = userdir / "locked"
    locked.mkdir()
    os.chown(locked, 0, 0)
    locked.chmod(0o755)
    r = as_user(unprivileged_user, userdir, ROOT / "recipes" / "hello.def", "locked/out.simg")
    assert r.returncode == 2 and "cannot write locked/out.simg: permission denied" in r.stderr, r.stderr
    assert "[stage 1]" not in r.stderr and "internal error" not in r.stderr, r.stderr
    assert list(locked.iterdir()) == []


def test_rootless_post_is_root_with_subordinate_ids_and_update_keeps_them(unprivileged_user, userdir):
    if unprivileged_user.subuid is None:
        pytest.skip("the test user has no /etc/subuid range")
    start = unprivileged_user.subuid[0]
    (userdir / "a.def").write_text(textwrap.dedent("""
        Bootstrap: busybox
        MirrorURL: file:///bin/busybox

        %post
            id -u > /uid
            mkdir /private && chown 33:44 /private && chmod 0700 /private && echo s > /private/secret
    """).lstrip())
    (userdir / "b.def").write_text(textwrap.dedent("""
        Bootstrap: busybox
        MirrorURL: file:///bin/busybox

        %post
            cat /private/secret > /seen
    """).lstrip())
    (userdir / "c.def").write_text(textwrap.dedent(f"""
        Bootstrap: localimage
        From: {userdir}/sb

        %post
            cat /private/secret > /seen-again
    """).lstrip())
    unprivileged_user.chown(userdir)
    r = as_user(unprivileged_user, userdir, "--sandbox", "sb", "a.def", "--tmpdir", userdir)
    assert r.returncode == 0, r.stderr
    sb = userdir / "sb"
    assert (sb / "uid").read_text() == "0\n"
    st = (sb / "private").stat()
    assert (st.st_uid, st.st_gid) == (start + 32, start + 43)  # container ids 33:44 are subordinate ids
    # --update copies the sandbox (an unreadable directory of another id included) in the namespace
    r = as_user(unprivileged_user, userdir, "--sandbox", "--update", "sb", "b.def", "--tmpdir", userdir)
    assert r.returncode == 0, r.stderr
    assert (sb / "seen").read_text() == "s\n" and (sb / "private").stat().st_uid == start + 32
    # localimage copies it and packing reads it inside the namespace too; every bundle is removed
    r = as_user(unprivileged_user, userdir, "c.def", "packed.sif", "--tmpdir", userdir)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in userdir.iterdir()) == ["a.def", "b.def", "c.def", "packed.sif", "sb"]
    # a plain conversion runs as the user and cannot read it; --fakeroot converts in the namespace
    r = as_user(unprivileged_user, userdir, "sb", "conv.simg")
    assert r.returncode != 0 and "--fakeroot" in r.stderr and not (userdir / "conv.simg").exists()
    r = as_user(unprivileged_user, userdir, "--fakeroot", "sb", "conv.simg")
    assert r.returncode == 0, r.stderr
    cat = subprocess.run(["unsquashfs", "-cat", "-o", "31", str(userdir / "conv.simg"), "private/secret"],
                         capture_output=True, text=True)
    assert cat.stdout == "s\n"


def test_fakeroot_as_root_builds_as_root(sbuild, recipe, busybox, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("checks the root case")
    path = recipe("""
        Bootstrap: busybox
        MirrorURL: file:///bin/busybox

        %post
            id -u > /uid
    """)
    r = sbuild("--fakeroot", "--sandbox", tmp_path / "sb", path)
    assert r.status == 0, r.err
    assert (tmp_path / "sb" / "uid").read_text() == "0\n" and "already root" in r.err
    assert (tmp_path / "sb" / "uid").stat().st_uid == 0
