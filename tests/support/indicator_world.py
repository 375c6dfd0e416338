"""A generated population with known answers, for the follow-up measures (issue 16).

:func:`generate` draws, from a seed, patients of three care units (A and B are
parts of a care provider, C is not), each with a few facts: RUB levels at dates
(some not final), an agreement (or none) with its period, status, CareTeam and
the KV roles in it, a SIP (ours, Inera's code on a plan of its own, or Inera's
code on the agreement), appointments, and answers to the seven questions; and
staff answers about A, B and C. A few patients block unit A (spärr), a few are
in B only through a PractitionerRole.

:func:`expected` computes every measure from those facts, in plain Python and
independently of the server's SQL; :meth:`World.resources` writes the same facts
as FHIR resources. The tests compare the two, through the HTTP API.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from samplan.api.deps import Services

HSA_SYSTEM = "urn:oid:1.2.752.29.4.19"
KV = "urn:oid:1.2.752.129.5.1.69"
CATEGORY = "https://samplan.se/fhir/CodeSystem/careplan-category"
INERA = "https://fhir.inera.se/CodeSystem/typeofcareplan-cs"
RUB_SYSTEM = "https://samplan.se/fhir/CodeSystem/indicator-observation"
RUB_PROFILE = "https://samplan.se/fhir/StructureDefinition/samplan-rub-observation"
PATIENT_Q = "https://samplan.se/fhir/Questionnaire/sju-fragor-patient"
STAFF_Q = "https://samplan.se/fhir/Questionnaire/sju-fragor-personal"

PROVIDER = ("provider", "SE2321000073-0001", "Region Kalmar län, primärvården")
UNITS = {
    "A": ("unit-a", "SE2321000073-2001", "Vårdcentralen Ekbacken"),
    "B": ("unit-b", "SE2321000073-3001", "Vårdcentralen Norr"),
    "C": ("unit-c", "SE2120000000-4001", "Hälsocentralen Borgholm"),
}
ROLE_OF_B = "role-b"
QUESTIONS = tuple(str(i) for i in range(1, 8))
COUNTED_PLAN = ("active", "completed")
COUNTED_VISIT = ("booked", "arrived", "checked-in", "fulfilled")
YEAR = 2026


def day(month: int, d: int) -> str:
    return date(YEAR, month, d).isoformat()


@dataclass
class Patient:
    key: str
    unit: str
    via_role: bool = False  # in B through a PractitionerRole, not the Organization
    blocks_a: bool = False
    rubs: list[tuple[str, int, str]] = field(default_factory=list)  # (date, level, status)
    agreement: tuple[str, str | None, str] | None = None  # (start, end, status)
    team_status: str = "active"
    roles: tuple[str, ...] = ()
    sip: tuple[str, str | None, str, str] | None = None  # start, end, status, kind
    visits: list[tuple[str, str]] = field(default_factory=list)  # (date, status)
    answers: list[tuple[str, dict[str, bool]]] = field(default_factory=list)


@dataclass
class StaffAnswer:
    unit: str
    authored: str
    answers: dict[str, bool]


@dataclass
class World:
    patients: list[Patient]
    staff: list[StaffAnswer]

    def resources(self) -> list[dict[str, Any]]:
        """Every fact as a FHIR resource with its id (write them in this order)."""
        out: list[dict[str, Any]] = [_org(*PROVIDER)]
        for unit, (oid, hsa, name) in UNITS.items():
            out.append(_org(oid, hsa, name, part_of=PROVIDER[0] if unit != "C" else None))
        out.append({"resourceType": "PractitionerRole", "id": ROLE_OF_B, "active": True,
                    "organization": {"reference": f"Organization/{UNITS['B'][0]}"}})
        for p in self.patients:
            out += _patient_resources(p)
        for n, s in enumerate(self.staff):
            out.append(_response(f"staff-{n}", STAFF_Q, f"Organization/{UNITS[s.unit][0]}",
                                 s.authored, s.answers))
        return out


def generate(seed: int = 16, count: int = 48) -> World:
    rng = random.Random(seed)
    patients = []
    for i in range(count):
        unit = "ABC"[i % 3]
        p = Patient(f"p{i:02d}", unit, via_role=unit == "B" and i % 4 == 1,
                    blocks_a=unit == "A" and i % 7 == 0)
        for month in sorted(rng.sample(range(1, 7), rng.randint(0, 3))):
            status = "final" if rng.random() < 0.9 else "preliminary"
            p.rubs.append((day(month, rng.randint(1, 28)), rng.choice((2, 3, 4, 5, 5, 5)), status))
        if rng.random() < 0.7:
            start = day(rng.randint(1, 6), 1)
            end = rng.choice((None, day(rng.randint(3, 12), 28)))
            if end is not None and end < start:
                end = None
            status = rng.choice(("active", "active", "active", "completed", "draft", "revoked"))
            p.agreement = (start, end, status)
            p.team_status = rng.choice(("active", "active", "active", "inactive"))
            p.roles = tuple(r for r in ("1", "2", "3") if rng.random() < 0.6)
        kind = rng.choice(("none", "none", "ours", "inera", "agreement"))
        if kind == "agreement" and p.agreement is None:
            kind = "none"
        if kind != "none":
            p.sip = (day(rng.randint(1, 6), 10), rng.choice((None, day(6, 30), day(2, 1))),
                     rng.choice(("active", "active", "completed", "draft")), kind)
        for _ in range(rng.randint(0, 2)):
            p.visits.append((day(rng.randint(1, 12), rng.randint(1, 28)),
                             rng.choice(("booked", "booked", "fulfilled", "cancelled"))))
        for _ in range(rng.randint(0, 2)):
            said = {q: rng.random() < 0.6 for q in QUESTIONS if rng.random() < 0.85}
            p.answers.append((day(rng.randint(1, 6), rng.randint(1, 28)), said))
        patients.append(p)
    staff = [StaffAnswer("ABC"[n % 3], day(rng.randint(1, 6), rng.randint(1, 28)),
                         {q: rng.random() < 0.5 for q in QUESTIONS if rng.random() < 0.9})
             for n in range(15)]
    return World(patients, staff)


# -- the facts as FHIR ------------------------------------------------------------------------


def _org(oid: str, hsa: str, name: str, part_of: str | None = None) -> dict[str, Any]:
    org: dict[str, Any] = {"resourceType": "Organization", "id": oid, "active": True,
                           "identifier": [{"system": HSA_SYSTEM, "value": hsa}], "name": name}
    if part_of:
        org["partOf"] = {"reference": f"Organization/{part_of}"}
    return org


def _period(start: str, end: str | None) -> dict[str, str]:
    return {"start": start, **({"end": end} if end else {})}


def _plan(pid: str, patient: str, start: str, end: str | None, status: str,
          categories: list[tuple[str, str]], team: str | None = None) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "resourceType": "CarePlan", "id": pid, "status": status, "intent": "plan",
        "category": [{"coding": [{"system": s, "code": c}]} for s, c in categories],
        "subject": {"reference": f"Patient/{patient}"}, "period": _period(start, end),
    }
    if team:
        plan["careTeam"] = [{"reference": f"CareTeam/{team}"}]
    return plan


def _response(rid: str, questionnaire: str, subject: str, authored: str,
              answers: dict[str, bool]) -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse", "id": rid, "questionnaire": questionnaire,
        "status": "completed", "subject": {"reference": subject},
        "authored": f"{authored}T10:00:00+01:00",
        "item": [{"linkId": q, "answer": [{"valueBoolean": v}]} for q, v in answers.items()],
    }


def _patient_resources(p: Patient) -> list[dict[str, Any]]:
    me = f"Patient/{p.key}"
    out: list[dict[str, Any]] = [{"resourceType": "Patient", "id": p.key,
                                  "name": [{"family": f"Patient {p.key}"}]}]
    unit_id = UNITS[p.unit][0]
    team: dict[str, Any] = {"resourceType": "CareTeam", "id": f"{p.key}-team",
                            "status": p.team_status, "subject": {"reference": me},
                            "participant": [{"role": [{"coding": [{"system": KV, "code": r}]}],
                                             "member": {"display": f"Kontakt {r}"}}
                                            for r in p.roles]}
    if p.via_role:
        team["participant"].append({"member": {"reference": f"PractitionerRole/{ROLE_OF_B}"}})
    else:
        team["managingOrganization"] = [{"reference": f"Organization/{unit_id}"}]
    if not team["participant"]:
        del team["participant"]
    out.append(team)
    if p.blocks_a:
        out.append({
            "resourceType": "Consent", "id": f"{p.key}-block", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": me},
            "provision": {"type": "deny", "actor": [{
                "role": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "code": "IRCP"}]},
                "reference": {"reference": f"Organization/{UNITS['A'][0]}"}}]},
        })
    for n, (when, level, status) in enumerate(p.rubs):
        out.append({"resourceType": "Observation", "id": f"{p.key}-rub-{n}",
                    "meta": {"profile": [RUB_PROFILE]}, "status": status,
                    "code": {"coding": [{"system": RUB_SYSTEM, "code": "rub"}]},
                    "subject": {"reference": me}, "effectiveDateTime": when,
                    "valueInteger": level})
    if p.agreement is not None:
        start, end, status = p.agreement
        categories = [(CATEGORY, "dokumenterad-overenskommelse")]
        if p.sip is not None and p.sip[3] == "agreement":
            categories.append((INERA, "SIP"))
        out.append(_plan(f"{p.key}-agreement", p.key, start, end, status, categories,
                         team=f"{p.key}-team"))
    if p.sip is not None and p.sip[3] != "agreement":
        start, end, status, kind = p.sip
        coding = (CATEGORY, "sip") if kind == "ours" else (INERA, "SIP")
        out.append(_plan(f"{p.key}-sip", p.key, start, end, status, [coding]))
    for n, (when, status) in enumerate(p.visits):
        out.append({"resourceType": "Appointment", "id": f"{p.key}-visit-{n}", "status": status,
                    "start": f"{when}T12:00:00+01:00", "end": f"{when}T12:30:00+01:00",
                    "participant": [{"actor": {"reference": me}, "status": "accepted"}]})
    for n, (when, said) in enumerate(p.answers):
        out.append(_response(f"{p.key}-answer-{n}", PATIENT_Q, me, when, said))
    return out


# -- the answers, computed from the facts -----------------------------------------------------


def _overlaps(start: str, end: str | None, low: str, high: str) -> bool:
    return start <= high and (end is None or end >= low)


def _agreement_in(p: Patient, low: str, high: str) -> bool:
    return p.agreement is not None and p.agreement[2] in COUNTED_PLAN and _overlaps(
        p.agreement[0], p.agreement[1], low, high)


def _role_in(p: Patient, role: str, low: str, high: str) -> bool:
    return (_agreement_in(p, low, high) and p.team_status == "active"
            and role in p.roles)


def _sip_in(p: Patient, low: str, high: str) -> bool:
    if p.sip is None:
        return False
    if p.sip[3] == "agreement":
        return _agreement_in(p, low, high)
    start, end, status, _ = p.sip
    return status in COUNTED_PLAN and _overlaps(start, end, low, high)


def _latest_rub(p: Patient, low: str, high: str) -> int | None:
    found = [(when, level) for when, level, status in p.rubs
             if status == "final" and low <= when <= high]
    return max(found)[1] if found else None


def units_of(p: Patient) -> set[str]:
    """The unit ids a patient counts in (by CareTeam), or none when the team has ended."""
    return set() if p.team_status == "inactive" else {UNITS[p.unit][0]}


def expected(world: World, measure: str, low: str, high: str, *,
             patients: set[str] | None = None, units: set[str] | None = None,
             ) -> list[tuple[str, int, int, int]]:
    """(group, initial population, denominator, numerator) of ``measure`` for the period
    ``low``..``high`` (dates, both included; the period is over, so "ahead" is its end).
    ``patients``: only these keys; ``units``: only patients (and staff answers) of
    these units."""
    chosen = [p for p in world.patients
              if (patients is None or p.key in patients)
              and (units is None or units_of(p) & units)]
    rows: list[tuple[str, bool, bool]] = []
    if measure.startswith("rub"):
        wanted = (4, 5) if measure.startswith("rub45") else (5,)
        for p in chosen:
            level = _latest_rub(p, low, high)
            if level is None:
                continue
            den = level in wanted
            if measure == "rub5-utan-fast-lakarkontakt":
                met = not _role_in(p, "2", low, high)
            elif measure == "rub5-med-sip":
                met = _sip_in(p, low, high)
            else:
                met = _agreement_in(p, low, high)
            rows.append(("", den, den and met))
    elif measure.startswith("overenskommelse"):
        for p in chosen:
            if not _agreement_in(p, low, high):
                continue
            if measure == "overenskommelse-med-nasta-tid":
                met = any(s in COUNTED_VISIT and when > high for when, s in p.visits)
            else:
                met = _role_in(p, "1", low, high)
            rows.append(("", True, met))
    elif measure == "sju-fragor-patient":
        for p in chosen:
            for when, said in p.answers:
                if low <= when <= high:
                    rows += [(q, q in said, said.get(q, False)) for q in QUESTIONS]
    else:
        for s in world.staff:
            if (units is None or UNITS[s.unit][0] in units) and low <= s.authored <= high:
                rows += [(q, q in s.answers, s.answers.get(q, False)) for q in QUESTIONS]
    groups = QUESTIONS if measure.startswith("sju") else ("",)
    return [(g, sum(1 for r in rows if r[0] == g), sum(1 for r in rows if r[0] == g and r[1]),
             sum(1 for r in rows if r[0] == g and r[2])) for g in groups]


def reached_by_unit_a(world: World) -> set[str]:
    """Patients a staff member of unit A reaches: A's (not ended) care teams, minus spärr."""
    return {p.key for p in world.patients
            if p.unit == "A" and not p.via_role and p.team_status != "inactive"
            and not p.blocks_a}


