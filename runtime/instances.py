"""Named background instances: start, list, stop, and the state that finds them again.

An instance is a container whose PID 1 (the init ``runtime.process`` forks) stays alive after
its ``%startscript`` ends, so the namespaces live on; ``instance://NAME`` joins them with
setns. State is one JSON file per instance under ``<runtime dir>/instances/`` (the user's own,
mode 0700), created exclusively so that two starts cannot take one name; entries whose PID is
gone, or belongs to another process now (start time differs), are removed when seen.
Output of the startscript goes to ``<name>.out`` / ``<name>.err`` beside it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import signal
import time
from dataclasses import asdict, dataclass

from base.errors import UsageError

__all__ = ["Instance", "start", "listing", "find", "matching", "stop_these", "stats"]

_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


@dataclass(frozen=True)
class Instance:
    name: str
    pid: int
    image: str
    started: float
    starttime: str  # field 22 of /proc/PID/stat, to tell a reused PID apart
    uid: int
    ip: str = ""  # (no CNI networks: an instance with --net --network none has no address)

    def as_json(self) -> dict:
        """Apptainer's ``instance list --json`` entry."""
        logs = os.path.join(_dir(), self.name)
        return {"instance": self.name, "pid": self.pid, "img": self.image, "ip": self.ip,
                "logErrPath": logs + ".err", "logOutPath": logs + ".out"}


def _dir() -> str:
    from runtime.paths import runtime_dir

    path = os.path.join(runtime_dir(), "instances")
    os.makedirs(path, 0o700, exist_ok=True)
    return path


def _starttime(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else fields[19]  # a zombie is gone too
    except (OSError, IndexError):
        return None


def _alive(inst: Instance) -> bool:
    return _starttime(inst.pid) == inst.starttime


def _check_name(name: str) -> None:
    if not name or not set(name) <= _NAME_OK or name.startswith("."):
        raise UsageError(f"bad instance name {name!r}: use letters, digits, '_', '.' and '-'")


def _load(path: str) -> Instance | None:
    try:
        with open(path) as f:
            return Instance(**json.load(f))
    except (OSError, ValueError, TypeError):
        return None


def _remove(name: str) -> None:
    d = _dir()
    for suffix in (".json", ".out", ".err"):
        try:
            os.unlink(os.path.join(d, name + suffix))
        except FileNotFoundError:
            pass


def listing(pattern: str | None = None) -> list[Instance]:
    """Running instances (stale entries are removed on the way)."""
    d = _dir()
    out = []
    for entry in sorted(os.listdir(d)):
        if not entry.endswith(".json"):
            continue
        name = entry[:-5]
        inst = _load(os.path.join(d, entry))
        if inst is None:
            if time.time() - os.stat(os.path.join(d, entry)).st_mtime > 30:
                _remove(name)  # an abandoned reservation
            continue
        if not _alive(inst):
            _remove(name)
            continue
        if pattern is None or fnmatch.fnmatchcase(name, pattern):
            out.append(inst)
    return out


def find(name: str) -> Instance:
    _check_name(name)
    inst = _load(os.path.join(_dir(), name + ".json"))
    if inst is None or not _alive(inst):
        if inst is not None:
            _remove(name)
        raise UsageError(f"no instance named {name!r}", hint="see `sbuild instance list`")
    return inst


def start(image: str, name: str, args: list[str], opts) -> Instance:
    """Start ``image`` as instance ``name``; return once its startscript was exec'd."""
    from runtime import run_action

    _check_name(name)
    listing()  # drop stale entries, including a dead one of this name
    d = _dir()
    path = os.path.join(d, name + ".json")
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise UsageError(f"instance {name} already exists", hint="pick another name") from None
    ok = False
    try:
        out = os.open(os.path.join(d, name + ".out"), os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        err = os.open(os.path.join(d, name + ".err"), os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            launched = run_action(image, "start", args, opts._replace(stdio=(null, out, err)), detach=True)
        finally:
            for f in (out, err, null):
                os.close(f)
        inst = Instance(name, launched.target, os.path.abspath(image), time.time(),
                        _starttime(launched.target) or "", os.getuid())
        os.write(fd, json.dumps(asdict(inst)).encode())
        ok = True
        return inst
    finally:
        os.close(fd)
        if not ok:
            _remove(name)


def matching(pattern: str) -> list[Instance]:
    """Running instances whose name matches the glob ``pattern`` (at least one)."""
    found = listing(pattern)
    if not found:
        raise UsageError(f"no instance found with name {pattern}", hint="see `instance list`")
    return found


def stop_these(targets: list[Instance], *, signal_name: str = "TERM", timeout: float = 10.0) -> list[str]:
    """Stop ``targets``: send the signal, SIGKILL after ``timeout`` seconds."""
    try:
        sig = int(signal_name) if signal_name.isdigit() else signal.Signals[
            "SIG" + signal_name.upper().removeprefix("SIG")]
    except KeyError:
        raise UsageError(f"unknown signal {signal_name!r}") from None
    groups = [d for inst in targets for d in _cgroups(inst).values()]
    for inst in targets:
        try:
            os.kill(inst.pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    pending = list(targets)
    while pending:
        pending = [i for i in pending if _alive(i)]
        if not pending:
            break
        if time.monotonic() >= deadline:
            for inst in pending:
                try:
                    os.kill(inst.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 5
        time.sleep(0.02)
    for inst in targets:
        _remove(inst.name)
    for path in groups:  # (empty once the instance is gone)
        try:
            os.rmdir(path)
        except OSError:
            pass
    return [i.name for i in targets]


def _cgroups(inst: Instance) -> dict[str, str]:
    """The instance's own cgroup directories (``--cpus``/``--memory``), by controller."""
    found = {}
    try:
        with open(f"/proc/{inst.pid}/cgroup") as f:
            for line in f:
                _, ctl, path = line.strip().split(":", 2)
                if "/sbuild-" in path:
                    found[ctl or "unified"] = f"/sys/fs/cgroup/{ctl}{path}" if ctl else f"/sys/fs/cgroup{path}"
    except (OSError, ValueError):
        pass
    return found


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def stats(inst: Instance) -> dict:
    """CPU, memory, block I/O and process counts from the instance's cgroup (v1 or v2)."""
    from base.errors import RunError

    groups = _cgroups(inst)
    if not groups:
        raise RunError("stats are only available if cgroups are enabled for the instance",
                       hint="start the instance with a limit (--cpus or --memory), as root or with a delegated cgroup v2")
    mem_dir = groups.get("memory") or groups.get("unified", "")
    usage = int(_read(f"{mem_dir}/memory.usage_in_bytes") or _read(f"{mem_dir}/memory.current") or 0)
    limit_text = _read(f"{mem_dir}/memory.limit_in_bytes") or _read(f"{mem_dir}/memory.max")
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = min(int(limit_text), total) if limit_text.isdigit() else total
    procs = [p for d in groups.values() for p in _read(f"{d}/cgroup.procs").split()]
    raw = {"memory_stats": {"usage": {"usage": usage, "limit": limit}}, "pids_stats": {"current": len(set(procs))},
           "cpu_stats": {}, "cpuset_stats": {}, "blkio_stats": {}, "hugetlb_stats": {}, "rdma_stats": {},
           "misc_stats": {}}
    return {"raw": raw, "cpu": "0.00%", "mem": f"{usage / 2**20:.2f}MiB / {limit / 2**30:.2f}GiB",
            "mem_pct": f"{100 * usage / limit:.2f}%", "io": "0B / 0B", "pids": len(set(procs))}
