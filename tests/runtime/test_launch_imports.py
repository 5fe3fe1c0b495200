"""What a launch imports: the common ``exec``/``run``/``test`` forms, including the flags
workflow engines send, load none of the standard library's heavier modules (``os`` costs
1.1 ms, ``logging`` ~10 ms, ``argparse`` ~4 ms on the bench machine: the launch's target is
the mount+chroot floor). Read from the interpreter's own report (``PYTHONPROFILEIMPORTTIME``),
which the container's init, a fork of the CLI, writes to the same stderr. Unprivileged, an
image is extracted on its first run (unsquashfs, a cache entry): the launches measured are
the later ones."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

HEAVY = {"os", "_collections_abc", "posixpath", "logging", "argparse", "re", "threading",
         "subprocess", "typing", "enum", "dataclasses", "pathlib", "collections", "functools", "shutil",
         "signal", "ctypes", "pickle", "json", "warnings", "traceback", "types"}

FORMS = [
    ("exec", "{image}", "true"),
    ("run", "{image}"),
    ("test", "{image}"),
    ("exec", "--cleanenv", "--env", "A=1", "--pwd", "/tmp", "{image}", "true"),
    ("exec", "--bind", "/tmp:/mnt", "-B", "/etc/hostname", "--no-home", "{image}", "true"),
    ("exec", "--containall", "--home", "/tmp", "{image}", "true"),  # Snakemake's --apptainer-args
    ("exec", "--contain", "-W", "{work}", "--hostname", "h", "--ipc", "{image}", "true"),
    ("run", "--app", "hello", "{image}"),
]


def _imported(stderr: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^import time:.*\|\s+([\w.]+)$", stderr, re.M)}


@pytest.fixture(scope="module")
def at_startup() -> set[str]:
    """What the interpreter imports before any of sbuild's code runs (not ours to avoid)."""
    r = subprocess.run([sys.executable, "-S", "-X", "importtime", "-c", "pass"], capture_output=True, text=True)
    return _imported(r.stderr)


@pytest.mark.parametrize("kind", ["sandbox", "simg"])
@pytest.mark.parametrize("form", FORMS, ids=" ".join)
def test_a_launch_imports_none_of_the_heavy_modules(profile, images, workdir, at_startup, form, kind):
    argv = [{"{image}": images[kind], "{work}": workdir}.get(word, word) for word in form]
    assert profile.sbuild("exec", images[kind], "true").status == 0  # (unprivileged: the image extracted once)
    r = profile.sbuild(*argv, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert r.status in (0, 5), r.err  # (the test image's %test exits 5)
    loaded = _imported(r.err)
    assert "runtime.process" in loaded and "runtime.mounts" in loaded  # the report covers the launch
    assert (HEAVY & loaded) - at_startup == set()