def month_end(month: int) -> str:
    return (date(YEAR + month // 12, month % 12 + 1, 1) - timedelta(days=1)).isoformat()


async def load(services: Services, world: World) -> None:
    """The world in one transaction Bundle, written as the service itself (checks, index
    rows), each resource at its own id (``PUT``)."""
    entries = [{"resource": r, "request": {"method": "PUT",
                                           "url": f"{r['resourceType']}/{r['id']}"}}
               for r in world.resources()]
    await services.gate.as_service().bundle(
        {"resourceType": "Bundle", "type": "transaction", "entry": entries},
        return_representation=False)


async def load_with_proxy(services: Services, patient: str, related_person: str) -> World:
    """A generated world, loaded, with ``related_person`` acting for ``patient`` by the
    patient's grant (a relative who may answer for them)."""
    world = generate()
    await load(services, world)
    service = services.gate.as_service()
    await service.update("RelatedPerson", related_person, {
        "resourceType": "RelatedPerson", "id": related_person, "active": True,
        "patient": {"reference": f"Patient/{patient}"}})
    await service.create("Consent", proxy_grant(patient, related_person))
    return world


def proxy_grant(patient: str, related_person: str) -> dict[str, Any]:
    """The patient's grant letting a relative act for them (a permit Consent)."""
    return {
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "provision": {"type": "permit", "actor": [{
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleClass",
                                 "code": "AGNT"}]},
            "reference": {"reference": f"RelatedPerson/{related_person}"}}]},
    }


