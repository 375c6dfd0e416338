"""The write transaction (issue 7: one statement on PostgreSQL): rows as each version says.

After every write the index rows of a resource are exactly those its current
version yields (as a multiset: a value found twice is two rows), the history
holds every version, and a deletion leaves no index rows; on both backends.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from samplan.api.deps import Services
from samplan.fhir.errors import PreconditionFailed
from samplan.fhir.identifiers import HSA_SYSTEM
from samplan.fhir.indexing import extract
from samplan.fhir.registry import REGISTRY
from samplan.fhir.stored import WriteConflict
from samplan.store.tables import idx_date, idx_reference, idx_string, idx_token, resource_versions
from support.writers import Anyone

Json = dict[str, Any]


def make_plan(*, status: str = "active", category: str = "VP", goals: tuple[str, ...] = ("g1",),
              title: str = "Överenskommelse", period: str = "2026-03-27") -> Json:
    return {
        "resourceType": "CarePlan", "status": status, "intent": "plan", "title": title,
        "category": [{"coding": [{"system": "https://fhir.inera.se/CodeSystem/typeofcareplan-cs",
                                  "code": category}]}],
        "subject": {"reference": "Patient/p1"},
        "period": {"start": period},
        "goal": [{"reference": f"Goal/{g}"} for g in goals],
    }


async def stored_rows(services: Services, resource_id: str) -> dict[str, Counter[tuple[Any, ...]]]:
    found: dict[str, Counter[tuple[Any, ...]]] = {}
    async with services.gate.engine.connect() as conn:
        for table, columns in ((idx_token, ("param", "system", "code")),
                               (idx_reference, ("param", "target_type", "target_id")),
                               (idx_date, ("param", "low", "high")),
                               (idx_string, ("param", "value"))):
            stmt = select(*(table.c[c] for c in columns)).where(
                table.c.resource_type == "CarePlan", table.c.resource_id == resource_id)
            found[table.name] = Counter(tuple(r) for r in (await conn.execute(stmt)).all())
    return found


def expected_rows(services: Services, body: Json) -> dict[str, Counter[tuple[Any, ...]]]:
    repo = services.gate.service.repo
    rows = extract(body, REGISTRY["CarePlan"], repo.tz, repo.base_url)
    return {"idx_token": Counter((p, s, c[:255]) for p, s, c in rows.tokens),
            "idx_reference": Counter(rows.references), "idx_date": Counter(rows.dates),
            "idx_string": Counter(rows.strings)}


async def put(services: Services, resource_id: str, body: Json) -> Json:
    result = await services.gate.as_service().update("CarePlan", resource_id,
                                                     {**body, "id": resource_id})
    assert result.stored.content is not None
    stored: Json = orjson.loads(result.stored.content)
    return stored


class TestIndexRowsFollowEachVersion:
    async def test_through_updates_that_change_some_tables_and_not_others(
        self, services: Services
    ) -> None:
        created = await services.gate.as_service().create("CarePlan", make_plan())
        rid = created.stored.resource_id
        versions = [
            make_plan(title="Ny titel"),  # no index row changes
            make_plan(title="Ny titel", status="completed"),  # a token
            make_plan(status="completed", goals=("g1", "g2")),  # a reference more
            make_plan(status="completed", goals=("g2",), period="2026-04-01"),  # and a date
            make_plan(category="SPU", goals=()),  # no goals at all
            make_plan(goals=("g3", "g3")),  # the same reference twice: two rows
            make_plan(goals=("g3",)),  # then once
        ]
        for body in versions:
            current = await put(services, rid, body)
            assert await stored_rows(services, rid) == expected_rows(services, current)

    async def test_history_keeps_every_version_and_a_deletion_leaves_no_rows(
        self, services: Services
    ) -> None:
        created = await services.gate.as_service().create("CarePlan", make_plan())
        rid = created.stored.resource_id
        await put(services, rid, make_plan(title="2"))
        await put(services, rid, make_plan(title="3", status="completed"))
        await services.gate.as_service().delete("CarePlan", rid)
        assert await stored_rows(services, rid) == {
            "idx_token": Counter(), "idx_reference": Counter(), "idx_date": Counter(),
            "idx_string": Counter()}
        v = resource_versions.c
        async with services.gate.engine.connect() as conn:
            rows = (await conn.execute(
                select(v.version_id, v.method, v.deleted).where(v.resource_id == rid)
                .order_by(v.version_id))).all()
        assert [tuple(r) for r in rows] == [(1, "POST", False), (2, "PUT", False),
                                           (3, "PUT", False), (4, "DELETE", True)]
        again = await put(services, rid, make_plan(title="back"))
        assert again["meta"]["versionId"] == "5"
        assert await stored_rows(services, rid) == expected_rows(services, again)


class TestIfMatch:
    async def test_a_stale_version_is_412_and_writes_nothing(self, services: Services) -> None:
        created = await services.gate.as_service().create("CarePlan", make_plan())
        rid = created.stored.resource_id
        await put(services, rid, make_plan(title="2"))
        with pytest.raises(PreconditionFailed):
            await services.gate.as_service().update("CarePlan", rid, {
                **make_plan(status="completed"), "id": rid}, if_match='W/"1"')
        current = await services.gate.service.repo.read("CarePlan", rid)
        assert current is not None
        assert current.version_id == 2
        assert await stored_rows(services, rid) == expected_rows(
            services, orjson.loads(current.content or b"{}"))


async def write_then_fail(repo: Any) -> None:
    """A create of ``fresh`` and an update of ``kept``, then an error before the commit."""
    async with repo.transaction(Anyone()) as tx:
        await tx.write(make_plan(goals=("g9",)), resource_id="fresh", current=None,
                       method="POST")
        current = await tx.current("CarePlan", "kept")
        await tx.write({**make_plan(title="Efter"), "id": "kept"}, resource_id="kept",
                       current=current, method="PUT")
        raise RuntimeError("after the writes")


class TestAFailureAfterTheWritesLeavesNothing:
    """The write statements (on SQLite sent to the driver itself, inside the transaction
    SQLAlchemy began) are undone with everything else when the transaction fails."""

    async def test_a_create_and_an_update_before_an_error_are_rolled_back(
        self, services: Services
    ) -> None:
        before = await put(services, "kept", make_plan(title="Före"))
        repo = services.gate.service.repo

        with pytest.raises(RuntimeError, match="after the writes"):
            await write_then_fail(repo)

        assert await repo.read("CarePlan", "fresh") is None
        assert await stored_rows(services, "fresh") == {
            "idx_token": Counter(), "idx_reference": Counter(), "idx_date": Counter(),
            "idx_string": Counter()}
        kept = await repo.read("CarePlan", "kept")
        assert kept is not None
        assert kept.version_id == 1
        assert orjson.loads(kept.content or b"{}")["title"] == before["title"]
        assert await stored_rows(services, "kept") == expected_rows(services, before)
        async with services.gate.engine.connect() as conn:
            versions = (await conn.execute(select(resource_versions.c.resource_id).where(
                resource_versions.c.resource_type == "CarePlan"))).scalars().all()
        assert sorted(versions) == ["kept"]

    async def test_a_second_create_at_one_id_is_a_write_conflict(self, services: Services) -> None:
        """What the database refuses (here its key) is a WriteConflict on both, from
        SQLAlchemy's statements or the drivers' own, and nothing of it stays."""
        await put(services, "taken", make_plan(title="Först"))
        repo = services.gate.service.repo

        with pytest.raises(WriteConflict):
            await create_at(repo, "taken")

        kept = await repo.read("CarePlan", "taken")
        assert kept is not None
        assert kept.version_id == 1


async def create_at(repo: Any, resource_id: str) -> None:
    async with repo.transaction(Anyone()) as tx:
        await tx.write(make_plan(title="Andra"), resource_id=resource_id, current=None,
                       method="POST")


class TestTheIdentifierLookupInATransaction:
    """``WriteTx.by_identifiers`` (conditional creates, the one-personnummer rule, a note's
    duplicate check) answers as an identifier search would: by type, system and code, a
    token without a system only when asked without one, no deleted resource, oldest
    first; each wanted identifier on its own."""

    async def test_it_finds_what_a_search_finds_and_nothing_else(
        self, services: Services
    ) -> None:
        def org(name: str, *tokens: tuple[str | None, str]) -> Json:
            return {"resourceType": "Organization", "name": name, "identifier": [
                {"value": code} if system is None else {"system": system, "value": code}
                for system, code in tokens]}

        hsa = HSA_SYSTEM
        service = services.gate.as_service()
        first = (await service.create("Organization", org("A", (hsa, "SE2321000073-1001")))).stored
        second = (await service.create("Organization", org("B", (hsa, "SE2321000073-1001"),
                                                           ("urn:x", "7")))).stored
        gone = (await service.create("Organization", org("C", (hsa, "SE2321000073-1003")))).stored
        await service.delete("Organization", gone.resource_id)
        bare = (await service.create("Organization", org("D", (None, "SE2321000073-1001")))).stored
        wanted: list[tuple[str, str | None, str]] = [
            ("Organization", hsa, "SE2321000073-1001"), ("Organization", "urn:x", "7"),
            ("Organization", hsa, "SE2321000073-1003"), ("Organization", None, "SE2321000073-1001"),
            ("Patient", hsa, "SE2321000073-1001"), ("Organization", "urn:x", "SE2321000073-1001")]
        async with services.gate.service.repo.transaction(Anyone()) as tx:
            await tx.lock("begin")  # the lookup on a transaction that has begun
            found = await tx.by_identifiers(wanted)
        ids = {key: [s.resource_id for s in stored] for key, stored in found.items()}
        assert ids == {
            ("Organization", hsa, "SE2321000073-1001"): [first.resource_id, second.resource_id],
            ("Organization", "urn:x", "7"): [second.resource_id],
            ("Organization", hsa, "SE2321000073-1003"): [],
            ("Organization", None, "SE2321000073-1001"): [bare.resource_id],
            ("Patient", hsa, "SE2321000073-1001"): [],
            ("Organization", "urn:x", "SE2321000073-1001"): [],
        }
        assert found[("Organization", "urn:x", "7")][0].content == second.content

    async def test_before_the_transaction_has_begun_it_answers_the_same(
        self, services: Services
    ) -> None:
        hsa = HSA_SYSTEM
        created = (await services.gate.as_service().create("Organization", {
            "resourceType": "Organization", "name": "A",
            "identifier": [{"system": hsa, "value": "SE2321000073-1002"}]})).stored
        async with services.gate.service.repo.transaction(Anyone()) as tx:
            found = await tx.by_identifiers([("Organization", hsa, "SE2321000073-1002")])
        assert [s.resource_id for s in found[("Organization", hsa, "SE2321000073-1002")]] == [
            created.resource_id]
