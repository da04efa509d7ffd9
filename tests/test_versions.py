"""Code snapshots: exact files at run start, and the user's git state never touched."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import pytest

from florsql.errors import RecordWarning, VersionError
from florsql.versions import file_at, files_at, find_repo_root, resolve_version, snapshot
from tests.helpers import git, make_repo, run_dirs, run_script, write


def _git_state(repo: Path) -> dict[str, str]:
    """Everything of the user's git state that florsql promises not to change."""
    index = repo / ".git" / "index"
    return {
        "head": (repo / ".git" / "HEAD").read_text(),
        "head_sha": git(repo, "rev-parse", "HEAD"),
        "index": hashlib.sha256(index.read_bytes()).hexdigest() if index.exists() else "",
        "status": git(repo, "status", "--porcelain=v1", "--untracked-files=all"),
        "branches": git(repo, "for-each-ref", "refs/heads", "refs/tags", "refs/stash"),
        "stash": git(repo, "stash", "list"),
        "diff": git(repo, "diff"),
        "cached": git(repo, "diff", "--cached"),
    }


@pytest.fixture
def busy_repo(tmp_path: Path) -> Path:
    """A repo with history, a branch, a stash, staged, unstaged, untracked and ignored files."""
    repo = make_repo(
        tmp_path / "busy",
        {
            "train.py": 'import florsql as flor\nflor.log("x", 1)\n',
            "lib/model.py": "A = 1\n",
            ".gitignore": "data/\n*.log\n",
        },
    )
    git(repo, "branch", "experiment")
    write(repo / "lib/model.py", "A = 2  # stashed\n")
    git(repo, "stash")
    write(repo / "lib/model.py", "A = 3  # staged\n")
    git(repo, "add", "lib/model.py")
    write(repo / "lib/model.py", "A = 4  # unstaged\n")
    write(repo / "notes.py", "B = 5  # untracked\n")
    write(repo / "data/big.bin", "ignored\n")
    write(repo / "run.log", "ignored\n")
    return repo


def test_run_snapshot_holds_files_as_at_start_and_git_is_untouched(busy_repo: Path) -> None:
    before = _git_state(busy_repo)
    mtimes = {p: p.stat().st_mtime_ns for p in busy_repo.rglob("*") if ".git" not in p.parts}
    run_script(busy_repo, "train.py")
    after = _git_state(busy_repo)
    # The store folder is ignored by its own .gitignore, so even `git status` is unchanged.
    assert after == before
    for p, m in mtimes.items():
        assert p.stat().st_mtime_ns == m, p
    doc = (run_dirs(busy_repo)[0] / "run.json").read_text()
    import json

    meta = json.loads(doc)
    vid = meta["vid"]
    assert meta["dirty"] is True and meta["head"] == before["head_sha"].strip()
    assert sorted(files_at(busy_repo, vid)) == [
        ".gitignore",
        "lib/model.py",
        "notes.py",
        "train.py",
    ]
    assert file_at(busy_repo, vid, "lib/model.py") == "A = 4  # unstaged\n"
    assert file_at(busy_repo, vid, "notes.py") == "B = 5  # untracked\n"
    refs = git(busy_repo, "for-each-ref", "--format=%(refname)", "refs/florsql")
    assert refs.split() == [f"refs/florsql/versions/{vid}"]


def test_identical_code_gives_identical_version(busy_repo: Path) -> None:
    a = snapshot(busy_repo)
    b = snapshot(busy_repo)
    assert a.vid == b.vid
    write(busy_repo / "notes.py", "B = 6\n")
    assert snapshot(busy_repo).vid != a.vid
    assert resolve_version(busy_repo, a.vid[:10]) == a.vid


def test_clean_checkout_is_not_dirty(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"a.py": "x = 1\n"})
    snap = snapshot(repo)
    assert snap.dirty is False
    assert snap.tree == git(repo, "rev-parse", "HEAD^{tree}").strip()


def test_repo_without_commits(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", commit=False)
    write(repo / "a.py", "x = 1\n")
    snap = snapshot(repo)
    assert snap.head is None and snap.dirty is True
    assert files_at(repo, snap.vid) == ["a.py"]


def test_large_files_are_left_out_with_a_warning(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"a.py": "x = 1\n"})
    (repo / "weights.bin").write_bytes(b"\0" * 2048)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        snap = snapshot(repo, max_file_bytes=1024)
    assert snap.skipped == ("weights.bin",)
    assert any(issubclass(w.category, RecordWarning) for w in caught)
    assert files_at(repo, snap.vid) == ["a.py"]


def test_not_a_repo(tmp_path: Path) -> None:
    with pytest.raises(VersionError, match="git init"):
        find_repo_root(tmp_path)


def test_unknown_version(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", {"a.py": "x = 1\n"})
    with pytest.raises(VersionError, match="unknown code version"):
        file_at(repo, "deadbeef", "a.py")
    with pytest.raises(VersionError, match="not part of"):
        file_at(repo, snapshot(repo).vid, "missing.py")
