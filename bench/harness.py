"""The benchmark harness behind ``python -m bench``: find every benchmark module, run it,
and write ``bench/results.json``, ``docs/PERFORMANCE.md`` and ``docs/performance.png``.

A benchmark module is any module of the ``bench`` package (its file in ``bench/``, name not
starting with ``_``, not this one) with ``run(quick: bool) -> list[dict]``: each dict one
workload, with ``name``, ``sbuild_s`` (sbuild's median, seconds), ``alternative`` (what it is
measured against: the real tool a user would run instead), ``alternative_s``, ``ratio``
(sbuild / alternative, below 1 is faster) and ``notes``; both sides run in the same process,
interleaved, and report medians of several runs (fewer with ``quick``). Modules are found when
the harness runs, so a new file with ``run`` joins the page without being listed anywhere.

A module whose ``run`` raises (a missing tool, no root, no network for a one-time fixture)
costs its workloads, not the page: it gets one row saying why it did not run. The machine is
recorded beside the numbers: cores (those this process may use), memory, CPU model, kernel,
the load average before and after (other work on the machine slows both sides, not the
ratio, as long as it stays steady). The plot needs matplotlib (the ``bench`` extra); without
it the page says so and has no picture.
"""

from __future__ import annotations

import datetime
import importlib
import inspect
import json
import math
import os
import pkgutil
import platform
import textwrap
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

__all__ = ["KEYS", "discover", "run_all", "about", "merged", "machine", "write_outputs", "fmt_ratio"]

KEYS = ("name", "sbuild_s", "alternative", "alternative_s", "ratio", "notes")
_SELF = {"harness", "__main__"}


def discover(package: ModuleType) -> list[tuple[str, Callable[..., list[dict]]]]:
    """``(module name, run)`` for each benchmark module of ``package``, sorted by name.
    A module that fails to import is reported with a ``run`` that raises its error."""
    found = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_") or info.name in _SELF:
            continue
        try:
            module = importlib.import_module(f"{package.__name__}.{info.name}")
        except Exception as e:  # noqa: BLE001 - one broken module must not hide the others
            found.append((info.name, _raiser(e)))
            continue
        run = getattr(module, "run", None)
        if callable(run):
            found.append((info.name, run))
    return sorted(found, key=lambda x: x[0])


def _raiser(error: Exception) -> Callable[..., list[dict]]:
    def run(quick: bool) -> list[dict]:  # noqa: ARG001
        raise error
    return run


def _checked(module: str, rows: object) -> list[dict]:
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise TypeError(f"{module}.run returned {type(rows).__name__}, not a list of dicts")
    out = []
    for r in rows:
        missing = [k for k in KEYS if k not in r]
        if missing:
            raise TypeError(f"{module}.run: row {r.get('name')!r} lacks {', '.join(missing)}")
        row = {k: r[k] for k in KEYS}
        for k in ("sbuild_s", "alternative_s", "ratio"):
            row[k] = None if row[k] is None or math.isnan(float(row[k])) else float(row[k])
        row.update({k: v for k, v in r.items() if k not in KEYS})
        row["module"] = module
        out.append(row)
    return out


def run_all(benches: Iterable[tuple[str, Callable[..., list[dict]]]], quick: bool,
            log: Callable[[str], None] = lambda _: None) -> list[dict]:
    """Every benchmark's rows, in order; a failed one as one row saying why."""
    rows = []
    for module, run in benches:
        log(f"bench: {module} ...")
        start = time.monotonic()
        try:
            got = _checked(module, run(quick=quick))
        except Exception as e:  # noqa: BLE001 - reported in the table
            log("".join(traceback.format_exception_only(type(e), e)).strip())
            got = [{"name": module, "sbuild_s": None, "alternative": "", "alternative_s": None, "ratio": None,
                    "notes": f"not run: {type(e).__name__}: {e}"[:300], "module": module}]
        spent = time.monotonic() - start
        log(f"bench: {module} done in {spent:.0f} s")
        for r in got:
            r.update(measured=_stamp(time.time()), module_s=round(spent, 1))
        rows.extend(got)
    return rows


