"""The local store on its own: atomic entries, verification, LRU eviction under a cap,
``--days``, and entries held by a build are never removed."""

from __future__ import annotations

import os
import time

import pytest

from builder.cache import CheckpointStore, changes, parse_size


def _put(store: CheckpointStore, key: str, data: bytes):
    with store.building(key) as found:
        assert found is None
        return store.put(key, {"kind": "stage", "inputs": {}}, lambda p: p.write_bytes(data))


def test_put_lookup_and_verify(tmp_path):
    store = CheckpointStore(tmp_path)
    entry = _put(store, "a" * 64, b"x" * 1000)
    assert store.lookup(entry.key).size == 1000
    entry.blob.write_bytes(b"y" * 1000)  # same size, other bytes
    assert store.lookup(entry.key) is None
    with store.building(entry.key) as found:  # the corrupt entry is dropped under the lock
        assert found is None
    assert not entry.blob.exists() and store.entries() == []
    assert not list((tmp_path / "tmp").iterdir())


def test_evict_least_recently_used_first(tmp_path):
    store = CheckpointStore(tmp_path)
    keys = [c * 64 for c in "abc"]
    for n, key in enumerate(keys):
        _put(store, key, b"z" * 1000)
        os.utime(tmp_path / "entries" / f"{key}.json", (1000 + n, 1000 + n))
    store.lookup(keys[0])  # used now: the newest
    removed = store.evict(2000)
    assert [e.key for e in removed] == [keys[1]]
    assert {e.key for e in store.entries()} == {keys[0], keys[2]}


def test_clean_days_and_held_entries(tmp_path):
    store = CheckpointStore(tmp_path)
    old, new = "d" * 64, "e" * 64
    _put(store, old, b"1")
    _put(store, new, b"2")
    os.utime(tmp_path / "entries" / f"{old}.json", (time.time() - 3 * 86400,) * 2)
    assert [e.key for e in store.clean(days=2).removed] == [old]
    with store.reading(new) as entry:  # a build restoring it
        assert entry is not None
        done = store.clean()
        assert [e.key for e in done.in_use] == [new] and not done.removed
    assert [e.key for e in store.clean().removed] == [new]


def test_parse_size_and_changes():
    assert parse_size("10G") == 10 * 1024 ** 3 and parse_size("500M") == 500 * 1024 ** 2
    assert parse_size("1024") == 1024 and parse_size("2GiB") == 2 * 1024 ** 3
    from base.errors import UsageError

    with pytest.raises(UsageError):
        parse_size("lots")
    assert changes(None, {"a": "1"}) == ["not built before"]
    assert changes({"build-arg V": "1", "section %post": "a"}, {"build-arg V": "2", "section %post": "b"}) == [
        "build arg V changed (1 → 2)", "section %post changed"]
