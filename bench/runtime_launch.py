#!/usr/bin/env python3
"""Benchmark: container launch latency of ``sbuild exec`` against the shell floor scripts.

Compares, in the same run and interleaved (so that machine load hits both alike):

1. root:  ``sbuild exec IMG.simg /bin/true``  vs
          ``unshare -m -p -f sh floor/root-squashfs.sh IMG.sqfs true``
2. unprivileged (as --user, default sbtester): ``sbuild exec SANDBOX /bin/true``  vs
          ``unshare -r -m -p -f sh floor/unpriv-overlay.sh SANDBOX WORK true``
3. the runtime alone: ``run_action`` called in a warm Python process (no interpreter start,
   no CLI parsing), root over the .simg, to show what the CLI around it costs.

Prints the median and quartiles of each and the ratio sbuild/floor (≤ 1.0 meets the
target), the machine load before and after, and the bare interpreter start for reference.
The project's modules are byte-compiled first (as an installed package's are), so that
neither side of a comparison pays for compiling them. Run as root:
.venv/bin/python bench/runtime_launch.py [-n 40] [--user sbtester]
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
SBUILD = str(ROOT / ".venv" / "bin" / "sbuild")
PYTHON = str(ROOT / ".venv" / "bin" / "python")


def build(base: Path) -> dict[str, Path]:
    sb = base / "sandbox"
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "home", "var/tmp"):
        (sb / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", sb / "bin" / "busybox")
    for applet in ("sh", "true"):
        (sb / "bin" / applet).symlink_to("busybox")
    (sb / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    sqfs = base / "img.sqfs"
    subprocess.run(["mksquashfs", str(sb), str(sqfs), "-noappend", "-quiet", "-no-progress"], check=True,
                   stdout=subprocess.DEVNULL)
    simg = base / "img.simg"
    simg.write_bytes(b"#!/usr/bin/env run-singularity\n" + sqfs.read_bytes())
    return {"sandbox": sb, "sqfs": sqfs, "simg": simg}


def timed(argv: list[str], cwd: str, env: dict[str, str] | None = None) -> float:
    t = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(argv)}: {r.stderr.decode()[-500:]}")
    return elapsed


def compare(name: str, ours: list[str], floor: list[str], n: int, cwd: str) -> float:
    # the root floor script makes a mktemp directory per run and leaves it: keep those in
    # the bench's own directory (a /tmp with thousands of them would slow the floor down)
    env = {**os.environ, "TMPDIR": cwd}
    a, b = [], []
    for _ in range(3):  # warm caches
        timed(ours, cwd, env), timed(floor, cwd, env)
    for i in range(n):
        if i % 2:
            a.append(timed(ours, cwd, env)), b.append(timed(floor, cwd, env))
        else:
            b.append(timed(floor, cwd, env)), a.append(timed(ours, cwd, env))
    ma, mb = statistics.median(a), statistics.median(b)
    qa, qb = statistics.quantiles(a, n=4), statistics.quantiles(b, n=4)
    print(f"{name}:")
    print(f"  sbuild  median {ma * 1000:6.1f} ms  (q1 {qa[0] * 1000:.1f}, q3 {qa[2] * 1000:.1f})")
    print(f"  floor   median {mb * 1000:6.1f} ms  (q1 {qb[0] * 1000:.1f}, q3 {qb[2] * 1000:.1f})")
    print(f"  ratio sbuild/floor = {ma / mb:.2f}")
    return ma / mb


def reference(n: int, cwd: str) -> None:
    times = sorted(timed([PYTHON, "-S", "-c", "pass"], cwd) for _ in range(n))
    print(f"for reference: python -S -c pass: median {statistics.median(times) * 1000:.1f} ms")


def in_process(simg: Path, n: int) -> None:
    sys.path.insert(0, str(ROOT))
    from runtime import run_action
    from runtime.description import RunOptions

    opts = RunOptions()
    times = []
    devnull = os.open(os.devnull, os.O_WRONLY)
    opts = RunOptions(stdio=(None, devnull, None))
    for _ in range(n + 3):
        t = time.perf_counter()
        run_action(str(simg), "exec", ["/bin/true"], opts)
        times.append(time.perf_counter() - t)
    print(f"runtime only (warm process, root, .simg): median {statistics.median(times[3:]) * 1000:.1f} ms")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=40, help="runs of each (default 40)")
    ap.add_argument("--user", default="sbtester", help="unprivileged user for case 2 (default sbtester)")
    ap.add_argument("--sbuild", default=SBUILD, help="the sbuild command to time (default: the venv's)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (case 1 needs it; case 2 switches to --user)")
    base = Path(tempfile.mkdtemp(prefix="sbuild-bench-", dir="/tmp"))
    base.chmod(0o755)
    try:
        img = build(base)
        subprocess.run([PYTHON, "-m", "compileall", "-q", *(str(ROOT / d) for d in ("base", "builder", "runtime"))],
                       check=True, stdout=subprocess.DEVNULL)
        print(f"machine load (1/5/15 min): {_load()}; {args.n} interleaved runs each\n")
        compare("root, exec /bin/true over .simg",
                [args.sbuild, "exec", str(img["simg"]), "/bin/true"],
                ["unshare", "-m", "-p", "-f", "sh", str(FLOOR / "root-squashfs.sh"), str(img["sqfs"]), "true"],
                args.n, str(base))
        try:
            import pwd

            u = pwd.getpwnam(args.user)
        except KeyError:
            print(f"\nunprivileged case skipped: no user {args.user!r} (the tests create sbtester)")
        else:
            work = base / "w"
            for d in ("upper", "work", "merged"):
                (work / d).mkdir(parents=True)
            subprocess.run(["chown", "-R", f"{u.pw_uid}:{u.pw_gid}", str(base)], check=True)
            as_user = ["setpriv", f"--reuid={u.pw_uid}", f"--regid={u.pw_gid}", "--init-groups", "--reset-env",
                       "env", f"HOME={u.pw_dir}", "PATH=/usr/bin:/bin:/usr/sbin:/sbin"]
            print()
            compare("unprivileged, exec /bin/true over a sandbox",
                    as_user + [args.sbuild, "exec", str(img["sandbox"]), "/bin/true"],
                    as_user + ["unshare", "-r", "-m", "-p", "-f", "sh", str(FLOOR / "unpriv-overlay.sh"),
                               str(img["sandbox"]), str(work), "true"],
                    args.n, str(base))
        print()
        in_process(img["simg"], args.n)
        reference(args.n, str(base))
        print(f"machine load after (1/5/15 min): {_load()}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


def run(quick: bool) -> list[dict]:
    """For ``python -m bench``: ``main`` with ``-n 10`` (quick) or 40, its printed medians
    read back (so this follows whatever ``main`` measures)."""
    import contextlib
    import io
    import re

    out, argv = io.StringIO(), sys.argv
    sys.argv = [argv[0], "-n", "10" if quick else "40"]
    try:
        with contextlib.redirect_stdout(out):
            main()
    except SystemExit as e:
        raise RuntimeError(f"runtime_launch: {e.code}") from e
    finally:
        sys.argv = argv
    found = re.findall(r"^(\S.*):\n  sbuild  median +([\d.]+) ms.*\n  floor   median +([\d.]+) ms", out.getvalue(), re.M)
    if not found:
        raise RuntimeError("runtime_launch printed no medians: " + out.getvalue()[-300:])
    return [{"name": f"launch: {name}", "sbuild_s": float(a) / 1000, "alternative": "unshare + the floor shell script",
             "alternative_s": float(b) / 1000, "ratio": float(a) / float(b), "notes": "target ≤ 1.0"}
            for name, a, b in found]


if __name__ == "__main__":
    sys.exit(main())
