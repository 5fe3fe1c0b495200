"""The launch description: every record a container launch is made of, in one place.

Three levels, each built once and read by the later steps (``runtime/__init__.py`` gives
the order):

- ``RunOptions``: what is asked, in the user's terms (``--bind``, ``--home SRC:DST``,
  ``--overlay PATH[:ro]``, ``userns``). The commands (``builder.commands.run``) and the API
  (``runtime.run_in_sandbox``) build it.
- ``Identity`` (which user namespace), ``MountSpec`` (what the filesystem is made of),
  ``ProcessSpec`` (what runs, with which environment): ``runtime.plan`` resolves the
  options into them against the host and the image.
- ``RootPlan``: the whole filesystem side (image, ``MountSpec``, identity, generated
  passwd), read by ``runtime.layers`` and ``runtime.mounts`` in the container's init;
  ``runtime.process`` takes it with the ``ProcessSpec``.

Everything here is plain data: building it touches no namespace.

These are ``@record`` classes (immutable tuples declared like dataclasses) rather than
frozen dataclasses on purpose: they are defined on every ``sbuild exec``, a frozen dataclass
costs 0.3-2 ms to define (its generated code is compiled at import), ``typing.NamedTuple``
needs ``typing`` (~5 ms to import) and ``collections.namedtuple`` needs ``collections``
(~2 ms), against ~0.02 ms each here; launch latency is a requirement.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "record", "Bind", "RunOptions", "OverlaySpec", "MountSpec", "ProcessSpec", "Identity", "HostUser",
    "RootPlan", "DEFAULT_PATH",
]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _new(cls, *args, **kwargs):
    fields = cls._fields
    if not kwargs and len(args) == len(fields):  # the common case, made on every launch
        return tuple.__new__(cls, args)
    if len(args) > len(fields):
        raise TypeError(f"{cls.__name__}() takes {len(fields)} arguments but {len(args)} were given")
    values = list(args)
    for name in fields[len(args):]:
        if name in kwargs:
            values.append(kwargs.pop(name))
        elif name in cls._field_defaults:
            values.append(cls._field_defaults[name])
        else:
            raise TypeError(f"{cls.__name__}() missing required argument: {name!r}")
    if kwargs:
        raise TypeError(f"{cls.__name__}() got unexpected or repeated arguments: {', '.join(kwargs)}")
    return tuple.__new__(cls, values)


def _repr(self) -> str:
    return f"{type(self).__name__}(" + ", ".join(f"{n}={v!r}" for n, v in zip(self._fields, self)) + ")"


def _replace(self, **changes):
    """A copy with ``changes`` applied (as ``namedtuple._replace``)."""
    return type(self)(**{**self._asdict(), **changes})


def _asdict(self) -> dict:
    return dict(zip(self._fields, self))


def _getnewargs(self) -> tuple:  # pickling and copying
    return tuple(self)


def record(cls):
    """An immutable record from an annotated class body: fields, defaults (trailing), methods
    and docstring kept; a tuple subclass with ``_fields``, ``_replace`` and ``_asdict``, like
    ``typing.NamedTuple``, without importing ``typing`` or ``collections``."""
    body = cls.__dict__
    fields = tuple(body.get("__annotations__", {}))
    ns = {k: v for k, v in body.items() if k not in fields and k not in ("__dict__", "__weakref__")}
    ns.update(__slots__=(), _fields=fields, _field_defaults={f: body[f] for f in fields if f in body},
              __new__=_new, __repr__=_repr, __getnewargs__=_getnewargs,
              _replace=_replace, _asdict=_asdict)
    for i, name in enumerate(fields):
        ns[name] = property(lambda self, _i=i: tuple.__getitem__(self, _i), doc=f"field {i}: {name}")
    made = type(cls.__name__, (tuple,), ns)
    made.__qualname__ = cls.__qualname__
    return made


@record
class Bind:
    """A host path mounted into the container (``--bind SRC[:DST[:ro|rw]]``)."""

    src: str
    dst: str
    readonly: bool = False


@record
class RunOptions:
    """What a launch is asked for (the command line's flags, or the API's arguments)."""

    binds: tuple[Bind, ...] = ()
    overlays: tuple[str, ...] = ()
    writable: bool = False
    writable_tmpfs: bool = False
    contain: bool = False
    cleanenv: bool = False
    env: tuple[tuple[str, str], ...] = ()
    pwd: str | None = None
    home: str | None = None  # SRC[:DST]
    no_home: bool = False
    app: str | None = None
    shell: str | None = None
    # self | root | subuid | auto (runtime.plan.choose_identity), or the Identity the caller
    # chose already (the build decides its identity once and passes it to every %post/%test)
    userns: str | Identity = "self"
    build_config: bool = False
    stdio: tuple[int | None, int | None, int | None] = (None, None, None)
    host_env: Mapping[str, str] | None = None
    no_mount: tuple[str, ...] = ()  # proc sys dev devpts home tmp hostfs cwd bind-paths, or a destination
    workdir: str | None = None  # -W: host dir for /tmp, /var/tmp, home (contained) and scratch
    scratch: tuple[str, ...] = ()  # -S: empty writable dirs at these destinations
    no_eval: bool = False  # injected values literal, not shell-evaluated
    unshare: tuple[str, ...] = ()  # extra namespaces: ipc uts net
    hostname: str | None = None
    network: str | None = None  # "none" (loopback only) with --net
    gpu: tuple[str, ...] = ()  # nv rocm
    cgroups: tuple[tuple[str, str], ...] = ()  # (cpus|memory, value)
    add_caps: tuple[str, ...] = ()
    drop_caps: tuple[str, ...] = ()
    no_privs: bool = False
    security: tuple[str, ...] = ()  # uid:N gid:N ...
    no_umask: bool = False
    no_env: tuple[str, ...] = ()  # host variables not forwarded
    dns: str | None = None  # comma list of name servers for /etc/resolv.conf


@record
class OverlaySpec:
    """A persistent overlay (``--overlay PATH[:ro]``): a directory or an ext3 image."""

    path: str
    readonly: bool = False
    fstype: str = "dir"  # dir | ext3
    offset: int = 0
    size: int = 0


@record
class MountSpec:
    writable: bool = False
    writable_tmpfs: bool = False
    overlays: tuple[OverlaySpec, ...] = ()
    binds: tuple[Bind, ...] = ()
    contain: bool = False
    no_home: bool = False
    home_src: str | None = None  # host side of the home dir (None: the user's own)
    home_dst: str | None = None  # container side
    build_config: bool = False  # no home, no default binds, no devpts (Apptainer --build-config)
    bind_cwd: str | None = None  # host cwd to bind at the same path, if any
    host_files: tuple[str, ...] = ("/etc/localtime", "/etc/hosts", "/etc/resolv.conf")
    skip: tuple[str, ...] = ()  # --no-mount: proc sys dev devpts tmp (home, cwd, bind-paths: resolved in the plan)
    workdir: str | None = None  # -W: /tmp, /var/tmp (contained) and scratch dirs live under it
    scratch: tuple[str, ...] = ()  # -S destinations
    hostname: str | None = None  # written to /etc/hostname
    dns: tuple[str, ...] = ()  # name servers: a generated /etc/resolv.conf


@record
class ProcessSpec:
    argv: tuple[str, ...]  # what to execve inside (argv[0] an absolute path in the container)
    env: tuple[tuple[str, str], ...]
    cwd: str = "/"
    fallback_argv: tuple[str, ...] = ()  # used when argv[0] does not exist in the image
    stdin: int | None = None
    stdout: int | None = None
    stderr: int | None = None
    cwd_strict: bool = False  # --pwd: a missing cwd is an error, not a fallback to home
    home: str = "/"  # the fallback cwd
    umask: int | None = None  # --no-umask: 0o022
    drop_caps: tuple[int, ...] = ()  # capability numbers to drop from the bounding set (root)
    setids: tuple[int, int] | None = None  # --security uid:N gid:N (root): (uid, gid), -1 unchanged


@record
class Identity:
    """Which user namespace to create.

    ``host``: none (the caller is root and stays root). ``self``: map the caller's uid and gid
    to themselves (one id). ``root``: map the caller to root (one id). ``subuid``: map the
    caller to root and ids 1..N to its /etc/subuid and /etc/subgid ranges via newuidmap.
    """

    mode: str = "host"
    uid: int = 0
    gid: int = 0
    subuid: tuple[int, int] | None = None  # (start, count)
    subgid: tuple[int, int] | None = None

    @property
    def inside_uid(self) -> int:
        return self.uid if self.mode in ("host", "self") else 0

    @property
    def inside_gid(self) -> int:
        return self.gid if self.mode in ("host", "self") else 0

    @property
    def userns(self) -> bool:
        return self.mode != "host"


@record
class HostUser:
    uid: int
    gid: int
    name: str
    home: str
    shell: str
    gecos: str = ""
    groups: tuple[tuple[int, str], ...] = ()


@record
class RootPlan:
    """The container's filesystem, resolved: what its init mounts (``runtime.layers``,
    ``runtime.mounts``)."""

    session: str  # an existing host directory to mount the session tmpfs on
    image: str  # path of the image file or sandbox dir
    fstype: str  # dir | squashfs | ext3 | squashfuse
    offset: int
    size: int
    mounts: MountSpec
    identity: Identity
    passwd: tuple[str, str] | None  # (passwd line, group lines) to add, or None
    nosuid: bool
    lower: int | None = None  # fd of the image's filesystem, mounted detached by the caller (runtime.prefetch)
    unshare: int = 0  # extra CLONE_NEW* flags (IPC, UTS, NET) for the container's init
    cgroup: str | None = None  # cgroup.procs files the init joins, ":"-separated (runtime.cgroups)
