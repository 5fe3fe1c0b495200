"""The build pipeline: every stage in Apptainer's order (spec §B.1), then the last stage
written as TARGET.

For each stage: ``%pre`` (host) → bootstrap (the stage's ``Source`` from the table in
``builder.sources``; with ``--update``, for the last stage, a copy of the existing
sandbox instead, and no header labels) → apps (/scif and 94-appsbase.sh) → ``%files
from`` → ``%setup`` → ``%files`` → ``%post`` → metadata → ``%test``. ``stage_steps``
lists the steps a stage will run, each with its progress label and the call that runs
it, so the progress sink knows the total before the first one starts. The last stage's
rootfs is written by ``builder.steps.write.write_bundle``, which writes a temp name
beside TARGET and renames it into place, so a failed build leaves no TARGET. Bundles
are removed at the end, unless ``keep_bundle`` (``--no-cleanup``), in which case their
paths are reported. What a killed build left (its bundles, a half-written TARGET) is
removed when the next build starts (``reclaim_leftovers``).

The build cache (``plan.cache``; ``builder.steps.checkpoint``) checkpoints each stage after
its bootstrap and after its ``%post``, and restores a checkpoint instead of running the
steps it stands for; a build whose last stage and recipe text are unchanged copies the
packed TARGET from the cache.

Rootless builds with a subordinate id range (``identity.mode == "subuid"``) copy between
stages, pack and remove bundles inside the build's user namespace
(``builder.steps.write.in_build_userns``), since files there may belong to ids the user
cannot read.
"""

from __future__ import annotations

import functools
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from base.errors import BuildError, RecipeError, SbuildError
from builder.bundle import Bundle
from builder.images import ImageResult
from builder.options import BuildPlan
from builder.recipe import Recipe, Stage
from builder.sources import AGENTS
from builder.steps import apps, container, files, scripts
from builder.steps.checkpoint import BuildCache
from builder.steps.metadata import write_metadata
from builder.steps.progress import Progress
from builder.steps.write import in_build_userns, reclaim_leftovers, remove_bundle, write_bundle

__all__ = ["build_recipe", "BuildResult", "BuildRun", "Step", "stage_steps", "stage_phases"]

Step = tuple[str | None, Callable[[Bundle], None]]  # (progress label, None for a silent step; the step)


@dataclass
class BuildResult:
    image: ImageResult
    stages: list[dict] = field(default_factory=list)
    duration: float = 0.0
    kept: list[Path] = field(default_factory=list)


@dataclass
class BuildRun:
    """One build in progress: what its steps read, and the rootfs of each named stage so far."""

    recipe: Recipe
    plan: BuildPlan
    progress: Progress
    version: str
    stages: dict[str, Path] = field(default_factory=dict)  # stage name -> its rootfs
    deferred: dict[str, Callable[[], None]] = field(default_factory=dict)  # stage name -> build it now
    summary: list[dict] = field(default_factory=list)  # per stage built: name, bootstrap, duration

    def need(self, stage: Stage) -> None:
        """Build the stages ``stage``'s ``%files from`` read that were deferred (cache hits)."""
        for block in stage.files:
            name = files.stage_of(block.args)
            if name in self.deferred:
                self.deferred.pop(name)()


def _fetch(bundle: Bundle, stage: Stage, run: BuildRun) -> None:
    """The bootstrap step: the stage's agent (checked before the build) fills the rootfs."""
    source = AGENTS[stage.bootstrap].load()
    source().fetch(bundle, stage, run.plan.fetch)


