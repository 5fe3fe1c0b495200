"""Image formats: probe, read and write .simg, SIF, raw squashfs, sandboxes and ext3.

Public API (see each module for details):
    probe(path) -> ImageInfo                       where the filesystem of an image lies
"""

from builder.images.probe import ImageInfo, probe

__all__ = ["ImageInfo", "probe"]
