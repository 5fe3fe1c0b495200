"""Credential lookup and challenge parsing (the registry round trips are in test_pull.py)."""

from __future__ import annotations

import base64
import json
import os
import subprocess

import pytest

from builder.sources.oci import parse_reference
from builder.sources.oci.auth import HUB_KEY, Credentials, find_credentials, parse_challenges
from builder.sources.oci.errors import ReferenceError_, redact


def test_challenge_with_quoted_commas():
    got = parse_challenges('Bearer realm="https://auth.example/token",service="reg",'
                           'scope="repository:a/b:pull,push", Basic realm="x"')
    assert got == [("bearer", {"realm": "https://auth.example/token", "service": "reg",
                               "scope": "repository:a/b:pull,push"}), ("basic", {"realm": "x"})]


@pytest.mark.parametrize("text,expect", [
    ("ubuntu", "docker.io/library/ubuntu:latest"),
    ("docker://user/img:1", "docker.io/user/img:1"),
    ("index.docker.io/ubuntu", "docker.io/library/ubuntu:latest"),
    ("localhost/x", "localhost/x:latest"),
    ("127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b:c"),
    ("ghcr.io/o/r:t@sha256:" + "a" * 64, "ghcr.io/o/r@sha256:" + "a" * 64),
])
def test_reference_defaults(text, expect):
    assert str(parse_reference(text)) == expect


@pytest.mark.parametrize("bad", ["Upper/Case", "a//b", "x:bad tag", "x@sha256:short"])
def test_bad_references(bad):
    with pytest.raises(ReferenceError_):
        parse_reference(bad)


def test_docker_hub_key_and_password_with_colon(tmp_path):
    auth = base64.b64encode(b"me:pa:ss").decode()
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text(json.dumps({"auths": {HUB_KEY: {"auth": auth}}}))
    creds = find_credentials("docker.io", environ={"HOME": str(tmp_path)})
    assert creds == Credentials("me", "pa:ss")
    assert "pa:ss" not in repr(creds)


def test_credential_helper_is_asked_on_stdin(tmp_path, monkeypatch):
    helper = tmp_path / "bin" / "docker-credential-fake"
    helper.parent.mkdir()
    helper.write_text('#!/bin/sh\nread server\n[ "$server" = "reg.example:5000" ] || exit 1\n'
                      'echo \'{"ServerURL":"x","Username":"<token>","Secret":"idtok"}\'\n')
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}:{os.environ['PATH']}")
    cfg = tmp_path / "auth.json"
    cfg.write_text(json.dumps({"credHelpers": {"reg.example:5000": "fake"}}))
    creds = find_credentials("reg.example:5000", authfile=cfg, environ={}, runner=subprocess.run)
    assert creds.identity_token == "idtok" and not creds.username


def test_env_credentials_win_over_files(tmp_path):
    env = {"HOME": str(tmp_path), "SINGULARITY_DOCKER_USERNAME": "u", "SINGULARITY_DOCKER_PASSWORD": "p"}
    assert find_credentials("x.io", environ=env) == Credentials("u", "p")


def test_redact_hides_secrets():
    text = redact("GET https://user:pw@h/x?token=abc&X-Amz-Signature=def Authorization: Bearer zzz")
    assert "pw" not in text and "abc" not in text and "def" not in text and "zzz" not in text
