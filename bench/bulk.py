"""The ``import-notes`` row: a region's backlog through ``samplan import-notes DIR`` (issue 15).

Not a load run against a server. ``notes`` keyword notes (the ``$import-note``
scenario's template, bench/templates/import-note.json, each a new patient of
the note's care unit) are written to a folder in the work directory, and the
command imports them into the backend's database in one process, as an
operator would run it: its own summary line gives the rate (the notes it
handled over the time it spent on them; its start, imports and schema check
excluded). The row has no latencies: there is no request to time. Each run
writes new notes (the run token is in every note id and personnummer), so a
kept database is never imported into twice.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import dataset, report
from bench.scenarios import NOTE_TEMPLATE, Scenario

DEFAULT_NOTES = 2_000
QUICK_NOTES = 200
_SUMMARY = re.compile(r"created (\d+), updated (\d+), unchanged (\d+), failed (\d+), "
                      r"already done (\d+); (\d+) notes/s")


def write_notes(folder: Path, count: int) -> None:
    """``count`` notes in folders of a thousand, as a journal system's export might be."""
    template = NOTE_TEMPLATE.read_text(encoding="utf-8")
    rng = random.Random()
    first = rng.randrange(dataset.BIRTH_DAYS * 100, dataset.BIRTH_DAYS * 400)
    run = f"bulk{rng.randrange(16**6):06x}"
    for i in range(count):
        part = folder / f"{i // 1000:03d}"
        part.mkdir(parents=True, exist_ok=True)
        (part / f"note-{i:06d}.json").write_text(
            dataset.fill_template(template, "female", first + i, run), encoding="utf-8")


def measure(url: str, scenario: Scenario, *, backend: str, workdir: Path, notes: int,
            log: Callable[[str], None]) -> report.Row:
    folder = workdir / f"notes-{backend}"
    if folder.exists():
        for old in folder.rglob("*.json"):
            old.unlink()
    write_notes(folder, notes)
    samplan = Path(sys.executable).with_name("samplan")
    env = {**os.environ, "SAMPLAN_DATABASE_URL": url, "SAMPLAN_DATA_DIR": str(workdir)}
    started = time.monotonic()
    done = subprocess.run(
        [str(samplan), "import-notes", str(folder), "--report",
         str(workdir / f"import-failures-{backend}.jsonl"), "--journal",
         str(workdir / f"import-notes-{backend}.journal")],
        env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    found = _SUMMARY.search(done.stdout)
    if found is None:
        raise SystemExit(f"{backend}: samplan import-notes answered {done.returncode}: "
                         f"{done.stdout[-500:]}{done.stderr[-2000:]}")
    created, updated, unchanged, failed, _, rate = (int(g) for g in found.groups())
    log(f"{backend:8} cli     import-notes {rate:8,} notes/s  {created:,} created, "
        f"{failed} failed, {elapsed:.0f} s with the command's start")
    return report.Row(
        backend=backend, mode="auth+audit off", target="samplan", scenario=scenario.name,
        title=scenario.title, compare="none", client="samplan import-notes",
        seconds=round(elapsed, 3), ok=created + updated + unchanged, rps=float(rate),
        p50_ms=float("nan"), p90_ms=float("nan"), p99_ms=float("nan"), max_ms=float("nan"),
        errors=failed, conflicts_412=0, statuses={})
