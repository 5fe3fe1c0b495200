#!/usr/bin/env python3
"""Benchmark: container launch latency of ``exec`` against the shell floor scripts.

The image is a real one: built by sbuild from a recipe with ``%environment`` (``RECIPE``),
so ``/.singularity.d/env/*.sh`` exist and the action script sources them, as Apptainer's
does. Each entry point is timed, in the same run and interleaved round by round with the
floor (so that machine load hits all alike):

- the launchers setup.sh writes: ``.venv/bin/{sbuild,apptainer,singularity}``;
- a plain, non-editable ``pip install .`` of this tree into a temporary venv: the scripts
  pip installs under the same three names (``--no-pip`` skips it);
- ``--sbuild CMD``: one more command to time (e.g. a launcher for another checkout).

1. root:  ``NAME exec IMG.simg /bin/true``  vs
          ``unshare -m -p -f sh floor/root-squashfs.sh IMG.sqfs /bin/true``
2. unprivileged (as --user, default sbtester): ``NAME exec SANDBOX /bin/true``  vs
          ``unshare -r -m -p -f sh floor/unpriv-overlay.sh SANDBOX WORK /bin/true``
3. the runtime alone: ``run_action`` called in a warm Python process (no interpreter start,
   no CLI parsing), root over the .simg, to show what the CLI around it costs.

The floor runs the same command as the entries, ``/bin/true`` (its scripts' default, ``true``,
is the shell's builtin: one exec fewer than any container command, ~0.4 ms here).

Prints the median and quartiles of each and the ratio entry/floor of the same run (≤ 1.0
meets the target), the median CPU time (user + system of the process tree: less hurt by
machine load than wall time) and its ratio, the machine load before and after, and the bare
interpreter start for reference. The project's modules are byte-compiled first (as an installed package's are),
and each installation runs one command as its owner first (``first_command``: the launch modules' file).
Run as root: .venv/bin/python bench/runtime_launch.py [-n 100] [--user sbtester] [--no-pip]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOOR = ROOT.parent / "shared" / "reference" / "floor"
VENV = ROOT / ".venv" / "bin"
PYTHON = str(VENV / "python")
NAMES = ("sbuild", "apptainer", "singularity")
COMMAND = "/bin/true"  # what every entry and the floor run in the container

RECIPE = """\
Bootstrap: busybox
MirrorURL: file:///bin/busybox

%labels
    org.example.bench runtime_launch

%environment
    export GREETING="hello from the bench"
    export PATH="/opt/tools/bin:$PATH"

%runscript
    echo "$GREETING"
"""


def build(base: Path) -> dict[str, Path]:
    """The image, built by sbuild: ``simg``, its squashfs (``sqfs``, for the floor) and the
    same recipe as a ``sandbox``."""
    (base / "bench.def").write_text(RECIPE)
    simg, sandbox = base / "img.simg", base / "sandbox"
    for argv in ([str(VENV / "sbuild"), "build", "-q", str(base / "bench.def"), str(simg)],
                 [str(VENV / "sbuild"), "build", "-q", "--sandbox", str(base / "bench.def"), str(sandbox)]):
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    sqfs = base / "img.sqfs"
    sqfs.write_bytes(simg.read_bytes()[31:])  # the .simg header is 31 bytes
    if not list((sandbox / ".singularity.d" / "env").glob("*.sh")):
        sys.exit("the bench image has no /.singularity.d/env scripts")
    return {"sandbox": sandbox, "sqfs": sqfs, "simg": simg}


def pip_install(base: Path) -> Path:
    """A plain ``pip install .`` of this tree into a new venv: its bin directory."""
    # (from a copy: an in-tree build leaves build/ in the checkout)
    tree = base / "src"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(".*", "build", "tests", "__pycache__", "*.egg-info"))
    venv = base / "pipvenv"
    subprocess.run([sys.executable if sys.prefix == sys.base_prefix else "/usr/bin/python3", "-m", "venv",
                    str(venv)], check=True)
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        str(tree)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.exit(f"pip install . failed:\n{r.stdout[-2000:]}")
    first_command(venv / "bin" / "sbuild")
    return venv / "bin"


def first_command(program: Path) -> None:
    """The installation owner's first command (``--version``): where .pyc files may be written
    (no ``PYTHONDONTWRITEBYTECODE``), it writes ``base.importcache``'s file, as it would on any
    machine after ``pip install .``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([str(program), "--version"], check=True, env=env, stdout=subprocess.DEVNULL)


