"""Build steps, in Apptainer's order, and the pipeline that runs them.

Public API:
    build_recipe(recipe, plan, *, progress, version) -> BuildResult
    BuildPlan(target, format, fetch=FetchOptions(), steps=StepOptions(), pack=PackOptions(),
              force, tmpdir, keep_bundle)
    FetchOptions, StepOptions                      frozen option groups
    write_base_env(rootfs, overwrite=...)          the /.singularity.d skeleton (agents)
    handle_shebang(script, args) -> str            Apptainer's runscript/test shebang rule
    inside(rootfs, path) -> Path                   securejoin-style resolution
"""

from builder.steps.baseenv import write_base_env
from builder.steps.metadata import handle_shebang
from builder.steps.options import BuildPlan, FetchOptions, StepOptions
from builder.steps.paths import inside
from builder.steps.pipeline import BuildResult, build_recipe

__all__ = ["BuildPlan", "BuildResult", "FetchOptions", "StepOptions", "build_recipe", "handle_shebang",
           "inside", "write_base_env"]
