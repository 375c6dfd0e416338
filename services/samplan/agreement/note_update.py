"""What a newer note does to the agreement it updates, and how its warnings reach the caller.

Pure: no SQL, no HTTP. :mod:`samplan.agreement.notes` builds the new note's
transaction Bundle (the CarePlan and CareTeam as ``PUT`` to the agreement's
ids) and, for an agreement that already exists, hands it here with the
agreement's stored resources (the CarePlan, its Goals, the Appointments based
on it). :func:`apply_update` returns the Bundle to post instead:

======================================  ============================================================
what the agreement had                  what the newer note does to it
======================================  ============================================================
a booked time (``Appointment`` from a   the note still lists it: kept (the conditional create finds
earlier note) still ahead               it); it does not: ``PUT`` with status ``cancelled`` and a
                                        ``cancelationReason`` (kept in history, never "next time")
a goal from the journal                 the note still has it: kept; it does not: ``PUT`` with
                                        ``lifecycleStatus`` ``cancelled``
a time or goal cancelled before that    ``PUT`` back to ``booked`` / ``active`` (the conditional
the note lists again                    create alone would find the cancelled one and stop)
the patient's own activities (the       carried over into the new CarePlan (a note rebuilds the
``patient-authored`` extension)         plan from its keywords and would otherwise drop them)
the patient's own goals                 still linked from ``CarePlan.goal``
activities from the journal, and a      refused with 422 when the note has no activity left,
note without a single one               unless its agreement section really is empty
======================================  ============================================================

Journal times and goals are the ones SamPlan derived from a note: they carry an
identifier under ``AGREEMENT_RESOURCE_SYSTEM``; anything else (a time booked
by a booking system, a goal the patient set) is left alone. What was
cancelled comes back as ``information`` issues beside the note's warnings;
:func:`attach_outcome` puts them all into the CarePlan's
``entry.response.outcome`` of the answer.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from samplan.agreement.codes import AGREEMENT_RESOURCE_SYSTEM, EXT_PATIENT_AUTHORED
from samplan.agreement.model import Agreement
from samplan.fhir.errors import Issue, Unprocessable, operation_outcome

__all__ = ["UPCOMING_STATUSES", "apply_update", "attach_outcome"]

Resource = dict[str, Any]

UPCOMING_STATUSES: Final = frozenset({"proposed", "pending", "booked", "waitlist"})
"""Appointment statuses of a time still to come, which a newer note may cancel."""

_ENDED_GOALS: Final = frozenset({"cancelled", "completed", "entered-in-error", "rejected"})
_CANCELLED_BECAUSE: Final = "Inte med i den senaste journalanteckningen"


def apply_update(
    bundle: Mapping[str, Any],
    current: Iterable[Mapping[str, Any]],
    agreement: Agreement,
    *,
    now: datetime,
) -> tuple[dict[str, Any], list[Issue]]:
    """The Bundle that makes the agreement what the newer note says, and what it cancelled.

    ``bundle`` is the note's transaction (CarePlan ``PUT`` to the existing id);
    ``current`` the agreement's stored resources; ``now`` decides which times
    are still ahead (a time already passed is history, not cancelled).
    Raises :class:`Unprocessable` (422) when the note would remove every
    activity of the agreement without saying so with an empty section.
    """
    out: dict[str, Any] = copy.deepcopy(dict(bundle))
    entries: list[dict[str, Any]] = out["entry"]
    plan_entry = _the(entries, "CarePlan")
    plan = plan_entry["resource"]
    stored = [dict(resource) for resource in current]
    old_plan = next(
        (r for r in stored if _is({"resource": r}, "CarePlan") and r.get("id") == plan.get("id")),
        None,
    )
    if old_plan is None:
        return out, []
    _refuse_emptying(old_plan, plan, agreement)
    _carry_patient_activities(old_plan, plan)
    notes: list[Issue] = []
    plan_ref = f"CarePlan/{plan['id']}"
    goals = {f"Goal/{r.get('id')}": r for r in stored if r.get("resourceType") == "Goal"}
    linked_goals = [goals[ref] for ref in _refs(old_plan.get("goal")) if ref in goals]
    notes += _goals(entries, plan, linked_goals)
    appointments = [
        r for r in stored
        if r.get("resourceType") == "Appointment" and plan_ref in _refs(r.get("basedOn"))
    ]  # fmt: skip
    notes += _appointments(entries, appointments, now)
    return out, notes


def attach_outcome(
    bundle: Mapping[str, Any], response_entries: Sequence[dict[str, Any]], issues: Sequence[Issue]
) -> None:
    """Put ``issues`` as an OperationOutcome into the CarePlan's ``entry.response.outcome``.

    ``response_entries`` answer ``bundle``'s entries in the same order (a
    transaction-response). Without issues nothing changes.
    """
    if not issues:
        return
    for index, entry in enumerate(bundle.get("entry") or ()):
        if (entry.get("resource") or {}).get("resourceType") == "CarePlan":
            response = response_entries[index].setdefault("response", {})
            response["outcome"] = operation_outcome(list(issues))
            return


# -- the rules ----------------------------------------------------------------------------


def _refuse_emptying(
    old_plan: Mapping[str, Any], plan: Mapping[str, Any], agreement: Agreement
) -> None:
    journal = [a for a in old_plan.get("activity") or () if not _patient_authored(a)]
    if not journal or plan.get("activity"):
        return
    if not agreement.items and not agreement.section_text:
        return  # the section really is empty: the note says the agreement has nothing left
    raise Unprocessable(
        f"the note's '{agreement.section_keyword}' section has no activity, but the agreement "
        f"{old_plan.get('resourceType')}/{old_plan.get('id')} has {len(journal)}: importing it "
        "would remove them all. Sign the note with the agreement's activities, or with an "
        f"empty '{agreement.section_keyword}' section to end them.",
        (agreement.section_keyword,),
    )


def _carry_patient_activities(old_plan: Mapping[str, Any], plan: dict[str, Any]) -> None:
    """The patient's own activities stay; one the note repeats word for word is kept once."""
    own = [a for a in old_plan.get("activity") or () if _patient_authored(a)]
    if not own:
        return
    activities: list[dict[str, Any]] = list(plan.get("activity") or [])
    for activity in own:
        same = next((a for a in activities if _patient_authored(a) and _same_words(a, activity)),
                    None)  # fmt: skip
        if same is not None:
            activities.remove(same)  # the stored one keeps its id (the patient may withdraw it)
        activities.append(copy.deepcopy(dict(activity)))
    plan["activity"] = activities


