"""The process step: start the container's process tree and wait for it.

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

The status pipe of ``runtime.child`` carries ``P<pid>`` (where to forward signals) and
``E<kind> <message>`` (a setup error) back to the caller; its EOF means the command was
exec'd. A subuid map, or joining an instance, goes through ``runtime.namespaces`` (imported
then only: the common launch creates its namespaces with ``_unshare``).
L and C die with their parent (``PR_SET_PDEATHSIG``), and the kernel kills every process
of a PID namespace when its PID 1 exits, so killing the caller, even with SIGKILL, ends
everything; the mounts then vanish with the namespace and loop devices free themselves
(autoclear). Instances (``detach``) skip the death signals and keep C as init.

C forwards the signals it receives to G, except those the terminal sent (``si_code`` is
SI_KERNEL: the terminal already signalled G's process group). G's status becomes the exit
code: its own, or 128+signal. ``death_note`` says what a fault signal (SIGBUS, SIGSEGV, …)
in that status likely means: SIGBUS on an image file is a block the kernel could not read
(a corrupt squashfs or ext3 image returns EIO on the page fault).
"""

from __future__ import annotations

from base import lean_os as os
from runtime import _sys
from runtime.child import Child, End, describe, error_from, exit_code, fork, kill_and_reap, reap
from runtime.description import Identity, ProcessSpec, RootPlan
from runtime.mounts import assemble, enter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from base.errors import SbuildError

try:  # the C module behind ``signal``: the same calls, without the enum wrappers (~6 ms of imports)
    import _signal as signal
except ImportError:  # pragma: no cover - not CPython
    import signal

__all__ = ["Launched", "start", "wait", "death_note", "FORWARDED"]

FORWARDED = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGALRM, signal.SIGWINCH, signal.SIGCONT}
_WAITED = {*FORWARDED, signal.SIGCHLD}
_SI_KERNEL = 0x80
_STOPPING = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT}


class Launched:
    """A started container: ``pid`` is the caller's child (L, or C with ``here``; 0 when none
    was forked), ``target`` where signals go (C, or G when joining an instance), ``error``
    the setup failure it reported (the exception to raise)."""

    __slots__ = ("pid", "target", "error")

    def __init__(self, pid: int, target: int, error: SbuildError | None = None) -> None:
        self.pid, self.target, self.error = pid, target, error


_DEFAULT_SIGNALS = (*FORWARDED, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD, signal.SIGTSTP,
                    signal.SIGTTIN, signal.SIGTTOU)  # back to SIG_DFL in the command


def _missing(end: End, proc: ProcessSpec) -> None:
    end.send(f"ERunError\trunning {proc.fallback_argv[0] if proc.fallback_argv else proc.argv[0]}:"
             " no such file in the container")


def _chdir(proc: ProcessSpec) -> None:
    """Enter the command's working directory; when it does not exist in the container, home
    or / (with ``--pwd``: an error, as Apptainer's)."""
    try:
        os.chdir(proc.cwd)
    except OSError as e:
        if proc.cwd_strict:
            from runtime.layers import SetupFailure

            raise SetupFailure("RunError", f"failed to set working directory: {proc.cwd}: "
                                           f"{(e.strerror or str(e)).lower()}") from e
        try:
            os.chdir(proc.home)
        except OSError:
            os.chdir("/")


def _privileges(proc: ProcessSpec, ident: Identity) -> None:
    """C, before spawning G: umask, capabilities and ids G starts with (G inherits them)."""
    if proc.umask is not None:
        os.umask(proc.umask)
    if proc.drop_caps:
        _sys.drop_bounding(proc.drop_caps)
    if proc.setids:
        uid, gid = proc.setids
        if gid != -1:
            os.setgroups([gid])
            os.setresgid(gid, gid, gid)
        if uid != -1:
            os.setresuid(uid, uid, uid)
        _sys.set_pdeathsig(signal.SIGKILL, 0)  # (a change of ids clears it)
    if ident.mode == "self" or proc.setids:
        _sys.no_new_privs()  # inherited by G (C, which only waits, has no use for privileges)


