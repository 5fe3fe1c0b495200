"""The mounts step, second half: host integration on top of the root, then the switch into it.

``assemble(plan)`` runs in the container's first process (PID 1 of its PID namespace, inside
the new mount namespace): layers (``runtime.layers``), then /proc, /sys, a minimal /dev,
/tmp and /var/tmp, $HOME, the current directory, generated /etc/passwd and /etc/group, host
/etc files and the user's binds; finally the root is remounted read-only unless something made
it writable. ``enter(root)`` pivots into it and drops the host's mounts.
"""

from __future__ import annotations

from base import lean_os as os
from runtime import _sys
from runtime.description import RootPlan
from runtime.layers import SetupFailure, _Root, _fail, plan_targets, remount_ro, resolve

__all__ = ["assemble", "enter"]

_DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
_NOSUID_NODEV_NOEXEC = _sys.MS_NOSUID | _sys.MS_NODEV | _sys.MS_NOEXEC


def _home(plan: RootPlan) -> tuple[str | None, str | None]:
    m = plan.mounts
    if m.no_home or m.build_config or not m.home_dst:
        return None, None
    return m.home_src, m.home_dst


def assemble(plan: RootPlan) -> str:
    """Build the container root under ``plan.session``; return its host path."""
    b = _Root(plan)
    m = plan.mounts
    b.session()
    b.base()
    b.overlays()
    home_src, home_dst = _home(plan)
    targets = plan_targets(plan, home_dst, not m.build_config)
    if not b.writable:
        missing = b.missing(targets)
        if (missing or m.writable_tmpfs) and b.upper is None:
            b.tmpfs_upper()
        if b.upper is not None:
            b.precreate(b.upper, missing)
    b.mount_root()
    if b.writable:  # create every mount point before the first host path is mounted in
        for t in targets:
            b.target(t.path, t.is_dir)
    b.frozen = True
    _dev(b, plan)
    _proc_sys(b, plan)
    _tmp_home_cwd(b, plan, home_src, home_dst)
    _etc(b, plan)
    for bind in m.binds:
        dst = b.target(bind.dst, os.path.isdir(bind.src))
        if dst is None:
            raise SetupFailure("UsageError", f"binding {bind.src}: no mount point {bind.dst} in the container")
        b._bind(bind.src, dst, rec=os.path.isdir(bind.src), readonly=bind.readonly)
    if not (m.writable or m.writable_tmpfs or any(not o.readonly for o in m.overlays)):
        try:
            remount_ro(b.root)
        except OSError as e:
            raise _fail("making the root read-only", e) from e
    return b.root


def _dev(b: _Root, plan: RootPlan) -> None:
    """/dev as Apptainer's default (``mount dev = yes``) makes it: the host's, bound with its
    submounts (/dev/pts, /dev/shm, ...: the GPUs, InfiniBand and FUSE devices, and the shared
    memory, that HPC jobs use); contained (``-c``, ``-C``) or building, a minimal staged one."""
    dev = None if "dev" in plan.mounts.skip else b.own_target("/dev")
    if dev is None:
        return
    if not (plan.mounts.contain or plan.mounts.build_config):
        try:
            _sys.mount("/dev", dev, None, _sys.MS_BIND | _sys.MS_REC)
        except OSError as e:
            raise _fail("binding /dev", e) from e
        return
    try:
        _sys.mount("dev", dev, "tmpfs", _sys.MS_NOSUID | _sys.MS_NOEXEC, "mode=0755,size=64k")
        for name in _DEV_NODES:
            os.close(os.open(f"{dev}/{name}", os.O_CREAT | os.O_WRONLY, 0o666))
            _sys.mount(f"/dev/{name}", f"{dev}/{name}", None, _sys.MS_BIND)
        for name, to in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
                         ("core", "/proc/kcore")):
            os.symlink(to, f"{dev}/{name}")
        os.mkdir(f"{dev}/shm")
        _sys.mount("shm", f"{dev}/shm", "tmpfs", _sys.MS_NOSUID | _sys.MS_NODEV, "mode=1777")
        if plan.mounts.build_config or "devpts" in plan.mounts.skip:
            return
        os.mkdir(f"{dev}/pts")
        if plan.mounts.contain:
            _sys.mount("devpts", f"{dev}/pts", "devpts", _sys.MS_NOSUID | _sys.MS_NOEXEC,
                       "newinstance,ptmxmode=0666,mode=0620" + ("" if plan.identity.userns else ",gid=5"))
            os.symlink("pts/ptmx", f"{dev}/ptmx")
        else:
            _sys.mount("/dev/pts", f"{dev}/pts", None, _sys.MS_BIND | _sys.MS_REC)
            os.close(os.open(f"{dev}/ptmx", os.O_CREAT | os.O_WRONLY, 0o666))
            _sys.mount("/dev/ptmx", f"{dev}/ptmx", None, _sys.MS_BIND)
    except OSError as e:
        raise _fail("populating /dev", e) from e


def _proc_sys(b: _Root, plan: RootPlan) -> None:
    skip = plan.mounts.skip
    proc = None if "proc" in skip else b.own_target("/proc")
    if proc is not None:
        try:
            _sys.mount("proc", proc, "proc", _NOSUID_NODEV_NOEXEC)
        except OSError as e:
            raise _fail("mounting /proc", e) from e
    sys_ = None if "sys" in skip else b.own_target("/sys")
    if sys_ is not None:
        try:
            if plan.identity.userns and not plan.unshare & _sys.CLONE_NEWNET:  # (sysfs needs our own net ns)
                _sys.mount("/sys", sys_, None, _sys.MS_BIND | _sys.MS_REC)
            else:
                _sys.mount("sysfs", sys_, "sysfs", _NOSUID_NODEV_NOEXEC | _sys.MS_RDONLY)
        except OSError as e:
            raise _fail("mounting /sys", e) from e