def _stamp(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def about(benches: Iterable[tuple[str, Callable[..., list[dict]]]]) -> dict[str, str]:
    """Each benchmark module's docstring, first paragraph (what it measures), for the page."""
    out = {}
    for name, run in benches:
        module = inspect.getmodule(run)
        doc = (getattr(module, "__doc__", None) or "").strip()
        out[name] = " ".join(doc.split("\n\n")[0].split())
    return out


def merged(old: dict | None, rows: list[dict], ran: Iterable[str]) -> list[dict]:
    """``rows`` plus the rows of an earlier results.json for modules not run now (``--only``)."""
    ran = set(ran)
    kept = [r for r in (old or {}).get("rows", []) if r.get("module") not in ran]
    return kept + rows


def _meminfo() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    """What the numbers were measured on (the load average is taken at call time)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return {"cores": cores, "cpu": _cpu_model(), "memory_bytes": _meminfo(), "kernel": platform.release(),
            "python": platform.python_version(), "load": list(os.getloadavg())}


def _fmt_s(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"


def fmt_ratio(v: float | None) -> str:
    """A ratio as the page shows it: two decimals, ``–`` when there is none."""
    return "–" if v is None or math.isnan(v) else f"{v:.2f}"


def _table(rows: list[dict]) -> list[str]:
    lines = ["| workload | sbuild | alternative | alternative's time | ratio | notes |", "|---|---|---|---|---|---|"]
    for r in rows:
        cells = [r["name"], _fmt_s(r["sbuild_s"]), r["alternative"], _fmt_s(r["alternative_s"]),
                 fmt_ratio(r["ratio"]), str(r["notes"])]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return lines


def _page(result: dict, plot: str | None) -> str:
    m, end = result["machine"], result["load_end"]
    load = lambda la: "/".join(f"{x:.2f}" for x in la)  # noqa: E731
    lines = [
        "# Performance", "",
        "sbuild against the tool a user would run instead, measured in the same run, both sides",
        "interleaved; each time is the median of several runs. Ratio = sbuild / alternative (below 1:",
        "sbuild is faster). Written by `.venv/bin/python -m bench"
        + (" --quick`" if result["quick"] else "`") + " (see bench/harness.py); do not edit by hand.", "",
        f"Run {result['started']} to {result['finished']} ({'quick: fewer runs' if result['quick'] else 'full'}).", "",
        "## Machine", "",
        f"- {m['cores']} cores ({m['cpu']}), {m['memory_bytes'] / 2**30:.1f} GiB memory, "
        f"Linux {m['kernel']}, Python {m['python']}",
        f"- load average (1/5/15 min): {load(m['load'])} at the start, {load(end)} at the end", "",
        "## Results", "", *_table(result["rows"]), ""]
    if plot:
        lines += [f"![sbuild next to the alternative per workload]({plot})", ""]
    else:
        lines += ["(no plot: matplotlib is not installed, `pip install -e '.[bench]'`, or the plot was turned off)", ""]
    return "\n".join(lines + _modules(result))


def _modules(result: dict) -> list[str]:
    """What each module measures, and when it ran (rows kept from an earlier ``--only`` run
    say so here)."""
    runs: dict[str, tuple[str, float]] = {}
    for r in result["rows"]:
        runs.setdefault(r["module"], (r.get("measured", "?"), r.get("module_s", 0.0)))
    lines = ["## The benchmarks", ""]
    for name, (when, spent) in runs.items():
        doc = result.get("modules", {}).get(name, "")
        lines.append(f"- `bench/{name}.py` (measured {when}, {spent:.0f} s): {doc}".rstrip(": "))
    return lines + [""]


def _plot(rows: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    shown = [r for r in rows if r["sbuild_s"] is not None and r["alternative_s"] is not None]
    fig, ax = plt.subplots(figsize=(11, 0.62 * max(2, len(shown)) + 1.2))
    ys = range(len(shown))
    ax.barh([y - 0.2 for y in ys], [r["sbuild_s"] for r in shown], height=0.4, label="sbuild", color="#2b7bb9")
    ax.barh([y + 0.2 for y in ys], [r["alternative_s"] for r in shown], height=0.4, label="alternative",
            color="#c0c0c0")
    labels = ["\n".join(textwrap.wrap(r["name"].strip(), 48)[:2] + textwrap.wrap("vs " + r["alternative"], 48)[:1])
              for r in shown]
    ax.set_yticks(list(ys), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    values = [v for r in shown for v in (r["sbuild_s"], r["alternative_s"]) if v > 0]
    if values:
        ax.set_xlim(min(values) / 2, max(values) * 3)
    ax.set_xlabel("seconds (median, log scale); ×: sbuild / alternative")
    ax.legend(loc="lower right")
    for y, r in zip(ys, shown):
        ax.text(max(r["sbuild_s"], r["alternative_s"]) * 1.1, y, f"×{r['ratio']:.2f}", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return True


def write_outputs(rows: list[dict], started: float, machine_start: dict, quick: bool, *, results: Path,
                  page: Path, picture: Path, plot: bool = True, modules: dict[str, str] | None = None) -> dict:
    """Write the JSON, the page and (``plot``) the picture, atomically each; returns the JSON's
    content. ``modules``: what each benchmark module measures (``about``)."""
    result = {"started": _stamp(started), "finished": _stamp(time.time()), "quick": quick, "machine": machine_start,
              "load_end": list(os.getloadavg()), "modules": modules or {}, "rows": rows}
    for p in (results, page, picture):
        p.parent.mkdir(parents=True, exist_ok=True)
    _atomic(results, (json.dumps(result, indent=2, allow_nan=False, default=_nan_free) + "\n").encode())
    tmp = picture.with_name(f".{picture.name}.tmp{os.getpid()}.png")
    drawn = plot and _plot(rows, tmp)
    if drawn:
        os.replace(tmp, picture)
    rel = os.path.relpath(picture, page.parent) if drawn else None
    _atomic(page, _page(result, rel).encode())
    return result


def _nan_free(value: object) -> object:
    raise TypeError(f"not JSON: {value!r}")


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