def timed(argv: list[str], cwd: str, env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall time, CPU time of the whole process tree: user + system, of every process the
    command waited for) of one run."""
    t = time.perf_counter()
    p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(argv)}: {err.decode()[-500:]}")
    return elapsed, usage.ru_utime + usage.ru_stime


def compare(title: str, entries: dict[str, list[str]], floor: list[str], n: int,
            cwd: str) -> dict[str, tuple[float, float, float, float]]:
    """Each entry and the floor, ``n`` rounds, the order rotated each round, printed; per name
    (the floor's too): (median wall s, its ratio to the floor, median CPU s, its ratio)."""
    # the root floor script makes a mktemp directory per run and leaves it: keep those in
    # the bench's own directory (a /tmp with thousands of them would slow the floor down)
    env = {**os.environ, "TMPDIR": cwd}
    runs = {"floor": floor, **entries}
    times: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(3):  # warm caches
        for argv in runs.values():
            timed(argv, cwd, env)
    names = list(runs)
    for i in range(n):
        for name in names[i % len(names):] + names[:i % len(names)]:
            wall, used = timed(runs[name], cwd, env)
            times[name].append(wall)
            cpu[name].append(used)
    floor_median, floor_cpu = statistics.median(times["floor"]), statistics.median(cpu["floor"])
    print(f"{title}:  (wall: median, quartiles, ratio to the floor; cpu: user+sys of the process tree)")
    results = {}
    for name, xs in times.items():
        m, q, c = statistics.median(xs), statistics.quantiles(xs, n=4), statistics.median(cpu[name])
        ratio = m / floor_median
        results[name] = (m, ratio, c, c / floor_cpu)
        print(f"  {name:<25} {m * 1000:6.1f} ms (q1 {q[0] * 1000:5.1f}, q3 {q[2] * 1000:5.1f})"
              + ("           " if name == "floor" else f"  ratio {ratio:.2f}")
              + f"  cpu {c * 1000:5.1f} ms" + ("" if name == "floor" else f" ({c / floor_cpu:.2f})"))
    return results


def reference(n: int, cwd: str) -> None:
    times = sorted(timed([PYTHON, "-S", "-c", "pass"], cwd)[0] for _ in range(n))
    print(f"for reference: python -S -c pass: median {statistics.median(times) * 1000:.1f} ms")


def in_process(simg: Path, n: int) -> None:
    sys.path.insert(0, str(ROOT))
    from runtime import run_action
    from runtime.description import RunOptions

    times = []
    devnull = os.open(os.devnull, os.O_WRONLY)
    opts = RunOptions(stdio=(None, devnull, None))
    for _ in range(n + 3):
        t = time.perf_counter()
        run_action(str(simg), "exec", [COMMAND], opts)
        times.append(time.perf_counter() - t)
    print(f"runtime only (warm process, root, .simg): median {statistics.median(times[3:]) * 1000:.1f} ms")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _entries(pip_bin: Path | None, extra: str | None) -> dict[str, str]:
    out = {f"setup.sh {name}": str(VENV / name) for name in NAMES}
    if pip_bin is not None:
        out.update((f"pip install . {name}", str(pip_bin / name)) for name in NAMES)
    if extra:
        out["--sbuild"] = extra
    return out


def _unprivileged(user: str, base: Path, img: dict[str, Path], entries: dict[str, str], n: int) -> dict:
    import pwd

    try:
        u = pwd.getpwnam(user)
    except KeyError:
        print(f"\nunprivileged case skipped: no user {user!r} (the tests create sbtester)")
        return {}
    work = base / "w"
    for d in ("upper", "work", "merged"):
        (work / d).mkdir(parents=True)
    subprocess.run(["chown", "-R", f"{u.pw_uid}:{u.pw_gid}", str(base)], check=True)
    as_user = ["setpriv", f"--reuid={u.pw_uid}", f"--regid={u.pw_gid}", "--init-groups", "--reset-env",
               "env", f"HOME={u.pw_dir}", "PATH=/usr/bin:/bin:/usr/sbin:/sbin"]
    print()
    title = "unprivileged, exec /bin/true over a sandbox"
    return {title: compare(title,
            {k: as_user + [v, "exec", str(img["sandbox"]), COMMAND] for k, v in entries.items()},
            as_user + ["unshare", "-r", "-m", "-p", "-f", "sh", str(FLOOR / "unpriv-overlay.sh"),
                       str(img["sandbox"]), str(work), COMMAND],
            n, str(base))}


def main(argv: list[str] | None = None) -> int:
    measure(argv)
    return 0


def measure(argv: list[str] | None = None) -> dict[str, dict[str, tuple[float, float, float, float]]]:
    """The whole bench (printed as it goes): per case title, ``compare``'s results."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100, help="rounds (default 100: a median to ~±0.03 of the ratio)")
    ap.add_argument("--user", default="sbtester", help="unprivileged user for case 2 (default sbtester)")
    ap.add_argument("--sbuild", default=None, help="one more command to time, beside the others")
    ap.add_argument("--no-pip", action="store_true", help="skip the `pip install .` venv")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("run as root (case 1 needs it; case 2 switches to --user)")
    base = Path(tempfile.mkdtemp(prefix="sbuild-bench-", dir="/tmp"))
    base.chmod(0o755)
    try:
        img = build(base)
        pip_bin = None if args.no_pip else pip_install(base)
        subprocess.run([PYTHON, "-m", "compileall", "-q", *(str(ROOT / d) for d in ("base", "builder", "runtime"))],
                       check=True, stdout=subprocess.DEVNULL)
        first_command(VENV / "sbuild")  # (setup.sh writes the file itself; a change since made it stale)
        entries = _entries(pip_bin, args.sbuild)
        print(f"machine load (1/5/15 min): {_load()}; {args.n} rounds, each entry and the floor once a round\n")
        title = "root, exec /bin/true over .simg"
        cases = {title: compare(title, {k: [v, "exec", str(img["simg"]), COMMAND] for k, v in entries.items()},
                                ["unshare", "-m", "-p", "-f", "sh", str(FLOOR / "root-squashfs.sh"), str(img["sqfs"]),
                                 COMMAND], args.n, str(base))}
        cases.update(_unprivileged(args.user, base, img, entries, args.n))
        print()
        in_process(img["simg"], args.n)
        reference(args.n, str(base))
        print(f"machine load after (1/5/15 min): {_load()}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return cases


def run(quick: bool) -> list[dict]:
    """For ``python -m bench``: ``measure`` with ``-n 10`` (quick) or 100, its output kept off
    the harness's; a row per case and entry."""
    import contextlib
    import io

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            cases = measure(["-n", "10" if quick else "100"])
    except SystemExit as e:
        raise RuntimeError(f"runtime_launch: {e.code}") from e
    return [{"name": f"launch: {title}, {name}", "sbuild_s": wall, "alternative": "unshare + the floor shell script",
             "alternative_s": results["floor"][0], "ratio": ratio, "notes": f"CPU ratio {cpu_ratio:.2f}; target ≤ 1.0"}
            for title, results in cases.items() for name, (wall, ratio, _cpu, cpu_ratio) in results.items()
            if name != "floor"]


if __name__ == "__main__":
    sys.exit(main())
