"""The patient as co-creator: what a patient (or a relative acting for them) may add.

Pure rules, no SQL and no HTTP; :mod:`samplan.agreement.patient_service` runs
them inside one write transaction.

What the patient may do, and how it is marked as theirs:

==================  ======================================================================
contribution        FHIR
==================  ======================================================================
a goal              ``Goal``, ``expressedBy`` = the Patient, ``description.text``, linked
("Det här är        from the agreement's ``CarePlan.goal`` (so ``$export-note`` prints it
viktigt för mig")   as its own ``Mål (patientens tillägg)`` keyword line)
an own activity     ``CarePlan.activity`` with the ``patient-authored`` extension, an
("Det här gör jag") ``id``, ``detail.code`` ``patient-responsibility`` (or
                    ``on-deterioration``), ``detail.performer`` = the Patient
a note / question   ``Communication`` (registered here): ``sender`` = the Patient (or the
to the care team    RelatedPerson), ``recipient`` = the CareTeams, ``about`` = the agreement
withdraw            the patient's own activity is removed, their own goal is ``cancelled``
                    and unlinked; anything care wrote is refused (403)
==================  ======================================================================

A relative writes *for* the patient: the goal and activity are still the
patient's (``expressedBy``/``performer`` = Patient), and an ``Annotation`` by
the RelatedPerson (``Goal.note``, ``activity.progress``) says who entered it;
their message's ``sender`` is the RelatedPerson.

Why a Communication for the note rather than a ``CarePlan.note``: a question
is a message to people, with a sender, recipients and a reply
(``inResponseTo``), not a part of the agreement; as its own resource it never
makes a new version of the CarePlan that a journal is editing at the same
moment, and a new journal note (which rebuilds the CarePlan from the note's
keywords) cannot silently drop it.

Who may contribute is decided by a :data:`ContributionCheck`: a function of
the :class:`Actor` and the :class:`Contribution`. :func:`default_check` lets
the patient and a relative through (their reach to the patient is checked
when the agreement is read, before any write) and refuses staff and systems,
who write in the journal. The security policy plugs in its own check
(``Services.co_creation_check``).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from samplan.agreement.codes import (
    ACTIVITY_KIND_SYSTEM,
    ACTIVITY_KINDS,
    EXT_PATIENT_AUTHORED,
    PART_DEFAULT_KEYWORD,
    PROFILE_GOAL,
)
from samplan.agreement.model import Part
from samplan.fhir.errors import Forbidden, NotFound, Unprocessable
from samplan.fhir.registry import ResourceType, SearchParam, register

__all__ = [
    "COMMUNICATION",
    "MAX_TEXT",
    "PATIENT_ACTIVITY_KINDS",
    "Actor",
    "Contribution",
    "ContributionCheck",
    "add_activity",
    "clean_text",
    "default_check",
    "link_goal",
    "new_activity",
    "new_goal",
    "new_message",
    "withdraw_activity",
    "withdraw_goal",
]

Resource = dict[str, Any]
ActorKind = Literal["patient", "relative", "staff", "system", "anonymous-dev"]
Action = Literal["add-goal", "add-activity", "add-message", "withdraw"]

MAX_TEXT: Final = 2000
"""Characters in one contribution: a few paragraphs, not a document."""

PATIENT_ACTIVITY_KINDS: Final[dict[str, Part]] = {
    "patient-responsibility": Part.PATIENT_RESPONSIBILITY,
    "on-deterioration": Part.ON_DETERIORATION,
}
"""The activity kinds that are the patient's own to add; the others are care's."""

CARE_REFUSAL: Final = (
    "What care is responsible for is changed by care, in the journal; "
    "you can add your own goals, your own activities and a message to your care team."
)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is contributing: the patient themselves, or a relative acting for them."""

    kind: ActorKind
    reference: str | None = None
    """``Patient/1`` or ``RelatedPerson/9``; ``None`` for the development principal."""
    display: str | None = None


@dataclass(frozen=True, slots=True)
class Contribution:
    """What is about to be written, for the :data:`ContributionCheck`."""

    action: Action
    patient_id: str
    text: str | None = None
    target: str | None = None
    """What a withdrawal takes back: ``Goal/7`` or ``CarePlan/3#pa-1``."""


ContributionCheck = Callable[[Actor, Contribution], Awaitable[None]]
"""Raises :class:`~samplan.fhir.errors.Forbidden` when the actor may not contribute."""


