"""The launch flags of ``exec``/``run``/``shell``/``test`` and ``instance start``: one table.

``OPTIONS`` lists every flag of Apptainer's ``action_flags.go`` (reference apptainer-cli.md
§4.1) with its kind, its environment keys and where it applies. ``builder.commands.run``
builds both of its parsers from it (``parse_quick`` and argparse), and ``apply_env`` reads
the ``APPTAINER_*``/``SINGULARITY_*`` twins after parsing (§3): a key's value applies only
when the flag was not given, except for ``--bind``/``--mount`` (keys marked ``+``), whose
environment values are added after the command line's.

Kinds: ``flag`` (a switch; ``--f=true|false`` too), ``value`` (one value, the last wins),
``append`` (repeatable, one element each), ``list`` (repeatable and comma-separated, as
pflag's stringSlice). Scope: ``""`` every launch, ``A`` exec/run/shell/test only, ``I``
instance start only, or the one command (``shell``, ``run``) it belongs to.

Standard library only (loaded before site-packages on the fast path); ``base.env`` is
imported only when the environment holds an Apptainer variable.
"""

from __future__ import annotations

from base import lean_os as os

__all__ = ["OPTIONS", "options_for", "dest", "apply_env", "FLAG_VALUES"]

_F, _V, _AP, _L = "flag", "value", "append", "list"

