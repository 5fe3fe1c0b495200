"""The parsed launch flags as ``runtime.description.RunOptions``, with Apptainer's checks.

``run_options(args)`` reads the namespace ``builder.commands.run`` (or ``instance start``)
parsed, after ``prepare(args, command)`` filled it from the environment twins
(``action_flags.apply_env``) and logged their notes. It resolves the flags that imply
others (``--containall``, ``--compat``, ``--hostname``, ``--network``), refuses what
Apptainer refuses (root-only flags for an ordinary user, ``--net`` with a network other
than ``none``, a bad ``--mount`` or ``--security``), reads ``--env-file`` and ``--env``
(``runtime.envfile``), and warns about flags this host accepts but cannot honour.
Imports the runtime only when called (not at load: the fast path loads this module).
"""

from __future__ import annotations

from base import lean_os as os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

__all__ = ["prepare", "run_options"]

# flags accepted for compatibility that change nothing here (no setuid starter, no CNI, no
# CDI, no encrypted SIF, no image cache for runs by path)
_WARN_IGNORED = ("apply_cgroups", "blkio_weight", "blkio_weight_device", "cpu_shares", "cpuset_cpus",
                 "cpuset_mems", "memory_reservation", "memory_swap", "oom_kill_disable", "pids_limit",
                 "fusemount", "device", "containlibs", "dmtcp_launch", "dmtcp_restart", "netns_path")
_ROOT_ONLY = ("keep_privs", "allow_setuid", "boot")


def _error(kind: str, *args: object, **kwargs: object) -> Exception:
    """The ``base.errors`` exception ``kind``: that module (with ``base.records``, ~0.6 ms of
    imports) is loaded on the first error, not on every launch."""
    from base import errors

    return getattr(errors, kind)(*args, **kwargs)


def _log(level: str, message: str) -> None:
    import logging

    getattr(logging.getLogger("sbuild.runtime"), level)(message)


def prepare(args: argparse.Namespace, command: str) -> None:
    """Fill ``args`` from the environment twins of its flags; log what Apptainer logs."""
    from builder.commands.action_flags import apply_env

    for level, message in apply_env(args, command):
        _log(level, message)


def _env(args) -> tuple[tuple[str, str], ...]:
    """``--env-file`` then ``--env`` (which wins, with Apptainer's warning)."""
    pairs: dict[str, str] = {}
    if getattr(args, "env_file", None):
        from runtime import read_env_file

        for path in args.env_file:
            pairs.update(read_env_file(path, os.environ))
    given: dict[str, str] = {}
    for item in args.env:
        parts = [item] if item.count("=") == 1 else item.split(",")
        for part in parts:
            key, sep, value = part.partition("=")
            if not sep or not key:
                raise _error("UsageError", f"bad --env {item!r}: expected K=V")
            given[key] = value.strip('"') if len(value) > 1 and value[0] == value[-1] == '"' else value
    for key in given:
        if key in pairs:
            _log("warning", f"Ignored environment file variable {key}: override from --env")
    return tuple({**pairs, **given}.items())


def _privileges(args) -> None:
    if os.getuid() != 0:
        for name in _ROOT_ONLY:
            if getattr(args, name, False):
                flag = "--" + name.replace("_", "-")
                raise _error("UsageError", f"Could not configure {flag}: {flag} requires root privileges")


def _network(args) -> str | None:
    network = args.network
    if not (args.net or network):
        return None
    network = network or "bridge"
    if network != "none":
        if os.getuid() != 0:
            raise _error("CapabilityError", "network requires root or a suid installation with /etc/subuid "
                         "--fakeroot; non-root users can only use --network=none unless permitted by the "
                         "administrator", hint="use --net --network none (loopback only)")
        raise _error("CapabilityError", f"network {network!r}: sbuild has no CNI networking; only --network none "
                     "is supported", hint="use --net --network none (loopback only)")
    return network


def _cgroups(args) -> tuple[tuple[str, str], ...]:
    limits = tuple((k, getattr(args, k)) for k in ("cpus", "memory") if getattr(args, k, None))
    for name in _WARN_IGNORED:
        if getattr(args, name, None):
            _log("warning", f"--{name.replace('_', '-')} is not supported by sbuild and is ignored")
    return limits


def run_options(args: argparse.Namespace):
    """The ``RunOptions`` the parsed flags ask for."""
    from runtime.description import RunOptions

    if args.compat:
        args.containall = args.writable_tmpfs = args.no_eval = args.no_umask = True
    binds = ()
    if args.bind or args.mount:
        from runtime.plan import parse_bind, parse_mount

        binds = (*(b for spec in args.bind for b in parse_bind(spec)),
                 *(b for spec in args.mount for b in parse_mount(spec)))
    if args.writable and args.writable_tmpfs:
        _log("warning", "Disabling --writable-tmpfs flag, mutually exclusive with --writable")
        args.writable_tmpfs = False
    _privileges(args)
    contain = args.contain or args.containall
    unshare = tuple(ns for ns, on in (("ipc", args.ipc or args.containall), ("uts", args.uts or args.hostname),
                                      ("net", args.net or args.network)) if on)
    for spec in args.security:
        if ":" not in spec:
            raise _error("UsageError", f"bad --security {spec!r}: expected uid:N, gid:N, seccomp:FILE, selinux:X "
                         "or apparmor:X")
    if args.compat32 and not (args.nv or args.rocm):
        _log("warning", "--compat32 has no effect without --nv or --rocm")
    gpu = tuple(g for g, on, off in (("nv", args.nv or args.nvccli, args.no_nv), ("rocm", args.rocm, args.no_rocm))
                if on and not off)
    return RunOptions(
        binds=binds, overlays=tuple(args.overlay), writable=args.writable, writable_tmpfs=args.writable_tmpfs,
        contain=contain, cleanenv=args.cleanenv or args.containall, env=_env(args),
        pwd=getattr(args, "pwd", None), home=args.home, no_home=args.no_home, app=args.app,
        shell=getattr(args, "shell", None), userns="auto" if args.fakeroot else "self",
        no_mount=tuple(args.no_mount), workdir=args.workdir, scratch=tuple(args.scratch), no_eval=args.no_eval,
        unshare=unshare, hostname=args.hostname, network=_network(args), gpu=gpu, cgroups=_cgroups(args),
        add_caps=tuple(filter(None, (args.add_caps or "").split(","))),
        drop_caps=tuple(filter(None, (args.drop_caps or "").split(","))),
        no_privs=args.no_privs, security=tuple(args.security), no_umask=args.no_umask,
        no_env=tuple(args.no_env), dns=args.dns,
    )
