"""Run the reliability scenarios and write docs/RELIABILITY.md from what ran.

Every test marked ``@pytest.mark.scenario(CLASS)`` (``tests/reliability``, ``tests/fuzz``) is
counted by class and privilege mode (the ``root``/``rootless``/``user``/``userns`` word in its
id); ``tests/conftest.py`` records each outcome into the JSON file named by
``SBUILD_RELIABILITY_JSON``. A scenario held when its test passed; skipped ones are listed
apart. Run from the checkout, as root (the unprivileged runs need it):

    .venv/bin/python tests/reliability/report.py            # runs pytest, then writes the doc
    .venv/bin/python tests/reliability/report.py --from F   # the doc from a JSON file of a run
    ... --bench B   # with the long fuzz run's figures (B: the output of python -m bench.fuzz_long)
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "RELIABILITY.md"
COMMAND = ".venv/bin/python tests/reliability/report.py"
PYTEST = [sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider", "tests/reliability", "tests/fuzz"]

WHAT = {
    "hostile layers": "layer tars built in memory (names and links climbing out, symlinks and hardlinks "
                      "through every kind of parent, whiteouts aimed outside, devices, NUL and invalid "
                      "bytes, header overflow, sparse claims, bounded bombs, deep trees, duplicates, "
                      "replacements), a canary beside the rootfs",
    "hostile images": "damaged SIF (descriptors out of range or overlapping), squashfs (superblock, tables, "
                      "data), ext3 garbage, truncated and empty files through inspect, exec and build",
    "hostile base images (runtime mounts, --bind)": "image symlinks at /dev, /etc/hosts, /etc/resolv.conf, "
                                                    "/etc, /home, /root, /tmp (the cwd), /proc, /sys and "
                                                    "--bind destinations, to a host canary or to one another "
                                                    "(/dev -> /proc, /tmp -> /dev, /var/tmp -> /tmp...)",
    "registry faults": "5xx, 429 with Retry-After, resets and truncation mid-blob, wrong bodies and "
                       "manifests, stalls before headers and mid-body, through a proxy before docker-registry "
                       "(rootless: the user's own default cache)",
    "credentials": "config.json, env, --docker-username/--docker-password, --docker-login on a pty, library "
                   "tokens (env, token file); right and wrong secrets at -d / SBUILD_DEBUG / -v",
    "interruption": "SIGINT (group) and SIGKILL (sbuild) at 20 seeded points of a docker build",
    "concurrency": "4 builds on one cache with cache clean looping",
    "fuzzing": "hypothesis: recipe parser, SIF and squashfs readers, reference parser, layer applier "
               "(derandomized, SBUILD_FUZZ_EXAMPLES per target, default 120; the applier also rootless)",
}
# classes (or parts) that run in one privilege mode only, and why
ONE_MODE = {
    "fuzzing": "the recipe, SIF, squashfs and reference parsers only read bytes in the test process: "
               "nothing of theirs depends on who runs them, so they run once (as root); the layer applier, "
               "which writes a tree, runs rootless too",
}
# what these scenarios found, fixed in the code, and the regression test named after each
FOUND = [
    ("rootless: a 0000 directory's mode was set before its children's times (internal PermissionError)",
     "test_hostile_layers.py::test_rootless_read_only_directory_tree_gets_its_times_before_its_modes"),
    ("a base-256 tar size of 2^80 was reported as 2^60 MiB written",
     "test_hostile_layers.py::test_size_beyond_off_t_is_refused_as_out_of_range"),
    ("a squashfs root inode outside its table mounted/extracted as an empty tree, cached, then 'no such file'",
     "images/test_hostile_images.py::test_squashfs_root_inode_outside_its_table_is_refused_before_mounting"),
    ("unsquashfs's exit 0 with an empty tree was taken for a sound extraction",
     "images/test_hostile_images.py::test_unsquashfs_extracting_an_empty_tree_from_a_full_image_is_an_error"),
    ("the container's PATH search imported `warnings` after pivot: 'ModuleNotFoundError' as the error",
     "images/test_hostile_images.py::test_exec_of_a_command_missing_from_an_empty_rootfs_says_no_such_file"),
    ("an unwritable extraction cache was an internal PermissionError (now: a warning, the run goes on without the cache, as in Apptainer)",
     "images/test_hostile_images.py::test_an_image_cache_that_cannot_be_created_is_a_clear_warning"),
    ("PySquashfsImage's from_file leaked its file when it refused an image", "tests/fuzz (squashfs reader)"),
    ("a manifest whose descriptors lack a digest was internal KeyError 'digest' (and a digest named a cache path "
     "unchecked)", "test_registry_faults.py::test_manifest_whose_descriptors_lack_a_digest_is_not_an_internal_keyerror"),
    ("the URI image cache (merged with `pull` through it) pinned the digest of whatever a tag served, unchecked: "
     "a wrong manifest failed as 'HTTP 404 manifest unknown'",
     "test_registry_faults.py::test_a_tag_whose_manifest_is_invalid_is_refused_before_its_digest_is_pinned"),
    ("image links that make one of the runtime's mounts hide or cover its /dev, /proc or /sys (/dev -> /proc, "
     "/dev -> /tmp/dev, /tmp -> /dev, /etc/hosts -> /dev/null) left the container without them, silently",
     "images/test_hostile_mounts.py (dev-to-proc, dev-to-tmp, tmp-to-dev, ... : refused with the links named)"),
    ("a bundle whose removal was cut short had lost its owner record first: never reclaimed",
     "test_interruption.py::test_a_removal_cut_short_keeps_the_owner_record_for_the_next_reclaim"),
    ("the temp beside TARGET, SIGKILLed while being removed, stayed for good",
     "test_interruption.py::test_the_temp_beside_target_keeps_its_owner_record_until_it_is_empty"),
    ("partial downloads of a killed pull were removed only by `cache clean`",
     "test_interruption.py::test_the_partial_download_of_a_killed_pull_is_removed_by_the_next_pull"),
    ("Ctrl-C during a fork printed 'Exception ignored … Traceback'; during imports a KeyboardInterrupt traceback",
     "test_interruption.py (points 00, 18)"),
]
KNOWN = [
    "Each runtime mount destination is resolved inside the container root (base.securejoin), as Apptainer's "
    "EvalRelative does, and a missing one is created in the session's upper layer, never on the host: an image "
    "whose /dev names another directory gets the runtime's /dev there. Where Apptainer goes further and mounts "
    "over its own /dev, /proc or /sys (links making two of them meet), sbuild refuses with an error naming the "
    "links; /tmp or home hidden by one another is left as Apptainer leaves it.",
    "Rootless, a SIF's dev/ is not extracted (devices cannot be made): a /dev link planted in a SIF is an empty "
    "directory there, so those scenarios run instead of being refused.",
]
MUST = "0 host writes, 0 hangs, 0 internal errors, 0 partial images used, 0 leftovers after a subsequent build"


def _mode(nodeid: str) -> str:
    """The privilege mode of a test: a word of its parameters, else of its name, else root."""
    name, _, params = nodeid.rpartition("::")[2].partition("[")
    for text in (params, name):
        for word, mode in (("rootless", "rootless"), ("userns", "userns"), ("user", "rootless"), ("root", "root")):
            if re.search(rf"(^|[-\]\[_]){word}($|[-\]\[_])", text):
                return mode
    return "root" if os.geteuid() == 0 else "rootless"


def render(results: list[dict], when: str, seconds: float | None, bench: list[dict] | None = None) -> str:
    """The Markdown of docs/RELIABILITY.md for ``results`` (the conftest hook's records)."""
    table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    failed = []
    for r in results:
        c = table[r["class"]]
        c["ran" if r["outcome"] != "skipped" else "skipped"] += 1
        c["held" if r["outcome"] == "passed" else "not held" if r["outcome"] != "skipped" else "-"] += 1
        if r["outcome"] != "skipped":
            c[f"ran {_mode(r['test'])}"] += 1
        if r["outcome"] == "failed":
            failed.append(r["test"])
    lines = ["# Reliability figures", "",
             f"Generated by `{COMMAND}` (as root, from the checkout) on {when}"
             + (f" in {seconds:.0f} s" if seconds else "") + "; it runs",
             "`pytest -n 2 tests/reliability tests/fuzz` and counts every test marked `scenario(CLASS)`.",
             "A scenario *held* when its test passed: it checks what the class promises, among",
             f"{MUST}, as root and rootless (issue 9).", "",
             "| class | what | ran | held | root | rootless | userns | skipped |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    totals = collections.Counter()
    for cls in sorted(table, key=lambda k: list(WHAT).index(k) if k in WHAT else 99):
        c = table[cls]
        totals.update(c)
        lines.append(f"| {cls} | {WHAT.get(cls, '')} | {c['ran']} | {c['held']} | {c['ran root']} | "
                     f"{c['ran rootless']} | {c['ran userns']} | {c['skipped']} |")
    lines.append(f"| **all** | | **{totals['ran']}** | **{totals['held']}** | {totals['ran root']} | "
                 f"{totals['ran rootless']} | {totals['ran userns']} | {totals['skipped']} |")
    lines += ["", "Every class runs as root and rootless (the unprivileged user `sbtester`; *userns*: that user inside "
              "the runtime's user namespace); in one mode only:", ""]
    lines += [f"- {cls}: {why}" for cls, why in ONE_MODE.items()]
    lines += ["", "Not held: " + (", ".join(f"`{t}`" for t in failed) if failed else "none."), "",
              "## Found and fixed", "", "Each fix has a regression test named after it (in `tests/reliability/`):", ""]
    lines += [f"- {what} — `{test}`" for what, test in FOUND]
    lines += ["", "## Known limits", ""] + [f"- {k}" for k in KNOWN]
    lines += ["", "## Long fuzz run", "", "`.venv/bin/python -m bench.fuzz_long` (5000 random examples per target; "
              "times in seconds per 100 inputs):", ""]
    if bench:
        lines += ["| target | sbuild s/100 | alternative | its s/100 | ratio | notes |", "|---|---:|---|---:|---:|---|"]
        lines += [f"| {b['name']} | {b['sbuild_s']} | {b['alternative'] or '-'} | {b['alternative_s'] or '-'} | "
                  f"{b['ratio'] or '-'} | {b['notes']} |" for b in bench]
    else:
        lines.append("(not run with this report: pass its output with `--bench FILE`)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="source", help="a JSON file of an earlier run instead of running pytest")
    ap.add_argument("--bench", help="the output of python -m bench.fuzz_long (JSON lines) to include")
    args = ap.parse_args(argv)
    bench = [json.loads(x) for x in Path(args.bench).read_text().splitlines() if x.startswith("{")] if args.bench else None
    seconds = None
    if args.source:
        results = json.loads(Path(args.source).read_text())
    else:
        fd, path = tempfile.mkstemp(prefix="sbuild-reliability-", suffix=".json")
        os.close(fd)
        started = datetime.datetime.now()
        proc = subprocess.run(PYTEST, cwd=ROOT, env={**os.environ, "SBUILD_RELIABILITY_JSON": path})
        seconds = (datetime.datetime.now() - started).total_seconds()
        results = json.loads(Path(path).read_text())
        print(f"the run's records: {path} (render again with --from)")
        if proc.returncode not in (0, 1):
            return proc.returncode
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render(results, when, seconds, bench))
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
