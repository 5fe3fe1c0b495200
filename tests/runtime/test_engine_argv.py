"""The command lines Snakemake, Nextflow, cwltool and spython send (reference apptainer-cli.md
§8), run as sent (from the command word on: the global flags before it are the CLI's), as
root and as an unprivileged user; each asserts what the job would notice (its working
directory, binds, environment, exit code, files it leaves)."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


@pytest.fixture
def image(profile, workdir) -> Path:
    """A busybox sandbox with ``bash`` (busybox's sh) and a Docker-like runscript."""
    root = workdir / "img"
    for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "home", "var/tmp", ".singularity.d/env", "mnt"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in ("sh", "cat", "echo", "pwd", "ls", "env", "touch", "test", "id", "grep", "sort"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "bin" / "bash").write_text('#!/bin/sh\nexec /bin/sh "$@"\n')  # (busybox has no bash applet)
    (root / "bin" / "bash").chmod(0o755)
    (root / ".singularity.d" / "env" / "90-environment.sh").write_text("export FROM_IMAGE=1\n")
    (root / ".singularity.d" / "runscript").write_text('#!/bin/sh\nexec "$@"\n')
    (root / ".singularity.d" / "runscript").chmod(0o755)
    profile.own(workdir)
    return root


def _dir(profile, path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    profile.own(path)
    return path


def test_snakemake_job(profile, image, workdir):
    """``SINGULARITYENV_CONDA_PKGS_DIRS=… <bin> exec --home '<cwd>' <apptainer-args> --bind
    '<searchpath>':'/mnt/snakemake_searchpaths/item_0' --pwd '<shadow>' --bind '<abs>' <img> bash -c '<cmd>'``."""
    cwd, search, shadow = (_dir(profile, workdir / n) for n in ("wf", "search", "wf/.snakemake/shadow/x"))
    (search / "lib.txt").write_text("searched")
    extra = _dir(profile, workdir / "refs")
    (extra / "ref.fa").write_text(">ref")
    cmd = ('echo "$PWD|$HOME|$CONDA_PKGS_DIRS|$THREADS"; cat /mnt/snakemake_searchpaths/item_0/lib.txt; '
           f'cat {extra}/ref.fa; echo done > out.txt')
    r = profile.sbuild("exec", "--home", str(cwd), "--containall", "-B", f"{workdir}/search:/data",
                       "--bind", f"{search}:/mnt/snakemake_searchpaths/item_0", "--pwd", str(shadow),
                       "--bind", str(extra), image, "bash", "-c", cmd, cwd=cwd,
                       env={"SINGULARITYENV_CONDA_PKGS_DIRS": "/tmp/conda/u1", "THREADS": "4"})
    assert r.status == 0, r.err
    # --containall: the host's THREADS is not passed (cleanenv); the injected variable is
    assert r.out.splitlines() == [f"{shadow}|{cwd}|/tmp/conda/u1|", "searched>ref"]
    assert (shadow / "out.txt").read_text() == "done\n"
    r = profile.sbuild("exec", "--home", str(cwd), image, "bash", "-c", "echo $THREADS; exit 3", cwd=cwd,
                       env={"THREADS": "4"})
    assert (r.status, r.out) == (3, "4\n")  # without containment the host env passes through


def test_nextflow_task(profile, image, workdir, rt):
    """``env - PATH="$PATH" APPTAINERENV_TMPDIR=… APPTAINERENV_NXF_TASK_WORKDIR=… apptainer exec
    --no-home --pid -B <workdir> <image> /bin/bash -c "cd $NXF_TASK_WORKDIR; /bin/bash .command.run nxf_trace"``."""
    task = _dir(profile, workdir / "work" / "ab" / "cdef")
    (task / ".command.run").write_text('echo "task in $(pwd) tmp=$TMPDIR debug=$NXF_DEBUG home=$HOME arg=$1"\n'
                                       'touch .exitcode\nexit 0\n')
    argv = ["env", "-u", "HOME", "-u", "USER", "-u", "XDG_RUNTIME_DIR", "APPTAINERENV_TMPDIR=/tmp",
            f"APPTAINERENV_NXF_TASK_WORKDIR={task}", "APPTAINERENV_NXF_DEBUG=0", rt.sbuild,
            "exec", "--no-home", "--pid", "-B", str(task), str(image), "/bin/bash", "-c",
            'cd "$NXF_TASK_WORKDIR"; /bin/bash .command.run nxf_trace']
    r = subprocess.run(profile._argv(*argv), capture_output=True, text=True, cwd=task, timeout=60)  # noqa: SLF001
    home = "/root" if profile.name == "root" else str(profile.home)  # from the passwd entry: env - drops HOME
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"task in {task} tmp=/tmp debug=0 home={home} arg=nxf_trace\n"
    assert (task / ".exitcode").exists()


def test_nextflow_resource_limits(profile, image, workdir):
    r = profile.sbuild("exec", "--cpus", "1", "--memory", "128m", image, "/bin/bash", "-c", "echo ok")
    if profile.name == "root":
        assert (r.status, r.out) == (0, "ok\n"), r.err
    else:
        assert r.status != 0 and "cannot use cgroups" in r.err


def _csv(*fields: str) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()


def test_cwltool_job(profile, image, workdir):
    """``singularity run --contain --ipc --cleanenv --no-eval --userns --home <outdir>:<ctr outdir>
    --mount=type=bind,source=<tmp>,target=/tmp --mount=<csv>,readonly --pwd <ctr outdir> --net
    --network none <image> <args>``, with ``SINGULARITYENV_<K>`` for the CWL env."""
    outdir, tmp, inputs = (_dir(profile, workdir / n) for n in ("out", "tmp", "in,put"))
    (inputs / "a.txt").write_text("input")
    mount_in = _csv("type=bind", f"source={inputs}", "target=/var/lib/cwl/inp", "readonly")
    assert mount_in.count('"') == 2  # the comma in the path is quoted, as Python's csv writes it
    r = profile.sbuild("run", "--contain", "--ipc", "--cleanenv", "--no-eval", "--userns",
                       "--home", f"{outdir}:/xyzout", f"--mount=type=bind,source={tmp},target=/tmp",
                       f"--mount={mount_in}", "--pwd", "/xyzout", "--net", "--network", "none", image,
                       "sh", "-c", 'pwd; echo "$HOME|$CWLV|$HOSTV"; cat /var/lib/cwl/inp/a.txt; echo; '
                                   'echo r > result; touch /tmp/t; touch /var/lib/cwl/inp/x 2>/dev/null || echo ro',
                       env={"SINGULARITYENV_CWLV": "$HOME", "HOSTV": "h"})
    assert r.status == 0, r.err
    assert r.out.splitlines() == ["/xyzout", "/xyzout|$HOME|", "input", "ro"]  # --no-eval: literal
    assert (outdir / "result").read_text() == "r\n" and (tmp / "t").exists()


def test_cwltool_userns_probe_message(profile, image):
    """cwltool's probe: ``singularity exec --userns <hello.simg> true`` counts as supported when
    stderr says ``executable file not found in``."""
    r = profile.sbuild("exec", "--userns", image, "no-such-true")
    assert r.status == 255 and "executable file not found in" in r.err


def test_spython_calls(profile, image, workdir):
    """spython: ``exec --bind b <image> <args>``, ``run <image> <args>``, ``instance start <img>
    <name>`` then ``instance list --json <name>``, ``exec instance://…``, ``instance stop <name>``."""
    data = _dir(profile, workdir / "data")
    (data / "d").write_text("bound")
    r = profile.sbuild("exec", "--bind", f"{data}:/mnt/d", image, "cat", "/mnt/d/d")
    assert (r.status, r.out) == (0, "bound"), r.err
    r = profile.sbuild("run", image, "echo", "ran", "with", "args")
    assert (r.status, r.out) == (0, "ran with args\n"), r.err
    r = profile.sbuild("instance", "start", image, "spy1")
    try:
        assert r.status == 0 and "instance started successfully" in r.err, r.err
        listed = json.loads(profile.sbuild("instance", "list", "--json", "spy1").out)
        assert [(i["instance"], i["img"], i["ip"]) for i in listed["instances"]] == [("spy1", str(image), "")]
        table = profile.sbuild("instance", "list").out.splitlines()
        assert re.split(r"\s{2,}", table[0]) == ["INSTANCE NAME", "PID", "IP", "IMAGE"], table
        rows = [row for row in table[1:] if row.startswith("spy1 ")]  # (other tests' instances may run too)
        assert len(rows) == 1 and rows[0].endswith(f" {image}"), table
        r = profile.sbuild("exec", "instance://spy1", "echo", "joined")
        assert (r.status, r.out) == (0, "joined\n"), r.err
    finally:
        r = profile.sbuild("instance", "stop", "-t", "2", "spy1")
    assert r.status == 0 and "Stopping spy1 instance of" in r.err, r.err
    assert json.loads(profile.sbuild("instance", "list", "--json", "spy1").out) == {"instances": []}


def test_joining_an_instance_enters_its_uts_and_network_namespaces(profile, image):
    r = profile.sbuild("instance", "start", "--hostname", "insthost", "--net", "--network", "none", image, "nsi")
    try:
        assert r.status == 0, r.err
        r = profile.sbuild("exec", "instance://nsi", "sh", "-c", "cat /proc/sys/kernel/hostname; "
                           "tail -n +3 /proc/net/dev | cut -d: -f1")
        assert (r.status, r.out.split()) == (0, ["insthost", "lo"]), r.err
    finally:
        profile.sbuild("instance", "stop", "-t", "2", "nsi")
