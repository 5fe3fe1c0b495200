"""Thin wrappers over the Linux system calls the runtime needs, through ctypes and ``os``.

mount(2), umount2(2), unshare(2), setns(2), pivot_root(2), prctl(2), the loop-device
ioctls, and the new mount API (fsopen/fsconfig/fsmount, move_mount) and openat2(2) through
syscall(2) (one syscall number on every architecture). Every call raises ``OSError`` with
errno on failure; callers add context. Nothing here spawns a program. Linux only;
constants are the x86-64/arm64 (generic) values. Python 3.11 has no ``os.unshare`` or
``os.setns``; libc is reached through ``_ctypes``.
"""

from __future__ import annotations

import errno
import fcntl
import sys

from base import lean_os as os

__all__ = [
    "mount", "umount2", "unshare", "setns", "pivot_root", "set_pdeathsig", "loop_attach",
    "MS_RDONLY", "MS_NOSUID", "MS_NODEV", "MS_NOEXEC", "MS_REMOUNT", "MS_BIND", "MS_MOVE", "MS_REC",
    "MS_PRIVATE", "MS_SLAVE", "MNT_DETACH", "CLONE_NEWNS", "CLONE_NEWUSER", "CLONE_NEWPID",
    "CLONE_NEWIPC", "CLONE_NEWUTS", "CLONE_NEWNET", "map_single_id", "sethostname", "loopback_up", "drop_bounding", "fsmount_bdev", "move_mount", "open_in_root",
]

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC = 32, 4096, 8192, 16384
MS_PRIVATE, MS_SLAVE = 1 << 18, 1 << 19
MNT_DETACH = 2
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER, PR_CAPBSET_DROP = 1, 38, 36, 24



def _libc_functions():
    """``(libc, c_char_p, c_int, c_ulong, c_long, get_errno)``: libc through ``_ctypes``, the
    C module under ``ctypes``, whose own import (~25 type classes, a callback thunk) costs
    ~1.5 ms more on every launch; plain ``ctypes`` where ``_ctypes`` is not as expected."""
    try:
        import _ctypes

        class c_char_p(_ctypes._SimpleCData):
            _type_ = "z"

        class c_int(_ctypes._SimpleCData):
            _type_ = "i"

        class c_ulong(_ctypes._SimpleCData):
            _type_ = "L"

        class c_long(_ctypes._SimpleCData):
            _type_ = "l"

        class Function(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = c_int

        class Libc:
            _handle = _ctypes.dlopen(None)

            def __getattr__(self, name: str):
                func = Function((name, self))
                setattr(self, name, func)
                return func

        return Libc(), c_char_p, c_int, c_ulong, c_long, _ctypes.get_errno
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - another Python
        import ctypes

        return (ctypes.CDLL(None, use_errno=True), ctypes.c_char_p, ctypes.c_int, ctypes.c_ulong, ctypes.c_long,
                ctypes.get_errno)


_libc, _c_char_p, _c_int, _c_ulong, _c_long, _get_errno = _libc_functions()
_libc.mount.argtypes = [_c_char_p, _c_char_p, _c_char_p, _c_ulong, _c_char_p]
_libc.umount2.argtypes = [_c_char_p, _c_int]
_libc.unshare.argtypes = [_c_int]
_libc.setns.argtypes = [_c_int, _c_int]
_libc.prctl.argtypes = [_c_int, _c_ulong, _c_ulong, _c_ulong, _c_ulong]
_libc.syscall.restype = _c_long

_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}.get(
    os.uname().machine, 155)


def _b(value: str | bytes | os.PathLike | None) -> bytes | None:
    if value is None:
        return None
    return os.fsencode(value)


def _check(result: int, what: str, path: object = None) -> None:
    if result != 0:
        err = _get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", None if path is None else str(path))


def mount(source, target, fstype=None, flags: int = 0, data: str | None = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), "mount", target)


def umount2(target, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), "umount", target)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def pivot_root(new_root, put_old) -> None:
    res = _libc.syscall(_SYS_PIVOT_ROOT, _b(new_root), _b(put_old))
    _check(0 if res == 0 else -1, "pivot_root", new_root)


