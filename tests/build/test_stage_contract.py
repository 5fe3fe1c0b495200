"""The typed stage contract: one agent table of Source classes, the one check of header keys,
agent errors located at the stage's recipe line, and stage_steps as (label, step) pairs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from builder.options import BuildPlan, StepOptions
from builder.recipe import parse_recipe
from builder.sources import AGENTS, Source
from builder.steps import BuildRun, stage_steps
from builder.steps.progress import Progress


def test_every_supported_agent_names_a_source_class():
    for agent in AGENTS.values():
        if agent.supported:
            cls = agent.load()
            assert isinstance(cls, type) and issubclass(cls, Source), agent.name
            assert callable(cls().fetch)
        else:
            assert agent.source == "", agent.name


@pytest.mark.parametrize("agent, value, message", [
    ("shub", "!!bad", "!!bad: not a valid shub reference"),
    ("library", "Entity/c/n", "invalid name 'Entity'"),
    ("docker", "Bad//x", "invalid image reference 'docker://Bad//x'"),
])
def test_a_bad_from_on_a_later_stage_is_an_error_at_its_recipe_line(sbuild, recipe, tmp_path, agent, value,
                                                                    message):
    path = recipe(f"""
        Bootstrap: scratch
        Stage: one

        Bootstrap: {agent}
        From: {value}
        """)
    target = tmp_path / "out.sif"
    r = sbuild("build", "--disable-cache", path, target)
    assert r.status == 2, r.err
    located = [line for line in r.err.splitlines() if line.startswith(f"{path}:5:1: error: ")]
    assert located and message in located[0], r.err
    assert not target.exists()


def test_a_missing_required_key_reads_the_same_from_check_and_build(sbuild, recipe, tmp_path):
    path = recipe("""
        Bootstrap: scratch

        Bootstrap: debootstrap
        OSVersion: bookworm
        """)
    want = f"{path}:3:1: error: 'Bootstrap: debootstrap' needs a 'MirrorURL:' header line"
    checked = sbuild("check", path)
    built = sbuild("build", path, tmp_path / "out.sif")
    assert checked.status == built.status == 2
    assert want in checked.err.splitlines() and want in built.err.splitlines(), (checked.err, built.err)


def _labels(text: str, **steps) -> list[str | None]:
    recipe = parse_recipe(textwrap.dedent(text).lstrip().encode(), path="r.def")
    plan = BuildPlan(Path("out.sif"), "sif", steps=StepOptions(**steps))
    run = BuildRun(recipe, plan, Progress(), "test")
    pairs = stage_steps(run, recipe.final, last=True)
    assert all(callable(step) for _, step in pairs)
    return [label for label, _ in pairs]


FULL = """
    Bootstrap: busybox
    MirrorURL: file:///bin/busybox

    %pre
        true
    %setup
        true
    %files
        a /a
    %post
        true
    %test
        true
    %apprun x
        true
    """


def test_stage_steps_lists_each_step_with_its_label_in_apptainer_order():
    assert _labels(FULL) == ["%pre", "bootstrap: busybox", "apps: x", "%setup", "%files", "%post", "metadata",
                             "%test"]


def test_stage_steps_leaves_out_what_the_options_skip():
    assert _labels(FULL, notest=True, sections=frozenset({"setup"})) == [
        "bootstrap: busybox", "apps: x", "%setup", "%post", "metadata"]
