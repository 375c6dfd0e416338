"""The repository holds what its tests and code read (issue 14, item 1).

Both guards of ``tests/support/repo_bounds.py`` are shown to pass on the
repository as it is and to fail on the mistake they exist for: a path built
from ``__file__`` that leaves the root (``parents[3] / "shared"``), and a read
of a folder beside the repository at run time.
"""

from __future__ import annotations

import glob
import os
import sqlite3
from pathlib import Path

import pytest

from conftest import REPO_BOUNDS
from support.repo_bounds import (
    ROOT,
    OutsideReadGuard,
    active,
    scan_repository,
    scan_source,
    session_guards,
)

EXAMPLES = ROOT / "examples" / "notes"


class TestTheSources:
    def test_no_test_or_code_builds_a_path_outside_the_repository(self) -> None:
        assert [str(f) for f in scan_repository()] == []

    def test_the_example_notes_are_in_the_repository(self) -> None:
        assert {p.name for p in EXAMPLES.iterdir()} >= {"region-nested.json",
                                                        "kalmar-flat.txt"}

    @pytest.mark.parametrize("source", [
        'EXAMPLES = Path(__file__).resolve().parents[3] / "shared" / "examples"',
        'ROOT = Path(__file__).resolve().parents[2]\nSHARED = ROOT / ".." / "shared"',
        'X = Path(__file__).parent.parent.parent.parent / "shared"',
        'X = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")',
        'X = Path(__file__).resolve().parents[2].joinpath("..", "shared")',
        'def f():\n    return open(Path(__file__).parents[3] / "shared" / "DESIGN.md")',
    ])
    def test_the_scan_finds_a_path_above_the_root(self, source: str) -> None:
        file = ROOT / "tests" / "mapping" / "test_x.py"
        [finding] = scan_source(source, file)
        assert finding.path == str(ROOT.parent / "shared") or finding.path.startswith(
            str(ROOT.parent / "shared"))
        assert "outside the repository" in str(finding)

    @pytest.mark.parametrize("source", [
        'EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "notes"',
        'TEMPLATE = Path(__file__).with_name("templates") / "x.json"',
        'ROOT = Path(__file__).resolve().parents[2]\nDOCS = ROOT / "docs" / ".." / "README.md"',
        'X = tmp_path / ".." / "anything"',  # not built from __file__: not ours to judge
    ])
    def test_the_scan_leaves_paths_inside_the_root(self, source: str) -> None:
        assert scan_source(source, ROOT / "tests" / "mapping" / "test_x.py") == []


class TestAtRunTime:
    @pytest.fixture
    def layout(self, tmp_path: Path) -> tuple[Path, Path]:
        """``tmp/work/repo`` and ``tmp/work/shared/DESIGN.md`` beside it."""
        repo = tmp_path / "work" / "repo"
        (repo / "tests").mkdir(parents=True)
        (repo / "tests" / "data.txt").write_text("ours")
        shared = tmp_path / "work" / "shared"
        shared.mkdir()
        (shared / "DESIGN.md").write_text("not ours")
        return repo, shared

    def test_reads_beside_the_repository_are_refused_and_recorded(
        self, layout: tuple[Path, Path]
    ) -> None:
        repo, shared = layout
        guard = OutsideReadGuard(repo, allowed=[])
        with active(guard):
            assert (repo / "tests" / "data.txt").read_text() == "ours"
            with pytest.raises(PermissionError, match="above the repository root"):
                (shared / "DESIGN.md").read_text()
            with pytest.raises(PermissionError):
                (repo / ".." / "shared" / "DESIGN.md").read_text()
            with pytest.raises(PermissionError):
                os.listdir(shared)
            with pytest.raises(PermissionError):
                glob.glob(str(shared / "*.md"))
            with pytest.raises(PermissionError):
                sqlite3.connect(str(shared / "x.db"))
        assert guard.violations == [
            f"open {shared / 'DESIGN.md'}", f"open {shared / 'DESIGN.md'}",
            f"os.listdir {shared}", f"glob.glob {shared / '*.md'}",
            f"sqlite3.connect {shared / 'x.db'}",
        ]
        assert (shared / "DESIGN.md").read_text() == "not ours"  # the guard is gone again

    def test_what_is_not_above_the_root_is_allowed(self, layout: tuple[Path, Path]) -> None:
        repo, shared = layout
        guard = OutsideReadGuard(repo, allowed=[shared])
        assert guard.outside(shared / "DESIGN.md") is None  # an allowed place
        assert guard.outside(repo.parent / ".cache" / "x") is None  # a hidden cache beside
        assert guard.outside("/usr/share/zoneinfo/UTC") is None  # elsewhere on the machine
        assert guard.outside(3) is None  # a file descriptor
        assert guard.outside(repo / ".." / "shared" / "DESIGN.md") is not None  # climbs out

    def test_the_session_guard_is_on_for_this_repository(self) -> None:
        assert REPO_BOUNDS in session_guards()
        assert REPO_BOUNDS.outside(ROOT / ".." / "shared" / "examples") is not None
        # climbing out with '..' is refused wherever the clone lives (a folder beside it
        # is refused too, unless the clone sits right in the temporary directory)
        probe = ROOT / ".." / "samplan-repo-bounds-probe"
        with REPO_BOUNDS.expecting(), pytest.raises(PermissionError):
            probe.read_text()  # refused before the file system is asked
        assert REPO_BOUNDS.violations == []
