"""Config mapping (spec §C): env script, runscript, labels.json, and safe writing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from builder.sources.oci import (ImageConfig, Platform, env_script, labels_json, runscript,
                                 write_docker_metadata)


def image(config: dict, **kw) -> ImageConfig:
    return ImageConfig.from_blob(json.dumps({"config": config}).encode(), Platform(), **kw)


def test_env_script_defaults_and_forced_path():
    text = env_script(["PATH=/a:/b", "FOO=bar baz", 'Q=a"b$c', "EMPTY", "1BAD=x", "with-dash=y"])
    assert text == ('#!/bin/sh\n'
                    'export PATH="/a:/b"\n'
                    'export FOO="${FOO:-"bar baz"}"\n'
                    'export Q="${Q:-"a\\\\\\"b\\\\$c"}"\n'
                    'export EMPTY="${EMPTY:-}"\n')


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs /bin/sh")
def test_env_script_values_survive_the_shell(tmp_path):
    script = tmp_path / "env.sh"
    script.write_text(env_script(["FOO=bar baz", "KEEP=image", "PATH=/img/bin"]))
    out = subprocess.run(["sh", "-c", f". {script}; echo \"$FOO|$KEEP|$PATH\""], capture_output=True, text=True,
                         env={"KEEP": "host", "PATH": "/usr/bin:/bin"}).stdout
    assert out == "bar baz|host|/img/bin\n"


@pytest.mark.parametrize("entrypoint,cmd,args,expect", [
    (["/bin/echo", "ep"], ["default"], [], "ep default"),
    (["/bin/echo", "ep"], ["default"], ["given", "two words"], "ep given two words"),
    ([], ["/bin/echo", "cmd only"], [], "cmd only"),
    ([], ["/bin/echo", "cmd only"], ["/bin/echo", "replaced"], "replaced"),
    (["/bin/echo", "it's"], [], ["x"], "it's x"),
])
@pytest.mark.parametrize("no_eval", [False, True])
def test_runscript_runs_entrypoint_and_cmd(tmp_path, entrypoint, cmd, args, expect, no_eval):
    script = tmp_path / "runscript"
    script.write_text(runscript(entrypoint, cmd))
    env = {"PATH": "/usr/bin:/bin", **({"SINGULARITY_NO_EVAL": "1"} if no_eval else {})}
    out = subprocess.run(["sh", str(script), *args], capture_output=True, text=True, env=env)
    assert out.stdout == expect + "\n", out.stderr


def test_labels_json_is_go_marshal_indent():
    assert labels_json(None) == "{}"  # not Go's "null": an image without labels has an empty object
    assert labels_json({}) == "{}"
    assert labels_json({"b": "<x & y>", "a": "é"}) == '{\n\t"a": "é",\n\t"b": "\\u003cx \\u0026 y\\u003e"\n}'


def test_write_docker_metadata_and_hostile_symlinks(tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "hosts").write_text("127.0.0.1 image\n")
    host = tmp_path / "host"
    host.mkdir()
    (host / "resolv.conf").write_text("keep me")
    os.symlink(str(host / "resolv.conf"), rootfs / "etc" / "resolv.conf")
    os.symlink(str(host), rootfs / ".singularity.d")
    write_docker_metadata(rootfs, image({"Env": ["A=1"], "Cmd": ["sh"], "Labels": {"k": "v"}}))
    assert (host / "resolv.conf").read_text() == "keep me" and sorted(os.listdir(host)) == ["resolv.conf"]
    meta = host / "resolv.conf"  # untouched; metadata went inside the rootfs (symlink read as in-root path)
    assert meta.exists()
    sd = rootfs / str(host).lstrip("/")
    assert (sd / "env" / "10-docker2singularity.sh").read_text().endswith('export A="${A:-"1"}"\n')
    assert json.loads((sd / "labels.json").read_text()) == {"k": "v"}
    assert os.stat(sd / "runscript").st_mode & 0o777 == 0o755
    assert (rootfs / "etc" / "hosts").read_text() == ""


def test_oci_config_json_is_what_apptainer_stores():
    """json.Marshal of go-containerregistry's v1.Config: its field order, omitempty, sorted
    maps, <>& escaped, unknown keys dropped (Apptainer 1.5 ``insertOCIConfig``)."""
    from builder.sources.oci import oci_config_json

    cfg = {"Labels": {"z": "1", "a": "<&>"}, "Env": ["PATH=/bin"], "Cmd": ["sh"], "Entrypoint": None,
           "User": "", "WorkingDir": "/w", "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}},
           "StopSignal": "SIGTERM", "Memory": 0, "Healthcheck": {"Test": ["NONE"], "Retries": 3},
           "OnBuild": [], "ArgsEscaped": True, "Shell": ["/bin/sh", "-c"]}
    assert oci_config_json(image(cfg)) == (
        b'{"Cmd":["sh"],"Healthcheck":{"Test":["NONE"],"Retries":3},"Env":["PATH=/bin"],'
        b'"Labels":{"a":"\\u003c\\u0026\\u003e","z":"1"},"Volumes":{"/data":{}},"WorkingDir":"/w",'
        b'"ExposedPorts":{"80/tcp":{}},"ArgsEscaped":true,"StopSignal":"SIGTERM","Shell":["/bin/sh","-c"]}')
    assert oci_config_json(image({})) == b"{}"
