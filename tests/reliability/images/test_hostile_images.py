"""Hostile and damaged images (``hostile_images.HOSTILE``) given to ``inspect``, ``exec`` and
``build`` as root and as the unprivileged user: each ends in a clear error (exit status 2,
or 128+SIGBUS with the "may be corrupt" message when the kernel finds a bad block while
running), never a crash, a hang (every command bounded) or a partial image: no build
target, nothing beside it, no new rootfs cache entry; a sound image still runs afterwards."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile_images as HI  # noqa: E402

pytestmark = [pytest.mark.scenario("hostile images"), pytest.mark.slow]
NAMES = sorted(HI.HOSTILE)


def _clean(err: str) -> None:
    assert "internal error" not in err and "Traceback" not in err, err[-3000:]


def _cache(profile) -> list[str]:
    rootfs = profile.cache / "rootfs"
    return sorted(n for n in os.listdir(rootfs) if n != "index" and not n.endswith(".lock")) if rootfs.is_dir() else []


def _bad(profile, images, workdir, name) -> Path:
    kind = HI.HOSTILE[name][0]
    if kind not in images:
        pytest.skip(f"no sound {kind} image to damage (siftool missing?)")
    path = HI.make(name, images, workdir)
    profile.own(workdir)
    return path


def _failed_clearly(r, path) -> None:
    _clean(r.err)
    if r.status == 128 + 7:  # a bad block met while running, as root (kernel) or through squashfuse
        assert "may be corrupt" in r.err, r.err
        return
    assert r.status == 2, (r.status, r.err[-2000:])
    assert str(path) in r.err or path.name in r.err, r.err[-2000:]  # the message names the image


@pytest.mark.parametrize("name", NAMES)
def test_hostile_image_inspect_exec_build(profile, images, workdir, name):
    bad = _bad(profile, images, workdir, name)
    before = _cache(profile)
    r = profile.sbuild("inspect", bad, timeout=60)
    _clean(r.err)
    assert r.status in (0, 2), (r.status, r.err)  # inspect reads metadata only; a sound header may list
    r = profile.sbuild("exec", bad, "true", timeout=60)
    runs = r.status == 0  # damage the kernel and the extractors ignore (a count nobody reads)
    if not runs:
        _failed_clearly(r, bad)
        assert _cache(profile) == before, "a failed image entered the rootfs cache"
    out = workdir / "out.sif"
    r = profile.sbuild("build", out, bad, timeout=120)
    _clean(r.err)
    if r.status != 0:
        assert sorted(os.listdir(workdir)) == [bad.name], "a failed build left something beside its target"
    else:
        assert runs, f"an image that does not run was converted to {out}: {r.err[-500:]}"
    r = profile.sbuild("exec", images["squashfs"], "true", timeout=60)
    assert r.status == 0, r.err


def test_squashfs_root_inode_outside_its_table_is_refused_before_mounting(profile, images, workdir):
    """Regression: a root inode reference beyond the inode table mounted (root) or extracted
    (unsquashfs exits 0) as an empty tree, cached, and every run said 'no such file'."""
    bad = _bad(profile, images, workdir, "sqfs-root-inode-beyond-table")
    before = _cache(profile)
    r = profile.sbuild("exec", bad, "true")
    assert r.status == 2 and "root inode reference 0x100000000000000 lies outside the inode table" in r.err, r.err
    assert _cache(profile) == before


def test_unsquashfs_extracting_an_empty_tree_from_a_full_image_is_an_error(tmp_path, images):
    """Regression: base.squashfs.unpack took unsquashfs's exit status 0 for a sound tree."""
    from base.errors import ImageError
    from base.squashfs import unpack

    bad = HI.make("sqfs-root-inode-beyond-table", images, tmp_path)
    with pytest.raises(ImageError, match=r"unsquashfs extracted an empty tree from an image of \d+ inodes"):
        unpack(bad, tmp_path / "out", rootless=True)


def test_exec_of_a_command_missing_from_an_empty_rootfs_says_no_such_file(profile, workdir):
    """Regression: as root, the container's PATH search imported ``warnings`` after the host's
    library was out of reach: 'setting up the container: ModuleNotFoundError'."""
    (workdir / "empty" / "bin").mkdir(parents=True)
    profile.own(workdir)
    r = profile.sbuild("exec", workdir / "empty", "true")
    assert r.status != 0 and "running true: no such file in the container" in r.err, r.err
    assert "ModuleNotFoundError" not in r.err


def test_an_image_cache_that_cannot_be_created_is_a_clear_warning(profile, images, workdir):
    """Regression: an unwritable SBUILD_CACHEDIR parent was an internal PermissionError. As
    Apptainer does, the run goes on without the cache and says so."""
    if profile.name == "root":
        pytest.skip("root writes anywhere: the extraction cache is for unprivileged runs")
    locked = workdir / "locked"
    locked.mkdir(mode=0o555)
    r = profile.sbuild("exec", images["squashfs"], "true", env={"SBUILD_CACHEDIR": str(locked / "cache")})
    assert "internal error" not in r.err, r.err
    if "Cache disabled" not in r.err:
        pytest.skip("squashfuse mounted the image: no extraction cache needed")
    assert r.status == 0 and str(locked / "cache") in r.err, r.err
