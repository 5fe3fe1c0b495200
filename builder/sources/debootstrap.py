"""``Bootstrap: debootstrap``: a Debian/Ubuntu rootfs made by debootstrap(8).

Header keys: ``OSVersion`` (suite, required), ``MirrorURL`` (required), ``Include``
(extra packages, comma or space separated). Runs ``debootstrap --variant=minbase`` into the
bundle as root. Limit: rootless builds (subuid-mapped namespace) are not wired yet and
give a CapabilityError saying so; the Debian mirror must be reachable.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

from builder.bundle import Bundle
from builder.errors import BuildError, CapabilityError
from builder.recipe import Stage
from builder.steps.baseenv import write_base_env
from builder.steps.metadata import write_file
from builder.steps.options import FetchOptions
from builder.steps.scripts import Tail

__all__ = ["fetch", "debootstrap_argv"]

log = logging.getLogger("sbuild.sources")
_DEB_ARCH = {"amd64": "amd64", "arm64": "arm64", "386": "i386", "arm": "armhf", "ppc64le": "ppc64el",
             "s390x": "s390x", "riscv64": "riscv64"}


def debootstrap_argv(header: dict[str, str], rootfs: str, arch: str | None) -> list[str]:
    suite, mirror = header.get("osversion", "").strip(), header.get("mirrorurl", "").strip()
    if not suite or not mirror:
        raise BuildError("debootstrap: OSVersion and MirrorURL are required")
    argv = ["debootstrap", "--variant=minbase"]
    include = [p for p in header.get("include", "").replace(",", " ").split() if p]
    if include:
        argv.append("--include=" + ",".join(include))
    if arch:
        argv.append("--arch=" + _DEB_ARCH.get(arch, arch))
    return argv + [suite, rootfs, mirror]


def fetch(bundle: Bundle, stage: Stage, opts: FetchOptions) -> None:
    exe = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
    if not exe:
        raise CapabilityError("debootstrap not found", hint="apt-get install debootstrap")
    if os.geteuid() != 0:
        raise CapabilityError("debootstrap builds need root here (rootless debootstrap is not supported yet)",
                              hint="run the build as root")
    argv = debootstrap_argv(stage.header or {}, str(bundle.rootfs), opts.arch)
    argv[0] = exe
    tail = Tail(lambda line: log.debug("debootstrap: %s", line))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    with proc.stdout:
        for raw in proc.stdout:
            tail.feed(raw)
    status = proc.wait()
    if status != 0:
        raise BuildError(f"debootstrap {stage.header.get('osversion')} failed with exit code {status}",
                         exit_code=status, output_tail=list(tail.lines),
                         hint="check MirrorURL and OSVersion, and that the mirror is reachable")
    write_base_env(bundle.rootfs, overwrite=True)
    write_file(bundle.rootfs / ".singularity.d" / "runscript", "#!/bin/sh\n", 0o755)
    bundle.bootstrapped = True
