"""``%files`` (spec §B.3): copy from the host, or ``%files from STAGE`` from an earlier stage.

Host copy: the source is relative to the build's working directory; globs (``**`` too)
expand, quoted names are literal; the destination (default: the source path) is resolved
inside the rootfs like securejoin, missing parents are created, and the source is copied
like ``cp -fLr``, dereferencing every host symlink as Apptainer does. Stage copy: the source
is globbed and resolved inside the source stage's rootfs (an absolute symlink stays inside
it), only the top-level symlink is dereferenced, and the tree is copied like ``cp -a``.

The copies are ``builder.rootfs.copy``'s: every path written, down to the last file of
a recursive copy, is resolved inside the rootfs through ``O_NOFOLLOW`` directory fds, so a
symlink a base image planted (on the destination, a parent, or inside an existing tree)
is followed as if the rootfs were ``/`` and never to the host.
"""

from __future__ import annotations

import glob
import logging
import os
import shlex
from pathlib import Path

from builder.bundle import Bundle
from base.errors import BuildError
from builder.recipe import FileTransfer, Stage
from builder.options import StepOptions
from builder.rootfs import copy_from_host, copy_from_stage, inside

__all__ = ["copy_host_files", "copy_stage_files", "stage_of", "expand_source"]

log = logging.getLogger("sbuild.build")
_GLOB = set("*?[")


def stage_of(block_args: str) -> str | None:
    """The stage name of ``%files from NAME`` (None for a host block)."""
    words = block_args.split()
    if len(words) >= 2 and words[0] == "from":
        return words[1]
    return None


def expand_source(source: str, cwd: str) -> list[str]:
    """The host paths a ``%files`` source names (globs expanded, quoted names literal)."""
    try:
        words = shlex.split(source)
    except ValueError:
        words = [source]
    word = " ".join(words)
    quoted = any(q in source for q in "'\"\\")
    if not quoted and _GLOB & set(word):
        base = word if os.path.isabs(word) else os.path.join(cwd, word)
        matches = sorted(glob.glob(base, recursive=True))
        if matches:
            return matches
    return [word if os.path.isabs(word) else os.path.join(cwd, word)]


def _failed(e: OSError, src: str, line: int) -> BuildError:
    """``%files line N: copying SRC to /in/the/rootfs: why``."""
    if e.filename2:
        what = f"{e.filename} to {e.filename2}"
    elif e.filename and e.filename != src:
        what = f"{src}: {e.filename}"
    else:
        what = src
    return BuildError(f"%files line {line}: copying {what}: {e.strerror or e}", section="files", line=line)


def _host_copy(bundle: Bundle, item: FileTransfer, cwd: str) -> None:
    if not item.source.strip():
        log.warning("%%files line %d: empty source, skipped", item.line)
        return
    for src in expand_source(item.source, cwd):
        if not os.path.lexists(src):
            raise BuildError(f"%files line {item.line}: {src} does not exist", section="files", line=item.line)
        rel_src = os.path.relpath(src, cwd) if not os.path.isabs(item.source.strip("'\"")) else src
        dst = item.destination or rel_src
        log.debug("%%files: %s -> %s", src, dst)
        try:
            copy_from_host(src, bundle.rootfs, dst)
        except OSError as e:
            raise _failed(e, src, item.line) from e


def copy_host_files(bundle: Bundle, stage: Stage, opts: StepOptions) -> None:
    if not opts.allows("files"):
        return
    for block in stage.files:
        if stage_of(block.args) is None:
            for item in block.files:
                _host_copy(bundle, item, opts.cwd)


def copy_stage_files(bundle: Bundle, stage: Stage, opts: StepOptions, stages: dict[str, Path]) -> None:
    """``%files from NAME`` blocks; ``stages`` maps stage names to their built rootfs."""
    if not opts.allows("files"):
        return
    for block in stage.files:
        name = stage_of(block.args)
        if name is None:
            continue
        if name not in stages:
            raise BuildError(f"%files from {name}: no earlier stage named {name!r}", section="files", line=block.line)
        for item in block.files:
            _stage_copy(bundle, item, stages[name])


def _stage_copy(bundle: Bundle, item: FileTransfer, src_root: Path) -> None:
    parent, _, name = item.source.rstrip("/").rpartition("/")
    base = inside(src_root, parent)  # the directory part resolved inside the source rootfs
    if _GLOB & set(name):
        names = sorted(os.path.basename(m) for m in glob.glob(os.path.join(glob.escape(str(base)), name)))
    else:
        names = [name]
    names = [n for n in names if os.path.lexists(base / n)]
    if not names:
        raise BuildError(f"%files line {item.line}: {item.source} not found in the source stage",
                         section="files", line=item.line)
    for name in names:
        rel = "/" + os.path.relpath(base / name, src_root)
        try:  # only this top-level symlink is dereferenced, inside the source rootfs
            copy_from_stage(src_root, rel, bundle.rootfs, item.destination or rel)
        except OSError as e:
            raise _failed(e, rel, item.line) from e