def _goals(
    entries: list[dict[str, Any]], plan: dict[str, Any], linked: list[Resource]
) -> list[Issue]:
    notes: list[Issue] = []
    new = {
        _derived(e["resource"]): e for e in entries if _is(e, "Goal") and _derived(e["resource"])
    }
    references: list[dict[str, Any]] = list(plan.get("goal") or [])
    for goal in linked:
        key = _derived(goal)
        if key is None or _expressed_by_patient(goal):
            # The patient's own goal: linked still, and not set a second time by the note.
            twin = _twin_goal(entries, goal)
            if twin is not None:
                entries.remove(twin)
                references = [r for r in references if r.get("reference") != twin["fullUrl"]]
            if goal.get("lifecycleStatus") not in _ENDED_GOALS:
                references.append({"reference": f"Goal/{goal['id']}"})
            continue
        if key in new:
            if goal.get("lifecycleStatus") in _ENDED_GOALS:
                _put(new[key], goal)  # listed again: back in force
            continue
        if goal.get("lifecycleStatus") not in _ENDED_GOALS:
            entries.append(_replaced(goal, lifecycleStatus="cancelled"))
            text = (goal.get("description") or {}).get("text", "")
            notes.append(_information(f"Goal/{goal['id']} ('{text}') is cancelled: the new note "
                                      "no longer has it", "Goal"))
    if references:
        plan["goal"] = references
    return notes


