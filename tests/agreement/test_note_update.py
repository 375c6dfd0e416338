"""What a newer note does to the agreement it updates (pure rules of agreement/note_update.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from samplan.agreement.fhir_build import build_transaction
from samplan.agreement.note_update import apply_update, attach_outcome
from samplan.fhir.errors import Issue, Unprocessable
from samplan.mapping.importer import parse_note

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HEADER = ("Patient: 19450101-1235 Greta Holm\nVårdenhet: HC (SE2321000073-2001)\n"
          "Signerad: 2026-11-20 10:15 av Anna Berg\n\n")
FIRST = ("Överenskommelse\nPatienten ansvarar för\nVäga mig.\nTid för uppföljning\n"
         "2027-01-12 09:30, HC\n2027-02-12 10:00, HC\n2026-11-25 09:00, HC\nMål\nGå ut.\n")


def agreement_of(body: str) -> Any:
    return parse_note((HEADER + body).encode(), "text/plain").agreement


def stored_from(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources as the store keeps them: ids, and references as ``Type/id``."""
    ids = {e["fullUrl"]: f"{e['resource']['resourceType']}/{n}"
           for n, e in enumerate(bundle["entry"])}
    text = json.dumps([e["resource"] for e in bundle["entry"]])
    for urn, ref in ids.items():
        text = text.replace(urn, ref)
    resources: list[dict[str, Any]] = json.loads(text)
    for resource, ref in zip(resources, ids.values(), strict=True):
        resource["id"] = ref.split("/")[1]
    return resources


def update(body: str, current: list[dict[str, Any]]) -> tuple[dict[str, Any], list[Issue]]:
    plan = next(r for r in current if r["resourceType"] == "CarePlan")
    team = next(r for r in current if r["resourceType"] == "CareTeam")
    bundle = build_transaction(agreement_of(body), careplan_id=plan["id"], careteam_id=team["id"])
    return apply_update(bundle, current, agreement_of(body), now=NOW)


def puts(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"]
            if e["request"]["method"] == "PUT" and e["request"]["url"].startswith(resource_type)]


@pytest.fixture
def current() -> list[dict[str, Any]]:
    return stored_from(build_transaction(agreement_of(FIRST)))


class TestTimesAndGoals:
    def test_a_time_no_longer_listed_is_cancelled_a_past_one_is_left(
        self, current: list[dict[str, Any]]
    ) -> None:
        second = FIRST.replace("2027-01-12 09:30, HC\n", "").replace("2026-11-25 09:00, HC\n", "")
        bundle, told = update(second, current)
        (cancelled,) = puts(bundle, "Appointment")
        assert cancelled["start"] == "2027-01-12T09:30:00+01:00"
        assert cancelled["status"] == "cancelled"
        assert cancelled["cancelationReason"] == {
            "text": "Inte med i den senaste journalanteckningen"}
        assert "versionId" not in cancelled.get("meta", {})
        assert [(i.severity, i.expression) for i in told] == [("information", ("Appointment",))]

    def test_a_goal_no_longer_written_is_cancelled(self, current: list[dict[str, Any]]) -> None:
        bundle, told = update(FIRST.replace("Mål\nGå ut.\n", ""), current)
        (goal,) = puts(bundle, "Goal")
        assert (goal["description"]["text"], goal["lifecycleStatus"]) == ("Gå ut.", "cancelled")
        assert "Goal/" + goal["id"] not in json.dumps(puts(bundle, "CarePlan")[0].get("goal"))
        assert told[0].diagnostics == (
            f"Goal/{goal['id']} ('Gå ut.') is cancelled: the new note no longer has it")

    def test_what_is_listed_again_is_booked_and_in_force_again(
        self, current: list[dict[str, Any]]
    ) -> None:
        for resource in current:
            if resource["resourceType"] == "Appointment":
                resource["status"] = "cancelled"
            if resource["resourceType"] == "Goal":
                resource["lifecycleStatus"] = "cancelled"
        bundle, told = update(FIRST, current)
        assert told == []
        assert sorted(a["status"] for a in puts(bundle, "Appointment")) == ["booked"] * 3
        assert [g["lifecycleStatus"] for g in puts(bundle, "Goal")] == ["active"]

    def test_a_time_booked_by_another_system_is_not_the_notes_to_cancel(
        self, current: list[dict[str, Any]]
    ) -> None:
        plan = next(r for r in current if r["resourceType"] == "CarePlan")
        current.append({"resourceType": "Appointment", "id": "other", "status": "booked",
                        "start": "2027-05-01T10:00:00+02:00",
                        "basedOn": [{"reference": f"CarePlan/{plan['id']}"}]})
        bundle, _ = update(FIRST, current)
        assert puts(bundle, "Appointment") == []


