"""The access log's entries: who, for whom, which patient, what, when, outcome, from where.

Pure: an :class:`AuditRecord` is built from a :class:`Principal` and what was
done, and rendered as a FHIR R4 ``AuditEvent``
(https://hl7.org/fhir/R4/auditevent.html). The store writes both the columns
it is searched by and the rendered JSON (``store/audit.py``).

When entries are written (``security/gate.py``, ``security/writes.py``):

* writes: inside the write's own database transaction (a before-commit hook),
  so a write without its log entry can never be committed;
* reads and searches: in their own transaction, committed *before* the
  response is sent, so data already shown always has its entry; a crash
  in between loses a response, never a log entry.
* notifications (``notify``): pushed ones in the transaction that marks them
  delivered (after the receiver's 2xx), fetched ones (``$events``) like reads.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson

from samplan.fhir.dates import from_us, now_us
from samplan.fhir.identifiers import HSA_SYSTEM
from samplan.fhir.resource import instant
from samplan.security.principal import Principal

AuditInteraction = Literal[
    "read", "vread", "history", "search", "create", "update", "patch", "delete", "notify"
]

#: https://hl7.org/fhir/R4/valueset-audit-event-action.html
ACTIONS: Final[Mapping[str, str]] = {
    "read": "R", "vread": "R", "history": "R", "search": "E",
    "create": "C", "update": "U", "patch": "U", "delete": "D",
    "notify": "R",  # a subscription notification (pushed, or fetched with $events) discloses data
}
#: https://hl7.org/fhir/R4/valueset-audit-event-outcome.html
SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE = "0", "4", "8"

_RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
#: subtype of notification entries (no restful-interaction code fits a push)
SAMPLAN_INTERACTION = "https://samplan.se/fhir/CodeSystem/audit-interaction"
_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_ENTITY_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_AGENT_TYPE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_NETWORK_IP = "2"
_OBSERVER = "SamPlan"


@dataclass(frozen=True, slots=True)
class Agent:
    """Who acted: the columns the log is searched by."""

    kind: str
    subject: str
    user_hsa_id: str | None = None
    unit_hsa_id: str | None = None
    provider_hsa_id: str | None = None
    org_hsa_id: str | None = None
    fhir_user: str | None = None
    client_id: str | None = None
    acting_for: str | None = None  # a relative acts for the patient

    @classmethod
    def of(cls, principal: Principal | None) -> Agent:
        """The agent of a principal; ``None`` is the service itself (demo load, migrations)."""
        if principal is None:
            return cls(kind="internal", subject="samplan")
        return cls(
            kind=principal.kind,
            subject=principal.subject,
            user_hsa_id=principal.employee_hsa_id,
            unit_hsa_id=principal.care_unit_hsa_id,
            provider_hsa_id=principal.care_provider_hsa_id,
            org_hsa_id=principal.organisation_hsa_id,
            fhir_user=principal.fhir_user,
            client_id=principal.client_id,
            acting_for=(f"Patient/{principal.patient}"
                        if principal.kind == "relative" and principal.patient else None),
        )


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One access to (possibly) one patient's data."""

    interaction: AuditInteraction
    agent: Agent
    outcome: str = SUCCESS
    outcome_text: str | None = None
    patient_id: str | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    entity_version: int | None = None
    entities: tuple[tuple[str, str], ...] = ()  # further (type, id) touched, e.g. by a search
    query: str | None = None
    client_ip: str | None = None
    recorded_us: int = field(default_factory=now_us)
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def action(self) -> str:
        return ACTIONS[self.interaction]

    def to_row(self) -> dict[str, object]:
        """The ``audit_events`` row of this entry (``store/audit.py``: columns searched by,
        and the AuditEvent JSON as served)."""
        agent = self.agent
        return {
            "event_id": self.event_id,
            "recorded": self.recorded_us,
            "action": self.action,
            "interaction": self.interaction,
            "outcome": self.outcome,
            "agent_kind": agent.kind,
            "agent_subject": agent.subject[:255],
            "agent_user_hsa_id": agent.user_hsa_id,
            "agent_unit_hsa_id": agent.unit_hsa_id,
            "agent_provider_hsa_id": agent.provider_hsa_id,
            "agent_org_hsa_id": agent.org_hsa_id,
            "agent_fhir_user": agent.fhir_user,
            "client_id": agent.client_id,
            "patient_id": self.patient_id,
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "client_ip": self.client_ip,
            "content": orjson.dumps(self.to_fhir()),
        }

    def to_fhir(self) -> dict[str, Any]:
        """The R4 AuditEvent served by ``GET /fhir/AuditEvent``."""
        recorded = instant(from_us(self.recorded_us))
        event: dict[str, Any] = {
            "resourceType": "AuditEvent",
            "id": self.event_id,
            "meta": {"versionId": "1", "lastUpdated": recorded},
            "type": {"system": _EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
            "subtype": [{"system": SAMPLAN_INTERACTION if self.interaction == "notify"
                         else _RESTFUL_INTERACTION, "code": _subtype(self.interaction)}],
            "action": self.action,
            "recorded": recorded,
            "outcome": self.outcome,
            "agent": _agents(self.agent, self.client_ip),
            "source": {"observer": {"display": _OBSERVER}},
        }
        if self.outcome_text:
            event["outcomeDesc"] = self.outcome_text
        entities: list[dict[str, Any]] = []
        if self.patient_id:
            entities.append({
                "what": {"reference": f"Patient/{self.patient_id}"},
                "type": {"system": _ENTITY_TYPE, "code": "1", "display": "Person"},
                "role": {"system": _ENTITY_ROLE, "code": "1", "display": "Patient"},
            })
        touched = list(self.entities)
        if self.entity_type and self.entity_id:
            touched.insert(0, (self.entity_type, self.entity_id))
        for i, (rtype, rid) in enumerate(dict.fromkeys(touched)):
            if rtype == "Patient" and rid == self.patient_id:
                continue
            reference = f"{rtype}/{rid}"
            if i == 0 and self.entity_version is not None and self.entity_type:
                reference += f"/_history/{self.entity_version}"
            entities.append({
                "what": {"reference": reference},
                "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
            })
        if self.query is not None:
            entities.append({
                "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": _ENTITY_ROLE, "code": "24", "display": "Query"},
                "description": self.query[:1000],
            })
        if entities:
            event["entity"] = entities
        return event


