"""Snakemake's apptainer deployment against sbuild under the name ``apptainer`` (issue 13).

Snakemake checks ``apptainer --version``, pulls ``docker://`` containers with ``apptainer pull
--name <md5>.simg URI`` and runs each job as ``apptainer [--quiet --silent] exec --home <cwd>
<--apptainer-args> IMAGE bash -c '<cmd>'`` (reference apptainer-cli.md §8). Two rules on a local
image with ``--containall`` and a bind, then a rule whose container is a ``docker://`` image of
the loopback registry.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import VENV, need_module

pytestmark = pytest.mark.slow

TWO_RULES = '''
rule all:
    input: "b.txt"

rule a:
    output: "a.txt"
    container: "{image}"
    shell: "cat /etc/marker /data/input.txt > {{output}}; echo \\"home=$HOME\\" >> {{output}}"

rule b:
    input: "a.txt"
    output: "b.txt"
    container: "{image}"
    shell: "cat {{input}} > {{output}}; echo \\"host var=${{{{CLIENT_HOST_VAR:-unset}}}}\\" >> {{output}}"
'''

DOCKER_RULE = '''
rule from_registry:
    output: "r.txt"
    container: "docker://{host}/test/bash:1.0"
    shell: "cat /etc/marker > {{output}}; echo \\"shell=$BASH_VERSION\\" | cut -c1-7 >> {{output}}"
'''


def _snakemake(client, snakefile: Path, *extra: str):
    return client.run(VENV / "snakemake", "--cores", "1", "--software-deployment-method", "apptainer",
                      "--snakefile", snakefile, "--directory", client.cwd, *extra)


def test_two_rules_on_a_local_image_with_binds_and_containall(client, bash_image, tmp_path):
    need_module("snakemake")
    data = tmp_path / "data"
    data.mkdir()
    (data / "input.txt").write_text("input data\n")
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(TWO_RULES.format(image=bash_image))
    r = _snakemake(client, snakefile, "--apptainer-args", f"--containall --bind {data}:/data")
    assert r.returncode == 0, r.stdout + r.stderr
    # --containall: --home <cwd> is still bound (the job's outputs land there) and the host
    # environment stays out
    assert (client.cwd / "b.txt").read_text() == f"local\ninput data\nhome={client.cwd}\nhost var=unset\n"


def test_a_docker_container_is_pulled_with_pull_name_and_run(client, client_registry, tmp_path):
    need_module("snakemake")
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(DOCKER_RULE.format(host=client_registry.host))
    prefix = tmp_path / "prefix"
    r = _snakemake(client, snakefile, "--apptainer-prefix", prefix)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (client.cwd / "r.txt").read_text() == "registry\nshell=5\n"
    pulled = list(prefix.glob("*.simg"))
    assert len(pulled) == 1 and pulled[0].read_bytes()[32:41] == b"SIF_MAGIC"  # SIF content, .simg name
