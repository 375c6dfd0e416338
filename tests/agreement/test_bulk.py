"""`samplan import-notes DIR`: created/updated/failed counted, failures reported, re-run safe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "notes"


def make_folder(folder: Path, n: int) -> None:
    region = json.loads((EXAMPLES / "region-nested.json").read_text(encoding="utf-8"))
    for i in range(n):
        note = {**region, "noteId": f"bulk-{i}"}
        (folder / f"note-{i}.json").write_text(json.dumps(note), encoding="utf-8")
    (folder / "kalmar.txt").write_bytes((EXAMPLES / "kalmar-flat.txt").read_bytes())
    (folder / "broken.json").write_text('{"noteId": "x", "keywords": 5}', encoding="utf-8")


def run_import(folder: Path, database_url: str, report: Path) -> subprocess.CompletedProcess[str]:
    samplan = Path(sys.executable).with_name("samplan")
    return subprocess.run(
        [str(samplan), "import-notes", str(folder), "--report", str(report)],
        env={**os.environ, "SAMPLAN_DATABASE_URL": database_url}, capture_output=True,
        text=True, timeout=120, check=False,
    )


@pytest.mark.usefixtures("services")
class TestImportNotesCommand:
    def test_a_folder_imports_with_a_summary_and_a_failure_report(
        self, tmp_path: Path, database_url: str
    ) -> None:
        folder = tmp_path / "notes"
        folder.mkdir()
        make_folder(folder, 5)
        report = tmp_path / "failures.jsonl"
        first = run_import(folder, database_url, report)
        assert first.returncode == 1
        assert "created 2, updated 4, unchanged 0, failed 1" in first.stdout, first.stdout
        failures = [json.loads(line) for line in report.read_text().splitlines()]
        assert [Path(f["file"]).name for f in failures] == ["broken.json"]
        assert failures[0]["status"] == 400

        again = run_import(folder, database_url, report)
        assert "created 0, updated 0, unchanged 6, failed 1" in again.stdout, again.stdout
