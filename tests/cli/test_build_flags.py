"""Apptainer's build flags beyond sbuild's own (``builder.commands.build_flags``), as a user sees them."""

from __future__ import annotations

import argparse

import pytest

from builder.commands.build_flags import apply_build_flags
from tests.cli.conftest import COMPAT

RECIPE = """\
Bootstrap: busybox
MirrorURL: file:///bin/busybox

%post
    cat /mnt/x/file > /result
"""


@pytest.fixture
def recipe(tmp_path):
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "file").write_text("from the host\n")
    (tmp_path / "r.def").write_text(RECIPE)
    return tmp_path / "r.def"


@pytest.mark.slow
@pytest.mark.parametrize("name", COMPAT)
def test_mount_binds_during_post_from_the_flag_and_its_env_twin(cli, tmp_path, recipe, name):
    spec = f"type=bind,src={tmp_path / 'host'},dst=/mnt/x,ro"
    r = cli(name, "build", "--nv", "--mount", spec, "--sandbox", "sb", recipe)
    assert r.status == 0, r.err
    assert (tmp_path / "sb" / "result").read_text() == "from the host\n"
    assert "WARNING: --nv: sbuild does not bind GPUs" in r.err  # and the build went on
    r = cli(name, "build", "--sandbox", "sb2", recipe, env={"APPTAINER_MOUNT": spec})
    assert r.status == 0, r.err
    assert (tmp_path / "sb2" / "result").read_text() == "from the host\n"


@pytest.mark.slow
def test_reproducible_builds_are_byte_identical_without_source_date_epoch(cli, tmp_path, recipe):
    spec = f"type=bind,src={tmp_path / 'host'},dst=/mnt/x"
    images = []
    for out in ("a.sif", "b.sif"):
        r = cli("apptainer", "build", "--reproducible", "--mount", spec, out, recipe, env={"SOURCE_DATE_EPOCH": ""})
        assert r.status == 0, r.err
        images.append((tmp_path / out).read_bytes())
    assert images[0] == images[1]


def _args(**kw) -> argparse.Namespace:
    base = dict(mount=[], bind=[], arch=None, arch_variant=None, ignore_userns=False, userns=False, nv=False,
                rocm=False, compat32=False, nvccli=False)
    return argparse.Namespace(**{**base, **kw})


def test_arch_variant_and_mount_fold_into_the_build_values(tmp_path):
    args = _args(arch="arm64", arch_variant="v8", mount=[f"type=bind,source={tmp_path}/a:b,destination=/x,readonly"],
                 bind=["/etc:/e"])
    apply_build_flags(args)
    assert args.arch == "arm64/v8"
    assert args.bind == ["/etc:/e", f"{tmp_path}/a\\:b:/x:ro"]  # (the ':' in the path escaped for --bind)
    from runtime.plan import parse_bind

    assert [(b.src, b.dst, b.readonly) for b in parse_bind(args.bind[1])] == [(f"{tmp_path}/a:b", "/x", True)]