def _appointments(
    entries: list[dict[str, Any]], stored: list[Resource], now: datetime
) -> list[Issue]:
    notes: list[Issue] = []
    new = {
        _derived(e["resource"]): e for e in entries
        if _is(e, "Appointment") and _derived(e["resource"])
    }  # fmt: skip
    for appointment in stored:
        key = _derived(appointment)
        if key is None:
            continue  # booked by someone else, not from a note: not the note's to cancel
        if key in new:
            if appointment.get("status") == "cancelled":
                _put(new[key], appointment)  # listed again: booked again
            continue
        start = _moment(appointment.get("start"))
        if appointment.get("status") not in UPCOMING_STATUSES or start is None or start < now:
            continue  # already cancelled, or history
        entries.append(_replaced(
            appointment, status="cancelled", cancelationReason={"text": _CANCELLED_BECAUSE},
        ))  # fmt: skip
        notes.append(_information(
            f"Appointment/{appointment['id']} ({appointment.get('start')}, "
            f"'{appointment.get('description', '')}') is cancelled: the new note no longer "
            "lists it", "Appointment",
        ))  # fmt: skip
    return notes


# -- small helpers ------------------------------------------------------------------------


def _the(entries: list[dict[str, Any]], resource_type: str) -> dict[str, Any]:
    return next(e for e in entries if _is(e, resource_type))


def _is(entry: Mapping[str, Any], resource_type: str) -> bool:
    return (entry.get("resource") or {}).get("resourceType") == resource_type


def _refs(references: Any) -> list[str]:
    return [str(r.get("reference")) for r in references or () if isinstance(r, Mapping)]


def _derived(resource: Mapping[str, Any]) -> str | None:
    """The identifier SamPlan derived for a resource of a note, if it has one."""
    for identifier in resource.get("identifier") or ():
        if identifier.get("system") == AGREEMENT_RESOURCE_SYSTEM and identifier.get("value"):
            return str(identifier["value"])
    return None


def _patient_authored(element: Mapping[str, Any]) -> bool:
    return any(
        ext.get("url") == EXT_PATIENT_AUTHORED and ext.get("valueBoolean") is True
        for ext in element.get("extension") or ()
    )


def _expressed_by_patient(goal: Mapping[str, Any]) -> bool:
    return _patient_authored(goal) or str(
        (goal.get("expressedBy") or {}).get("reference", "")
    ).startswith(("Patient/", "urn:uuid:"))


def _same_words(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    def words(activity: Mapping[str, Any]) -> tuple[Any, ...]:
        detail = activity.get("detail") or {}
        codes = [c.get("code") for c in (detail.get("code") or {}).get("coding") or ()]
        return tuple(codes), detail.get("description")

    return words(a) == words(b)


def _twin_goal(entries: list[dict[str, Any]], goal: Mapping[str, Any]) -> dict[str, Any] | None:
    """A goal the note sets that is the patient's own, stored goal again (same words)."""
    text = (goal.get("description") or {}).get("text")
    for entry in entries:
        resource = entry.get("resource") or {}
        if (
            _is(entry, "Goal")
            and resource.get("expressedBy")
            and (resource.get("description") or {}).get("text") == text
        ):
            return entry
    return None


def _put(entry: dict[str, Any], stored: Mapping[str, Any]) -> None:
    """Turn a conditional create into a ``PUT`` of the stored resource it would have found."""
    resource_type = str(stored["resourceType"])
    entry["resource"] = {"resourceType": resource_type, "id": stored["id"]} | {
        key: value for key, value in entry["resource"].items() if key not in ("resourceType", "id")
    }
    entry["request"] = {"method": "PUT", "url": f"{resource_type}/{stored['id']}"}


def _replaced(stored: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
    """A ``PUT`` entry of ``stored`` with ``changes``; the server sets the version and time."""
    resource = copy.deepcopy(dict(stored))
    meta = {k: v for k, v in (resource.pop("meta", None) or {}).items()
            if k not in ("versionId", "lastUpdated")}  # fmt: skip
    if meta:
        resource["meta"] = meta
    resource.update(changes)
    url = f"{resource['resourceType']}/{resource['id']}"
    return {"resource": resource, "request": {"method": "PUT", "url": url}}


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _information(diagnostics: str, where: str) -> Issue:
    return Issue(code="informational", diagnostics=diagnostics, expression=(where,),
                 severity="information")