async def default_check(actor: Actor, contribution: Contribution) -> None:
    """The patient (only for themselves) and their relative may contribute; nobody else."""
    if actor.kind == "anonymous-dev":
        return
    if actor.kind == "patient":
        if actor.reference not in (None, f"Patient/{contribution.patient_id}"):
            raise Forbidden("A patient contributes only to their own agreement.")
        return
    if actor.kind == "relative":
        return
    raise Forbidden(
        "Only the patient, or a relative acting for them, adds to the patient's own part "
        "of the agreement; staff and systems write in the journal."
    )


def clean_text(text: Any, what: str = "text") -> str:
    """The contribution's words: ``\\n`` line ends, no trailing blanks, 1..2000 characters."""
    if not isinstance(text, str):
        raise Unprocessable(f"'{what}' must be a string.", (what,))
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    cleaned = "\n".join(lines).strip("\n")
    if not cleaned.strip():
        raise Unprocessable(f"'{what}' is empty: write what you want to add.", (what,))
    if len(cleaned) > MAX_TEXT:
        raise Unprocessable(f"'{what}' is longer than {MAX_TEXT} characters.", (what,))
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in cleaned):
        raise Unprocessable(f"'{what}' contains control characters.", (what,))
    return cleaned


def _stamp(now: datetime) -> str:
    return now.isoformat(timespec="seconds")


def _entered_by(actor: Actor, now: datetime) -> list[Resource]:
    """An Annotation naming the relative who entered something for the patient."""
    if actor.kind != "relative" or actor.reference is None:
        return []
    author: Resource = {"reference": actor.reference}
    if actor.display:
        author["display"] = actor.display
    return [{
        "authorReference": author,
        "time": _stamp(now),
        "text": "Tillagt av närstående för patientens räkning.",
    }]


def new_goal(patient_id: str, text: str, actor: Actor, now: datetime) -> Resource:
    """The patient's own goal ("Det här är viktigt för mig")."""
    patient = {"reference": f"Patient/{patient_id}"}
    goal: Resource = {
        "resourceType": "Goal",
        "meta": {"profile": [PROFILE_GOAL]},
        "extension": [{"url": EXT_PATIENT_AUTHORED, "valueBoolean": True}],
        "lifecycleStatus": "active",
        "description": {"text": text},
        "subject": patient,
        "startDate": now.date().isoformat(),
        "expressedBy": patient,
    }
    notes = _entered_by(actor, now)
    if notes:
        goal["note"] = notes
    return goal


def link_goal(careplan: Resource, goal_reference: str) -> Resource:
    """The CarePlan with ``goal_reference`` added to ``CarePlan.goal``."""
    plan = dict(careplan)
    goals = list(plan.get("goal") or [])
    if not any(g.get("reference") == goal_reference for g in goals):
        goals.append({"reference": goal_reference})
    plan["goal"] = goals
    return plan


def new_activity(
    patient_id: str, text: str, actor: Actor, now: datetime, kind: str = "patient-responsibility"
) -> Resource:
    """The patient's own activity: what they do themselves (or when things get worse)."""
    part = PATIENT_ACTIVITY_KINDS.get(kind)
    if part is None:
        if kind in ACTIVITY_KINDS:
            raise Forbidden(f"'{ACTIVITY_KINDS[kind]}' is care's part. {CARE_REFUSAL}",
                            ("kind",))
        raise Unprocessable(
            f"Unknown kind {kind!r}; a patient adds "
            f"{' or '.join(sorted(PATIENT_ACTIVITY_KINDS))}.", ("kind",)
        )
    activity: Resource = {
        "id": f"pa-{uuid.uuid4().hex[:12]}",
        "extension": [{"url": EXT_PATIENT_AUTHORED, "valueBoolean": True}],
    }
    notes = _entered_by(actor, now)
    if notes:
        activity["progress"] = notes
    activity["detail"] = {
        "code": {
            "coding": [{"system": ACTIVITY_KIND_SYSTEM, "code": kind,
                        "display": ACTIVITY_KINDS[kind]}],
            "text": PART_DEFAULT_KEYWORD[part],
        },
        "status": "in-progress",
        "performer": [{"reference": f"Patient/{patient_id}"}],
        "description": text,
    }
    return activity


