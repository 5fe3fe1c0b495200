"""%post and %test through the runtime, their failures, localimage and multi-stage builds."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path





def cat(image: Path, path: str, offset: int = 31) -> str:
    return subprocess.run(["unsquashfs", "-cat", "-o", str(offset), str(image), path],
                          check=True, capture_output=True, text=True).stdout


BASE = """
    Bootstrap: busybox
    MirrorURL: file:///bin/busybox
"""


def test_post_writes_files_labels_and_environment(sbuild, recipe, busybox, tmp_path):
    path = recipe(BASE + """
    %post
        echo made > /etc/made
        echo "from.post  yes" >> "$SINGULARITY_LABELS"
        echo 'export FROM_POST=1' >> "$SINGULARITY_ENVIRONMENT"
        pwd > /etc/cwd

    %test
        test "$(cat /etc/made)" = made
    """)
    target = tmp_path / "p.simg"
    r = sbuild(path, target)
    assert r.status == 0, r.err
    assert cat(target, "etc/made") == "made\n" and cat(target, "etc/cwd") == "/\n"
    assert json.loads(cat(target, ".singularity.d/labels.json"))["from.post"] == "yes"
    assert cat(target, ".singularity.d/env/91-environment.sh") == "export FROM_POST=1\n"
    listing = subprocess.run(["unsquashfs", "-l", "-o", "31", str(target)], capture_output=True, text=True).stdout
    assert ".post.script" not in listing and ".build.labels" not in listing


def test_failing_post_reports_section_line_code_and_last_20_lines(sbuild, recipe, busybox, tmp_path):
    path = recipe(BASE + """
    %post
        for i in $(seq 1 30); do echo "line $i"; done
        exit 3
    """)
    target = tmp_path / "f.sif"
    r = sbuild(path, target)
    assert r.status == 1
    assert "%post failed with exit code 3" in r.err and "recipe line 4" in r.err
    tail = r.err.split("last lines of output:")[1]
    assert "line 30" in tail and "line 11\n" not in tail and "+ exit 3" in tail
    assert not target.exists() and not list(tmp_path.glob(".f.sif*"))


def test_failing_test_fails_the_build_and_notest_skips_it(sbuild, recipe, busybox, tmp_path):
    path = recipe(BASE + """
    %test
        echo checking
        exit 5
    """)
    r = sbuild(path, tmp_path / "t.simg")
    assert r.status == 1 and "%test failed with exit code 5" in r.err and "checking" in r.err
    assert not (tmp_path / "t.simg").exists()
    r = sbuild(path, tmp_path / "t.simg", "--notest")
    assert r.status == 0, r.err
    assert "exit 5" in cat(tmp_path / "t.simg", ".singularity.d/test")


def test_multistage_files_from_copies_from_the_build_stage(sbuild, recipe, busybox, tmp_path):
    stage = "Bootstrap: busybox\nMirrorURL: file:///bin/busybox\n"
    path = recipe(stage + "Stage: build\n\n%post\n    mkdir -p /out\n    echo tool > /out/tool\n"
                  "    ln -s /out/tool /out/link\n\n" + stage +
                  "\n%files from build\n    /out/tool /usr/local/bin/tool\n    /out/link /opt/\n")
    target = tmp_path / "m.simg"
    r = sbuild(path, target)
    assert r.status == 0, r.err
    assert cat(target, "usr/local/bin/tool") == "tool\n"
    assert cat(target, "opt/link") == "tool\n"  # top-level symlink dereferenced inside the stage


def test_localimage_layers_on_an_image_and_keeps_its_labels(sbuild, recipe, busybox, tmp_path):
    base = tmp_path / "base.simg"
    assert sbuild(recipe(BASE + "\n%labels\n    base.label one\n", name="base.def"), base).status == 0
    path = recipe(f"""
    Bootstrap: localimage
    From: {base}

    %post
        echo layered > /etc/layered
    """, name="top.def")
    target = tmp_path / "top.sif"
    r = sbuild(path, target, "--json")
    assert r.status == 0, r.err
    out = json.loads(r.out)
    meta = subprocess.run(["siftool", "list", str(target)], capture_output=True, text=True, check=True).stdout
    assert "FS" in meta
    sandbox = tmp_path / "sb"
    assert sbuild("--sandbox", sandbox, target).status == 0
    assert (sandbox / "etc" / "layered").read_text() == "layered\n"
    labels = json.loads((sandbox / ".singularity.d" / "labels.json").read_text())
    assert labels["base.label"] == "one"
    assert labels["org.label-schema.usage.singularity.deffile.bootstrap"] == "localimage"
    history = sorted(p.name for p in (sandbox / ".singularity.d" / "bootstrap_history").iterdir())
    assert history == ["Apptainer0"] and out["format"] == "sif"
