"""``sbuild check`` as CI uses it: exit statuses, located messages, JSON on stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def write(tmp_path: Path, text: str | bytes, name: str = "r.def") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_valid_recipe_exits_zero(sbuild, tmp_path):
    r = sbuild("check", write(tmp_path, "Bootstrap: docker\nFrom: debian:12\n%post\ntrue\n"))
    assert r.status == 0 and r.out.endswith("ok (1 stage: docker)\n") and r.err == ""


def test_misspelt_section_exits_two_with_location_and_hint(sbuild, tmp_path):
    path = write(tmp_path, "Bootstrap: docker\nFrom: x\n%enviroment\nA=1\n")
    r = sbuild("check", path)
    assert r.status == 2
    assert r.err.splitlines() == [
        f"{path}:3:1: error: invalid section '%enviroment'", "  hint: did you mean %environment?"]


def test_build_problems_are_reported_and_json_still_printed(sbuild, tmp_path):
    path = write(tmp_path, "Bootstrap: Docker\nFrom: x\n%files from nowhere\n a b\n")
    r = sbuild("check", "--json", path)
    assert r.status == 2
    assert "unknown bootstrap agent 'Docker'" in r.err and "did you mean 'docker'" in r.err
    assert "no stage is named 'nowhere'" in r.err
    (stage,) = json.loads(r.out)
    assert stage["header"] == {"bootstrap": "Docker", "from": "x"}


def test_unsupported_agent_and_missing_keys(sbuild, tmp_path):
    r = sbuild("check", write(tmp_path, "Bootstrap: buildkit\nFrom: x\n"),
               write(tmp_path, "Bootstrap: debootstrap\nMirrorURL: http://x\n", "b.def"))
    assert r.status == 2
    assert "'Bootstrap: buildkit' is not supported by sbuild yet" in r.err
    assert "needs a 'OSVersion:' header line" in r.err


def test_headerless_recipe_parses_but_cannot_build(sbuild, tmp_path):
    r = sbuild("check", "--json", write(tmp_path, "%runscript\necho hi\n"))
    assert r.status == 2 and "has no header" in r.err
    assert json.loads(r.out)[0]["header"] is None


def test_unparsable_file_prints_null_in_json_mode(sbuild, tmp_path):
    good = write(tmp_path, "Bootstrap: scratch\n%runscript\necho\n", "good.def")
    bad = write(tmp_path, "Bootstrap: docker\nFrom: x\n%postt\ntrue\n", "bad.def")
    r = sbuild("check", "--json", bad, good)
    assert r.status == 2
    lines = r.out.splitlines()
    assert lines[0] == "null" and json.loads(lines[1])[0]["header"]["bootstrap"] == "scratch"


def test_build_args_reach_the_parse(sbuild, tmp_path):
    path = write(tmp_path, "Bootstrap: docker\nFrom: alpine:{{ V }}\n")
    assert sbuild("check", path).status == 2
    r = sbuild("check", "--json", "--build-arg", "V=3.19", path)
    assert r.status == 0 and json.loads(r.out)[0]["header"]["from"] == "alpine:3.19"
    r = sbuild("check", "--build-arg", "V=1", "--build-arg", "W=2", path)
    assert r.status == 2 and "not used by this recipe: W" in r.err
    assert sbuild("check", "--warn-unused-build-args", "--build-arg", "V=1", "--build-arg", "W=2", path).status == 0


def test_warnings_go_to_stderr_without_failing(sbuild, tmp_path):
    r = sbuild("check", write(tmp_path, "Bootstrap: docker\nFrom: repo#tag\n"))
    assert r.status == 0 and ":2:11: warning: '#' starts a comment" in r.err


def test_missing_file_and_directory_are_usage_errors(sbuild, tmp_path):
    r = sbuild("check", tmp_path / "absent.def")
    assert r.status == 2 and "absent.def" in r.err and "Traceback" not in r.err
    assert sbuild("check", tmp_path).status == 2


def test_bundled_recipes_are_valid(sbuild):
    recipes = sorted(RECIPES.glob("*.def"))
    assert len(recipes) >= 10
    r = sbuild("check", "--build-arg", "OS_VERSION=bookworm", "--warn-unused-build-args", *recipes)
    assert r.status == 0, r.err


def test_console_script_runs_outside_pytest(tmp_path):
    path = write(tmp_path, "Bootstrap: scratch\n%runscript\necho\n")
    done = subprocess.run([sys.executable, "-m", "builder", "check", str(path)], capture_output=True, text=True)
    assert done.returncode == 0 and "ok" in done.stdout


def test_huge_file_is_refused_without_reading_it(sbuild, tmp_path):
    path = tmp_path / "huge.def"
    with open(path, "wb") as f:
        f.write(b"Bootstrap: docker\nFrom: x\n%post\n")
        f.truncate(65 * 1024 * 1024)
    r = sbuild("check", path)
    assert r.status == 2 and "too large to be a definition file" in r.err


def test_non_utf8_recipe_checks_without_traceback(sbuild, tmp_path):
    r = sbuild("check", "--json", write(tmp_path, b"Bootstrap: docker\nFrom: x\n%post\necho \xff\xfe\n"))
    assert r.status == 0
    assert json.loads(r.out)[0]["buildData"]["buildScripts"]["post"]["script"] == "echo \ufffd\ufffd\n"


def test_help_works_for_sbuild_and_every_command(sbuild):
    """argparse %-formats help strings: a bare '%' (as in '%test') made `sbuild --help` crash."""
    from builder.cli import COMMANDS

    r = sbuild("--help")
    assert r.status == 0 and "COMMAND" in r.out
    for word in COMMANDS:
        r = sbuild(word, "--help")
        assert r.status == 0, (word, r.err)
        assert r.out.startswith(f"usage: sbuild {word}"), word
    assert "%test" in sbuild("test", "--help").out
