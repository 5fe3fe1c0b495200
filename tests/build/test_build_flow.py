"""The order of a build's steps: %pre before the bootstrap, --update on a sandbox, --section."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path




BASE = """
    Bootstrap: busybox
    MirrorURL: file:///bin/busybox
"""


def cat(image: Path, path: str) -> str:
    return subprocess.run(["unsquashfs", "-cat", "-o", "31", str(image), path],
                          check=True, capture_output=True, text=True).stdout


def test_pre_runs_on_the_host_before_the_bootstrap(sbuild, recipe, busybox, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = recipe(BASE + """
    %pre
        ls -A "$SINGULARITY_ROOTFS" > pre-saw
        pwd > pre-cwd
        echo "$APPTAINER_ENVIRONMENT" > pre-env

    %setup
        ls "$SINGULARITY_ROOTFS/bin/busybox" > setup-saw
    """)
    r = sbuild(path, tmp_path / "p.simg")
    assert r.status == 0, r.err
    assert (tmp_path / "pre-saw").read_text() == ""  # the rootfs was still empty
    assert (tmp_path / "pre-cwd").read_text() == f"{tmp_path}\n"
    assert (tmp_path / "pre-env").read_text() == "/.singularity.d/env/91-environment.sh\n"
    assert (tmp_path / "setup-saw").read_text().endswith("/bin/busybox\n")
    assert r.err.index("%pre") < r.err.index("bootstrap: busybox") < r.err.index("%setup")


def test_failing_pre_stops_the_build_before_anything_is_fetched(sbuild, recipe, tmp_path):
    path = recipe("""
        Bootstrap: busybox
        MirrorURL: file:///does/not/exist

        %pre
            echo checking the host
            exit 9
    """)
    r = sbuild(path, tmp_path / "p.simg")
    assert r.status == 1
    assert "%pre failed with exit code 9" in r.err and "recipe line 4" in r.err and "checking the host" in r.err
    assert "does/not/exist" not in r.err


def test_section_none_skips_pre_setup_files_and_metadata_sections(sbuild, recipe, busybox, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.txt").write_text("f")
    path = recipe(BASE + """
    %pre
        touch pre-ran

    %files
        f.txt /f.txt

    %runscript
        echo mine

    %labels
        mine yes
    """)
    target = tmp_path / "n.simg"
    r = sbuild(path, target, "--section", "none")
    assert r.status == 0, r.err
    assert not (tmp_path / "pre-ran").exists()
    listing = subprocess.run(["unsquashfs", "-l", "-o", "31", str(target)], capture_output=True, text=True).stdout
    assert "squashfs-root/f.txt\n" not in listing
    assert cat(target, ".singularity.d/runscript") == "#!/bin/sh\n"  # the agent's, not %runscript
    assert "labels.json" not in listing  # --section none gates labels.json too


def test_update_runs_the_sections_on_the_existing_sandbox(sbuild, recipe, busybox, tmp_path):
    sandbox = tmp_path / "sb"
    first = recipe(BASE + """
    %post
        echo one > /etc/first

    %labels
        stage first
    """, name="first.def")
    assert sbuild("--sandbox", sandbox, first).status == 0
    inode = (sandbox / "bin" / "busybox").stat().st_ino
    second = recipe("""
        Bootstrap: busybox
        MirrorURL: file:///nonexistent/busybox

        %post
            test -f /etc/first
            echo two > /etc/second

        %labels
            stage second
            second yes
    """, name="second.def")
    r = sbuild("--sandbox", "--update", sandbox, second, "--json")
    assert r.status == 0, r.err
    assert "update: starting from" in r.err and "bootstrap:" not in r.err  # the bad MirrorURL was never used
    assert (sandbox / "etc" / "first").read_text() == "one\n" and (sandbox / "etc" / "second").read_text() == "two\n"
    labels = json.loads((sandbox / ".singularity.d" / "labels.json").read_text())
    assert labels["stage"] == "first" and labels["second"] == "yes"  # existing labels win without --force
    assert labels["org.label-schema.usage.singularity.deffile.mirrorurl"] == "file:///bin/busybox"  # not re-labelled
    history = sandbox / ".singularity.d" / "bootstrap_history" / "Apptainer0"
    assert "echo one" in history.read_text() and "echo two" in (sandbox / ".singularity.d" / "Singularity").read_text()
    assert json.loads(r.out)["format"] == "sandbox"
    assert (sandbox / "bin" / "busybox").stat().st_ino != inode  # replaced by the updated copy


def test_update_failure_leaves_the_sandbox_as_it_was(sbuild, recipe, busybox, tmp_path):
    sandbox = tmp_path / "sb"
    assert sbuild("--sandbox", sandbox, recipe(BASE, name="a.def")).status == 0
    before = sorted(p.name for p in sandbox.iterdir())
    r = sbuild("--sandbox", "--update", sandbox, recipe(BASE + "\n%post\n    touch /new\n    exit 4\n", name="b.def"))
    assert r.status == 1 and "%post failed with exit code 4" in r.err
    assert sorted(p.name for p in sandbox.iterdir()) == before and not (sandbox / "new").exists()


def test_update_needs_a_sandbox_target(sbuild, recipe, tmp_path):
    image = tmp_path / "x.simg"
    image.write_text("not mine to touch")
    r = sbuild("--update", recipe("Bootstrap: scratch\n"), image)
    assert r.status == 2 and "--update only updates a sandbox" in r.err
    assert image.read_text() == "not mine to touch"