# -- the new mount API and openat2 (Linux 5.2 and 5.6; the numbers are the same on every arch)
_SYS_MOVE_MOUNT, _SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT, _SYS_OPENAT2 = 429, 430, 431, 432, 437
_FSCONFIG_SET_FLAG, _FSCONFIG_SET_STRING, _FSCONFIG_CMD_CREATE = 0, 1, 6
_MOVE_MOUNT_F_EMPTY_PATH = 4
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 1, 2, 4
_RESOLVE_NO_MAGICLINKS, _RESOLVE_IN_ROOT = 0x02, 0x10


def _fd(result: int, what: str, path: object = None) -> int:
    if result < 0:
        _check(-1, what, path)
    return result


def fsmount_bdev(fstype: str, device: str, attrs: int) -> int:
    """Mount block device ``device`` (``fstype``, a read-only superblock) without attaching
    it anywhere: returns a close-on-exec fd of the detached mount (``move_mount`` attaches
    it). Nothing to clean up: the mount is gone when its last fd is closed, with the
    process if need be."""
    fs = _fd(_libc.syscall(_SYS_FSOPEN, _b(fstype), _c_long(1)), "fsopen", fstype)  # FSOPEN_CLOEXEC
    try:
        _fd(_libc.syscall(_SYS_FSCONFIG, _c_long(fs), _c_long(_FSCONFIG_SET_FLAG), b"ro", None, _c_long(0)),
            "fsconfig", device)
        _fd(_libc.syscall(_SYS_FSCONFIG, _c_long(fs), _c_long(_FSCONFIG_SET_STRING), b"source", _b(device),
                          _c_long(0)), "fsconfig", device)
        _fd(_libc.syscall(_SYS_FSCONFIG, _c_long(fs), _c_long(_FSCONFIG_CMD_CREATE), None, None, _c_long(0)),
            "mount", device)
        return _fd(_libc.syscall(_SYS_FSMOUNT, _c_long(fs), _c_long(1), _c_long(attrs)), "fsmount", device)
    finally:
        os.close(fs)


def move_mount(fd: int, target: str) -> None:
    """Attach the detached mount ``fd`` (from ``fsmount_bdev``) at ``target``."""
    _fd(_libc.syscall(_SYS_MOVE_MOUNT, _c_long(fd), b"", _c_long(-100), _b(target),
                      _c_long(_MOVE_MOUNT_F_EMPTY_PATH)), "move_mount", target)


def open_in_root(root_fd: int, path: str, flags: int) -> int:
    """openat2(2) of ``path`` with ``root_fd`` as its root: symlinks (absolute ones too) and
    ``..`` resolve inside it, as they will in the container."""
    how = (flags | os.O_CLOEXEC).to_bytes(8, "little") + bytes(8) + (
        _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS).to_bytes(8, "little")
    return _fd(_libc.syscall(_SYS_OPENAT2, _c_long(root_fd), _b(path), how, _c_long(len(how))), "openat2", path)


def prctl(option: int, arg2: int = 0) -> None:
    _check(_libc.prctl(option, arg2, 0, 0, 0), "prctl")


def set_pdeathsig(sig: int, expected_parent: int) -> None:
    """Die with ``sig`` when the parent dies; exit now if it already has.

    ``expected_parent`` is what ``getppid()`` should say: 0 when the parent is outside our
    PID namespace (then it cannot be checked).
    """
    prctl(PR_SET_PDEATHSIG, sig)
    if expected_parent and os.getppid() != expected_parent:
        os._exit(137)


def no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def drop_bounding(caps) -> None:
    """Drop capabilities from the bounding set: a later execve as root gets none of them."""
    for cap in caps:
        try:
            prctl(PR_CAPBSET_DROP, cap)
        except OSError as e:
            if e.errno != errno.EINVAL:  # (a capability this kernel does not know)
                raise


def sethostname(name: str) -> None:
    data = name.encode()
    _check(_libc.sethostname(data, len(data)), "sethostname")


