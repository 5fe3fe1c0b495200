"""Fork a child and hear back from it: the runtime's one fork-and-report helper and transport.

Every child the runtime forks (the container's launcher and init in ``runtime.process``,
``call_in_userns``'s worker, ``sbuild doctor``'s probes) reports to its parent through one
status pipe (close-on-exec, child to parent), one record per line:

    U                          my user namespace exists: map it (the parent writes the maps,
                               then answers ``G`` on the sync pipe, parent to child)
    P<pid>                     where the container's signals go
    E<kind>\\t<message>[\\t<state>] an error: the ``base.errors`` class to raise, its message, and
                               its other attributes (a pickle, in hex) when it has any
    R<value>                   a result (a pickle, in hex)

End of file ends the report: the child exec'd (the pipe is close-on-exec), exited or died.
The launch's records are plain text: ``pickle`` is imported only to carry a result, or an
error with more than a one-line message. ``fork`` starts a child; ``call_in_child`` runs a
function in one and returns its result or raises its error in the parent.
"""

from __future__ import annotations

from base import lean_os as os

try:  # the C module behind ``signal``: the same calls, without the enum wrappers (~6 ms of imports)
    import _signal as signal
except ImportError:  # pragma: no cover - not CPython
    import signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from base.errors import SbuildError

__all__ = ["End", "Child", "fork", "call_in_child", "describe", "error_from", "exit_code", "kill_and_reap", "reap"]


def describe(e: BaseException, context: str = "setting up the container") -> tuple[str, str, dict | None]:
    """``(error class name, message, other attributes or None)`` to report ``e`` as."""
    from base.errors import SbuildError

    if isinstance(e, SbuildError):
        state = {k: v for k, v in vars(e).items() if k != "message"}
        return type(e).__name__, str(e), state if any(v is not None for v in state.values()) else None
    kind = getattr(e, "kind", None)  # runtime.layers.SetupFailure
    if isinstance(kind, str):
        return kind, str(e), None
    if isinstance(e, OSError):
        where = f": {e.filename}" if e.filename else ""
        return "RunError", f"{context}: {(e.strerror or str(e)).lower()}{where}", None
    return "RunError", f"{context}: {type(e).__name__}: {e}", None


def error_from(kind: str, message: str, state: dict | None = None) -> SbuildError:
    """The ``base.errors`` exception a child reported (``RunError`` for a kind we do not know)."""
    from base import errors

    cls = getattr(errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.SbuildError)):
        cls = errors.RunError
    if state is None:
        try:
            return cls(message)
        except TypeError:  # a class that takes more than a message (RecipeError)
            state = {}
    message = state.get("message", message)  # (the record's copy is on one line)
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.message, err.hint = message, None
    err.__dict__.update(state)
    return err


def _pickled(value: object) -> str:
    import pickle

    return pickle.dumps(value).hex()


def _unpickled(text: str) -> object:
    import pickle

    return pickle.loads(bytes.fromhex(text))  # noqa: S301 - our own child wrote it


class End:
    """The child's end: ``status`` (to the parent) and ``sync`` (from it) file descriptors."""

    __slots__ = ("status", "sync")

    def __init__(self, status: int, sync: int) -> None:
        self.status, self.sync = status, sync

    def send(self, record: str) -> None:
        """Write one record (a line; the parent may be gone, which is not our problem)."""
        try:
            os.write(self.status, (record.replace("\n", " ") + "\n").encode("utf-8", "replace"))
        except OSError:
            pass

    def report(self, e: BaseException, describe: Callable = describe) -> None:
        kind, message, state = describe(e)
        if "\n" in message:
            state = {**(state or {}), "message": message}
        self.send(f"E{kind}\t{message}" + (f"\t{_pickled(state)}" if state else ""))

    def result(self, value: object) -> None:
        self.send("R" + _pickled(value))

    def await_maps(self) -> None:
        """Ask the parent for this (new) user namespace's maps; wait until they are written."""
        self.send("U")
        if os.read(self.sync, 1) != b"G":
            os._exit(255)


