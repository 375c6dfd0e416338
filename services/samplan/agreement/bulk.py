"""`samplan import-notes DIR`: a region's backlog of keyword notes into agreements.

Each note is imported as a `$import-note` call would import it: its own
transaction (one note's agreement, so a bad note fails alone and is reported,
JSON lines in the report file), idempotent by note id. For a backlog of a
hundred thousand notes three more things matter:

* **progress**: the rate and the estimated time left, as it goes (``tqdm`` on
  stderr), and the rate in the summary;
* **resume**: every note whose transaction committed is appended to a journal
  (flushed at once); an interrupted run (Ctrl-C, SIGTERM, a crash) started
  again skips what the journal holds and goes on. A note committed but not yet
  journaled when the run stopped is imported again and changes nothing (its
  note id is already there), so a resumed import never duplicates an agreement;
* **a steady pipeline**: a fixed number of workers take notes from a bounded
  queue, so memory does not grow with the backlog.
"""

from __future__ import annotations

import asyncio
import time
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
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def imported(self) -> int:
        """Notes handled in this run (created, updated or unchanged)."""
        return self.counts["created"] + self.counts["updated"] + self.counts["unchanged"]

    @property
    def rate(self) -> float:
        done = self.imported + self.counts["failed"]
        return done / self.seconds if self.seconds > 0 else 0.0


def note_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in CONTENT_TYPES)


class Journal:
    """The notes already imported: one relative path a line, appended as each commits."""

    def __init__(self, path: Path, folder: Path) -> None:
        self.path = path
        self.folder = folder
        self.done: set[str] = set()
        if path.exists():
            self.done = {line.split("\t", 1)[0] for line in
                         path.read_text(encoding="utf-8").splitlines() if line}
        self._file = path.open("a", encoding="utf-8")

    def key(self, note: Path) -> str:
        return note.relative_to(self.folder).as_posix()

    def record(self, note: Path, outcome: str) -> None:
        self._file.write(f"{self.key(note)}\t{outcome}\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


async def import_folder(
    notes: AgreementNotes, folder: Path, *, report: Path, journal: Path | None = None,
    concurrency: int = 4, progress: bool = True, stop: asyncio.Event | None = None,
) -> BulkSummary:
    """Import every note of ``folder`` not yet in ``journal``; see the module.

    ``stop``: once set (Ctrl-C, SIGTERM), no further note is started; the notes being
    imported finish (their transactions commit and are journaled) and the summary says
    ``interrupted``.
    """
    stop = stop or asyncio.Event()
    files = note_files(folder)
    book = Journal(journal, folder) if journal is not None else None
    todo = [f for f in files if book is None or book.key(f) not in book.done]
    summary = BulkSummary()
    summary.counts["skipped"] = len(files) - len(todo)
    queue: asyncio.Queue[Path | None] = asyncio.Queue(maxsize=concurrency * 4)
    bar = tqdm(total=len(files), initial=len(files) - len(todo), unit="note",
               disable=not progress, dynamic_ncols=True, smoothing=0.1, mininterval=0.5)
    started = time.perf_counter()

    async def worker() -> None:
        while (path := await queue.get()) is not None and not stop.is_set():
            try:
                parsed = parse_note(path.read_bytes(), CONTENT_TYPES[path.suffix.lower()])
                result = await notes.import_note(parsed)
                outcome = ("created" if result.created else "updated") if result.changed \
                    else "unchanged"
                summary.counts[outcome] += 1
                if book is not None:
                    book.record(path, outcome)
            except FhirError as exc:
                summary.counts["failed"] += 1
                summary.failures.append({"file": str(path), "status": exc.status,
                                         "outcome": exc.outcome()})
            finally:
                bar.update(1)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        for path in todo:
            if stop.is_set():
                break
            await queue.put(path)
        if stop.is_set():  # what is queued is not started: the journal does not have it
            while not queue.empty():
                queue.get_nowait()
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
        summary.interrupted = stop.is_set()
    except asyncio.CancelledError:
        summary.interrupted = True
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    finally:
        summary.seconds = time.perf_counter() - started
        bar.close()
        if book is not None:
            book.close()
        report.write_bytes(b"".join(orjson.dumps(f) + b"\n" for f in summary.failures))
    return summary

