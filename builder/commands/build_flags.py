"""Apptainer's ``build`` flags beyond sbuild's own, with what each means for an sbuild build.

``add_build_flags(parser)`` declares them (with their env twins, reference apptainer-cli.md
§4.3); ``apply_build_flags(args)`` runs after ``flags.apply_env`` and folds them into the
values ``builder.commands.build`` already uses; ``identity(args)`` is the build's identity
when a flag chooses it. What each does:

- ``--mount SPEC`` (repeatable, ``APPTAINER_MOUNT`` appended): Docker-style binds during
  ``%post``/``%test``, as ``--bind`` (``runtime.plan.parse_mount``).
- ``--userns``: build in a user namespace: what an unprivileged build does anyway; as root
  (which needs none) it is noted and the build runs as root, as ``--fakeroot`` is.
- ``--ignore-subuid``: an unprivileged build maps the user to root only (one id), not to its
  ``/etc/subuid`` range. ``--ignore-userns``: an unprivileged build needs a user namespace,
  so it is refused (Apptainer would fall back to proot or fakeroot(1), which sbuild has
  not). ``--ignore-fakeroot-command``, ``--ignore-proot``: sbuild uses neither: no effect.
- ``--arch-variant V``: the platform variant of pulled images (``--arch ARCH`` → ``ARCH/V``).
- ``--reproducible``: timestamps from ``SOURCE_DATE_EPOCH``, 0 when it is not set (sbuild's
  images are byte-for-byte reproducible from the same inputs with a fixed epoch).
- ``--writable-tmpfs``: ``%test`` may write: sbuild runs it on the build's own sandbox,
  which is writable, so it is accepted as is.
- ``--nv``, ``--rocm``, ``--compat32``, ``--nvccli``: GPUs are not bound into ``%post``/
  ``%test`` by sbuild: a WARNING says so and the build goes on.

Not here: ``--data`` (a data-container SIF), ``--buildkit-host`` (Dockerfile builds) and the
encryption flags (``-e/--encrypt``, ``--passphrase``, ``--pem-path``: the signing issue).
"""

from __future__ import annotations

import logging
import os

from base.errors import CapabilityError
from builder.commands.flags import add_flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

__all__ = ["add_build_flags", "apply_build_flags", "identity"]

log = logging.getLogger("sbuild.build")

_GPU = (("--nv", "NV"), ("--rocm", "ROCM"), ("--compat32", "COMPAT32"), ("--nvccli", "NVCCLI"))
_IGNORE = ("subuid", "fakeroot-command", "proot", "userns")


def add_build_flags(p: argparse.ArgumentParser) -> None:
    """Declare the flags of the module docstring on the build parser ``p``."""
    add_flag(p, "--mount", env="MOUNT", env_append=True, action="append", metavar="SPEC",
             help="a docker-style bind during %%post/%%test: type=bind,src=...,dst=...[,ro]")
    add_flag(p, "--userns", env="USERNS", action="store_true", help="build in a user namespace")
    for word in _IGNORE:
        add_flag(p, f"--ignore-{word}", env=f"IGNORE_{word.upper().replace('-', '_')}", action="store_true",
                 help=f"ignore {word} (see builder.commands.build_flags)")
    add_flag(p, "--arch-variant", env="BUILD_ARCH_VARIANT", metavar="VARIANT", help="platform variant of pulls")
    add_flag(p, "--reproducible", env="REPRODUCIBLE", action="store_true",
             help="timestamps from SOURCE_DATE_EPOCH (0 when unset)")
    add_flag(p, "--writable-tmpfs", env="WRITABLE_TMPFS", action="store_true", help="%%test may write (it may)")
    for flag, key in _GPU:
        add_flag(p, flag, env=key if flag == "--nvccli" else (), action="store_true",
                 help="GPUs during %%post/%%test (not bound by sbuild: a warning)")


def apply_build_flags(args: argparse.Namespace) -> None:
    """Fold the flags into the values the build uses (``args.bind``, ``args.arch``, the
    epoch), refuse what cannot be honoured, warn about what is not done."""
    if args.mount:
        from runtime.plan import parse_mount

        args.bind = [*args.bind, *(_bind_text(b) for spec in args.mount for b in parse_mount(spec))]
    if args.arch_variant:
        arch = args.arch or _host_arch()
        args.arch = arch if "/" in arch else f"{arch}/{args.arch_variant}"
    if args.ignore_userns and os.geteuid() != 0:
        raise CapabilityError("building unprivileged with --ignore-userns: sbuild builds in a user namespace "
                              "and has no proot or fakeroot(1) fallback", hint="drop --ignore-userns, or build as root")
    if args.userns and os.geteuid() == 0:
        log.info("--userns: already root, building as root")
    gpus = [flag for flag, _key in _GPU if getattr(args, flag[2:])]
    if gpus:
        log.warning("%s: sbuild does not bind GPUs into %%post or %%test; building without them", ", ".join(gpus))


def identity(args: argparse.Namespace):  # noqa: ANN201 - runtime Identity, or None
    """The build's identity when ``--ignore-subuid`` chooses it (unprivileged: root-mapped,
    one id), else None (``builder.steps.userns.build_identity`` decides)."""
    if not args.ignore_subuid or os.geteuid() == 0:
        return None
    import runtime

    return runtime.choose_identity("root")


def _bind_text(bind) -> str:  # noqa: ANN001 - runtime.description.Bind
    """A ``--bind`` string for ``bind`` (``:`` and ``,`` in paths escaped)."""
    def esc(path: str) -> str:
        return path.replace(":", "\\:").replace(",", "\\,")

    return f"{esc(bind.src)}:{esc(bind.dst)}" + (":ro" if bind.readonly else "")


def _host_arch() -> str:
    from builder.sources.oci.platform import host_platform

    return host_platform().architecture
