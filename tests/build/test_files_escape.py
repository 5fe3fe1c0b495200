"""``%files`` never writes through a symlink (or device) that a base image planted.

Each test builds a real recipe from a sandbox base that plants an outward link: a file, the
destination directory, a parent directory, a directory or file met during a recursive copy, a
dangling absolute link, a relative ``../..`` link; and the same for ``%files from STAGE`` on
both sides. Every build runs as root and as the unprivileged user (the host "victim" belongs
to whoever builds, so a write through the link would succeed). Afterwards the host directory
is byte-for-byte what it was, and the content sits where Apptainer resolves the destination:
inside the rootfs, as if the rootfs were ``/``.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SBUILD = str(ROOT / ".venv" / "bin" / "sbuild")

pytestmark = [pytest.mark.timeout(300)]

HOST = "HOST\n"
PAYLOAD = "PAYLOAD\n"
UP = "../" * 12  # more than enough to climb out of any bundle


@dataclass
class Scene:
    """A scratch area: ``host`` (the canary outside), ``work`` (the build's cwd), ``base`` (the sandbox)."""

    top: Path
    host: Path
    work: Path
    base: Path
    run_build: object

    def build(self, body: str, *, base: Path | None = None) -> tuple[int, str, Path]:
        out = self.work / "out"
        (self.work / "r.def").write_text(f"Bootstrap: localimage\nFrom: {base or self.base}\n\n"
                                         + textwrap.dedent(body).lstrip())
        self.run_build.chown(self.top)
        status, err = self.run_build(out)
        return status, err, out

    def inside(self, out: Path, host_path: Path) -> Path:
        """Where ``host_path`` lands inside the image: the rootfs taken as /."""
        return out / str(host_path).lstrip("/")

    def snapshot(self) -> dict[str, tuple[int, bytes]]:
        return {str(p.relative_to(self.host)): (p.lstat().st_mode, p.read_bytes() if p.is_file() else b"")
                for p in sorted(self.host.rglob("*"))}


class _Root:
    def __init__(self, work: Path):
        self.work = work

    def chown(self, path: Path) -> None:
        pass

    def __call__(self, out: Path) -> tuple[int, str]:
        r = subprocess.run([SBUILD, "--sandbox", str(out), "r.def", "--tmpdir", str(self.work)],
                           cwd=self.work, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=240)
        return r.returncode, r.stderr


class _User:
    def __init__(self, user, work: Path):
        self.user, self.work = user, work

    def chown(self, path: Path) -> None:
        self.user.chown(path)

    def __call__(self, out: Path) -> tuple[int, str]:
        r = self.user.run(SBUILD, "--sandbox", str(out), "r.def", "--tmpdir", str(self.work),
                          cwd=str(self.work), stdin=subprocess.DEVNULL, timeout=240)
        return r.returncode, r.stderr


@pytest.fixture(params=["root", "unprivileged"])
def scene(request):
    if os.geteuid() != 0:
        pytest.skip("the scenes need root (to build as root and to drop to the test user)")
    top = Path(tempfile.mkdtemp(prefix="sbuild-escape-", dir="/tmp"))
    os.chmod(top, 0o755)
    work, host, base = top / "work", top / "host", top / "base"
    for d in (work, host, base / "opt4"):
        d.mkdir(parents=True)
    (host / "victim").write_text(HOST)
    (work / "payload").write_text(PAYLOAD)
    (work / "tree" / "sub").mkdir(parents=True)
    (work / "tree" / "sub" / "payload").write_text(PAYLOAD)
    runner = _Root(work) if request.param == "root" else _User(request.getfixturevalue("unprivileged_user"), work)
    s = Scene(top, host, work, base, runner)
    before = s.snapshot()
    try:
        yield s
        assert s.snapshot() == before, "the host directory changed"
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _ok(status: int, err: str) -> None:
    assert status == 0, err


def test_file_symlink_in_destination_dir_writes_the_image_file_not_the_hosts(scene):
    (scene.base / "opt4" / "payload").symlink_to(scene.host / "victim")
    image_copy = scene.inside(scene.base, scene.host / "victim")
    image_copy.parent.mkdir(parents=True)
    image_copy.write_text("IMAGE\n")
    status, err, out = scene.build("%files\n    payload /opt4/\n")
    _ok(status, err)
    assert scene.inside(out, scene.host / "victim").read_text() == PAYLOAD
    assert os.readlink(out / "opt4" / "payload") == str(scene.host / "victim")


def test_dangling_absolute_link_lands_inside_the_rootfs(scene):
    (scene.base / "opt4" / "payload").symlink_to(scene.host / "victim")  # no such path in the image
    status, err, out = scene.build("%files\n    payload /opt4/\n")
    _ok(status, err)
    assert scene.inside(out, scene.host / "victim").read_text() == PAYLOAD


def test_relative_link_climbing_out_stops_at_the_rootfs(scene):
    (scene.base / "opt4" / "payload").symlink_to(UP + str(scene.host / "victim").lstrip("/"))
    status, err, out = scene.build("%files\n    payload /opt4\n")
    _ok(status, err)
    assert scene.inside(out, scene.host / "victim").read_text() == PAYLOAD


def test_destination_directory_link_is_followed_inside_the_rootfs(scene):
    (scene.base / "opt4").rmdir()
    (scene.base / "opt4").symlink_to(scene.host)
    status, err, out = scene.build("%files\n    payload /opt4/\n    tree /opt4/\n")
    _ok(status, err)
    assert scene.inside(out, scene.host / "payload").read_text() == PAYLOAD
    assert scene.inside(out, scene.host / "tree" / "sub" / "payload").read_text() == PAYLOAD


def test_parent_links_absolute_and_relative_stay_in_the_rootfs(scene):
    (scene.base / "a").symlink_to("/")
    (scene.base / "opt4" / "up").symlink_to(UP)
    status, err, out = scene.build(f"%files\n    payload /a{scene.host}/victim\n"
                                   f"    tree /opt4/up{scene.host}/\n")
    _ok(status, err)
    assert scene.inside(out, scene.host / "victim").read_text() == PAYLOAD
    assert scene.inside(out, scene.host / "tree" / "sub" / "payload").read_text() == PAYLOAD


def test_recursive_copy_onto_a_file_link_in_an_existing_tree(scene):
    (scene.base / "opt4" / "tree" / "sub").mkdir(parents=True)
    (scene.base / "opt4" / "tree" / "sub" / "payload").symlink_to(scene.host / "victim")
    status, err, out = scene.build("%files\n    tree /opt4/\n")
    _ok(status, err)
    assert scene.inside(out, scene.host / "victim").read_text() == PAYLOAD
    assert (out / "opt4" / "tree" / "sub" / "payload").is_symlink()


def test_recursive_copy_onto_a_directory_link_in_an_existing_tree(scene):
    (scene.base / "opt4" / "tree").mkdir()
    (scene.base / "opt4" / "tree" / "sub").symlink_to(UP + str(scene.host).lstrip("/"))
    status, err, out = scene.build("%files\n    tree /opt4/\n")
    _ok(status, err)
    assert scene.inside(out, scene.host / "payload").read_text() == PAYLOAD


def test_device_node_at_the_destination_is_replaced_not_opened(scene):
    if isinstance(scene.run_build, _User):
        pytest.skip("an unprivileged build cannot copy a base image that holds device nodes")
    os.mknod(scene.base / "opt4" / "payload", 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null
    status, err, out = scene.build("%files\n    payload /opt4/\n")
    _ok(status, err)
    assert (out / "opt4" / "payload").read_text() == PAYLOAD


def _stage_one(scene: Scene) -> Path:
    one = scene.top / "one"
    (one / "out" / "dir").mkdir(parents=True)
    (one / "out" / "secret").symlink_to(scene.host / "victim")
    (one / "out" / "dir" / "link").symlink_to(scene.host / "victim")
    (one / "out" / "dir" / "plain").write_text(PAYLOAD)
    (one / "out" / "up").symlink_to(UP + str(scene.host).lstrip("/"))
    inner = scene.inside(one, scene.host / "victim")
    inner.parent.mkdir(parents=True)
    inner.write_text("STAGE\n")
    return one


def test_files_from_stage_reads_sources_inside_that_stage(scene):
    one = _stage_one(scene)
    status, err, out = scene.build(f"""
        Stage: one

        Bootstrap: localimage
        From: {scene.base}

        %files from one
            /out/secret /got
            /out/up/victim /got-up
            /out/dir /opt4/
    """, base=one)
    _ok(status, err)
    assert (out / "got").read_text() == "STAGE\n" and (out / "got-up").read_text() == "STAGE\n"
    assert os.readlink(out / "opt4" / "dir" / "link") == str(scene.host / "victim")  # kept as a link


def test_files_from_stage_onto_links_in_the_destination(scene):
    one = _stage_one(scene)
    (scene.base / "opt4" / "plain").symlink_to(scene.host / "victim")
    (scene.base / "opt4" / "dir").mkdir()
    (scene.base / "opt4" / "dir" / "plain").symlink_to(UP + str(scene.host / "victim").lstrip("/"))
    status, err, out = scene.build(f"""
        Stage: one

        Bootstrap: localimage
        From: {scene.base}

        %files from one
            /out/dir/plain /opt4/
            /out/dir /opt4/
    """, base=one)
    _ok(status, err)
    assert scene.inside(out, scene.host / "victim").read_text() == PAYLOAD
    assert (out / "opt4" / "dir" / "plain").is_symlink()


def test_appfiles_onto_a_link_in_the_app_directory(scene):
    if not Path("/bin/busybox").is_file():
        pytest.skip("apps run %post: needs busybox-static for /bin/sh")
    (scene.base / "bin").mkdir()
    shutil.copy("/bin/busybox", scene.base / "bin" / "busybox")
    (scene.base / "bin" / "sh").symlink_to("busybox")
    app = scene.base / "scif" / "apps" / "tool" / "sub"
    app.mkdir(parents=True)
    (app / "payload").symlink_to(scene.host / "victim")
    status, err, out = scene.build("%appfiles tool\n    payload sub\n")
    _ok(status, err)
    assert scene.inside(out, scene.host / "victim").read_text() == PAYLOAD
