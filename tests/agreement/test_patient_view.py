"""The patient's view, pure: NOPATIENT filtering, the seven parts, the document, co-creation."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from samplan.agreement import coauthoring
from samplan.agreement.coauthoring import Actor, Contribution
from samplan.agreement.patient_document import build_document
from samplan.agreement.patient_view import (
    EXT_INLINE_SECURITY_LABEL,
    PatientRecord,
    build_view,
    long_datetime,
    phone_href,
)
from samplan.agreement.patient_view import (
    for_patient as strip_nopatient,
)
from samplan.fhir.errors import Forbidden, NotFound, Unprocessable

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
NOPATIENT = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "NOPATIENT"}
LABEL = [{"url": EXT_INLINE_SECURITY_LABEL, "valueCoding": NOPATIENT}]
KIND = "https://samplan.se/fhir/CodeSystem/agreement-activity-kind"
KV = "urn:oid:1.2.752.129.5.1.69"
OWN = [{"url": "https://samplan.se/fhir/StructureDefinition/patient-authored",
        "valueBoolean": True}]


def activity(kind: str, text: str, **extra: Any) -> dict[str, Any]:
    return {**extra, "detail": {"code": {"coding": [{"system": KIND, "code": kind}]},
                                "status": "in-progress", "description": text}}


def make_record(**changes: Any) -> PatientRecord:
    patient = {"resourceType": "Patient", "id": "p1", "name": [{"text": "Greta Holm"}],
               "identifier": [{"system": "http://electronichealth.se/identifier/personnummer",
                               "value": "194501011235"}]}
    plan = {
        "resourceType": "CarePlan", "id": "cp1", "status": "active", "intent": "plan",
        "category": [{"coding": [{"system": "https://samplan.se/fhir/CodeSystem/"
                                            "careplan-category",
                                  "code": "dokumenterad-overenskommelse"}]}],
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2026-11-20", "end": "2027-05-20"},
        "created": "2026-11-20T10:15:00+01:00",
        "author": {"reference": "Practitioner/gp", "display": "Anna Berg"},
        "careTeam": [{"reference": "CareTeam/ct1"}],
        "goal": [{"reference": "Goal/g-care"}, {"reference": "Goal/g-own"}],
        "activity": [
            activity("patient-responsibility", "Väga mig varje morgon."),
            activity("on-deterioration", "Ringa sjuksköterskan, 0480-840 10."),
            activity("care-responsibility", "Läkaren ser över läkemedlen."),
            activity("next-step", "Spirometri i januari."),
            activity("coordinated-plan", "SIP finns."),
            activity("patient-responsibility", "Gå på kören.", id="pa-1", extension=OWN),
        ],
    }
    team = {
        "resourceType": "CareTeam", "id": "ct1", "status": "active",
        "subject": {"reference": "Patient/p1"},
        "managingOrganization": [{"reference": "Organization/hc", "display": "HC Kvarnholmen"}],
        "participant": [
            {"role": [{"coding": [{"system": KV, "code": "1"}], "text": "Fast vårdkontakt"}],
             "member": {"display": "Karin Ek"},
             "extension": [{"url": "https://samplan.se/fhir/StructureDefinition/note-text",
                            "valueString": "Karin Ek, distriktssköterska. Tel 0480-123 46"}]},
            {"role": [{"coding": [{"system": KV, "code": "2"}],
                       "text": "Fast läkarkontakt i primärvården"}],
             "member": {"reference": "Practitioner/gp", "display": "Anna Berg, distriktsläkare"}},
        ],
        "note": [{"extension": [{"url": "https://samplan.se/fhir/StructureDefinition/"
                                        "note-keyword",
                                 "valueString": "Patienten kan kontakta vården via"}],
                  "text": "Telefon 0480-123 40, 1177 e-tjänster"}],
    }
    directory = [
        {"resourceType": "Practitioner", "id": "gp", "name": [{"text": "Anna Berg"}]},
        {"resourceType": "PractitionerRole", "id": "gp-role", "active": True,
         "practitioner": {"reference": "Practitioner/gp"},
         "organization": {"reference": "Organization/hc"},
         "telecom": [{"system": "phone", "value": "0480-123 41"}],
         "availableTime": [{"daysOfWeek": ["mon", "tue", "wed", "thu", "fri"],
                            "availableStartTime": "08:00:00", "availableEndTime": "17:00:00"},
                           {"daysOfWeek": ["sat"], "allDay": True}]},
        {"resourceType": "Organization", "id": "hc", "name": "HC Kvarnholmen",
         "telecom": [{"system": "phone", "value": "0480-123 40"}]},
    ]
    goals = [
        {"resourceType": "Goal", "id": "g-care", "lifecycleStatus": "active",
         "description": {"text": "Stabil vikt."}, "subject": {"reference": "Patient/p1"}},
        {"resourceType": "Goal", "id": "g-own", "lifecycleStatus": "active",
         "description": {"text": "Gå till affären själv."},
         "subject": {"reference": "Patient/p1"}, "expressedBy": {"reference": "Patient/p1"}},
        {"resourceType": "Goal", "id": "g-done", "lifecycleStatus": "cancelled",
         "description": {"text": "Gammalt mål."}, "subject": {"reference": "Patient/p1"}},
    ]
    appointments = [
        {"resourceType": "Appointment", "id": f"a{i}", "status": status, "start": start,
         "description": f"Besök {i}",
         "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"},
                         {"actor": {"display": "Hälsocentralen"}, "status": "accepted"}]}
        for i, (status, start) in enumerate([
            ("booked", "2027-02-18T09:30:00+01:00"),
            ("booked", "2026-12-01T13:00:00+01:00"),
            ("cancelled", "2026-12-02T13:00:00+01:00"),
            ("booked", "2026-11-01T13:00:00+01:00"),
        ])
    ]
    sip = {"resourceType": "CarePlan", "id": "sip", "status": "active", "intent": "plan",
           "title": "SIP med kommunen",
           "category": [{"coding": [{"system": "https://fhir.inera.se/CodeSystem/"
                                               "typeofcareplan-cs", "code": "SIP"}]}],
           "subject": {"reference": "Patient/p1"}}
    record = PatientRecord(patient=patient, careplans=(plan, sip), careteams=(team,),
                           goals=tuple(goals), appointments=tuple(appointments),
                           directory=tuple(directory))
    for key, value in changes.items():
        record = PatientRecord(**{**{f: getattr(record, f) for f in record.__slots__},
                                  key: value})
    return record


class TestNopatient:
    def test_a_labelled_resource_is_withheld_whole(self) -> None:
        assert strip_nopatient({"resourceType": "Goal", "meta": {"security": [NOPATIENT]}}) is None

    def test_labelled_elements_and_references_to_withheld_resources_are_removed(self) -> None:
        plan = {
            "resourceType": "CarePlan", "id": "1",
            "goal": [{"reference": "Goal/secret"}, {"reference": "Goal/open"}],
            "activity": [{"extension": LABEL, "detail": {"description": "internt"}},
                         {"detail": {"description": "öppet"}}],
            "note": [{"extension": LABEL, "text": "internt"}],
            "author": {"reference": "Practitioner/secret"},
        }
        original = copy.deepcopy(plan)
        cleaned = strip_nopatient(plan, ["Goal/secret", "Practitioner/secret"])
        assert cleaned == {"resourceType": "CarePlan", "id": "1",
                           "goal": [{"reference": "Goal/open"}],
                           "activity": [{"detail": {"description": "öppet"}}]}
        assert plan == original  # the stored resource is not changed

    def test_the_record_for_the_patient_drops_withheld_goals_and_their_links(self) -> None:
        record = make_record()
        secret = {"resourceType": "Goal", "id": "g-care", "meta": {"security": [NOPATIENT]},
                  "lifecycleStatus": "active", "description": {"text": "Internt mål."}}
        record = make_record(goals=(secret, *record.goals[1:]))
        clean = record.for_patient()
        assert [g["id"] for g in clean.goals] == ["g-own", "g-done"]
        assert clean.agreements[0]["goal"] == [{"reference": "Goal/g-own"}]


class TestTheView:
    def test_activities_land_in_the_part_a_patient_looks_for(self) -> None:
        view = build_view(make_record().for_patient(), now=NOW)
        assert [t.text for t in view.i_do] == ["Väga mig varje morgon.", "Gå på kören."]
        assert [t.text for t in view.if_worse] == ["Ringa sjuksköterskan, 0480-840 10."]
        assert view.if_worse[0].links[0].href == "tel:+4648084010"
        assert [t.text for t in view.care_does] == ["Läkaren ser över läkemedlen."]
        assert [t.text for t in view.next_steps] == ["Spirometri i januari."]
        assert [t.text for t in view.plans] == ["SIP finns."]
        own = view.i_do[1]
        assert own.patient_authored
        assert own.withdraw == "CarePlan/cp1#pa-1"
        assert not view.i_do[0].patient_authored
        assert view.i_do[0].withdraw is None

    def test_the_header_has_name_number_validity_and_who_wrote_it(self) -> None:
        view = build_view(make_record().for_patient(), now=NOW)
        assert view.name == "Greta Holm"
        assert view.personnummer == "19450101-1235"
        assert view.printed == "23 november 2026"
        header = view.agreements[0]
        assert header.validity == "Gäller från 20 november 2026 till och med 20 maj 2027"
        assert not header.expired
        assert (header.author, header.unit, header.signed) == (
            "Anna Berg", "HC Kvarnholmen", "20 november 2026")
        later = build_view(make_record().for_patient(), now=datetime(2027, 6, 1, tzinfo=UTC))
        assert later.agreements[0].expired

    def test_contacts_are_resolved_with_phone_and_opening_hours(self) -> None:
        view = build_view(make_record().for_patient(), now=NOW)
        gp, nurse = view.contacts
        assert gp.role == "Din fasta läkarkontakt"
        assert gp.keyword == "Fast läkarkontakt i primärvården"
        assert gp.name == "Anna Berg"
        assert [link.href for link in gp.links] == ["tel:+4648012341"]
        assert gp.hours == ("måndag–fredag 08.00–17.00", "lördag hela dygnet")
        assert gp.organisation == "HC Kvarnholmen"
        assert [link.href for link in gp.organisation_links] == ["tel:+4648012340"]
        assert nurse.role == "Din fasta vårdkontakt"
        assert nurse.text == "Karin Ek, distriktssköterska. Tel 0480-123 46"
        assert [link.label for link in nurse.links] == ["0480-123 46"]
        assert [t.text for t in view.reach_care] == ["Telefon 0480-123 40, 1177 e-tjänster"]
        assert [(link.label, link.kind) for link in view.reach_care[0].links] == [
            ("0480-123 40", "phone"), ("1177 e-tjänster", "other")]

    def test_only_upcoming_booked_times_are_shown_the_next_first(self) -> None:
        view = build_view(make_record().for_patient(), now=NOW)
        assert [v.what for v in view.visits] == ["Besök 1", "Besök 0"]
        assert view.next_visit is not None
        assert view.next_visit.when == "tisdag 1 december 2026 kl. 13.00"
        assert view.next_visit.where == "Hälsocentralen"

    def test_the_patients_own_goals_come_first_and_ended_goals_are_left_out(self) -> None:
        view = build_view(make_record().for_patient(), now=NOW)
        assert [(g.text, g.patient_authored) for g in view.important] == [
            ("Gå till affären själv.", True), ("Stabil vikt.", False)]
        assert view.important[0].withdraw == "Goal/g-own"
        assert [(p.title, p.kind) for p in view.linked_plans] == [
            ("SIP med kommunen", "Samordnad individuell plan (SIP)")]

    @pytest.mark.parametrize(("number", "href"), [
        ("0480-123 46", "tel:+4648012346"),
        ("08-123 456 78", "tel:+46812345678"),
        ("070-123 45 67", "tel:+46701234567"),
        ("1177", "tel:1177"),
        ("112", "tel:112"),
        ("114 14", "tel:11414"),
    ])
    def test_phone_numbers_become_tap_to_call_links(self, number: str, href: str) -> None:
        assert phone_href(number) == href

    def test_times_are_told_in_swedish_local_time(self) -> None:
        assert long_datetime(datetime(2027, 1, 12, 8, 30, tzinfo=UTC)) == (
            "tisdag 12 januari 2027 kl. 09.30")
        assert long_datetime(datetime(2027, 6, 15, 7, 30, tzinfo=UTC)) == (
            "tisdag 15 juni 2027 kl. 09.30")


class TestTheDocument:
    def test_the_composition_comes_first_with_the_four_parts(self) -> None:
        record = make_record().for_patient()
        view = build_view(record, now=NOW)
        bundle = build_document(record, view, base_url="http://x/fhir", now=NOW,
                                document_id="d1")
        Bundle.model_validate(bundle)
        assert bundle["type"] == "document"
        assert bundle["identifier"] == {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:d1"}
        composition = bundle["entry"][0]["resource"]
        assert bundle["entry"][0]["fullUrl"].startswith("urn:uuid:")
        assert composition["event"] == [{"period": {"start": "2026-11-20", "end": "2027-05-20"}}]
        assert composition["custodian"] == {"reference": "Organization/hc",
                                            "display": "HC Kvarnholmen"}
        assert composition["author"] == [{"reference": "Practitioner/gp", "display": "Anna Berg"}]
        entries = {s["code"]["coding"][0]["code"]: [e["reference"] for e in s.get("entry", [])]
                   for s in composition["section"]}
        assert entries == {
            "agreement": ["CarePlan/cp1"],
            "contacts": ["CareTeam/ct1", "Practitioner/gp", "PractitionerRole/gp-role",
                         "Organization/hc"],
            "planning": ["Appointment/a0", "Appointment/a1", "CarePlan/cp1"],
            "coordinated": ["CarePlan/sip", "Goal/g-care", "Goal/g-own", "Goal/g-done",
                            "CarePlan/cp1"],
        }
        urls = [e["fullUrl"] for e in bundle["entry"][1:]]
        assert len(urls) == len(set(urls))
        assert "http://x/fhir/Appointment/a2" not in urls  # cancelled: not upcoming

    def test_narratives_escape_what_people_wrote(self) -> None:
        record = make_record(careplans=(
            {**make_record().careplans[0],
             "activity": [activity("patient-responsibility", "<b>Promenad</b> & vila")]},))
        record = record.for_patient()
        bundle = build_document(record, build_view(record, now=NOW), base_url="http://x/fhir",
                                now=NOW)
        div = bundle["entry"][0]["resource"]["section"][0]["text"]["div"]
        assert "&lt;b&gt;Promenad&lt;/b&gt; &amp; vila" in div


class TestCoCreationRules:
    def test_an_own_activity_is_the_patients_and_care_kinds_are_refused(self) -> None:
        made = coauthoring.new_activity("p1", "Gå på kören.", Actor("patient"), NOW)
        assert made["extension"] == OWN
        assert made["detail"]["performer"] == [{"reference": "Patient/p1"}]
        assert made["detail"]["code"]["text"] == "Patienten ansvarar för"
        worse = coauthoring.new_activity("p1", "Ring.", Actor("patient"), NOW,
                                         "on-deterioration")
        assert worse["detail"]["code"]["text"] == "Vid försämring kan patienten"
        with pytest.raises(Forbidden):
            coauthoring.new_activity("p1", "x", Actor("patient"), NOW, "care-responsibility")
        with pytest.raises(Unprocessable):
            coauthoring.new_activity("p1", "x", Actor("patient"), NOW, "nonsense")

    def test_a_relative_is_named_as_who_entered_it(self) -> None:
        relative = Actor("relative", "RelatedPerson/9", "Eva Holm")
        goal = coauthoring.new_goal("p1", "Fira jul hemma.", relative, NOW)
        assert goal["expressedBy"] == {"reference": "Patient/p1"}
        assert goal["note"][0]["authorReference"] == {"reference": "RelatedPerson/9",
                                                      "display": "Eva Holm"}
        message = coauthoring.new_message("p1", "Hej", relative, NOW, careplans=[],
                                          careteams=["CareTeam/1"])
        assert message["sender"] == {"reference": "RelatedPerson/9", "display": "Eva Holm"}

    def test_withdrawing_is_only_for_what_the_patient_wrote(self) -> None:
        plan = make_record().careplans[0]
        after = coauthoring.withdraw_activity(plan, "pa-1")
        assert len(after["activity"]) == len(plan["activity"]) - 1
        care = {**plan, "activity": [{**plan["activity"][0], "id": "c1"}]}
        with pytest.raises(Forbidden):
            coauthoring.withdraw_activity(care, "c1")
        with pytest.raises(NotFound):
            coauthoring.withdraw_activity(plan, "missing")
        with pytest.raises(Forbidden):
            coauthoring.withdraw_goal(make_record().goals[0], "p1")
        assert coauthoring.withdraw_goal(make_record().goals[1], "p1")["lifecycleStatus"] == (
            "cancelled")

    @pytest.mark.parametrize(("text", "cleaned"), [
        ("Promenad.\r\nVila.  \r\n", "Promenad.\nVila."),
        ("\n\nEn rad\n", "En rad"),
    ])
    def test_texts_are_normalised(self, text: str, cleaned: str) -> None:
        assert coauthoring.clean_text(text) == cleaned

    @pytest.mark.parametrize("text", ["", "   \n", "x" * 2001, "bell\x07", None])
    def test_empty_long_or_odd_texts_are_refused(self, text: Any) -> None:
        with pytest.raises(Unprocessable):
            coauthoring.clean_text(text)

    @pytest.mark.parametrize(("actor", "allowed"), [
        (Actor("patient", "Patient/p1"), True),
        (Actor("patient", None), True),
        (Actor("patient", "Patient/other"), False),
        (Actor("relative", "RelatedPerson/9"), True),
        (Actor("anonymous-dev"), True),
        (Actor("staff", "Practitioner/1"), False),
        (Actor("system"), False),
    ])
    async def test_the_default_check_lets_the_patient_and_relatives_through(
        self, actor: Actor, allowed: bool
    ) -> None:
        contribution = Contribution("add-goal", "p1", "x")
        if allowed:
            await coauthoring.default_check(actor, contribution)
        else:
            with pytest.raises(Forbidden):
                await coauthoring.default_check(actor, contribution)


class TestNotesAsTyped:
    """Issue 13: the number named by its kind, validity as written, hours and audiences."""

    def test_a_samordningsnummer_is_named_so(self) -> None:
        patient = {"resourceType": "Patient", "id": "p1", "identifier": [{
            "system": "http://electronichealth.se/identifier/samordningsnummer",
            "value": "201603751239"}]}
        view = build_view(make_record(patient=patient), now=NOW)
        assert (view.identifier_kind, view.personnummer) == ("Samordningsnummer",
                                                             "20160375-1239")
        assert build_view(make_record(), now=NOW).identifier_kind == "Personnummer"

    def test_a_plan_from_a_note_without_validity_keyword_has_no_validity(self) -> None:
        record = make_record()
        plan = copy.deepcopy(record.careplans[0])
        plan["identifier"] = [{"system": "https://samplan.se/fhir/NamingSystem/cosmic-note-id",
                               "value": "n1"}]
        plan["period"] = {"start": "2026-11-20"}
        header = build_view(make_record(careplans=(plan,)), now=NOW).agreements[0]
        assert (header.validity, header.start, header.end) == (None, None, None)
        plan["period"]["extension"] = [{"url": "https://samplan.se/fhir/StructureDefinition/"
                                               "note-text", "valueString": "tillsvidare"}]
        header = build_view(make_record(careplans=(plan,)), now=NOW).agreements[0]
        assert header.validity == "Gäller från 20 november 2026 tills vidare"

    def test_hours_go_with_the_number_and_professional_numbers_get_no_link(self) -> None:
        record = make_record()
        team = copy.deepcopy(record.careteams[0])
        team["note"][0]["text"] = ("Telefon 0480-123 40 vardagar 08.00–16.30. "
                                   "Direkt 0480-123 99 (endast för hemsjukvården).")
        view = build_view(make_record(careteams=(team,)), now=NOW)
        (reach,) = view.reach_care
        assert [(link.label, link.href, link.hours) for link in reach.links] == [
            ("0480-123 40", "tel:+4648012340", "vardagar 08.00–16.30")]


def test_the_label_written_on_import_is_the_one_the_patients_view_removes() -> None:
    from samplan.agreement.codes import DS4P_INLINE_LABEL, nopatient_label

    assert DS4P_INLINE_LABEL == EXT_INLINE_SECURITY_LABEL
    assert nopatient_label() == LABEL[0]
    plan = {"resourceType": "CarePlan", "note": [{"extension": [nopatient_label()],
                                                  "text": "Internt."}]}
    assert strip_nopatient(plan) == {"resourceType": "CarePlan"}
