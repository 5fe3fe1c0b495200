"""``sbuild pull [TARGET] URI`` and ``sbuild push IMAGE oras://REF``.

pull: ``docker://``, ``oci:``, ``oci-archive:``, ``docker-archive:``, ``docker-daemon:``
are fetched into a bundle by the OCI source (``builder.sources.oci.agent.fill_from_image``:
rootfs, base environment, docker metadata) and written as TARGET by a build's own last
step, ``builder.steps.write_bundle``: ``.sif`` by default as Apptainer, ``--sandbox`` for
a directory; the format follows the name as in ``sbuild build``.
``oras://`` downloads the SIF as it is. ``library://`` and ``shub://`` download the image
(verified, through the blob cache: ``builder.sources.library`` / ``builder.sources.shub``)
and copy it to TARGET when TARGET's format is the image's own (a SIF to ``.sif``, a
``.simg`` to ``.simg``); any other format is converted, ``--sandbox`` unpacks it.
``--library URL`` names the library. TARGET: ``--name`` (Snakemake's and shpc's form), else
the positional TARGET, else ``default_name(URI)`` (Apptainer's ``<name>_<tag>.sif``), joined
under ``--dir``; an existing TARGET needs ``--force`` (Apptainer's message otherwise). Under
the Apptainer names a URI needs its transport; under ``sbuild`` a bare name is ``docker://``.
Messages go to stderr; stdout stays empty, as Apptainer's.
push: ``oras://`` only (Apptainer's media types).

On a terminal, each layer gets a tqdm bar on stderr (bytes downloaded, or read from the
blob cache); ``--docker-login`` asks for the credentials there (``prompt_login``, also
meant for ``sbuild build --docker-login``), and is an error without a terminal.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from builder.commands import add_output_flags
from builder.commands.flags import add_flag

__all__ = ["register", "default_name", "pull_image", "place_image", "prompt_login", "layer_progress"]


def register(subparsers, only: str | None = None) -> None:
    pull = subparsers.add_parser("pull", help="fetch an image from a registry or a local OCI source",
                                 description="pull [TARGET] URI, or pull --name TARGET URI")
    pull.add_argument("args", nargs="+", metavar="[TARGET] URI")
    add_flag(pull, "--name", env="PULL_NAME", help="the file to write (overrides TARGET)")
    add_flag(pull, "--dir", env=("PULLDIR", "PULLFOLDER"), help="write TARGET in this directory")
    add_flag(pull, "-F", "--force", env="FORCE", action="store_true", help="overwrite TARGET")
    add_flag(pull, "-s", "--sandbox", env="SANDBOX", action="store_true", help="write a sandbox directory")
    add_flag(pull, "--library", env="LIBRARY", help="library URL for library:// references without a host")
    add_flag(pull, "--arch-variant", env="PULL_ARCH_VARIANT", help="platform variant (with --arch)")
    for flag, key in (("--reproducible", "REPRODUCIBLE"), ("--no-cleanup", "NO_CLEANUP"),
                      ("--allow-unauthenticated", "ALLOW_UNAUTHENTICATED")):  # Apptainer's; no effect here
        add_flag(pull, flag, env=key, action="store_true", help=argparse.SUPPRESS)
    add_flag(pull, "-U", "--allow-unsigned", env="ALLOW_UNSIGNED", action="store_true", help=argparse.SUPPRESS)
    _fetch_flags(pull, arch="PULL_ARCH")
    add_output_flags(pull)
    pull.set_defaults(handler=_pull)
    push = subparsers.add_parser("push", help="push a SIF image to oras://REF")
    push.add_argument("image")
    push.add_argument("ref", metavar="oras://REF")
    push.add_argument("--chunk-size", type=int, help="upload in PATCH chunks of this many bytes")
    _fetch_flags(push)
    add_output_flags(push)
    push.set_defaults(handler=_push)


def _fetch_flags(p: argparse.ArgumentParser, arch: str | None = None) -> None:
    """The registry flags of pull and push, with their env twins (``arch``: --arch's key)."""
    add_flag(p, "--arch", env=arch or (), help="platform to pull (amd64, arm64, arm/v7 ...)")
    add_flag(p, "--nohttps", "--no-https", env=("NOHTTPS", "NO_HTTPS"), action="store_true",
             deprecated={"--nohttps": "use --no-https"}, help="plain HTTP to the registry")
    add_flag(p, "--authfile", env="AUTH_FILE", help="docker config.json style credentials file")
    add_flag(p, "--docker-login", env="DOCKER_LOGIN", action="store_true", help="prompt for registry credentials")
    add_flag(p, "--disable-cache", env="DISABLE_CACHE", action="store_true",
             help="do not use or fill the blob cache")
    add_flag(p, "--tmpdir", env="TMPDIR", help="where temporary rootfs and blobs go")
    p.add_argument("--ca-bundle", help="CA certificates to trust for the registry")
    add_flag(p, "--docker-host", env="DOCKER_HOST", help=argparse.SUPPRESS)  # docker-daemon: host (unused)
    add_flag(p, "--docker-username", env="DOCKER_USERNAME", help=argparse.SUPPRESS)  # hidden in Apptainer too
    add_flag(p, "--docker-password", env="DOCKER_PASSWORD", help=argparse.SUPPRESS)


def prompt_login(stdin=None, ask_password=None):
    """``--docker-login``: ask for a username and password on the terminal (Apptainer's
    prompts). Raises ``UsageError`` when there is no terminal to ask on."""
    import getpass

    from base.errors import UsageError
    from builder.sources.oci import Credentials

    stdin = sys.stdin if stdin is None else stdin
    if not (hasattr(stdin, "isatty") and stdin.isatty()):
        raise UsageError("--docker-login needs a terminal to ask for the credentials",
                         hint="set SINGULARITY_DOCKER_USERNAME and SINGULARITY_DOCKER_PASSWORD, "
                              "or use --authfile")
    sys.stderr.write("Enter Docker Username: ")
    sys.stderr.flush()
    user = stdin.readline().rstrip("\n")
    password = (ask_password or getpass.getpass)("Enter Docker Password: ")
    if not user:
        raise UsageError("--docker-login: no username given")
    return Credentials(user, password)


def _options(args: argparse.Namespace, library: str | None = None):
    """The command's ``FetchOptions``, built once (``--docker-login`` asks here): the
    actions' (``uri.fetch_options``) with pull's ``--arch-variant``, ``--ca-bundle`` and
    ``library`` (None for push)."""
    from builder.commands.uri import fetch_options

    arch = f"{args.arch}/{args.arch_variant}" if getattr(args, "arch_variant", None) and args.arch else args.arch
    return dataclasses.replace(fetch_options(args), arch=arch, ca_bundle=args.ca_bundle, library=library)


def default_name(uri: str) -> str:
    """The file ``apptainer pull URI`` writes (its ``uri.GetName``): the last path segment's
    ``name:tag`` as ``name_tag.sif`` (the first tag of a comma list; ``latest`` without one),
    the bare last segment for http(s); ``img@sha256:ab`` gives ``img@sha256_ab.sif``."""
    scheme, _, rest = uri.partition("://")
    if not _:
        scheme, _, rest = uri.partition(":")
    last = rest.rsplit("/", 1)[-1]
    if scheme in ("http", "https"):
        return last
    name, colon, tags = last.partition(":")
    tag = tags.split(",", 1)[0] if colon else "latest"
    return f"{name}_{tag}.sif"


def _target(args: argparse.Namespace, uri: str) -> Path:
    """TARGET: ``--name``, else the positional one, else ``default_name``; under ``--dir``
    unless absolute (Apptainer joins even an absolute name: a WARNING says it is not)."""
    import logging

    name = args.name or (args.args[0] if len(args.args) == 2 else default_name(uri))
    if not args.dir:
        return Path(name)
    if os.path.isabs(name):
        logging.getLogger("sbuild.pull").warning("--dir %s ignored for the absolute name %s", args.dir, name)
        return Path(name)
    return Path(args.dir) / name


def _refuse_existing(target: Path, force: bool) -> None:
    from base.errors import ImageError

    if os.path.lexists(target) and not force:
        raise ImageError(f'Image file already exists: "{target}" - will not overwrite', path=str(target),
                         hint="use --force to overwrite it")


def pull_image(uri: str, target: Path, options, *, fmt: str, force: bool = False, progress=None) -> None:
    """Build ``uri`` as ``target`` in ``fmt``: as Apptainer's pull, a build of the one-stage
    recipe ``bootstrap: <transport>`` / ``from: <ref>`` (``builder.steps.build_recipe``), so
    that the image has what a build writes (``org.label-schema.*`` and the image's own labels,
    ``/.singularity.d/Singularity``, the env scripts). ``options`` is a
    ``builder.options.FetchOptions``; ``progress(digest, done, total)`` draws the downloads.
    As before, a pull packs with the default ``PackOptions`` (SOURCE_DATE_EPOCH and
    SBUILD_PACKER are build settings)."""
    from builder.options import BuildPlan
    from builder.commands.compat import sbuild_version
    from builder.recipe import parse_recipe
    from builder.steps import build_recipe
    from builder.steps.progress import LineProgress

    scheme, sep, rest = uri.partition("://")
    if not sep:
        scheme, _, rest = uri.partition(":")
    recipe = parse_recipe(f"bootstrap: {scheme}\nfrom: {rest}\n\n".encode(), path=uri)
    fetch = dataclasses.replace(options, transfer=progress) if progress is not None else options
    build_recipe(recipe, BuildPlan(Path(target), fmt, fetch=fetch, force=force),
                 progress=LineProgress(sys.stderr, echo=False), version=sbuild_version())


def layer_progress(stream=None):
    """A ``progress(digest, done, total)`` sink drawing one tqdm bar per layer on ``stream``
    (stderr) when it is a terminal, else writing a heartbeat line per layer now and then
    (``builder.steps.progress.Heartbeat``). Safe to call from the download threads."""
    import threading

    stream = sys.stderr if stream is None else stream
    if not (hasattr(stream, "isatty") and stream.isatty()) or os.environ.get("TERM") == "dumb":
        from builder.steps.progress import Heartbeat

        return Heartbeat(lambda line: print(line, file=stream, flush=True))
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}
    lock = threading.Lock()
    try:
        width = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        width = 0
    sizing = {"dynamic_ncols": True} if width else {"ncols": 80, "nrows": 24}  # a pty without a size

    def update(digest: str, done: int, total: int) -> None:
        with lock:
            bar = bars.get(digest)
            if bar is None:
                bar = bars[digest] = tqdm(total=total or None, unit="B", unit_scale=True, unit_divisor=1024,
                                          desc=digest.partition(":")[2][:12], file=stream, leave=True,
                                          position=len(bars), mininterval=0.2, **sizing)
            if bar.disable:
                return
            bar.update(done - bar.n)
            if total and done >= total:
                bar.close()
    return update


