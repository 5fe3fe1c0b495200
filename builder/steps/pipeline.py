"""The build pipeline: every stage in Apptainer's order (spec §B.1), then the last stage
written as TARGET.

For each stage: ``%pre`` (host) → bootstrap (the agent from ``builder.sources``; with
``--update``, for the last stage, a copy of the existing sandbox instead, and no header
labels) → apps (/scif and 94-appsbase.sh) → ``%files from`` → ``%setup`` → ``%files`` →
``%post`` → metadata → ``%test``. The steps a stage will run are listed first, so the
progress sink knows the total. The last stage's rootfs is written with
``builder.images.write_image``, which writes a temp name beside TARGET and renames it into
place, so a failed build leaves no TARGET. Bundles are removed at the end, unless
``keep_bundle`` (``--no-cleanup``), in which case their paths are reported.

Rootless builds with a subordinate id range (``identity == "subuid"``) copy between
stages, pack and remove bundles inside the build's user namespace
(``builder.steps.userns``), since files there may belong to ids the user cannot read.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from builder.bundle import Bundle
from base.errors import BuildError, CapabilityError, RecipeError, SbuildError
from builder.images import ImageResult, write_image
from builder.recipe import Recipe, Stage
from builder.sources import lookup_agent
from builder.steps import apps, checks, container, files, scripts
from builder.steps.metadata import write_metadata
from builder.steps.options import BuildPlan
from builder.steps.progress import Progress
from builder.steps.userns import call_in_userns

__all__ = ["build_recipe", "BuildResult", "stage_steps"]

log = logging.getLogger("sbuild.build")


@dataclass
class BuildResult:
    image: ImageResult
    stages: list[dict] = field(default_factory=list)
    duration: float = 0.0
    kept: list[Path] = field(default_factory=list)


@dataclass
class _Ctx:
    recipe: Recipe
    plan: BuildPlan
    progress: Progress
    version: str
    stages: dict[str, Path] = field(default_factory=dict)  # stage name -> its rootfs


def _in_ns(plan: BuildPlan, fn: Callable, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
    """``fn`` in the build's user namespace when files may belong to subordinate ids."""
    if plan.identity == "subuid":
        return call_in_userns(fn, *args, **kwargs)
    return fn(*args, **kwargs)


def _fetch(bundle: Bundle, stage: Stage, plan: BuildPlan, progress: Progress) -> None:
    agent = lookup_agent(stage.bootstrap)
    if agent is None or not agent.supported:
        raise BuildError(f"bootstrap agent {stage.bootstrap!r} is not supported yet")
    try:
        module = importlib.import_module(agent.module)
    except ModuleNotFoundError as e:
        if e.name != agent.module:
            raise
        raise CapabilityError(f"bootstrap agent {stage.bootstrap!r} is not available in this sbuild yet") from e
    module.fetch(bundle, stage, dataclasses.replace(plan.fetch, transfer=progress.transfer))


