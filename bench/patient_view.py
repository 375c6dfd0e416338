"""Time the patient's view of a full agreement: the page (HTML) and the paper (PDF).

A timing script, not a test: ``.venv/bin/python bench/patient_view.py [--runs N]``.
It builds one full agreement in a throw-away SQLite database through the API
(the region example note, plus a booked time, a SIP, the GP's direct line and
telephone hours, the patient's own goal, activity and message, and
professional-only content that is filtered out), then times, in process:

* ``GET /fhir/Patient/{id}/$agreement`` as FHIR JSON, as ``text/html`` and as
  ``application/pdf`` (gathering from the store + filtering + rendering);
* the renderers alone on the same view (``render_html``, ``render_pdf``);
* the first PDF of the process apart (WeasyPrint's import and font loading).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from samplan.agreement.patient_render import render_html, render_pdf  # noqa: E402
from samplan.agreement.patient_service import PatientAgreements  # noqa: E402
from samplan.main import create_app  # noqa: E402
from samplan.settings import Settings  # noqa: E402
from samplan.store import migrate  # noqa: E402
from support.patient_view import (  # noqa: E402
    add_contact_details,
    add_linked_plan,
    add_professional_only,
    add_upcoming_visit,
    agreement_of,
    import_examples,
    ok,
)


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered) * 1000:8.1f} {p95 * 1000:8.1f} {len(ordered):5d}"


async def _time(runs: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return samples


async def main(runs: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="samplan-pv-"))
    url = f"sqlite+aiosqlite:///{folder / 'timing.db'}"
    await asyncio.to_thread(migrate.upgrade, url)
    settings = Settings(database_url=url, environment="test", auth_enabled=False,  # type: ignore[call-arg]
                        public_base_url="http://samplan.test/fhir")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://samplan.test",
                                     headers={"Content-Type": "application/fhir+json"}) as c:
            patient_id = (await import_examples(c))["region"]
            plan = await agreement_of(c, patient_id)
            await add_upcoming_visit(c, patient_id, plan["id"])
            await add_linked_plan(c, patient_id)
            await add_contact_details(c, plan)
            for name, text in (("add-goal", "Kunna gå till affären själv."),
                               ("add-activity", "Gå på kören på torsdagar."),
                               ("add-message", "Kan jag flytta min tid?")):
                ok(await c.post(f"/fhir/Patient/{patient_id}/${name}", content=(
                    '{"resourceType":"Parameters","parameter":[{"name":"text",'
                    f'"valueString":"{text}"}}]}}').encode()))
            await add_professional_only(c, patient_id)

            path = f"/fhir/Patient/{patient_id}/$agreement"
            services = app.state.services
            _, view = await PatientAgreements().view(
                services.gate.as_service(), patient_id, now=datetime.now(services.gate.tz))

            start = time.perf_counter()
            render_pdf(view)
            cold_pdf = time.perf_counter() - start
            render_html(view)  # compile the templates once

            async def get(accept: str) -> None:
                response = await c.get(path, headers={"Accept": accept})
                assert response.status_code == 200, response.text

            async def html_only() -> None:
                render_html(view)

            async def pdf_only() -> None:
                render_pdf(view)

            rows = [
                ("GET $agreement, FHIR document", await _time(runs, lambda: get(
                    "application/fhir+json"))),
                ("GET $agreement, text/html", await _time(runs, lambda: get("text/html"))),
                ("GET $agreement, application/pdf", await _time(max(3, runs // 5), lambda: get(
                    "application/pdf"))),
                ("render_html(view) alone", await _time(runs, html_only)),
                ("render_pdf(view) alone", await _time(max(3, runs // 5), pdf_only)),
            ]
            pdf = folder / "agreement.pdf"
            pdf.write_bytes(render_pdf(view))
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
    pages = (re.findall(r"Pages:\s+(\d+)", info) or ["?"])[0]
    out = sys.stdout
    out.write(f"patient view of a full agreement ({len(view.texts())} agreement texts, "
              f"{len(view.contacts)} contacts, {len(view.visits)} booked time(s); "
              f"PDF: {pages} A4 pages, {pdf.stat().st_size // 1024} KiB)\n")
    out.write(f"{'what':40s} {'p50 ms':>8s} {'p95 ms':>8s} {'runs':>5s}\n")
    for name, samples in rows:
        out.write(f"{name:40s} {_ms(samples)}\n")
    out.write(f"{'first render_pdf of the process':40s} {cold_pdf * 1000:8.1f}\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    asyncio.run(main(parser.parse_args().runs))
