#!/usr/bin/env bash
# Set up sbuild on a Debian/Ubuntu machine: install the system packages it and its tests
# need (only those missing), then sbuild itself into ./.venv (Debian's python3, so that
# unprivileged users can run it too). Safe to run again; it changes nothing when all is there.
set -euo pipefail
cd "$(dirname "$0")"

# What sbuild uses at run time, then what the tests start as real servers and clients.
PACKAGES=(
  python3 python3-venv python3-pip
  squashfs-tools squashfs-tools-ng e2fsprogs busybox-static uidmap squashfuse fuse3
  debootstrap siftool skopeo umoci docker-registry docker.io apache2-utils openssl ca-certificates
  dnf rpm createrepo-c zypper pacman-package-manager makepkg arch-install-scripts libarchive-tools zstd gnupg
)
PACKAGES+=(gnupg golang-go golang-github-sylabs-sif-dev)  # sign/verify/key: the real gpg; tests: the Go SIF verifier

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=/usr/bin/python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# compat mode: a plain .pth path entry, not an import hook that every interpreter start loads;
# then sbuild's own launcher replaces pip's console scripts (python -S, no `import re`: builder.cli),
# one per name it answers to: sbuild, apptainer, singularity, run-singularity (a .simg's interpreter)
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,bench]" --config-settings editable_mode=compat \
  && .venv/bin/python -c 'from builder.commands.launcher import write_launcher
for name in ("sbuild", "apptainer", "singularity", "run-singularity"):
    write_launcher(".venv/bin/" + name)' \
  && .venv/bin/python -S -m base.importcache >/dev/null  # the launch modules in one file (base.importcache)
echo "setup: sbuild is at $(pwd)/.venv/bin/sbuild"
