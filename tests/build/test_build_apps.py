"""SCIF apps (spec §B.6): the /scif layout a build writes, and running the apps it built."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[2]
SBUILD = [sys.executable, "-m", "builder"]



def cat(image: Path, path: str) -> str:
    return subprocess.run(["unsquashfs", "-cat", "-o", "31", str(image), path],
                          check=True, capture_output=True, text=True).stdout


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*SBUILD, *map(str, args)], capture_output=True, text=True, cwd=cwd or ROOT,
                          stdin=subprocess.DEVNULL, timeout=120)


@pytest.fixture(scope="module")
def apps_image(tmp_path_factory) -> Path:
    if not Path("/bin/busybox").is_file():
        pytest.skip("busybox-static not installed (apt-get install busybox-static)")
    target = tmp_path_factory.mktemp("apps") / "apps.simg"
    r = cli(ROOT / "recipes" / "apps.def", target)
    assert r.returncode == 0, r.stderr
    return target


def test_apps_recipe_runs_each_app_with_its_environment(apps_image):
    r = cli("run", "--app", "hello", apps_image)
    assert (r.returncode, r.stdout) == (0, "hello from hello\n"), r.stderr
    r = cli("run", "--app", "world", apps_image)
    assert (r.returncode, r.stdout) == (0, "world\n"), r.stderr  # written by %appinstall in the app dir
    r = cli("exec", "--app", "hello", apps_image, "/bin/sh", "-c",
            'echo "$GREETING $SCIF_APPROOT $SCIF_APPDATA_world $SCIF_APPRUN_world"')
    assert r.stdout == "hi /scif/apps/hello /scif/data/world /scif/apps/world/scif/runscript\n", r.stderr


def test_apps_layout_and_metadata_match_apptainer(apps_image):
    listing = subprocess.run(["unsquashfs", "-l", "-o", "31", str(apps_image)], capture_output=True,
                             text=True, check=True).stdout
    for p in ("scif/apps/hello/bin", "scif/apps/hello/lib", "scif/apps/hello/scif/env/01-base.sh",
              "scif/data/hello/input", "scif/data/world/output", "scif/apps/world/world.txt"):
        assert f"squashfs-root/{p}\n" in listing
    assert "scif/apps/world/scif/env/90-environment.sh" not in listing  # no %appenv world
    assert cat(apps_image, "scif/apps/hello/scif/runscript") == '#!/bin/sh\n\n    echo "hello from $SCIF_APPNAME"\n\n\n'
    assert cat(apps_image, "scif/apps/hello/scif/env/90-environment.sh") == "    GREETING=hi\n    export GREETING\n\n"
    assert cat(apps_image, "scif/apps/hello/scif/runscript.help") == "    Says hello.\n\n"
    labels = cat(apps_image, "scif/apps/hello/scif/labels.json")
    assert labels == '{\n\t"SCIF_APP_NAME": "hello",\n\t"org.example.app": "hello"\n}'
    base = cat(apps_image, "scif/apps/world/scif/env/01-base.sh")
    assert "SCIF_APPNAME=world\n" in base and 'SCIF_APPOUTPUT="/scif/data/world/output"\n' in base
    env94 = cat(apps_image, ".singularity.d/env/94-appsbase.sh")
    assert env94.startswith("## App Global Exports For: hello\n\nSCIF_APPDATA_hello=/scif/data/hello\n")
    assert 'export SCIF_APPENV_hello="/scif/apps/hello/scif/env/90-environment.sh"\n' in env94
    assert "SCIF_APPENV_world" not in env94 and 'export SCIF_APPRUN_world="/scif/apps/world/scif/runscript"' in env94


def test_appfiles_come_before_setup_and_names_are_sanitised_in_exports(sbuild, recipe, busybox, tmp_path,
                                                                       monkeypatch):
    (tmp_path / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    monkeypatch.chdir(tmp_path)
    path = recipe("""
        Bootstrap: busybox
        MirrorURL: file:///bin/busybox

        %setup
            test -f "$SINGULARITY_ROOTFS/scif/apps/my-app/bin/tool.sh"
            echo seen > "$SINGULARITY_ROOTFS/setup-saw-appfiles"

        %appfiles my-app
            # a comment line
            tool.sh bin/tool.sh   # inline comment

        %appstart my-app
            exec sleep 1

        %apptest my-app
            test -x "$SCIF_APPROOT/bin/tool.sh"
    """)
    target = tmp_path / "a.simg"
    r = sbuild(path, target)
    assert r.status == 0, r.err
    assert cat(target, "setup-saw-appfiles") == "seen\n"
    assert cat(target, "scif/apps/my-app/bin/tool.sh") == "#!/bin/sh\necho tool\n"
    assert cat(target, "scif/apps/my-app/scif/startscript") == "#!/bin/sh\n\n    exec sleep 1\n\n\n"
    assert cat(target, "scif/apps/my-app/scif/test").startswith("#!/bin/sh\n\n    test -x")
    env94 = cat(target, ".singularity.d/env/94-appsbase.sh")
    assert "SCIF_APPDATA_my_app=/scif/data/my_app\n" in env94  # Apptainer sanitises the paths too
    assert 'export SCIF_APPSTART_my_app="/scif/apps/my_app/scif/startscript"\n' in env94
    assert json.loads(cat(target, "scif/apps/my-app/scif/labels.json")) == {"SCIF_APP_NAME": "my-app"}


def test_an_app_without_sections_that_run_still_makes_post_run_its_block(sbuild, recipe, busybox, tmp_path):
    path = recipe("""
        Bootstrap: busybox
        MirrorURL: file:///bin/busybox

        %applabels quiet
            k v
    """)
    target = tmp_path / "q.simg"
    r = sbuild(path, target)
    assert r.status == 0, r.err
    assert "[stage 1] %post" in r.err and "cd /scif/apps/quiet" in r.err


def test_an_app_name_that_leaves_scif_is_refused(sbuild, recipe, busybox, tmp_path):
    path = recipe("""
        Bootstrap: busybox
        MirrorURL: file:///bin/busybox

        %apprun ..
            echo escaped
    """)
    r = sbuild(path, tmp_path / "x.simg")
    assert r.status == 1 and "app name '..'" in r.err and "recipe line 4" in r.err
    assert not (tmp_path / "x.simg").exists()
