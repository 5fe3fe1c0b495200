"""The early mount and read-ahead of ``runtime.prefetch``: the image guessed from the raw
command line before it is parsed, taken only when the parsed command line names the same
file, and otherwise closed (a wrong guess never mounts the wrong image)."""

from __future__ import annotations

import json
import subprocess

import pytest

from runtime.prefetch import _candidates


@pytest.mark.parametrize("argv, program, expected", [
    (["exec", "img.sif", "cat", "/etc/os-release"], "sbuild", ["img.sif", "cat", "/etc/os-release"]),
    (["-s", "exec", "--bind", "/a:/b", "-B", "/data", "img.sif", "true"], "apptainer", ["/data", "img.sif", "true"]),
    (["-c", "my.conf", "run", "img.sif"], "singularity", ["img.sif"]),  # (--config takes a value)
    (["exec", "docker://alpine", "true"], "apptainer", ["true"]),  # (URIs: no file to mount)
    (["shell", "instance://web"], "sbuild", []),
    (["exec", "a", "b", "c", "d", "e"], "sbuild", ["a", "b", "c"]),  # (at most three guesses)
    (["build", "x.sif", "x.def"], "sbuild", []),
    (["x.def", "x.sif"], "sbuild", []),
    (["./img.simg", "arg"], "run-singularity", ["./img.simg"]),
    ([], "sbuild", []),
])
def test_the_image_is_guessed_among_the_words_after_the_action(argv, program, expected):
    assert _candidates(argv, program) == expected


_TAKE = """
import json, os, sys
from runtime import _sys, prefetch
def mounted(p):  # what the mount holds: its marker file, if any
    try:
        fd = _sys.open_in_root(p.fd, "/marker", os.O_RDONLY)
    except OSError:
        return None
    with os.fdopen(fd) as f:
        return f.read().strip()
class Held:
    fd = 0
def held(dev, marker=None):  # an fd of this process on device dev (holding that /marker), within 5 s
    import time  # (the read-ahead thread closes its own fds when it is done)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = False
        for name in os.listdir("/proc/self/fd"):
            try:
                if os.stat(int(name)).st_dev == dev:
                    Held.fd = int(name)
                    found = found or marker is None or mounted(Held) == marker
            except OSError:
                pass
        if not found:
            return False
        time.sleep(0.05)
    return True
out = {}
image, other = sys.argv[1], sys.argv[2]
prefetch.start(["exec", image, "true"], "sbuild")
early = prefetch._early[0]
out["right"] = [prefetch.prefetch(image) is early, mounted(early)]
os.close(early.fd)
dev = lambda p: os.fstat(p.fd).st_dev
prefetch.start(["exec", "-B", other, image, "true"], "apptainer")  # guessed: the bind's source
early = prefetch._early[0]
guessed, was = mounted(early), dev(early)
taken = prefetch.prefetch(image)
out["wrong"] = [guessed, not held(was, "other"), taken is not None and taken is not early, mounted(taken)]
os.close(taken.fd)
prefetch.start(["exec", image, "true"], "sbuild")
early = prefetch._early[0]
was = dev(early)
out["writable"] = [prefetch.prefetch(image, writable=True), not held(was)]
prefetch.start(["exec", image, "true"], "sbuild")
was = dev(prefetch._early[0])
prefetch.abandon()
out["abandoned"] = [prefetch._early, not held(was)]
print(json.dumps(out))
"""


def test_the_early_mount_is_taken_only_for_the_parsed_image(profile, squashfs_pair):
    if profile.name != "root":
        pytest.skip("the read-ahead is root-only (unprivileged squashfs is not mounted by sbuild)")
    image, other = squashfs_pair
    r = profile.python(_TAKE.replace("sys.argv[1], sys.argv[2]", f"{str(image)!r}, {str(other)!r}"))
    assert r.status == 0, r.err
    out = json.loads(r.out)
    assert out["right"] == [True, "image"]
    assert out["wrong"] == ["other", True, True, "image"]  # the guess closed, the image mounted
    assert out["writable"] == [None, True]
    assert out["abandoned"] == [None, True]


def test_a_wrong_guess_runs_the_right_image(profile, squashfs_pair):
    # the first word after `exec` that is a squashfs is the bind's source, not the image:
    # the command must still see the image (and the bind), as without the early mount
    image, other = squashfs_pair
    r = profile.sbuild("exec", "-B", other, image, "sh", "-c", f"cat /marker; test -f {other} && echo bound")
    assert (r.status, r.out) == (0, "image\nbound\n"), r.err


@pytest.fixture
def squashfs_pair(profile, images, workdir):
    """``(image, other)``: the session's image with a /marker saying "image", and a squashfs
    holding only a /marker saying "other"."""
    out = []
    for name, base in (("image", images["sandbox"]), ("other", None)):
        tree = workdir / f"{name}-tree"
        if base is None:
            tree.mkdir()
        else:
            subprocess.run(["cp", "-a", str(base), str(tree)], check=True)
        (tree / "marker").write_text(name + "\n")
        path = workdir / f"{name}.sqfs"
        subprocess.run(["mksquashfs", str(tree), str(path), "-quiet", "-noappend", "-all-root"], check=True,
                       stdout=subprocess.DEVNULL)
        profile.own(path)
        out.append(path)
    return tuple(out)
