"""base.importcache: the launch's modules served from one file, never a changed module's old
code, and a bad or missing file only costs the usual imports (and is written again).

Each test works on a copy of the tree with a launcher of its own (``write_launcher``), run as
a process (``PYTHONVERBOSE`` names the loader of every import)."""

from __future__ import annotations

import marshal
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FINDER = "base.importcache._Finder"


@pytest.fixture
def tree() -> Path:
    """A copy of the packages (no .pyc files) and its launcher, ``tree/sbuild``, in a
    world-readable directory (one test runs it as another user)."""
    base = Path(tempfile.mkdtemp(prefix="sbuild-importcache-", dir="/tmp"))
    base.chmod(0o755)
    for pkg in ("base", "builder", "runtime", "grammar"):
        shutil.copytree(ROOT / pkg, base / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-S", "-c", "import sys; sys.path.insert(0, sys.argv[1])\n"
                    "from builder.commands.launcher import write_launcher; write_launcher(sys.argv[2])",
                    str(base), str(base / "sbuild")], check=True)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return {**env, "PYTHONVERBOSE": "1", **extra}


def _run(tree: Path, *args: str, prefix: tuple[str, ...] = (), **env: str) -> tuple[str, dict[str, str]]:
    """stderr without the import report, and ``{module: loader}`` for sbuild's modules."""
    r = subprocess.run([*prefix, str(tree / "sbuild"), *args], capture_output=True, text=True, env=_env(**env),
                       timeout=60)
    assert r.returncode == 0, r.stderr[-3000:]
    loaders, rest = {}, []
    for line in r.stderr.splitlines():
        if line.startswith("import '"):
            name, _, loader = line[len("import '"):].partition("' # ")
            if name.partition(".")[0] in ("base", "builder", "runtime"):
                loaders[name] = loader
        elif not line.startswith("#"):
            rest.append(line)
    return "\n".join(rest), loaders


def _cache(tree: Path) -> Path:
    return tree / "base" / "__pycache__" / f"launch.{sys.implementation.cache_tag}.imports"


def _served(loaders: dict[str, str]) -> set[str]:
    return {name for name, loader in loaders.items() if FINDER in loader}


def test_the_first_command_writes_the_file_and_the_next_is_served_from_it(tree):
    _, first = _run(tree, "--version")
    assert _served(first) == set() and _cache(tree).is_file()
    _, second = _run(tree, "--version")
    # all but the package and the finder itself, imported before it is in place
    assert set(second) - _served(second) == {"base", "base.importcache"}
    assert {"builder.cli", "base.lean_os"} <= _served(second)


def test_a_changed_module_runs_its_new_code_and_the_file_is_rewritten(tree):
    _run(tree, "--version")
    before = _cache(tree).stat().st_mtime_ns
    with open(tree / "base" / "lean_os.py", "a") as f:
        f.write('\nwrite(2, b"edited\\n")\n')
    err, loaders = _run(tree, "--version")
    assert "edited" in err.splitlines() and FINDER not in loaders["base.lean_os"]
    assert _cache(tree).stat().st_mtime_ns != before  # rewritten at exit: the new code in it
    err, loaders = _run(tree, "--version")
    assert "edited" in err.splitlines() and FINDER in loaders["base.lean_os"]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "another interpreter"])
def test_a_bad_file_is_ignored_and_written_again(tree, damage):
    _run(tree, "--version")
    data = _cache(tree).read_bytes()
    if damage == "another interpreter":  # the same content, under another magic number
        fmt, _magic, opt, entries = marshal.loads(data)
        bad = marshal.dumps((fmt, b"\0\0\r\n", opt, entries))
    else:
        bad = data[:len(data) // 2] if damage == "truncated" else os.urandom(4096)
    _cache(tree).write_bytes(bad)
    _, loaders = _run(tree, "--version")
    assert _served(loaders) == set()
    assert _cache(tree).read_bytes() != bad
    _, loaders = _run(tree, "--version")
    assert "builder.cli" in _served(loaders)


def test_nothing_is_written_without_bytecode_writes(tree):
    _run(tree, "--version", PYTHONDONTWRITEBYTECODE="1")
    assert not _cache(tree).exists()


def test_a_user_who_cannot_write_runs_without_the_file_then_with_the_owners(tree, unprivileged_user):
    as_user = tuple(unprivileged_user.argv("env", *[f"{k}={v}" for k, v in unprivileged_user.env().items()],
                                           "PYTHONVERBOSE=1"))
    _, loaders = _run(tree, "--version", prefix=as_user)
    assert "builder.cli" in loaders and _served(loaders) == set() and not _cache(tree).exists()
    _run(tree, "--version")  # the owner's command writes it
    _, loaders = _run(tree, "--version", prefix=as_user)
    assert "builder.cli" in _served(loaders)


def test_the_explicit_write_holds_the_launch_modules(tree):
    r = subprocess.run([sys.executable, "-S", "-m", "base.importcache"], cwd=tree, capture_output=True, text=True,
                       env=_env(), timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == str(_cache(tree)), r.stderr[-2000:]
    _fmt, _magic, _opt, entries = marshal.loads(_cache(tree).read_bytes())
    assert {"builder.cli", "runtime.process", "runtime.plan", "runtime.lower", "__future__", "_ctypes"} <= set(entries)
    assert all(path.startswith(str(tree)) for name, (path, *_r) in entries.items()
               if name.partition(".")[0] in ("base", "builder", "runtime"))
