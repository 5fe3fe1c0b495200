"""The actions' quick command-line parser agrees with argparse, and the launcher works.

``builder.commands.run.parse_quick`` parses ``exec``/``run``/``shell``/``test`` without argparse
(start-up latency). Whenever it returns a namespace, argparse must produce the same one;
whatever argparse rejects or handles itself (help, abbreviations, joined short flags), the
quick parser must leave to it (None). ``builder.commands.launcher.write_launcher`` writes the ``-S``
console script; commands that need site-packages must still work through it.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from builder.cli import build_parser
from builder.commands.launcher import write_launcher
from builder.commands.run import ACTIONS, parse_quick

ROOT = Path(__file__).resolve().parents[2]


def _argparse(argv: list[str]) -> dict | None:
    """argparse's namespace for ``argv`` as a dict, or None when it exits (error or help)."""
    parser = build_parser(argv[0])
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return vars(parser.parse_args(argv))
    except SystemExit:
        return None


def _agree(argv: list[str]) -> dict | None:
    quick = parse_quick(argv)
    slow = _argparse(argv)
    if quick is not None:
        assert slow is not None, f"argparse rejects what the quick parser took: {argv}"
        assert vars(quick) == slow, argv
        return vars(quick)
    return None


@pytest.mark.parametrize("argv", [
    ["exec", "img.sif", "/bin/true"],
    ["exec", "img.sif", "ls", "-la", "--bind", "x", "-h", "--help"],
    ["exec", "-B", "/a:/b", "--bind=/c", "-o", "ov", "--env", "A=1", "--env=B=2", "img", "cmd"],
    ["exec", "img", "-w", "--pwd", "/x", "cmd", "arg"],
    ["exec", "-q", "-C", "--no-home", "-H", "/h:/home/u", "--app", "a", "img", "cmd", "--", "x"],
    ["exec", "img", "cmd", "--", "--co"],
    ["exec", "img", "cmd", "--co"],
    ["exec", "img", "--", "ls"],
    ["exec", "--pwd=", "img", "cmd"],
    ["exec", "-wc", "img", "cmd"], ["exec", "-cB", "/x", "img", "cmd"], ["exec", "-Bx", "img", "cmd"],
    ["exec", "--writable=true", "--contain=false", "img", "cmd"],
    ["exec", "--no-mount", "tmp,cwd", "--no-mount=home", "-S", "/a,/b", "img", "cmd"],
    ["exec", "--cwd", "/w", "--net", "--network", "none", "--hostname", "h", "--ipc", "img", "cmd"],
    ["run", "img"],
    ["run", "img", "-w", "--", "x"],
    ["run", "-v", "--writable-tmpfs", "--fakeroot", "-p", "-u", "-e", "-c", "img", "a", "b"],
    ["shell", "-s", "/bin/bash", "--shell=/bin/sh", "img"],
    ["test", "--contain", "--containall", "--cleanenv", "img"],
])
def test_quick_parser_takes_common_command_lines_exactly_as_argparse(argv):
    assert _agree(argv) is not None, f"the quick parser should handle {argv}"


@pytest.mark.parametrize("argv", [
    ["exec", "-h"], ["run", "--help"], ["exec", "img"], ["run"], ["exec"],
    ["exec", "--writ", "img", "cmd"],  # no abbreviations (pflag has none): argparse says so
    ["exec", "-B=x", "img", "cmd"],
    ["exec", "--bind", "-x", "img", "cmd"],  # a value that looks like an option
    ["exec", "-q", "-v", "img", "cmd"],  # -q and -v exclude each other
    ["exec", "--writable=yes", "img", "cmd"], ["exec", "--nope", "img", "cmd"],
    ["exec", "--", "img", "cmd"], ["exec", "", "cmd"], ["exec", "-", "cmd"],
    ["shell", "-s"],
])
def test_quick_parser_leaves_the_rest_to_argparse(argv):
    assert parse_quick(argv) is None
    _agree(argv)


def test_parsing_stops_at_the_image_and_passes_the_rest_on():
    """pflag's non-interspersed rule: after the image, everything (``--`` too) is the container's."""
    ns = parse_quick(["exec", "-B", "/a", "img", "--", "ls", "-B", "x"])
    assert (ns.image, ns.command, ns.args, ns.bind) == ("img", "--", ["ls", "-B", "x"], ["/a"])
    ns = parse_quick(["exec", "-cB", "/x", "img", "-w", "cmd"])
    assert (ns.contain, ns.bind, ns.command, ns.args, ns.writable) == (True, ["/x"], "-w", ["cmd"], False)
    assert parse_quick(["run", "--no-mount", "tmp, cwd", "-S=/x", "img"]) is None  # (-S=x: argparse)
    assert _argparse(["exec", "--bind", "-odd", "img", "cmd"])["bind"] == ["-odd"]
    assert _argparse(["exec", "--", "img", "cmd", "--x"])["args"] == ["--x"]
    assert _argparse(["run", "--no-mount", "tmp, cwd", "-S", "/x,/y", "img"])["scratch"] == ["/x", "/y"]


_WORDS = ["img", "/bin/true", "cmd", "a=b", "x y", "instance://i", "-", "--", "-1", "-la", "-x", "--nope",
          "--bind=/a", "--env=K=V", "--pwd=", "--writable=1", "-B=x", "-Bx", "-wc", "--w", "--writ", "--co",
          "--conta", "--p", "--h", "--e", "--en", "--ver", "--version", "-h", "--help", "-s", "--shell"]


def _tokens(word: str) -> list[str]:
    parser = build_parser(word)
    sub = parser._subparsers._group_actions[0].choices[word]  # noqa: SLF001 - the options of record
    return sorted(set(sub._option_string_actions) | set(_WORDS))  # noqa: SLF001


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(ACTIONS)), st.data())
def test_quick_parser_never_disagrees_with_argparse(word, data):
    token = st.one_of(st.sampled_from(_tokens(word)), st.sampled_from(["img", "cmd", "/bin/true"]))
    argv = [word, *data.draw(st.lists(token, max_size=8))]
    _agree(argv)


def test_launcher_starts_without_site_and_loads_it_for_other_commands(tmp_path):
    launcher = tmp_path / "sbuild"
    write_launcher(str(launcher))
    assert launcher.read_text().splitlines()[0].endswith(" -S")
    recipe = tmp_path / "r.def"
    recipe.write_text("Bootstrap: scratch\n%runscript\necho hi\n")
    r = subprocess.run([str(launcher), "check", str(recipe)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr  # the recipe parser needs lark (site-packages)
    r = subprocess.run([str(launcher), "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("sbuild "), r.stderr
    r = subprocess.run([str(launcher), "exec", "--nope", "x", "y"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode != 0 and "--nope" in r.stderr
