"""``sbuild [build] SOURCE TARGET``: build a recipe, or convert an image, into TARGET.

SOURCE is a recipe (recognised by content, so a file named ``Singularity`` works), an
image (.simg, .sif, squashfs, ext3), a sandbox directory, or a URI (``docker://…``),
which becomes a one-stage recipe. Singularity's own ``TARGET SOURCE`` order is accepted
when the arguments make the direction clear (a URI is always the SOURCE, an existing
TARGET notwithstanding); ambiguous cases take ``SOURCE TARGET``;
sbuild always says which way it went. Checks that can fail early run first
(``builder.steps.checks``): an existing target without ``--force``, a noexec or full
TMPDIR, a missing mksquashfs or debootstrap, room for the image before packing.

A recipe build as an unprivileged user is a ``--fakeroot`` build (implied, as in
Apptainer): see ``builder.steps.userns``. Progress: a tqdm bar when stderr is a terminal,
plain step lines otherwise, nothing but errors with ``--quiet``; ``--json`` prints one
object at the end (target, format, size, digest, duration, stages).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path

from builder.commands import add_output_flags
from builder.commands.flags import add_flag
from builder.commands.build_flags import add_build_flags, apply_build_flags
from builder.commands.build_flags import identity as flag_identity
from builder.commands.check import add_build_arg_flags, build_args_from
from base.errors import UsageError

__all__ = ["register", "run", "decide_direction", "looks_like_recipe"]

log = logging.getLogger("sbuild.build")

_URI = re.compile(r"^(library|docker|docker-archive|docker-daemon|oci|oci-archive|http|https|oras|shub|"
                  r"buildkit|dockerfile|ipfs):(//)?(.+)$")


def register(subparsers: argparse._SubParsersAction, only: str | None = None) -> None:
    p = subparsers.add_parser("build", help="build an image from a recipe, image or URI",
                              description="Build TARGET from SOURCE (recipe, image, sandbox or URI).")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("target", metavar="TARGET")
    add_flag(p, "-s", "--sandbox", env="SANDBOX", action="store_true", help="write a sandbox directory")
    p.add_argument("--format", choices=("simg", "sif", "squashfs", "sandbox", "ext3"), help="output format")
    add_flag(p, "-F", "--force", env="FORCE", action="store_true", help="overwrite TARGET; %%labels override")
    add_flag(p, "-T", "--notest", env="NOTEST", action="store_true", help="do not run %%test")
    add_flag(p, "--section", env="SECTION", default="all", help="comma-separated sections to run (default all)")
    add_flag(p, "-u", "--update", env="UPDATE", action="store_true", help="run the sections on an existing sandbox")
    add_flag(p, "-f", "--fakeroot", env="FAKEROOT", action="store_true", help="build as root in a user namespace")
    add_flag(p, "--fix-perms", env="FIXPERMS", action="store_true", help="give the owner rwx on dirs, rw on files")
    p.add_argument("-B", "--bind", action="append", default=[], metavar="SRC[:DST[:OPTS]]")  # no env twin
    add_flag(p, "--arch", env="BUILD_ARCH", help="architecture for pulls and labels (Go name, e.g. amd64)")
    add_flag(p, "--nohttps", "--no-https", env=("NOHTTPS", "NO_HTTPS"), action="store_true",
             deprecated={"--nohttps": "use --no-https"})
    add_flag(p, "--authfile", env="AUTH_FILE")
    add_flag(p, "--library", env="LIBRARY", metavar="URL", help="library URL for library:// sources without a host")
    add_flag(p, "--docker-login", env="DOCKER_LOGIN", action="store_true")
    # (their env twins, bare DOCKER_* and *_DOCKER_USERNAME/PASSWORD, are read by builder.sources.oci.auth)
    p.add_argument("--docker-username", help=argparse.SUPPRESS)
    p.add_argument("--docker-password", help=argparse.SUPPRESS)
    p.add_argument("--remote", action="store_true", help=argparse.SUPPRESS)  # Apptainer's: always fatal
    add_flag(p, "--tmpdir", env="TMPDIR", help="where bundles are made")
    add_flag(p, "--no-cleanup", env="NO_CLEANUP", action="store_true", help="keep the build bundle")
    add_flag(p, "--disable-cache", env="DISABLE_CACHE", action="store_true")
    from builder.commands.cache import add_cache_flags  # --no-cache --cache-explain --rebuild --cache-from/to/max

    add_cache_flags(p)
    add_flag(p, "--mksquashfs-args", env="MKSQUASHFS_ARGS", default="", metavar="ARGS")
    p.add_argument("--json", action="store_true", help="print one JSON object describing the result")
    add_build_arg_flags(p)
    add_output_flags(p)
    add_build_flags(p)  # Apptainer's other build flags (builder.commands.build_flags)
    p.set_defaults(handler=run)


def looks_like_recipe(path: Path) -> bool:
    """A file whose first meaningful line is a header key such as ``Bootstrap:``."""
    try:
        if not path.is_file():
            return False
        with open(path, "rb") as fh:
            head = fh.read(65536)
    except OSError:
        return False
    if b"\0" in head:
        return False
    return re.search(rb"(?im)^\s*bootstrap\s*:", head) is not None


def _is_source(arg: str) -> bool:
    """An existing path, or a URI (docker://…, library://…)."""
    return Path(arg).exists() or _is_uri(arg)


def _is_uri(arg: str) -> bool:
    """A URI (docker://…) that is not also an existing path: it can only be a SOURCE."""
    return bool(_URI.match(arg)) and not Path(arg).exists()


def decide_direction(first: str, second: str, *, sandbox: bool) -> tuple[str, str, bool]:
    """(source, target, swapped) for ``sbuild build FIRST SECOND``. A URI is always the
    SOURCE, whether or not the other argument exists (``--force OUT docker://…``)."""
    if _is_uri(first) != _is_uri(second):
        return (first, second, False) if _is_uri(first) else (second, first, True)
    a, b = Path(first), Path(second)
    if looks_like_recipe(b) and not looks_like_recipe(a):
        return second, first, True
    a_src = _is_source(first)
    if not a_src and _is_source(second):
        return second, first, True
    if sandbox and a.is_dir() and not b.is_dir() and b.is_file() and not looks_like_recipe(a):
        # `--sandbox dir/ base.simg`: an existing sandbox dir as target, an image as source
        return second, first, True
    return first, second, False


def _sections(value: str) -> frozenset[str] | None:
    from builder.options import SECTION_NAMES

    names = [v.strip() for v in value.split(",") if v.strip()]
    if names == ["all"]:
        return None
    if names == ["none"]:
        return frozenset()
    if "all" in names or "none" in names:
        raise UsageError("--section: 'all' and 'none' cannot be combined with other sections")
    bad = [n for n in names if n not in SECTION_NAMES]
    if bad:
        raise UsageError(f"--section: unknown section {bad[0]!r}", hint="one of " + ", ".join(SECTION_NAMES))
    return frozenset(names)


def _source_date_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if not value:
        return None
    try:
        return int(value)
    except ValueError as e:
        raise UsageError(f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds") from e


def _recipe_for(source: str, build_args):  # noqa: ANN001
    from builder.recipe import load_recipe, parse_recipe

    m = _URI.match(source)
    if m and not Path(source).exists():
        text = f"bootstrap: {m.group(1)}\nfrom: {m.group(3)}\n\n"
        return parse_recipe(text.encode(), path=source, build_args=build_args)
    return load_recipe(source, build_args)


def _pack_options(args: argparse.Namespace):  # noqa: ANN202
    """How TARGET is packed: ``--mksquashfs-args``, SOURCE_DATE_EPOCH (read here, once),
    ``SBUILD_PACKER`` (``mksquashfs`` to pack with mksquashfs instead of sbuild's own packer),
    and the packer's block cache under the cache root unless ``--disable-cache``."""
    from builder.images import PackOptions, split_mksquashfs_args
    from builder.images.squashfs import PACKERS

    packer = os.environ.get("SBUILD_PACKER") or "auto"
    if packer not in PACKERS:
        raise UsageError(f"SBUILD_PACKER={packer!r} is not a packer", hint="use one of " + ", ".join(PACKERS))
    epoch = _source_date_epoch()
    if epoch is None and getattr(args, "reproducible", False):  # --reproducible: a fixed epoch (build_flags)
        epoch = 0
    blocks = None
    if not getattr(args, "disable_cache", False):  # --disable-cache / APPTAINER_DISABLE_CACHE
        from builder.images.blockcache import default_dir

        blocks = str(default_dir())
    return PackOptions(mksquashfs_args=split_mksquashfs_args(args.mksquashfs_args),
                       source_date_epoch=epoch, packer=packer, block_cache=blocks)


def _plan(args: argparse.Namespace, target: Path, fmt: str, identity, pack, transfer=None):  # noqa: ANN001, ANN202
    """The build's options, each value once; ``pack`` was built first, for the preflight."""
    from builder.options import BuildPlan, FetchOptions, StepOptions

    login = None
    if args.docker_login:
        from builder.commands.pull import prompt_login

        login = prompt_login()  # UsageError (exit 2) without a terminal to ask on
    elif args.docker_username:
        from builder.sources.oci import Credentials

        login = Credentials(args.docker_username, args.docker_password or "")
    fetch = FetchOptions(arch=args.arch, nohttps=args.nohttps, authfile=args.authfile,
                         disable_cache=args.disable_cache, fix_perms=args.fix_perms, tmpdir=args.tmpdir,
                         identity=identity, login=login, library=args.library, transfer=transfer)
    steps = StepOptions(sections=_sections(args.section), notest=args.notest, binds=tuple(args.bind))
    update = bool(args.update and not args.force)
    if args.update and args.force:
        log.info("--update with --force: rebuilding %s from scratch", target)
    from builder.commands.cache import cache_options

    return BuildPlan(target=target, format=fmt, fetch=fetch, steps=steps, pack=pack, force=args.force,
                     keep_bundle=args.no_cleanup, update=update, cache=cache_options(args))


def _progress(args: argparse.Namespace):  # noqa: ANN202
    from builder.steps.progress import BarProgress, LineProgress

    if args.quiet or args.json:
        return LineProgress(sys.stderr, echo=False)
    isatty = getattr(sys.stderr, "isatty", None)
    if isatty is not None and isatty() and os.environ.get("TERM") != "dumb":
        return BarProgress(sys.stderr)
    return LineProgress(sys.stderr)


def _convert(args: argparse.Namespace, src: Path, target: Path, fmt: str):  # noqa: ANN202
    from builder.steps import checks, convert_source
    from builder.steps.userns import build_identity, caller_identity

    pack = _pack_options(args)
    checks.preflight(target, fmt, force=args.force, update=False, build=False, pack=pack)
    if args.update:
        raise UsageError("--update needs a recipe to run on the sandbox", hint="drop --update to convert the image")
    identity = build_identity(True) if args.fakeroot else caller_identity()
    return convert_source(src, _plan(args, target, fmt, identity, pack))


def _build(args: argparse.Namespace, source: str, target: Path, fmt: str):  # noqa: ANN202
    from builder.steps import build_recipe, checks
    from builder.steps.userns import build_identity

    recipe = _recipe_for(source, build_args_from(args))
    for w in recipe.warnings:
        log.warning("%s", w.render("warning"))
    identity = flag_identity(args) or build_identity(args.fakeroot)
    pack = _pack_options(args)
    checks.preflight(target, fmt, force=args.force, update=args.update, tmpdir=args.tmpdir,
                     agents={s.bootstrap for s in recipe.stages}, identity=identity.mode, pack=pack)
    progress = _progress(args)
    plan = _plan(args, target, fmt, identity, pack, transfer=progress.transfer)
    from builder.commands.compat import sbuild_version

    result = build_recipe(recipe, plan, progress=progress, version=sbuild_version())
    for kept in result.kept:
        log.info("kept the build bundle at %s", kept)
    return result.image, result.stages


def run(args: argparse.Namespace) -> int:
    import time

    from builder.images import file_digest, format_for_target

    if args.remote:
        raise UsageError("--remote builds are not supported", hint="build locally (sbuild needs no root)")
    apply_build_flags(args)
    if getattr(args, "program", "sbuild") != "sbuild":  # Apptainer's `build TARGET SOURCE`, strictly
        source, target_s, swapped = args.target, args.source, False
    else:
        source, target_s, swapped = decide_direction(args.source, args.target, sandbox=args.sandbox)
    target = Path(target_s)
    fmt = format_for_target(target, sandbox=args.sandbox, fmt=args.format)
    log.info("building %s from %s%s", target, source, " (read as TARGET SOURCE)" if swapped else "")
    started = time.monotonic()
    src = Path(source)
    if src.exists() and not looks_like_recipe(src):
        image, stages = _convert(args, src, target, fmt), []
    else:
        image, stages = _build(args, source, target, fmt)
    duration = round(time.monotonic() - started, 3)
    if args.json:
        digest = file_digest(image.path) if image.format != "sandbox" else None
        print(json.dumps({"target": str(image.path), "format": image.format, "size": image.size,
                          "digest": digest, "duration": duration, "stages": stages}))
    else:
        log.info("built %s (%s, %d bytes) in %.1fs", image.path, image.format, image.size, duration)
    return 0


