"""Hostile base images for the runtime's own mounts and ``--bind``: the image plants symlinks
where the runtime mounts or creates mount points (``/dev``, ``/etc/hosts``, ``/etc/resolv.conf``,
``/home``, ``/tmp`` holding the working directory, ``/proc``, ``/sys``, a ``--bind``
destination and its parent), pointing at a canary directory on the host by absolute path and
by ``../`` climbs, or at one another (``/dev -> /proc``, ``/tmp -> /dev``...). ``exec`` of the
image (a sandbox directory, and the same tree packed as a SIF), as root and as the unprivileged user, either runs or fails with a clear error; the
container that runs has the runtime's /dev and /proc (each destination is resolved inside the
container root, as Apptainer does; links that would make one of the runtime's mounts hide
another are refused with an error naming them); the canary is unchanged afterwards (no file or
mount point created in it, nothing written), and no mount is left on it (the leak check of the runtime fixtures runs after each test)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.scenario("hostile base images (runtime mounts, --bind)"), pytest.mark.slow]

UP = "../" * 12

# name -> [(path in the image, link target; {c} is the canary's absolute path)], binds
PLANTS = {
    "dev-absolute": ([("dev", "{c}/dev")], []),
    "dev-climbing": ([("dev", UP + "{c}/dev")], []),
    "etc-hosts-to-existing-host-file": ([("etc/hosts", "{c}/hosts")], []),
    "etc-hosts-to-missing-host-file": ([("etc/hosts", "{c}/new-hosts")], []),
    "etc-resolv-climbing": ([("etc/resolv.conf", UP + "{c}/resolv")], []),
    "etc-dir-to-host": ([("etc", "{c}/etc")], []),
    "home-absolute": ([("home", "{c}/home")], []),
    "root-home-climbing": ([("root", UP + "{c}/roothome")], []),
    "tmp-holding-the-cwd": ([("tmp", "{c}/tmp"), ("var/tmp", "{c}/vartmp")], []),
    "proc-and-sys": ([("proc", "{c}/proc"), ("sys", "{c}/sys")], []),
    "bind-destination-link": ([("opt/in", "{c}/bind")], ["{src}:/opt/in"]),
    "bind-parent-link": ([("opt", "{c}/opt")], ["{src}:/opt/sub/in"]),
    "bind-parent-climbing": ([("opt", UP + "{c}/opt2")], ["{src}:/opt/deep/in"]),
    # links that make two of the runtime's own mounts collide (one would hide the other)
    "dev-to-tmp": ([("dev", "/tmp/dev")], []),
    "dev-to-proc": ([("dev", "/proc")], []),
    "dev-to-etc": ([("dev", "../etc")], []),
    "dev-to-itself": ([("dev", "dev")], []),
    "tmp-to-dev": ([("tmp", "/dev")], []),
    "proc-to-dev": ([("proc", "dev")], []),
    "sys-to-proc": ([("sys", UP + "proc")], []),
    "etc-hosts-to-dev-null": ([("etc/hosts", "/dev/null")], []),
    "home-and-root-to-sys": ([("home", "/sys"), ("root", "/sys")], []),
    "var-tmp-to-tmp": ([("var/tmp", "../tmp")], []),  # common in real images: one mount, it runs
}
# refused with a clear error: the runtime would hide its own /dev, /proc or /sys (Apptainer mounts
# there silently and the container runs without them); or a symlink loop
REFUSED = {"dev-to-tmp": "must not be a symbolic link", "dev-to-proc": "must not be a symbolic link",
           "dev-to-etc": "must not be a symbolic link", "tmp-to-dev": "must not be a symbolic link",
           "proc-to-dev": "must not be a symbolic link", "sys-to-proc": "must not be a symbolic link",
           "etc-hosts-to-dev-null": "must not be a symbolic link", "home-and-root-to-sys": "must not be a symbolic link",
           "dev-to-itself": "too many symlinks"}


def _snapshot(path: Path) -> dict:
    out = {}
    for p in sorted(path.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(path))] = (st.st_mode, st.st_size, st.st_mtime_ns,
                                         hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and
                                         not p.is_symlink() else None)
    return out


@pytest.fixture
def canary(profile):
    """A host directory the user may write (so a write through a link would succeed), where
    the container does not see it: not under /tmp, /var/tmp or a home, which are bound in by
    default (a write the container makes there is the bind working, not an escape)."""
    c = Path(tempfile.mkdtemp(prefix="sbuild-rel-canary-", dir="/srv" if os.path.isdir("/srv") else "/var/lib"))
    c.chmod(0o777)
    for name in ("dev", "etc", "home", "roothome", "tmp", "bind", "opt"):
        (c / name).mkdir()
        (c / name / "keep").write_text("keep")
    (c / "hosts").write_text("10.9.8.7 canary\n")
    profile.own(c)
    yield c
    shutil.rmtree(c, ignore_errors=True)


def _hostile_image(base: Path, sandbox: Path, canary: Path, plants) -> Path:
    img = base / "hostile"
    shutil.copytree(sandbox, img, symlinks=True)
    for rel, target in plants:
        path = img / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target.format(c=canary))
    return img


@pytest.mark.parametrize("kind", ["sandbox", "sif"])
@pytest.mark.parametrize("name", sorted(PLANTS))
def test_hostile_links_at_the_runtimes_mount_points(profile, images, workdir, canary, name, kind):
    plants, binds = PLANTS[name]
    img = _hostile_image(workdir, images["sandbox"], canary, plants)
    src = workdir / "bindsrc"
    src.mkdir()
    (workdir / "cwd").mkdir()
    profile.own(workdir)
    if kind == "sif":
        r = profile.sbuild("build", workdir / "hostile.sif", img, timeout=120)
        assert r.status == 0, r.err
        img = workdir / "hostile.sif"
    before = _snapshot(canary)
    flags = [x for b in binds for x in ("--bind", b.format(src=src))]
    script = ("cat /etc/hosts >/dev/null 2>&1; echo in > /tmp/t 2>/dev/null; ls /dev >/dev/null 2>&1; "
              "test -c /dev/null && test -d /proc/self && echo ran")  # the runtime's /dev and /proc are there
    r = profile.sbuild("exec", *flags, img, "sh", "-c", script, cwd=workdir / "cwd", timeout=60)
    assert "internal error" not in r.err and "Traceback" not in r.err, r.err[-2000:]
    extracted_dev = profile.user is not None and kind == "sif" and ("dev", plants[0][1]) in plants
    if name in REFUSED and not extracted_dev:  # (rootless extraction of a SIF leaves an empty dev/ dir)
        assert r.status == 1 and REFUSED[name] in r.err, (r.status, r.err[-2000:])
    elif r.status != 0:
        assert r.err.strip() and r.status in (1, 2, 3), (r.status, r.err[-2000:])
    else:
        assert "ran" in r.out, (r.out, r.err[-2000:])
    assert _snapshot(canary) == before, f"the host canary changed: {r.err[-1000:]}"
    mounts = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(canary) in line]
    assert not mounts, mounts
