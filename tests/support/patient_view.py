"""Test data for the patient's view: the shared example notes, plus what a full agreement has.

``import_examples`` brings in both example notes of ``examples/notes``
through ``$import-note``; the other helpers add what a note cannot carry (an
upcoming booked time, a SIP, a contact's phone and opening hours) and
professional-only content labelled ``NOPATIENT`` that the patient must never
see. All go through the FHIR API, so they work against the in-process app and
against a real ``samplan serve``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "notes"
REGION = (EXAMPLES / "region-nested.json").read_bytes()
KALMAR = (EXAMPLES / "kalmar-flat.txt").read_bytes()
NOTES = {"region": (REGION, "application/json"), "kalmar": (KALMAR, "text/plain")}
PNRS = {"region": "194501011235", "kalmar": "193803152341"}

PNR_SYSTEM = "http://electronichealth.se/identifier/personnummer"
NOPATIENT = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "NOPATIENT"}
INLINE_LABEL = (
    "http://hl7.org/fhir/uv/security-label-ds4p/StructureDefinition/extension-inline-sec-label"
)
SECRETS = (
    "HEMLIGT-MÅL", "HEMLIG-TID", "HEMLIG-AKTIVITET", "HEMLIG-ANTECKNING", "HEMLIG-PLAN",
    "HEMLIG-KONTAKT", "HEMLIGT-MEDDELANDE",
)  # fmt: skip
"""Words in professional-only content: none may reach the patient."""

STOCKHOLM = ZoneInfo("Europe/Stockholm")
JSON_HEADERS = {"Content-Type": "application/fhir+json"}


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def import_examples(
    client: httpx.AsyncClient, prefix: str = "", *, only: str | None = None
) -> dict[str, str]:
    """Import both example notes (or ``only`` one); the Patient id of each (``region``,
    ``kalmar``)."""
    ids: dict[str, str] = {}
    for name, (body, content_type) in NOTES.items():
        if only is not None and name != only:
            continue
        ok(await client.post(f"{prefix}/fhir/CarePlan/$import-note", content=body,
                             headers={"Content-Type": content_type}))
        found = ok(await client.get(f"{prefix}/fhir/Patient",
                                    params={"identifier": f"{PNR_SYSTEM}|{PNRS[name]}"}))
        ids[name] = found["entry"][0]["resource"]["id"]
    return ids


async def agreement_of(
    client: httpx.AsyncClient, patient_id: str, prefix: str = ""
) -> dict[str, Any]:
    found = ok(await client.get(f"{prefix}/fhir/CarePlan", params={
        "patient": patient_id,
        "category": "https://samplan.se/fhir/CodeSystem/careplan-category|"
                    "dokumenterad-overenskommelse",
    }))
    plan: dict[str, Any] = found["entry"][0]["resource"]
    return plan


async def put(client: httpx.AsyncClient, resource: dict[str, Any], prefix: str = "") -> None:
    ok(await client.put(f"{prefix}/fhir/{resource['resourceType']}/{resource['id']}",
                        content=json.dumps(resource), headers=JSON_HEADERS))


async def create(
    client: httpx.AsyncClient, resource: dict[str, Any], prefix: str = ""
) -> dict[str, Any]:
    return ok(await client.post(f"{prefix}/fhir/{resource['resourceType']}",
                                content=json.dumps(resource), headers=JSON_HEADERS))


async def add_upcoming_visit(
    client: httpx.AsyncClient, patient_id: str, careplan_id: str, *, days: int = 30,
    description: str = "Hembesök av distriktssköterska: vi går igenom vikten.",
    prefix: str = "",
) -> dict[str, Any]:
    start = (datetime.now(STOCKHOLM) + timedelta(days=days)).replace(
        hour=9, minute=30, second=0, microsecond=0)
    return await create(client, {
        "resourceType": "Appointment",
        "status": "booked",
        "description": description,
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=30)).isoformat(),
        "basedOn": [{"reference": f"CarePlan/{careplan_id}"}],
        "participant": [
            {"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"},
            {"actor": {"display": "Hemma hos dig"}, "status": "accepted"},
        ],
    }, prefix)


async def add_linked_plan(
    client: httpx.AsyncClient, patient_id: str, prefix: str = ""
) -> dict[str, Any]:
    return await create(client, {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "category": [{"coding": [{"system": "https://fhir.inera.se/CodeSystem/typeofcareplan-cs",
                                  "code": "SIP"}]}],
        "title": "SIP med Kalmar kommun",
        "description": "Hemtjänst och hemsjukvård samordnas; uppföljning var tredje månad.",
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": {"start": "2026-10-01"},
    }, prefix)


async def add_contact_details(
    client: httpx.AsyncClient, agreement: dict[str, Any], prefix: str = ""
) -> dict[str, Any]:
    """A PractitionerRole for the GP: direct phone and telephone hours (as a directory has)."""
    team_id = agreement["careTeam"][0]["reference"].split("/")[-1]
    team = ok(await client.get(f"{prefix}/fhir/CareTeam/{team_id}"))
    gp = next(p for p in team["participant"]
              if any(c.get("code") == "2" for r in p["role"] for c in r.get("coding", [])))
    if not gp["member"].get("reference", "").startswith("Practitioner/"):
        # the note named the GP without an HSA-id: a directory integration links them
        person = await create(client, {"resourceType": "Practitioner",
                                       "name": [{"text": gp["member"]["display"]}]}, prefix)
        gp["member"]["reference"] = f"Practitioner/{person['id']}"
        await put(client, team, prefix)
    practitioner = gp["member"]["reference"]
    organization = team["managingOrganization"][0]["reference"]
    return await create(client, {
        "resourceType": "PractitionerRole",
        "active": True,
        "practitioner": {"reference": practitioner},
        "organization": {"reference": organization},
        "telecom": [{"system": "phone", "value": "0480-123 41", "use": "work"}],
        "availableTime": [{
            "daysOfWeek": ["mon", "tue", "wed", "thu", "fri"],
            "availableStartTime": "08:00:00",
            "availableEndTime": "12:00:00",
        }],
    }, prefix)


async def add_professional_only(
    client: httpx.AsyncClient, patient_id: str, prefix: str = ""
) -> None:
    """Content labelled NOPATIENT, whole resources and elements inside the patient's ones."""
    plan = await agreement_of(client, patient_id, prefix)
    secret_goal = await create(client, {
        "resourceType": "Goal",
        "meta": {"security": [NOPATIENT]},
        "lifecycleStatus": "active",
        "description": {"text": "HEMLIGT-MÅL: utreda kognitiv svikt"},
        "subject": {"reference": f"Patient/{patient_id}"},
    }, prefix)
    await create(client, {
        "resourceType": "Appointment",
        "meta": {"security": [NOPATIENT]},
        "status": "booked",
        "description": "HEMLIG-TID: teamkonferens utan patienten",
        "start": (datetime.now(STOCKHOLM) + timedelta(days=3)).isoformat(timespec="seconds"),
        "participant": [{"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"}],
    }, prefix)
    await create(client, {
        "resourceType": "CarePlan",
        "meta": {"security": [NOPATIENT]},
        "status": "active",
        "intent": "plan",
        "title": "HEMLIG-PLAN för personalen",
        "subject": {"reference": f"Patient/{patient_id}"},
    }, prefix)
    await create(client, {
        "resourceType": "Communication",
        "meta": {"security": [NOPATIENT]},
        "status": "completed",
        "subject": {"reference": f"Patient/{patient_id}"},
        "payload": [{"contentString": "HEMLIGT-MEDDELANDE mellan läkare"}],
    }, prefix)
    label = [{"url": INLINE_LABEL, "valueCoding": NOPATIENT}]
    plan["goal"] = [*plan.get("goal", []), {"reference": f"Goal/{secret_goal['id']}"}]
    plan["activity"] = [*plan.get("activity", []), {
        "extension": label,
        "detail": {
            "code": {"coding": [{"system": "https://samplan.se/fhir/CodeSystem/"
                                           "agreement-activity-kind",
                                 "code": "care-responsibility"}],
                     "text": "Vården ansvarar för"},
            "status": "in-progress",
            "description": "HEMLIG-AKTIVITET: bedöma körkortet",
        },
    }]
    await put(client, plan, prefix)
    team_id = plan["careTeam"][0]["reference"].split("/")[-1]
    team = ok(await client.get(f"{prefix}/fhir/CareTeam/{team_id}"))
    team["note"] = [*team.get("note", []), {"extension": label,
                                            "text": "HEMLIG-ANTECKNING om anhöriga"}]
    team["participant"] = [*team.get("participant", []), {
        "extension": label,
        "role": [{"coding": [{"system": "urn:oid:1.2.752.129.5.1.69", "code": "1"}],
                  "text": "Fast vårdkontakt"}],
        "member": {"display": "HEMLIG-KONTAKT Doktor X"},
    }]
    await put(client, team, prefix)
