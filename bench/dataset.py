"""Synthetic but realistic documented agreements, one per patient, as FHIR R4 dicts.

Patient ``i`` (0 <= i < ~29 million) always gets the same personnummer, and
with the same seed the same agreement, so runs are reproducible. Each
agreement is what SamPlan stores for a signed note (compare
``services/samplan/demo_data/greta-holm.json`` and ``fhir_profiles/examples``):

* a Patient with a valid personnummer (Luhn check digit, birth date and
  gender agreeing with it) under the HL7 Sweden system, 12 digits;
* a CarePlan (the agreement profile) with 6-12 activities;
* a CareTeam with 3 named contacts (KV "typ av fast kontakt" 2, 1, 3);
* 1-3 Goals and 1-3 Appointments (``basedOn`` the CarePlan).

Practitioners and Organizations (care units) are a shared pool written once.
The personnummer mapping is mirrored in ``wrk/transaction.lua`` (the
transaction scenario makes new, unique agreements on the fly); keep the two
in step.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from samplan.fhir.identifiers import HSA_SYSTEM, PERSONNUMMER_SYSTEM, luhn_check_digit

BASE = "https://samplan.se/fhir"
PROFILE_CAREPLAN = f"{BASE}/StructureDefinition/samplan-agreement-careplan"
PROFILE_CARETEAM = f"{BASE}/StructureDefinition/samplan-careteam"
PROFILE_APPOINTMENT = f"{BASE}/StructureDefinition/samplan-appointment"
PROFILE_GOAL = f"{BASE}/StructureDefinition/samplan-goal"
EXT_NOTE_KEYWORD = f"{BASE}/StructureDefinition/note-keyword"
EXT_NOTE_TEMPLATE = f"{BASE}/StructureDefinition/note-template"
EXT_PATIENT_AUTHORED = f"{BASE}/StructureDefinition/patient-authored"
NOTE_ID_SYSTEM = f"{BASE}/NamingSystem/cosmic-note-id"
RESOURCE_SYSTEM = f"{BASE}/NamingSystem/agreement-resource"
ACTIVITY_KIND_SYSTEM = f"{BASE}/CodeSystem/agreement-activity-kind"
CATEGORY = {
    "system": f"{BASE}/CodeSystem/careplan-category",
    "code": "dokumenterad-overenskommelse",
    "display": "Dokumenterad överenskommelse",
}
CAREPLAN_TYPE_SYSTEM = "https://fhir.inera.se/CodeSystem/typeofcareplan-cs"
CONTACT_KIND_SYSTEM = "urn:oid:1.2.752.129.5.1.69"

# -- the personnummer of patient i -------------------------------------------------------------

FIRST_BIRTH_DAY = date(1925, 1, 1)
BIRTH_DAYS = (date(2005, 12, 31) - FIRST_BIRTH_DAY).days + 1  # 29,585 days
MAX_PATIENTS = BIRTH_DAYS * 1000


@dataclass(frozen=True, slots=True)
class Person:
    personnummer: str  # 12 digits
    birth_date: date
    gender: str  # "male" | "female"


def person(i: int) -> Person:
    """The personnummer of patient ``i``: a bijection i -> (birth day, serial).

    Birth day ``i % BIRTH_DAYS`` after 1925-01-01; serial ``(i // BIRTH_DAYS) * 37 + 101
    mod 1000`` (37 is prime to 1000, so the 1000 serials of a day are all used once);
    check digit by the Luhn rule over YYMMDDNNN. The third serial digit is odd for men.
    """
    if not 0 <= i < MAX_PATIENTS:
        raise ValueError(f"patient index {i} is outside 0..{MAX_PATIENTS - 1}")
    born = FIRST_BIRTH_DAY + timedelta(days=i % BIRTH_DAYS)
    serial = ((i // BIRTH_DAYS) * 37 + 101) % 1000
    nine = f"{born:%y%m%d}{serial:03d}"
    pnr = f"{born:%Y%m%d}{serial:03d}{luhn_check_digit(nine)}"
    return Person(pnr, born, "male" if serial % 2 else "female")


# -- words -------------------------------------------------------------------------------------

FEMALE = ("Anna", "Eva", "Maria", "Karin", "Kristina", "Lena", "Kerstin", "Ingrid", "Margareta",
          "Birgitta", "Marie", "Elisabeth", "Greta", "Astrid", "Sofia", "Ulla", "Gunilla")
MALE = ("Lars", "Karl", "Anders", "Johan", "Per", "Erik", "Nils", "Jan", "Lennart", "Hans",
        "Olof", "Sven", "Bengt", "Gustav", "Bo", "Göran", "Åke", "Mikael", "Stig")
FAMILY = ("Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson",
          "Persson", "Svensson", "Gustafsson", "Pettersson", "Jonsson", "Holm", "Berg", "Lund",
          "Ek", "Nord", "Lindqvist", "Sandberg", "Öberg", "Åström", "Bergström", "Sjöberg")
TOWNS = ("Kalmar", "Nybro", "Oskarshamn", "Västervik", "Vimmerby", "Borgholm", "Emmaboda",
         "Torsås", "Mönsterås", "Högsby", "Mörbylånga", "Hultsfred")

ACTIVITIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # kind: (display, keyword, texts)
    "patient-responsibility": ("Patienten ansvarar för", "Patienten ansvarar för", (
        "Väga mig varje morgon och skriva upp vikten.",
        "Ta promenad 20 minuter varje dag med stöd av min dotter.",
        "Ta mina mediciner enligt dosetten och höra av mig om jag missar en dos.",
        "Mäta blodtrycket två gånger i veckan och föra in värdena i 1177.",
        "Gå till mötet med arbetsterapeuten och öva med rollatorn hemma.",
        "Dricka minst en och en halv liter om dagen, mer när det är varmt.",
    )),
    "on-deterioration": ("Vid försämring", "Vid försämring kan patienten", (
        "Vid ökad andfåddhet eller viktökning över 2 kg på tre dagar: ring hälsocentralen.",
        "Vid bröstsmärta: ring 112. Vid feber över 38,5: ring 1177.",
        "Om såret blir rött och varmt: kontakta distriktssköterskan samma dag.",
    )),
    "care-responsibility": ("Vården ansvarar för", "Vården ansvarar för", (
        "Hälsocentralen följer upp vikt och blodprover och justerar läkemedel.",
        "Distriktssköterskan gör hembesök varannan vecka och lägger om såret.",
        "Läkaren gör en läkemedelsgenomgång inför nästa besök.",
        "Hemtjänsten hjälper till med dusch två gånger i veckan.",
        "Fysioterapeuten skickar ett träningsprogram och följer upp efter sex veckor.",
    )),
    "next-step": ("Fortsatt planering", "Fortsatt planering", (
        "Återbesök hos distriktsläkare om 3 månader med blodprover veckan innan.",
        "Remiss till hjärtmottagningen för ultraljud av hjärtat.",
        "SIP-möte med kommunen inom fyra veckor.",
    )),
    "follow-up": ("Tid för uppföljning", "Tid för uppföljning", (
        "Uppföljning på hälsocentralen med provtagning.",
        "Telefonuppföljning med distriktssköterskan.",
        "Besök hos fysioterapeut.",
    )),
    "coordinated-plan": ("Sammanhållen planering", "Sammanhållen planering", (
        "SIP upprättad tillsammans med kommunen. Rehabiliteringsplan finns hos arbetsterapeut.",
        "Samordnad plan vid utskrivning från medicinkliniken finns.",
    )),
    "other-keyword": ("Övrigt sökord", "Övrigt", (
        "Dottern Eva är kontaktperson och får information enligt samtycke.",
        "Patienten vill helst bli kontaktad på förmiddagen.",
    )),
}
GOALS = (
    "Kunna gå till affären själv i vår.",
    "Orka gå ut med hunden varje dag.",
    "Slippa åka in akut under vintern.",
    "Sova bättre och vara piggare på dagarna.",
    "Klara att duscha själv med hjälpmedel.",
    "Gå ner fem kilo till sommaren.",
)
CAREPLAN_TYPES = (("VP", "Vårdplan"), ("SIP", "Samordnad individuell plan"),
                  ("RP", "Rehabiliteringsplan"), ("SPU", "Samordnad plan vid utskrivning"))
CONTACT_ROLES = (  # code, display, keyword
    ("2", "Fast läkarkontakt i primärvård", "Fast läkarkontakt i primärvården"),
    ("1", "Fast vårdkontakt", "Fast vårdkontakt"),
    ("3", "Fast omsorgskontakt i hemtjänsten", "Fast omsorgskontakt"),
)


def _hsa(org: int, suffix: int) -> str:
    return f"SE2321000{org:03d}-{suffix}"


# -- shared pool: care units and clinicians ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Unit:
    id: str
    hsa_id: str
    name: str
    phone: str
    doctors: tuple[tuple[str, str, str], ...]  # (practitioner id, hsa id, display)
    nurses: tuple[tuple[str, str, str], ...]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def shared_pool(
    seed: int, units: int = 40, per_unit: int = 6
) -> tuple[list[Unit], list[dict[str, Any]]]:
    """Care units (Organization) and their clinicians (Practitioner), as resources with ids."""
    rng = random.Random(f"pool:{seed}")
    pool: list[Unit] = []
    resources: list[dict[str, Any]] = []
    for u in range(units):
        town = TOWNS[u % len(TOWNS)]
        unit_id, hsa_id = _uuid(rng), _hsa(u + 1, 2001)
        name = f"Hälsocentralen {town} {u // len(TOWNS) + 1}"
        phone = f"0480-{100 + u:03d} {rng.randrange(10, 99)}"
        resources.append({
            "resourceType": "Organization", "id": unit_id,
            "identifier": [{"system": HSA_SYSTEM, "value": hsa_id}],
            "active": True, "name": name,
            "telecom": [{"system": "phone", "value": phone, "use": "work"}],
            "address": [{"city": town, "country": "SE"}],
            "partOf": _ref("Organization", REGION_ID,
                           {"system": HSA_SYSTEM, "value": REGION_HSA_ID}, REGION_NAME),
        })
        doctors: list[tuple[str, str, str]] = []
        nurses: list[tuple[str, str, str]] = []
        for k in range(per_unit):
            given, family = rng.choice(FEMALE + MALE), rng.choice(FAMILY)
            pid, phsa = _uuid(rng), _hsa(u + 1, 1001 + k)
            title = "distriktsläkare" if k < per_unit // 2 else "distriktssköterska"
            resources.append({
                "resourceType": "Practitioner", "id": pid,
                "identifier": [{"system": HSA_SYSTEM, "value": phsa}],
                "active": True,
                "name": [{"family": family, "given": [given], "text": f"{given} {family}"}],
                "telecom": [{"system": "phone", "value": phone, "use": "work"}],
            })
            who = (pid, phsa, f"{given} {family}, {title}, {name}")
            (doctors if k < per_unit // 2 else nurses).append(who)
        pool.append(Unit(unit_id, hsa_id, name, phone, tuple(doctors), tuple(nurses)))
    resources.append(REGION_ORGANIZATION)
    return pool, resources


# The care provider every care unit is part of (Organization.partOf): what puts every
# patient of the dataset in reach of the region's one system token when the benchmark
# runs with auth on (bench/scenarios.py), as a region's journal integration (issue 15).
REGION_ID = "0b6c1f3e-5e8a-4c1e-9a57-52e9b3a1d000"
REGION_HSA_ID = "SE2321000000-0001"
REGION_NAME = "Region Kalmar län, primärvården"
REGION_ORGANIZATION: dict[str, Any] = {
    "resourceType": "Organization", "id": REGION_ID,
    "identifier": [{"system": HSA_SYSTEM, "value": REGION_HSA_ID}],
    "active": True, "name": REGION_NAME,
}


# -- one agreement ----------------------------------------------------------------------------


@dataclass(slots=True)
class Agreement:
    """One patient's resources, ids assigned, references literal (``Patient/<id>``)."""

    patient: dict[str, Any]
    careteam: dict[str, Any]
    goals: list[dict[str, Any]]
    careplan: dict[str, Any]
    appointments: list[dict[str, Any]]

    def resources(self) -> list[dict[str, Any]]:
        return [self.patient, self.careteam, *self.goals, self.careplan, *self.appointments]


def _ref(rtype: str, rid: str, identifier: dict[str, str] | None = None,
         display: str | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {"reference": f"{rtype}/{rid}"}
    if identifier:
        ref["identifier"] = dict(identifier)
    if display:
        ref["display"] = display
    return ref


def make_agreement(i: int, pool: list[Unit], seed: int, *, token: str | None = None,
                   who: Person | None = None) -> Agreement:
    """The agreement of patient ``i``; ``token`` names its business identifiers (default i)."""
    rng = random.Random(f"{seed}:{i}")
    p = who or person(i)
    token = token or str(i)
    unit = pool[rng.randrange(len(pool))]
    doctor, nurse = rng.choice(unit.doctors), rng.choice(unit.nurses)
    given = rng.choice(MALE if p.gender == "male" else FEMALE)
    family = rng.choice(FAMILY)
    display = f"{given} {family}"
    pnr_identifier = {"system": PERSONNUMMER_SYSTEM, "value": p.personnummer}
    ids = {k: _uuid(rng) for k in ("patient", "careteam", "careplan")}

    patient: dict[str, Any] = {
        "resourceType": "Patient", "id": ids["patient"],
        "identifier": [pnr_identifier],
        "active": True,
        "name": [{"use": "official", "family": family, "given": [given], "text": display}],
        "telecom": [{"system": "phone", "value": f"070-{rng.randrange(1000000, 9999999)}",
                     "use": "mobile"}],
        "gender": p.gender,
        "birthDate": p.birth_date.isoformat(),
        "address": [{"line": [f"{rng.choice(FAMILY)}s väg {rng.randrange(1, 60)}"],
                     "postalCode": f"39{rng.randrange(100, 999)}",
                     "city": rng.choice(TOWNS), "country": "SE"}],
        "managingOrganization": _ref("Organization", unit.id,
                                     {"system": HSA_SYSTEM, "value": unit.hsa_id}, unit.name),
    }
    subject = _ref("Patient", ids["patient"], pnr_identifier, display)

    omsorg = f"{rng.choice(FEMALE + MALE)} {rng.choice(FAMILY)}, hemtjänsten {rng.choice(TOWNS)}"
    members = [
        _ref("Practitioner", doctor[0], {"system": HSA_SYSTEM, "value": doctor[1]}, doctor[2]),
        _ref("Practitioner", nurse[0], {"system": HSA_SYSTEM, "value": nurse[1]}, nurse[2]),
        {"display": f"{omsorg}. Tel 0480-{rng.randrange(100, 999)} {rng.randrange(10, 99)}"},
    ]
    careteam: dict[str, Any] = {
        "resourceType": "CareTeam", "id": ids["careteam"],
        "meta": {"profile": [PROFILE_CARETEAM]},
        "identifier": [{"system": RESOURCE_SYSTEM, "value": f"careteam-{token}"}],
        "status": "active",
        "name": "Fast vårdkontakt",
        "subject": subject,
        "participant": [
            {"role": [{"coding": [{"system": CONTACT_KIND_SYSTEM, "code": code,
                                   "display": role_display}], "text": keyword}],
             "member": member}
            for (code, role_display, keyword), member in zip(CONTACT_ROLES, members, strict=True)
        ],
        "managingOrganization": [
            _ref("Organization", unit.id, {"system": HSA_SYSTEM, "value": unit.hsa_id}, unit.name),
        ],
        "telecom": [{"system": "phone", "value": unit.phone, "use": "work"},
                    {"system": "url", "value": "https://www.1177.se"}],
    }

    goals = []
    for g, text in enumerate(rng.sample(GOALS, rng.randint(1, 3))):
        goal: dict[str, Any] = {
            "resourceType": "Goal", "id": _uuid(rng),
            "meta": {"profile": [PROFILE_GOAL]},
            "extension": [{"url": EXT_NOTE_KEYWORD, "valueString": "Mål"}],
            "identifier": [{"system": RESOURCE_SYSTEM, "value": f"goal-{token}-{g + 1}"}],
            "lifecycleStatus": "active",
            "description": {"text": text},
            "subject": subject,
        }
        if rng.random() < 0.5:
            goal["extension"].append({"url": EXT_PATIENT_AUTHORED, "valueBoolean": True})
            goal["expressedBy"] = subject
        goals.append(goal)

    signed = date(2026, 1, 1) + timedelta(days=rng.randrange(330))
    appointments = []
    for a in range(rng.randint(1, 3)):
        day = signed + timedelta(days=14 + 30 * a + rng.randrange(14))
        hour, minute = rng.randrange(8, 16), rng.choice((0, 15, 30, 45))
        start = f"{day.isoformat()}T{hour:02d}:{minute:02d}:00+01:00"
        end = f"{day.isoformat()}T{hour:02d}:{minute + 14:02d}:00+01:00"
        clinician = (doctor, nurse)[a % 2]
        appointments.append({
            "resourceType": "Appointment", "id": _uuid(rng),
            "meta": {"profile": [PROFILE_APPOINTMENT]},
            "extension": [{"url": EXT_NOTE_KEYWORD, "valueString": "Tid för uppföljning"}],
            "identifier": [{"system": RESOURCE_SYSTEM, "value": f"appointment-{token}-{a + 1}"}],
            "status": "booked",
            "description": rng.choice(ACTIVITIES["follow-up"][2]),
            "start": start,
            "end": end,
            "basedOn": [{"reference": f"CarePlan/{ids['careplan']}"}],
            "participant": [
                {"actor": subject, "status": "accepted"},
                {"actor": _ref("Practitioner", clinician[0],
                               {"system": HSA_SYSTEM, "value": clinician[1]}, clinician[2]),
                 "status": "accepted"},
                {"actor": {"display": unit.name}, "status": "accepted"},
            ],
        })

    # 6-12 activities: the core four always, then a mix of the rest
    kinds = ["patient-responsibility", "on-deterioration", "care-responsibility", "next-step"]
    optional = ["patient-responsibility", "care-responsibility", "coordinated-plan",
                "other-keyword", "next-step", "on-deterioration"]
    kinds += [rng.choice(optional) for _ in range(rng.randint(6, 12) - len(kinds) - 1)]
    kinds.append("follow-up")
    activities = []
    for kind in kinds:
        kind_display, keyword, texts = ACTIVITIES[kind]
        detail: dict[str, Any] = {
            "code": {"coding": [{"system": ACTIVITY_KIND_SYSTEM, "code": kind,
                                 "display": kind_display}], "text": keyword},
            "status": "scheduled" if kind == "follow-up" else "in-progress",
        }
        if kind in ("patient-responsibility", "on-deterioration"):
            detail["performer"] = [subject]
        if kind == "follow-up":
            detail["scheduledPeriod"] = {"start": appointments[0]["start"]}
        detail["description"] = "\n".join(rng.sample(texts, min(len(texts), rng.randint(1, 2))))
        activity: dict[str, Any] = {}
        if kind == "follow-up":
            activity["outcomeReference"] = [
                {"reference": f"Appointment/{ap['id']}"} for ap in appointments
            ]
        activity["detail"] = detail
        activities.append(activity)

    plan_type = rng.choice(CAREPLAN_TYPES)
    careplan: dict[str, Any] = {
        "resourceType": "CarePlan", "id": ids["careplan"],
        "meta": {"profile": [PROFILE_CAREPLAN]},
        "extension": [
            {"url": EXT_NOTE_KEYWORD, "valueString": "Överenskommelse"},
            {"url": EXT_NOTE_TEMPLATE, "valueString": "Besöksanteckning läkare"},
        ],
        "identifier": [{"system": NOTE_ID_SYSTEM, "value": f"note-{token}"}],
        "status": "active",
        "intent": "plan",
        "category": [
            {"coding": [dict(CATEGORY)]},
            {"coding": [{"system": CAREPLAN_TYPE_SYSTEM, "code": plan_type[0],
                         "display": plan_type[1]}]},
        ],
        "title": "Dokumenterad överenskommelse",
        "description": f"Överenskommelse med {display} om egenvård och uppföljning.",
        "subject": subject,
        "period": {"start": signed.isoformat(),
                   "end": (signed + timedelta(days=rng.choice((90, 182, 365)))).isoformat()},
        "created": f"{signed}T{rng.randrange(8, 17):02d}:{rng.randrange(60):02d}:00+01:00",
        "author": _ref("Practitioner", doctor[0], {"system": HSA_SYSTEM, "value": doctor[1]},
                       doctor[2]),
        "careTeam": [_ref("CareTeam", ids["careteam"])],
        "goal": [{"reference": f"Goal/{g['id']}"} for g in goals],
        "activity": activities,
    }
    return Agreement(patient, careteam, goals, careplan, appointments)


# -- the same agreement as a transaction Bundle ------------------------------------------------


def transaction_bundle(agreement: Agreement) -> dict[str, Any]:
    """A transaction of the whole agreement as an import would post it.

    Every entry is a conditional create on its business identifier (as the
    demo Bundle and the note import do), the server assigns the ids, and the
    references between the entries are ``urn:uuid:`` fullUrls. References to
    the shared pool (Practitioner, Organization) stay literal.
    """
    resources = agreement.resources()
    urls = {f"{r['resourceType']}/{r['id']}": f"urn:uuid:{r['id']}" for r in resources}

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (urls.get(v, v) if k == "reference" and isinstance(v, str) else rewrite(v))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    entries = []
    for r in resources:
        body = {k: rewrite(v) for k, v in r.items() if k != "id"}
        ident = r["identifier"][0]
        entries.append({
            "fullUrl": urls[f"{r['resourceType']}/{r['id']}"],
            "resource": body,
            "request": {"method": "POST", "url": r["resourceType"],
                        "ifNoneExist": f"identifier={ident['system']}|{ident['value']}"},
        })
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def transaction_template(k: int, pool: list[Unit], seed: int) -> tuple[str, str]:
    """Template ``k`` as JSON text with placeholders, and the gender it was written for.

    The personnummer, birth date and every business identifier are placeholders, so
    each request makes a new patient and a new agreement (the conditional creates
    then all create; a repeated agreement would be a cheap no-op).
    """
    import orjson

    fake = Person("199909091234", date(1999, 9, 9), "female" if k % 2 == 0 else "male")
    agreement = make_agreement(k, pool, seed + 7, token="TOKEN", who=fake)
    text = orjson.dumps(transaction_bundle(agreement)).decode()
    text = text.replace("199909091234", "@PNR@").replace('"1999-09-09"', '"@BIRTH@"')
    text = text.replace("-TOKEN", "-@TOKEN@")
    return text, fake.gender


def template_person(n: int, gender: str) -> Person:
    """Patient index ``n`` moved to the nearest serial of ``gender`` (mirrored in Lua)."""
    born = FIRST_BIRTH_DAY + timedelta(days=n % BIRTH_DAYS)
    serial = (n // BIRTH_DAYS) % 500 * 2 + (1 if gender == "male" else 0)
    nine = f"{born:%y%m%d}{serial:03d}"
    return Person(f"{born:%Y%m%d}{serial:03d}{luhn_check_digit(nine)}", born, gender)


def fill_template(template: str, gender: str, n: int, run: str) -> str:
    """A new agreement from a template: patient index ``n``, identifiers ``<run>-<n>``."""
    p = template_person(n, gender)
    return (template.replace("@PNR@", p.personnummer)
            .replace("@BIRTH@", p.birth_date.isoformat())
            .replace("@TOKEN@", f"{run}-{n}"))
