"""The process step: start a container process and wait for it (the process tree, its namespaces).

    caller ──fork──▶ L (launcher): [unshare user ns, write maps] unshare mount+PID ns
                      └─fork──▶ C (PID 1): assemble the root, pivot_root, then init
                                  └─posix_spawn──▶ G: the action in the container

(G is spawned, not forked: a fork copies the Python process, ~1 ms. L joining an instance
forks G, which enters the instance's namespaces before it execs.)

With ``here`` (the CLI: a process that exists only to run this container) the caller does
L's part itself and forks C directly, one fork less: it creates the user namespace (if any)
and the PID namespace for its children, and C creates the mount namespace, so that the
caller keeps the host's filesystem view (``pivot_root`` moves every process of a mount
namespace). Instances, joins and subordinate-id maps (newuidmap runs from outside) use L.

A status pipe (close-on-exec) carries ``P<pid>`` (where to forward signals) and ``E<kind>
<message>`` (a setup error) back to the caller; its EOF means the command was exec'd.
L and C die with their parent (``PR_SET_PDEATHSIG``), and the kernel kills every process
of a PID namespace when its PID 1 exits, so killing the caller, even with SIGKILL, ends
everything; the mounts then vanish with the namespace and loop devices free themselves
(autoclear). Instances (``detach``) skip the death signals and keep C as init.

C forwards the signals it receives to G, except those the terminal sent (``si_code`` is
SI_KERNEL: the terminal already signalled G's process group). G's status becomes the exit
code: its own, or 128+signal.
"""

from __future__ import annotations

import os

from runtime import _sys
from runtime.layers import SetupFailure
from runtime.description import IdentitySpec, ProcessSpec, RootPlan
from runtime.mounts import assemble, enter

try:  # the C module behind ``signal``: the same calls, without the enum wrappers (~6 ms of imports)
    import _signal as signal
except ImportError:  # pragma: no cover - not CPython
    import signal

__all__ = ["Launched", "start", "wait", "FORWARDED", "set_subuid_maps", "kill_and_reap"]

FORWARDED = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGALRM, signal.SIGWINCH, signal.SIGCONT}
_SI_KERNEL = 0x80
_STOPPING = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT}


class Launched:
    """A started container: ``pid`` is the caller's child (L, or C with ``here``; 0 when none
    was forked), ``target`` where signals go (C, or G when joining an instance), ``error`` a
    setup failure ``(kind, message)``."""

    __slots__ = ("pid", "target", "error")

    def __init__(self, pid: int, target: int, error: tuple[str, str] | None = None) -> None:
        self.pid, self.target, self.error = pid, target, error


