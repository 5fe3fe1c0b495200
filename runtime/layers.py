"""The mounts step, first half: the container's root filesystem, layer by layer.

Runs in the namespace's first process, after ``unshare``: a tmpfs "session" directory holds
the overlay's upper and work dirs and generated files; the image is the lower layer (a loop
mounted squashfs or ext3 as root, a directory otherwise); host integration is bind mounts.
Mount points the image lacks are created in the tmpfs upper *before* overlayfs is mounted, so
no copy-up of image directories is needed (an unprivileged user cannot copy up files owned by
ids outside its namespace). When nothing is missing and nothing must be writable, the image is
used directly, without overlayfs. Nothing here forks or runs a program.
"""

from __future__ import annotations

import errno

from base import lean_os as os
from runtime import _sys, paths
from runtime.description import RootPlan, record

__all__ = ["Target", "SetupFailure", "plan_targets", "remount_ro", "resolve"]

class SetupFailure(Exception):
    """Setting up the container failed; ``kind`` names the sbuild error class to raise."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@record
class Target:
    """A mount point in the container: ``path`` (absolute), a directory or a file."""

    path: str
    is_dir: bool = True


def _fail(what: str, e: OSError, kind: str = "RunError") -> SetupFailure:
    reason = os.strerror(e.errno) if e.errno else str(e)
    return SetupFailure(kind, f"setting up the container: {what}: {reason.lower()}")


def _escape(path: str) -> str:
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def resolve(root: str, path: str) -> str:
    """``path`` inside ``root`` with symlinks followed, never leaving ``root``."""
    try:
        return paths.resolve(root, path)
    except paths.SymlinkLoop:
        raise SetupFailure("RunError", f"setting up the container: too many symlinks at {path}") from None


class _Root:
    def __init__(self, plan: RootPlan) -> None:
        self.plan = plan
        self.s = plan.session
        self.root = f"{self.s}/root"
        self.lowers: list[str] = []
        self.upper: str | None = None
        self.work: str | None = None
        self.writable = False
        self.frozen = False  # once host paths are mounted in, never create mount points
        self.placed: list[tuple[str, str]] = []  # the runtime's own mounts: (container path, resolved)

    # -- layers ------------------------------------------------------------------------
    def session(self) -> None:
        try:
            _sys.mount(None, "/", None, _sys.MS_REC | _sys.MS_PRIVATE)
            _sys.mount("sbuild", self.s, "tmpfs", _sys.MS_NOSUID | _sys.MS_NODEV, "mode=0755")
        except OSError as e:
            raise _fail("mounting the session tmpfs", e) from e
        for d in ("root", "files"):
            os.mkdir(f"{self.s}/{d}")

    def _loop_mount(self, image: str, fstype: str, offset: int, size: int, target: str, readonly: bool) -> None:
        try:
            dev, fd = _sys.loop_attach(image, offset, size, readonly)
        except OSError as e:
            kind = "CapabilityError" if e.errno in (errno.ENOENT, errno.EACCES, errno.EPERM) else "RunError"
            raise _fail(f"attaching {image} to a loop device", e, kind) from e
        flags = (_sys.MS_RDONLY if readonly else 0) | _sys.MS_NODEV | (_sys.MS_NOSUID if self.plan.nosuid else 0)
        try:
            _sys.mount(dev, target, fstype, flags, None)
        except OSError as e:
            raise _fail(f"mounting {image} ({fstype})", e, "ImageError") from e
        finally:
            os.close(fd)

    def base(self) -> None:
        p, m = self.plan, self.plan.mounts
        if p.fstype == "dir":
            self.lowers.append(p.image)
            if m.writable:
                self._bind(p.image, self.root, rec=True)
                self.writable = True
            return
        if p.fstype == "squashfuse":
            target = f"{self.s}/lower"
            os.mkdir(target)
            self._squashfuse(p.image, p.offset, target)
            self.lowers.append(target)
            return
        readonly = not (m.writable and p.fstype == "ext3")
        target = self.root if not readonly else f"{self.s}/lower"
        if readonly:
            os.mkdir(target)
        if p.lower is not None and readonly:  # mounted by the caller (runtime.prefetch): attach it
            try:
                _sys.move_mount(p.lower, target)
                self.lowers.append(target)
                return
            except OSError:  # (then mount the image here, as without the prefetch)
                pass
        self._loop_mount(p.image, p.fstype, p.offset, p.size, target, readonly)
        self.lowers.append(target)
        self.writable = not readonly

    def _squashfuse(self, image: str, offset: int, target: str) -> None:
        """Mount a FUSE connection ourselves (we hold the capability; squashfuse, run as the
        user, would not) and hand it to ``squashfuse /dev/fd/N``, in its own process group
        so that the terminal's Ctrl-C does not reach it. It dies with the PID namespace."""
        from shutil import which

        ident = self.plan.identity
        try:
            fd = os.open("/dev/fuse", os.O_RDWR)
            os.set_inheritable(fd, True)
        except OSError as e:
            raise _fail("opening /dev/fuse", e, "CapabilityError") from e
        try:
            _sys.mount("squashfuse", target, "fuse.squashfuse", _sys.MS_NOSUID | _sys.MS_NODEV | _sys.MS_RDONLY,
                       f"fd={fd},rootmode=40000,user_id={ident.inside_uid},group_id={ident.inside_gid}")
            os.posix_spawn(which("squashfuse") or "squashfuse",
                           ["squashfuse", "-f", "-o", f"offset={offset}", image, f"/dev/fd/{fd}"],
                           dict(os.environ), setpgroup=0)
        except OSError as e:
            raise _fail(f"mounting {image} with squashfuse", e) from e
        finally:
            os.close(fd)  # if squashfuse dies, the mount errors out instead of hanging
        try:
            os.stat(f"{target}/.")
        except OSError as e:
            raise _fail(f"mounting {image} with squashfuse", e, "ImageError") from e

    def overlays(self) -> None:
        for i, ov in enumerate(self.plan.mounts.overlays):
            base = ov.path
            if ov.fstype == "ext3":
                base = f"{self.s}/ov{i}"
                os.mkdir(base)
                self._loop_mount(ov.path, "ext3", ov.offset, ov.size, base, ov.readonly)
            if ov.readonly:
                self.lowers.insert(0, f"{base}/upper" if os.path.isdir(f"{base}/upper") else base)
                continue
            for d in ("upper", "work"):
                try:
                    os.makedirs(f"{base}/{d}", 0o755, exist_ok=True)
                except OSError as e:
                    raise _fail(f"preparing overlay {ov.path}", e) from e
            self.upper, self.work = f"{base}/upper", f"{base}/work"

    def tmpfs_upper(self) -> None:
        os.mkdir(f"{self.s}/upper", 0o755)
        os.mkdir(f"{self.s}/work", 0o755)
        self.upper, self.work = f"{self.s}/upper", f"{self.s}/work"

    def _exists_below(self, path: str) -> bool:
        return any(os.path.lexists(layer + path) for layer in self.lowers)

    def missing(self, targets: list[Target]) -> list[tuple[Target, str]]:
        """Targets whose (resolved) path exists in no lower layer."""
        out = []
        for t in targets:
            real = resolve(self.lowers[-1], t.path)
            if not self._exists_below(real):
                out.append((t, real))
        return out

    def precreate(self, upper: str, missing: list[tuple[Target, str]]) -> None:
        for t, real in missing:
            parts = real.strip("/").split("/")
            cur = ""
            for part in parts[:-1]:
                cur += "/" + part
                if os.path.isdir(upper + cur):
                    continue
                mode, owner = 0o755, None
                for layer in self.lowers:
                    try:
                        st = os.stat(layer + cur)
                        mode, owner = st.st_mode & 0o7777, (st.st_uid, st.st_gid)
                        break
                    except OSError:
                        pass
                os.mkdir(upper + cur, mode)
                if owner and not self.plan.identity.userns:
                    os.chown(upper + cur, *owner)
            leaf = upper + real
            if t.is_dir:
                os.makedirs(leaf, 0o755, exist_ok=True)
            elif not os.path.lexists(leaf):
                os.close(os.open(leaf, os.O_CREAT | os.O_WRONLY, 0o644))

    def mount_root(self) -> None:
        if self.writable:
            return
        if self.upper is None and len(self.lowers) > 1:  # read-only overlays only
            opts = f"lowerdir={':'.join(_escape(l) for l in self.lowers)}"
            opts += ",userxattr" if self.plan.identity.userns else ""
            try:
                _sys.mount("overlay", self.root, "overlay", _sys.MS_RDONLY, opts)
            except OSError as e:
                raise _fail("mounting the overlay", e) from e
            return
        if self.upper is None:
            if self.plan.fstype == "dir":
                self._bind(self.lowers[0], self.root, rec=True)
            else:  # a single squashfs/ext3 lower: move it into place
                _sys.mount(self.lowers[0], self.root, None, _sys.MS_MOVE)
            return
        opts = (f"lowerdir={':'.join(_escape(l) for l in self.lowers)},"
                f"upperdir={_escape(self.upper)},workdir={_escape(self.work)}")
        if self.plan.identity.userns:
            opts += ",userxattr"
        flags = _sys.MS_NOSUID if self.plan.nosuid else 0
        try:
            _sys.mount("overlay", self.root, "overlay", flags, opts)
        except OSError as e:
            raise _fail("mounting the overlay", e) from e
        self.writable = True

    # -- host integration ----------------------------------------------------------------
    def _bind(self, src: str, dst: str, *, rec: bool = False, readonly: bool = False) -> None:
        try:
            _sys.mount(src, dst, None, _sys.MS_BIND | (_sys.MS_REC if rec else 0))
            if rec and self.s.startswith(src.rstrip("/") + "/"):
                try:  # the recursive bind copied our session tmpfs: hide it
                    _sys.umount2(dst + self.s[len(src.rstrip("/")):], _sys.MNT_DETACH)
                except OSError:
                    pass
            if readonly:
                remount_ro(dst)
        except OSError as e:
            raise _fail(f"binding {src} to {dst[len(self.root):] or '/'}", e) from e

    def target(self, path: str, is_dir: bool = True) -> str | None:
        """The host path of container path ``path`` in the merged root, created when the root
        is writable; ``None`` (skip the mount) when it is missing and cannot be created."""
        return self._target_at(self.root + resolve(self.root, path), is_dir)

    def _target_at(self, full: str, is_dir: bool) -> str | None:
        """``target`` for ``full``, the host path a container path already resolved to."""
        if os.path.lexists(full):
            return full if os.path.isdir(full) == is_dir else None
        if not self.writable or self.frozen:  # (a symlink could lead the mkdir onto the host)
            return None
        try:
            if is_dir:
                os.makedirs(full, 0o755, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(full), 0o755, exist_ok=True)
                os.close(os.open(full, os.O_CREAT | os.O_WRONLY, 0o644))
        except OSError:
            return None
        return full


    def own_target(self, path: str, is_dir: bool = True) -> str | None:
        """``target(path)`` for one of the runtime's own mounts (/dev, /proc, /tmp, home, /etc
        files...), refused when the image's symlinks make it collide with the /dev, /proc or
        /sys mounted before: at or above it (it would hide it) or inside it (it would cover a
        node). Apptainer mounts there silently and the container runs without its /dev or
        /proc; user binds are not checked (hiding is their choice)."""
        real = resolve(self.root, path)
        for was, at in self.placed:
            if was not in ("/dev", "/proc", "/sys"):
                continue  # (/tmp hiding /var/tmp, or home: Apptainer's outcome, no harm done)
            inside = _collide(real, at)
            if inside is not None and _collide(path, was) is None:  # (the links made it, not the flags)
                links = [f"{p} resolves to {r}" for p, r in ((path, real), (was, at)) if p != r]  # (one, at least)
                raise SetupFailure("RunError", f"setting up the container: the image's symbolic links make "
                                   f"{path} collide with {was} ({', '.join(links)}): mounting {path} there would "
                                   f"{'cover a node of' if inside else 'hide'} the container's {was}; "
                                   f"the image's {path if path != real else was} (or a parent) must not be a symbolic link")
        dst = self._target_at(self.root + real, is_dir)  # (resolved once: an lstat per component)
        if dst is not None:
            self.placed.append((path, real))
        return dst


