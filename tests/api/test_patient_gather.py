"""$agreement read in one statement: the same record, access and log as by the searches.

``PatientAgreements.record`` gathers the agreement with one statement
(``agreement/patient_gather.py``) and falls back to the read and the searches when
it cannot answer exactly; these tests hold the two to each other for every kind of
reader, and check the access log and the cache of made documents
(``agreement/patient_cache.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from samplan.agreement.patient_cache import DOCUMENTS, Made
from samplan.agreement.patient_document import build_document, document_parts
from samplan.agreement.patient_gather import gathered_record
from samplan.agreement.patient_service import PatientAgreements
from samplan.agreement.patient_view import PatientRecord, build_view
from samplan.api.auth import authenticator
from samplan.api.deps import Services
from samplan.fhir.errors import NotFound
from samplan.security.gate import Access
from samplan.security.principal import Principal
from support.patient_view import (
    PNRS,
    SECRETS,
    add_contact_details,
    add_linked_plan,
    add_upcoming_visit,
    agreement_of,
    create,
    ok,
    put,
)

from .test_patient_view_access import KALMAR_UNIT, REGION_UNIT, bearer, world

Mint = Callable[..., str]
READERS = ("plain", "anonymous", "patient", "relative", "staff")


async def full_world(client: httpx.AsyncClient, mint: Mint) -> dict[str, str]:
    """Both examples (professional-only content, a relative's grant), and for the region
    patient a booked time, a SIP, the GP's direct line and a few messages."""
    ids = await world(client, mint)
    client.headers.update(bearer(mint("user/*.cruds", care_unit=REGION_UNIT)))
    patient_id = ids["region"]
    plan = await agreement_of(client, patient_id)
    await add_upcoming_visit(client, patient_id, plan["id"])
    await add_upcoming_visit(client, patient_id, plan["id"], days=2, description="Provtagning")
    await add_linked_plan(client, patient_id)
    await add_contact_details(client, plan)
    start = datetime(2026, 11, 1, 9, tzinfo=UTC)
    for i in range(23):  # more than the 20 latest the view shows; one without a time
        await create(client, {
            "resourceType": "Communication", "status": "completed",
            "subject": {"reference": f"Patient/{patient_id}"},
            **({"sent": (start + timedelta(hours=i * 7 % 23)).isoformat()} if i else {}),
            "payload": [{"contentString": f"Meddelande {i}"}],
        })
    del client.headers["Authorization"]
    return ids


async def reader_of(services: Services, mint: Mint, ids: dict[str, str], who: str
                    ) -> Access:
    if who == "plain":
        return services.gate.as_service()
    if who == "anonymous":
        principal = Principal.anonymous_dev()
    else:
        token = {
            "patient": lambda: mint("patient/*.rs", patient=PNRS["region"]),
            "relative": lambda: mint("patient/*.rs", patient=ids["region"],
                                     fhir_user=f"RelatedPerson/{ids['daughter']}"),
            "staff": lambda: mint("user/*.rs", care_unit=REGION_UNIT),
            "outsider": lambda: mint("user/*.rs", care_unit=KALMAR_UNIT),
        }[who]()
        principal = await authenticator(services).authenticate(f"Bearer {token}")
    return services.gate.access(principal, client_ip="127.0.0.1")


def same(gathered: PatientRecord) -> PatientRecord:
    """The record as the searches make it (they do not look at the stored bytes)."""
    return replace(gathered, unlabelled=False)


NOW = datetime.now(UTC)


class TestTheGatheringIsTheSearches:
    @pytest.mark.parametrize("who", READERS)
    async def test_every_reader_gets_the_record_the_searches_give(
        self, secure_client: httpx.AsyncClient, secure_services: Services, mint: Mint, who: str
    ) -> None:
        ids = await full_world(secure_client, mint)
        reader = await reader_of(secure_services, mint, ids, who)
        agreements = PatientAgreements()
        for name in ("region", "kalmar"):
            if who != "plain" and who != "anonymous" and name == "kalmar":
                continue  # out of these readers' reach: see the next test
            gathered = await gathered_record(reader, ids[name], now=NOW)
            assert gathered is not None
            searched = await agreements.searched_record(reader, ids[name], now=NOW)
            if who not in ("patient", "relative"):  # for them the gate's searches redact
                assert same(gathered) == searched
            assert len(searched.messages) == (20 if name == "region" else 0)
            assert same(gathered.for_patient()) == searched.for_patient()
            assert build_view(gathered.for_patient(), now=NOW) == build_view(
                searched.for_patient(), now=NOW)

    async def test_what_is_out_of_reach_is_answered_by_the_read(
        self, secure_client: httpx.AsyncClient, secure_services: Services, mint: Mint
    ) -> None:
        ids = await full_world(secure_client, mint)
        agreements = PatientAgreements()
        for who in ("patient", "outsider"):
            reader = await reader_of(secure_services, mint, ids, who)
            patient = ids["kalmar"] if who == "patient" else ids["region"]
            assert await gathered_record(reader, patient, now=NOW) is None
            with pytest.raises(NotFound):
                await agreements.record(reader, patient, now=NOW)

    async def test_without_every_scope_the_searches_answer_as_before(
        self, secure_client: httpx.AsyncClient, secure_services: Services, mint: Mint
    ) -> None:
        ids = await full_world(secure_client, mint)
        token = mint("patient/Patient.rs patient/CarePlan.rs patient/CareTeam.rs",
                     patient=PNRS["region"])
        reader = secure_services.gate.access(
            await authenticator(secure_services).authenticate(f"Bearer {token}"))
        assert await gathered_record(reader, ids["region"], now=NOW) is None
        response = await secure_client.get(f"/fhir/Patient/{ids['region']}/$agreement",
                                           headers=bearer(token))
        assert response.status_code == 403
        assert "search on Practitioner" in response.json()["issue"][0]["diagnostics"]

    async def test_a_missing_or_deleted_patient_is_answered_by_the_read(
        self, client: httpx.AsyncClient, services: Services
    ) -> None:
        patient = await create(client, {"resourceType": "Patient"})
        assert (await client.delete(f"/fhir/Patient/{patient['id']}")).status_code == 204
        for patient_id, status in (("nobody", 404), (patient["id"], 410)):
            assert await gathered_record(services.gate.as_service(), patient_id, now=NOW) is None
            response = await client.get(f"/fhir/Patient/{patient_id}/$agreement")
            assert response.status_code == status

    async def test_a_reference_the_index_does_not_hold_is_searched(
        self, secure_client: httpx.AsyncClient, secure_services: Services, mint: Mint
    ) -> None:
        ids = await full_world(secure_client, mint)
        secure_client.headers.update(bearer(mint("user/*.cruds", care_unit=REGION_UNIT)))
        plan = await agreement_of(secure_client, ids["region"])
        unit = await create(secure_client, {"resourceType": "Organization",
                                            "name": "Hemsjukvården"})
        team_id = plan["careTeam"][0]["reference"].split("/")[-1]
        team = ok(await secure_client.get(f"/fhir/CareTeam/{team_id}"))
        team["participant"][0]["onBehalfOf"] = {"reference": f"Organization/{unit['id']}"}
        await put(secure_client, team)
        del secure_client.headers["Authorization"]
        reader = await reader_of(secure_services, mint, ids, "staff")
        assert await gathered_record(reader, ids["region"], now=NOW) is None
        agreements = PatientAgreements()
        record = await agreements.record(reader, ids["region"], now=NOW)
        assert record == await agreements.searched_record(reader, ids["region"], now=NOW)
        assert any(r.get("id") == unit["id"] for r in record.directory)


def bundle_words(bundle: dict[str, Any]) -> bytes:
    """The document without what is new in each one (its id and time)."""
    raw = orjson.dumps(bundle)
    bundle = orjson.loads(raw)  # JSON made before may be in it as orjson.Fragment
    for value in (bundle["id"], bundle["timestamp"], bundle["entry"][0]["resource"]["id"]):
        raw = raw.replace(value.encode(), b"")
    return raw


class TestMadeDocuments:
    async def test_a_document_made_again_from_the_same_resources_is_the_same(
        self, client: httpx.AsyncClient, services: Services
    ) -> None:
        from support.patient_view import import_examples

        patient_id = (await import_examples(client))["region"]
        first = ok(await client.get(f"/fhir/Patient/{patient_id}/$agreement"))
        kept = len(DOCUMENTS)
        second = ok(await client.get(f"/fhir/Patient/{patient_id}/$agreement"))
        assert len(DOCUMENTS) == kept  # made once, served twice
        assert first["id"] != second["id"]
        assert bundle_words(first) == bundle_words(second)
        record = (await PatientAgreements().searched_record(
            services.gate.as_service(), patient_id, now=NOW)).for_patient()
        fresh = build_document(record, build_view(record, now=datetime.now(UTC)),
                               base_url=services.gate.as_service().base_url, now=NOW)
        assert bundle_words(fresh) == bundle_words(second)

    async def test_any_change_makes_a_new_document(self, client: httpx.AsyncClient) -> None:
        from support.patient_view import import_examples

        patient_id = (await import_examples(client))["region"]
        path = f"/fhir/Patient/{patient_id}/$agreement"
        assert "Orka gå till affären." not in (await client.get(path)).text
        plan = await agreement_of(client, patient_id)
        await put(client, {**plan, "description": "Orka gå till affären."})
        assert "Orka gå till affären." in (await client.get(path)).text
        await add_upcoming_visit(client, patient_id, plan["id"], description="Ny tid hos oss")
        assert "Ny tid hos oss" in (await client.get(path)).text

    async def test_the_patient_and_care_get_what_their_searches_give(
        self, secure_client: httpx.AsyncClient, secure_services: Services, mint: Mint
    ) -> None:
        ids = await full_world(secure_client, mint)
        agreements = PatientAgreements()
        for who in ("patient", "staff", "patient"):
            reader = await reader_of(secure_services, mint, ids, who)
            bundle, _ = await agreements.document(reader, ids["region"], now=NOW)
            record = (await agreements.searched_record(reader, ids["region"], now=NOW)
                      ).for_patient()
            expected = build_document(record, build_view(record, now=NOW),
                                      base_url=secure_services.gate.as_service().base_url, now=NOW)
            assert bundle_words(bundle) == bundle_words(expected)
            for secret in SECRETS:
                assert secret.encode() not in orjson.dumps(bundle)

    def test_a_made_view_holds_until_its_next_booked_time_and_only_that_day(self) -> None:
        made_at = datetime(2027, 1, 12, 8, 0, tzinfo=UTC)  # 09.00 in Sweden
        visit = made_at + timedelta(hours=2)
        record = PatientRecord(patient={"resourceType": "Patient", "id": "p"}, appointments=(
            {"resourceType": "Appointment", "id": "a", "status": "booked",
             "start": visit.isoformat(), "participant": []},))
        view = build_view(record, now=made_at)
        made = Made.at(made_at, view, document_parts(record, view, base_url="x"), ())
        assert made.holds_at(made_at)
        assert made.holds_at(visit)
        assert not made.holds_at(visit + timedelta(microseconds=1))  # the visit has begun
        assert not made.holds_at(made_at - timedelta(seconds=1))  # made after that request began
        assert not made.over_at(made_at - timedelta(seconds=1))  # ... so it is kept
        assert made.over_at(visit + timedelta(microseconds=1))
        assert not made.holds_at(datetime(2027, 1, 12, 23, 0, tzinfo=UTC))  # next day in Sweden
        later = Made.at(made_at, build_view(replace(record, appointments=()), now=made_at),
                        document_parts(record, view, base_url="x"), ())
        assert later.holds_at(datetime(2027, 1, 12, 22, 59, tzinfo=UTC))


class TestTheAccessLog:
    async def test_the_agreement_is_one_entry_naming_everything_it_disclosed(
        self, secure_client: httpx.AsyncClient, mint: Mint
    ) -> None:
        ids = await full_world(secure_client, mint)
        patient = bearer(mint("patient/*.rs", patient=PNRS["region"]))
        response = await secure_client.get(f"/fhir/Patient/{ids['region']}/$agreement",
                                           headers=patient)
        assert response.status_code == 200
        admin = bearer(mint("user/AuditEvent.rs", care_unit=REGION_UNIT))
        log = ok(await secure_client.get("/fhir/AuditEvent", params={"_count": "10"},
                                         headers=admin))
        query = f"Patient/{ids['region']}/$agreement"
        entries = [e["resource"] for e in log["entry"]
                   if e["resource"]["entity"][-1].get("description") == query]
        assert len(entries) == 1
        entry = entries[0]
        assert entry["subtype"][0]["code"] == "search-type"
        assert entry["entity"][0]["what"]["reference"] == f"Patient/{ids['region']}"
        named = {x["what"]["reference"] for x in entry["entity"][1:] if "what" in x}
        bundle = response.json()
        shown = {e["fullUrl"].split("/fhir/")[1] for e in bundle["entry"][1:]}
        assert shown - {f"Patient/{ids['region']}"} <= named  # directory data included
        messages = [r for r in named if r.startswith("Communication/")]
        assert len(messages) == 20  # read too, none of them professional-only
        everything = orjson.dumps(entry).decode()
        assert "CarePlan/" in everything
        for secret in SECRETS:
            assert secret not in everything
