"""The squashfs block cache (``builder.images.blockcache``): a pack with it writes the bytes
of a pack without it, cold or warm; a repack after a small change compresses only what
changed; corrupt entries are misses; concurrent packers and eviction keep it consistent;
``sbuild build`` uses it under the cache root unless ``--disable-cache``."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from builder.images.blockcache import BlockCache
from builder.images.sqfs_pack import SquashOptions, pack_directory

BS = 131072
EPOCH = 1700000000


def _tree(root: Path) -> Path:
    """~1.5 MB: compressible and random large files, many small ones (fragments), a hole."""
    rnd = random.Random(11)
    words = [b"alpha", b"beta", b"gamma", b"delta", b"squash", b"block", b"cache", b"\n"]
    for d in range(4):
        sub = root / f"dir{d}"
        sub.mkdir(parents=True)
        for i in range(30):
            (sub / f"small{i}").write_bytes(b" ".join(rnd.choice(words) for _ in range(rnd.randrange(10, 900))))
        (sub / "text").write_bytes(b" ".join(rnd.choice(words) for _ in range(50000)))
    (root / "random").write_bytes(rnd.randbytes(3 * BS + 99))  # blocks stored uncompressed
    (root / "holey").write_bytes(b"x" * BS + bytes(2 * BS) + b"y" * 10)
    return root


def _pack(tree: Path, out: Path, cache: Path | None) -> bytes:
    pack_directory(tree, out, options=SquashOptions(source_date_epoch=EPOCH, block_cache=str(cache) if cache else None))
    return out.read_bytes()


def _counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the cache's lookups that found the block (hits) and those that did not (misses:
    the block is compressed), whatever thread looks."""
    seen = {"hits": 0, "misses": 0}
    lock = threading.Lock()
    real = BlockCache._get

    def counted(self: BlockCache, key: bytes, block: bytes):  # noqa: ANN202
        found = real(self, key, block)
        with lock:
            seen["misses" if found is None else "hits"] += 1
        return found
    monkeypatch.setattr(BlockCache, "_get", counted)
    return seen


def _entries(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*") if p.is_file() and not p.name.startswith(".tmp-"))


def test_cold_warm_and_uncached_packs_are_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree, cache = _tree(tmp_path / "tree"), tmp_path / "cache"
    seen = _counting(monkeypatch)
    plain = _pack(tree, tmp_path / "plain.sqfs", None)
    cold = _pack(tree, tmp_path / "cold.sqfs", cache)
    assert seen["hits"] == 0 and seen["misses"] > 20
    compressed_cold = seen["misses"]
    warm = _pack(tree, tmp_path / "warm.sqfs", cache)
    assert plain == cold == warm
    assert seen["misses"] == compressed_cold, "an unchanged tree compresses nothing"
    # one line added to a small file and one block changed in a large one
    with open(tree / "dir2" / "small5", "ab") as fh:
        fh.write(b"one more line\n")
    with open(tree / "dir1" / "text", "r+b") as fh:
        fh.seek(BS + 10)
        fh.write(b"CHANGED")
    seen["misses"] = 0
    warm2 = _pack(tree, tmp_path / "warm2.sqfs", cache)
    assert warm2 == _pack(tree, tmp_path / "plain2.sqfs", None) != plain
    assert 1 <= seen["misses"] <= 3, f"compressed {seen['misses']} blocks for a change of two"


def test_a_corrupt_entry_is_a_miss_and_is_rewritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree, cache = _tree(tmp_path / "tree"), tmp_path / "cache"
    seen = _counting(monkeypatch)
    plain = _pack(tree, tmp_path / "plain.sqfs", cache)
    entries = _entries(cache)
    repeats = seen["misses"] - len(entries)  # blocks met twice in one pack (both in flight)
    flipped, cut, emptied = entries[0], entries[1], entries[2]
    data = bytearray(flipped.read_bytes())
    data[-1] ^= 0x01
    flipped.write_bytes(bytes(data))
    cut.write_bytes(cut.read_bytes()[:20])
    emptied.write_bytes(b"")
    entries[3].rename(entries[4])  # a valid entry under another block's key (and one gone)
    seen.update(hits=0, misses=0)
    assert _pack(tree, tmp_path / "again.sqfs", cache) == plain
    assert 5 <= seen["misses"] <= 5 + repeats
    seen["misses"] = 0
    assert _pack(tree, tmp_path / "third.sqfs", cache) == plain
    assert seen["misses"] == 0, "the corrupt entries were rewritten"


@pytest.mark.slow
def test_concurrent_packers_share_one_cache(tmp_path: Path) -> None:
    tree, cache = _tree(tmp_path / "tree"), tmp_path / "cache"
    plain = _pack(tree, tmp_path / "plain.sqfs", None)
    script = ("import sys; from builder.images.sqfs_pack import SquashOptions, pack_directory; "
              f"pack_directory(sys.argv[1], sys.argv[2], options=SquashOptions(source_date_epoch={EPOCH}, "
              "block_cache=sys.argv[3], workers=2))")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tree), str(tmp_path / f"p{i}.sqfs"), str(cache)],
                              cwd=Path(__file__).resolve().parents[2]) for i in range(3)]
    # and a clean beside them
    cleaner = threading.Thread(target=BlockCache(cache).clean)
    cleaner.start()
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    cleaner.join()
    for i in range(3):
        assert (tmp_path / f"p{i}.sqfs").read_bytes() == plain
    assert _pack(tree, tmp_path / "after.sqfs", cache) == plain
    assert not [p for p in cache.rglob(".tmp-*")], "no temporary file is left"


