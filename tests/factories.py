"""Typed, keyword-only factories for test resources (JSON dicts as a client would send)."""

from __future__ import annotations

import itertools
from typing import Any

from samplan.fhir.identifiers import luhn_check_digit

PNR_SYSTEM = "http://electronichealth.se/identifier/personnummer"
HSA_SYSTEM = "urn:oid:1.2.752.29.4.19"
CATEGORY_SYSTEM = "https://samplan.se/fhir/CodeSystem/careplan-category"
VALID_PNRS = ("194501011235", "193803152341", "191212121212")


_SERIALS = itertools.count(1)


def unique_personnummer() -> str:
    """A valid personnummer no other call returns (born 1950-01-01, serial 001, 002, ...):
    one personnummer names one Patient (a second is a 409)."""
    serial = next(_SERIALS)
    day = 1 + serial // 999
    nine = f"5001{day:02d}{serial % 999 + 1:03d}"
    return f"19{nine}{luhn_check_digit(nine)}"


def make_patient(
    *, pnr: str | None = None, family: str = "Holm", given: str = "Greta",
    birth_date: str | None = "1945-01-01", id: str | None = None,
) -> dict[str, Any]:
    """A Patient; ``pnr`` None: a personnummer of its own (:func:`unique_personnummer`)."""
    pnr = pnr or unique_personnummer()
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": PNR_SYSTEM, "value": pnr}],
        "name": [{"family": family, "given": [given]}],
    }
    if birth_date:
        patient["birthDate"] = birth_date
    if id:
        patient["id"] = id
    return patient


def make_careplan(
    *,
    patient_id: str,
    status: str = "active",
    start: str = "2026-11-20",
    end: str | None = "2027-05-20",
    care_team_id: str | None = None,
    goal_id: str | None = None,
    title: str = "Överenskommelse",
    category: str = "dokumenterad-overenskommelse",
    id: str | None = None,
) -> dict[str, Any]:
    period: dict[str, str] = {"start": start}
    if end:
        period["end"] = end
    plan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "status": status,
        "intent": "plan",
        "title": title,
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": category}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": period,
        "activity": [
            {"detail": {"status": "in-progress", "description": "Väga mig varje morgon."}}
        ],
    }
    if care_team_id:
        plan["careTeam"] = [{"reference": f"CareTeam/{care_team_id}"}]
    if goal_id:
        plan["goal"] = [{"reference": f"Goal/{goal_id}"}]
    if id:
        plan["id"] = id
    return plan


def make_care_team(*, patient_id: str, practitioner_id: str | None = None,
                   status: str = "active") -> dict[str, Any]:
    team: dict[str, Any] = {
        "resourceType": "CareTeam",
        "status": status,
        "subject": {"reference": f"Patient/{patient_id}"},
        "participant": [{"member": {"display": "Karin Ek, distriktssköterska"}}],
    }
    if practitioner_id:
        team["participant"].append({"member": {"reference": f"Practitioner/{practitioner_id}"}})
    return team


def make_goal(*, patient_id: str, text: str = "Gå till affären själv",
              lifecycle_status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "Goal",
        "lifecycleStatus": lifecycle_status,
        "description": {"text": text},
        "subject": {"reference": f"Patient/{patient_id}"},
    }


def make_appointment(*, patient_id: str, start: str = "2027-01-12T09:30:00+01:00",
                     careplan_id: str | None = None, status: str = "booked") -> dict[str, Any]:
    appt: dict[str, Any] = {
        "resourceType": "Appointment",
        "status": status,
        "start": start,
        "end": start.replace("09:30", "10:00"),
        "participant": [{"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"}],
    }
    if careplan_id:
        appt["basedOn"] = [{"reference": f"CarePlan/{careplan_id}"}]
    return appt


def make_practitioner(*, hsa_id: str = "SE2321000073-1001", family: str = "Berg",
                      given: str = "Anna") -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "identifier": [{"system": HSA_SYSTEM, "value": hsa_id}],
        "name": [{"family": family, "given": [given]}],
    }


HSA_RIVTA_SYSTEM = "urn:oid:1.2.752.129.2.1.4.1"
PNR_OID_SYSTEM = "urn:oid:1.2.752.129.2.1.3.1"
SAMORDNING_SYSTEM = "http://electronichealth.se/identifier/samordningsnummer"


def make_organization(*, name: str = "Vårdcentralen Ekbacken", alias: str | None = None,
                      hsa_id: str = "SE2321000073-2001",
                      system: str = HSA_SYSTEM) -> dict[str, Any]:
    organization: dict[str, Any] = {
        "resourceType": "Organization",
        "identifier": [{"system": system, "value": hsa_id}],
        "name": name,
    }
    if alias:
        organization["alias"] = [alias]
    return organization


def make_bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    """A batch or transaction Bundle of the given entries (see make_entry)."""
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def make_entry(
    method: str, url: str, resource: dict[str, Any] | None = None, *,
    full_url: str | None = None, if_none_exist: str | None = None, if_match: str | None = None,
) -> dict[str, Any]:
    """One Bundle.entry with its request (and resource, fullUrl, conditions when given)."""
    request: dict[str, Any] = {"method": method, "url": url}
    if if_none_exist:
        request["ifNoneExist"] = if_none_exist
    if if_match:
        request["ifMatch"] = if_match
    entry: dict[str, Any] = {"request": request}
    if full_url:
        entry["fullUrl"] = full_url
    if resource is not None:
        entry["resource"] = resource
    return entry
