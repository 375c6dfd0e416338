"""The indicators as FHIR Measures: ids, titles, criteria, and the resources published at start.

Each Measure is a proportion: an initial population, a denominator within it
and a numerator within that, counted per measurement period. The criteria are
written here in words (``Measure.group.population.description``; the
criteria are named ``Initial Population``, ``Denominator``, ``Numerator`` as
``text/cql-identifier`` with no Library behind them: the server counts them in
SQL, ``samplan.store.indicators``) and in docs/indicators.md; the ids are the regions'
(issue 16) and never change.

The seven questions are two Measures of seven groups each (one per question,
in order): answers in the period, those answering the question, and the
"yes" answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from samplan.followup import codes
from samplan.followup.questionnaires import Questionnaire, SevenQuestions

POPULATION_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/measure-population"
SCORING_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/measure-scoring"
TYPE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/measure-type"
IMPROVEMENT_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/measure-improvement-notation"
RESOURCE_TYPES: Final = "http://hl7.org/fhir/resource-types"
POPULATIONS: Final = ("initial-population", "denominator", "numerator")
VERSION: Final = "0.1.0"
DATE: Final = "2026-12-03"

Improvement = Literal["increase", "decrease"]

# The criteria, in Swedish as the regions read them.
_RUB_IN_PERIOD = ("Patienter med en RUB-nivå (Observation indicator-observation#rub, status final, "
                  "amended eller corrected) med effektiv tid i perioden; den senaste i perioden "
                  "gäller.")
_ACTIVE_AGREEMENT = ("Patienter med en gällande dokumenterad överenskommelse i perioden: CarePlan "
                     "med kategori careplan-category#dokumenterad-overenskommelse, status active "
                     "(eller completed), vars period överlappar mätperioden.")


@dataclass(frozen=True, slots=True)
class MeasureDefinition:
    """One indicator: what it is called and what each of its populations counts."""

    id: str
    title: str
    description: str
    initial: str
    denominator: str
    numerator: str
    improvement: Improvement = "increase"
    kind: str = "process"
    subject_type: str = "Patient"
    questionnaire: str | None = None  # canonical URL: one group per question

    @property
    def url(self) -> str:
        return f"{codes.MEASURE_BASE}/{self.id}"

    @property
    def is_questionnaire(self) -> bool:
        return self.questionnaire is not None

    def questions_of(self, seven: SevenQuestions) -> Questionnaire | None:
        if self.questionnaire == codes.PATIENT_QUESTIONNAIRE:
            return seven.patient
        if self.questionnaire == codes.STAFF_QUESTIONNAIRE:
            return seven.staff
        return None


MEASURES: Final[tuple[MeasureDefinition, ...]] = (
    MeasureDefinition(
        codes.RUB5_UTAN_FAST_LAKARKONTAKT,
        "RUB 5 utan fast läkarkontakt",
        "Andel patienter med RUB 5 som saknar fast läkarkontakt (KV typ av fast kontakt 2) i en "
        "gällande överenskommelse. Lägre är bättre.",
        _RUB_IN_PERIOD,
        "De vars senaste RUB-nivå i perioden är 5.",
        "De som inte har någon deltagare med rollen fast läkarkontakt i primärvård "
        "(urn:oid:1.2.752.129.5.1.69#2) i ett CareTeam (inte inactive eller entered-in-error) som "
        "en gällande överenskommelse i perioden hänvisar till (CarePlan.careTeam).",
        improvement="decrease",
    ),
    MeasureDefinition(
        codes.RUB5_MED_SIP,
        "RUB 5 med SIP",
        "Andel patienter med RUB 5 som har en gällande samordnad individuell plan (SIP).",
        _RUB_IN_PERIOD,
        "De vars senaste RUB-nivå i perioden är 5.",
        "De som har en gällande SIP i perioden: CarePlan med kategori careplan-category#sip "
        "eller Ineras typeofcareplan-cs#SIP, status active (eller completed), vars period "
        "överlappar mätperioden.",
    ),
    MeasureDefinition(
        codes.RUB45_MED_OVERENSKOMMELSE,
        "RUB 4–5 med överenskommelse",
        "Andel patienter med RUB 4 eller 5 som har en gällande dokumenterad överenskommelse.",
        _RUB_IN_PERIOD,
        "De vars senaste RUB-nivå i perioden är 4 eller 5.",
        "De som har en gällande dokumenterad överenskommelse i perioden.",
    ),
    MeasureDefinition(
        codes.OVERENSKOMMELSE_MED_NASTA_TID,
        "Överenskommelse med nästa tid",
        "Andel patienter med gällande överenskommelse som har en bokad tid framåt.",
        _ACTIVE_AGREEMENT,
        "Samma som grundpopulationen.",
        "De som har en bokad tid (Appointment med patienten som deltagare, status booked, eller "
        "sedan dess arrived, checked-in eller fulfilled) som börjar efter periodens slut, eller "
        "efter nu om perioden inte är slut.",
    ),
    MeasureDefinition(
        codes.OVERENSKOMMELSE_MED_FAST_VARDKONTAKT,
        "Överenskommelse med fast vårdkontakt",
        "Andel patienter med gällande överenskommelse som har en fast vårdkontakt.",
        _ACTIVE_AGREEMENT,
        "Samma som grundpopulationen.",
        "De som har en deltagare med rollen fast vårdkontakt (urn:oid:1.2.752.129.5.1.69#1) i "
        "ett CareTeam som en gällande överenskommelse i perioden hänvisar till.",
    ),
    MeasureDefinition(
        codes.SJU_FRAGOR_PATIENT,
        "Sju frågor: patienterna",
        "SKR:s sju frågor till patienterna (Du och vården - hur funkar det?): andel ja-svar på "
        "varje fråga. En grupp per fråga, i frågornas ordning.",
        "Svar (QuestionnaireResponse på Questionnaire sju-fragor-patient, status completed eller "
        "amended) med authored i perioden.",
        "De svar som besvarar frågan.",
        "De svar där svaret på frågan är ja (valueBoolean true).",
        kind="patient-reported-outcome",
        questionnaire=codes.PATIENT_QUESTIONNAIRE,
    ),
    MeasureDefinition(
        codes.SJU_FRAGOR_PERSONAL,
        "Sju frågor: medarbetarna",
        "SKR:s sju frågor till medarbetarna om deras enhet: andel ja-svar på varje fråga. En "
        "grupp per fråga, i frågornas ordning.",
        "Svar (QuestionnaireResponse på Questionnaire sju-fragor-personal, status completed "
        "eller amended) med authored i perioden.",
        "De svar som besvarar frågan.",
        "De svar där svaret på frågan är ja (valueBoolean true).",
        subject_type="Organization",
        questionnaire=codes.STAFF_QUESTIONNAIRE,
    ),
)

BY_ID: Final[dict[str, MeasureDefinition]] = {m.id: m for m in MEASURES}
assert tuple(BY_ID) == codes.MEASURE_IDS, "MEASURES and codes.MEASURE_IDS must agree"


def definition(measure_id: str) -> MeasureDefinition | None:
    return BY_ID.get(measure_id)


def _coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def group_code(measure: MeasureDefinition, link_id: str | None, text: str = "") -> dict[str, Any]:
    """``Measure.group.code`` (and the report's): the measure, or the question's linkId."""
    if link_id is None:
        return {**_coding(measure.url, measure.id), "text": measure.title}
    code = _coding(str(measure.questionnaire), link_id)
    if text:
        code["text"] = text
    return code


#: The named criteria (``text/cql-identifier``, as quality measures name their CQL
#: definitions). There is no Library: the server evaluates them in SQL.
CRITERIA: Final = ("Initial Population", "Denominator", "Numerator")


def _populations(measure: MeasureDefinition) -> list[dict[str, Any]]:
    words = (measure.initial, measure.denominator, measure.numerator)
    return [
        {"code": _coding(POPULATION_SYSTEM, code), "description": text,
         "criteria": {"description": text, "language": "text/cql-identifier",
                      "expression": name}}
        for code, text, name in zip(POPULATIONS, words, CRITERIA, strict=True)
    ]


def measure_resource(measure: MeasureDefinition, seven: SevenQuestions) -> dict[str, Any]:
    """The FHIR R4 Measure as published (``GET /fhir/Measure/{id}``)."""
    questions = measure.questions_of(seven)
    if questions is None:
        groups = [{"code": group_code(measure, None), "description": measure.description,
                   "population": _populations(measure)}]
    else:
        groups = [{"code": group_code(measure, q.link_id, q.text),
                   "description": f"{q.prefix} {q.text}".strip(),
                   "population": _populations(measure)} for q in questions.questions]
    return {
        "resourceType": "Measure",
        "id": measure.id,
        "url": measure.url,
        "version": VERSION,
        "name": "".join(part.capitalize() for part in measure.id.split("-")),
        "title": measure.title,
        "status": "active",
        "experimental": False,
        "subjectCodeableConcept": _coding(RESOURCE_TYPES, measure.subject_type),
        "date": DATE,
        "publisher": "SamPlan",
        "contact": [{"name": "SamPlan",
                     "telecom": [{"system": "url", "value": "https://samplan.se"}]}],
        "description": measure.description,
        "jurisdiction": [_coding("urn:iso:std:iso:3166", "SE", "Sweden")],
        "scoring": _coding(SCORING_SYSTEM, "proportion"),
        "type": [_coding(TYPE_SYSTEM, measure.kind)],
        "improvementNotation": _coding(IMPROVEMENT_SYSTEM, measure.improvement),
        "group": groups,
    }


def resources(seven: SevenQuestions) -> list[dict[str, Any]]:
    """Every Measure, for the conformance sync at start."""
    return [measure_resource(m, seven) for m in MEASURES]