def test_size_limit_evicts_least_recently_used(tmp_path: Path) -> None:
    tree, cache = _tree(tmp_path / "tree"), tmp_path / "cache"
    _pack(tree, tmp_path / "a.sqfs", cache)
    full = BlockCache(cache).usage()
    assert full.entries == len(_entries(cache)) and full.bytes > 100_000
    old = _entries(cache)[: full.entries // 2]
    for p in old:
        os.utime(p, (1_000_000, 1_000_000))
    small = BlockCache(cache, max_bytes=full.bytes // 2)
    gone = small.evict()
    left = small.usage()
    assert left.bytes <= full.bytes // 2 * 9 // 10 + BS and gone.entries > 0
    assert all(not p.exists() for p in old[: gone.entries])
    stale = [p for p in old if p.exists()]
    assert BlockCache(cache).clean(days=1).entries == len(stale)  # recent ones stay
    left = BlockCache(cache).usage()
    assert left.entries == full.entries - gone.entries - len(stale) > 0
    assert BlockCache(cache).clean(dry_run=True).entries == left.entries
    assert BlockCache(cache).clean().entries == left.entries
    assert BlockCache(cache).usage().entries == 0


@pytest.mark.slow
@pytest.mark.parametrize("disable", [False, True])
def test_build_uses_the_cache_root_unless_disabled(tmp_path: Path, disable: bool) -> None:
    tree = _tree(tmp_path / "tree")
    env = {**os.environ, "SBUILD_CACHEDIR": str(tmp_path / "cachedir")}
    env.pop("APPTAINER_DISABLE_CACHE", None)
    if disable:
        env["APPTAINER_DISABLE_CACHE"] = "1"
    sbuild = Path(sys.executable).with_name("sbuild")
    subprocess.run([str(sbuild), "build", "-q", str(tmp_path / "out.sqfs"), str(tree)], env=env, check=True,
                   capture_output=True)
    blocks = tmp_path / "cachedir" / "squashfs-blocks"
    if disable:
        assert not blocks.exists()
    else:
        assert BlockCache(blocks).usage().entries > 20
        listed = subprocess.run([str(sbuild), "cache", "list", "-T", "blocks"], env=env, check=True,
                                capture_output=True, text=True).stdout
        assert f"{BlockCache(blocks).usage().entries} compressed blocks" in listed and str(blocks) in listed
        subprocess.run([str(sbuild), "cache", "clean", "-T", "blocks"], env=env, check=True, capture_output=True)
        assert BlockCache(blocks).usage().entries == 0
