"""Resource limits (``--cpus``, ``--memory``): a cgroup the container's init joins.

``create(limits, rootless)`` makes one cgroup per launch, named ``sbuild-<pid>``: on a
cgroup v2 (unified) host under the caller's own cgroup when it is delegated to the caller,
or under the root as root; on a v1 host (root only) one in each of the ``cpu`` and
``memory`` hierarchies. It writes the limits and returns the ``cgroup.procs`` files the
init writes ``0`` to (itself), ``:``-separated (``RootPlan.cgroup``); ``remove`` deletes
the cgroups once the container is gone. As Apptainer, an ordinary user without a
delegated cgroup v2 gets a ``CapabilityError``: "cannot use cgroups - <reason>".

``--cpus N``: a quota of N×100 ms per 100 ms period (0.01 to the number of CPUs).
``--memory SIZE``: bytes, or with a ``k``/``m``/``g``/``t`` suffix (``512m``, ``2g``).
"""

from __future__ import annotations

import os

from base.errors import CapabilityError, UsageError

__all__ = ["create", "remove", "parse_size"]

_V2 = "/sys/fs/cgroup"
_PERIOD = 100_000


def parse_size(text: str) -> int:
    """``512m`` -> bytes (Docker's units, powers of 1024)."""
    units = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = text.strip().lower()
    mult = units.get(t[-1:], None) if t and not t[-1].isdigit() else 1
    try:
        number = float(t[:-1] if mult and not t[-1].isdigit() else t)
    except ValueError:
        number = -1
    if mult is None or number <= 0:
        raise UsageError(f"bad --memory {text!r}: expected a size such as 512m or 2g")
    return int(number * mult)


def _quota(text: str) -> int:
    try:
        cpus = float(text)
    except ValueError:
        cpus = 0.0
    if not 0.01 <= cpus <= (os.cpu_count() or 1):
        raise UsageError(f"invalid --cpus value {text!r}: range is 0.01 to {os.cpu_count() or 1}.00")
    return int(cpus * _PERIOD)


def _fail(reason: str) -> CapabilityError:
    return CapabilityError(f"while applying cgroups config: cannot use cgroups - {reason}",
                           hint="run as root, or on a host with a delegated cgroup v2 (systemd user slice)")


def _own_v2() -> str:
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return _V2 + line[3:].strip().rstrip("/")
    return _V2


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        raise _fail(f"writing {path}: {e.strerror or e}") from e


def create(limits: dict[str, str], *, rootless: bool) -> str:
    """Make the launch's cgroup(s) with ``limits`` (cpus, memory); the procs files to join."""
    quota = _quota(limits["cpus"]) if "cpus" in limits else None
    memory = parse_size(limits["memory"]) if "memory" in limits else None
    name = f"sbuild-{os.getpid()}"
    if os.path.exists(f"{_V2}/cgroup.controllers"):
        parent = _own_v2() if rootless else _V2
        if rootless and not os.access(f"{parent}/cgroup.subtree_control", os.W_OK):
            raise _fail(f"the cgroup {parent[len(_V2):] or '/'} is not delegated to this user")
        path = f"{parent}/{name}"
        _write(f"{parent}/cgroup.subtree_control", " ".join(
            f"+{c}" for c, want in (("cpu", quota), ("memory", memory)) if want is not None))
        os.makedirs(path, exist_ok=True)
        if quota is not None:
            _write(f"{path}/cpu.max", f"{quota} {_PERIOD}")
        if memory is not None:
            _write(f"{path}/memory.max", str(memory))
        return f"{path}/cgroup.procs"
    if rootless:
        raise _fail("rootless cgroups require the system to be configured for cgroups v2 in unified mode")
    files = []
    for ctl, settings in (("cpu", {"cpu.cfs_period_us": _PERIOD, "cpu.cfs_quota_us": quota}),
                          ("memory", {"memory.limit_in_bytes": memory})):
        if all(v is None for k, v in settings.items() if k != "cpu.cfs_period_us"):
            continue
        path = f"{_V2}/{ctl}/{name}"
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise _fail(f"creating {path}: {e.strerror or e}") from e
        for key, value in settings.items():
            _write(f"{path}/{key}", str(value))
        files.append(f"{path}/cgroup.procs")
    return ":".join(files)


def join(procs: str) -> None:
    """In the container's init: move this process into the cgroup(s)."""
    for path in procs.split(":"):
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)


def remove(procs: str) -> None:
    """Delete the cgroup(s) once their processes are gone (best effort)."""
    for path in procs.split(":"):
        try:
            os.rmdir(os.path.dirname(path))
        except OSError:
            pass