def place_image(image: Path, target: Path, fmt: str, *, force: bool = False) -> None:
    """Write a downloaded image as ``target``: copied when already in ``fmt``, else converted
    (a sandbox is unpacked). Atomic: a failure leaves no TARGET."""
    from builder.images import convert_image, extract_image, probe
    from builder.images.convert import copy_image

    kind = probe(image).kind
    from builder.signing.fingerprints import warn_if_signed

    warn_if_signed(str(image), fmt)  # a signed SIF as .simg/sandbox: the signatures are lost
    if fmt == "sandbox":
        extract_image(image, target, force=force)
    elif kind == fmt:
        copy_image(image, target, force=force)
    else:
        convert_image(image, target, fmt, force=force)


def _image_progress(args: argparse.Namespace, name: str):
    sink = None if args.quiet else layer_progress()
    if sink is None:
        return None
    return lambda _what, done, total: sink(f"image:{name}", done, total)


def _pull_sif_source(uri: str, target: Path, args: argparse.Namespace, options, fmt: str) -> None:
    """``library://`` and ``shub://``: download (cached, verified), then place as TARGET."""
    from builder.sources import library, shub
    from builder.sources.download import cache_for

    if uri.startswith("library:"):
        ref = library.parse_library_ref(uri)
        loptions = library.options_for(options)
        with cache_for(loptions.download) as cache:
            image = library.fetch_library(ref, loptions, cache, _image_progress(args, ref.name))
            from builder.signing.fingerprints import verify_pull

            verify_pull(str(image))  # Apptainer's PGP verify: a failure warns, the pull goes on
            place_image(image, target, fmt, force=args.force)
        return
    sref = shub.parse_shub_ref(uri)
    soptions = shub.options_for(options)
    with cache_for(soptions.download) as cache:
        cached = shub.fetch_shub(sref, soptions, cache, _image_progress(args, sref.name))
        with shub.open_image(cached, soptions.download.tmpdir) as image:
            place_image(image, target, fmt, force=args.force)


