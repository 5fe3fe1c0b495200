"""``Bootstrap: localimage``: start from an image on this machine.

``From`` names a .simg, SIF, raw squashfs or ext3 image, or a sandbox directory (relative
paths are relative to the build's working directory). It is unpacked into the bundle with
``builder.images.extract_image`` (unsquashfs; a sandbox is copied), and the base
environment is added without overwriting the image's own files (spec §B.6). The image's
labels.json and recipe copy are kept, so labels merge and the old recipe moves to
``bootstrap_history``.

In a rootless build with subordinate ids, a sandbox directory is copied inside the build's
user namespace, so files of other ids (a 0700 directory chowned in an earlier %post) are
read and keep their owners. Images are unpacked as the user, so their files belong to
the build's root.
"""

from __future__ import annotations

import os
from pathlib import Path

from base.errors import BuildError
from builder.bundle import Bundle
from builder.images import extract_image
from builder.options import FetchOptions
from builder.recipe import Stage
from builder.rootfs import write_base_env
from builder.sources.contract import Source

__all__ = ["LocalImageSource"]


class LocalImageSource(Source):
    """``From`` (required: ``builder.sources.checks``) names the image or sandbox."""

    def fetch(self, bundle: Bundle, stage: Stage, options: FetchOptions) -> None:
        source = (stage.header or {})["from"]
        path = Path(source.removeprefix("localimage://")).expanduser()
        if not path.exists():
            raise BuildError(f"localimage: {path} does not exist",
                             hint="From: must name an image or sandbox directory")
        from builder.signing.fingerprints import check_base, is_sif

        if not path.is_dir() and is_sif(str(path)):  # signatures and Fingerprints: (builder.signing)
            check_base(str(path), (stage.header or {}).get("fingerprints"), what="localimage")
        os.rmdir(bundle.rootfs)
        if path.is_dir() and options.identity.mode == "subuid":
            from runtime import call_in_userns

            call_in_userns(extract_image, path, bundle.rootfs, fix_perms=options.fix_perms)
        else:
            extract_image(path, bundle.rootfs, fix_perms=options.fix_perms)
        write_base_env(bundle.rootfs, overwrite=False)
        bundle.bootstrapped = True