class Child:
    """The parent's view of a forked child: ``pid``, the records it sends, its end."""

    __slots__ = ("pid", "_status", "_sync")

    def __init__(self, pid: int, status: int, sync: int) -> None:
        self.pid, self._status, self._sync = pid, status, sync

    def records(self, on_userns: Callable[[int], None] | None = None) -> Iterator[tuple[str, str]]:
        """``(tag, payload)`` of each record until end of file; ``U`` is answered here
        (``on_userns(pid)`` writes the maps). Kills and reaps the child if reading fails."""
        try:
            with os.fdopen(self._status, "rb") as f:
                for line in f:
                    text = line.decode("utf-8", "replace").rstrip("\n")
                    if text == "U" and on_userns is not None:
                        on_userns(self.pid)
                        os.write(self._sync, b"G")
                    elif text:
                        yield text[0], text[1:]
        except BaseException:
            kill_and_reap(self.pid)
            raise
        finally:
            os.close(self._sync)

    @staticmethod
    def error(payload: str) -> SbuildError:
        """The exception an ``E`` record's payload describes."""
        kind, _, rest = payload.partition("\t")
        message, _, state = rest.partition("\t")
        return error_from(kind, message, _unpickled(state) if state else None)


def fork(body: Callable[[End], None], *, before: Callable[[], None] | None = None) -> Child:
    """Fork a child that runs ``body(end)`` and exits (255 if ``body`` returns or raises,
    after reporting the exception); ``before`` runs in the parent just before the fork."""
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    sync_r, sync_w = os.pipe2(os.O_CLOEXEC)
    try:
        if before is not None:
            before()
        # Ctrl-C waits until both sides are past os.fork (a KeyboardInterrupt inside the
        # child's fork handlers is printed as "Exception ignored", then lost)
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
    except BaseException:
        for fd in (status_r, status_w, sync_r, sync_w):
            os.close(fd)
        raise
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(status_r)
        os.close(sync_w)
        end = End(status_w, sync_r)
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # (a pending Ctrl-C is reported)
            body(end)
        except BaseException as e:  # noqa: BLE001 - report anything, then die
            end.report(e)
        os._exit(255)
    os.close(status_w)
    os.close(sync_r)
    child = Child(pid, status_r, sync_w)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a pending Ctrl-C is raised here
    return child


def call_in_child(fn: Callable, args: tuple = (), kwargs: dict | None = None, *,
                  enter: Callable[[End], None] | None = None, on_userns: Callable[[int], None] | None = None,
                  describe: Callable = describe) -> tuple[bool, object, int]:
    """``fn(*args, **kwargs)`` in a forked child that first runs ``enter(end)`` (and dies
    with the parent). Returns ``(reported, result, exit status)``: ``reported`` False when
    the child died before reporting; raises the error it reported."""
    parent = os.getpid()
    kwargs = kwargs or {}

    def body(end: End) -> None:
        from runtime import _sys

        try:
            _sys.set_pdeathsig(signal.SIGKILL, parent)
            if enter is not None:
                enter(end)
            value = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - carried to the parent and raised there
            end.report(e, describe)
            os._exit(1)
        try:
            end.result(value)
        except Exception as e:  # noqa: BLE001 - e.g. a result that cannot be pickled
            end.report(RuntimeError(f"result of {getattr(fn, '__name__', fn)} cannot be passed back: {e}"),
                       describe)
        os._exit(0)

    child = fork(body)
    reported, value, error = False, None, None
    for tag, payload in child.records(on_userns):
        if tag == "R":
            reported, value = True, _unpickled(payload)
        elif tag == "E" and error is None:
            reported, error = True, Child.error(payload)
    status = reap(child.pid)
    if error is not None:
        raise error
    return reported, value, status


def reap(pid: int) -> int:
    """Wait for child ``pid``; its exit status (128+N when killed by signal N; 255 if gone)."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return 255
    return exit_code(status)


def exit_code(status: int) -> int:
    """A wait status as the shell reports it: the exit code, or 128+N when killed by signal N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def kill_and_reap(pid: int) -> None:
    """SIGKILL a child of ours and collect it (no error if it is already gone)."""
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
