"""``Bootstrap: debootstrap``: a Debian/Ubuntu rootfs made by debootstrap(8).

Header keys: ``OSVersion`` (suite, required), ``MirrorURL`` (required), ``Include``
(extra packages, comma or space separated). Runs ``debootstrap --variant=minbase`` into the
bundle: as root directly; rootless inside the build's subuid-mapped user namespace and a
new mount namespace (``runtime.call_in_userns``) with ``container=lxc``, which
makes debootstrap skip its mknod test and bind /dev instead (local-test-infra.md §5:
the equivalent of ``unshare --map-root-user --map-auto -m``). Files then belong to
subordinate ids on the host. Rootless without a subordinate id range is refused: dpkg
must chown to other ids. The mirror must be reachable.
"""

from __future__ import annotations

import logging
import os
import shutil

from base.errors import BuildError, CapabilityError
from builder.bundle import Bundle
from builder.options import FetchOptions
from builder.recipe import Stage
from builder.rootfs import run_captured
from builder.sources.contract import Source, finish_fresh_rootfs

__all__ = ["DebootstrapSource", "debootstrap_argv"]

log = logging.getLogger("sbuild.sources")
_DEB_ARCH = {"amd64": "amd64", "arm64": "arm64", "386": "i386", "arm": "armhf", "ppc64le": "ppc64el",
             "s390x": "s390x", "riscv64": "riscv64"}
_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
_PASS = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "TMPDIR")


def debootstrap_argv(header: dict[str, str], rootfs: str, arch: str | None) -> list[str]:
    """The debootstrap command line; ``OSVersion`` and ``MirrorURL`` are required keys
    (checked before the build: ``builder.sources.checks``)."""
    suite, mirror = header["osversion"], header["mirrorurl"]
    argv = ["debootstrap", "--variant=minbase"]
    include = [p for p in header.get("include", "").replace(",", " ").split() if p]
    if include:
        argv.append("--include=" + ",".join(include))
    if arch:
        argv.append("--arch=" + _DEB_ARCH.get(arch, arch))
    return argv + [suite, rootfs, mirror]


def _rootless_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _PASS}
    env.update(container="lxc", PATH=_PATH, LANG="C", HOME="/root")
    return env


def _run(argv: list[str], env: dict[str, str] | None) -> tuple[int, list[str]]:
    """debootstrap, its output logged at debug level (the tail kept for the error)."""
    return run_captured(argv, env=env, cwd=None, output=lambda line: log.debug("debootstrap: %s", line))


class DebootstrapSource(Source):
    def fetch(self, bundle: Bundle, stage: Stage, options: FetchOptions) -> None:
        exe = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
        if not exe:
            raise CapabilityError("debootstrap not found", hint="apt-get install debootstrap")
        argv = debootstrap_argv(stage.header or {}, str(bundle.rootfs), options.arch)
        argv[0] = exe
        if os.geteuid() == 0:
            status, tail = _run(argv, None)
        elif options.identity.mode == "subuid":
            from runtime import call_in_userns

            status, tail = call_in_userns(_run, argv, _rootless_env())
        else:
            raise CapabilityError("a rootless debootstrap build needs subordinate ids (dpkg changes file owners)",
                                  hint="install uidmap and add a range, e.g. usermod --add-subuids 100000-165535 "
                                       "--add-subgids 100000-165535 $USER")
        if status != 0:
            raise BuildError(f"debootstrap {stage.header.get('osversion')} failed with exit code {status}",
                             exit_code=status, output_tail=tail,
                             hint="check MirrorURL and OSVersion, and that the mirror is reachable")
        finish_fresh_rootfs(bundle)