def _pull(args: argparse.Namespace) -> int:
    import logging

    from base.errors import UsageError
    from builder.images import format_for_target

    if len(args.args) > 2:
        raise UsageError("pull takes [TARGET] URI")
    uri = args.args[-1]
    compat = getattr(args, "program", "sbuild") != "sbuild"  # called as apptainer / singularity
    if ":" not in uri:
        if compat:
            raise UsageError("No transport type URI supplied")
        uri = "docker://" + uri  # sbuild's convenience: a bare name is a Docker Hub image
    target = _target(args, uri)
    _refuse_existing(target, args.force)
    options = _options(args, args.library)
    # Apptainer writes a SIF whatever the name (Snakemake's <md5>.simg); sbuild follows the name
    fmt = "sandbox" if args.sandbox else "sif" if compat else format_for_target(target)
    cached = _from_cache(uri, options, quiet=args.quiet)
    if cached is not None:  # the URI image cache (builder.commands.uri): pulled once, copied out
        place_image(cached, target, fmt, force=args.force)
    elif uri.startswith("oras://"):
        from builder.sources.oci.agent import pull_options
        from builder.sources.oci.oras import pull_oras

        pull_oras(uri, target, pull_options(options), None if args.quiet else layer_progress())
    elif uri.startswith(("library:", "shub:")):
        _pull_sif_source(uri, target, args, options, fmt)
    else:
        pull_image(uri, target, options, fmt=fmt, force=args.force,
                   progress=None if args.quiet else layer_progress())
    logging.getLogger("sbuild.pull").info("pulled %s to %s", uri, target)
    return 0