# (option strings, kind, metavar, env keys, scope, help)
OPTIONS = (
    (("--add-caps",), _V, "CAPS", ("ADD_CAPS",), "", "comma list of capabilities to add"),
    (("--allow-setuid",), _F, None, ("ALLOW_SETUID",), "", "root only: allow setuid binaries"),
    (("--app",), _V, None, ("APP", "APPNAME"), "", "run a SCIF app"),
    (("--apply-cgroups",), _V, "TOML", ("APPLY_CGROUPS",), "", "cgroups limits from a TOML file"),
    (("--authfile",), _V, "PATH", ("AUTH_FILE",), "", "registry credentials for URI images"),
    (("-B", "--bind"), _AP, "SRC[:DST[:ro|rw]]", ("+BIND", "+BINDPATH"), "",
     "bind a host path into the container (repeatable, comma-separated)"),
    (("--blkio-weight",), _V, "N", ("BLKIO_WEIGHT",), "", "block I/O weight (10-1000)"),
    (("--blkio-weight-device",), _L, "DEV:W", ("BLKIO_WEIGHT_DEVICE",), "", "per-device block I/O weight"),
    (("--boot",), _F, None, ("BOOT",), "I", "root only: run /sbin/init"),
    (("--cdi-dirs",), _L, "DIRS", (), "A", "CDI spec directories"),
    (("-e", "--cleanenv"), _F, None, ("CLEANENV",), "", "do not pass the host environment"),
    (("--compat",), _F, None, ("COMPAT",), "", "--containall --writable-tmpfs --no-init --no-umask --no-eval"),
    (("--compat32",), _F, None, ("COMPAT32",), "", "32-bit GPU libraries (with --nv/--rocm)"),
    (("-c", "--contain"), _F, None, ("CONTAIN",), "", "empty /tmp, /var/tmp and home; a minimal /dev"),
    (("-C", "--containall"), _F, None, ("CONTAINALL",), "", "--contain --pid --ipc --cleanenv"),
    (("--containlibs",), _L, "LIBS", ("CONTAINLIBS",), "", "libraries to put in /.singularity.d/libs"),
    (("--cpu-shares",), _V, "N", ("CPU_SHARES",), "", "CPU shares"),
    (("--cpus",), _V, "N", ("CPUS",), "", "number of CPUs (a quota over 100 ms)"),
    (("--cpuset-cpus",), _V, "LIST", ("CPUSET_CPUS",), "", "CPUs to run on"),
    (("--cpuset-mems",), _V, "LIST", ("CPUSET_MEMS",), "", "memory nodes to use"),
    (("--cwd", "--pwd"), _V, "DIR", ("CWD", "TARGET_CWD", "PWD", "TARGET_PWD"), "A",
     "working directory in the container"),
    (("--device",), _L, "CDI", (), "A", "CDI devices"),
    (("--disable-cache",), _F, None, ("DISABLE_CACHE",), "", "no image cache for URI images"),
    (("--dns",), _V, "IPS", ("DNS",), "", "comma list of DNS servers for resolv.conf"),
    (("--docker-host",), _V, "HOST", ("DOCKER_HOST",), "", "docker daemon"),
    (("--docker-login",), _F, None, ("DOCKER_LOGIN",), "", "ask for registry credentials"),
    (("--docker-username",), _V, "USER", ("DOCKER_USERNAME",), "", "registry user"),
    (("--docker-password",), _V, "PASS", ("DOCKER_PASSWORD",), "", "registry password"),
    (("--drop-caps",), _V, "CAPS", ("DROP_CAPS",), "", "comma list of capabilities to drop"),
    (("--env",), _AP, "K=V", (), "", "set a variable in the container (repeatable)"),
    (("--env-file",), _L, "FILE", ("ENV_FILE",), "", "file of variables to set in the container"),
    (("-f", "--fakeroot"), _F, None, ("FAKEROOT",), "", "appear as root (user namespace)"),
    (("--fusemount",), _L, "SPEC", ("FUSESPEC",), "", "FUSE mounts"),
    (("-H", "--home"), _V, "SRC[:DST]", ("HOME",), "", "home directory to bind"),
    (("--hostname",), _V, "NAME", ("HOSTNAME",), "", "the container's hostname (implies --uts)"),
    (("--ignore-fakeroot-command",), _F, None, ("IGNORE_FAKEROOT_COMMAND",), "", "no fakeroot(1) fallback"),
    (("--ignore-subuid",), _F, None, ("IGNORE_SUBUID",), "", "ignore /etc/subuid"),
    (("--ignore-userns",), _F, None, ("IGNORE_USERNS",), "", "no user namespace fallback"),
    (("--intel-hpu",), _F, None, ("INTEL_HPU",), "", "Intel Gaudi accelerators"),
    (("-i", "--ipc"), _F, None, ("IPC", "UNSHARE_IPC"), "", "own IPC namespace"),
    (("--keep-privs",), _F, None, ("KEEP_PRIVS",), "", "root only: keep root's capabilities"),
    (("--memory",), _V, "SIZE", ("MEMORY",), "", "memory limit (e.g. 512m, 2g)"),
    (("--memory-reservation",), _V, "SIZE", ("MEMORY_RESERVATION",), "", "memory soft limit"),
    (("--memory-swap",), _V, "SIZE", ("MEMORY_SWAP",), "", "memory plus swap limit (-1: unlimited)"),
    (("--mount",), _AP, "SPEC", ("+MOUNT",), "", "a docker-style mount: type=bind,src=...,dst=..."),
    (("-n", "--net"), _F, None, ("NET", "UNSHARE_NET"), "", "own network namespace"),
    (("--netns-path",), _V, "PATH", ("NETNS_PATH",), "", "join a network namespace"),
    (("--network",), _V, "NAMES", ("NETWORK",), "", "networks (none: loopback only); implies --net"),
    (("--network-args",), _L, "ARGS", ("NETWORK_ARGS",), "", "network arguments"),
    (("--no-env",), _L, "NAMES", ("NOENV",), "", "host variables not to pass"),
    (("--no-eval",), _F, None, ("NO_EVAL",), "", "do not shell-evaluate injected variables"),
    (("--no-home",), _F, None, ("NO_HOME",), "", "do not mount the home directory"),
    (("--nohttps", "--no-https"), _F, None, ("NOHTTPS", "NO_HTTPS"), "", "use http for registries"),
    (("--no-init",), _F, None, ("NOSHIMINIT",), "", "no shim PID 1"),
    (("--no-mount",), _L, "NAMES", ("NO_MOUNT",), "", "mounts to skip: proc,sys,dev,devpts,home,tmp,hostfs,"
                                                       "cwd,bind-paths or a destination"),
    (("--no-nv",), _F, None, ("NV_OFF", "NO_NV"), "", "no NVIDIA GPU support"),
    (("--no-privs",), _F, None, ("NO_PRIVS",), "", "drop every capability (root)"),
    (("--no-rocm",), _F, None, ("ROCM_OFF", "NO_ROCM"), "", "no ROCm GPU support"),
    (("--no-umask",), _F, None, ("NO_UMASK",), "", "umask 0022 instead of the host's"),
    (("--nv",), _F, None, ("NV",), "", "NVIDIA GPU support"),
    (("--nvccli",), _F, None, ("NVCCLI",), "", "NVIDIA GPUs through nvidia-container-cli"),
    (("--oom-kill-disable",), _F, None, ("OOM_KILL_DISABLE",), "", "disable the OOM killer"),
    (("-o", "--overlay"), _AP, "DIR|IMG[:ro]", ("OVERLAY", "OVERLAYIMAGE"), "",
     "persistent overlay: a directory or an ext3 image (repeatable)"),
    (("--passphrase",), _F, None, (), "", "passphrase of an encrypted SIF"),
    (("--pem-path",), _V, "PATH", (), "", "key of an encrypted SIF"),
    (("-p", "--pid"), _F, None, ("PID", "UNSHARE_PID"), "A", "own PID namespace (always on)"),
    (("--no-pid",), _F, None, ("NO_PID",), "A", "no PID namespace of its own"),
    (("--pid-file",), _V, "PATH", ("PID_FILE",), "I", "write the instance's PID"),
    (("--pids-limit",), _V, "N", ("PIDS_LIMIT",), "", "limit on processes"),
    (("--rocm",), _F, None, ("ROCM",), "", "AMD GPU support"),
    (("--runscript-timeout",), _V, "DURATION", ("RUNSCRIPT_TIMEOUT",), "run", "runscript shell commands' limit"),
    (("-S", "--scratch"), _L, "DIRS", ("SCRATCH", "SCRATCHDIR"), "", "empty writable directories, discarded"),
    (("--security",), _L, "SPEC", ("SECURITY",), "", "uid:N, gid:N, seccomp:, selinux:, apparmor:"),
    (("--sharens",), _F, None, ("SHARENS",), "A", "share namespaces among processes of one parent"),
    (("-s", "--shell"), _V, "PATH", ("SHELL",), "shell", "the shell to run"),
    (("--tmpdir",), _V, "DIR", ("TMPDIR",), "", "temporary directory for pulls"),
    (("--underlay",), _F, None, ("UNDERLAY",), "", "underlay instead of overlay"),
    (("--unsquash",), _F, None, ("UNSQUASH",), "", "extract the image to a temporary sandbox"),
    (("-u", "--userns"), _F, None, ("USERNS", "UNSHARE_USERNS"), "", "user namespace (always on unprivileged)"),
    (("--uts",), _F, None, ("UTS", "UNSHARE_UTS"), "", "own UTS namespace"),
    (("-W", "--workdir"), _V, "DIR", ("WORKDIR",), "", "host directory for /tmp, /var/tmp, home and scratch"),
    (("-w", "--writable"), _F, None, ("WRITABLE",), "", "write into a sandbox or ext3 image"),
    (("--writable-tmpfs",), _F, None, ("WRITABLE_TMPFS",), "", "writable, with changes kept in memory only"),
    (("--dmtcp-launch",), _V, "PATH", ("DMTCP_LAUNCH",), "I", "checkpoint directory (not supported)"),
    (("--dmtcp-restart",), _V, "PATH", ("DMTCP_RESTART",), "I", "restart from a checkpoint (not supported)"),
)