def _spawn(proc: ProcessSpec, ident: Identity) -> int:
    """C: start G, the command, with posix_spawn (vfork: this process is not copied, which
    a fork of a Python process costs ~1 ms for). Same effect as ``_child`` after a fork."""
    _chdir(proc)
    env = dict(proc.env)
    env.setdefault("PWD", os.getcwd())
    _privileges(proc, ident)
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
    # (not os.get_exec_path: it imports warnings on first use, and the host's library is gone here)
    for d in (env.get("PATH") or os.defpath).split(os.pathsep):
        try:
            return os.posix_spawn(os.path.join(d, argv[0]), argv, env, **kw)
        except (FileNotFoundError, NotADirectoryError) as e:
            last = e
        except OSError as e:
            last = e
            saved = saved or e
    raise saved or last or FileNotFoundError(2, "No such file or directory", argv[0])


def _child(end: End, proc: ProcessSpec, ident: Identity) -> None:
    """G (joining an instance, after a fork): become the command."""
    try:
        _sys.set_pdeathsig(signal.SIGKILL, 0)  # our parent is outside its PID ns
        for sig in _DEFAULT_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        for target, fd in ((0, proc.stdin), (1, proc.stdout), (2, proc.stderr)):
            if fd is not None and fd != target:
                os.dup2(fd, target)
        _chdir(proc)
        _privileges(proc, ident)
        env = dict(proc.env)
        env.setdefault("PWD", os.getcwd())
        try:
            os.execve(proc.argv[0], list(proc.argv), env)
        except FileNotFoundError:
            if not proc.fallback_argv:
                raise
        os.execvpe(proc.fallback_argv[0], list(proc.fallback_argv), env)
    except FileNotFoundError:
        _missing(end, proc)
    except BaseException as e:  # noqa: BLE001 - report anything, then die
        end.report(e)
    os._exit(127)


def _init(child: int, instance: bool) -> int:
    """C after forking G: forward signals, reap, return G's status as an exit code."""
    code = 0
    stopping = False
    while True:
        info = signal.sigwaitinfo(_WAITED)
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
                code = exit_code(status)
                if not instance:
                    return code


def _unshare(ident: Identity, mount: bool = True) -> None:
    """Create the user namespace (with a one-id map), then the PID (and mount) namespaces."""
    if ident.userns:
        _sys.unshare(_sys.CLONE_NEWUSER)
        _sys.map_single_id(ident.inside_uid, ident.inside_gid, ident.uid, ident.gid)
    _sys.unshare(_sys.CLONE_NEWPID | (_sys.CLONE_NEWNS if mount else 0))


def _set_maps(pid: int, ident: Identity) -> None:
    from runtime.namespaces import set_subuid_maps

    set_subuid_maps(pid, ident)