def _from_cache(uri: str, options, *, quiet: bool):  # noqa: ANN001, ANN202 - FetchOptions -> Path | None
    """The cached SIF of ``uri`` (pulled into ``<cache>/images/`` first when missing), as
    Apptainer's pull builds into ``cache/oci-tmp/<digest>`` and copies out (the registry is
    asked for the digest each time: no offline fallback); None with ``--disable-cache``, an
    unwritable cache (its WARNING), or for library:// and shub://."""
    from builder.commands import uri as uris

    if uris.scheme_of(uri) not in ("docker", "oras"):
        return None  # (library:// and shub:// downloads are kept in the blob cache already)
    store = uris.image_store(options)
    if store is None:
        return None
    if not quiet:
        options = dataclasses.replace(options, transfer=layer_progress())
    return uris.cached_image(uri, options, store=store, offline=False)


def _push(args: argparse.Namespace) -> int:
    from base.errors import UsageError
    from builder.sources.oci.agent import pull_options
    from builder.sources.oci.oras import push_oras

    if not args.ref.startswith("oras://"):
        raise UsageError(f"cannot push to {args.ref!r}: only oras:// is supported")
    digest = push_oras(Path(args.image), args.ref, pull_options(_options(args)), chunk=args.chunk_size)
    if not args.quiet:
        print(f"pushed {args.image} to {args.ref} ({digest})")
    return 0
