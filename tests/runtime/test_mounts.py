"""Writability, overlays, binds, home and containment, as root and as an unprivileged user."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def test_default_is_read_only(profile, images):
    r = profile.sbuild("exec", images["simg"], "touch", "/newfile")
    assert r.status != 0
    assert "Read-only" in r.err


def test_writable_tmpfs_writes_are_discarded(profile, images):
    r = profile.sbuild("exec", "--writable-tmpfs", images["sif"], "sh", "-c", "echo x > /etc/new; cat /etc/new")
    assert (r.status, r.out) == (0, "x\n"), r.err
    r = profile.sbuild("exec", images["sif"], "test", "-e", "/etc/new")
    assert r.status == 1


def test_overlay_dir_persists_between_runs(profile, images, workdir):
    ov = workdir / "ov"
    ov.mkdir()
    profile.own(ov)
    r = profile.sbuild("exec", "--overlay", ov, images["simg"], "sh", "-c", "echo kept > /opt/data; rm /singularity")
    assert r.status == 0, r.err
    assert (ov / "upper" / "opt" / "data").read_text() == "kept\n"
    r = profile.sbuild("exec", "--overlay", ov, images["simg"], "sh", "-c", "cat /opt/data; test -e /singularity")
    assert (r.status, r.out) == (1, "kept\n"), r.err
    r = profile.sbuild("exec", "--overlay", f"{ov}:ro", images["simg"], "sh", "-c", "cat /opt/data; touch /opt/x")
    assert r.out == "kept\n" and r.status != 0


def test_overlay_ext3_image_persists_as_root(profile, images, workdir):
    src = workdir / "src"
    (src / "upper").mkdir(parents=True)
    (src / "work").mkdir()
    img = workdir / "ov.img"
    subprocess.run(["truncate", "-s", "64M", str(img)], check=True)
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext3", "-d", str(src), str(img)], check=True)
    profile.own(workdir)
    r = profile.sbuild("exec", "--overlay", img, images["sandbox"], "sh", "-c", "echo e3 > /opt/e3")
    if profile.name == "user":
        assert r.status == 3 and "need root" in r.err
        return
    assert r.status == 0, r.err
    r = profile.sbuild("exec", "--overlay", img, images["sandbox"], "cat", "/opt/e3")
    assert (r.status, r.out) == (0, "e3\n"), r.err
    assert not (images["sandbox"] / "opt" / "e3").exists()


def test_writable_sandbox_keeps_changes(profile, images, workdir):
    sb = workdir / "sb"
    shutil.copytree(images["sandbox"], sb, symlinks=True)
    profile.own(sb)
    r = profile.sbuild("exec", "--writable", sb, "sh", "-c", "echo w > /opt/w")
    assert r.status == 0, r.err
    assert (sb / "opt" / "w").read_text() == "w\n"
    r = profile.sbuild("exec", "--writable", images["simg"], "true")
    assert r.status == 2 and "read-only" in r.err


def test_binds_of_dirs_and_files_and_read_only(profile, images, workdir):
    d = workdir / "data"
    d.mkdir()
    (d / "f").write_text("content\n")
    (workdir / "single").write_text("one\n")
    profile.own(workdir)
    r = profile.sbuild("exec", "-B", f"{d}:/mnt/data", "--bind", f"{workdir / 'single'}:/opt/single:ro",
                       images["simg"], "sh", "-c", "cat /mnt/data/f /opt/single; echo new > /mnt/data/g;"
                       " echo x > /opt/single")
    assert r.out == "content\none\n", r.err
    assert r.status != 0  # the ro file bind refused the write
    assert (d / "g").read_text() == "new\n"
    assert (workdir / "single").read_text() == "one\n"


def test_bind_source_missing_is_a_usage_error(profile, images):
    r = profile.sbuild("exec", "-B", "/no/such/dir:/mnt", images["simg"], "true")
    assert r.status == 2
    assert r.err.strip().count("\n") == 0 and "/no/such/dir" in r.err


def test_home_no_home_and_contain(profile, images, workdir):
    marker = profile.home / "sbuild-home-marker"
    marker.write_text("home\n")
    profile.own(marker)
    try:
        r = profile.sbuild("exec", images["simg"], "cat", marker)
        assert r.out == "home\n", r.err
        r = profile.sbuild("exec", "--no-home", images["simg"], "test", "-e", marker, cwd=workdir)
        assert r.status == 1  # (run from $HOME, Apptainer binds it as the cwd anyway)
        r = profile.sbuild("exec", "--contain", images["simg"], "sh", "-c",
                           f"test -e {marker} || echo no-marker; ls -A /tmp | wc -l; touch /tmp/ok && echo tmp-ok; pwd")
        assert r.out.split() == ["no-marker", "0", "tmp-ok", str(profile.home)], r.err
        r = profile.sbuild("exec", "--home", f"{workdir}:/home/other", images["simg"], "sh", "-c", "echo $HOME; pwd",
                           cwd=workdir)
        assert r.out.split()[0] == "/home/other", r.err
    finally:
        marker.unlink()


def test_hosts_and_localtime_are_the_hosts(profile, images):
    r = profile.sbuild("exec", images["sandbox"], "cat", "/etc/hosts")
    with open("/etc/hosts") as f:
        assert r.out == f.read()


def test_dev_is_the_hosts_by_default_as_apptainers_mount_dev_yes(profile, images):
    # Apptainer's default (apptainer.conf `mount dev = yes`): the host's /dev with its
    # submounts, so that GPUs, InfiniBand and FUSE devices and the shared /dev/shm of MPI
    # jobs are there; only a contained run gets a minimal staged /dev
    host = {n for n in os.listdir("/dev") if not n.startswith("loop")}  # (loop nodes come and go with other tests)
    mark = f"sbuild-test-{os.getpid()}-{profile.name}"
    try:
        r = profile.sbuild("exec", images["simg"], "sh", "-c",
                           f"ls /dev; echo x > /dev/null; head -c 4 /dev/zero | wc -c; echo shared > /dev/shm/{mark}")
        names = set(r.out.split())
        assert host <= names, (host - names, r.err)
        assert r.out.split()[-1] == "4"
        assert Path(f"/dev/shm/{mark}").read_text() == "shared\n"
    finally:
        Path(f"/dev/shm/{mark}").unlink(missing_ok=True)


def test_dev_is_minimal_and_works_when_contained(profile, images):
    r = profile.sbuild("exec", "-c", images["simg"], "sh", "-c",
                       "ls /dev; echo x > /dev/null; head -c 4 /dev/zero | wc -c; ls /dev/shm | wc -l")
    names = set(r.out.split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm"} <= names, r.err
    assert not names & {"sda", "vda", "loop-control", "kvm", "fuse"}
    assert r.out.split()[-2:] == ["4", "0"]  # (its own, empty /dev/shm)


def test_hostile_symlinks_in_the_image_stay_inside_it(profile, images, workdir):
    """Mount points are resolved inside the rootfs: an image whose /home and /tmp are symlinks
    pointing out of it (absolute and with ..) gets them created inside itself, not on the host."""
    sb = workdir / "hostile"
    shutil.copytree(images["sandbox"], sb, symlinks=True)
    escape = Path("/var/tmp") / f"{workdir.name}-escaped"
    shutil.rmtree(sb / "home")
    (sb / "home").symlink_to(f"/../../..{escape}")
    shutil.rmtree(sb / "tmp")
    (sb / "tmp").symlink_to(f"../../../../..{escape}-tmp")
    profile.own(workdir)
    r = profile.sbuild("exec", "--writable", sb, "echo", "ran")
    assert r.status == 0 and r.out == "ran\n", r.err
    assert not escape.exists() and not escape.with_name(escape.name + "-tmp").exists()
    assert (sb / f"{str(escape).lstrip('/')}-tmp").is_dir()  # created inside the sandbox instead
    if profile.name == "user":  # root's home is /root, not under /home
        assert (sb / str(escape).lstrip("/") / profile.user.name).is_dir()


def test_fakeroot_maps_the_user_to_root(profile, images):
    r = profile.sbuild("exec", "--fakeroot", images["sandbox"], "sh", "-c", "id -u; echo $HOME")
    assert r.out.split() == ["0", "/root"], r.err


@pytest.mark.parametrize("kind", ["simg", "sandbox"])
def test_our_own_mounts_are_hidden_from_a_bind_of_their_parent(profile, images, kind):
    # the session tmpfs (which, as root, holds the image mounted ahead by the CLI,
    # runtime.prefetch) lives under the runtime directory; a recursive bind of it must not show it
    rundir = f"{profile.runtime}/sbuild"  # (the session's XDG_RUNTIME_DIR: tests/runtime/conftest.py)
    parent = rundir.rsplit("/", 1)[0]
    r = profile.sbuild("exec", "--bind", f"{parent}:{parent}", images[kind], "sh", "-c",
                       f"ls -A {rundir}/mnt; ls -A {rundir}/stage 2>/dev/null; echo done")
    assert (r.status, r.out) == (0, "done\n"), r.err
