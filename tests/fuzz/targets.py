"""Fuzz targets for hypothesis: each ``check_*`` takes one generated input and asserts that only
sbuild's own error types (``base.errors.SbuildError`` subclasses) escape the code under test.

``FUZZERS`` maps a name to ``(strategy, check)``; ``tests/fuzz/test_fuzz.py`` runs each with a
fixed, derandomized budget in CI and ``bench/fuzz_long.py`` with a larger one. Inputs are
grown from sound seeds (a recipe, a SIF, a squashfs image, a layer tar, image references)
by hypothesis's byte-level mutations, so they get past the first magic check.

Targets: the recipe parser (``builder.recipe.parse_recipe``, structured sections on top of
``tests/recipe/test_property.py``'s byte soup), the SIF reader (``builder.images.sif``, then
``probe``), the squashfs readers (``builder.images.headers``/``probe`` and
``builder.images.reader.open_tree`` over PySquashfsImage), the image reference parser
(``builder.sources.oci.reference.parse_reference``) and the layer applier
(``builder.sources.oci.LayerApplier``, with a canary beside its rootfs).
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import strategies as st

from base.errors import SbuildError

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "registry"))

import images as I  # noqa: E402

__all__ = ["FUZZERS"]


def _mutated(seed: bytes, max_edits: int = 8) -> st.SearchStrategy[bytes]:
    """``seed`` with up to ``max_edits`` byte overwrites, insertions or a truncation."""
    edit = st.tuples(st.sampled_from(["set", "insert", "cut"]), st.integers(0, max(0, len(seed) - 1)),
                     st.binary(min_size=1, max_size=8))

    def apply(edits) -> bytes:
        out = bytearray(seed)
        for kind, at, data in edits:
            at = min(at, len(out))
            if kind == "set":
                out[at:at + len(data)] = data
            elif kind == "insert":
                out[at:at] = data
            else:
                del out[at:]
        return bytes(out)

    return st.lists(edit, min_size=1, max_size=max_edits).map(apply)


def _only_ours(fn, *args) -> None:
    try:
        fn(*args)
    except SbuildError as e:
        e.render()


# ----------------------------------------------------------------------------- recipe
_SECTIONS = ["%post", "%files", "%files from one", "%environment", "%runscript", "%labels", "%help", "%test",
             "%setup", "%startscript", "%arguments", "%apprun app", "%appfiles app", "%applabels app",
             "%appenv app", "%post -c /bin/bash", "%weird", "%files from", "%apphelp"]
_KEYS = ["Bootstrap", "From", "Stage", "Include", "MirrorURL", "OSVersion", "Fingerprints", "Registry",
         "Namespace", "Bogus"]
_line = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40).map(lambda s: s.replace("\n", " "))


@st.composite
def _recipe(draw) -> bytes:
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        parts += [f"{draw(st.sampled_from(_KEYS))}: {draw(_line)}" for _ in range(draw(st.integers(0, 4)))]
        for _ in range(draw(st.integers(0, 5))):
            parts.append(draw(st.sampled_from(_SECTIONS)) + draw(st.sampled_from(["", " ", " x", "\t#c"])))
            parts += [draw(st.sampled_from(["", "    ", "\t"])) + draw(_line) for _ in range(draw(st.integers(0, 3)))]
    return "\n".join(parts).encode(draw(st.sampled_from(["utf-8", "latin-1"])), "replace")


def check_recipe(data: bytes) -> None:
    from builder.recipe import BuildArgs, parse_recipe

    _only_ours(lambda: parse_recipe(data, path="fuzz.def", build_args=BuildArgs({"V": "1"})))


# ----------------------------------------------------------------------------- images
@functools.cache
def _sound_images() -> dict[str, bytes]:
    """A small squashfs (mksquashfs of a few files and links) and a SIF holding it."""
    from builder.images import sif

    work = Path(tempfile.mkdtemp(prefix="sbuild-fuzz-"))
    try:
        tree = work / "t"
        (tree / ".singularity.d").mkdir(parents=True)
        (tree / ".singularity.d" / "runscript").write_text("#!/bin/sh\necho run\n")
        (tree / ".singularity.d" / "labels.json").write_text('{"a": "b"}')
        (tree / "etc").mkdir()
        (tree / "etc" / "hello").write_text("hello " * 100)
        (tree / "etc" / "link").symlink_to("/etc/hello")
        (tree / "loop").symlink_to("loop")
        subprocess.run(["mksquashfs", tree, work / "s.sqfs", "-noappend", "-quiet", "-no-progress",
                        "-all-root", "-mkfs-time", "0", "-all-time", "0"], check=True, stdout=subprocess.DEVNULL)
        sqfs = (work / "s.sqfs").read_bytes()
    finally:
        shutil.rmtree(work)
    part = sif.SifObject(sif.DATA_PARTITION, sqfs, fstype=sif.FS_SQUASH, parttype=sif.PART_PRIMSYS,
                          arch="amd64")
    deffile = sif.SifObject(sif.DATA_DEFFILE, b"Bootstrap: scratch\n")
    return {"squashfs": sqfs, "sif": sif.sif_bytes([deffile, part])}


def _as_file(data: bytes, suffix: str):
    fd, path = tempfile.mkstemp(prefix="sbuild-fuzz-", suffix=suffix)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


def _read_tree(path: str) -> None:
    from builder.images.probe import probe
    from builder.images.reader import open_tree

    probe(path)
    with open_tree(path) as tree:
        for name in ("/.singularity.d/runscript", "/.singularity.d/labels.json", "/etc/link", "/loop", "/etc"):
            tree.read_bytes(name, limit=1 << 16)
        tree.listdir("/")


def check_sif(data: bytes) -> None:
    from builder.images import sif

    _only_ours(lambda: sif.parse_sif(data, len(data), path="fuzz.sif"))
    path = _as_file(data, ".sif")
    try:
        _only_ours(_read_tree, path)
    finally:
        os.unlink(path)


def check_squashfs(data: bytes) -> None:
    from builder.images import headers

    _only_ours(lambda: headers.parse_squashfs(data, available=len(data), where="fuzz.sqfs"))
    path = _as_file(data, ".sqfs")
    try:
        _only_ours(_read_tree, path)
    finally:
        os.unlink(path)


# ----------------------------------------------------------------------------- references
_REF_SEEDS = ["docker://alpine", "library/ubuntu:22.04", "ghcr.io/org/img@sha256:" + "a" * 64,
              "localhost:5000/a/b:tag", "oras://reg.example/x:1", "[::1]:5000/img"]


def check_reference(text: str) -> None:
    from builder.sources.oci.reference import parse_reference

    _only_ours(lambda: parse_reference(text))


_reference = st.one_of(
    st.text(max_size=80),
    st.tuples(st.sampled_from(_REF_SEEDS), st.text(max_size=10), st.integers(0, 70)).map(
        lambda t: t[0][:t[2]] + t[1] + t[0][t[2]:]),
    st.text(alphabet="abcAZ09.-_:/@[]%", max_size=60))


# ----------------------------------------------------------------------------- layers
@functools.cache
def _layer_seed() -> bytes:
    return I.standard_layers()[0] + b""


def check_layer(data: bytes) -> None:
    from base.fsutil import remove_tree
    from builder.sources.oci import LayerApplier

    work = Path(tempfile.mkdtemp(prefix="sbuild-fuzz-layer-"))
    try:
        canary = work / "canary"
        canary.mkdir()
        (canary / "file").write_text("keep")
        before = sorted(os.listdir(work))

        def apply() -> None:
            applier = LayerApplier(work / "r", writers=1)
            applier.apply(io.BytesIO(data))
            applier.finish()

        _only_ours(apply)
        assert sorted(os.listdir(work)) == sorted(set(before) | {"r"}) or sorted(os.listdir(work)) == before
        assert os.listdir(canary) == ["file"] and (canary / "file").read_text() == "keep"
    finally:
        remove_tree(work)


FUZZERS = {
    "recipe parser": (lambda: _recipe(), check_recipe),
    "SIF reader": (lambda: _mutated(_sound_images()["sif"][:8192], 6) | _mutated(_sound_images()["sif"], 6),
                   check_sif),
    "squashfs reader": (lambda: _mutated(_sound_images()["squashfs"], 6), check_squashfs),
    "reference parser": (lambda: _reference, check_reference),
    "layer applier": (lambda: _mutated(_layer_seed(), 6), check_layer),
}
