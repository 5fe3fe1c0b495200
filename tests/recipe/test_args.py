"""{{ var }} templating as Apptainer's build does it (spec §A.10)."""

from __future__ import annotations

import pytest

from base.errors import RecipeError, UsageError
from builder.recipe import BuildArgs, parse_recipe, read_build_args
from builder.recipe.args import template


def fill(text: str, user: dict[str, str] | None = None, defaults: dict[str, str] | None = None) -> str:
    return template(text, user or {}, defaults or {}, path="r.def", first_line=1).text


def test_user_values_win_over_defaults():
    assert fill("a {{ X }} {{Y}}", {"X": "1"}, {"X": "0", "Y": "2"}) == "a 1 2"


def test_commented_occurrences_are_left_alone():
    assert fill("# c {{X}}\n", {"X": "1"}) == "# c {{X}}\n"
    assert fill("#!/bin/{{X}}\n", {"X": "sh"}) == "#!/bin/sh\n"
    assert fill("apt install {{X}}#c {{X}}", {"X": "vim"}) == "apt install vim#c {{X}}"
    assert fill('echo "#1 {{X}}"', {"X": "1"}) == 'echo "#1 {{X}}"'


def test_values_expand_one_level_only():
    assert fill("{{A}}", defaults={"A": "x{{B}}", "B": "y{{C}}", "C": "z"}) == "xy{{C}}"


def test_defaults_keep_quotes():
    recipe = parse_recipe(b'Bootstrap: docker\nFrom: x\n%arguments\n  X="a b"\n%post\necho {{ X }}\n')
    assert recipe.final.scripts["post"].script == 'echo "a b"\n'


def test_undefined_variable_is_located_with_a_suggestion():
    with pytest.raises(RecipeError) as info:
        parse_recipe(b"Bootstrap: docker\nFrom: x\n%arguments\nVERSION=1\n%post\necho {{ VERSON }}\n", path="r.def")
    d = info.value.diagnostics[0]
    assert (d.line, d.column) == (6, 6) and d.hint == "did you mean {{ VERSION }}?"


def test_unused_build_args_fail_unless_asked_to_warn():
    data = b"Bootstrap: docker\nFrom: x\n%post\ntrue\n"
    with pytest.raises(RecipeError, match="not used by this recipe: EXTRA"):
        parse_recipe(data, build_args=BuildArgs({"EXTRA": "1"}))
    recipe = parse_recipe(data, build_args=BuildArgs({"EXTRA": "1"}, warn_unused=True))
    assert "EXTRA" in recipe.warnings[-1].message


def test_stored_recipe_is_the_templated_text():
    recipe = parse_recipe(b"Bootstrap: docker\nFrom: alpine:{{ V }}\n", build_args=BuildArgs({"V": "3"}))
    assert recipe.full_raw == b"Bootstrap: docker\nFrom: alpine:3\n"
    assert recipe.final.header["from"] == "alpine:3"


def test_build_arg_file_then_command_line(tmp_path):
    f = tmp_path / "args"
    f.write_text("A = 1\n#B=2\nnot a pair\nC=3\n")
    notes: list[str] = []
    values = read_build_args(["C=4"], str(f), notes)
    assert values == {"A": "1", "#B": "2", "C": "4"}
    assert notes and "args:3" in notes[0]
    with pytest.raises(UsageError):
        read_build_args(["novalue"], None, [])
    with pytest.raises(UsageError):
        read_build_args(["=x"], None, [])
