"""Propagation over recorded versions: changed files, caching, the CLI's diff."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import florsql.propagate.version as version_module
from florsql.errors import VersionError
from florsql.propagate import (
    PlacementError,
    PropagationCache,
    for_version,
    render_diff,
    version_diff,
)
from florsql.versions import snapshot

CASES = Path(__file__).parent / "fixtures" / "propagate"

TRAINER_OLD = """import florsql as flor


def fit(w, data, lr):
    for x, y in flor.loop("step", data):
        grad = 2 * (w * x - y) * x
        w -= lr * grad
    return w
"""

TRAINER_NEW = TRAINER_OLD.replace(
    "        w -= lr * grad\n", '        w -= lr * grad\n        flor.log("grad", grad)\n'
)

SCRIPT = """import florsql as flor
from trainer import fit

w = 0.0
for epoch in flor.loop("epoch", range(2)):
    w = fit(w, [(1.0, 2.0), (2.0, 4.0)], 0.1)
    flor.log("w", w)
"""


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:  # shadows conftest's: this one imports a module
    """A git repository with a script and the module it imports."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "trainer.py").write_text(TRAINER_OLD)
    (tmp_path / "train.py").write_text(SCRIPT)
    (tmp_path / "README.md").write_text("flor.log in a readme is not code\n")
    return tmp_path


def _record(repo: Path) -> str:
    return snapshot(repo).vid


def test_statement_goes_into_the_imported_module(tiny_repo: Path) -> None:
    vid = _record(tiny_repo)
    (tiny_repo / "trainer.py").write_text(TRAINER_NEW)
    result = for_version(tiny_repo, vid[:10])
    assert result.vid == vid
    assert list(result.files) == ["trainer.py"]
    assert result.files["trainer.py"].source == TRAINER_NEW
    assert result.files["trainer.py"].placed[0].scope == ("fit()", "flor.loop('step')")


def test_unchanged_files_are_left_out(tiny_repo: Path) -> None:
    vid = _record(tiny_repo)
    assert for_version(tiny_repo, vid).files == {}


def test_diff_for_the_cli(tiny_repo: Path) -> None:
    vid = _record(tiny_repo)
    (tiny_repo / "trainer.py").write_text(TRAINER_NEW)
    expected = render_diff(TRAINER_OLD, TRAINER_NEW, "trainer.py")
    assert version_diff(tiny_repo, vid) == expected
    assert version_diff(tiny_repo, vid, "trainer.py") == expected
    assert version_diff(tiny_repo, vid, "train.py") == ""
    assert expected.splitlines()[:2] == ["--- a/trainer.py", "+++ b/trainer.py"]
    assert '+        flor.log("grad", grad)' in expected.splitlines()


def test_diff_paths(tiny_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vid = _record(tiny_repo)
    (tiny_repo / "trainer.py").write_text(TRAINER_NEW)
    expected = version_diff(tiny_repo, vid, "trainer.py")
    assert version_diff(tiny_repo, vid, str(tiny_repo / "trainer.py")) == expected
    monkeypatch.chdir(tiny_repo)
    assert version_diff(tiny_repo, vid, "./trainer.py") == expected
    with pytest.raises(VersionError, match="not a Python file of code version"):
        version_diff(tiny_repo, vid, "missing.py")


def test_render_diff_without_final_newline() -> None:
    diff = render_diff("a = 1", "a = 1\nb = 2\n", "x.py")
    assert "\\ No newline at end of file" in diff


def test_cached_per_version_file_and_statements(
    tiny_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vid = _record(tiny_repo)
    (tiny_repo / "trainer.py").write_text(TRAINER_NEW)
    cache = PropagationCache(tiny_repo / "cache")
    first = for_version(tiny_repo, vid, cache=cache)

    def no_reading(*args: object) -> str:
        raise AssertionError("the old file was read again")

    monkeypatch.setattr(version_module, "file_at", no_reading)
    assert for_version(tiny_repo, vid, cache=cache) == first
    # an edit away from the log statements keeps the key; a fresh process reads the disk cache
    (tiny_repo / "trainer.py").write_text(TRAINER_NEW + "\n\ndef unrelated():\n    return 1\n")
    assert for_version(tiny_repo, vid, cache=PropagationCache(tiny_repo / "cache")) == first
    assert list((tiny_repo / "cache").glob("*.json"))
    assert not list((tiny_repo / "cache").glob(".tmp-*"))


def test_default_cache_lives_under_dot_florsql(tiny_repo: Path) -> None:
    vid = _record(tiny_repo)
    (tiny_repo / "trainer.py").write_text(TRAINER_NEW)
    for_version(tiny_repo, vid)
    assert list((tiny_repo / ".florsql" / "cache" / "propagate").glob("*.json"))


def test_a_new_statement_changes_the_key(tiny_repo: Path) -> None:
    vid = _record(tiny_repo)
    (tiny_repo / "trainer.py").write_text(TRAINER_NEW)
    cache = PropagationCache()
    for_version(tiny_repo, vid, cache=cache)
    newer = TRAINER_NEW.replace("    return w\n", '    flor.log("w_fit", w)\n    return w\n')
    (tiny_repo / "trainer.py").write_text(newer)
    assert for_version(tiny_repo, vid, cache=cache).files["trainer.py"].source == newer


def test_names_and_failures(tiny_repo: Path) -> None:
    vid = _record(tiny_repo)
    (tiny_repo / "trainer.py").write_text(
        TRAINER_NEW.replace('flor.log("grad", grad)', 'flor.log("grad", grad * scale)')
    )
    result = for_version(tiny_repo, vid)
    assert result.failure_messages() == [
        "trainer.py: grad (line 8 of the new version): unbound name 'scale' "
        "at line 8 of the old version"
    ]
    with pytest.raises(PlacementError, match=r"trainer\.py: grad"):
        result.raise_for_failures()
    assert for_version(tiny_repo, vid, names=["w"]).files == {}


def test_names_in_files_the_version_lacks(tiny_repo: Path) -> None:
    vid = _record(tiny_repo)
    (tiny_repo / "metrics.py").write_text('import florsql as flor\nflor.log("extra", 1)\n')
    result = for_version(tiny_repo, vid, names=["extra", "w"])
    assert result.files == {} and result.unplaced == ("extra",)
    assert result.failure_messages() == [
        f"extra: logged only in files that code version {vid[:12]} does not have"
    ]
    with pytest.raises(PlacementError, match="extra: logged only"):
        result.raise_for_failures()


def test_a_moving_ref_is_resolved_each_time(tiny_repo: Path) -> None:
    first = _record(tiny_repo)
    subprocess.run(["git", "-C", str(tiny_repo), "update-ref", "refs/heads/probe", first])
    (tiny_repo / "trainer.py").write_text(TRAINER_NEW)
    assert for_version(tiny_repo, "probe").vid == first
    second = _record(tiny_repo)
    subprocess.run(["git", "-C", str(tiny_repo), "update-ref", "refs/heads/probe", second])
    assert for_version(tiny_repo, "probe").vid == second


def test_unknown_version(tiny_repo: Path) -> None:
    with pytest.raises(VersionError):
        for_version(tiny_repo, "0" * 40)
