"""What a build would reject in a recipe that parses: checked before anything is fetched.

These are Apptainer's build-time errors (apptainer-build-spec.md §A.8, §B.2), each located
in the recipe: a stage without a header, a missing or unknown ``Bootstrap:`` agent, a header
key the agent needs, ``%files from`` a stage that does not exist, ``-c`` with no
interpreter.

What depends on the agents (a missing or unknown ``Bootstrap:``, a header key the agent
needs, an agent sbuild does not build yet) is checked by ``builder.sources.checks``, which
owns the agent table and passes that check in here: the recipe model knows no agent.
``builder.sources.checks.recipe_problems`` is the entry point a build and ``sbuild check``
call; the order of the problems (stage by stage) is the same either way.
"""

from __future__ import annotations

from collections.abc import Callable

from base.errors import Diagnostic
from builder.recipe import gostr
from builder.recipe.hints import closest
from builder.recipe.model import Recipe, Stage

__all__ = ["build_problems", "AgentCheck"]

AgentCheck = Callable[[Recipe, Stage], list[Diagnostic]]  # the agent problems of one stage with a header


def build_problems(recipe: Recipe, agent_problems: AgentCheck) -> list[Diagnostic]:
    """Every reason ``sbuild build`` would refuse this recipe, located; empty when none."""
    problems: list[Diagnostic] = []
    names = {s.name for s in recipe.stages if s.name}
    for index, stage in enumerate(recipe.stages):
        problems.extend(_stage_problems(recipe, stage, index, names, agent_problems))
    return problems


def _stage_problems(recipe: Recipe, stage: Stage, index: int, names: set[str],
                    agent_problems: AgentCheck) -> list[Diagnostic]:
    path = stage.path
    if stage.header is None:
        what = "the recipe has no header" if len(recipe.stages) == 1 else f"stage {index + 1} has no header"
        return [Diagnostic(
            path, stage.first_line, 1, f"{what}: every stage must start with a 'Bootstrap:' header",
            hint="add e.g. 'Bootstrap: docker' and 'From: debian:12' above the first section",
        )]
    problems = agent_problems(recipe, stage)
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