def _launcher(end: End, plan: RootPlan | None, proc: ProcessSpec, ident: Identity, caller: int,
              detach: bool, join: int | None) -> None:
    """L: create the namespaces, fork C (or join an instance and fork G)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)  # L only waits; C and G handle signals
    if detach:
        os.setsid()
        for target, fd in ((0, proc.stdin), (1, proc.stdout), (2, proc.stderr)):
            if fd is not None and fd != target:
                os.dup2(fd, target)  # let go of the caller's terminal and pipes
    else:
        _sys.set_pdeathsig(signal.SIGKILL, caller)
    if join is not None:
        from runtime.namespaces import join as join_namespaces

        join_namespaces(join)
        g = os.fork()
        if g == 0:
            _child(end, proc, ident)
        end.send(f"P{g}")
        os.close(end.status)
        os._exit(reap(g))
    if ident.mode == "subuid":
        from runtime.namespaces import enter_subuid_userns

        enter_subuid_userns(end)
        _sys.unshare(_sys.CLONE_NEWNS | _sys.CLONE_NEWPID)
    else:
        _unshare(ident)
    c = os.fork()
    if c == 0:
        _container(end, plan, proc, ident, detach)
    end.send(f"P{c}")
    os.close(end.status)
    os._exit(0 if detach else reap(c))


def _container(end: End, plan: RootPlan, proc: ProcessSpec, ident: Identity, detach: bool,
               unshare_mount: bool = False) -> None:
    """C: assemble the root, enter it, spawn G and be its init."""
    try:
        if not detach:
            _sys.set_pdeathsig(signal.SIGKILL, 0)  # PID 1: our parent is outside our PID ns
        if plan.cgroup:
            from runtime.cgroups import join

            join(plan.cgroup)
        if unshare_mount or plan.unshare:
            _sys.unshare((_sys.CLONE_NEWNS if unshare_mount else 0) | plan.unshare)
        if plan.unshare:
            _namespaces(plan)
        enter(assemble(plan))
        signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED)
        try:
            g = _spawn(proc, ident)
        except FileNotFoundError:
            _missing(end, proc)
            os._exit(127)
        except OSError as e:
            end.report(e)
            os._exit(127)
        os.close(end.status)
        os._exit(_init(g, detach))
    except BaseException as e:  # noqa: BLE001
        end.report(e)
    os._exit(255)


def _namespaces(plan: RootPlan) -> None:
    """C, in its new UTS and network namespaces: the hostname, and loopback up."""
    if plan.unshare & _sys.CLONE_NEWUTS and plan.mounts.hostname:
        _sys.sethostname(plan.mounts.hostname)
    if plan.unshare & _sys.CLONE_NEWNET:
        _sys.loopback_up()


def start(plan: RootPlan | None, proc: ProcessSpec, ident: Identity, *,
          detach: bool = False, join: int | None = None, block_signals: bool = False,
          here: bool = False) -> Launched:
    """Fork the launcher (with ``here``, see above: the container's init) and wait until the
    command is exec'd (or setup failed)."""
    here = here and not detach and join is None and ident.mode != "subuid"
    if block_signals:
        signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED)
    caller = os.getpid()

    def body(end: End) -> None:
        if here:
            signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
            _container(end, plan, proc, ident, False, unshare_mount=True)
        _launcher(end, plan, proc, ident, caller, detach, join)

    try:
        child = fork(body, before=(lambda: _unshare(ident, mount=False)) if here else None)
    except BaseException as e:
        if block_signals:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _WAITED)
        if here and isinstance(e, OSError):
            return Launched(0, 0, error_from(*describe(e)))
        raise
    launched = Launched(child.pid, child.pid)
    try:
        for tag, payload in child.records(lambda pid: _set_maps(pid, ident)):
            if tag == "P":
                launched.target = int(payload)
            elif tag == "E" and launched.error is None:
                launched.error = Child.error(payload)
    except BaseException:
        if block_signals:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _WAITED)
        raise
    return launched


def wait(launched: Launched, *, forward: bool = False) -> int:
    """Wait for the launcher; with ``forward`` (signals blocked by ``start``), pass signals on."""
    try:
        if not launched.pid:  # ``start`` failed before forking (``launched.error`` says why)
            return 255
        if not forward:
            return reap(launched.pid)
        while True:
            pid, status = os.waitpid(launched.pid, os.WNOHANG)
            if pid:
                return exit_code(status)
            info = signal.sigwaitinfo(_WAITED)
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
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _WAITED)


_FAULTS = {signal.SIGBUS: "SIGBUS", signal.SIGSEGV: "SIGSEGV", signal.SIGILL: "SIGILL", signal.SIGFPE: "SIGFPE"}


def death_note(code: int, plan: RootPlan | None) -> str | None:
    """What to tell the user when the command ended with status ``code`` = 128+N for a fault
    signal N, or None. (A status of 128+N is what a shell, or our init, reports for a child
    killed by signal N; a command that exits with it on purpose gets the same note.)"""
    name = _FAULTS.get(code - 128)
    if name is None:
        return None
    what = f"the container's command was killed by {name} (exit status {code})"
    if name != "SIGBUS":
        return what
    if plan is not None and plan.fstype in ("squashfs", "squashfuse", "ext3"):
        kind = "an ext3" if plan.fstype == "ext3" else "a squashfs"
        return (f"{what}: the image {plan.image} may be corrupt ({kind} read error on a file it "
                f"mapped); check it by extracting it: sbuild build --sandbox DIR {plan.image}")
    return f"{what}: a file it mapped could not be read (an I/O error, or a file truncated while in use)"
