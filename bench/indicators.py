"""The ``indicators`` scenario: every follow-up Measure evaluated over the whole dataset.

What the region's follow-up does once a month: ``$evaluate-measure`` of each of
the seven Measures for one year (``periodStart=2026&periodEnd=2026``), one
after the other, as a staff member reaching every patient (auth+audit) or with
auth off. Not a load test: one request at a time, a pass is the seven, and the
row gives the time of a pass (p50 and the slowest of ``PASSES``), the time of
each Measure in the log.

The base dataset (bench/dataset.py) already has what most measures need:
agreements with a period in 2026, care teams with KV roles 1, 2 and 3, booked
times, and an Inera kind of care plan on every agreement (a quarter of them
SIP). This module adds, once per database (:func:`load`), what it lacks:

* three RUB levels a patient (February, June, October 2026; level 5 for 40%,
  4 for 25%, the rest 0-3; the latest in the year counts);
* answers to the seven questions from one patient in five (one answer each, in
  2026), and from staff: two answers a month from every care unit.

They are written like the base dataset, through the service's own create
(bench/load.py's batcher: the same rows the server would write).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
from sqlalchemy import func, select
from tqdm import tqdm

from bench import dataset, load, report

MEASURES: Final = (
    "rub5-utan-fast-lakarkontakt", "rub5-med-sip", "rub45-med-overenskommelse",
    "overenskommelse-med-nasta-tid", "overenskommelse-med-fast-vardkontakt",
    "sju-fragor-patient", "sju-fragor-personal",
)
PERIOD: Final = {"periodStart": "2026", "periodEnd": "2026"}
PASSES: Final = 3
QUICK_PASSES: Final = 1
BASE: Final = "https://samplan.se/fhir"
RUB_PROFILE: Final = f"{BASE}/StructureDefinition/samplan-rub-observation"
RUB_MONTHS: Final = (2, 6, 10)
QUESTIONS: Final = tuple(str(q) for q in range(1, 8))


def _rub(patient: str, n: int, month: int, level: int, day: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation", "id": f"rub-{patient}-{n}",
        "meta": {"profile": [RUB_PROFILE]}, "status": "final",
        "code": {"coding": [{"system": f"{BASE}/CodeSystem/indicator-observation",
                             "code": "rub"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": f"2026-{month:02d}-{day:02d}", "valueInteger": level,
    }


def _answer(rid: str, questionnaire: str, subject: str, month: int, day: int,
            rng: random.Random, yes: float) -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse", "id": rid,
        "questionnaire": f"{BASE}/Questionnaire/{questionnaire}", "status": "completed",
        "subject": {"reference": subject}, "authored": f"2026-{month:02d}-{day:02d}T10:00:00+01:00",
        "item": [{"linkId": q, "answer": [{"valueBoolean": rng.random() < yes}]}
                 for q in QUESTIONS if rng.random() < 0.95],
    }


def for_patient(patient: str, index: int, seed: int) -> list[dict[str, Any]]:
    """The indicator data of one patient (deterministic in the seed and the index)."""
    rng = random.Random(f"indicators:{seed}:{index}")
    draw = rng.random()
    base = 5 if draw < 0.4 else 4 if draw < 0.65 else rng.randrange(4)
    out = [_rub(patient, n, month, max(0, min(5, base - (rng.random() < 0.1))),
                rng.randint(1, 28)) for n, month in enumerate(RUB_MONTHS)]
    if rng.random() < 0.2:
        out.append(_answer(f"answer-{patient}", "sju-fragor-patient", f"Patient/{patient}",
                           rng.randint(1, 12), rng.randint(1, 28), rng, 0.65))
    return out


def for_units(seed: int) -> list[dict[str, Any]]:
    pool, _ = dataset.shared_pool(seed)
    rng = random.Random(f"indicators:{seed}:staff")
    return [_answer(f"staff-{u}-{month}-{k}", "sju-fragor-personal",
                    f"Organization/{unit.id}", month, rng.randint(1, 28), rng, 0.55)
            for u, unit in enumerate(pool) for month in range(1, 13) for k in range(2)]


@dataclass(slots=True)
class Loaded:
    resources: int
    seconds: float
    skipped: bool


async def _count(services: Any, resource_type: str) -> int:
    from samplan.store.tables import resources

    stmt = select(func.count()).select_from(resources).where(
        resources.c.resource_type == resource_type)
    async with services.gate.engine.connect() as conn:
        return int((await conn.execute(stmt)).scalar_one())


async def load_data(database_url: str, *, seed: int, data_dir: Path, batch: int = 500,
                    progress: bool = True) -> Loaded:
    """Add the indicator data to a loaded dataset (skipped when Observations are there)."""
    from samplan.fhir.resource import validate_resource
    from samplan.main import build_services, close_services
    from samplan.store.repository import WriteTx
    from samplan.store.tables import idx_reference

    services = await build_services(load._settings(database_url, data_dir))
    try:
        if await _count(services, "Observation"):
            return Loaded(0, 0.0, True)
        ref = idx_reference.c
        stmt = select(ref.target_id).where(
            ref.resource_type == "CarePlan", ref.param == "patient",
            ref.target_type == "Patient").order_by(ref.target_id)
        async with services.gate.engine.connect() as conn:
            patients = [row[0] for row in await conn.execute(stmt)]
        repo = services.gate.service.repo
        writer = services.gate.as_service().writer
        started = time.perf_counter()
        written = 0

        async def write(resources: list[dict[str, Any]]) -> None:
            async with repo.transaction(writer()) as tx:
                batcher = load._Batcher()
                recording = WriteTx(repo, batcher)  # type: ignore[arg-type]
                for resource in resources:  # as create_in writes them (ids are unique)
                    await recording.write(resource, resource_id=resource["id"], current=None,
                                          method="POST")
                await batcher.flush(tx.conn)
                tx.changes.extend(recording.changes)

        staff = for_units(seed)
        for resource in staff[:20]:
            validate_resource(resource)
        await write(staff)
        written += len(staff)
        bar = tqdm(total=len(patients), unit="patient", disable=not progress,
                   dynamic_ncols=True, desc="indicator data", mininterval=0.5)
        concurrency = 1 if repo.is_sqlite else 3
        queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue(concurrency * 2)

        async def worker() -> None:
            nonlocal written
            while (resources := await queue.get()) is not None:
                await write(resources)
                written += len(resources)
                bar.update(sum(r["resourceType"] == "Observation" and r["id"].endswith("-0")
                               for r in resources))

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        try:
            for start in range(0, len(patients), batch):
                resources = []
                for i in range(start, min(start + batch, len(patients))):
                    made = for_patient(patients[i], i, seed)
                    if i < 20 or i % 1000 == 0:
                        for resource in made:
                            validate_resource(resource)
                    resources.extend(made)
                await queue.put(resources)
                for task in workers:
                    if task.done():
                        task.result()
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            bar.close()
        return Loaded(written, time.perf_counter() - started, False)
    finally:
        if not services.gate.service.repo.is_sqlite:
            await load._analyze(services)
        await close_services(services)


def measure(origin: str, headers: dict[str, str], *, passes: int, backend: str, mode: str,
            title: str, log: Any) -> report.Row:
    """Evaluate every Measure ``passes`` times after one warm-up pass; a row of pass times."""
    timeout = httpx.Timeout(600.0)
    statuses: dict[str, int] = {}
    totals: list[float] = []
    each: dict[str, list[float]] = {m: [] for m in MEASURES}
    started = time.perf_counter()
    with httpx.Client(base_url=origin, headers=headers, timeout=timeout) as client:
        for n in range(passes + 1):
            total = 0.0
            for measure_id in MEASURES:
                t0 = time.perf_counter()
                response = client.get(f"/fhir/Measure/{measure_id}/$evaluate-measure",
                                      params=PERIOD)
                spent = time.perf_counter() - t0
                if n == 0:
                    if response.status_code != 200:
                        raise SystemExit(f"{mode}: $evaluate-measure of {measure_id} answered "
                                         f"{response.status_code}: {response.text[:300]}")
                    continue
                statuses[str(response.status_code)] = statuses.get(
                    str(response.status_code), 0) + 1
                total += spent
                each[measure_id].append(spent)
            if n:
                totals.append(total)
    seconds = time.perf_counter() - started
    for measure_id, spent in each.items():
        log(f"{backend:8} {mode:14} {measure_id:37} p50 {statistics.median(spent) * 1000:8.0f} ms")
    ok = statuses.get("200", 0)
    return report.Row(
        backend=backend, mode=mode, target="samplan", scenario="indicators", title=title,
        compare="none", client="sequential", seconds=round(seconds, 3), ok=ok,
        rps=len(totals) / sum(totals) if totals else 0.0,
        p50_ms=statistics.median(totals) * 1000, p90_ms=float("nan"),
        p99_ms=max(totals) * 1000, max_ms=max(totals) * 1000,
        errors=sum(v for k, v in statuses.items() if k != "200"), conflicts_412=0,
        statuses=statuses,
        parts_ms={m: round(statistics.median(s) * 1000, 1) for m, s in each.items()},
    )
