"""Every input of a checkpoint invalidates it when changed (one test per input), and the
sections that only shape metadata never invalidate %post; a hit and a miss give the same bytes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from builder.cache import CheckpointStore

pytestmark = pytest.mark.slow  # each test builds two or three images (~1 s each)

BASE = """\
Bootstrap: busybox
MirrorURL: file://{busybox}

%arguments
    WORD=one

%setup
    echo setup > $SINGULARITY_ROOTFS/setup.txt

%files
    data.txt /data.txt

%post
    echo ran-post-{{{{ WORD }}}}
    echo hi > /hi

%environment
    export A=1

%runscript
    echo run

%startscript
    echo start

%labels
    Owner me

%help
    help text

%test
    true

%apprun tool
    echo tool

%applabels tool
    K V
"""


@pytest.fixture
def recipe(write, tmp_path):
    shutil.copy("/bin/busybox", tmp_path / "busybox")
    (tmp_path / "data.txt").write_text("data\n")
    return lambda text=BASE: write(text.format(busybox=tmp_path / "busybox"))


def _change_busybox(tmp_path):
    with open(tmp_path / "busybox", "ab") as fh:
        fh.write(b"\0")


# (input, how to change it, the checkpoint that must miss)
INVALIDATING = {
    "base": (lambda p, t: _change_busybox(t), "1 bootstrap"),
    "header": (lambda p, t: p.write_text(p.read_text().replace("MirrorURL:", "Fingerprints: \nMirrorURL:")),
               "1 bootstrap"),
    "%post": (lambda p, t: p.write_text(p.read_text().replace("echo hi", "echo ho")), "1 stage"),
    "%setup": (lambda p, t: p.write_text(p.read_text().replace("echo setup", "echo setup2")), "1 stage"),
    "%files line": (lambda p, t: p.write_text(p.read_text().replace("data.txt /data.txt", "data.txt /d2.txt")),
                    "1 stage"),
    "%files content": (lambda p, t: (t / "data.txt").write_text("changed\n"), "1 stage"),
    "%files mode": (lambda p, t: os.chmod(t / "data.txt", 0o755), "1 stage"),
}
NOT_INVALIDATING = {
    "%environment": ("export A=1", "export A=2"),
    "%runscript": ("echo run", "echo run2"),
    "%startscript": ("echo start", "echo start2"),
    "%labels": ("Owner me", "Owner you"),
    "%help": ("help text", "other help"),
    "%test": ("    true", "    test 1 = 1"),
    "%apprun": ("echo tool", "echo tool2"),
    "%applabels": ("K V", "K W"),
}


@pytest.mark.parametrize("name", INVALIDATING)
def test_input_invalidates(name, recipe, build, tmp_path):
    path = recipe()
    first = build(path)
    assert first.outcome["1 stage"].startswith("miss") and "ran-post-one" in first.err
    change, missed = INVALIDATING[name]
    change(path, tmp_path)
    second = build(path)
    assert second.outcome[missed].startswith("miss"), second.err
    assert "same inputs" not in second.outcome[missed]
    assert "ran-post-one" in second.err  # %post ran again


def test_build_arg_invalidates_and_is_named(recipe, build):
    path = recipe()
    build(path)
    second = build(path, "out.sif", "--build-arg", "WORD=two")
    assert "build arg WORD changed (one → two)" in second.outcome["1 stage"], second.err
    assert second.outcome["1 bootstrap"].startswith("hit")
    assert "ran-post-two" in second.err


def test_unused_build_arg_changes_nothing(recipe, build, write, tmp_path):
    path = recipe(BASE.replace("%runscript\n    echo run", "%runscript\n    echo {{{{ WHO }}}}").replace(
        "WORD=one", "WORD=one\n    WHO=x"))
    build(path)
    second = build(path, "out.sif", "--build-arg", "WHO=y")
    assert second.outcome["1 stage"].startswith("hit"), second.err
    assert "ran-post" not in second.err


@pytest.mark.parametrize("name", NOT_INVALIDATING)
def test_metadata_section_keeps_post(name, recipe, build, tmp_path):
    path = recipe()
    build(path)
    old, new = NOT_INVALIDATING[name]
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    second = build(path, "changed.sif")
    assert second.outcome["1 stage"] == "hit (local)", second.err
    assert "ran-post" not in second.err
    assert "image" not in second.outcome  # repacked with the new metadata
    assert build(path, "cold.sif", "--disable-cache").status == 0
    assert Path("changed.sif").read_bytes() == Path("cold.sif").read_bytes()  # a hit is a miss, byte for byte


def test_unchanged_rebuild_reuses_the_image(recipe, build):
    path = recipe()
    build(path, "a.sif")
    second = build(path, "b.sif")
    assert second.outcome.get("image") == "hit" and "ran-post" not in second.err
    assert Path("a.sif").read_bytes() == Path("b.sif").read_bytes()


def test_files_from_stage_key(write, build, tmp_path):
    text = """\
        Bootstrap: busybox
        MirrorURL: file:///bin/busybox
        Stage: one

        %post
            echo {word} > /made

        Bootstrap: busybox
        MirrorURL: file:///bin/busybox
        Stage: two

        %files from one
            /made /made

        %post
            echo ran-final
        """
    path = write(text.format(word="a"))
    build(path)
    write(text.format(word="b"))
    second = build(path)
    assert "stage one (used by %files from) changed" in second.outcome["two stage"], second.err
    assert second.outcome["two bootstrap"].startswith("hit")


def test_sbuild_version_invalidates(recipe, build, monkeypatch):
    from builder.commands import compat

    path = recipe()
    build(path)
    monkeypatch.setattr(compat, "sbuild_version", lambda: "99.0")
    second = build(path)
    assert "sbuild changed" in second.outcome["1 bootstrap"] and "ran-post-one" in second.err, second.err


def test_identity_mode_is_an_input(recipe):
    from builder.options import BuildPlan
    from builder.recipe import load_recipe
    from builder.steps.stagekeys import stage_keys
    from runtime.description import Identity
    from builder.options import FetchOptions

    parsed = load_recipe(recipe())
    keys = {mode: stage_keys(parsed, BuildPlan(Path("o.sif"), "sif", fetch=FetchOptions(identity=Identity(mode))),
                             "1.0")[0] for mode in ("host", "subuid", "root")}
    assert len({k.boot_key for k in keys.values()}) == 3 and len({k.post_key for k in keys.values()}) == 3
    assert keys["host"].post["identity"] == "host"


def test_no_cache_runs_everything_and_records(recipe, build):
    path = recipe()
    build(path)
    second = build(path, "out.sif", "--no-cache")
    assert "ran-post-one" in second.err and "--no-cache" in second.outcome["1 stage"]
    third = build(path, "o3.sif")
    assert third.outcome.get("image") == "hit"


def test_rebuild_stage_reruns_post(recipe, build):
    path = recipe()
    build(path)
    second = build(path, "out.sif", "--rebuild", "1")
    assert "ran-post-one" in second.err and "--rebuild" in second.outcome["1 stage"]


def test_corrupt_blob_is_a_miss(recipe, build, tmp_path):
    path = recipe()
    build(path)
    store = CheckpointStore(tmp_path / "cache" / "build")
    for entry in store.entries():
        with open(entry.blob, "r+b") as fh:
            fh.seek(entry.size // 2)
            fh.write(b"\xff" * 64)
    second = build(path, "again.sif")
    assert second.outcome["1 stage"].startswith("miss") and "ran-post-one" in second.err
    assert "corrupt" in second.err
    third = build(path, "third.sif")
    assert third.outcome.get("image") == "hit"  # rebuilt and verified
    assert all(store.lookup(e.key) is not None for e in store.entries())


def test_disable_cache_records_nothing(recipe, build, tmp_path):
    build(recipe(), "out.sif", "--disable-cache")
    assert not (tmp_path / "cache" / "build").exists()


def test_unwritable_cache_root_builds_without_the_cache(recipe, build, tmp_path, monkeypatch):
    (tmp_path / "notadir").write_text("")
    monkeypatch.setenv("SBUILD_CACHEDIR", str(tmp_path / "notadir"))
    r = build(recipe())
    assert "the build cache is disabled" in r.err and "ran-post-one" in r.err


def test_earlier_stage_is_restored_only_when_needed(write, build):
    text = """\
        Bootstrap: busybox
        MirrorURL: file:///bin/busybox
        Stage: one

        %post
            echo made > /made

        Bootstrap: busybox
        MirrorURL: file:///bin/busybox
        Stage: two

        %files from one
            /made /made

        %post
            echo ran-final-{n}

        %runscript
            echo {run}
        """
    path = write(text.format(n=1, run="a"))
    build(path)
    write(text.format(n=1, run="b"))  # metadata only: stage two hits, stage one is not even restored
    meta = build(path, "meta.sif")
    assert meta.outcome["two stage"] == "hit (local)" and "one stage" not in meta.outcome, meta.err
    write(text.format(n=2, run="b"))  # stage two's %post changed: stage one is restored for %files from
    post = build(path, "post.sif")
    assert post.outcome["one stage"] == "hit (local)" and "ran-final-2" in post.err, post.err
    assert build(path, "cold.sif", "--disable-cache").status == 0
    assert Path("post.sif").read_bytes() == Path("cold.sif").read_bytes()
