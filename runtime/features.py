"""Part of the plan: the launch flags off the common path, resolved as Apptainer does (§5).

``resolve(opts, ident)`` turns ``--no-mount``, ``--hostname``/``--uts``/``--ipc``/``--net``,
``--nv``/``--rocm``, ``--cpus``/``--memory``, ``--drop-caps``/``--no-privs``/``--add-caps``
and ``--security`` into changes of the launch records: ``(MountSpec changes, RootPlan
changes, ProcessSpec changes, extra binds)``. ``runtime.plan`` imports this module only when
one of them is used, so that the common launch does not pay for it.

Limits: no CNI networks (only ``--network none``: a namespace with loopback up); GPU support
binds what it finds (``runtime.gpu``); cgroup limits are ``runtime.cgroups``'s (root, or a
delegated cgroup v2); ``--security`` takes ``uid:``/``gid:`` (root only) and refuses
``seccomp:``, ``selinux:`` and ``apparmor:``, which this runtime cannot apply.
"""

from __future__ import annotations

from runtime import _sys
from runtime.description import Bind, Identity, RunOptions

__all__ = ["resolve", "capability_numbers"]

_KNOWN_MOUNTS = ("proc", "sys", "dev", "devpts", "tmp")
_CAPS = ("CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
         "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
         "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
         "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
         "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
         "CHECKPOINT_RESTORE")


def capability_numbers(names: tuple[str, ...]) -> tuple[int, ...]:
    """``CAP_X``/``x`` names (``all`` too) as numbers; unknown ones are warned about and skipped."""
    out = []
    for name in names:
        key = name.strip().upper().removeprefix("CAP_")
        if key == "ALL":
            out += range(len(_CAPS))
        elif key in _CAPS:
            out.append(_CAPS.index(key))
        else:
            _warn("won't add unknown capability: %s", name)
    return tuple(dict.fromkeys(out))


def _no_mount(opts: RunOptions, host_files: tuple[str, ...]) -> dict:
    skip = []
    for name in opts.no_mount:
        if name in _KNOWN_MOUNTS:
            skip.append(name)
        elif name == "bind-paths":
            host_files = ()
        elif name in host_files:
            host_files = tuple(f for f in host_files if f != name)
        elif name not in ("home", "cwd", "hostfs"):  # (home, cwd: the plan; hostfs: none here)
            _warn("Ignoring unknown mount type '%s'", name)
    return {"skip": tuple(skip), "host_files": host_files}


def _privileges(opts: RunOptions, ident: Identity) -> dict:
    changes: dict = {}
    drop = capability_numbers(opts.drop_caps)
    if opts.no_privs and not ident.userns:
        drop = tuple(range(len(_CAPS)))
    if drop:
        changes["drop_caps"] = drop
    if opts.add_caps and ident.userns:
        for name in opts.add_caps:
            _warn("not authorized to add capability: %s", name)
    uid = gid = -1
    if opts.security:
        from base.errors import CapabilityError, UsageError
    for spec in opts.security:
        kind, _, value = spec.partition(":")
        if kind in ("uid", "gid"):
            if ident.userns:
                raise UsageError(f"--security {spec}: uid and gid security feature requires root privileges")
            try:
                number = int(value.split(":")[0])
            except ValueError:
                raise UsageError(f"bad --security {spec!r}: expected {kind}:N") from None
            uid, gid = (number, gid) if kind == "uid" else (uid, number)
        elif kind in ("seccomp", "selinux", "apparmor"):
            raise CapabilityError(f"--security {spec}: {kind} is not supported by sbuild's runtime on this host")
        else:
            raise UsageError(f"bad --security {spec!r}: unknown security feature {kind!r}")
    if (uid, gid) != (-1, -1):
        changes["setids"] = (uid, gid)
    return changes


def _warn(message: str, *args: object) -> None:
    """A warning through ``logging``, loaded with the first one: ``--containall`` and
    ``--hostname`` launches pass here, and importing it costs ~10 ms (``os``, ``re``,
    ``traceback``, ``threading``)."""
    import logging

    logging.getLogger("sbuild.runtime").warning(message, *args)


def _namespaces(opts: RunOptions) -> dict:
    flags = 0
    for name in opts.unshare:
        flags |= {"ipc": _sys.CLONE_NEWIPC, "uts": _sys.CLONE_NEWUTS, "net": _sys.CLONE_NEWNET}[name]
    return {"unshare": flags} if flags else {}


def resolve(opts: RunOptions, ident: Identity, host_files: tuple[str, ...]) -> tuple[dict, dict, dict, tuple[Bind, ...]]:
    """``(MountSpec changes, RootPlan changes, ProcessSpec changes, extra binds)`` for ``opts``."""
    mounts = _no_mount(opts, host_files) if opts.no_mount else {}
    if opts.hostname:
        mounts["hostname"] = opts.hostname
    if opts.dns:
        mounts["dns"] = tuple(filter(None, (s.strip() for s in opts.dns.split(","))))
    root = _namespaces(opts)
    extra: tuple[Bind, ...] = ()
    if opts.gpu:
        from runtime.gpu import gpu_binds

        extra = gpu_binds(opts.gpu)
    if opts.cgroups:
        from runtime.cgroups import create

        root["cgroup"] = create(dict(opts.cgroups), rootless=ident.userns)
    return mounts, root, _privileges(opts, ident), extra
