"""The plan step: resolve ``RunOptions`` into the launch's records, against host and image.

``plan(image, action, args, opts)`` decides the identity (``choose_identity``), the home
directory and working directory, the environment and the action script
(``runtime.actions``), how the image becomes the lower layer (``runtime.lower``, or the
mount ``runtime.prefetch`` made) and the overlays, and returns the ``RootPlan`` and
``ProcessSpec`` (``runtime.description``) that the container's init and the process
step read. It probes files and creates the session mount point; it enters no namespace.

``choose_identity(mode, user)`` turns the ``userns`` choice (``self``, ``root``,
``subuid``, ``auto``) into an ``Identity`` for this host: as root, no namespace;
unprivileged, a one-id map or, with ``subuid``, the user's /etc/subuid and /etc/subgid
ranges mapped by newuidmap/newgidmap (the build asks it too: ``runtime.choose_identity``).
"""

from __future__ import annotations

from base import lean_os as os
from runtime import actions
from runtime.description import Bind, HostUser, Identity, MountSpec, OverlaySpec, ProcessSpec, RootPlan, RunOptions
from runtime.paths import runtime_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runtime.prefetch import Prefetched

__all__ = ["plan", "parse_bind", "parse_mount", "choose_identity", "host_user", "subid_range"]

_NO_CWD_BIND = ("/", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/var", "/opt", "/root")


def _error(kind: str, *args: object, **kwargs: object) -> Exception:
    """The ``base.errors`` exception ``kind``: that module (with ``base.records``, ~0.6 ms of
    imports) is loaded on the first error, not on every launch."""
    from base import errors

    return getattr(errors, kind)(*args, **kwargs)


def host_user() -> HostUser:
    """The calling user as /etc/passwd (or the environment) describes them."""
    import pwd

    uid, gid = os.getuid(), os.getgid()
    try:
        entry = pwd.getpwuid(uid)
        name, home, shell, gecos = entry.pw_name, entry.pw_dir, entry.pw_shell, entry.pw_gecos
    except KeyError:
        name, home, shell, gecos = os.environ.get("USER", f"u{uid}"), os.environ.get("HOME", "/"), "/bin/sh", ""
    groups = []
    try:
        import grp

        for g in dict.fromkeys([gid, *os.getgroups()]):
            try:
                groups.append((g, grp.getgrgid(g).gr_name))
            except KeyError:
                pass
    except ImportError:  # pragma: no cover
        pass
    return HostUser(uid, gid, name, home, shell or "/bin/sh", gecos, tuple(groups))


def subid_range(file: str, user: HostUser) -> tuple[int, int] | None:
    """``(start, count)`` of ``user``'s range in /etc/subuid or /etc/subgid, or None."""
    try:
        with open(file) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[0] in (user.name, str(user.uid)):
                    return int(parts[1]), int(parts[2])
    except (OSError, ValueError):
        pass
    return None


def choose_identity(mode: str, user: HostUser | None = None) -> Identity:
    """Which user namespace to use (``user``: the host user, looked up when None).

    As root: none, whatever ``mode`` says (root needs no mapping). Unprivileged:
    ``self`` maps the user to itself (one id; what ``exec``/``run``/``shell`` use);
    ``root`` maps the user to root (one id: files can be created but not chowned);
    ``subuid`` maps the user to root and 1..N to its /etc/subuid and /etc/subgid ranges via
    newuidmap/newgidmap (what package managers need); ``auto`` is ``subuid`` when the user has
    both ranges and newuidmap/newgidmap exist, else ``root``.
    """
    user = host_user() if user is None else user
    if user.uid == 0:
        return Identity("host", 0, user.gid)
    if mode in ("subuid", "auto"):
        su, sg = subid_range("/etc/subuid", user), subid_range("/etc/subgid", user)
        from shutil import which

        tools = which("newuidmap") and which("newgidmap")
        if su and sg and tools:
            return Identity("subuid", user.uid, user.gid, su, sg)
        if mode == "subuid":
            missing = "newuidmap/newgidmap not found" if not tools else "no range in /etc/subuid or /etc/subgid"
            raise _error("CapabilityError", f"mapping subordinate ids for {user.name}: {missing}",
                         hint="install uidmap and add a range, e.g. usermod --add-subuids 100000-165535 "
                              f"--add-subgids 100000-165535 {user.name}")
        mode = "root"
    if mode not in ("self", "root"):
        raise _error("UsageError", f"unknown user namespace mode {mode!r}")
    return Identity(mode, user.uid, user.gid)


def _split_unescaped(text: str, sep: str) -> list[str]:
    """``text`` split at each ``sep`` not preceded by a backslash; ``\\<sep>`` becomes ``sep``."""
    if "\\" not in text:
        return text.split(sep)
    parts, cur, i = [], "", 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in ",:":
            cur += "\\" + text[i + 1] if sep != text[i + 1] else sep  # (the other escape: kept for later)
            i += 2
            continue
        if text[i] == sep:
            parts.append(cur)
            cur = ""
        else:
            cur += text[i]
        i += 1
    return [*parts, cur]


def parse_bind(spec: str) -> list[Bind]:
    """``SRC[:DST[:ro|rw]]``, several separated by commas (``\\,`` and ``\\:`` escape them)."""
    out = []
    for item in filter(None, _split_unescaped(spec, ",")):
        parts = [p.replace("\\:", ":").replace("\\,", ",") for p in _split_unescaped(item, ":")]
        if len(parts) > 3 or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise _error("UsageError", f"bad --bind {item!r}: expected SRC[:DST[:ro|rw]]")
        src = os.path.abspath(parts[0])  # (a relative source is made absolute, and is the destination too)
        readonly = len(parts) == 3 and parts[2] == "ro"
        dst = parts[1] if len(parts) > 1 else src
        if len(parts) == 2 and parts[1] in ("ro", "rw"):
            dst, readonly = src, parts[1] == "ro"
        if not dst.startswith("/"):
            raise _error("UsageError", f"bad --bind {item!r}: the destination must be an absolute path")
        out.append(Bind(src, os.path.normpath(dst), readonly))
    return out


_MOUNT_KEYS = {"source": "src", "src": "src", "destination": "dst", "dst": "dst", "target": "dst",
               "ro": "ro", "readonly": "ro", "type": "type", "image-src": "image-src", "id": "id", "nonested": "nonested"}


def parse_mount(spec: str) -> list[Bind]:
    """``--mount`` (Docker's syntax, one mount a line, CSV fields): ``type=bind,source=S,
    destination=D[,readonly]``. As Apptainer, ``ro``/``readonly`` with any value means read-only."""
    import csv

    out = []
    for line in filter(str.strip, spec.split("\n")):
        fields: dict[str, str] = {}
        for item in next(csv.reader([line])):
            key, _, value = item.strip().partition("=")
            name = _MOUNT_KEYS.get(key.lower())
            if name is None:
                raise _error("UsageError", f"bad --mount {line!r}: {key!r} is not a supported field",
                             hint="use type=bind,source=SRC,destination=DST[,readonly]")
            fields[name] = value
        if fields.get("type", "bind") != "bind":
            raise _error("UsageError", f"bad --mount {line!r}: only type=bind is supported")
        if fields.get("image-src") or fields.get("id"):
            raise _error("UsageError", f"bad --mount {line!r}: image-src and id are not supported by sbuild")
        if not fields.get("src") or not fields.get("dst"):
            raise _error("UsageError", f"bad --mount {line!r}: source and destination are required")
        if not fields["dst"].startswith("/"):
            raise _error("UsageError", f"bad --mount {line!r}: the destination must be an absolute path")
        out.append(Bind(os.path.abspath(fields["src"]), os.path.normpath(fields["dst"]), "ro" in fields))
    return out


def _overlay(spec: str, userns: bool) -> OverlaySpec:
    path, readonly = spec, False
    if spec.endswith(":ro") or spec.endswith(":rw"):
        path, readonly = spec[:-3], spec.endswith(":ro")
    path = os.path.abspath(path)
    from runtime.lower import probe

    info = probe(path)
    if info.kind == "sandbox":
        return OverlaySpec(path, readonly, "dir")
    if info.fstype != "ext3":
        raise _error("ImageError", f"using {spec} as an overlay: not a directory or an ext3 image", path=path)
    if userns:
        raise _error("CapabilityError", f"using {spec} as an overlay unprivileged: ext3 images need root to "
                     "mount", hint="use a directory overlay (--overlay DIR) or run as root")
    return OverlaySpec(path, readonly, "ext3", info.fs_offset, info.fs_size)


def _check_binds(binds: tuple[Bind, ...]) -> None:
    for b in binds:
        if not os.path.exists(b.src):
            raise _error("UsageError", f"mount source {b.src} doesn't exist")


def _passwd(user: HostUser, ident: Identity, home: str) -> tuple[str, str] | None:
    if ident.inside_uid == 0:
        return None
    pw = f"{user.name}:x:{user.uid}:{user.gid}:{user.gecos}:{home}:{user.shell}"
    groups = user.groups if ident.mode == "host" else user.groups[:1]
    gr = "\n".join(f"{name}:x:{gid}:{user.name}" for gid, name in groups) or f"{user.name}:x:{user.gid}:"
    return pw, gr


def _home(opts: RunOptions, user: HostUser, ident: Identity) -> tuple[str | None, str, bool]:
    """``(host source or None for an empty dir, container home, whether to mount it)``.

    ``--home SRC[:DST]`` binds SRC at DST, even with ``--contain`` (a missing SRC becomes an
    empty dir); otherwise the user's home is bound at the same path, or at /root when the
    user is mapped to root (like Apptainer's --fakeroot); with ``--contain`` an empty
    directory is used; ``--no-home`` and build mode mount nothing (HOME still points there).
    """
    no_home = opts.no_home or "home" in opts.no_mount
    if opts.home:
        src, _, dst = opts.home.partition(":")
        if ":" in dst:
            raise _error("UsageError", f"bad --home {opts.home!r}: expected SRC[:DST]")
        src = os.path.abspath(src)
        if src == "/":
            import logging

            logging.getLogger("sbuild.runtime").warning("Home directory / is not bound")
            return None, "/", False
        return (src if os.path.isdir(src) else None), dst or src, not (opts.build_config or no_home)
    inside = "/root" if ident.inside_uid == 0 else user.home
    if no_home or opts.build_config:
        return None, inside, False
    return (None if opts.contain else user.home), inside, True


def _cwd(opts: RunOptions, home: str | None) -> tuple[str, str | None]:
    """``(cwd inside, host dir to bind at the same path or None)``."""
    if opts.pwd:
        return opts.pwd, None
    if opts.build_config:
        return "/", None
    if opts.contain or "cwd" in opts.no_mount:
        return (home or "/") if opts.contain else os.getcwd(), None
    try:
        cwd = os.getcwd()
    except OSError:
        return home or "/", None
    tmp = () if "tmp" in opts.no_mount else ("/tmp", "/var/tmp")
    covered = [p for p in ((home if not opts.no_home else None), *tmp) if p]
    if cwd in _NO_CWD_BIND or cwd.startswith(("/proc/", "/sys/", "/dev/")):
        return cwd, None
    if any(cwd == p or cwd.startswith(p.rstrip("/") + "/") for p in covered):
        return cwd, None
    return cwd, cwd


_EXTRAS = ("no_mount", "dns", "hostname", "unshare", "gpu", "cgroups", "drop_caps", "add_caps", "no_privs", "security")


def _process(action: str, args: list[str], opts: RunOptions, host_env: dict, image: str,
             home: str, cwd: str) -> ProcessSpec:
    env = actions.container_env(host_env, action=action, image=image, home=home, cleanenv=opts.cleanenv,
                                shell=opts.shell, app=opts.app, no_env=opts.no_env)
    argv, fallback = actions.action_argv(action, args, host_env=host_env, user_env=dict(opts.env),
                                         shell=opts.shell or "/bin/sh", no_eval=opts.no_eval)
    return ProcessSpec(argv, tuple(env.items()), cwd, fallback, *opts.stdio, cwd_strict=bool(opts.pwd),
                       home=home, umask=0o022 if opts.no_umask else None)


def plan(image: str, action: str, args: list[str], opts: RunOptions, *, join: bool = False,
         prefetched: Prefetched | None = None) -> tuple[RootPlan | None, ProcessSpec, Identity]:
    """``(root plan, process, identity)`` for running ``action`` in ``image``; no root plan
    when joining an instance (``join``: its filesystem exists already). ``prefetched``: the
    image's squashfs as ``runtime.prefetch`` mounted it, used as the lower layer."""
    user = host_user()
    host_env = dict(os.environ if opts.host_env is None else opts.host_env)
    ident = opts.userns if isinstance(opts.userns, Identity) else choose_identity(opts.userns, user)
    home_src, home_in, mount_home = _home(opts, user, ident)
    cwd, bind_cwd = _cwd(opts, home_in)
    proc = _process(action, args, opts, host_env, image, home_in or "/", cwd)
    if join:
        return None, proc, ident
    more: tuple[dict, dict, dict, tuple[Bind, ...]] = ({}, {}, {}, ())
    if any(getattr(opts, name) for name in _EXTRAS):
        from runtime.features import resolve

        more = resolve(opts, ident, MountSpec().host_files)
        proc = proc._replace(**more[2])
    binds = (*more[3], *opts.binds)
    _check_binds(binds)
    fstype, path, offset, size = _source(image, ident, opts, prefetched)
    overlays = tuple(_overlay(o, ident.userns) for o in opts.overlays)
    if sum(not o.readonly for o in overlays) > 1:
        raise _error("UsageError", "only one writable --overlay is allowed; add :ro to the others")
    workdir = _workdir(opts.workdir)
    mounts = MountSpec(opts.writable, opts.writable_tmpfs, overlays, binds, opts.contain, not mount_home,
                       home_src, home_in if mount_home else None, opts.build_config, bind_cwd,
                       workdir=workdir, scratch=tuple(os.path.normpath(d) for d in opts.scratch))._replace(**more[0])
    lower = prefetched.fd if prefetched is not None and fstype == "squashfs" else None
    root = RootPlan(os.path.join(runtime_dir(), "mnt"), path, fstype, offset, size, mounts,
                    ident, _passwd(user, ident, home_in or "/"), nosuid=user.uid != 0, lower=lower, **more[1])
    os.makedirs(root.session, 0o700, exist_ok=True)
    return root, proc, ident


def _workdir(path: str | None) -> str | None:
    if not path:
        return None
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise _error("UsageError", f"workdir {path} doesn't exist or is not a directory")
    return path


def _source(image: str, ident: Identity, opts: RunOptions,
            prefetched: Prefetched | None) -> tuple[str, str, int, int]:
    """``(fstype, path, offset, size)`` of the image (``runtime.lower.lower_for``; a
    sandbox, or a squashfs ``runtime.prefetch`` already found, without importing it)."""
    if prefetched is not None and not ident.userns and not opts.writable:
        return "squashfs", os.path.abspath(image), prefetched.offset, prefetched.size
    if os.path.isdir(image):
        return "dir", os.path.abspath(image), 0, 0
    from runtime.lower import lower_for

    src = lower_for(image, userns=ident.userns, writable=opts.writable)
    return src.fstype, src.path, src.offset, src.size