def counts(report: dict[str, Any]) -> list[tuple[str, int, int, int]]:
    """(group, initial population, denominator, numerator) of each group of a MeasureReport."""
    found = []
    for group in report["group"]:
        by_code = {p["code"]["coding"][0]["code"]: p["count"] for p in group["population"]}
        coding = group["code"]["coding"][0]
        key = "" if "/Measure/" in coding["system"] else coding["code"]
        found.append((key, by_code["initial-population"], by_code["denominator"],
                      by_code["numerator"]))
    return found


def showcase(seed: int = 2026, count: int = 120) -> World:
    """A year in which the reform takes hold: for the page's pictures (and its browser test).

    Monthly RUB levels; agreements signed month after month (with a named GP more
    often as the year goes on), SIPs for a part of the RUB 5 patients, booked
    times, and answers to the seven questions that turn more to "yes" over the
    year, from patients and from each unit's staff.
    """
    rng = random.Random(seed)
    patients = []
    for i in range(count):
        unit = "AABBC"[i % 5]
        p = Patient(f"s{i:03d}", unit, via_role=unit == "B" and i % 3 == 0)
        base = rng.choice((3, 4, 4, 5, 5, 5))
        for month in range(1, 13):
            level = max(0, min(5, base + (rng.random() < 0.1) * rng.choice((-1, 1))))
            p.rubs.append((day(month, rng.randint(2, 6)), level, "final"))
        signed = rng.choice((1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 13))
        if signed <= 12:
            p.agreement = (day(signed, 1), None, "active")
            late = signed / 12
            p.roles = tuple(r for r, chance in (("1", 0.6 + 0.3 * late), ("2", 0.5 + 0.4 * late),
                                                ("3", 0.4)) if rng.random() < chance)
            if base == 5 and rng.random() < 0.5:
                p.sip = (day(min(12, signed + rng.randint(0, 2)), 10), None, "active",
                         rng.choice(("ours", "inera", "agreement")))
            stop = min(13, signed + 1 + rng.randint(1, 12))
            for month in range(signed + 1, stop, rng.choice((1, 2, 2, 3))):
                p.visits.append((day(month, rng.randint(1, 28)),
                                 "fulfilled" if month < 12 else "booked"))
            if rng.random() < 0.6:
                p.visits.append((f"{YEAR + 1}-0{rng.randint(1, 3)}-{rng.randint(10, 28)}",
                                 "booked"))
        for month in sorted(rng.sample(range(1, 13), rng.randint(0, 2))):
            yes = 0.35 + 0.5 * month / 12 + (0.1 if p.agreement else 0)
            p.answers.append((day(month, rng.randint(1, 28)),
                              {q: rng.random() < yes for q in QUESTIONS if rng.random() < 0.95}))
        patients.append(p)
    staff = []
    for month in range(1, 13):
        for unit in "ABC":
            for _ in range(rng.randint(1, 3)):
                yes = 0.3 + 0.45 * month / 12
                staff.append(StaffAnswer(unit, day(month, rng.randint(1, 28)),
                                         {q: rng.random() < yes for q in QUESTIONS}))
    return World(patients, staff)
