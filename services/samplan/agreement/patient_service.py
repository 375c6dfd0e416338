"""The patient's view and contributions, in terms of the FHIR service (no SQL, no HTTP).

Everything goes through the ``reader`` the caller passes: the security layer's
:class:`~samplan.security.gate.Access` for the request, so a patient, a relative
or a staff member sees only what their reach allows (and every read is in the
access log). What is read:

1. the Patient (404 when it does not exist, or is out of reach);
2. the patient's active CarePlans, with ``_include`` of their CareTeams, Goals
   and authors and ``_revinclude`` of the Appointments based on them;
3. the people and places the CareTeams name (Practitioner, PractitionerRole,
   Organization), and the PractitionerRoles of those Practitioners (phone,
   opening hours);
4. the patient's active Goals, upcoming Appointments and latest messages.

That is a read and eight searches (:meth:`PatientAgreements.searched_record`);
they are answered from one statement (:mod:`samplan.agreement.patient_gather`)
whenever that gives exactly what they would give, with the reader's own access
rules and one access-log commit (:mod:`samplan.agreement.patient_access`). The
document and its view are made once per set of resources as the reader sees them
(:mod:`samplan.agreement.patient_cache`): issue 7, ~12 ms of CPU per document
before, well under 1 ms now.

Contributions (:mod:`samplan.agreement.coauthoring`) are written through the
reader too, in one transaction each (``Access.run`` with a
:class:`~samplan.security.gate.Contribution`): the gate checks the write scopes
for what is written, that it is about the patient in reach, and logs it; which
agreement to add to is found with the reader's own searches (a plan hidden from
the patient is no plan to add to, and a hidden item looks exactly like a missing
one). The :data:`~samplan.agreement.coauthoring.ContributionCheck` says who may
contribute and what; every write passes the usual checks (R4, profiles) and
hooks (subscriptions).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from samplan.agreement import coauthoring
from samplan.agreement.coauthoring import Actor, ContributionCheck
from samplan.agreement.coauthoring import Contribution as Contribution_
from samplan.agreement.codes import AGREEMENT_CATEGORY
from samplan.agreement.patient_cache import DOCUMENTS, Made
from samplan.agreement.patient_document import (
    DocumentParts,
    SerializedParts,
    assemble,
    document_parts,
)
from samplan.agreement.patient_gather import (
    DIRECTORY_TYPES,
    GOAL_STATUSES,
    MAX_COUNT,
    MESSAGE_COUNT,
    PLAN_INCLUDES,
    ROLE_INCLUDES,
    VISIT_COUNT,
    Gathered,
    NotGathered,
    gathered_record,
    ids_of,
    resolve_directory,
    search_order,
    visits_since,
)
from samplan.agreement.patient_view import (
    PatientRecord,
    PatientView,
    build_view,
    is_agreement,
)
from samplan.fhir.errors import NotFound, Unprocessable
from samplan.fhir.resource import validate_resource
from samplan.fhir.stored import StoredResource
from samplan.security.gate import Access, Contribution, GuardedTx
from samplan.security.policy import Operation

__all__ = ["PatientAgreements"]

Resource = dict[str, Any]
_MAX = str(MAX_COUNT)


def _body(stored: StoredResource) -> Resource:
    data: Resource = orjson.loads(stored.content or b"{}")
    return data


class SearchedDirectory:
    """The directory's follow-up searches, made through the reader (each logged by it)."""

    def __init__(self, reader: Access) -> None:
        self.reader = reader

    async def _page(self, resource_type: str, params: list[tuple[str, str]],
                    includes: tuple[str, ...]) -> list[Resource]:
        params += [("_include", f"{resource_type}:{param}") for param in includes]
        _, page = await self.reader.search(resource_type, params)
        matches = [_body(r) for r in page.matches]
        ordered = search_order(matches, page.includes, includes, self.reader.gate.base_url)
        return [*matches, *(_body(r) for r in ordered)]

    async def by_id(self, resource_type: str, ids: list[str]) -> list[Resource]:
        includes = ROLE_INCLUDES if resource_type == "PractitionerRole" else ()
        return await self._page(resource_type, [("_id", ",".join(ids)), ("_count", _MAX)],
                                includes)

    async def roles_of(self, practitioners: list[str]) -> list[Resource]:
        return await self._page("PractitionerRole", [
            ("practitioner", ",".join(f"Practitioner/{p}" for p in practitioners)),
            ("_count", _MAX),
        ], ("organization",))