def _subtype(interaction: AuditInteraction) -> str:
    return {"history": "history-instance", "search": "search-type"}.get(interaction, interaction)


def _agents(agent: Agent, client_ip: str | None) -> list[dict[str, Any]]:
    who: dict[str, Any]
    if agent.user_hsa_id:
        who = {"identifier": {"system": HSA_SYSTEM, "value": agent.user_hsa_id}}
    elif agent.fhir_user:
        who = {"reference": agent.fhir_user}
    elif agent.org_hsa_id and agent.kind == "system":
        who = {"identifier": {"system": HSA_SYSTEM, "value": agent.org_hsa_id}}
    else:
        who = {"display": agent.subject}
    main: dict[str, Any] = {
        "type": {"coding": [{"system": _AGENT_TYPE, "code": "humanuser"
                             if agent.kind in ("staff", "patient", "relative") else "dataprocessor",
                             "display": agent.kind}]},
        "who": who,
        "altId": agent.subject,
        "requestor": True,
    }
    if agent.client_id:
        main["name"] = f"{agent.kind} via {agent.client_id}"
    if client_ip:
        main["network"] = {"address": client_ip, "type": _NETWORK_IP}
    agents = [main]
    for label, hsa in (("care unit", agent.unit_hsa_id), ("care provider", agent.provider_hsa_id),
                       ("organisation", agent.org_hsa_id if agent.kind != "system" else None)):
        if hsa:
            agents.append({
                "type": {"text": label},
                "who": {"identifier": {"system": HSA_SYSTEM, "value": hsa}},
                "requestor": False,
            })
    if agent.acting_for:
        agents.append({
            "type": {"coding": [{"system": _PARTICIPATION, "code": "PRCP",
                                 "display": "primary information recipient"}],
                     "text": "acting for"},
            "who": {"reference": agent.acting_for},
            "requestor": False,
        })
    return agents
