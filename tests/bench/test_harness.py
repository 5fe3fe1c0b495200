"""``python -m bench``'s harness: it finds benchmark modules by their ``run``, runs a real
tiny one (sbuild's packer against mksquashfs on a few files), reports a failing one as a row,
and writes a valid results.json, PERFORMANCE.md and PNG."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402

_TINY = '''
"""A real tiny benchmark: pack 40 small files with sbuild's packer and with mksquashfs."""
import shutil, statistics, subprocess, tempfile, time
from pathlib import Path
from builder.images.sqfs_pack import pack_directory


def run(quick):
    base = Path(tempfile.mkdtemp())
    try:
        tree = base / "tree"
        tree.mkdir()
        for i in range(40):
            (tree / f"f{i}").write_text(f"file {i}\\n" * (i * 50))
        ours, theirs = [], []
        for _ in range(3):
            t = time.perf_counter(); pack_directory(tree, base / "a.sqfs"); ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            subprocess.run(["mksquashfs", str(tree), str(base / "b.sqfs"), "-noappend", "-quiet", "-no-progress"],
                           check=True, stdout=subprocess.DEVNULL)
            theirs.append(time.perf_counter() - t)
        a, b = statistics.median(ours), statistics.median(theirs)
        return [{"name": "pack 40 small files", "sbuild_s": a, "alternative": "mksquashfs", "alternative_s": b,
                 "ratio": a / b, "notes": "tiny", "extra": 1}]
    finally:
        shutil.rmtree(base)
'''


@pytest.fixture
def fake_bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    if not subprocess.run(["which", "mksquashfs"], capture_output=True).returncode == 0:
        pytest.skip("mksquashfs not installed (apt-get install squashfs-tools)")
    pkg = tmp_path / "fakebench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tiny.py").write_text(_TINY)
    (pkg / "broken.py").write_text("def run(quick):\n    raise RuntimeError('needs a tool that is missing')\n")
    (pkg / "badimport.py").write_text("import no_such_module_here\n")
    (pkg / "helpers.py").write_text("X = 1\n")  # no run: not a benchmark
    (pkg / "_private.py").write_text("def run(quick):\n    raise AssertionError('must not run')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module("fakebench")


def _write(rows: list[dict], out: Path, plot: bool, modules: dict[str, str] | None = None) -> str:
    harness.write_outputs(rows, time.time(), harness.machine(), True, results=out / "results.json",
                          page=out / "docs" / "P.md", picture=out / "docs" / "p.png", plot=plot, modules=modules)
    return (out / "docs" / "P.md").read_text()


def test_discovers_runs_and_writes_the_page(fake_bench, tmp_path: Path) -> None:  # noqa: ANN001
    found = harness.discover(fake_bench)
    assert [n for n, _ in found] == ["badimport", "broken", "tiny"]
    page = _write(harness.run_all(found, quick=True), tmp_path / "out", plot=False, modules=harness.about(found))
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert result["quick"] is True and result["machine"]["cores"] >= 1 and len(result["machine"]["load"]) == 3
    by = {r["module"]: r for r in result["rows"]}
    tiny = by["tiny"]
    assert set(harness.KEYS) <= set(tiny) and tiny["extra"] == 1
    assert tiny["sbuild_s"] > 0 and tiny["alternative_s"] > 0
    assert tiny["ratio"] == pytest.approx(tiny["sbuild_s"] / tiny["alternative_s"])
    assert by["broken"]["sbuild_s"] is None and "needs a tool that is missing" in by["broken"]["notes"]
    assert "no_such_module_here" in by["badimport"]["notes"]
    assert "| pack 40 small files |" in page and "| mksquashfs |" in page and "cores" in page
    assert "not run: RuntimeError: needs a tool that is missing" in page
    assert "no plot" in page and not (tmp_path / "out" / "docs" / "p.png").exists()
    assert "- `bench/tiny.py` (measured " in page and "A real tiny benchmark: pack 40 small files" in page
    # --only: the modules run now replace their rows, the others' stay
    again = [dict(tiny, sbuild_s=9.0)]
    rows = harness.merged(result, again, ["tiny"])
    assert sorted(r["module"] for r in rows) == ["badimport", "broken", "tiny"]
    assert [r["sbuild_s"] for r in rows if r["module"] == "tiny"] == [9.0]


@pytest.mark.slow
def test_the_plot_is_a_png_the_page_shows(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the bench extra (pip install -e '.[bench]') is not installed")
    rows = [{"name": "a workload", "sbuild_s": 0.5, "alternative": "a tool", "alternative_s": 2.0, "ratio": 0.25,
             "notes": "", "module": "m"},
            {"name": "not run", "sbuild_s": None, "alternative": "", "alternative_s": None, "ratio": None,
             "notes": "not run: x", "module": "n"}]
    page = _write(rows, tmp_path / "out", plot=True)
    assert "](p.png)" in page
    assert (tmp_path / "out" / "docs" / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_row_without_the_keys_is_a_failure_row(fake_bench) -> None:  # noqa: ANN001
    rows = harness.run_all([("bad", lambda quick: [{"name": "x", "sbuild_s": 1.0}])], quick=True)
    assert rows[0]["sbuild_s"] is None and "lacks alternative" in rows[0]["notes"]


def test_the_real_modules_are_found() -> None:
    listed = subprocess.run([sys.executable, "-m", "bench", "--list"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.split()
    assert {"check_corpus", "images_pack", "pack_cache", "registry_pull", "runtime_launch"} <= set(listed)
    assert "harness" not in listed
