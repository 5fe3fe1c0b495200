"""base.fsutil.remove_tree: read-only trees go, and nothing outside the tree is touched."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from base.fsutil import remove_tree

_CODE = "import sys; from base.fsutil import remove_tree; remove_tree(sys.argv[1])"


def _hostile_tree(shared: Path) -> tuple[Path, Path]:
    """A tree with 0555, 0500, 0300 and 0000 directories and links to a read-only directory
    outside it; returns (tree, outside)."""
    outside = shared / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "file").write_text("host data")
    tree = shared / "tree"
    for rel, mode in (("ro", 0o555), ("ro/deeper", 0o500), ("wo", 0o300), ("none", 0o000)):
        (tree / rel).mkdir(parents=True)
        (tree / rel / "f").write_text("x")
        (tree / rel / "link").symlink_to(outside / "keep")
    (tree / "top-link").symlink_to(outside / "keep")
    return tree, outside


def _lock(tree: Path, outside: Path) -> None:
    for rel, mode in (("ro/deeper", 0o500), ("ro", 0o555), ("wo", 0o300), ("none", 0o000)):
        (tree / rel).chmod(mode)
    (outside / "keep").chmod(0o500)
    tree.chmod(0o555)


def test_unprivileged_owner_removes_a_read_only_tree_and_no_link_is_followed(unprivileged_user):
    shared = Path(tempfile.mkdtemp(prefix="sbuild-test-", dir="/tmp"))
    try:
        shared.chmod(0o755)
        tree, outside = _hostile_tree(shared)
        unprivileged_user.chown(shared)  # the user may remove entries of shared/
        _lock(tree, outside)
        r = unprivileged_user.run(sys.executable, "-c", _CODE, tree, cwd=str(Path(__file__).parents[2]))
        assert r.returncode == 0, r.stderr
        assert not os.path.lexists(tree)
        assert (outside / "keep").stat().st_mode & 0o777 == 0o500  # the links' target kept its mode
        assert (outside / "keep" / "file").read_text() == "host data"
    finally:
        subprocess.run(["chmod", "-R", "u+rwx", str(shared)], check=False)
        subprocess.run(["rm", "-rf", str(shared)], check=False)


def test_a_link_a_file_or_nothing_at_the_path(tmp_path):
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "f").write_text("kept")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    remove_tree(tmp_path / "link")
    assert not os.path.lexists(tmp_path / "link") and (tmp_path / "target" / "f").read_text() == "kept"
    (tmp_path / "file").write_text("x")
    remove_tree(tmp_path / "file")
    assert not (tmp_path / "file").exists()
    remove_tree(tmp_path / "missing")  # nothing to do is no error