def _copy_tree(src: Path, dst: Path) -> None:
    proc = subprocess.run(["cp", "-a", "--", f"{src}/.", f"{dst}/"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        raise BuildError(f"--update: copying {src}: {proc.stderr.strip() or 'cp failed'}",
                         exit_code=proc.returncode)


def _update_from(bundle: Bundle, plan: BuildPlan) -> None:
    """--update: start from a copy of the existing sandbox; the bootstrap is skipped."""
    _in_ns(plan, _copy_tree, Path(plan.target), bundle.rootfs)
    bundle.bootstrapped = False


def _has_files(stage: Stage, from_stage: bool) -> bool:
    return any((files.stage_of(b.args) is not None) == from_stage and b.files for b in stage.files)


def stage_steps(stage: Stage, plan: BuildPlan, *, last: bool) -> list[tuple[str | None, str]]:
    """(label or None for a silent step, step key) for every step ``stage`` will run."""
    opts = plan.steps
    steps: list[tuple[str | None, str]] = []
    if scripts.host_script(stage, "pre", opts):
        steps.append(("%pre", "pre"))
    if last and plan.update and Path(plan.target).is_dir():
        steps.append((f"update: starting from {plan.target}", "update"))
    else:
        steps.append((f"bootstrap: {stage.bootstrap}", "bootstrap"))
    steps.append((f"apps: {', '.join(stage.app_order)}" if stage.app_order else None, "apps"))
    if opts.allows("files") and _has_files(stage, True):
        steps.append(("%files from", "files_from"))
    if scripts.host_script(stage, "setup", opts):
        steps.append(("%setup", "setup"))
    if opts.allows("files") and _has_files(stage, False):
        steps.append(("%files", "files"))
    if container.post_script(stage).strip():
        steps.append(("%post", "post"))
    steps.append(("metadata", "metadata"))
    test = stage.scripts.get("test")
    if not opts.notest and test and test.script.strip():
        steps.append(("%test", "test"))
    return steps


def _run_step(key: str, ctx: _Ctx, bundle: Bundle, stage: Stage) -> None:
    plan, opts, out = ctx.plan, ctx.plan.steps, ctx.progress.output
    if key in ("pre", "setup"):
        scripts.run_host_script(bundle, stage, key, opts, output=out)
    elif key == "update":
        _update_from(bundle, plan)
    elif key == "bootstrap":
        _fetch(bundle, stage, plan, ctx.progress)
    elif key == "apps":
        apps.write_apps(bundle, stage, cwd=opts.cwd)
    elif key == "files_from":
        _in_ns(plan, files.copy_stage_files, bundle, stage, opts, ctx.stages)
    elif key == "files":
        files.copy_host_files(bundle, stage, opts)
    elif key == "post":
        container.run_post(bundle, stage, opts, output=out)
    elif key == "metadata":
        write_metadata(bundle, stage, ctx.recipe.full_raw, opts, version=ctx.version)
    elif key == "test":
        container.run_test(bundle, stage, opts, output=out)
    else:  # pragma: no cover - stage_steps and this table go together
        raise AssertionError(key)


def _write(ctx: _Ctx, bundle: Bundle) -> ImageResult:
    plan = ctx.plan
    objects = {}
    config = bundle.scratch("oci-config.json")
    if config.is_file():
        objects["oci-config.json"] = config.read_bytes()
    checks.check_room(bundle.rootfs, plan.target, plan.format)
    pack = plan.pack
    if plan.identity == "subuid" and pack.all_root is None:
        pack = dataclasses.replace(pack, all_root=True)  # root inside the namespace, unprivileged outside
    try:
        return _in_ns(plan, write_image, bundle.rootfs, plan.target, plan.format, deffile=ctx.recipe.full_raw,
                      json_objects=objects or None, options=pack, force=plan.force or plan.update,
                      fix_perms=plan.fetch.fix_perms, move=not plan.keep_bundle, arch=plan.steps.arch)
    except BuildError as e:
        hint = checks.no_space_hint(plan.target, e.output_tail)
        if hint and not e.hint:
            e.hint = hint
        raise


def _remove(bundle: Bundle, plan: BuildPlan) -> None:
    if plan.identity == "subuid":
        try:
            call_in_userns(bundle.remove)
            return
        except SbuildError as e:
            log.debug("removing %s in the user namespace: %s", bundle.work, e)
    bundle.remove()


def _build(ctx: _Ctx, bundles: list[Bundle]) -> tuple[ImageResult, list[dict]]:
    recipe, plan = ctx.recipe, ctx.plan
    count = len(recipe.stages)
    planned = [stage_steps(s, plan, last=i == count - 1) for i, s in enumerate(recipe.stages)]
    ctx.progress.begin(sum(1 for steps in planned for label, _ in steps if label) + 1)
    summary: list[dict] = []
    for index, (stage, steps) in enumerate(zip(recipe.stages, planned)):
        t0 = time.monotonic()
        label = stage.name or str(index + 1)
        bundle = Bundle.create(plan.tmpdir, stage_index=index, stage_name=stage.name)
        bundles.append(bundle)
        for text, key in steps:
            if text:
                ctx.progress.step(f"[stage {label}] {text}")
            _run_step(key, ctx, bundle, stage)
        if stage.name:
            ctx.stages[stage.name] = bundle.rootfs
        summary.append({"name": stage.name, "bootstrap": stage.bootstrap,
                        "duration": round(time.monotonic() - t0, 3)})
    ctx.progress.step(f"writing {plan.target} ({plan.format})")
    return _write(ctx, bundles[-1]), summary


def build_recipe(recipe: Recipe, plan: BuildPlan, *, progress: Progress | None = None,
                 version: str = "sbuild") -> BuildResult:
    """Build every stage of ``recipe`` and write the last one as ``plan.target``."""
    from builder.recipe.validate import build_problems

    problems = build_problems(recipe)
    if problems:
        raise RecipeError(problems)
    started = time.monotonic()
    ctx = _Ctx(recipe, plan, progress or Progress(), version)
    bundles: list[Bundle] = []
    ok = False
    try:
        image, summary = _build(ctx, bundles)
        ok = True
    except SbuildError as e:
        if plan.keep_bundle and bundles:
            kept = ", ".join(str(b.work) for b in bundles)
            e.hint = (e.hint + "; " if e.hint else "") + f"the build bundle is kept at {kept}"
        raise
    finally:
        ctx.progress.end()
        if not plan.keep_bundle:
            for b in bundles:
                _remove(b, plan)
    kept = [b.work for b in bundles] if plan.keep_bundle and ok else []
    return BuildResult(image, summary, round(time.monotonic() - started, 3), kept)
