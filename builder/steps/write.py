"""The pieces a build, a conversion and ``sbuild pull`` share: TARGET and the bundles.

- ``write_bundle(bundle, plan, deffile=...)``: the last step of a build (and of a pull):
  room for the image first (``checks.check_room``), then ``builder.images.write_image``
  with the bundle's ``image_config`` as the SIF ``oci-config.json`` object.
- ``convert_source(source, plan)``: an image or sandbox as TARGET
  (``builder.images.convert_image``), after the same room check for a sandbox and, as an
  unprivileged user, a check that every file can be read (mksquashfs would skip it).
- ``remove_bundle(bundle, plan)`` and ``in_build_userns(plan, fn, ...)``.
- ``reclaim_leftovers(plan)``: at the start of a build, remove what killed builds left
  (``base.owner``: only what no live process owns): bundles in the same TMPDIR, half-written
  images beside the same TARGET (``.TARGET.sbuild-*``).

With ``identity.mode == "subuid"`` (a rootless build with subordinate ids, or ``--fakeroot``
for a conversion) these run inside the build's user namespace (``runtime.call_in_userns``)
and pack every file as root (root there, the user outside). A packer that fails for
lack of space gets a hint that says where.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from base.errors import BuildError, CapabilityError, SbuildError
from base.owner import reclaim, remove_owned
from builder.bundle import Bundle, reclaim_bundles
from builder.images import ImageResult, PackOptions, convert_image, write_image
from builder.images.convert import OCI_CONFIG
from builder.options import BuildPlan
from builder.steps import checks
from runtime import call_in_userns

__all__ = ["write_bundle", "convert_source", "remove_bundle", "in_build_userns", "reclaim_leftovers"]

log = logging.getLogger("sbuild.build")
T = TypeVar("T")


def in_build_userns(plan: BuildPlan, fn: Callable[..., T], /, *args, **kwargs) -> T:  # noqa: ANN002, ANN003
    """``fn`` in the build's user namespace when files may belong to subordinate ids."""
    if plan.identity.mode == "subuid":
        return call_in_userns(fn, *args, **kwargs)
    return fn(*args, **kwargs)


def _pack_options(plan: BuildPlan) -> PackOptions:
    if plan.identity.mode == "subuid" and plan.pack.all_root is None:
        return dataclasses.replace(plan.pack, all_root=True)  # root inside the namespace, unprivileged outside
    return plan.pack


def _packing(plan: BuildPlan, fn: Callable[..., ImageResult], /, *args, **kwargs) -> ImageResult:  # noqa: ANN002, ANN003
    try:
        return in_build_userns(plan, fn, *args, options=_pack_options(plan), **kwargs)
    except BuildError as e:
        hint = checks.no_space_hint(plan.target, e.output_tail)
        if hint and not e.hint:
            e.hint = hint
        raise


def write_bundle(bundle: Bundle, plan: BuildPlan, *, deffile: bytes = b"") -> ImageResult:
    """Write the bundle's rootfs as ``plan.target`` (atomic: a failure leaves no TARGET)."""
    checks.check_room(bundle.rootfs, plan.target, plan.format)
    objects = {OCI_CONFIG: bundle.image_config} if bundle.image_config else None
    return _packing(plan, write_image, bundle.rootfs, plan.target, plan.format, deffile=deffile,
                    json_objects=objects, force=plan.force or plan.update, fix_perms=plan.fetch.fix_perms,
                    move=not plan.keep_bundle, arch=plan.fetch.arch)


def convert_source(source: Path, plan: BuildPlan) -> ImageResult:
    """Convert the image or sandbox ``source`` to ``plan.target`` in ``plan.format``."""
    reclaim_leftovers(plan)
    if source.is_dir():
        checks.check_room(source, plan.target, plan.format)
    log.info("converting %s to %s (%s)", source, plan.target, plan.format)
    from builder.signing.fingerprints import warn_if_signed

    warn_if_signed(str(source), plan.format)  # signatures do not survive a conversion
    if plan.identity.mode != "subuid" and os.geteuid() != 0 and source.is_dir():
        unreadable = checks.first_unreadable(source)
        if unreadable:
            raise CapabilityError(f"converting {source}: {unreadable} is not readable by this user",
                                  hint="files of a rootless build belong to your subordinate ids: add --fakeroot "
                                       "to convert inside your user namespace")
    return _packing(plan, convert_image, source, plan.target, plan.format, fix_perms=plan.fetch.fix_perms,
                    force=plan.force)


def remove_bundle(bundle: Bundle, plan: BuildPlan) -> None:
    """Delete ``bundle``, inside the build's user namespace when its files may need it."""
    if plan.identity.mode == "subuid":
        try:
            call_in_userns(bundle.remove)
        except SbuildError as e:
            log.debug("removing %s in the user namespace: %s", bundle.work, e)
    bundle.remove()  # (what is left, if anything) and let go of its owner record


def _remove_leftover(plan: BuildPlan, path: Path) -> None:
    try:  # files of subordinate ids are removable only in the build's namespace
        in_build_userns(plan, remove_owned, path)
    except SbuildError as e:
        log.debug("removing %s in the user namespace: %s", path, e)
    remove_owned(path)  # (what is left, if anything; the owner record last)


def reclaim_leftovers(plan: BuildPlan) -> list[Path]:
    """Remove the bundles in the build's TMPDIR and the temp files beside its TARGET that
    killed builds left (their owner records are free); a running build's are kept."""
    def remove(path: Path) -> None:
        _remove_leftover(plan, path)

    target = Path(plan.target).absolute()
    found = reclaim_bundles(plan.fetch.tmpdir, remove)
    found += reclaim(target.parent, [f".{target.name}.sbuild-"], remove)
    for path in found:
        log.info("removed %s, left by a stopped build", path)
    return found
