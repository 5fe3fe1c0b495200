"""The build pipeline: every stage in Apptainer's order (spec §B.1), then the last stage
written as TARGET.

For each stage: bootstrap (the agent from ``builder.sources``) → ``%files from`` →
``%setup`` → ``%files`` → ``%post`` → metadata → ``%test``. The last stage's rootfs is
written with ``builder.images.write_image``, which writes a temp name beside TARGET and
renames it into place, so a failed build leaves no TARGET. Bundles are removed at the
end, unless ``keep_bundle`` (``--no-cleanup``), in which case their paths are reported.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from builder.bundle import Bundle
from builder.errors import BuildError, CapabilityError, RecipeError, SbuildError
from builder.images import ImageResult, write_image
from builder.recipe import Recipe, Stage
from builder.sources import lookup_agent
from builder.steps import container, files, scripts
from builder.steps.metadata import write_file, write_metadata
from builder.steps.options import BuildPlan

__all__ = ["build_recipe", "BuildResult"]

log = logging.getLogger("sbuild.build")


@dataclass
class BuildResult:
    image: ImageResult
    stages: list[dict] = field(default_factory=list)
    duration: float = 0.0
    kept: list[Path] = field(default_factory=list)


def _fetch(bundle: Bundle, stage: Stage, plan: BuildPlan, stages: dict[str, Path]) -> None:
    agent = lookup_agent(stage.bootstrap)
    if agent is None or not agent.supported:
        raise BuildError(f"bootstrap agent {stage.bootstrap!r} is not supported yet")
    try:
        module = importlib.import_module(agent.module)
    except ModuleNotFoundError as e:
        if e.name != agent.module:
            raise
        raise CapabilityError(f"bootstrap agent {stage.bootstrap!r} is not available in this sbuild yet") from e
    module.fetch(bundle, stage, plan.fetch)
    # always written, even without apps (spec §B.1 step 3)
    appsbase = bundle.rootfs / ".singularity.d" / "env" / "94-appsbase.sh"
    if not appsbase.exists():
        write_file(appsbase, "", 0o755)


def _run_stage(bundle: Bundle, recipe: Recipe, stage: Stage, plan: BuildPlan, stages: dict[str, Path],
               say: Callable[[str], None], output: Callable[[str], None] | None, version: str) -> None:
    opts = plan.steps
    say(f"bootstrap: {stage.bootstrap}")
    _fetch(bundle, stage, plan, stages)
    files.copy_stage_files(bundle, stage, opts, stages)
    if stage.scripts.get("setup") and stage.scripts["setup"].script.strip() and opts.allows("setup"):
        say("%setup")
    scripts.run_setup(bundle, stage, opts, output=output)
    files.copy_host_files(bundle, stage, opts)
    if container.post_script(stage).strip():
        say("%post")
    container.run_post(bundle, stage, opts, output=output)
    say("metadata")
    write_metadata(bundle, stage, recipe.full_raw, opts, version=version)
    if not opts.notest and stage.scripts.get("test") and stage.scripts["test"].script.strip():
        say("%test")
    container.run_test(bundle, stage, opts, output=output)


def build_recipe(recipe: Recipe, plan: BuildPlan, *, say: Callable[[str], None] = log.info,
                 output: Callable[[str], None] | None = None, version: str = "sbuild") -> BuildResult:
    """Build every stage of ``recipe`` and write the last one as ``plan.target``."""
    from builder.recipe.validate import build_problems

    problems = build_problems(recipe)
    if problems:
        raise RecipeError(problems)
    started = time.monotonic()
    bundles: list[Bundle] = []
    stages: dict[str, Path] = {}
    summary: list[dict] = []
    ok = False
    try:
        for index, stage in enumerate(recipe.stages):
            t0 = time.monotonic()
            label = stage.name or str(index + 1)
            bundle = Bundle.create(plan.tmpdir, stage_index=index, stage_name=stage.name)
            bundles.append(bundle)
            _run_stage(bundle, recipe, stage, plan, stages,
                       lambda step, label=label: say(f"[stage {label}] {step}"), output, version)
            if stage.name:
                stages[stage.name] = bundle.rootfs
            summary.append({"name": stage.name, "bootstrap": stage.bootstrap,
                            "duration": round(time.monotonic() - t0, 3)})
        say(f"writing {plan.target} ({plan.format})")
        image = write_image(bundles[-1].rootfs, plan.target, plan.format, deffile=recipe.full_raw,
                            options=plan.pack, force=plan.force, fix_perms=plan.fetch.fix_perms,
                            move=not plan.keep_bundle, arch=plan.steps.arch)
        ok = True
    except SbuildError as e:
        if plan.keep_bundle and bundles:
            kept = ", ".join(str(b.work) for b in bundles)
            e.hint = (e.hint + "; " if e.hint else "") + f"the build bundle is kept at {kept}"
        raise
    finally:
        if not plan.keep_bundle:
            for b in bundles:
                b.remove()
    kept = [b.work for b in bundles] if plan.keep_bundle and ok else []
    return BuildResult(image, summary, round(time.monotonic() - started, 3), kept)
