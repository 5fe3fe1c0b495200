"""`sbuild inspect` on .simg, SIF, squashfs and sandboxes: apptainer inspect's output, no mount."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builder.images import sif
from builder.images.convert import write_image
from builder.images.squashfs import PackOptions

ROOT = Path(__file__).resolve().parents[2]
EPOCH = PackOptions(source_date_epoch=1700000000)
DEF = "Bootstrap: scratch\n\n%runscript\n    cat /.singularity.d/runscript.help\n"


@pytest.fixture
def inspector(rootfs: Path) -> Path:
    """A rootfs laid out like apptainer's e2e inspector_container, with an app."""
    sd = rootfs / ".singularity.d"
    (sd / "runscript").write_text("#!/bin/sh\n\ncat /.singularity.d/runscript.help\n")
    (sd / "startscript").write_text('#!/bin/sh\n\nexec "$@"\n')
    (sd / "test").write_text("#!/bin/sh\n\nls /\ntest -d /\ntest -d /etc\n")
    (sd / "runscript.help").write_text("This is a e2e test container\n")
    (sd / "env" / "91-environment.sh").write_text('export hello="world"\n')
    (sd / "env" / "10-docker2singularity.sh").write_text("export PATH=/bin\n")
    (sd / "env" / "01-base.sh").write_text("#!/bin/sh\n")
    (sd / "labels.json").write_text(json.dumps({"e2e": "awesome", "HI": "HELLO WORLD", "a&b": "<x>"}, indent="\t"))
    (sd / "Singularity").write_text(DEF)
    app = rootfs / "scif" / "apps" / "hello" / "scif"
    (app / "env").mkdir(parents=True)
    (app / "runscript").write_text('#!/bin/sh\n\necho "hello"\n')
    (app / "env" / "90-environment.sh").write_text("HELLOTHISIS=hello\nexport HELLOTHISIS\n")
    (app / "labels.json").write_text('{"HELLOTHISIS": "hello"}')
    return rootfs


@pytest.fixture(params=["sandbox", "simg", "sif", "squashfs"])
def image(request, tmp_path: Path, inspector: Path) -> Path:
    if request.param == "sandbox":
        return inspector
    target = tmp_path / f"img.{request.param}"
    write_image(inspector, target, request.param, deffile=DEF.encode(), options=EPOCH)
    return target


def test_default_is_sorted_labels(sbuild, image: Path) -> None:
    r = sbuild("inspect", image)
    assert r.status == 0, r.err
    assert r.out == "HI: HELLO WORLD\na&b: <x>\ne2e: awesome\n"


def test_sections(sbuild, image: Path) -> None:
    r = sbuild("inspect", "--runscript", image)
    assert r.out == "#!/bin/sh\n\ncat /.singularity.d/runscript.help\n"
    assert sbuild("inspect", "-s", image).out == '#!/bin/sh\n\nexec "$@"\n'
    assert sbuild("inspect", "--test", image).out == "#!/bin/sh\n\nls /\ntest -d /\ntest -d /etc\n"
    assert sbuild("inspect", "--helpfile", image).out == "This is a e2e test container\n"
    assert sbuild("inspect", "--deffile", image).out == DEF
    env = sbuild("inspect", "--environment", image).out
    assert env == ("=== /.singularity.d/env/10-docker2singularity.sh ===\nexport PATH=/bin\n\n"
                   "=== /.singularity.d/env/90-environment.sh ===\n#!/bin/sh\n"
                   "# Custom environment shell code should follow\n\nexport A=1\n\n"
                   '=== /.singularity.d/env/91-environment.sh ===\nexport hello="world"\n\n')


def test_json_shape(sbuild, image: Path) -> None:
    r = sbuild("inspect", "--json", "--labels", "--runscript", image)
    assert r.out.startswith('{\n\t"data": {\n\t\t"attributes": {\n')
    assert '"a\\u0026b": "\\u003cx\\u003e"' in r.out  # Go's HTML-safe escaping
    doc = json.loads(r.out)
    assert doc["type"] == "container"
    assert list(doc["data"]["attributes"]) == ["labels", "runscript"]
    assert doc["data"]["attributes"]["runscript"] == "#!/bin/sh\n\ncat /.singularity.d/runscript.help"


