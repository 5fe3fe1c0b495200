"""``%post`` and ``%test`` inside the runtime (spec §B.4, §B.5).

Everything that runs inside the container goes through ``_run_in_rootfs``, the one
adapter to ``runtime/``: it calls ``runtime.run_in_sandbox`` when the runtime provides
it, and otherwise raises ``CapabilityError`` (exit 3) saying the section cannot run yet.

%post: the script (with app install blocks) is written to ``/.post.script`` and run with
the interpreter rule of §B.2 from ``/``, with a clean environment (LANG=C, default PATH),
``$SINGULARITY_ENVIRONMENT`` and ``$SINGULARITY_LABELS`` set, and the host's resolv.conf
and hosts (plus a newline) bound over the rootfs's when it has them and no ``--bind``
targets them. %test runs ``/.singularity.d/actions/test`` (the test through its shebang).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from builder.bundle import Bundle
from builder.errors import CapabilityError
from builder.recipe import Stage
from builder.steps.options import StepOptions
from builder.steps.paths import inside
from builder.steps.scripts import interpreter_argv, section_failure

__all__ = ["run_post", "run_test", "post_script", "runtime_available"]

log = logging.getLogger("sbuild.build")
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ENV_FILE = "/.singularity.d/env/91-environment.sh"
_PASS = ("TERM", "http_proxy", "https_proxy", "no_proxy", "all_proxy",
         "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")


def runtime_available() -> bool:
    try:
        import runtime
    except ImportError:
        return False
    return callable(getattr(runtime, "run_in_sandbox", None))


def _run_in_rootfs(rootfs: Path, argv: list[str], *, env: Mapping[str, str], binds: list[str],
                   output: Callable[[str], None] | None, fakeroot: bool) -> tuple[int, list[str]]:
    """Run ``argv`` as root inside ``rootfs`` (writable); return (exit status, last lines)."""
    if not runtime_available():
        raise CapabilityError("running a section inside the container needs runtime.run_in_sandbox, "
                              "which this sbuild does not have yet",
                              hint="build without %post, or with --notest to skip %test")
    import runtime

    return runtime.run_in_sandbox(str(rootfs), argv, env=dict(env), binds=binds, cwd="/",
                                  writable=True, fakeroot=fakeroot, output=output)


def _clean_env(opts: StepOptions) -> dict[str, str]:
    env = {"LANG": "C", "PATH": _PATH}
    env.update({k: v for k, v in opts.host_env.items() if k in _PASS})
    return env


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
    for app in stage.app_order:
        body = stage.scripts.get(f"appinstall {app}")
        text += (f"\ncd /\n. /scif/apps/{app}/scif/env/01-base.sh\n\ncd /scif/apps/{app}\n"
                 f"{body.script if body else ''}\n\ncd /\n")
    return text


def run_post(bundle: Bundle, stage: Stage, opts: StepOptions, *, output=None) -> None:  # noqa: ANN001
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
                                      env=env, binds=_binds(bundle, opts), output=output, fakeroot=opts.fakeroot)
    finally:
        path.unlink(missing_ok=True)
    if status != 0:
        raise section_failure(stage, "post", status, tail, bundle)


def run_test(bundle: Bundle, stage: Stage, opts: StepOptions, *, output=None) -> None:  # noqa: ANN001
    body = stage.scripts.get("test")
    if opts.notest or not body or not body.script.strip():
        return
    status, tail = _run_in_rootfs(bundle.rootfs, ["/.singularity.d/actions/test"], env=_clean_env(opts),
                                  binds=_binds(bundle, opts), output=output, fakeroot=opts.fakeroot)
    if status != 0:
        raise section_failure(stage, "test", status, tail, bundle)