FLAG_VALUES = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
               "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}


def dest(strings: tuple[str, ...]) -> str:
    """The attribute a flag sets: its last long name, as argparse derives it."""
    return strings[-1][2:].replace("-", "_")


def options_for(command: str) -> tuple:
    """The entries of ``OPTIONS`` that ``command`` (exec, run, shell, test, instance) takes."""
    scopes = ("", "I") if command == "instance" else ("", "A", command)
    return tuple(o for o in OPTIONS if o[4] in scopes)


_KINDS = {_F: "bool", _V: "value", _AP: "append", _L: "list"}  # base.env.twin_value's names


def _given(value: object) -> bool:
    return value not in (None, False, [])


def apply_env(args, command: str, environ=None) -> list[tuple[str, str]]:
    """Fill the flags of ``args`` not given on the command line from their environment twins
    (``--bind``/``--mount``: added after); return the notes to log (``(level, message)``)."""
    env = os.environ if environ is None else environ
    if not any(k.startswith(("APPTAINER_", "SINGULARITY_")) for k in env):
        return []
    from base.env import appended, twin_value

    notes = []
    for strings, kind, _m, keys, _s, _h in options_for(command):
        if not keys:
            continue
        name = dest(strings)
        if keys[0].startswith("+"):  # the append handler: every key contributes
            extra, found_notes = appended([k[1:] for k in keys], env)
            setattr(args, name, [*getattr(args, name), *extra])
            notes += found_notes
            continue
        if _given(getattr(args, name, None)):
            continue
        found = twin_value(keys, _KINDS[kind], env)
        if found is None:
            continue
        value, note = found
        notes += [note] if note else []
        setattr(args, name, value)
    return notes