def add_activity(careplan: Resource, activity: Resource) -> Resource:
    plan = dict(careplan)
    plan["activity"] = [*(plan.get("activity") or []), activity]
    return plan


def _patient_authored(element: Mapping[str, Any]) -> bool:
    return any(
        ext.get("url") == EXT_PATIENT_AUTHORED and ext.get("valueBoolean") is True
        for ext in element.get("extension") or ()
    )


def withdraw_activity(careplan: Resource, activity_id: str) -> Resource:
    """The CarePlan without the patient's own activity ``activity_id``."""
    activities = list(careplan.get("activity") or [])
    for index, activity in enumerate(activities):
        if activity.get("id") == activity_id:
            if not _patient_authored(activity):
                raise Forbidden(f"This activity was written by care. {CARE_REFUSAL}",
                                (f"CarePlan.activity[{index}]",))
            plan = dict(careplan)
            del activities[index]
            if activities:
                plan["activity"] = activities
            else:
                plan.pop("activity", None)
            return plan
    raise NotFound(f"CarePlan/{careplan.get('id')} has no activity {activity_id!r}.")


def withdraw_goal(goal: Resource, patient_id: str) -> Resource:
    """The patient's own goal, ``cancelled``; a goal care set is refused."""
    expressed = goal.get("expressedBy") or {}
    if expressed.get("reference") != f"Patient/{patient_id}":
        raise Forbidden(f"This goal was set by care. {CARE_REFUSAL}", ("Goal.expressedBy",))
    return {**goal, "lifecycleStatus": "cancelled"}


def unlink_goal(careplan: Resource, goal_reference: str) -> Resource:
    plan = dict(careplan)
    goals = [g for g in plan.get("goal") or [] if g.get("reference") != goal_reference]
    if goals:
        plan["goal"] = goals
    else:
        plan.pop("goal", None)
    return plan


def new_message(
    patient_id: str,
    text: str,
    actor: Actor,
    now: datetime,
    *,
    careplans: list[str],
    careteams: list[str],
    topic: str | None = None,
) -> Resource:
    """A note or question to the care team."""
    patient = {"reference": f"Patient/{patient_id}"}
    sender: Resource = (
        {"reference": actor.reference} if actor.kind == "relative" and actor.reference
        else dict(patient)
    )
    if actor.display and actor.kind == "relative":
        sender["display"] = actor.display
    message: Resource = {
        "resourceType": "Communication",
        "status": "completed",
        "category": [{"text": "Meddelande från patienten"}],
        "subject": patient,
        "sent": _stamp(now),
        "sender": sender,
        "payload": [{"contentString": text}],
    }
    if careplans:
        message["about"] = [{"reference": ref} for ref in careplans]
    if careteams:
        message["recipient"] = [{"reference": ref} for ref in careteams]
    if topic:
        message["topic"] = {"text": topic}
    return message


def _p(name: str, type_: Any, *paths: str, desc: str,
       targets: tuple[str, ...] = ()) -> SearchParam:
    return SearchParam(name, type_, paths, desc, targets)


COMMUNICATION: Final = ResourceType(
    "Communication",
    {
        p.name: p
        for p in (
            _p("patient", "reference", "subject", desc="Focus of message (Patient)",
               targets=("Patient",)),
            _p("subject", "reference", "subject", desc="Focus of message",
               targets=("Patient", "Group")),
            _p("sender", "reference", "sender", desc="Message sender",
               targets=("Patient", "Practitioner", "PractitionerRole", "RelatedPerson",
                        "Organization", "CareTeam")),
            _p("recipient", "reference", "recipient", desc="Message recipient",
               targets=("Patient", "Practitioner", "PractitionerRole", "RelatedPerson",
                        "Organization", "CareTeam", "Group")),
            _p("status", "token", "status", desc="preparation | in-progress | completed | ..."),
            _p("category", "token", "category", desc="Message category"),
            _p("sent", "date", "sent", desc="When sent"),
            _p("received", "date", "received", desc="When received"),
            _p("part-of", "reference", "partOf", desc="Part of this action"),
            _p("based-on", "reference", "basedOn", desc="Request fulfilled by this communication",
               targets=("CarePlan", "ServiceRequest")),
            _p("identifier", "token", "identifier", desc="Unique identifier"),
        )
    },
    includes=("patient", "subject", "sender", "recipient"),
)
"""Messages between the patient and their care team (registered on import of this module)."""

register(COMMUNICATION)