def loopback_up() -> None:
    """Set ``lo`` up in this (new) network namespace: SIOCGIFFLAGS, then SIOCSIFFLAGS with IFF_UP."""
    import _socket

    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        req = b"lo".ljust(16, b"\0") + bytes(24)
        flags = int.from_bytes(fcntl.ioctl(sock.fileno(), 0x8913, req)[16:18], sys.byteorder)
        fcntl.ioctl(sock.fileno(), 0x8914, req[:16] + (flags | 1).to_bytes(2, sys.byteorder) + bytes(22))
    finally:
        sock.close()


# -- loop devices ------------------------------------------------------------------------
_LOOP_CTL_GET_FREE = 0x4C82
_LOOP_CONFIGURE = 0x4C0A
_LOOP_SET_FD, _LOOP_SET_STATUS64, _LOOP_CLR_FD = 0x4C00, 0x4C04, 0x4C01
LO_FLAGS_READ_ONLY, LO_FLAGS_AUTOCLEAR = 1, 4


def _u(value: int, size: int) -> bytes:
    """A native-endian unsigned C integer (``struct`` would cost ~0.2 ms to import)."""
    return value.to_bytes(size, sys.byteorder)


def _loop_info(offset: int, size: int, readonly: bool, name: str) -> bytes:
    """struct loop_info64: 5 u64, 4 u32, name[64], crypt[64], key[32], 2 u64 = 232 bytes."""
    flags = LO_FLAGS_AUTOCLEAR | (LO_FLAGS_READ_ONLY if readonly else 0)
    return (bytes(24) + _u(offset, 8) + _u(size, 8) + bytes(12) + _u(flags, 4)
            + os.fsencode(name)[-63:].ljust(64, b"\0") + bytes(64 + 32 + 16))


def loop_attach(image: str, offset: int, size: int, readonly: bool) -> tuple[str, int]:
    """Attach ``image[offset:offset+size]`` to a free loop device with autoclear set.

    Returns ``("/dev/loopN", fd)``: keep ``fd`` open until the device is mounted, then close
    it. Autoclear frees the device when its last user (the open fd, then the mount in our
    namespace) goes away, so a killed launch leaves nothing behind.
    """
    img_fd = os.open(image, (os.O_RDONLY if readonly else os.O_RDWR) | os.O_CLOEXEC)
    if size:  # filesystems check their size against the device's, which counts whole sectors
        size = min(-(-size // 4096) * 4096, os.fstat(img_fd).st_size - offset)
    try:
        ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        try:
            for _attempt in range(20):
                number = fcntl.ioctl(ctl, _LOOP_CTL_GET_FREE)
                dev = f"/dev/loop{number}"
                if not os.path.exists(dev):
                    os.mknod(dev, 0o660 | 0o060000, os.makedev(7, number))
                dev_fd = os.open(dev, (os.O_RDONLY if readonly else os.O_RDWR) | os.O_CLOEXEC)
                keep = False
                try:
                    config = _u(img_fd, 4) + bytes(4) + _loop_info(offset, size, readonly, image) + bytes(64)
                    try:
                        fcntl.ioctl(dev_fd, _LOOP_CONFIGURE, config)
                    except OSError as e:
                        if e.errno == errno.EBUSY:
                            continue  # another process took it between GET_FREE and here
                        if e.errno not in (errno.EINVAL, errno.ENOTTY):
                            raise
                        fcntl.ioctl(dev_fd, _LOOP_SET_FD, img_fd)  # kernels before 5.8
                        fcntl.ioctl(dev_fd, _LOOP_SET_STATUS64, _loop_info(offset, size, readonly, image))
                    keep = True
                    return dev, dev_fd
                finally:
                    if not keep:
                        os.close(dev_fd)
            raise OSError(errno.EBUSY, "no free loop device")
        finally:
            os.close(ctl)
    finally:
        os.close(img_fd)


def map_single_id(inside_uid: int, inside_gid: int, uid: int, gid: int) -> None:
    """In a fresh user namespace of ours: map one uid and gid (setgroups denied first)."""
    for name, text in (("setgroups", "deny"), ("uid_map", f"{inside_uid} {uid} 1"),
                       ("gid_map", f"{inside_gid} {gid} 1")):
        fd = os.open(f"/proc/self/{name}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
