"""Image formats: probe, read and write .simg, SIF, raw squashfs, sandboxes and ext3.

Public API (details in each module):
    probe(path) -> ImageInfo                          where an image's filesystem lies
    write_image(rootfs, target, fmt, *, deffile, json_objects, options, force, fix_perms, move)
    extract_image(image, dest, *, fix_perms, force)   any image -> new sandbox directory
    convert_image(source, target, fmt, *, options, fix_perms, force)
    format_for_target(target, *, sandbox, fmt) -> fmt ("simg" "sif" "squashfs" "sandbox" "ext3")
    PackOptions(mksquashfs_args, all_root, processors, source_date_epoch, packer, block_cache)
    BlockCache(root).usage() / .clean(days, dry_run) -> CacheUsage   the packer's block cache
    default_dir() -> the block cache's directory under the cache root (what builds use)
    OverlayOptions / create_overlay(target, options, *, force)   ext3 overlay images
    open_tree(path) -> Tree; collect(tree) -> inspect metadata    read without mounting
"""

# probe is imported eagerly: the submodule of the same name would otherwise shadow the
# function once anything imports builder.images.probe (and the runtime needs it anyway).
from builder.images.probe import ImageInfo, probe

_WHERE = {
    "FORMATS": "convert", "ImageResult": "convert", "convert_image": "convert",
    "create_overlay": "convert", "extract_image": "convert", "file_digest": "convert",
    "format_for_target": "convert", "write_image": "convert", "OverlayOptions": "ext3",
    "collect": "metadata",
    "Tree": "reader", "open_tree": "reader", "PackOptions": "squashfs",
    "require_mksquashfs": "squashfs", "split_mksquashfs_args": "squashfs",
    "BlockCache": "blockcache", "CacheUsage": "blockcache", "default_dir": "blockcache",
}

__all__ = sorted([*_WHERE, "ImageInfo", "probe"])


def __getattr__(name: str):
    """Import each export on first use: ``probe`` must stay cheap on the runtime's launch path."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'builder.images' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"builder.images.{module}"), name)
    globals()[name] = value
    return value
