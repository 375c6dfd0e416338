"""Keyword notes in and out of the store: `$import-note`, `$extract` and `$export-note`.

An import is one write transaction: it locks the patient's agreement (so two
notes for one patient never make two agreements), finds the patient's active
agreement for the note's care unit, and writes the note's resources as one
transaction Bundle: a new agreement (201) or new versions of the existing
CarePlan and CareTeam (200). A note already imported (by note id) changes
nothing and answers that agreement, to a caller who may see it; to any other
it is a 409 that shows nothing of it. Everything runs through the caller's
access (the gate): every search here is theirs, every write checked as theirs.
Nothing here knows HTTP or SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from samplan.agreement.codes import (
    AGREEMENT_CATEGORY,
    COSMIC_NOTE_ID_SYSTEM,
    HSA_SYSTEM,
    PERSONNUMMER_SYSTEM,
    SAMORDNINGSNUMMER_SYSTEM,
)
from samplan.agreement.fhir_build import build_transaction
from samplan.agreement.fhir_read import read_agreement
from samplan.agreement.note_update import apply_update, attach_outcome
from samplan.fhir.errors import Conflict, Issue, NotFound
from samplan.fhir.stored import StoredResource
from samplan.mapping.export import export_note
from samplan.mapping.importer import ParsedNote
from samplan.security.gate import Access, GuardedTx


@dataclass(slots=True)
class ImportResult:
    created: bool
    changed: bool
    careplan: StoredResource
    bundle: bytes
    warnings: tuple[Issue, ...]


class AgreementNotes:
    """Keyword notes in and out, as one caller may (``access``: the gate, for a request)."""

    def __init__(self, access: Access) -> None:
        self.access = access

    async def import_note(self, parsed: ParsedNote) -> ImportResult:
        async def unit(tx: GuardedTx) -> ImportResult:
            return await self._import_in(tx, parsed)

        return await self.access.run(unit)

    async def _import_in(self, tx: GuardedTx, parsed: ParsedNote) -> ImportResult:
        agreement = parsed.agreement
        system = SAMORDNINGSNUMMER_SYSTEM if agreement.patient.samordning else PERSONNUMMER_SYSTEM
        pnr = f"{system}|{agreement.patient.personnummer}"
        unit_hsa = agreement.care_unit.hsa_id if agreement.care_unit else None
        await tx.lock(f"agreement:{pnr}:{unit_hsa}")

        note_id = agreement.note_id or parsed.note.note_id
        by_note = [("identifier", f"{COSMIC_NOTE_ID_SYSTEM}|{note_id}")]
        # Asked first without reach, which discloses nothing: most notes are new, and a
        # guarded search costs the caller's reach (and a log entry) to find nothing.
        if await tx.exists_unseen("CarePlan", by_note):
            already = await self._search(tx, "CarePlan", by_note)
            if already:
                return ImportResult(False, False, already[0],
                                    await self._bundle_of(tx, already[0]), parsed.warnings)
            raise Conflict(f"The note {note_id!r} was already imported, into an agreement "
                           "outside your reach.", ["note.id"])

        careplan_id = careteam_id = None
        previous_ids: list[dict[str, Any]] = []
        existing = await self._active_agreement(tx, pnr, unit_hsa)
        if existing is not None:
            plan, team = existing
            careplan_id = plan.resource_id
            careteam_id = team.resource_id if team else None
            assert plan.content is not None
            previous_ids = [
                i for i in orjson.loads(plan.content).get("identifier", [])
                if i.get("system") == COSMIC_NOTE_ID_SYSTEM
            ]
        bundle = build_transaction(agreement, careplan_id=careplan_id, careteam_id=careteam_id)
        if previous_ids:
            _keep_note_ids(bundle, previous_ids)
        warnings = parsed.warnings
        if existing is not None:  # times, goals and the patient's own items (note_update.py)
            stored = [orjson.loads(r.content or b"{}")
                      for r in await self._agreement_resources(tx, existing[0])]
            bundle, changes = apply_update(bundle, stored, agreement, now=datetime.now(UTC))
            warnings = (*warnings, *changes)
        entries = await tx.transaction(bundle)
        attach_outcome(bundle, entries, warnings)
        careplan = next(
            s for s in (e for e in tx.changes) if s.resource.resource_type == "CarePlan"
        ).resource
        response = orjson.dumps({"resourceType": "Bundle", "type": "transaction-response",
                                 "entry": entries})
        return ImportResult(existing is None, True, careplan, response, warnings)

    async def _search(
        self, tx: GuardedTx, resource_type: str, params: list[tuple[str, str]]
    ) -> list[StoredResource]:
        return (await tx.search(resource_type, params))[0]

    async def _active_agreement(
        self, tx: GuardedTx, pnr: str, unit_hsa: str | None
    ) -> tuple[StoredResource, StoredResource | None] | None:
        by_number = [("identifier", pnr)]
        if not await tx.exists_unseen("Patient", by_number):  # a new patient: no reach asked
            return None
        patients = await self._search(tx, "Patient", by_number)
        if not patients:
            return None
        org_id = None
        if unit_hsa:
            orgs = await self._search(tx, "Organization",
                                      [("identifier", f"{HSA_SYSTEM}|{unit_hsa}")])
            org_id = orgs[0].resource_id if orgs else None
            if org_id is None:
                return None
        plans, included = await tx.search("CarePlan", [
            ("patient", patients[0].resource_id),
            ("status", "active"),
            ("category", f"{AGREEMENT_CATEGORY['system']}|{AGREEMENT_CATEGORY['code']}"),
            ("_include", "CarePlan:care-team"),
            ("_sort", "_lastUpdated"),
        ])
        teams = {t.resource_id: orjson.loads(t.content or b"{}") for t in included}
        stored_teams = {t.resource_id: t for t in included}
        for plan in reversed(plans):
            body = orjson.loads(plan.content or b"{}")
            for ref in body.get("careTeam", []):
                team_id = str(ref.get("reference", "")).split("/")[-1]
                team = teams.get(team_id)
                if team is None:
                    continue
                managing = {str(o.get("reference", "")).split("/")[-1]
                            for o in team.get("managingOrganization", [])}
                if org_id is None or org_id in managing:
                    return plan, stored_teams[team_id]
            if org_id is None and not body.get("careTeam"):
                return plan, None
        return None

    async def _bundle_of(self, tx: GuardedTx, careplan: StoredResource) -> bytes:
        resources = await self._agreement_resources(tx, careplan)
        return orjson.dumps({
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"fullUrl": f"{self.access.base_url}/{r.resource_type}/{r.resource_id}",
                       "resource": orjson.Fragment(r.content or b"{}")} for r in resources],
        })

    async def _agreement_resources(
        self, tx: GuardedTx | None, careplan: StoredResource
    ) -> list[StoredResource]:
        """The agreement's resources, as the caller may see them (and logged)."""
        params = [
            ("_id", careplan.resource_id),
            ("_include", "CarePlan:care-team"),
            ("_include", "CarePlan:goal"),
            ("_include", "CarePlan:subject"),
            ("_revinclude", "Appointment:based-on"),
        ]
        if tx is not None:
            matches, included = await tx.search("CarePlan", params)
            return [*matches, *included]
        _, page = await self.access.search("CarePlan", params)
        return [*page.matches, *page.includes]

    async def export(self, careplan_id: str, fmt: str) -> bytes:
        careplan = await self.access.read("CarePlan", careplan_id)
        resources = await self._agreement_resources(None, careplan)
        if not resources:
            raise NotFound(f"CarePlan/{careplan_id} does not exist.")
        agreement = read_agreement([orjson.loads(r.content or b"{}") for r in resources])
        return export_note(agreement, fmt)


def _keep_note_ids(bundle: dict[str, Any], previous: list[dict[str, Any]]) -> None:
    """A CarePlan keeps the ids of every note it came from: re-importing any of them is a no-op."""
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "CarePlan":
            current = resource.setdefault("identifier", [])
            for identifier in previous:
                if identifier not in current:
                    current.append(identifier)