def test_app(sbuild, image: Path) -> None:
    assert sbuild("inspect", "--app", "hello", image).out == "HELLOTHISIS: hello\n"
    assert sbuild("inspect", "--app", "hello", "-r", image).out == '#!/bin/sh\n\necho "hello"\n'
    doc = json.loads(sbuild("inspect", "--app", "hello", "--json", "-e", image).out)
    assert doc["data"]["attributes"]["apps"]["hello"]["environment"] == {
        "/scif/apps/hello/scif/env/90-environment.sh": "HELLOTHISIS=hello\nexport HELLOTHISIS"}
    assert sbuild("inspect", "--list-apps", image).out == "hello\n"
    r = sbuild("inspect", "--app", "nope", image)
    assert r.status == 2 and "no app named 'nope'" in r.err and "hello" in r.err


def test_all(sbuild, image: Path) -> None:
    doc = json.loads(sbuild("inspect", "--all", image).out)
    attrs = doc["data"]["attributes"]
    assert list(attrs) == ["apps", "environment", "labels", "runscript", "test", "helpfile",
                           "deffile", "startscript"]


def test_sif_reads_descriptor_not_filesystem(tmp_path: Path, sbuild, inspector: Path) -> None:
    """The SIF's inspect-metadata.json is authoritative, as in apptainer."""
    target = tmp_path / "a.sif"
    meta = {"data": {"attributes": {"labels": {"from": "descriptor"}}}, "type": "container"}
    write_image(inspector, target, "sif", deffile=b"Bootstrap: x\n", options=EPOCH,
                json_objects={"inspect-metadata.json": json.dumps(meta).encode()})
    assert sbuild("inspect", target).out == "from: descriptor\n"
    assert sbuild("inspect", "-d", target).out == "Bootstrap: x\n"


def test_sif_with_corrupt_metadata_falls_back(tmp_path: Path, sbuild, inspector: Path) -> None:
    target = tmp_path / "a.sif"
    write_image(inspector, target, "sif", options=EPOCH,
                json_objects={"inspect-metadata.json": b"{not json"})
    r = sbuild("inspect", target)
    assert r.status == 0 and r.out.startswith("HI: HELLO WORLD\n")
    assert "inspect-metadata.json" in r.err


@pytest.mark.parametrize("damage", ["truncate", "magic", "nopart"])
def test_broken_images(tmp_path: Path, sbuild, inspector: Path, damage: str) -> None:
    target = tmp_path / "a.sif"
    write_image(inspector, target, "sif", options=EPOCH)
    data = target.read_bytes()
    if damage == "truncate":
        data = data[: len(data) - 5000]
    elif damage == "magic":
        data = data[:32] + b"NOT_MAGIC\0" + data[42:]
    else:
        data = sif.sif_bytes([sif.SifObject(sif.DATA_DEFFILE, b"Bootstrap: scratch\n")])
    target.write_bytes(data)
    r = sbuild("inspect", target)
    assert r.status == 2 and r.err.startswith("sbuild: error: ") and r.out == ""
    assert len(r.err.strip().splitlines()) <= 2


def test_as_unprivileged_user(tmp_path: Path, inspector: Path, nobody) -> None:
    setpriv = shutil.which("setpriv")
    import tempfile

    shared = Path(tempfile.mkdtemp(prefix="sbuild-test-", dir="/tmp"))
    try:
        shared.chmod(0o755)
        target = shared / "a.simg"
        write_image(inspector, target, "simg", options=EPOCH)
        proc = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                               sys.executable, "-m", "builder.cli", "inspect", "-r", str(target)],
                              cwd=ROOT, capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "#!/bin/sh\n\ncat /.singularity.d/runscript.help\n"
    finally:
        shutil.rmtree(shared)


def test_sif_made_by_siftool(tmp_path: Path, sbuild, inspector: Path) -> None:
    """An independent writer's SIF: probe, inspect and extract it."""
    from .conftest import need, run

    siftool = need("siftool")
    sqfs = tmp_path / "r.sqfs"
    write_image(inspector, sqfs, "squashfs", options=EPOCH)
    (tmp_path / "def").write_text(DEF)
    img = tmp_path / "x.sif"
    run(siftool, "new", img)
    run(siftool, "add", img, tmp_path / "def", "--datatype", "1")
    run(siftool, "add", img, sqfs, "--datatype", "4", "--parttype", "2", "--partfs", "1", "--partarch", "2")
    assert sbuild("inspect", "-d", img).out == DEF
    assert sbuild("inspect", img).out.startswith("HI: HELLO WORLD\n")
    from builder.images import extract_image, probe

    assert probe(img).arch == "amd64"
    extract_image(img, tmp_path / "sb")
    assert (tmp_path / "sb" / "etc" / "hello.txt").read_text() == "hello from the image\n"
