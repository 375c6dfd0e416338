"""`samplan import-notes DIR`: created/updated/failed counted, failures reported, re-run safe,
and an interrupted backlog resumed without a note imported twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from factories import unique_personnummer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "notes"


def make_folder(folder: Path, n: int) -> None:
    region = json.loads((EXAMPLES / "region-nested.json").read_text(encoding="utf-8"))
    for i in range(n):
        note = {**region, "noteId": f"bulk-{i}"}
        (folder / f"note-{i}.json").write_text(json.dumps(note), encoding="utf-8")
    (folder / "kalmar.txt").write_bytes((EXAMPLES / "kalmar-flat.txt").read_bytes())
    (folder / "broken.json").write_text('{"noteId": "x", "keywords": 5}', encoding="utf-8")


SAMPLAN = Path(sys.executable).with_name("samplan")


def command(folder: Path, report: Path, journal: Path) -> list[str]:
    return [str(SAMPLAN), "import-notes", str(folder), "--report", str(report),
            "--journal", str(journal)]


def run_import(folder: Path, database_url: str, report: Path,
               journal: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(folder, report, journal or report.with_suffix(".journal")),
        env={**os.environ, "SAMPLAN_DATABASE_URL": database_url}, capture_output=True,
        text=True, timeout=120, check=False,
    )


def backlog(folder: Path, n: int) -> None:
    """``n`` notes, each a patient of its own (the region example, another person)."""
    region = json.loads((EXAMPLES / "region-nested.json").read_text(encoding="utf-8"))
    for i in range(n):
        pnr = unique_personnummer()
        note = {**region, "noteId": f"backlog-{i}",
                "patient": {"personnummer": f"{pnr[:8]}-{pnr[8:]}", "name": f"Person {i}"}}
        (folder / f"note-{i:04d}.json").write_text(json.dumps(note), encoding="utf-8")


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

        again = run_import(folder, database_url, report)  # the journal: done is skipped
        assert "created 0, updated 0, unchanged 0, failed 1, already done 6" in again.stdout, \
            again.stdout
        fresh = run_import(folder, database_url, report, tmp_path / "other.journal")
        assert "created 0, updated 0, unchanged 6, failed 1" in fresh.stdout, fresh.stdout

    def test_an_interrupted_backlog_resumes_without_a_note_imported_twice(
        self, tmp_path: Path, database_url: str, client: httpx.AsyncClient,
    ) -> None:
        del client  # (empties the tables; the count below is through the same database)
        folder = tmp_path / "backlog"
        folder.mkdir()
        backlog(folder, 120)
        report, journal = tmp_path / "failures.jsonl", tmp_path / "import.journal"
        process = subprocess.Popen(
            command(folder, report, journal), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env={**os.environ, "SAMPLAN_DATABASE_URL": database_url})
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            if journal.exists() and len(journal.read_text().splitlines()) >= 15:
                break
            time.sleep(0.05)
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 130, err
        assert "run the same command again to go on" in err
        done = len(journal.read_text().splitlines())
        assert 15 <= done < 120
        resumed = subprocess.run(command(folder, report, journal), capture_output=True,
                                 text=True, timeout=120, check=False,
                                 env={**os.environ, "SAMPLAN_DATABASE_URL": database_url})
        assert resumed.returncode == 0, resumed.stderr
        assert f"already done {done};" in resumed.stdout, resumed.stdout
        lines = journal.read_text().splitlines()
        assert sorted({line.split(chr(9))[0] for line in lines}) == sorted(
            p.name for p in folder.iterdir())
        # every note once: one agreement a note (a committed, not yet journaled note
        # is imported again as "unchanged", never twice)
        assert "updated 0" in resumed.stdout
        assert count_careplans(database_url) == 120


def count_careplans(database_url: str) -> int:
    check = subprocess.run(
        [sys.executable, "-c", (
            "import asyncio, sys\n"
            "from sqlalchemy import text\n"
            "from samplan.store.database import create_engine\n"
            "async def main():\n"
            "    engine = create_engine(sys.argv[1])\n"
            "    async with engine.connect() as c:\n"
            "        n = (await c.execute(text(\"SELECT count(*) FROM resources WHERE "
            "resource_type = 'CarePlan' AND deleted = false\"))).scalar()\n"
            "    await engine.dispose()\n"
            "    print(n)\n"
            "asyncio.run(main())\n"), database_url],
        capture_output=True, text=True, timeout=60, check=True)
    return int(check.stdout.strip())
