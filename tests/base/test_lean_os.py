"""base.lean_os: what the launch path uses of ``os``, with ``os``'s results, and ``os`` never
loaded by it."""

from __future__ import annotations

import os
import posixpath
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from base import lean_os

ROOT = Path(__file__).resolve().parents[2]
# paths made of the parts that matter to posixpath: slashes (1, 2, 3 and more), ".", "..", names
paths = st.lists(st.sampled_from(["/", "//", "///", ".", "..", "a", "b.c", "..."]), max_size=8).map("".join)


@given(paths)
def test_path_functions_agree_with_posixpath(p):
    for name in ("basename", "dirname", "normpath"):
        assert getattr(lean_os.path, name)(p) == getattr(posixpath, name)(p), (name, p)
    assert lean_os.path.abspath(p) == posixpath.abspath(p)


@given(paths, st.lists(paths, max_size=3))
def test_join_agrees_with_posixpath(a, parts):
    assert lean_os.path.join(a, *parts) == posixpath.join(a, *parts)


def test_bytes_paths_and_other_names_go_to_posixpath():
    assert lean_os.path.normpath(b"//a/../b/") == b"//b"
    assert lean_os.path.join(b"a", b"b") == b"a/b"
    assert lean_os.path.splitext("x.tar.gz") == ("x.tar", ".gz")
    assert lean_os.path.join(Path("/a"), "b") == "/a/b"


def test_file_tests_agree_with_os_path(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "to-dir").symlink_to(tmp_path / "dir")
    cases = [tmp_path / n for n in ("dir", "file", "dangling", "to-dir", "nowhere")] + ["bad\0path", "", 0]
    for case in cases:
        for name in ("exists", "lexists", "isdir", "isfile"):
            assert _outcome(getattr(lean_os.path, name), case) == _outcome(getattr(os.path, name), case), (name, case)


def _outcome(fn, *args):
    try:
        return fn(*args)
    except Exception as e:  # (lexists of an fd: a TypeError in both)
        return type(e)


@pytest.mark.parametrize("rel", ["a", "a/b/c", "a/b/c/", "a/./b", "a/b/.", "x/../y"])
def test_makedirs_makes_what_os_makedirs_makes(tmp_path, rel):
    for where, fn in (("ours", lean_os.makedirs), ("os", os.makedirs)):
        base = tmp_path / where
        base.mkdir()
        fn(str(base / rel), 0o750)
    tree = {where: sorted((str(p.relative_to(tmp_path / where)), p.stat().st_mode & 0o777)
                          for p in (tmp_path / where).rglob("*")) for where in ("ours", "os")}
    assert tree["ours"] == tree["os"]


def test_makedirs_errors_like_os_makedirs(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileExistsError):
        lean_os.makedirs(str(tmp_path / "d"))
    lean_os.makedirs(str(tmp_path / "d"), exist_ok=True)
    for target in ("f", "f/sub"):  # a file in the way fails even with exist_ok
        with pytest.raises((FileExistsError, NotADirectoryError)):
            lean_os.makedirs(str(tmp_path / target), exist_ok=True)


def _child(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``code`` run by ``python -S`` (as a launch runs), with this tree importable."""
    return subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n{code}",
                           *args], capture_output=True, text=True, env=env, timeout=60)


def test_execvpe_searches_path_and_keeps_the_first_real_error(tmp_path):
    for d in ("noexec", "bin"):
        (tmp_path / d).mkdir()
    (tmp_path / "noexec" / "prog").write_text("#!/bin/sh\necho no\n")  # found, not executable
    (tmp_path / "bin" / "prog").write_text("#!/bin/sh\necho found \"$@\"\n")
    (tmp_path / "bin" / "prog").chmod(0o755)
    code = "from base import lean_os as os\nos.execvpe(sys.argv[1], ['prog', 'x'], {'PATH': sys.argv[2]})"
    r = _child(code, "prog", f"{tmp_path}/missing:{tmp_path}/noexec:{tmp_path}/bin")
    assert (r.returncode, r.stdout) == (0, "found x\n"), r.stderr
    r = _child(code, "prog", f"{tmp_path}/noexec:{tmp_path}/missing")
    assert "PermissionError" in r.stderr  # os.execvpe's choice: the file it could not run
    r = _child(code, "prog", f"{tmp_path}/missing")
    assert "FileNotFoundError" in r.stderr
    r = _child(code, f"{tmp_path}/bin/prog", "")
    assert r.stdout == "found x\n", r.stderr


def test_environ_is_decoded_without_os_and_is_os_environ_once_loaded():
    code = """from base import lean_os as os
print(type(os.environ).__name__, os.environ['SB_T'] == '\\udcff-é', 'os' in sys.modules,
      '_collections_abc' in sys.modules, os.fsencode(os.environ['SB_T']) == b'\\xff-\\xc3\\xa9')
import os as real
print(os.environ is real.environ)"""
    # a value that is not UTF-8 (surrogateescape, as os decodes it) and one that is
    env_bytes = {b"PATH": b"/usr/bin:/bin", b"LANG": b"C.UTF-8", b"SB_T": b"\xff-\xc3\xa9"}
    r = subprocess.run([os.fsencode(sys.executable), b"-S", b"-c",
                        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n{code}".encode()],
                       capture_output=True, env=env_bytes, timeout=60)
    assert r.stdout.decode().split() == ["dict", "True", "False", "False", "True", "True"], r.stderr


def test_fdopen_wants_an_fd():
    with pytest.raises(TypeError):
        lean_os.fdopen("0")
    r, w = os.pipe()
    with lean_os.fdopen(w, "w") as f:
        f.write("x")
    with lean_os.fdopen(r) as f:
        assert f.read() == "x"
