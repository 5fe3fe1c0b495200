"""The Bundle: the one mutable object passed between build steps.

A bundle is a work directory holding ``rootfs/`` (the stage's root filesystem) and
scratch files (host scripts, staged resolv.conf/hosts), plus what the source tells the
later steps: ``bootstrapped`` (the agent filled the rootfs: header labels are recorded),
``image_config`` (an OCI base's config, stored as the SIF ``oci-config.json`` object) and
``base_labels`` (its ``org.opencontainers.image.base.*`` labels, for labels.json). Steps
read the recipe stage and options they are given, and change only the bundle. ``Bundle.create`` makes one in a
temporary directory; ``remove`` deletes it (also when files in it are read-only).

A bundle holds an owner record (``base.owner``) for as long as its build runs: what a
killed build left in TMPDIR is reclaimed by the next build there (``reclaim_bundles``),
never a running build's bundle; ``keep`` (``--no-cleanup``) drops the record for good.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from base.errors import BuildError
from base.fsutil import remove_tree
from base.owner import TMPDIR_PREFIXES, Owned, owned_dir, reclaim, remove_owned

__all__ = ["Bundle", "reclaim_bundles", "BUNDLE_PREFIX"]

BUNDLE_PREFIX = "sbuild-bundle-"

log = logging.getLogger("sbuild.build")


@dataclass
class Bundle:
    work: Path  # the bundle directory; everything below it belongs to the build
    bootstrapped: bool = False  # the agent filled the rootfs (header labels are recorded)
    image_config: bytes | None = None  # the OCI base's config: the SIF oci-config.json object
    base_labels: dict[str, str] = field(default_factory=dict)  # org.opencontainers.image.base.*
    owner: Owned | None = field(default=None, repr=False)  # the owner record, held while the build runs

    @property
    def rootfs(self) -> Path:
        return self.work / "rootfs"

    @classmethod
    def create(cls, tmpdir: str | os.PathLike | None) -> Bundle:
        """A new bundle with an empty rootfs (0755) under ``tmpdir`` (None: the system default)."""
        try:
            owner = owned_dir(tmpdir, BUNDLE_PREFIX)
        except OSError as e:
            raise BuildError(f"creating the build bundle in {tmpdir or tempfile.gettempdir()}: {e.strerror}",
                             hint="set --tmpdir or TMPDIR to a writable directory") from e
        work = owner.path
        try:
            (work / "rootfs").mkdir(mode=0o755)
            os.chmod(work / "rootfs", 0o755)
        except OSError as e:
            remove_tree(work)
            owner.release()
            raise BuildError(f"creating the build bundle in {work}: {e.strerror}") from e
        log.debug("bundle %s", work)
        return cls(work, owner=owner)

    def scratch(self, name: str) -> Path:
        """A path for a bundle-private file (outside the rootfs)."""
        return self.work / name

    def remove(self) -> None:
        """Delete the bundle, making read-only directories writable first (what cannot be
        removed stays, with a free owner record: the next build retries)."""
        remove_owned(self.work)
        self.release()

    def release(self) -> None:
        """Let go of the owner record (``remove`` does it; a bundle removed elsewhere needs it)."""
        if self.owner is not None:
            self.owner.release()

    def keep(self) -> None:
        """Keep the bundle after the build (``--no-cleanup``): nobody reclaims it."""
        if self.owner is not None:
            self.owner.disown()


def reclaim_bundles(tmpdir: str | os.PathLike | None,
                    remove: Callable[[Path], None] = remove_owned) -> list[Path]:
    """Remove the bundles (and the other temps: ``base.owner.TMPDIR_PREFIXES``) that killed
    builds and pulls left in ``tmpdir`` (None: the system default); ``remove(path)`` deletes
    one (the build's user namespace may be needed for its files)."""
    return reclaim(tmpdir or tempfile.gettempdir(), TMPDIR_PREFIXES, remove)
