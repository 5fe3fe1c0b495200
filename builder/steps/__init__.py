"""Build steps, in Apptainer's order, and the pipeline that runs them.

Public API:
    build_recipe(recipe, plan, *, progress, version) -> BuildResult
    stage_steps(run, stage, *, last) -> [(label, step)]   what a stage will run
    write_bundle(bundle, plan, *, deffile) -> ImageResult  TARGET from a bundle (build, pull)
    convert_source(source, plan) -> ImageResult            TARGET from an image or sandbox
    remove_bundle(bundle, plan), in_build_userns(plan, fn, ...)
    reclaim_leftovers(plan) -> [Path]                      what killed builds left (TMPDIR, beside TARGET)
    handle_shebang(script, args) -> str                    Apptainer's runscript/test shebang rule
The options (``BuildPlan``, ``FetchOptions``, ``StepOptions``) are in ``builder.options``.
"""

from builder.steps.metadata import handle_shebang
from builder.steps.pipeline import BuildResult, BuildRun, Step, build_recipe, stage_steps
from builder.steps.write import convert_source, in_build_userns, reclaim_leftovers, remove_bundle, write_bundle

__all__ = ["BuildResult", "BuildRun", "Step", "build_recipe", "convert_source", "handle_shebang",
           "in_build_userns", "reclaim_leftovers", "remove_bundle", "stage_steps", "write_bundle"]
