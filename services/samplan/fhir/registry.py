"""The resource types the server holds, what may be done with them, and their search parameters.

This table is the single source for routing, indexing, search parsing and the
CapabilityStatement: a later issue adds a type (Subscription, AuditEvent,
Consent, ...) by registering it here, and every layer picks it up.
Search parameter definitions follow the R4 specification's
(https://hl7.org/fhir/R4/searchparameter-registry.html); paths are written as
dotted element names over the JSON, with lists traversed implicitly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

ParamType = Literal["token", "reference", "date", "string"]
Interaction = Literal[
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
]

ALL_INTERACTIONS: tuple[Interaction, ...] = get_args(Interaction)
READ_ONLY: tuple[Interaction, ...] = ("read", "vread", "search-type", "history-instance")


@dataclass(frozen=True, slots=True)
class SearchParam:
    """One search parameter: its name, type and where its values live in the resource."""

    name: str
    type: ParamType
    paths: tuple[str, ...]
    description: str
    targets: tuple[str, ...] = ()  # reference: the types it may point to
    canonical: str = ""
    # values a dotted path cannot reach (an answer together with its question's linkId):
    # when set, indexing takes the values from this function instead of ``paths``
    extractor: Callable[[dict[str, Any]], Iterator[Any]] | None = None

    def definition_url(self, resource_type: str) -> str:
        if self.canonical:
            return self.canonical
        return f"http://hl7.org/fhir/SearchParameter/{resource_type}-{self.name}"


@dataclass(frozen=True, slots=True)
class ResourceType:
    """A type the server stores, with its interactions and search parameters."""

    name: str
    params: dict[str, SearchParam] = field(default_factory=dict)
    interactions: tuple[Interaction, ...] = ALL_INTERACTIONS
    includes: tuple[str, ...] = ()  # reference params usable in _include=Type:param
    conditional_create: bool = True
    conditional_update: bool = False
    conditional_delete: bool = False

    def supports(self, interaction: Interaction) -> bool:
        return interaction in self.interactions


def _p(
    name: str,
    type_: ParamType,
    *paths: str,
    desc: str = "",
    targets: tuple[str, ...] = (),
) -> SearchParam:
    return SearchParam(name, type_, paths, desc or name, targets)


_IDENTIFIER = _p("identifier", "token", "identifier", desc="A business identifier")
#: Where the parameters SamPlan defines itself (not in R4) are named.
_SAMPLAN_PARAMS = "https://samplan.se/fhir/SearchParameter"

_RESOURCE_TYPES: tuple[ResourceType, ...] = (
    ResourceType(
        "CarePlan",
        {
            p.name: p
            for p in (
                _p("patient", "reference", "subject", desc="Who the plan is for (Patient)",
                   targets=("Patient",)),
                _p("subject", "reference", "subject", desc="Who the plan is for",
                   targets=("Patient", "Group")),
                _p("status", "token", "status", desc="draft | active | on-hold | revoked | ..."),
                _p("category", "token", "category", desc="Type of plan"),
                _p("date", "date", "period", desc="Time period the plan covers"),
                _p("care-team", "reference", "careTeam", desc="Who's involved in the plan",
                   targets=("CareTeam",)),
                _p("goal", "reference", "goal", desc="Desired outcome of plan",
                   targets=("Goal",)),
                _p("author", "reference", "author", desc="Who is responsible for the plan",
                   targets=("Patient", "Practitioner", "PractitionerRole", "Organization",
                            "RelatedPerson", "CareTeam")),
                _p("intent", "token", "intent", desc="proposal | plan | order | option"),
                _IDENTIFIER,
            )
        },
        includes=("care-team", "goal", "subject", "patient", "author"),
    ),
    ResourceType(
        "CareTeam",
        {
            p.name: p
            for p in (
                _p("patient", "reference", "subject", desc="Who the care team is for (Patient)",
                   targets=("Patient",)),
                _p("subject", "reference", "subject", desc="Who the care team is for",
                   targets=("Patient", "Group")),
                _p("participant", "reference", "participant.member",
                   desc="Who is involved",
                   targets=("Practitioner", "PractitionerRole", "RelatedPerson", "Patient",
                            "Organization", "CareTeam")),
                _p("status", "token", "status", desc="proposed | active | suspended | ..."),
                _p("category", "token", "category", desc="Type of team"),
                _p("organization", "reference", "managingOrganization",
                   desc="Organization responsible for the care team", targets=("Organization",)),
                SearchParam("participant-role", "token", ("participant.role",),
                            "The role of a participant (KV typ av fast kontakt: 1 fast "
                            "vårdkontakt, 2 fast läkarkontakt, ...), as the follow-up "
                            "measures count them",
                            canonical=f"{_SAMPLAN_PARAMS}/CareTeam-participant-role"),
                _IDENTIFIER,
            )
        },
        includes=("participant", "subject", "patient", "organization"),
    ),
    ResourceType(
        "Appointment",
        {
            p.name: p
            for p in (
                _p("patient", "reference", "participant.actor",
                   desc="One of the individuals of the appointment is this patient",
                   targets=("Patient",)),
                _p("actor", "reference", "participant.actor",
                   desc="Any one of the individuals participating in the appointment",
                   targets=("Patient", "Practitioner", "PractitionerRole", "RelatedPerson",
                            "Device", "HealthcareService", "Location")),
                _p("date", "date", "start", desc="Appointment date/time"),
                _p("status", "token", "status", desc="The overall status of the appointment"),
                _p("based-on", "reference", "basedOn",
                   desc="The plan or request this appointment is allocated to assess "
                        "(CarePlan allowed, as in R5)",
                   targets=("CarePlan", "ServiceRequest")),
                _IDENTIFIER,
            )
        },
        includes=("patient", "actor", "based-on"),
    ),
    ResourceType(
        "Goal",
        {
            p.name: p
            for p in (
                _p("patient", "reference", "subject", desc="Who this goal is intended for",
                   targets=("Patient",)),
                _p("subject", "reference", "subject", desc="Who this goal is intended for",
                   targets=("Patient", "Group", "Organization")),
                _p("lifecycle-status", "token", "lifecycleStatus",
                   desc="proposed | planned | accepted | active | ..."),
                _p("expressed-by", "reference", "expressedBy", desc="Who said the goal",
                   targets=("Patient", "Practitioner", "PractitionerRole", "RelatedPerson")),
                _IDENTIFIER,
            )
        },
        includes=("patient", "subject"),
    ),
    ResourceType(
        "Patient",
        {
            p.name: p
            for p in (
                _IDENTIFIER,
                _p("name", "string", "name", desc="Any part of a name"),
                _p("family", "string", "name.family", desc="A portion of the family name"),
                _p("given", "string", "name.given", desc="A portion of the given name"),
                _p("birthdate", "date", "birthDate", desc="The patient's date of birth"),
                _p("gender", "token", "gender", desc="Gender of the patient"),
                _p("organization", "reference", "managingOrganization",
                   desc="The organization that is the custodian of the patient record",
                   targets=("Organization",)),
            )
        },
        includes=("organization",),
    ),
    ResourceType(
        "Practitioner",
        {
            p.name: p
            for p in (
                _IDENTIFIER,
                _p("name", "string", "name", desc="Any part of a name"),
                _p("family", "string", "name.family", desc="A portion of the family name"),
                _p("given", "string", "name.given", desc="A portion of the given name"),
            )
        },
    ),
    ResourceType(
        "PractitionerRole",
        {
            p.name: p
            for p in (
                _IDENTIFIER,
                _p("practitioner", "reference", "practitioner",
                   desc="Practitioner that is able to provide the role",
                   targets=("Practitioner",)),
                _p("organization", "reference", "organization",
                   desc="The organization where the role is available",
                   targets=("Organization",)),
                _p("role", "token", "code", desc="The role the practitioner has"),
            )
        },
        includes=("practitioner", "organization"),
    ),
    ResourceType(
        "Organization",
        {
            p.name: p
            for p in (
                _IDENTIFIER,
                _p("name", "string", "name", "alias", desc="A portion of the name or alias"),
                _p("partof", "reference", "partOf", desc="Part of", targets=("Organization",)),
            )
        },
        includes=("partof",),
    ),
    ResourceType(
        "RelatedPerson",
        {
            p.name: p
            for p in (
                _IDENTIFIER,
                _p("name", "string", "name", desc="Any part of a name"),
                _p("patient", "reference", "patient", desc="The patient this person is related to",
                   targets=("Patient",)),
                _p("relationship", "token", "relationship", desc="The relationship"),
            )
        },
        includes=("patient",),
    ),
)

# The access log (issue 6): served from the audit_events table, read and search only,
# never created, updated or deleted through the API (405).
AUDIT_EVENT = ResourceType(
    "AuditEvent",
    {
        p.name: p
        for p in (
            _p("patient", "reference", "entity.what", desc="Whose data was accessed",
               targets=("Patient",)),
            _p("agent", "reference", "agent.who",
               desc="Who accessed: an HSA-id, a token subject or a fhirUser reference",
               targets=("Practitioner", "PractitionerRole", "Organization", "Patient",
                        "RelatedPerson", "Device")),
            _p("date", "date", "recorded", desc="When the access happened"),
            _p("action", "token", "action", desc="C | R | U | D | E"),
            _p("subtype", "token", "subtype", desc="The FHIR interaction (read, search-type...)"),
            _p("outcome", "token", "outcome", desc="0 success | 4 denied or failed"),
        )
    },
    interactions=("read", "search-type"),
    conditional_create=False,
)

# Consent (issue 6): the patient's block (spärr, provision.type = deny) on a care provider,
# and the proxy grant a patient gives a relative (provision.type = permit, actor RelatedPerson).
CONSENT = ResourceType(
    "Consent",
    {
        p.name: p
        for p in (
            _p("patient", "reference", "patient", desc="Who the consent applies to",
               targets=("Patient",)),
            _p("status", "token", "status", desc="draft | proposed | active | rejected | ..."),
            _p("actor", "reference", "provision.actor.reference",
               desc="Resource for the actor (or group, by role)",
               targets=("Organization", "Practitioner", "PractitionerRole", "RelatedPerson",
                        "CareTeam", "Patient")),
            _p("category", "token", "category", desc="Classification of the consent statement"),
            _p("scope", "token", "scope", desc="Which of the four areas this resource covers"),
            _p("date", "date", "dateTime", desc="When this Consent was created or indexed"),
            _IDENTIFIER,
        )
    },
    includes=("patient", "actor"),
)


def _item_answers(response: dict[str, Any]) -> Iterator[Any]:
    """Each answer of a QuestionnaireResponse as a token ``linkId|value`` (nested items too).

    A boolean answers ``true``/``false``, a Coding its code, a string or integer itself:
    enough for ``item-answer=5|true`` and for counting "yes" answers per question in SQL.
    """
    stack = list(response.get("item") or [])
    while stack:
        item = stack.pop()
        if not isinstance(item, dict):
            continue
        link = item.get("linkId")
        for answer in item.get("answer") or []:
            if not isinstance(answer, dict):
                continue
            stack.extend(answer.get("item") or [])
            for key, value in answer.items():
                if not key.startswith("value") or not isinstance(link, str):
                    continue
                if isinstance(value, bool):
                    yield {"system": link, "code": "true" if value else "false"}
                elif isinstance(value, str | int):
                    yield {"system": link, "code": str(value)}
                elif isinstance(value, dict) and value.get("code"):
                    yield {"system": link, "code": str(value["code"])}
        stack.extend(item.get("item") or [])



# The RUB level (issue 16): an Observation of our profile samplan-rub-observation only
# (the write checks in samplan.followup refuse any other Observation).
OBSERVATION = ResourceType(
    "Observation",
    {
        p.name: p
        for p in (
            _p("patient", "reference", "subject", desc="The subject the observation is about "
               "(if patient)", targets=("Patient",)),
            _p("subject", "reference", "subject", desc="The subject that the observation is about",
               targets=("Patient",)),
            _p("code", "token", "code", desc="The code of the observation type"),
            _p("category", "token", "category", desc="The classification of the type of "
               "observation"),
            _p("status", "token", "status", desc="The status of the observation"),
            _p("date", "date", "effectiveDateTime", "effectivePeriod", "effectiveInstant",
               desc="Obtained date/time"),
            SearchParam("value-integer", "token", ("valueInteger",),
                        "The value of the observation, if the value is an integer "
                        "(the RUB level 0-5)",
                        canonical=f"{_SAMPLAN_PARAMS}/Observation-value-integer"),
            _IDENTIFIER,
        )
    },
    includes=("patient", "subject"),
)

# The seven questions (issue 16): a patient's answers are about themselves (subject
# Patient), a staff member's about their unit (subject Organization).
QUESTIONNAIRE_RESPONSE = ResourceType(
    "QuestionnaireResponse",
    {
        p.name: p
        for p in (
            _p("patient", "reference", "subject", desc="The patient that is the subject of the "
               "questionnaire response", targets=("Patient",)),
            _p("subject", "reference", "subject", desc="The subject of the questionnaire "
               "response", targets=("Patient", "Organization")),
            SearchParam("questionnaire", "token", ("questionnaire",),
                        "The questionnaire the answers are provided for (its canonical URL; "
                        "R4 types it as a reference to the canonical)"),
            _p("status", "token", "status", desc="The status of the questionnaire response"),
            _p("authored", "date", "authored", desc="When the questionnaire response was last "
               "changed"),
            _p("author", "reference", "author", desc="The author of the questionnaire response",
               targets=("Patient", "Practitioner", "PractitionerRole", "RelatedPerson",
                        "Organization")),
            _p("source", "reference", "source", desc="The individual providing the information "
               "reflected in the questionnaire response",
               targets=("Patient", "Practitioner", "PractitionerRole", "RelatedPerson")),
            SearchParam("item-answer", "token", ("item",),
                        "An answer, as the question's linkId (system) and the value (code): "
                        "item-answer=5|true", canonical=f"{_SAMPLAN_PARAMS}/"
                        "QuestionnaireResponse-item-answer", extractor=_item_answers),
            _IDENTIFIER,
        )
    },
    includes=("patient", "subject", "author", "source"),
)

REGISTRY: dict[str, ResourceType] = {
    rt.name: rt
    for rt in (*_RESOURCE_TYPES, AUDIT_EVENT, CONSENT, OBSERVATION, QUESTIONNAIRE_RESPONSE)
}

# Parameters every type understands; handled by the search engine itself.
COMMON_PARAMS: dict[str, ParamType] = {
    "_id": "token", "_lastUpdated": "date", "_security": "token", "_tag": "token",
}

# Result parameters (https://hl7.org/fhir/R4/search.html#return): never "unknown".
RESULT_PARAMS = frozenset(
    {
        "_count",
        "_sort",
        "_total",
        "_summary",
        "_include",
        "_revinclude",
        "_elements",
        "_format",
        "_pretty",
        "_page_after",
        "_page_before",
        "_contained",
    }
)


def register(resource_type: ResourceType) -> None:
    """Add a type (used by later features: subscriptions, audit, consent)."""
    REGISTRY[resource_type.name] = resource_type


def get_type(name: str) -> ResourceType | None:
    return REGISTRY.get(name)
