"""``%post`` and ``%test`` inside the runtime (spec §B.4, §B.5).

Everything that runs inside the container goes through ``_run_in_rootfs``, the one
adapter to ``runtime/`` (``runtime.run_in_sandbox``).

%post: the script (with app install blocks) is written to ``/.post.script`` and run with
the interpreter rule of §B.2 from ``/``, with a clean environment (LANG=C, default PATH),
``$SINGULARITY_ENVIRONMENT`` and ``$SINGULARITY_LABELS`` set, and the host's resolv.conf
and hosts (plus a newline) bound over the rootfs's when it has them and no ``--bind``
targets them. %test runs the test action (the installed test through its shebang).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from builder.bundle import Bundle
from builder.recipe import Stage
from builder.options import StepOptions
from builder.rootfs import Tail, inside
from builder.steps.apps import install_blocks
from builder.steps.scripts import interpreter_argv, section_failure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from runtime.description import Identity

__all__ = ["run_post", "run_test", "post_script"]

log = logging.getLogger("sbuild.build")
_ENV_FILE = "/.singularity.d/env/91-environment.sh"
_PASS = ("TERM", "http_proxy", "https_proxy", "no_proxy", "all_proxy",
         "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")


def _run_in_rootfs(rootfs: Path, argv: list[str], *, env: Mapping[str, str], binds: list[str],
                   output: Callable[[str], None] | None, identity: Identity,
                   action: str = "exec") -> tuple[int, list[str]]:
    """Run ``argv`` as root inside ``rootfs`` (writable); return (exit status, last lines)."""
    import runtime

    tail = Tail(output)
    read_fd, write_fd = os.pipe()
    reader = threading.Thread(target=_drain, args=(read_fd, tail), daemon=True)
    reader.start()
    try:
        with open(os.devnull, "rb") as devnull:
            status = runtime.run_in_sandbox(str(rootfs), argv, env=dict(env), binds=binds, cwd="/",
                                            writable=True, stdin=devnull.fileno(), stdout=write_fd,
                                            stderr=write_fd, action=action, userns=identity)
    finally:
        os.close(write_fd)
        reader.join()
    return status, list(tail.lines)


def _drain(fd: int, tail: Tail) -> None:
    with os.fdopen(fd, "rb") as fh:
        for raw in fh:
            tail.feed(raw)


def _clean_env(opts: StepOptions) -> dict[str, str]:
    """Variables set with --env semantics; the runtime's cleanenv gives LANG=C and the default PATH."""
    return {k: v for k, v in opts.host_env.items() if k in _PASS}


def _stage_file(bundle: Bundle, name: str, opts: StepOptions) -> str | None:
    target = f"/etc/{name}"
    if any(b.split(":")[1:2] == [target] or b == target for b in opts.binds):
        return None
    in_root = inside(bundle.rootfs, target)
    if not os.access(in_root, os.R_OK):
        if os.path.islink(bundle.rootfs / "etc" / name):
            log.warning("/etc/%s in the rootfs is a dangling symlink: not staging the host's", name)
        return None
    try:
        data = Path(target).read_bytes()
    except OSError:
        return None
    staged = bundle.scratch(name)
    staged.write_bytes(data + b"\n")
    return f"{staged}:{target}"


def _binds(bundle: Bundle, opts: StepOptions) -> list[str]:
    staged = [_stage_file(bundle, n, opts) for n in ("resolv.conf", "hosts")]
    return [b for b in staged if b] + list(opts.binds)


def post_script(stage: Stage) -> str:
    """The %post body followed by each app's install block (spec §B.6)."""
    text = stage.scripts.get("post").script if stage.scripts.get("post") else ""
    return text + install_blocks(stage)


def run_post(bundle: Bundle, stage: Stage, opts: StepOptions, identity: Identity, *, output=None) -> None:  # noqa: ANN001
    script = post_script(stage)
    if not script.strip():
        return
    path = bundle.rootfs / ".post.script"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o755)
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as fh:
        fh.write(script)
    args = stage.scripts["post"].args if stage.scripts.get("post") else ""
    env = _clean_env(opts)
    env.update(APPTAINER_ENVIRONMENT=_ENV_FILE, SINGULARITY_ENVIRONMENT=_ENV_FILE,
               APPTAINER_LABELS="/.build.labels", SINGULARITY_LABELS="/.build.labels")
    try:
        status, tail = _run_in_rootfs(bundle.rootfs, interpreter_argv("post", args, "/.post.script"),
                                      env=env, binds=_binds(bundle, opts), output=output, identity=identity)
    finally:
        path.unlink(missing_ok=True)
    if status != 0:
        raise section_failure(stage, "post", status, tail, bundle)


def run_test(bundle: Bundle, stage: Stage, opts: StepOptions, identity: Identity, *, output=None) -> None:  # noqa: ANN001
    body = stage.scripts.get("test")
    if opts.notest or not body or not body.script.strip():
        return
    status, tail = _run_in_rootfs(bundle.rootfs, [], env=_clean_env(opts), action="test",
                                  binds=_binds(bundle, opts), output=output, identity=identity)
    if status != 0:
        raise section_failure(stage, "test", status, tail, bundle)