def _scratch(b: _Root, name: str) -> str:
    """An empty directory for ``name`` on the session tmpfs, or under ``-W`` (0o1777 for tmp dirs)."""
    w = b.plan.mounts.workdir
    path = f"{w}/{name}" if w else f"{b.s}/files/{name}"
    mode = 0o1777 if name in ("tmp", "var_tmp") else 0o700 if name == "home" else 0o755
    os.makedirs(path, mode, exist_ok=True)
    os.chmod(path, mode)
    return path


def _inner_targets(plan: RootPlan, home_dst: str | None) -> list[tuple[str, bool]]:
    """Mount points mounted after /tmp, /var/tmp and scratch dirs: ``(path, is_dir)``."""
    m = plan.mounts
    out = [(home_dst, True)] if home_dst else []
    out += [(m.bind_cwd, True)] if m.bind_cwd else []
    out += [(d, True) for d in m.scratch]
    return out + [(x.dst, os.path.isdir(x.src)) for x in m.binds]


def _bind_fresh(b: _Root, src: str, dst_in: str, inner: list[tuple[str, bool]]) -> None:
    """Bind the empty dir ``src`` at ``dst_in``, first creating in it the mount points of
    ``inner`` that lie below ``dst_in`` (the container's view of them would be gone)."""
    dst = b.own_target(dst_in)
    if dst is None:
        return
    prefix = dst_in.rstrip("/") + "/"
    for path, is_dir in inner:
        if path.startswith(prefix):
            leaf = f"{src}/{path[len(prefix):]}"
            os.makedirs(leaf if is_dir else os.path.dirname(leaf), 0o755, exist_ok=True)
            if not is_dir and not os.path.lexists(leaf):
                os.close(os.open(leaf, os.O_CREAT | os.O_WRONLY, 0o644))
    b._bind(src, dst, rec=True)


def _tmp_home_cwd(b: _Root, plan: RootPlan, home_src: str | None, home_dst: str | None) -> None:
    m = plan.mounts
    inner = _inner_targets(plan, home_dst)
    if not m.build_config and "tmp" not in m.skip:
        for path in ("/tmp", "/var/tmp"):
            if path == "/var/tmp" and resolve(b.root, path) == resolve(b.root, "/tmp"):
                continue  # (/var/tmp -> /tmp: one mount, as Apptainer does)
            if m.contain:
                _bind_fresh(b, _scratch(b, path[1:].replace("/", "_")), path, inner)
            elif (dst := b.own_target(path)) is not None:
                b._bind(path, dst, rec=True)
    for path in m.scratch:
        _bind_fresh(b, _scratch(b, "scratch" + path), path, inner)
    if home_dst:
        if home_src is None:
            home_src = _scratch(b, "home")
            if not plan.identity.userns:
                os.chown(home_src, plan.identity.uid, plan.identity.gid)
        if os.path.isdir(home_src):
            if (dst := b.own_target(home_dst)) is not None:
                b._bind(home_src, dst, rec=True)
    if m.bind_cwd:
        dst = b.target(m.bind_cwd)  # (not own_target: the cwd may well lie in home or /tmp)
        if dst is not None and os.path.isdir(m.bind_cwd):
            b._bind(m.bind_cwd, dst, rec=True)


def _read(path: str) -> bytes:
    """The file's bytes, or b"" when it cannot be read (os-level: ``open()`` and its text
    layer cost more than the rest of this step)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _merged_file(b: _Root, path: str, extra: str) -> None:
    dst = b.own_target(path, is_dir=False)
    if dst is None:
        return
    text = _read(dst)
    have = {line.split(b":")[0] for line in text.splitlines()}
    add = [line for line in extra.encode("utf-8", "surrogateescape").splitlines()
           if line.split(b":")[0] not in have]
    if not add:
        return
    if text and not text.endswith(b"\n"):
        text += b"\n"
    generated = f"{b.s}/files/{os.path.basename(path)}"
    _write(generated, text + b"\n".join(add) + b"\n")
    b._bind(generated, dst)


def _etc(b: _Root, plan: RootPlan) -> None:
    if plan.passwd:
        _merged_file(b, "/etc/passwd", plan.passwd[0])
        _merged_file(b, "/etc/group", plan.passwd[1])
    if plan.mounts.hostname and (dst := b.own_target("/etc/hostname", is_dir=False)) is not None:
        _write(f"{b.s}/files/hostname", plan.mounts.hostname.encode() + b"\n")
        b._bind(f"{b.s}/files/hostname", dst)
    if plan.mounts.build_config:
        return
    if plan.mounts.dns and (dst := b.own_target("/etc/resolv.conf", is_dir=False)) is not None:
        _write(f"{b.s}/files/resolv.conf", "".join(f"nameserver {s}\n" for s in plan.mounts.dns).encode())
        b._bind(f"{b.s}/files/resolv.conf", dst, readonly=True)
    for path in plan.mounts.host_files:
        if path == "/etc/resolv.conf" and plan.mounts.dns:
            continue
        if os.path.isfile(path):
            dst = b.own_target(path, is_dir=False)
            if dst is not None:
                b._bind(path, dst, readonly=True)


def enter(root: str) -> None:
    """Make ``root`` the process's ``/`` and detach the host's mount tree."""
    try:
        os.chdir(root)
        _sys.pivot_root(".", ".")
        _sys.umount2(".", _sys.MNT_DETACH)
        os.chdir("/")
    except OSError as e:
        raise _fail("switching to the container root", e) from e
