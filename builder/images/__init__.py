"""Image formats: probe, read and write .simg, SIF, raw squashfs, sandboxes and ext3.

Public API (details in each module):
    probe(path) -> ImageInfo                          where an image's filesystem lies
    write_image(rootfs, target, fmt, *, deffile, json_objects, options, force, fix_perms, move)
    extract_image(image, dest, *, fix_perms, force)   any image -> new sandbox directory
    convert_image(source, target, fmt, *, options, fix_perms, force)
    format_for_target(target, *, sandbox, fmt) -> fmt ("simg" "sif" "squashfs" "sandbox" "ext3")
    PackOptions(mksquashfs_args, all_root, processors, source_date_epoch)
    OverlayOptions / create_overlay(target, options, *, force)   ext3 overlay images
    open_tree(path) -> Tree; collect(tree) -> inspect metadata    read without mounting
"""

from builder.images.convert import (FORMATS, ImageResult, convert_image, create_overlay,
                                    extract_image, file_digest, format_for_target, write_image)
from builder.images.ext3 import OverlayOptions
from builder.images.metadata import collect, go_json
from builder.images.probe import ImageInfo, probe
from builder.images.reader import Tree, open_tree
from builder.images.squashfs import PackOptions, require_mksquashfs, split_mksquashfs_args

__all__ = [
    "FORMATS", "ImageInfo", "ImageResult", "OverlayOptions", "PackOptions", "Tree", "collect",
    "convert_image", "create_overlay", "extract_image", "file_digest", "format_for_target", "go_json", "open_tree",
    "probe", "require_mksquashfs", "split_mksquashfs_args", "write_image",
]
