"""Apptainer's parsing rules and messages under its names; sbuild's own under ``sbuild``.

Reference apptainer-cli.md §1-3: global flags only before the command, parsing that stops at
the first positional, env twins with Apptainer's precedence and strict booleans, ``Error for
command "x": …`` (stderr) with the usage on stdout and exit 1, ``FATAL:   `` and exit 255.
"""

from __future__ import annotations

import argparse
import logging

import pytest

from base.errors import UsageError
from builder.commands.compat import GLOBAL_FLAGS, level, prefix
from builder.commands.flags import add_flag, apply_env, non_interspersed, parse_leading
from tests.cli.conftest import COMPAT, NAMES


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("word", ["verify", "sign", "apps", "verfy", "key"])
def test_an_unknown_or_unavailable_command_is_never_a_build(cli, tmp_path, busybox_image, name, word):
    """Regression: `sbuild verify img.sif` wrote a file named `verify` and exited 0."""
    image = tmp_path / "img.sif"
    image.write_bytes(busybox_image["simg"].read_bytes())
    before = sorted(p.name for p in tmp_path.iterdir())
    r = cli(name, word, "img.sif")
    assert r.status != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    assert not (tmp_path / word).exists()
    if word in ("verify", "sign", "key"):  # real commands now (builder.signing): they refuse a .simg
        assert "not available" not in r.err and "unknown command" not in r.err
    else:
        assert "unknown command" in r.err
    if word == "verfy":
        assert "verify" in r.err  # did you mean
    if word == "apps":  # not an Apptainer 1.5 command (reference §4.5): where its answer is
        assert ("Did you mean this?\n\tinspect --list-apps" if name in COMPAT
                else "did you mean 'inspect --list-apps'?") in r.err


@pytest.mark.parametrize("name", COMPAT)
def test_unknown_command_as_apptainer_says_it(cli, name):
    r = cli(name, "biuld", "a", "b")
    assert r.status == 1
    assert r.err.startswith(f'Error for command "{name}": unknown command "biuld" for "{name}"')
    assert "Did you mean this?\n\tbuild" in r.err
    assert f"Run '{name} --help'" in r.out


def test_sbuild_source_target_shortcut_never_takes_a_command_name(cli, tmp_path, busybox_image):
    (tmp_path / "out").mkdir()
    for word in ("verify", "inspekt", "apps"):
        r = cli("sbuild", "-F", word, busybox_image["simg"])
        assert r.status == 2 and f"unknown command '{word}'" in r.err
        assert not (tmp_path / word).exists()
    r = cli("sbuild", busybox_image["simg"], "out/copy.simg")
    assert r.status == 0, r.err
    assert (tmp_path / "out" / "copy.simg").read_bytes() == busybox_image["simg"].read_bytes()
    r = cli("sbuild", "plain", busybox_image["simg"])  # TARGET SOURCE, a bare name: still a build
    assert r.status == 0, r.err
    assert (tmp_path / "plain").read_bytes() == busybox_image["simg"].read_bytes()


@pytest.mark.parametrize("name", COMPAT)
def test_flag_errors_as_apptainer(cli, name):
    r = cli(name, "inspect", "--bogus", "img.sif")
    assert r.status == 1
    assert r.err == 'Error for command "inspect": unknown flag: --bogus\n'
    assert "usage:" in r.out and f"Run '{name} inspect --help'" in r.out
    r = cli(name, "build", "only-one")
    assert r.status == 1 and r.err.startswith('Error for command "build": ')


def test_flag_errors_as_sbuild_keep_argparse_and_exit_2(cli):
    r = cli("sbuild", "inspect", "--bogus", "img.sif")
    assert r.status == 2 and "sbuild inspect: error: unrecognized arguments: --bogus" in r.err and r.out == ""


@pytest.mark.parametrize("name", COMPAT)
def test_global_flags_only_before_the_command(cli, name, busybox_image):
    sandbox = busybox_image["sandbox"]
    r = cli(name, "-q", "--silent", "inspect", "--json", sandbox)  # Snakemake sends --quiet --silent
    assert r.status == 0 and '"A": "1"' in r.out
    r = cli(name, "inspect", "--silent", sandbox)  # after the command it is not a global flag
    assert r.status == 1 and "--silent" in r.err
    r = cli(name, "--nope", "inspect", sandbox)
    assert r.status == 1


