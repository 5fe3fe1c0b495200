"""What this host offers the runtime: the capability probes behind ``sbuild doctor``.

Each probe is tried for real where that is cheap and harmless (a user namespace with an
overlay mount inside it is created and thrown away in a child process); tools are looked up
on PATH. ``check()`` returns every probe's ``Check``; ``builder.commands.doctor`` adds the
builder's tools and renders the report.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

__all__ = ["Check", "check", "user_namespaces", "overlay_in_userns", "loop_devices", "fuse", "squashfuse",
           "subordinate_ids"]


@dataclass(frozen=True)
class Check:
    """One probe's outcome: ``detail`` what was found, ``meaning`` what follows from it."""

    name: str
    ok: bool
    detail: str
    meaning: str

    def as_json(self) -> dict:
        return {"check": self.name, "ok": self.ok, "detail": self.detail, "meaning": self.meaning}


def _in_child(fn) -> tuple[bool, str]:
    """Run ``fn`` in a forked child (it may unshare: ``runtime.child``); ``(ok, message)``."""
    from base.errors import SbuildError
    from runtime.child import call_in_child

    try:
        reported, _, status = call_in_child(fn, describe=lambda e: ("CapabilityError", str(e)[:300], None))
    except SbuildError as e:  # what the probe raised: report it, never raise from the probe
        return False, str(e)
    return (True, "ok") if reported else (False, f"the probe died (exit status {status})")


def _userns_overlay() -> None:
    import tempfile

    from runtime import _sys

    uid, gid = os.getuid(), os.getgid()
    with tempfile.TemporaryDirectory() as d:
        for sub in ("l", "u", "w", "m"):
            os.mkdir(f"{d}/{sub}")
        _sys.unshare(_sys.CLONE_NEWUSER | _sys.CLONE_NEWNS)
        _sys.map_single_id(0, 0, uid, gid)
        _sys.mount(None, "/", None, _sys.MS_REC | _sys.MS_PRIVATE)
        _sys.mount("overlay", f"{d}/m", "overlay", 0, f"lowerdir={d}/l,upperdir={d}/u,workdir={d}/w,userxattr")
        _sys.umount2(f"{d}/m", 0)


def _userns() -> None:
    from runtime import _sys

    _sys.unshare(_sys.CLONE_NEWUSER)


def user_namespaces() -> Check:
    ok, msg = _in_child(_userns)
    return Check("user namespaces", ok, msg if not ok else "can create one",
                 "rootless runs and builds work" if ok else "only root can run containers")


def overlay_in_userns() -> Check:
    ok, msg = _in_child(_userns_overlay)
    return Check("overlay in a user namespace", ok, msg if not ok else "overlayfs mounts with userxattr",
                 "unprivileged --writable-tmpfs and --overlay DIR work" if ok else "unprivileged runs are read-only")


def loop_devices() -> Check:
    loop = os.path.exists("/dev/loop-control") and os.access("/dev/loop-control", os.R_OK | os.W_OK)
    return Check("loop devices", loop, "/dev/loop-control " + ("usable" if loop else "not usable by this user"),
                 "images are mounted in place" if loop else "unprivileged: squashfs images are extracted once "
                 "into the cache; ext3 images and overlays need root")


def _fuse_usable() -> bool:
    return os.path.exists("/dev/fuse") and os.access("/dev/fuse", os.R_OK | os.W_OK)


def fuse() -> Check:
    ok = _fuse_usable()
    mode = oct(os.stat("/dev/fuse").st_mode & 0o777) if os.path.exists("/dev/fuse") else "-"
    return Check("/dev/fuse", ok, "usable" if ok else f"missing or not accessible (mode {mode})",
                 "FUSE mounts possible" if ok else "no FUSE: images are extracted instead")


def squashfuse() -> Check:
    sqf = shutil.which("squashfuse")
    return Check("squashfuse", bool(sqf), sqf or "not installed",
                 ("unprivileged runs mount squashfs images with it" if _fuse_usable() else
                  "used once /dev/fuse is usable by this user") if sqf else "apt-get install squashfuse")


def subordinate_ids() -> Check:
    from runtime.plan import host_user, subid_range

    root = os.geteuid() == 0
    user = host_user()
    su, sg = subid_range("/etc/subuid", user), subid_range("/etc/subgid", user)
    tools = bool(shutil.which("newuidmap") and shutil.which("newgidmap"))
    ok = root or (tools and bool(su) and bool(sg))
    detail = "root" if root else f"newuidmap {'found' if tools else 'missing'}, subuid {su}, subgid {sg}"
    return Check("newuidmap with /etc/subuid", ok, detail,
                 "package managers can run in rootless %post (chown works)" if ok else
                 "rootless %post gets a single-id map: apt/dpkg chown fails; install uidmap and add ranges")


def check() -> list[Check]:
    """Every runtime probe, in the report's order."""
    return [user_namespaces(), overlay_in_userns(), loop_devices(), fuse(), squashfuse(), subordinate_ids()]