def _send(fd: int, text: str) -> None:
    try:
        os.write(fd, (text.replace("\n", " ") + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def _describe(e: BaseException) -> tuple[str, str]:
    """``(error class name, message)`` for a setup failure."""
    if isinstance(e, SetupFailure):
        return e.kind, str(e)
    if isinstance(e, OSError):
        return "RunError", (f"setting up the container: {(e.strerror or str(e)).lower()}"
                            + (f": {e.filename}" if e.filename else ""))
    return "RunError", f"setting up the container: {type(e).__name__}: {e}"


def _report(fd: int, e: BaseException) -> None:
    kind, message = _describe(e)
    _send(fd, f"E{kind}\t{message}")


def _write_maps(ident: IdentitySpec) -> None:
    _sys.map_single_id(ident.inside_uid, ident.inside_gid, ident.uid, ident.gid)


_DEFAULT_SIGNALS = (*FORWARDED, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD, signal.SIGTSTP,
                    signal.SIGTTIN, signal.SIGTTOU)  # back to SIG_DFL in the command


def _missing(proc: ProcessSpec) -> str:
    return (f"ERunError\trunning {proc.fallback_argv[0] if proc.fallback_argv else proc.argv[0]}:"
            " no such file in the container")


def _chdir(cwd: str) -> None:
    """Enter the command's working directory, or / when it does not exist in the container."""
    try:
        os.chdir(cwd)
    except OSError:
        os.chdir("/")


def _spawn(proc: ProcessSpec, ident: IdentitySpec) -> int:
    """C: start G, the command, with posix_spawn (vfork: this process is not copied, which
    a fork of a Python process costs ~1 ms for). Same effect as ``_child`` after a fork."""
    _chdir(proc.cwd)
    env = dict(proc.env)
    env.setdefault("PWD", os.getcwd())
    if ident.mode == "self":
        _sys.no_new_privs()  # inherited by G (C, which only waits, has no use for privileges)
    kw = {"setsigmask": (), "setsigdef": _DEFAULT_SIGNALS,
          "file_actions": [(os.POSIX_SPAWN_DUP2, fd, target)
                           for target, fd in ((0, proc.stdin), (1, proc.stdout), (2, proc.stderr))
                           if fd is not None and fd != target]}
    try:
        try:
            return os.posix_spawn(proc.argv[0], list(proc.argv), env, **kw)
        except FileNotFoundError:
            if not proc.fallback_argv:
                raise
        return _spawnp(list(proc.fallback_argv), env, kw)
    finally:
        os.chdir("/")  # C keeps no directory of the container busy


def _spawnp(argv: list[str], env: dict, kw: dict) -> int:
    """``posix_spawn`` with ``argv[0]`` searched in ``env``'s PATH, as ``os.execvpe`` does."""
    if "/" in argv[0]:
        return os.posix_spawn(argv[0], argv, env, **kw)
    saved = last = None
    for d in os.get_exec_path(env):
        try:
            return os.posix_spawn(os.path.join(d, argv[0]), argv, env, **kw)
        except (FileNotFoundError, NotADirectoryError) as e:
            last = e
        except OSError as e:
            last = e
            saved = saved or e
    raise saved or last or FileNotFoundError(2, "No such file or directory", argv[0])


def _child(proc: ProcessSpec, status_w: int, ident: IdentitySpec, parent: int, deathsig: bool) -> None:
    """G (joining an instance, after a fork): become the command."""
    try:
        if deathsig:
            _sys.set_pdeathsig(signal.SIGKILL, parent)
        for sig in _DEFAULT_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        for target, fd in ((0, proc.stdin), (1, proc.stdout), (2, proc.stderr)):
            if fd is not None and fd != target:
                os.dup2(fd, target)
        _chdir(proc.cwd)
        if ident.mode == "self":
            _sys.no_new_privs()
        env = dict(proc.env)
        env.setdefault("PWD", os.getcwd())
        try:
            os.execve(proc.argv[0], list(proc.argv), env)
        except FileNotFoundError:
            if not proc.fallback_argv:
                raise
        os.execvpe(proc.fallback_argv[0], list(proc.fallback_argv), env)
    except FileNotFoundError:
        _send(status_w, _missing(proc))
    except BaseException as e:  # noqa: BLE001 - report anything, then die
        _report(status_w, e)
    os._exit(127)


def _init(child: int, instance: bool) -> int:
    """C after forking G: forward signals, reap, return G's status as an exit code."""
    code = 0
    stopping = False
    waitset = {*FORWARDED, signal.SIGCHLD}
    while True:
        info = signal.sigwaitinfo(waitset)
        sig = info.si_signo
        if sig != signal.SIGCHLD:
            if info.si_code == _SI_KERNEL and not instance:
                continue  # the terminal signalled the whole foreground group, G included
            try:
                os.kill(-1 if instance else child, sig)
            except ProcessLookupError:
                pass
            stopping = stopping or (instance and sig in _STOPPING)
            if not stopping:
                continue
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                if instance and not stopping:
                    break
                return code
            if pid == 0:
                break
            if pid == child:
                code = os.waitstatus_to_exitcode(status)
                code = 128 - code if code < 0 else code
                if not instance:
                    return code


def _unshare(ident: IdentitySpec, mount: bool = True) -> None:
    """Create the user namespace (with a one-id map), then the PID (and mount) namespaces."""
    if ident.userns:
        _sys.unshare(_sys.CLONE_NEWUSER)
        _write_maps(ident)
    _sys.unshare(_sys.CLONE_NEWPID | (_sys.CLONE_NEWNS if mount else 0))


def _launcher(plan, proc, ident, status_w, sync_r, caller, detach, join) -> None:
    """L: create the namespaces, fork C (or join an instance and fork G)."""
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)  # L only waits; C and G handle signals
        if detach:
            os.setsid()
            for target, fd in ((0, proc.stdin), (1, proc.stdout), (2, proc.stderr)):
                if fd is not None and fd != target:
                    os.dup2(fd, target)  # let go of the caller's terminal and pipes
        else:
            _sys.set_pdeathsig(signal.SIGKILL, caller)
        if join is not None:
            _join(join)
            g = os.fork()
            if g == 0:
                _child(proc, status_w, ident, 0, True)  # our parent is outside its PID ns
            _send(status_w, f"P{g}")
            os.close(status_w)
            os._exit(_reap(g))
        if ident.mode == "subuid":
            _sys.unshare(_sys.CLONE_NEWUSER)
            _send(status_w, "U")
            if os.read(sync_r, 1) != b"G":
                os._exit(255)
            os.setgroups([])
            _sys.unshare(_sys.CLONE_NEWNS | _sys.CLONE_NEWPID)
        else:
            _unshare(ident)
        c = os.fork()
        if c == 0:
            _container(plan, proc, ident, status_w, detach)
        _send(status_w, f"P{c}")
        os.close(status_w)
        if detach:
            os._exit(0)
        os._exit(_reap(c))
    except BaseException as e:  # noqa: BLE001
        _report(status_w, e)
    os._exit(255)


def _reap(pid: int) -> int:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return 255
        code = os.waitstatus_to_exitcode(status)
        return 128 - code if code < 0 else code


def _container(plan, proc, ident, status_w, detach, unshare_mount=False) -> None:
    try:
        if not detach:
            _sys.set_pdeathsig(signal.SIGKILL, 0)  # PID 1: our parent is outside our PID ns
        if unshare_mount:
            _sys.unshare(_sys.CLONE_NEWNS)
        root = assemble(plan)
        enter(root)
        signal.pthread_sigmask(signal.SIG_BLOCK, {*FORWARDED, signal.SIGCHLD})
        try:
            g = _spawn(proc, ident)
        except FileNotFoundError:
            _send(status_w, _missing(proc))
            os._exit(127)
        except OSError as e:
            _report(status_w, e)
            os._exit(127)
        os.close(status_w)
        os._exit(_init(g, detach))
    except BaseException as e:  # noqa: BLE001
        _report(status_w, e)
    os._exit(255)


def _join(pid: int) -> None:
    """Enter the namespaces of instance init ``pid`` (user ns only when it has its own)."""
    fds = {}
    try:
        for ns in ("user", "mnt", "pid"):
            fds[ns] = os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
        if os.fstat(fds["user"]).st_ino != os.stat("/proc/self/ns/user").st_ino:
            _sys.setns(fds["user"], _sys.CLONE_NEWUSER)
        _sys.setns(fds["mnt"], _sys.CLONE_NEWNS)
        _sys.setns(fds["pid"], _sys.CLONE_NEWPID)
    except OSError as e:
        raise SetupFailure("RunError", f"joining the instance (pid {pid}): {(e.strerror or str(e)).lower()}") from e
    finally:
        for fd in fds.values():
            os.close(fd)


def set_subuid_maps(pid: int, ident: IdentitySpec) -> None:
    """Map root to the user and 1..N to the subordinate ranges in ``pid``'s user namespace."""
    import subprocess

    from base.errors import CapabilityError

    for prog, own, rng in (("newuidmap", ident.uid, ident.subuid), ("newgidmap", ident.gid, ident.subgid)):
        args = [prog, str(pid), "0", str(own), "1", "1", str(rng[0]), str(rng[1])]
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0:
            raise CapabilityError(f"mapping subordinate ids with {prog}: {r.stderr.strip() or r.returncode}",
                                  hint="check /etc/subuid and /etc/subgid, and that the uidmap package is installed")


def start(plan: RootPlan | None, proc: ProcessSpec, ident: IdentitySpec, *,
          detach: bool = False, join: int | None = None, block_signals: bool = False,
          here: bool = False) -> Launched:
    """Fork the launcher (with ``here``, see above: the container's init) and wait until the
    command is exec'd (or setup failed)."""
    here = here and not detach and join is None and ident.mode != "subuid"
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
    if block_signals:
        signal.pthread_sigmask(signal.SIG_BLOCK, {*FORWARDED, signal.SIGCHLD})
    caller = os.getpid()
    try:
        if here:
            _unshare(ident, mount=False)
        pid = os.fork()
    except BaseException as e:
        for fd in (status_r, status_w, sync_r, sync_w):
            os.close(fd)
        if block_signals:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {*FORWARDED, signal.SIGCHLD})
        if here and isinstance(e, OSError):
            return Launched(0, 0, _describe(e))
        raise
    if pid == 0:
        os.close(status_r)
        os.close(sync_w)
        if here:
            signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
            _container(plan, proc, ident, status_w, False, unshare_mount=True)
        _launcher(plan, proc, ident, status_w, sync_r, caller, detach, join)
    os.close(status_w)
    os.close(sync_r)
    launched = Launched(pid, pid)
    try:
        with os.fdopen(status_r, "rb") as f:
            for line in f:
                text = line.decode("utf-8", "replace").rstrip("\n")
                if text == "U":
                    set_subuid_maps(pid, ident)
                    os.write(sync_w, b"G")
                elif text.startswith("P"):
                    launched.target = int(text[1:])
                elif text.startswith("E") and launched.error is None:
                    kind, _, message = text[1:].partition("\t")
                    launched.error = (kind, message)
    except BaseException:
        kill_and_reap(pid)
        if block_signals:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {*FORWARDED, signal.SIGCHLD})
        raise
    finally:
        os.close(sync_w)
    return launched


def kill_and_reap(pid: int) -> None:
    """SIGKILL a child of ours and collect it (no error if it is already gone)."""
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def wait(launched: Launched, *, forward: bool = False) -> int:
    """Wait for the launcher; with ``forward`` (signals blocked by ``start``), pass signals on."""
    try:
        if not launched.pid:  # ``start`` failed before forking (``launched.error`` says why)
            return 255
        if not forward:
            return _reap(launched.pid)
        waitset = {*FORWARDED, signal.SIGCHLD}
        while True:
            pid, status = os.waitpid(launched.pid, os.WNOHANG)
            if pid:
                code = os.waitstatus_to_exitcode(status)
                return 128 - code if code < 0 else code
            info = signal.sigwaitinfo(waitset)
            if info.si_signo != signal.SIGCHLD and info.si_code != _SI_KERNEL:
                try:
                    os.kill(launched.target, info.si_signo)
                except ProcessLookupError:
                    pass
    except BaseException:
        kill_and_reap(launched.pid)
        raise
    finally:
        if forward:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {*FORWARDED, signal.SIGCHLD})
