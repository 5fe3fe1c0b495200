"""``sbuild doctor``: what this host offers the runtime and the builder, and what follows.

Each check is tried for real where that is cheap and harmless (a user namespace with an
overlay mount inside it is created and thrown away in a child process); tools are looked up
on PATH and asked for their version.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

__all__ = ["Check", "check", "render"]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    meaning: str

    def as_json(self) -> dict:
        return {"check": self.name, "ok": self.ok, "detail": self.detail, "meaning": self.meaning}


def _in_child(fn) -> tuple[bool, str]:
    """Run ``fn`` in a forked child (it may unshare); ``(ok, message)``."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            fn()
            msg, code = b"ok", 0
        except Exception as e:  # noqa: BLE001 - report, never raise from the probe
            msg, code = str(e).encode()[:300], 1
        os.write(w, msg)
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        msg = f.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0, msg


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


def _version(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unusable ({e})"
    text = (r.stdout + r.stderr).strip().splitlines()
    return text[0] if text else "present"


def _compressors() -> str:
    if not shutil.which("mksquashfs"):
        return ""
    r = subprocess.run(["mksquashfs", "-help"], capture_output=True, text=True)
    text = r.stdout + r.stderr
    found = [c for c in ("gzip", "lzo", "lz4", "xz", "zstd", "lzma") if f"\t{c}" in text or f" {c}" in text]
    return ", ".join(found)


def check() -> list[Check]:
    from runtime.session import host_user, subid_range

    root = os.geteuid() == 0
    user = host_user()
    out = []
    ok, msg = _in_child(_userns)
    out.append(Check("user namespaces", ok, msg if not ok else "can create one",
                     "rootless runs and builds work" if ok else "only root can run containers"))
    ok, msg = _in_child(_userns_overlay)
    out.append(Check("overlay in a user namespace", ok, msg if not ok else "overlayfs mounts with userxattr",
                     "unprivileged --writable-tmpfs and --overlay DIR work" if ok
                     else "unprivileged runs are read-only"))
    loop = os.path.exists("/dev/loop-control") and os.access("/dev/loop-control", os.R_OK | os.W_OK)
    out.append(Check("loop devices", loop, "/dev/loop-control " + ("usable" if loop else "not usable by this user"),
                     "images are mounted in place" if loop else "unprivileged: squashfs images are extracted once "
                     "into the cache; ext3 images and overlays need root"))
    fuse = os.path.exists("/dev/fuse") and os.access("/dev/fuse", os.R_OK | os.W_OK)
    sqf = shutil.which("squashfuse")
    out.append(Check("/dev/fuse", fuse, "usable" if fuse else "missing or not accessible (mode "
                     + (oct(os.stat("/dev/fuse").st_mode & 0o777) if os.path.exists("/dev/fuse") else "-") + ")",
                     "FUSE mounts possible" if fuse else "no FUSE: images are extracted instead"))
    out.append(Check("squashfuse", bool(sqf), sqf or "not installed",
                     ("unprivileged runs mount squashfs images with it" if fuse else
                      "used once /dev/fuse is usable by this user") if sqf else "apt-get install squashfuse"))
    su, sg = subid_range("/etc/subuid", user), subid_range("/etc/subgid", user)
    tools = bool(shutil.which("newuidmap") and shutil.which("newgidmap"))
    ok = root or (tools and bool(su) and bool(sg))
    detail = "root" if root else f"newuidmap {'found' if tools else 'missing'}, subuid {su}, subgid {sg}"
    out.append(Check("newuidmap with /etc/subuid", ok, detail,
                     "package managers can run in rootless %post (chown works)" if ok else
                     "rootless %post gets a single-id map: apt/dpkg chown fails; install uidmap and add ranges"))
    for tool in ("mksquashfs", "unsquashfs"):
        path = shutil.which(tool)
        out.append(Check(tool, bool(path), _version([tool, "-version"]) if path else "not installed",
                         _missing_meaning(tool) if not path else
                         ("compressors: " + _compressors() + " (for --mksquashfs-args; sbuild packs gzip images "
                          "itself)" if tool == "mksquashfs" else "fast image extraction")))
    return out


def _missing_meaning(tool: str) -> str:
    if tool == "mksquashfs":
        return ("sbuild packs gzip images itself; --mksquashfs-args and SBUILD_PACKER=mksquashfs need it "
                "(apt-get install squashfs-tools)")
    return "images are extracted with PySquashfsImage (slower); apt-get install squashfs-tools"


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{'ok ' if c.ok else 'no '} {c.name:<{width}}  {c.detail}")
        lines.append(f"    {'':<{width}}  -> {c.meaning}")
    return "\n".join(lines)
