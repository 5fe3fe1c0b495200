"""Our parse against Apptainer's own parser test data and against 331 real recipes.

Field-by-field equality with the expected JSON (Go zero values for fields the upstream
files predate); every upstream bad case and every recipe Apptainer rejects is rejected
with a location.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from base.errors import RecipeError
from builder.recipe import gostr, load_recipe, parse_definition, parse_recipe, to_apptainer_json
from builder.recipe.parser import EmptyStage

from .conftest import go_zero_filled

PARSER = Path("apptainer/pkg/build/types/parser")


def _cases(conformance: Path, kind: str) -> list[tuple[Path, Path]]:
    root = conformance / PARSER / kind
    out = []
    for case in sorted(root.iterdir()):
        for f in sorted(case.iterdir()):
            if not f.suffix and f.name != "result" and (case / f"{f.name}.json").exists():
                out.append((f, case / f"{f.name}.json"))
    return out


def test_upstream_good_cases_parse_field_by_field(conformance):
    cases = _cases(conformance, "testdata_good")
    assert len(cases) >= 20
    for recipe, expected_file in cases:
        expected = json.loads(expected_file.read_text())
        data = recipe.read_bytes()
        if isinstance(expected, list):  # multistage.json: each stage parsed alone (fullraw = raw)
            stages = [c.stage for c in parse_recipe(data).chunks if c.stage]
            got = [to_apptainer_json(s, gostr.to_bytes(s.raw)) for s in stages]
            assert got == [go_zero_filled(e) for e in expected], recipe.name
            continue
        stage = parse_definition(gostr.from_bytes(data), path=str(recipe))
        assert to_apptainer_json(stage, data, data) == go_zero_filled(expected), recipe.name


def test_upstream_sections_json_header_is_the_raw_first_token(conformance):
    from builder.recipe.scan import scan

    checked = 0
    for case in sorted((conformance / PARSER / "testdata_good").iterdir()):
        for sections in case.glob("*_sections.json"):
            recipe = case / sections.name.removesuffix("_sections.json")
            expected = json.loads(sections.read_text())[0]["Header"]
            tokens = scan(gostr.from_bytes(recipe.read_bytes()))
            header = tokens[0].go if tokens and not tokens[0].section else ""
            assert header == expected, recipe.name
            checked += 1
    assert checked >= 3


def test_upstream_multistage_cases_split_as_apptainer(conformance):
    cases = _cases(conformance, "testdata_multi")
    assert len(cases) == 5
    for recipe, expected_file in cases:
        data = recipe.read_bytes()
        expected = [go_zero_filled(e) for e in json.loads(expected_file.read_text())]
        got = [to_apptainer_json(c.stage, data) for c in parse_recipe(data).chunks if c.stage]
        assert got == expected, recipe.name


@pytest.mark.parametrize("name", ["bad_section", "empty", "emptycomments", "json_input_1", "json_input_2"])
def test_upstream_bad_cases_are_rejected(conformance, name):
    data = (conformance / PARSER / "testdata_bad" / name).read_bytes()
    with pytest.raises((RecipeError, EmptyStage)):
        parse_definition(gostr.from_bytes(data), path=name)
    with pytest.raises(RecipeError) as info:
        parse_recipe(data, path=name)
    first = info.value.diagnostics[0]
    assert first.path == name and first.line >= 1 and first.column >= 1


def test_real_world_corpus_gets_apptainers_verdict_and_parse(conformance):
    corpus = conformance / "corpus"
    expected = json.loads((corpus / "expected.json").read_text())
    assert len(expected) == 331
    wrong = []
    for name, verdict in expected.items():
        path = corpus / "files" / name
        try:
            recipe = load_recipe(path)
        except RecipeError as e:
            if verdict["ok"]:
                wrong.append(f"{name}: rejected: {e.render()}")
            continue
        if not verdict["ok"]:
            wrong.append(f"{name}: accepted, Apptainer says {verdict['error']}")
            continue
        got = [to_apptainer_json(s, recipe.full_raw) for s in recipe.stages]
        if got != [go_zero_filled(s) for s in verdict["stages"]]:
            wrong.append(f"{name}: parse differs")
    assert not wrong, "\n".join(wrong)


def test_check_json_prints_the_upstream_parse_per_stage(conformance, sbuild):
    """The CLI splits stages as a build does: only raw/fullraw may differ (text before Bootstrap:)."""
    for recipe, expected_file in _cases(conformance, "testdata_good"):
        expected = json.loads(expected_file.read_text())
        if isinstance(expected, list):
            continue
        result = sbuild("check", "--json", recipe)
        assert result.out.count("\n") == 1, recipe.name
        (got,) = json.loads(result.out)
        want = go_zero_filled(expected)
        for key in ("raw", "fullraw"):
            got.pop(key), want.pop(key)
        assert got == want, recipe.name


def test_build_args_unit_cases(conformance, sbuild):
    """Apptainer's args_test/build_test expectations for test/build-args."""
    root = conformance / "apptainer" / "test" / "build-args"
    single = root / "single-stage-unit-test.def"
    recipe = load_recipe(single, _args({"OS_VER": "1", "AUTHOR": "jason"}))
    stage = recipe.final
    assert stage.header["from"] == "alpine:1"
    assert gostr.trim_space(stage.scripts["help"].script) == "This is a demo for templating definition file"
    assert stage.labels["Author"] == "jason"
    assert gostr.trim_space(stage.scripts["environment"].script) == "export OS_VER=1"
    with pytest.raises(RecipeError, match="ADDITION"):
        load_recipe(single, _args({"OS_VER": "1", "AUTHOR": "jason", "ADDITION": "x"}))
    multi = load_recipe(root / "multiple-stage-unit-test.def", _args({"DEVEL_IMAGE": "golang:1"}))
    assert [s.header["from"] for s in multi.stages] == ["golang:1", "alpine:3.17"]
    assert "export HOME=/root" in multi.stages[0].scripts["post"].script


def _args(values: dict[str, str], warn: bool = False):
    from builder.recipe import BuildArgs

    return BuildArgs(values, warn_unused=warn)
