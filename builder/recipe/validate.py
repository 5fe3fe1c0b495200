"""What a build would reject in a recipe that parses: checked before anything is fetched.

These are Apptainer's build-time errors (apptainer-build-spec.md §A.8, §B.2), each located
in the recipe: a stage without a header, a missing or unknown ``Bootstrap:`` agent, a header
key the agent needs, ``%files from`` a stage that does not exist, ``-c`` with no
interpreter. An agent Apptainer knows but sbuild does not build yet is reported too, so
``sbuild check`` says up front what ``sbuild build`` would refuse.
"""

from __future__ import annotations

from base.errors import Diagnostic
from builder.recipe import gostr
from builder.recipe.args import read_defaults
from builder.recipe.hints import HEADER_TITLES, closest, shell_var_hint
from builder.recipe.model import Recipe, Stage
from builder.sources import AGENTS, lookup_agent

__all__ = ["build_problems"]


def build_problems(recipe: Recipe) -> list[Diagnostic]:
    """Every reason ``sbuild build`` would refuse this recipe, located; empty when none."""
    problems: list[Diagnostic] = []
    names = {s.name for s in recipe.stages if s.name}
    for index, stage in enumerate(recipe.stages):
        problems.extend(_stage_problems(recipe, stage, index, names))
    return problems


def _stage_problems(recipe: Recipe, stage: Stage, index: int, names: set[str]) -> list[Diagnostic]:
    path = recipe.path
    if stage.header is None:
        what = "the recipe has no header" if len(recipe.stages) == 1 else f"stage {index + 1} has no header"
        return [Diagnostic(
            path, stage.first_line, 1, f"{what}: every stage must start with a 'Bootstrap:' header",
            hint="add e.g. 'Bootstrap: docker' and 'From: debian:12' above the first section",
        )]
    problems = _agent_problems(recipe, stage)
    for block in stage.files:
        words = gostr.fields(block.args.split("#", 1)[0])
        if len(words) == 2 and words[1] not in names:
            hint = closest(words[1], sorted(names))
            problems.append(Diagnostic(
                path, block.line, 1, f"%files from {words[1]}: no stage is named {words[1]!r}",
                hint=f"did you mean {hint!r}?" if hint else "name a stage with a 'Stage: NAME' header line",
            ))
    for name in ("pre", "setup", "post"):
        params = gostr.fields(stage.scripts[name].args.split("#", 1)[0])
        if "-c" in params and params[-1] == "-c":
            section = stage.section(name)
            problems.append(Diagnostic(
                path, section.line if section else stage.first_line, 1,
                f"%{name} -c names no interpreter", hint=f"write e.g. %{name} -c /bin/bash",
            ))
    return problems


def _agent_problems(recipe: Recipe, stage: Stage) -> list[Diagnostic]:
    path = recipe.path
    value = stage.bootstrap
    line = stage.header_line("bootstrap")
    if not value:
        return [Diagnostic(path, line, 1, "no 'Bootstrap:' agent in this stage's header",
                           hint="add e.g. 'Bootstrap: docker'")]
    agent = lookup_agent(value)
    if agent is None:
        return [Diagnostic(path, line, 1, f"unknown bootstrap agent {value!r}", hint=_agent_hint(value, recipe))]
    if not agent.supported:
        return [Diagnostic(
            path, line, 1, f"'Bootstrap: {value}' is not supported by sbuild yet",
            hint="build the base with Apptainer, or start from a docker:// image of that distribution",
        )]
    return [
        Diagnostic(path, line, 1, f"'Bootstrap: {value}' needs a '{HEADER_TITLES.get(key, key)}:' header line")
        for key in agent.required
        if not (stage.header or {}).get(key)
    ]


def _agent_hint(value: str, recipe: Recipe) -> str:
    if value.lower() in AGENTS:
        return f"agent names are case-sensitive: did you mean '{value.lower()}'?"
    names = {*recipe.build_args}
    for stage in recipe.stages:
        names |= set(read_defaults(stage.scripts["arguments"].script, recipe.path, stage.first_line, []))
    hint = shell_var_hint(value, names)
    if hint:
        return hint
    guess = closest(value.lower(), sorted(AGENTS))
    valid = ", ".join(sorted(a for a in AGENTS if AGENTS[a].supported))
    return (f"did you mean '{guess}'? " if guess else "") + f"valid agents: {valid}"


