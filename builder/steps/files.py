"""``%files`` (spec §B.3): copy from the host, or ``%files from STAGE`` from an earlier stage.

Host copy: the source is relative to the build's working directory; globs (``**`` too)
expand, quoted names are literal; the destination (default: the source path) is resolved
inside the rootfs like securejoin, missing parents are created, then ``cp -fLr`` copies,
dereferencing every symlink as Apptainer does. Stage copy: the source is globbed and
resolved inside the source stage's rootfs (an absolute symlink stays inside it), only the
top-level symlink is dereferenced, and the tree is copied with ``cp -a``.

Limit: a symlink *inside* an existing destination directory is followed by cp.
"""

from __future__ import annotations

import glob
import logging
import os
import shlex
import subprocess
from pathlib import Path

from builder.bundle import Bundle
from base.errors import BuildError
from builder.recipe import FileTransfer, Stage
from builder.options import StepOptions
from builder.rootfs import inside

__all__ = ["copy_host_files", "copy_stage_files", "stage_of"]

log = logging.getLogger("sbuild.build")
_GLOB = set("*?[")


def stage_of(block_args: str) -> str | None:
    """The stage name of ``%files from NAME`` (None for a host block)."""
    words = block_args.split()
    if len(words) >= 2 and words[0] == "from":
        return words[1]
    return None


def _expand(source: str, cwd: str) -> list[str]:
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


def _dest(rootfs: Path, dst: str) -> Path:
    resolved = inside(rootfs, dst)
    if dst.endswith("/"):
        resolved.mkdir(mode=0o755, parents=True, exist_ok=True)
    else:
        resolved.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    return resolved


def _cp(argv: list[str], what: str, line: int) -> None:
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        raise BuildError(f"%files line {line}: copying {what}: {proc.stderr.strip() or 'cp failed'}",
                         section="files", exit_code=proc.returncode, line=line)


def _host_copy(bundle: Bundle, item: FileTransfer, cwd: str) -> None:
    if not item.source.strip():
        log.warning("%%files line %d: empty source, skipped", item.line)
        return
    for src in _expand(item.source, cwd):
        if not os.path.lexists(src):
            raise BuildError(f"%files line {item.line}: {src} does not exist", section="files", line=item.line)
        rel_src = os.path.relpath(src, cwd) if not os.path.isabs(item.source.strip("'\"")) else src
        dst = item.destination or rel_src
        target = _dest(bundle.rootfs, dst)
        log.debug("%%files: %s -> %s", src, dst)
        _cp(["cp", "-fLr", "--", src, str(target) + ("/" if dst.endswith("/") else "")], src, item.line)


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
        src = inside(src_root, rel)  # only this top-level symlink is dereferenced, inside the rootfs
        dst = item.destination or rel
        target = _dest(bundle.rootfs, dst)
        if target.is_dir() and not target.is_symlink():
            target = target / name
        _cp(["cp", "-a", "-T", "--", str(src), str(target)], item.source, item.line)
