"""`apptainer build --docker-username U --docker-password P TARGET docker://…` against a real
htpasswd registry on loopback (Apptainer's hidden credential flags; their env twins are
``builder.sources.oci.auth``'s)."""

from __future__ import annotations

import contextlib
import io

import servers
from .conftest import REPO

from builder.cli import main


def _run(*argv: str, prog: str = "apptainer") -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main(list(argv), prog=prog)
    return status, err.getvalue()


def test_build_takes_docker_credentials_as_flags(basic_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("APPTAINER_CACHEDIR", str(tmp_path / "cache"))
    for key in ("DOCKER_USERNAME", "DOCKER_PASSWORD"):
        for prefix in ("APPTAINER_", "SINGULARITY_", ""):
            monkeypatch.delenv(prefix + key, raising=False)
    ref = f"docker://{basic_registry.host}/{REPO}:1.0"
    status, err = _run("build", "--sandbox", str(tmp_path / "denied"), ref)
    assert status == 255 and "\nFATAL:   " in err and "401" in err
    assert not (tmp_path / "denied").exists()
    status, err = _run("build", "--sandbox", "--docker-username", servers.USER, "--docker-password",
                       servers.PASSWORD, str(tmp_path / "sb"), ref)
    assert status == 0, err
    assert (tmp_path / "sb" / "hello.txt").exists()
    assert servers.PASSWORD not in err
    status, err = _run("build", "--remote", str(tmp_path / "r.sif"), ref)
    assert status == 255 and "--remote" in err and not (tmp_path / "r.sif").exists()