class PatientAgreements:
    """The patient's agreement: gathered for reading, and the patient's own additions."""

    def __init__(self, check: ContributionCheck | None = None) -> None:
        self.check: ContributionCheck = check or coauthoring.default_check

    # -- reading -----------------------------------------------------------------------------

    async def record(self, reader: Access, patient_id: str, *, now: datetime) -> PatientRecord:
        """Everything the view draws on, as the reader may see it (``NOPATIENT`` still in).

        In one statement when it can be said exactly (:mod:`samplan.agreement.patient_gather`),
        else by the read and the searches below.
        """
        gathered = await gathered_record(reader, patient_id, now=now)
        if gathered is not None:
            return gathered
        return await self.searched_record(reader, patient_id, now=now)

    async def searched_record(
        self, reader: Access, patient_id: str, *, now: datetime
    ) -> PatientRecord:
        """:meth:`record` by the Patient's read and the searches (each logged by the reader)."""
        patient = _body(await reader.read("Patient", patient_id))
        _, page = await reader.search("CarePlan", [
            ("patient", patient_id),
            ("status", "active"),
            *(("_include", f"CarePlan:{param}") for param in PLAN_INCLUDES),
            ("_revinclude", "Appointment:based-on"),
            ("_sort", "_lastUpdated"),
            ("_count", _MAX),
        ])
        careplans = [_body(m) for m in page.matches]
        base_url = reader.gate.base_url
        included = [_body(i) for i in search_order(careplans, page.includes, PLAN_INCLUDES,
                                                   base_url)]
        careteams = [r for r in included if r.get("resourceType") == "CareTeam"]
        goals = {r["id"]: r for r in included if r.get("resourceType") == "Goal"}
        appointments = {r["id"]: r for r in included if r.get("resourceType") == "Appointment"}
        directory = {f"{r['resourceType']}/{r['id']}": r for r in included
                     if r.get("resourceType") in DIRECTORY_TYPES}

        await resolve_directory(SearchedDirectory(reader), careteams, careplans, directory)

        _, goal_page = await reader.search("Goal", [
            ("patient", patient_id),
            ("lifecycle-status", ",".join(GOAL_STATUSES)),
            ("_count", _MAX),
        ])
        goals |= {m.resource_id: _body(m) for m in goal_page.matches}
        _, visit_page = await reader.search("Appointment", [
            ("patient", patient_id),
            ("date", f"ge{visits_since(now)}"),
            ("_sort", "date"),
            ("_count", str(VISIT_COUNT)),
        ])
        appointments |= {m.resource_id: _body(m) for m in visit_page.matches}
        _, message_page = await reader.search("Communication", [
            ("patient", patient_id), ("_sort", "-sent"), ("_count", str(MESSAGE_COUNT)),
        ])
        messages = [_body(m) for m in message_page.matches]
        return PatientRecord(
            patient=patient,
            careplans=tuple(careplans),
            careteams=tuple(careteams),
            goals=tuple(goals.values()),
            appointments=tuple(appointments.values()),
            directory=tuple(directory.values()),
            messages=tuple(messages),
        )

    async def view(
        self, reader: Access, patient_id: str, *, now: datetime
    ) -> tuple[PatientRecord, PatientView]:
        """The record without ``NOPATIENT`` content, and the patient's view of it."""
        record = (await self.record(reader, patient_id, now=now)).for_patient()
        return record, build_view(record, now=now)

    async def page_view(self, reader: Access, patient_id: str, *, now: datetime
                        ) -> PatientView:
        """The patient's view, as :meth:`view` makes it (made once per set of resources)."""
        view, _ = await self._made(reader, patient_id, now=now)
        return view

    async def document(
        self, reader: Access, patient_id: str, *, now: datetime
    ) -> tuple[Resource, PatientView]:
        """The FHIR document Bundle of the patient's agreement, and the view it was made from.

        The Bundle is ready for ``orjson`` (its parts may be ``orjson.Fragment``: JSON made
        before, see :mod:`samplan.agreement.patient_cache`).
        """
        view, parts = await self._made(reader, patient_id, now=now)
        return assemble(parts, base_url=_links(reader), now=now), view

    async def _made(
        self, reader: Access, patient_id: str, *, now: datetime
    ) -> tuple[PatientView, DocumentParts | SerializedParts]:
        """The view and the document parts: made before from the very same resources as
        the reader sees them now, or made now (and kept)."""
        gathered = await Gathered.of(reader, patient_id, now=now)
        if gathered is not None:
            key = gathered.key(_links(reader))  # the parts carry its fullUrls
            made = DOCUMENTS.get(key, now)
            if made is None:
                try:
                    record = await gathered.record()
                except NotGathered:
                    pass
                else:
                    clean = record.for_patient()
                    view = build_view(clean, now=now)
                    parts = document_parts(clean, view, base_url=_links(reader))
                    made = Made.at(now, view, parts, gathered.access.by_patient())
                    DOCUMENTS.put(key, made)
            if made is not None:
                await gathered.log(made.disclosed)
                return made.view, made.parts
        record = (await self.searched_record(reader, patient_id, now=now)).for_patient()
        view = build_view(record, now=now)
        return view, document_parts(record, view, base_url=_links(reader))

    # -- contributing ------------------------------------------------------------------------

    async def _agreement(
        self, tx: GuardedTx, patient_id: str, careplan_id: str | None
    ) -> StoredResource | None:
        """The agreement to add to: the one named, else the patient's latest active one, as
        the contributor may see them (a plan hidden from them is no plan of theirs)."""
        if careplan_id is not None:
            missing = NotFound(f"CarePlan/{careplan_id} does not exist.")
            stored = await tx.current("CarePlan", careplan_id)
            if stored is None:
                raise missing
            body = _body(stored)
            if (body.get("subject") or {}).get("reference") != f"Patient/{patient_id}":
                raise missing
            if not is_agreement(body):
                raise Unprocessable(f"CarePlan/{careplan_id} is not a documented agreement.",
                                    ("careplan",))
            return stored
        matches, _ = await tx.search("CarePlan", [
            ("patient", patient_id),
            ("status", "active"),
            ("category", f"{AGREEMENT_CATEGORY['system']}|{AGREEMENT_CATEGORY['code']}"),
            ("_sort", "-_lastUpdated"),
            ("_count", "1"),
        ])
        if not matches:
            return None
        return await tx.current("CarePlan", matches[0].resource_id)  # locked for the update

    async def _save_plan(
        self, tx: GuardedTx, plan: Resource, stored: StoredResource
    ) -> StoredResource:
        checked = validate_resource(plan, "CarePlan")
        result = await tx.update(checked, stored.resource_id, if_match=stored.etag)
        return result.stored

    async def _allow(self, reader: Access, actor: Actor, contribution: Contribution_) -> None:
        """The patient must be in the reader's reach (a relative's grant is checked there),
        and the contribution check must let the actor through."""
        await reader.read("Patient", contribution.patient_id)
        await self.check(actor, contribution)

    async def add_goal(
        self, reader: Access, actor: Actor, patient_id: str, text: str, *, now: datetime,
        careplan_id: str | None = None,
    ) -> StoredResource:
        """The patient's own goal, linked from their agreement when they have one."""
        words = coauthoring.clean_text(text)
        await self._allow(reader, actor, Contribution_("add-goal", patient_id, words))
        goal = validate_resource(coauthoring.new_goal(patient_id, words, actor, now), "Goal")

        async def unit(tx: GuardedTx) -> StoredResource:
            stored = await self._agreement(tx, patient_id, careplan_id)
            created = (await tx.create(goal)).stored
            if stored is not None:
                plan = coauthoring.link_goal(_body(stored), f"Goal/{created.resource_id}")
                await self._save_plan(tx, plan, stored)
            return created

        return await reader.run(unit, contribution=_writes(patient_id, ("Goal", "create"),
                                                           "CarePlan"))

    async def add_activity(
        self, reader: Access, actor: Actor, patient_id: str, text: str, *, now: datetime,
        kind: str = "patient-responsibility", careplan_id: str | None = None,
    ) -> StoredResource:
        """The patient's own activity, added to their agreement (the new CarePlan version)."""
        words = coauthoring.clean_text(text)
        await self._allow(reader, actor, Contribution_("add-activity", patient_id, words))
        activity = coauthoring.new_activity(patient_id, words, actor, now, kind)

        async def unit(tx: GuardedTx) -> StoredResource:
            stored = await self._agreement(tx, patient_id, careplan_id)
            if stored is None:
                raise Unprocessable(
                    "You have no documented agreement yet to add an activity to; "
                    "add a goal or send a message to your care team instead.",
                    ("careplan",),
                )
            plan = coauthoring.add_activity(_body(stored), activity)
            return await self._save_plan(tx, plan, stored)

        return await reader.run(unit, contribution=_writes(patient_id, ("CarePlan", "update")))

    async def add_message(
        self, reader: Access, actor: Actor, patient_id: str, text: str, *, now: datetime,
        topic: str | None = None,
    ) -> StoredResource:
        """A note or question to the patient's care teams."""
        words = coauthoring.clean_text(text)
        subject = coauthoring.clean_text(topic, "topic") if topic else None
        await self._allow(reader, actor, Contribution_("add-message", patient_id, words))

        async def unit(tx: GuardedTx) -> StoredResource:
            matches, _ = await tx.search("CarePlan", [
                ("patient", patient_id), ("status", "active"),
                ("category", f"{AGREEMENT_CATEGORY['system']}|{AGREEMENT_CATEGORY['code']}"),
                ("_count", "100"),
            ])
            plans = [_body(m) for m in matches]
            teams = [f"CareTeam/{t}" for plan in plans
                     for t in ids_of(plan.get("careTeam") or (), "CareTeam")]
            message = coauthoring.new_message(
                patient_id, words, actor, now,
                careplans=[f"CarePlan/{p['id']}" for p in plans],
                careteams=list(dict.fromkeys(teams)), topic=subject,
            )
            checked = validate_resource(message, "Communication")
            return (await tx.create(checked)).stored

        return await reader.run(unit, contribution=_writes(patient_id,
                                                           ("Communication", "create")))

    async def withdraw(
        self, reader: Access, actor: Actor, patient_id: str, target: str
    ) -> StoredResource:
        """Take back the patient's own goal (``Goal/7``) or activity (``CarePlan/3#pa-1``)."""
        await self._allow(reader, actor, Contribution_("withdraw", patient_id, target=target))
        kind, _, rest = target.partition("/")
        if kind == "CarePlan" and "#" in rest:
            careplan_id, _, activity_id = rest.partition("#")

            async def unit(tx: GuardedTx) -> StoredResource:
                stored = await self._agreement(tx, patient_id, careplan_id)
                assert stored is not None
                plan = coauthoring.withdraw_activity(_body(stored), activity_id)
                return await self._save_plan(tx, plan, stored)

            return await reader.run(unit, contribution=_writes(patient_id,
                                                               ("CarePlan", "update")))
        if kind == "Goal" and rest:

            async def goal_unit(tx: GuardedTx) -> StoredResource:
                missing = NotFound(f"Goal/{rest} does not exist.")
                stored = await tx.current("Goal", rest)
                if stored is None:
                    raise missing
                body = _body(stored)
                if (body.get("subject") or {}).get("reference") != f"Patient/{patient_id}":
                    raise missing
                goal = validate_resource(coauthoring.withdraw_goal(body, patient_id), "Goal")
                result = await tx.update(goal, rest, if_match=stored.etag)
                matches, _ = await tx.search("CarePlan", [("goal", f"Goal/{rest}"),
                                                          ("_count", "100")])
                for found in matches:
                    plan_stored = await tx.current("CarePlan", found.resource_id)
                    if plan_stored is None:
                        continue
                    plan = coauthoring.unlink_goal(_body(plan_stored), f"Goal/{rest}")
                    await self._save_plan(tx, plan, plan_stored)
                return result.stored

            return await reader.run(goal_unit, contribution=_writes(
                patient_id, ("Goal", "update"), "CarePlan"))
        raise Unprocessable(
            f"Cannot withdraw {target!r}: name your own goal (Goal/id) or activity "
            "(CarePlan/id#activity-id).", ("item",)
        )


def _writes(patient_id: str, needs: tuple[str, Operation], *more: str) -> Contribution:
    """What a contribution writes, for the gate: ``needs`` (the type and interaction whose
    scope it takes), perhaps ``more`` types, about this patient."""
    return Contribution(patient_id, frozenset([needs[0], *more]), needs)


def _links(reader: Access) -> str:
    """The base of the document's fullUrls: the request's (stored references are
    read against the configured base, ``reader.gate.base_url``, as they were indexed)."""
    return reader.base_url or reader.gate.base_url
