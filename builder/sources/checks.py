"""The one check of a recipe's agents, before anything is fetched (spec §A.8, §B.2).

``agent_problems(recipe, stage)``: a missing ``Bootstrap:``, an unknown agent (with the
closest valid name, or the build argument it looks like), an agent sbuild does not build
yet, a header key the agent requires (``AGENTS[...].required``). ``recipe_problems(recipe)``
adds them to the recipe model's own checks (``builder.recipe.validate``): it is what a
build (``builder.steps.pipeline``) and ``sbuild check`` report. The sources themselves do
not check required keys again.
"""

from __future__ import annotations

from base.errors import Diagnostic
from builder.recipe import Recipe, Stage
from builder.recipe.args import read_defaults
from builder.recipe.hints import HEADER_TITLES, closest, shell_var_hint
from builder.recipe.validate import build_problems
from builder.sources import AGENTS, lookup_agent
from builder.sources.pkgtools import header_problems, missing_tools

__all__ = ["agent_problems", "recipe_problems", "host_tool_problems"]


def recipe_problems(recipe: Recipe) -> list[Diagnostic]:
    """Every reason ``sbuild build`` would refuse this recipe, located; empty when none."""
    return build_problems(recipe, agent_problems)


def agent_problems(recipe: Recipe, stage: Stage) -> list[Diagnostic]:
    """What is wrong with the agent of ``stage`` (which has a header), located."""
    path = stage.path
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
    ] + [Diagnostic(path, stage.header_line(key), 1, message)
         for key, message in header_problems(value, stage.header or {})]


def host_tool_problems(recipe: Recipe) -> list[str]:
    """Each host program a build of ``recipe``'s agents needs that is missing, with the
    Debian package that has it (``sbuild check`` exits 3 for these, as a build does)."""
    out = []
    for stage in recipe.stages:
        for tool, package in missing_tools(stage.bootstrap or ""):
            out.append(f"{recipe.path}: 'Bootstrap: {stage.bootstrap}' needs {tool} on this host: "
                       f"apt-get install {package}")
    return list(dict.fromkeys(out))


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