def _collide(path: str, earlier: str) -> bool | None:
    """How mounting at ``path`` affects a mount made at ``earlier``: ``False`` hides it (the
    same place or above), ``True`` covers a node in it (below), ``None`` neither."""
    if path == earlier or earlier.startswith(path.rstrip("/") + "/"):
        return False
    return True if path.startswith(earlier.rstrip("/") + "/") else None


def remount_ro(path: str) -> None:
    st = os.statvfs(path)
    keep = st.f_flag & (_sys.MS_NOSUID | _sys.MS_NODEV | _sys.MS_NOEXEC | 1024 | 2048)
    if st.f_flag & 4096:
        keep |= 1 << 21  # relatime
    _sys.mount(None, path, None, _sys.MS_REMOUNT | _sys.MS_BIND | _sys.MS_RDONLY | keep)


def plan_targets(plan: RootPlan, home: str | None, tmp_dirs: bool) -> list[Target]:
    """Every mount point the container will need, for pre-creation in the upper layer."""
    m = plan.mounts
    out = [Target(f"/{d}", True) for d in ("proc", "sys", "dev") if d not in m.skip]
    if tmp_dirs and "tmp" not in m.skip:
        out += [Target("/tmp", True), Target("/var/tmp", True)]
    out += [Target(d, True) for d in m.scratch]
    if m.hostname:
        out.append(Target("/etc/hostname", False))
    if m.dns:
        out.append(Target("/etc/resolv.conf", False))
    if home:
        out.append(Target(home, True))
    if m.bind_cwd:
        out.append(Target(m.bind_cwd, True))
    if plan.passwd:
        out += [Target("/etc/passwd", False), Target("/etc/group", False)]
    if not m.build_config:
        out += [Target(f, False) for f in m.host_files if os.path.isfile(f)]
    out += [Target(b.dst, os.path.isdir(b.src)) for b in m.binds]
    return out