class TestThePatientsOwn:
    def test_their_activity_is_carried_over_once_and_keeps_its_id(
        self, current: list[dict[str, Any]]
    ) -> None:
        plan = next(r for r in current if r["resourceType"] == "CarePlan")
        own = {"id": "pa-1", "extension": [{"url": "https://samplan.se/fhir/StructureDefinition/"
                                                   "patient-authored", "valueBoolean": True}],
               "detail": {"code": {"coding": [{"system": "https://samplan.se/fhir/CodeSystem/"
                                                         "agreement-activity-kind",
                                               "code": "patient-responsibility"}],
                                   "text": "Patienten ansvarar för"},
                          "status": "in-progress", "description": "Jag går ut."}}
        plan["activity"].append(own)
        again = FIRST + "Patienten ansvarar för (patientens tillägg)\nJag går ut.\n"
        bundle, _ = update(again, current)
        activities = puts(bundle, "CarePlan")[0]["activity"]
        assert [a["detail"]["description"] for a in activities].count("Jag går ut.") == 1
        assert activities[-1] == own

    def test_their_goal_stays_linked_and_is_not_set_twice(
        self, current: list[dict[str, Any]]
    ) -> None:
        plan = next(r for r in current if r["resourceType"] == "CarePlan")
        current.append({"resourceType": "Goal", "id": "own", "lifecycleStatus": "active",
                        "description": {"text": "Kunna handla."},
                        "subject": plan["subject"], "expressedBy": {"reference": "Patient/0"}})
        plan["goal"].append({"reference": "Goal/own"})
        bundle, _ = update(FIRST + "Mål (patientens tillägg)\nKunna handla.\n", current)
        careplan = puts(bundle, "CarePlan")[0]
        assert {"reference": "Goal/own"} in careplan["goal"]
        created = [e["resource"]["description"]["text"] for e in bundle["entry"]
                   if e["resource"]["resourceType"] == "Goal" and e["request"]["method"] == "POST"]
        assert created == ["Gå ut."]


class TestRemovingEverything:
    def test_a_note_that_would_remove_every_activity_is_refused(
        self, current: list[dict[str, Any]]
    ) -> None:
        with pytest.raises(Unprocessable) as refused:
            update("Överenskommelse\nGjort i samråd.\nMål\nGå ut.\n", current)
        assert refused.value.status == 422
        assert refused.value.expression == ("Överenskommelse",)

    def test_a_really_empty_section_is_not(self, current: list[dict[str, Any]]) -> None:
        bundle, _ = update("Överenskommelse\nBedömning\nStabil.\n", current)
        assert "activity" not in puts(bundle, "CarePlan")[0]

    def test_an_agreement_that_is_new_is_left_alone(self) -> None:
        bundle = build_transaction(agreement_of(FIRST))
        same, told = apply_update(bundle, [], agreement_of(FIRST), now=NOW)
        assert (same, told) == (bundle, [])


class TestAttachOutcome:
    def test_the_warnings_go_to_the_careplan_entry(self) -> None:
        bundle = build_transaction(agreement_of(FIRST))
        answer = [{"response": {"status": "201 Created"}} for _ in bundle["entry"]]
        warning = Issue(code="value", diagnostics="x", expression=("Överenskommelse",),
                        severity="warning")
        attach_outcome(bundle, answer, [warning])
        index = next(i for i, e in enumerate(bundle["entry"])
                     if e["resource"]["resourceType"] == "CarePlan")
        assert answer[index]["response"]["outcome"] == {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "warning", "code": "value", "diagnostics": "x",
                       "expression": ["Överenskommelse"]}],
        }
        assert sum("outcome" in a["response"] for a in answer) == 1
        attach_outcome(bundle, answer := [{"response": {}}], [])
        assert answer == [{"response": {}}]