def test_sbuild_reads_global_flags_before_a_command_word(cli, tmp_path, busybox_image):
    """``sbuild -d exec IMG`` is Apptainer's --debug, not an implicit build of ``-d``; where no
    command word follows (``sbuild -s SOURCE DIR``) the flags stay the shortcut build's."""
    r = cli("sbuild", "-d", "exec", busybox_image["simg"], "true")
    assert r.status == 0 and "unrecognized arguments" not in r.err, r.err
    r = cli("sbuild", "-q", "inspect", "--json", busybox_image["sandbox"])
    assert r.status == 0 and '"A": "1"' in r.out, r.err
    r = cli("sbuild", "-s", busybox_image["simg"], "sbx")
    assert r.status == 0 and (tmp_path / "sbx" / "bin").is_dir(), r.err
    r = cli("sbuild", "-d", "bogus-word", "x")
    assert r.status == 2 and not (tmp_path / "bogus-word").exists()


@pytest.mark.parametrize("name", COMPAT)
def test_fatal_is_255_and_formatted(cli, name, tmp_path):
    r = cli(name, "inspect", tmp_path / "missing.sif")
    assert r.status == 255
    assert r.err.startswith("FATAL:   ")
    r = cli(name, "-s", "inspect", tmp_path / "missing.sif")  # --silent still shows FATAL
    assert r.status == 255 and r.err.startswith("FATAL:   ")


def test_apptainer_build_is_target_then_source_strictly(cli, busybox_image, tmp_path):
    """Both exist: sbuild reads SOURCE TARGET, Apptainer's names TARGET SOURCE."""
    first, second = tmp_path / "first.simg", tmp_path / "second.simg"
    first.write_bytes(busybox_image["simg"].read_bytes())
    second.write_bytes(b"not an image")
    r = cli("apptainer", "build", "-F", first, second)
    assert r.status == 255 and first.read_bytes() == busybox_image["simg"].read_bytes()  # second is no image
    r = cli("apptainer", "build", "-F", second, first)
    assert r.status == 0, r.err
    assert second.read_bytes() == first.read_bytes()


def test_info_and_warning_lines_follow_the_message_level(cli, busybox_image, tmp_path):
    out = tmp_path / "o.sif"
    r = cli("apptainer", "build", out, busybox_image["simg"])
    assert r.status == 0, r.err
    assert any(line.startswith("INFO:    ") for line in r.err.splitlines()), r.err
    r = cli("apptainer", "--quiet", "build", "-F", out, busybox_image["simg"])
    assert r.status == 0 and "INFO:" not in r.err
    r = cli("apptainer", "build", "-F", out, busybox_image["simg"], env={"SINGULARITY_FORCE": "1"})
    assert r.status == 0, r.err
    r = cli("apptainer", "build", out, busybox_image["simg"], env={"SINGULARITY_FORCE": "true"})
    assert r.status == 0, r.err  # SINGULARITY_FORCE is --force's twin ...
    assert "INFO:    Environment variable SINGULARITY_FORCE is set, but APPTAINER_FORCE is preferred" in r.err
    r = cli("apptainer", "build", out, busybox_image["simg"], env={"APPTAINER_FORCE": "yes"})
    assert r.status == 255 and "APPTAINER_FORCE" in r.err  # ... read as Go's ParseBool: yes is fatal
    r = cli("apptainer", "build", out, busybox_image["simg"], env={"APPTAINER_FORCE": "0"})
    assert r.status == 255 and "exists" in r.err  # no --force: the existing target is refused


def test_global_flag_env_twins_and_precedence():
    values, rest, notes = parse_leading(["-dq", "exec", "-s", "x"], GLOBAL_FLAGS, {})
    assert values == {"debug": True, "quiet": True} and rest == ["exec", "-s", "x"] and notes == []
    assert level(values, {}) == logging.DEBUG  # debug > verbose > quiet > silent
    assert level({"quiet": True, "silent": True}, {}) == logging.WARNING  # --quiet --silent acts as --quiet
    assert level({"silent": True}, {}) == logging.ERROR
    assert level({}, {"APPTAINER_MESSAGELEVEL": "-1"}) == logging.WARNING
    values, rest, notes = parse_leading(["--config=/x.conf", "-c", "/y.conf", "run"], GLOBAL_FLAGS, {})
    assert values["config"] == "/y.conf" and rest == ["run"]
    values, rest, notes = parse_leading(["pull"], GLOBAL_FLAGS, {"SINGULARITY_SILENT": "1"})
    assert values == {"silent": True}
    assert notes == [("info", "Environment variable SINGULARITY_SILENT is set, but APPTAINER_SILENT is preferred")]
    with pytest.raises(UsageError, match="APPTAINER_QUIET"):
        parse_leading(["pull"], GLOBAL_FLAGS, {"APPTAINER_QUIET": "yes"})


