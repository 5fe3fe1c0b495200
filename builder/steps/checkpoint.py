"""The build cache in the pipeline: checkpoints around each stage's steps.

``BuildCache.open(run)`` (None with ``--disable-cache``) computes every stage's keys
(``builder.steps.stagekeys``) before the first step runs. ``wrap(index, stage, phases)``
turns a stage's steps into the cached sequence::

    enter stage → enter bootstrap → %pre, bootstrap → leave bootstrap → apps →
    %files from, %setup, %files, %post → leave stage → metadata, %test

Entering a checkpoint looks it up in the local store (verified; shared lock while it is
restored), then takes its exclusive lock (saying so when another build holds it) and looks
again, then asks each ``--cache-from`` registry (one HEAD). A hit unpacks the checkpoint
into the bundle and the phase's steps are skipped (a stage hit skips the bootstrap too; the
apps step still runs: it writes app metadata, which is not in the key). Leaving a missed
checkpoint packs the rootfs into the store (sbuild's packer, times and owners kept), pushes
it to ``--cache-to``, and lets go of the lock. ``--no-cache`` skips the lookups only.

``image_hit(recipe)``: a last stage that hits with the same recipe text, format and pack
options reuses the packed TARGET from the store without running or packing anything;
``save_image`` records it after a build. Hit, miss and why: INFO with ``--cache-explain``,
DEBUG otherwise (``-v``).

A named stage before the last whose checkpoint is in the store is deferred by the pipeline:
restored only when a later ``%files from`` that runs needs it. Limits: a failed restore (unsquashfs failing on a verified blob) fails the
build instead of rerunning the steps.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import shutil
from pathlib import Path

from base.cachedir import cache_root
from builder.cache import DEFAULT_CAP, STORE_DIR, CheckpointStore, Entry, RemoteCache, changes, describe, key_of
from builder.images import ImageResult
from builder.steps.stagekeys import StageKeys, image_inputs, stage_keys
from builder.steps.write import in_build_userns

__all__ = ["BuildCache"]

log = logging.getLogger("sbuild.cache")
_NO_CLAMP = 0xFFFFFFFF  # a fixed filesystem time, and no file time is newer: times kept as found


def _pack_checkpoint(rootfs: Path, out: Path) -> None:
    from builder.images.sqfs_pack import SquashOptions, pack_directory

    pack_directory(rootfs, out, options=SquashOptions(source_date_epoch=_NO_CLAMP, level=1))  # speed over size


def _unpack_checkpoint(blob: Path, rootfs: Path) -> None:
    from base.squashfs import unpack

    unpack(blob, rootfs)


class _Phase:
    """One checkpoint of one stage while it runs: its key, inputs, lock and outcome."""

    def __init__(self, stage: str, kind: str, key: str, inputs: dict, slot: str) -> None:
        self.stage, self.kind, self.key, self.inputs, self.slot = stage, kind, key, inputs, slot
        self.done = False  # restored from the cache: its steps are skipped
        self.lock = contextlib.ExitStack()


class BuildCache:
    def __init__(self, run, keys: list[StageKeys], root: Path) -> None:  # noqa: ANN001
        opts = run.plan.cache
        self.run, self.opts, self.keys = run, opts, keys
        self.store = CheckpointStore(root)
        self._expected: dict[int, bool] = {}
        self.remotes = [RemoteCache(ref, run.plan.fetch) for ref in opts.cache_from]
        self.push_to = RemoteCache(opts.cache_to, run.plan.fetch) if opts.cache_to else None
        self._phases: list[_Phase] = []
        self._rebuild_from = min((i for i, k in enumerate(keys)
                                  if k.name in opts.rebuild or str(i + 1) in opts.rebuild), default=None)

    @classmethod
    def open(cls, run) -> BuildCache | None:  # noqa: ANN001
        if not run.plan.cache.enabled or run.plan.fetch.disable_cache:
            return None
        root = Path(run.plan.cache.root or cache_root()) / STORE_DIR
        try:
            root.mkdir(parents=True, exist_ok=True)
            writable = os.access(root, os.W_OK | os.X_OK)
        except OSError:
            writable = False
        if not writable:
            log.warning("cache directory %s is not writable: the build cache is disabled", root)
            return None
        return cls(run, stage_keys(run.recipe, run.plan, run.version), root)

    def close(self) -> None:
        """Let go of every lock still held (a step failed before its checkpoint was stored)."""
        for phase in self._phases:
            phase.lock.close()

    def expected_hit(self, index: int) -> bool:
        """Whether stage ``index``'s checkpoint is in the local store (not yet verified; its
        record read once, when the stage's steps are wrapped)."""
        if index not in self._expected:
            key = self.keys[index].post_key
            self._expected[index] = (key is not None and self._reuse(index)
                                     and self.store.read_record(key) is not None)
        return self._expected[index]

    # ----------------------------------------------------------------- report
    def _say(self, message: str) -> None:
        log.log(logging.INFO if self.opts.explain else logging.DEBUG, "%s", message)

    def _reuse(self, index: int) -> bool:
        return self.opts.reuse and (self._rebuild_from is None or index < self._rebuild_from)

    def _slot(self, index: int, kind: str) -> str:
        text = f"{os.path.abspath(self.run.recipe.path)}\0{index}\0{self.keys[index].name}\0{kind}"
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()

    def _explain_miss(self, phase: _Phase, why: str | None = None) -> None:
        last = self.store.last_inputs(phase.slot)
        reasons = [why] if why else changes(last.get("inputs") if last else None, phase.inputs)
        self._say(describe(phase.stage, phase.kind, None, reasons, phase.key))

    # ------------------------------------------------------------- the steps
    def wrap(self, index: int, phases: dict[str, list]) -> list:
        """The stage's steps with its checkpoints (its plain steps when it is not cached)."""
        keys = self.keys[index]
        plain = phases["boot"] + phases["apps"] + phases["build"] + phases["meta"]
        if keys.post is None:
            self._say(f"cache: stage {keys.name}: not cached: {keys.reason}")
            return plain
        stage = _Phase(keys.name, "stage", keys.post_key, keys.post, self._slot(index, "stage"))
        boot = _Phase(keys.name, "bootstrap", keys.boot_key, keys.boot, self._slot(index, "bootstrap"))
        self._phases += [stage, boot]
        expected = self.expected_hit(index)

        def skip_if(phase: _Phase, *more: _Phase):  # noqa: ANN202
            def gate(step):  # noqa: ANN001, ANN202
                return lambda b: None if any(p.done for p in (phase, *more)) else step(b)
            return gate

        boot_hit = expected or (self._reuse(index) and self.store.read_record(boot.key) is not None)
        quiet = (lambda label: None) if expected else (lambda label: label)
        quiet_boot = (lambda label: None) if boot_hit else (lambda label: label)
        steps = [("cache: restoring the stage checkpoint" if expected else None,
                  lambda b: self._enter(index, stage, b))]
        steps.append((None, lambda b: None if stage.done else self._enter(index, boot, b)))
        steps += [(quiet_boot(label), skip_if(stage, boot)(step)) for label, step in phases["boot"]]
        steps.append((None, lambda b: None if stage.done else self._leave(boot, b)))
        steps += phases["apps"]
        steps += [(quiet(label), skip_if(stage)(step)) for label, step in phases["build"]]
        steps.append((None, lambda b: self._leave(stage, b)))
        return steps + phases["meta"]

    def _enter(self, index: int, phase: _Phase, bundle) -> None:  # noqa: ANN001
        if not self._reuse(index):
            phase.lock.enter_context(self.store.building(phase.key, on_wait=lambda: self._waiting(phase)))
            self._explain_miss(phase, "--no-cache" if not self.opts.reuse else "--rebuild")
            return
        with self.store.reading(phase.key, on_wait=lambda: self._waiting(phase)) as entry:
            if entry is not None:
                return self._restore(phase, entry, bundle, "local")
        entry = phase.lock.enter_context(self.store.building(phase.key, on_wait=lambda: self._waiting(phase)))
        if entry is None:
            remote = next((r for r in self.remotes if r.has(phase.key)), None)
            entry = remote.fetch(phase.key, self.store) if remote is not None else None
            where = f"from {remote}"
        else:
            where = "made by a concurrent build"
        if entry is None:
            return self._explain_miss(phase)
        with phase.lock:  # restored under the lock: a clean cannot take the blob meanwhile
            self._restore(phase, entry, bundle, where)

    def _waiting(self, phase: _Phase) -> None:
        log.info("cache: stage %s %s: waiting for another build of the same step", phase.stage, phase.kind)

    def _restore(self, phase: _Phase, entry: Entry, bundle, where: str) -> None:  # noqa: ANN001
        os.rmdir(bundle.rootfs)
        in_build_userns(self.run.plan, _unpack_checkpoint, entry.blob, bundle.rootfs)
        carried = entry.record.get("bundle") or {}
        bundle.bootstrapped = bool(carried.get("bootstrapped"))
        config = carried.get("image_config")
        bundle.image_config = base64.b64decode(config) if config else None
        bundle.base_labels = dict(carried.get("base_labels") or {})
        phase.done = True
        self.store.remember(phase.slot, phase.key, phase.inputs)
        self._say(describe(phase.stage, phase.kind, where, [], phase.key))

    def _leave(self, phase: _Phase, bundle) -> None:  # noqa: ANN001
        if phase.done:
            return
        record = {"kind": phase.kind, "stage": phase.stage, "inputs": phase.inputs,
                  "parent": phase.inputs.get("parent"),
                  "bundle": {"bootstrapped": bundle.bootstrapped, "base_labels": bundle.base_labels,
                             "image_config": base64.b64encode(bundle.image_config).decode()
                             if bundle.image_config else None}}
        try:
            entry = self.store.put(phase.key, record,
                                   lambda tmp: in_build_userns(self.run.plan, _pack_checkpoint, bundle.rootfs, tmp))
        except OSError as e:  # a full or read-only cache costs the checkpoint, not the build
            log.warning("cache: storing the %s checkpoint of stage %s: %s", phase.kind, phase.stage, e.strerror or e)
            return
        finally:
            phase.lock.close()
        self.store.remember(phase.slot, phase.key, phase.inputs)
        self._after_put(entry)

    def _after_put(self, entry: Entry) -> None:
        self.store.evict(self.opts.max_size or DEFAULT_CAP)
        if self.push_to is not None:
            self.push_to.push(entry)

    # ------------------------------------------------------------ the image
    def _image_key(self) -> tuple[str, dict] | None:
        inputs = image_inputs(self.run.recipe, self.run.plan, self.run.version, self.keys[-1])
        return (key_of(inputs), inputs) if inputs else None

    def image_hit(self) -> ImageResult | None:
        """TARGET copied from the store when the whole build is a hit, else None."""
        found = self._image_key()
        if found is None or not self._reuse(len(self.keys) - 1):
            return None
        key, _ = found
        with self.store.reading(key) as entry:
            if entry is not None:
                return self._copy_image(key, entry)
        for remote in self.remotes:
            if remote.has(key):
                with self.store.building(key) as made:
                    entry = made or remote.fetch(key, self.store)
                    if entry is not None:
                        return self._copy_image(key, entry)
        return None

    def _copy_image(self, key: str, entry: Entry) -> ImageResult:
        from builder.images.convert import copy_image

        plan = self.run.plan
        result = copy_image(entry.blob, Path(plan.target), force=plan.force, fmt=plan.format)
        self._say(f"cache: image [{key[:12]}]: hit: {plan.target} is the cached image, nothing was run or packed")
        return result

    def save_image(self, image: ImageResult) -> None:
        found = self._image_key()
        if found is None or image.format == "sandbox":
            return
        key, inputs = found
        with self.store.building(key), contextlib.suppress(OSError):
            entry = self.store.put(key, {"kind": "image", "stage": self.keys[-1].name, "inputs": inputs,
                                         "parent": inputs["parent"], "format": image.format},
                                   lambda tmp: shutil.copyfile(image.path, tmp))
            self._after_put(entry)
