"""What the sources and the build steps both do to a rootfs directory on the host.

A leaf below ``builder.sources`` and ``builder.steps`` (it imports only ``base``), so an
agent fills a rootfs with the same helpers the later steps change it with:

    inside(rootfs, path) -> Path                 securejoin-style resolution, never outside
    write_file(path, data, mode)                 create or replace, never through a symlink
    write_base_env(rootfs, overwrite=...)        the /.singularity.d skeleton (spec §B.6)
    run_captured(argv, env=, cwd=, output=)      a host program, its output's tail kept
    Tail                                         that bounded line buffer
    copy_from_host(src, rootfs, dst)             %files: like cp -fLr, every write resolved inside
    copy_from_stage(src_root, src, rootfs, dst)  %files from: like cp -a -T, both sides inside
"""

from builder.rootfs.baseenv import BASE_FILES, write_base_env
from builder.rootfs.command import TAIL_LINES, Tail, run_captured
from builder.rootfs.copy import copy_from_host, copy_from_stage
from builder.rootfs.paths import inside, write_file

__all__ = ["BASE_FILES", "TAIL_LINES", "Tail", "copy_from_host", "copy_from_stage", "inside", "run_captured",
           "write_base_env", "write_file"]
