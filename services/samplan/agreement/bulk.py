"""`samplan import-notes DIR`: a folder of keyword notes into agreements, safe to re-run.

Each file is imported like a `$import-note` call (its own transaction, so one
bad note never stops the rest); re-running skips what is already there
(idempotent by note id). Failures go to a report file, one JSON line each.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from tqdm import tqdm

from samplan.agreement.notes import AgreementNotes
from samplan.fhir.errors import FhirError
from samplan.mapping.importer import parse_note

CONTENT_TYPES = {".json": "application/json", ".txt": "text/plain"}


@dataclass(slots=True)
class BulkSummary:
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[dict[str, object]] = field(default_factory=list)


async def import_folder(
    notes: AgreementNotes, folder: Path, *, report: Path, concurrency: int = 4,
    progress: bool = True,
) -> BulkSummary:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in CONTENT_TYPES)
    summary = BulkSummary()
    gate = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(files), unit="note", disable=not progress)

    async def one(path: Path) -> None:
        async with gate:
            try:
                parsed = parse_note(path.read_bytes(), CONTENT_TYPES[path.suffix.lower()])
                result = await notes.import_note(parsed)
                outcome = ("created" if result.created else "updated") if result.changed \
                    else "unchanged"
                summary.counts[outcome] += 1
            except FhirError as exc:
                summary.counts["failed"] += 1
                summary.failures.append({"file": str(path), "status": exc.status,
                                         "outcome": exc.outcome()})
            finally:
                bar.update(1)

    await asyncio.gather(*(one(p) for p in files))
    bar.close()
    report.write_bytes(b"".join(orjson.dumps(f) + b"\n" for f in summary.failures))
    return summary