def _copy_tree(src: Path, dst: Path) -> None:
    proc = subprocess.run(["cp", "-a", "--", f"{src}/.", f"{dst}/"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        raise BuildError(f"--update: copying {src}: {proc.stderr.strip() or 'cp failed'}",
                         exit_code=proc.returncode)


def _update_from(bundle: Bundle, plan: BuildPlan) -> None:
    """--update: start from a copy of the existing sandbox; the bootstrap is skipped."""
    in_build_userns(plan, _copy_tree, Path(plan.target), bundle.rootfs)
    bundle.bootstrapped = False


def _has_files(stage: Stage, from_stage: bool) -> bool:
    return any((files.stage_of(b.args) is not None) == from_stage and b.files for b in stage.files)


def stage_phases(run: BuildRun, stage: Stage, *, last: bool) -> dict[str, list[Step]]:
    """The steps ``stage`` will run, by phase: ``boot`` (%pre, bootstrap), ``apps``, ``build``
    (%files from, %setup, %files, %post) and ``meta`` (metadata, %test); the build cache
    checkpoints after ``boot`` and after ``build`` (``builder.steps.checkpoint``)."""
    plan, opts, out = run.plan, run.plan.steps, run.progress.output
    boot: list[Step] = []
    if scripts.host_script(stage, "pre", opts):
        boot.append(("%pre", lambda b: scripts.run_host_script(b, stage, "pre", opts, output=out)))
    if last and plan.update and Path(plan.target).is_dir():
        boot.append((f"update: starting from {plan.target}", lambda b: _update_from(b, plan)))
    else:
        boot.append((f"bootstrap: {stage.bootstrap}", lambda b: _fetch(b, stage, run)))
    app_steps: list[Step] = [(f"apps: {', '.join(stage.app_order)}" if stage.app_order else None,
                              lambda b: apps.write_apps(b, stage, cwd=opts.cwd))]
    build: list[Step] = []
    if opts.allows("files") and _has_files(stage, True):
        build.append(("%files from", lambda b: (run.need(stage), in_build_userns(
            plan, files.copy_stage_files, b, stage, opts, run.stages))))
    if scripts.host_script(stage, "setup", opts):
        build.append(("%setup", lambda b: scripts.run_host_script(b, stage, "setup", opts, output=out)))
    if opts.allows("files") and _has_files(stage, False):
        build.append(("%files", lambda b: files.copy_host_files(b, stage, opts)))
    if container.post_script(stage).strip():
        build.append(("%post", lambda b: container.run_post(b, stage, opts, plan.identity, output=out)))
    meta: list[Step] = [("metadata", lambda b: write_metadata(b, stage, run.recipe.full_raw, plan, version=run.version))]
    test = stage.scripts.get("test")
    if not opts.notest and test and test.script.strip():
        meta.append(("%test", lambda b: container.run_test(b, stage, opts, plan.identity, output=out)))
    return {"boot": boot, "apps": app_steps, "build": build, "meta": meta}


def stage_steps(run: BuildRun, stage: Stage, *, last: bool) -> list[Step]:
    """(label or None for a silent step, the step) for every step ``stage`` will run (uncached)."""
    phases = stage_phases(run, stage, last=last)
    return phases["boot"] + phases["apps"] + phases["build"] + phases["meta"]


def _planned(run: BuildRun, cache: BuildCache | None) -> list[list[Step]]:
    count = len(run.recipe.stages)
    if cache is None:
        return [stage_steps(run, s, last=i == count - 1) for i, s in enumerate(run.recipe.stages)]
    return [cache.wrap(i, stage_phases(run, s, last=i == count - 1)) for i, s in enumerate(run.recipe.stages)]


def _run_stage(run: BuildRun, index: int, steps: list[Step], bundles: list[Bundle]) -> Bundle:
    stage = run.recipe.stages[index]
    t0 = time.monotonic()
    name = stage.name or str(index + 1)
    bundle = Bundle.create(run.plan.fetch.tmpdir)
    bundles.append(bundle)
    for label, step in steps:
        if label:
            run.progress.step(f"[stage {name}] {label}")
        step(bundle)
    if stage.name:
        run.stages[stage.name] = bundle.rootfs
    run.summary.append({"name": stage.name, "bootstrap": stage.bootstrap, "duration": round(time.monotonic() - t0, 3)})
    return bundle


def _run_stages(run: BuildRun, planned: list[list[Step]], bundles: list[Bundle], cache: BuildCache | None) -> Bundle:
    """Run every stage; the last one's bundle. With the cache, a named stage before the last
    whose checkpoint is there is only restored when a ``%files from`` needs it."""
    run.progress.begin(sum(1 for steps in planned for label, _ in steps if label) + 1)
    last = len(planned) - 1
    for index, steps in enumerate(planned):
        name = run.recipe.stages[index].name
        if cache is not None and index < last and name and cache.expected_hit(index):
            run.deferred[name] = functools.partial(_run_stage, run, index, steps, bundles)
            continue
        final = _run_stage(run, index, steps, bundles)
    return final


def _build(run: BuildRun, bundles: list[Bundle]) -> tuple[ImageResult, list[dict]]:
    recipe, plan = run.recipe, run.plan
    cache = BuildCache.open(run)
    if cache is not None:
        image = cache.image_hit()
        if image is not None:
            return image, [{"name": s.name, "bootstrap": s.bootstrap, "duration": 0.0, "cached": True}
                           for s in recipe.stages]
    try:
        final = _run_stages(run, _planned(run, cache), bundles, cache)
    finally:
        if cache is not None:
            cache.close()
    run.progress.step(f"writing {plan.target} ({plan.format})")
    image = write_bundle(final, plan, deffile=recipe.full_raw)
    if cache is not None:
        cache.save_image(image)
    return image, run.summary


def build_recipe(recipe: Recipe, plan: BuildPlan, *, progress: Progress | None = None,
                 version: str = "sbuild") -> BuildResult:
    """Build every stage of ``recipe`` and write the last one as ``plan.target``."""
    from builder.sources.checks import recipe_problems

    problems = recipe_problems(recipe)
    if problems:
        raise RecipeError(problems)
    started = time.monotonic()
    reclaim_leftovers(plan)
    run = BuildRun(recipe, plan, progress or Progress(), version)
    bundles: list[Bundle] = []
    ok = False
    try:
        image, summary = _build(run, bundles)
        ok = True
    except SbuildError as e:
        if plan.keep_bundle and bundles:
            kept = ", ".join(str(b.work) for b in bundles)
            e.hint = (e.hint + "; " if e.hint else "") + f"the build bundle is kept at {kept}"
        raise
    finally:
        run.progress.end()
        for b in bundles:
            if plan.keep_bundle:
                b.keep()
            else:
                remove_bundle(b, plan)
    kept = [b.work for b in bundles] if plan.keep_bundle and ok else []
    return BuildResult(image, summary, round(time.monotonic() - started, 3), kept)
