"""Hostile layer patterns (``hostile_layers.PATTERNS``, more than 60) applied as root in this
process, as the unprivileged user (what a rootless pull does) and as that user inside the
runtime's user namespace (``runtime.call_in_userns``): each ends applied or with an sbuild
error, never an internal one, and the canary directory beside the rootfs is byte-for-byte
and time-for-time unchanged, with nothing else appearing outside the rootfs."""

from __future__ import annotations

import json
import sys

import pytest

import hostile_layers as H

pytestmark = pytest.mark.scenario("hostile layers")
NAMES = sorted(H.PATTERNS)


def _held(result: dict) -> None:
    assert result["outcome"] in ("applied", "refused"), result["message"]
    assert not result["canary_changed"], f"{result['name']} changed the canary"
    assert result["outside"] == [], f"{result['name']} wrote outside the rootfs: {result['outside']}"
    assert result["seconds"] < 20, "a bounded pattern took too long"


def test_at_least_forty_patterns():
    assert len(NAMES) >= 40


@pytest.mark.parametrize("name", NAMES)
def test_hostile_layer_as_root(name, tmp_path):
    _held(H.apply_one(name, tmp_path / "w"))


@pytest.fixture(scope="module")
def unprivileged_results(unprivileged_user, tmp_path_factory):
    """{mode: {pattern: result}} from one run of every pattern per mode as the unprivileged user."""
    import tempfile
    from pathlib import Path

    from base.fsutil import remove_tree

    out = {}
    for mode, extra in (("rootless", []), ("userns", ["--userns"])):
        work = Path(tempfile.mkdtemp(prefix=f"sbuild-rel-{mode}-", dir="/tmp"))
        try:
            work.chmod(0o755)
            unprivileged_user.chown(work)
            r = unprivileged_user.run(sys.executable, str(H.HERE / "hostile_layers.py"), work / "w", *extra, *NAMES,
                                      timeout=300)
            lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
            out[mode] = {x["name"]: x for x in lines} if r.returncode == 0 else {"error": r.stderr[-3000:]}
        finally:
            remove_tree(work)
    return out


@pytest.mark.slow  # (the fixture's two runs of every pattern take a few seconds)
@pytest.mark.parametrize("mode", ["rootless", "userns"])
@pytest.mark.parametrize("name", NAMES)
def test_hostile_layer_unprivileged(unprivileged_results, mode, name):
    results = unprivileged_results[mode]
    assert "error" not in results, results.get("error")
    _held(results[name])


def test_rootless_read_only_directory_tree_gets_its_times_before_its_modes(shared_dir, unprivileged_user):
    """Regression: rootless, ``finish()`` set a 0000 parent's mode before its child's times
    and died of PermissionError (an internal error) on ``ro/sub``."""
    r = unprivileged_user.run(sys.executable, str(H.HERE / "hostile_layers.py"), shared_dir / "w",
                              "read-only-dir-then-children")
    result = json.loads(r.stdout.splitlines()[-1])
    assert result["outcome"] == "applied", result["message"]


def test_size_beyond_off_t_is_refused_as_out_of_range(tmp_path):
    """Regression: a base-256 size of 2^80 was reported as 'stopped … after 2^60 MiB written'."""
    result = H.apply_one("size-overflow-base256", tmp_path / "w")
    assert result["outcome"] == "refused"
    assert "entry 'a': size 1208925819614629174706176 out of range" in result["message"]