def test_message_prefixes_are_padded_as_apptainers():
    assert prefix(20) == "INFO:    " and prefix(30) == "WARNING: "
    assert prefix(40) == "ERROR:   " and prefix(50) == "FATAL:   "


def _parser():
    p = argparse.ArgumentParser(prog="x")
    add_flag(p, "-F", "--force", env="FORCE", action="store_true")
    add_flag(p, "--section", env="SECTION", default="all")
    add_flag(p, "-s", "--size", env="SIZE", type=int, default=64)
    add_flag(p, "--app", env=("APP", "APPNAME"))
    add_flag(p, "-B", "--bind", env=("BIND", "BINDPATH"), env_append=True, action="append")
    add_flag(p, "--mount", env="MOUNT", env_append=True, action="append")
    p.add_argument("image")
    p.add_argument("rest", nargs="*")
    return p


def test_env_twins_apply_only_to_flags_not_given():
    env = {"APPTAINER_FORCE": "1", "APPTAINER_SECTION": "post", "SINGULARITY_SIZE": "128", "APPTAINER_APPNAME": "b"}
    args = apply_env(_parser().parse_args(["--section", "files", "img"]), env)
    assert (args.force, args.section, args.size, args.app) == (True, "files", 128, "b")
    args = apply_env(_parser().parse_args(["img"]), {})
    assert (args.force, args.section, args.size, args.app, args.bind) == (False, "all", 64, None, [])
    env = {"APPTAINER_APP": "a", "APPTAINER_APPNAME": "b"}  # the first key set wins
    assert apply_env(_parser().parse_args(["img"]), env).app == "a"
    with pytest.raises(UsageError, match="SINGULARITY_SIZE"):
        apply_env(_parser().parse_args(["img"]), {"SINGULARITY_SIZE": "big"})


def test_bind_and_mount_twins_append_after_the_command_line():
    env = {"APPTAINER_BIND": "/a,/b", "SINGULARITY_BINDPATH": "/c", "APPTAINER_MOUNT": "type=bind,src=/x,dst=/y\n"
           "type=bind,src=/z,dst=/w"}
    args = apply_env(_parser().parse_args(["-B", "/cli", "img"]), env)
    assert args.bind == ["/cli", "/a,/b", "/c"]
    assert args.mount == ["type=bind,src=/x,dst=/y", "type=bind,src=/z,dst=/w"]


def test_parsing_stops_at_the_first_positional():
    p = _parser()
    argv = non_interspersed(p, ["-F", "-s", "8", "img", "--force", "-x"])
    assert argv == ["-F", "-s", "8", "--", "img", "--force", "-x"]
    args = p.parse_args(argv)
    assert args.image == "img" and args.rest == ["--force", "-x"] and args.force
    assert non_interspersed(p, ["-Fs8", "img"]) == ["-Fs8", "img"]  # nothing after it to protect
    assert non_interspersed(p, ["-Fs", "8", "img", "-F"]) == ["-Fs", "8", "--", "img", "-F"]  # clustered
    assert non_interspersed(p, ["--size=8", "img", "-F"]) == ["--size=8", "--", "img", "-F"]


def test_deprecated_spelling_warns_as_apptainer_and_sbuild_notes_stay_quiet(cli, busybox_image, tmp_path):
    out = tmp_path / "o.sif"
    r = cli("apptainer", "build", "--nohttps", out, busybox_image["simg"])
    assert r.status == 0, r.err
    assert "WARNING: Flag --nohttps has been deprecated, use --no-https\n" in r.err
    r = cli("sbuild", "build", "--nohttps", busybox_image["simg"], out, env={"SINGULARITY_FORCE": "1"})
    assert r.status == 0, r.err  # the legacy name works under sbuild, without an INFO about it
    assert "has been deprecated" not in r.err and "preferred" not in r.err


@pytest.mark.parametrize("group", ["cache", "overlay"])
def test_a_group_without_its_subcommand_exits_1_as_apptainer(cli, group):
    r = cli("apptainer", group)
    assert r.status == 1 and f"Run 'apptainer {group} --help'" in r.out
    assert cli("sbuild", group).status == 2
