"""spython's client against sbuild under the name ``singularity`` (issue 13).

spython runs ``singularity [--quiet] <sub> …`` (reference apptainer-cli.md §8): ``execute``,
``run``, ``inspect`` (``-e -d -l -r -H -t --json``, the first stdout chunk parsed as JSON),
``build``, ``pull --name``, and ``instance start`` / ``instance list --json`` / ``exec
instance://`` / ``instance stop``. Each step runs in a driver process of its own with only
``apptainer``/``singularity`` on PATH; a step that fails records its error instead of
stopping the others, so that the test reports every broken step at once.
"""

from __future__ import annotations

import json

import pytest

from .conftest import VENV, need_module

pytestmark = pytest.mark.slow

DRIVER = r'''
import json, sys, traceback
from spython.main import Client

image, registry, work, out = sys.argv[1:5]
steps = {}

def step(name, fn):
    try:
        steps[name] = fn()
    except BaseException as e:  # spython exits on some errors
        steps[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-800:]}

step("execute", lambda: Client.execute(image, ["cat", "/etc/marker"]))
step("run", lambda: Client.run(image, args=["one", "two"]))
step("inspect", lambda: Client.inspect(image)["attributes"]["labels"])
recipe = f"{work}/Singularity"
with open(recipe, "w") as fh:
    fh.write(f"Bootstrap: localimage\nFrom: {image}\n\n%labels\n    BUILT_BY spython\n")
step("build", lambda: Client.build(recipe=recipe, image=f"{work}/built.sif", sudo=False, quiet=True))
step("built_labels", lambda: Client.inspect(f"{work}/built.sif")["attributes"]["labels"].get("BUILT_BY"))
step("pull", lambda: Client.pull(f"docker://{registry}/test/bash:1.0", name="pulled.sif", pull_folder=work))
step("pulled", lambda: Client.execute(f"{work}/pulled.sif", ["cat", "/etc/marker"]))
instance = None
def start():
    global instance
    instance = Client.instance(image, name="spython-inst", quiet=True)
    return instance.name
step("instance_start", start)
step("instance_list", lambda: [i.name for i in Client.instances(quiet=True)])
step("instance_exec", lambda: Client.execute(instance, ["cat", "/etc/marker"]))
step("instance_stop", lambda: instance.stop(quiet=True))
step("after_stop", lambda: [i.name for i in (Client.instances(quiet=True) or [])])
with open(out, "w") as fh:
    json.dump(steps, fh, indent=1, default=str)
'''


def test_spython_flows(client, bash_image, client_registry, tmp_path):
    need_module("spython")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    out = tmp_path / "steps.json"
    try:
        r = client.run(VENV / "python", driver, bash_image, client_registry.host, client.cwd, out)
        assert out.exists(), r.stdout + r.stderr
        steps = json.loads(out.read_text())
    finally:
        client.run(VENV / "python", "-c", "from spython.main import Client; Client.instance_stopall(quiet=True)")
    expected = {
        "execute": "local\n",
        "run": "runscript got: one two",  # spython strips the output
        "inspect": {"org.example.client": "yes"},
        "build": f"{client.cwd}/built.sif",
        "built_labels": "spython",
        "pull": f"{client.cwd}/pulled.sif",
        "pulled": "registry\n",
        "instance_start": "spython-inst",
        "instance_list": ["spython-inst"],
        "instance_exec": "local\n",
        "instance_stop": 0,
        "after_stop": [],
    }
    got = {k: steps.get(k) for k in expected}
    if "inspect" in steps and isinstance(steps["inspect"], dict) and "error" not in steps["inspect"]:
        got["inspect"] = {k: v for k, v in steps["inspect"].items() if k == "org.example.client"}
    assert got == expected, json.dumps(steps, indent=1)
