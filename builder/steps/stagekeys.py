"""The cache inputs of each stage of a build, as the steps will run it (``builder.cache.keys``).

Two checkpoints per stage:

- ``bootstrap``: the agent, the architecture, the identity mode, every header value (so
  ``Fingerprints:`` too), the base's immutable identity (``keys.base_identity``), ``%pre``,
  the sbuild version;
- ``stage`` (after ``%setup`` + ``%files`` + ``%post``): the bootstrap key, the bodies and
  arguments of ``%setup`` and ``%post`` as they run (build args substituted; the app install
  blocks appended), each ``%files`` block's lines and the content of every host source
  (globs expanded as the copy expands them), the key of each stage a ``%files from`` names,
  ``%appfiles`` and their sources, the app order, ``--section``, ``--bind``, the identity
  mode and the sbuild version.

The build args a phase's untemplated text names are listed too (``build-arg NAME``), for the
explanation. What only shapes metadata (``%environment``, ``%runscript``, ``%startscript``,
``%labels``, ``%help``, ``%test``, app metadata) is in neither: it is written after the
checkpoint. A stage whose base has no identity (``keys.base_identity``), a ``--update``
stage, or one that copies from such a stage is not cached (``StageKeys.reason`` says why).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from base.errors import SbuildError
from builder.cache.keys import Inputs, base_identity, content_digest, key_of, referenced_args
from builder.recipe import Recipe, Stage
from builder.steps import apps, files, scripts
from builder.steps.container import post_script

__all__ = ["StageKeys", "stage_keys", "image_inputs"]

_BUILD_SECTIONS = ("setup", "files", "post", "appinstall", "appfiles")


@dataclass
class StageKeys:
    name: str  # the stage's name, or its number from 1
    boot: Inputs | None = None
    post: Inputs | None = None
    reason: str = ""  # why the stage is not cached

    @property
    def boot_key(self) -> str | None:
        return key_of(self.boot) if self.boot is not None else None

    @property
    def post_key(self) -> str | None:
        return key_of(self.post) if self.post is not None else None


def _registry_digest(fetch):  # noqa: ANN001, ANN202
    def digest(ref: str) -> str:
        from builder.sources.oci.agent import pull_options
        from builder.sources.oci.puller import registry_client
        from builder.sources.oci.reference import parse_reference

        reference = parse_reference(ref)
        if reference.digest:
            return reference.digest
        client = registry_client(reference, pull_options(fetch))
        return client.get_manifest(reference.repository, reference.version)[2]
    return digest


def _arch(plan) -> str:  # noqa: ANN001
    if plan.fetch.arch:
        return plan.fetch.arch
    from builder.sources.oci.platform import host_platform

    return str(host_platform())


def _untemplated(recipe: Recipe) -> list[Stage | None]:
    raw = [c.stage for c in recipe.chunks if c.stage is not None]
    return raw if len(raw) == len(recipe.stages) else [None] * len(recipe.stages)


def _args_in(raw: Stage | None, values: dict, *, header: bool) -> Inputs:
    if raw is None:
        return {}
    if "arguments" in raw.scripts:  # the stage's %arguments defaults, under the --build-arg values
        from builder.recipe.args import read_defaults

        values = {**read_defaults(raw.scripts["arguments"].script, raw.path, raw.first_line, []), **values}
    if header:
        text = "\n".join(e.value for e in raw.header_entries)
        text += "\n".join(s.body for s in raw.sections if s.name == "pre")
    else:
        text = "\n".join(f"{s.args or ''}\n{s.body}" for s in raw.sections if s.name in _BUILD_SECTIONS)
    return referenced_args(text, values)


def _boot_inputs(stage: Stage, raw: Stage | None, recipe: Recipe, plan, version: str) -> tuple[Inputs | None, str]:  # noqa: ANN001
    from builder.sources.oci.agent import ref_for_stage

    header = stage.header or {}
    agent = stage.bootstrap
    ref = ref_for_stage(header) if agent in ("docker", "oras", "docker-archive", "oci-archive", "oci") else None
    try:
        ident, how = base_identity(agent, header, ref=ref, cwd=plan.steps.cwd,
                                   registry_digest=_registry_digest(plan.fetch))
    except SbuildError as e:
        ident, how = None, f"cannot find the base's identity: {e.message}"
    if ident is None:
        return None, how
    inputs: Inputs = {"kind": "bootstrap", "sbuild": version, "agent": agent, "arch": _arch(plan),
                      "identity": plan.identity.mode, "base": ident}
    inputs.update({f"header.{k}": v for k, v in sorted(header.items())})
    pre = scripts.host_script(stage, "pre", plan.steps)
    if pre:
        inputs["section %pre"] = f"{stage.scripts['pre'].args}\n{pre}"
    inputs.update(_args_in(raw, recipe.build_args, header=True))
    return inputs, how


def _file_inputs(stage: Stage, opts, done: dict[str, StageKeys]) -> tuple[Inputs, str]:  # noqa: ANN001
    """The %files and %appfiles inputs; a reason when a source stage is not cached."""
    inputs: Inputs = {}
    if opts.allows("files"):
        for n, block in enumerate(stage.files):
            inputs[f"files #{n + 1} {block.args}".rstrip()] = "\n".join(
                f"{t.source} -> {t.destination}" for t in block.files)
            source = files.stage_of(block.args)
            if source is not None:
                key = done[source].post_key if source in done else None
                if key is None:
                    return inputs, f"%files from {source}: that stage is not cached"
                inputs[f"from-stage {source}"] = key
                continue
            for item in block.files:
                if item.source.strip():
                    for src in files.expand_source(item.source, opts.cwd):
                        inputs[f"file {_shown(src, opts.cwd)}"] = _digest_or_missing(src)
    for app in stage.app_order:
        body = apps.app_body(stage, "appfiles", app)
        if body:
            inputs[f"section %appfiles {app}"] = body
            for src, _ in apps.appfiles_pairs(body):
                path = src if os.path.isabs(src) else os.path.join(opts.cwd, src)
                inputs[f"file {_shown(path, opts.cwd)}"] = _digest_or_missing(path)
    return inputs, ""


def _shown(path: str, cwd: str) -> str:
    """A source below the build's directory by its relative path: the key is the same on a
    machine that checked the recipe out elsewhere (a CI runner)."""
    rel = os.path.relpath(path, cwd)
    return path if rel.startswith("..") else rel


def _digest_or_missing(path: str) -> str:
    try:
        return content_digest(path)
    except OSError:
        return "missing"


def _post_inputs(stage: Stage, raw: Stage | None, recipe: Recipe, plan, version: str, boot_key: str,  # noqa: ANN001
                 done: dict[str, StageKeys]) -> tuple[Inputs | None, str]:
    opts = plan.steps
    inputs: Inputs = {"kind": "stage", "parent": boot_key, "sbuild": version, "identity": plan.identity.mode,
                      "sections": ",".join(sorted(opts.sections)) if opts.sections is not None else "all"}
    if opts.binds:
        inputs["binds"] = "\n".join(opts.binds)
    setup = scripts.host_script(stage, "setup", opts)
    if setup:
        inputs["section %setup"] = f"{stage.scripts['setup'].args}\n{setup}"
    post = post_script(stage)
    if post.strip():
        inputs["section %post"] = f"{stage.scripts['post'].args if stage.scripts.get('post') else ''}\n{post}"
    if stage.app_order:
        inputs["apps"] = ",".join(stage.app_order)
    more, reason = _file_inputs(stage, opts, done)
    if reason:
        return None, reason
    inputs.update(more)
    inputs.update(_args_in(raw, recipe.build_args, header=False))
    return inputs, ""


def stage_keys(recipe: Recipe, plan, version: str) -> list[StageKeys]:  # noqa: ANN001
    """The inputs of both checkpoints of every stage (None where a stage is not cached)."""
    found: list[StageKeys] = []
    by_name: dict[str, StageKeys] = {}
    raws = _untemplated(recipe)
    for index, (stage, raw) in enumerate(zip(recipe.stages, raws)):
        keys = StageKeys(stage.name or str(index + 1))
        last = index == len(recipe.stages) - 1
        if last and plan.update and os.path.isdir(plan.target):
            keys.reason = "--update starts from the existing sandbox"
        else:
            keys.boot, keys.reason = _boot_inputs(stage, raw, recipe, plan, version)
            if keys.boot is not None:
                keys.post, keys.reason = _post_inputs(stage, raw, recipe, plan, version, keys.boot_key, by_name)
        found.append(keys)
        if stage.name:
            by_name[stage.name] = keys
    return found


def image_inputs(recipe: Recipe, plan, version: str, last: StageKeys) -> Inputs | None:  # noqa: ANN001
    """The inputs of the packed TARGET: the last checkpoint, the whole recipe text (all the
    metadata sections), the format and how it is packed."""
    if last.post_key is None or plan.format == "sandbox":
        return None
    return {"kind": "image", "parent": last.post_key, "sbuild": version, "format": plan.format,
            "recipe": hashlib.sha256(recipe.full_raw).hexdigest(), "pack": repr(plan.pack),
            "force": str(plan.force), "notest": str(plan.steps.notest), "arch": plan.fetch.arch or "",
            "fix_perms": str(plan.fetch.fix_perms), "sections": last.post.get("sections", "all")}
