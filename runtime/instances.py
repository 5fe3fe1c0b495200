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

__all__ = ["Instance", "start", "listing", "find", "stop"]

_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


@dataclass(frozen=True)
class Instance:
    name: str
    pid: int
    image: str
    started: float
    starttime: str  # field 22 of /proc/PID/stat, to tell a reused PID apart
    uid: int

    def as_json(self) -> dict:
        """Apptainer's ``instance list --json`` entry (plus ``started``)."""
        logs = os.path.join(_dir(), self.name)
        return {"instance": self.name, "pid": self.pid, "img": self.image, "ip": "",
                "logErrPath": logs + ".err", "logOutPath": logs + ".out", "started": self.started}


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
        raise UsageError(f"an instance named {name!r} is already running", hint="pick another name") from None
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


def stop(name: str | None, *, signal_name: str = "TERM", timeout: float = 10.0) -> list[str]:
    """Stop instance ``name`` (or all with None): send the signal, SIGKILL after ``timeout``."""
    try:
        sig = int(signal_name) if signal_name.isdigit() else signal.Signals[
            "SIG" + signal_name.upper().removeprefix("SIG")]
    except KeyError:
        raise UsageError(f"unknown signal {signal_name!r}") from None
    targets = listing() if name is None else [find(name)]
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
    return [i.name for i in targets]
