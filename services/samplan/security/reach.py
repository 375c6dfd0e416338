"""Whom a principal reaches, asked only about the patients a request concerns.

The SQL is ``store/access.py`` (reach defined once there); the rules are
``policy.py``. A care provider's system token may reach a million patients:
nothing here ever lists them. Every question is "which of *these* patients
does this principal reach" (:meth:`ReachResolver.among`), or, for a search,
the principal's care-team basis (its organisations, roles, practitioner and
the patients who block one of them), which the store turns into a correlated
SQL predicate (:meth:`ReachResolver.basis`).

Inside a write transaction the same questions are asked on its connection
(``on=tx``), so they see what the transaction wrote: the CareTeam that brings
a patient into reach, the Consent that blocks the caller.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from samplan.fhir.identifiers import PERSONNUMMER_SYSTEM, SAMORDNINGSNUMMER_SYSTEM
from samplan.fhir.resource import ID_PATTERN
from samplan.fhir.stored import StoredResource
from samplan.security import policy
from samplan.security.policy import Reach, ScopeGrant
from samplan.security.principal import Principal
from samplan.store.access import AccessQueries, ReachFacts


class ReachResolver:
    """Reach questions for any principal; one per application."""

    def __init__(self, queries: AccessQueries, tz: ZoneInfo, *, provider_units: bool = False
                 ) -> None:
        """``provider_units``: staff tokens also reach through the units under their care
        provider (``partOf``); off by default, see docs/security.md."""
        self.queries = queries
        self.tz = tz
        self.provider_units = provider_units

    def _today(self) -> date:
        return datetime.now(self.tz).date()

    def _q(self, on: Any) -> AccessQueries:
        return self.queries if on is None else self.queries.on(on)

    def units(self, principal: Principal) -> bool:
        """Whether the principal acts for the units under its organisations too (``partOf``,
        any depth): a system (a region's journal integration acts for every unit of its care
        provider); staff only when the setting says so (docs/security.md)."""
        return principal.kind == "system" or (principal.kind == "staff" and self.provider_units)

    async def among(
        self, principal: Principal, patients: Collection[str | None], *,
        grant: ScopeGrant | None = None, on: Any = None,
    ) -> Reach:
        """The principal's reach as far as ``patients`` go (it lists only those of them it
        reaches). ``grant``: a ``patient/`` scope of a clinician narrows it to the patient
        in context. ``on``: a connection or write transaction to ask on."""
        wanted = frozenset(p for p in patients if p)
        q = self._q(on)
        if principal.kind == "anonymous-dev":
            return Reach(everything=True)
        if principal.kind == "patient":
            own = await self.resolve_patient(principal.patient, q)
            return Reach(patients=frozenset([own]) if own else frozenset())
        if principal.kind == "relative":
            return Reach(patients=await self._relative_patients(principal, q), read_only=True)
        facts = await q.reach_facts(*self.hsa_ids(principal), wanted,
                                     units=self.units(principal))
        return await self._narrowed(principal, self.from_facts(facts), grant, q)

    async def basis(self, principal: Principal, *, grant: ScopeGrant | None = None) -> Reach:
        """Staff and systems: the care-team basis without patients (``by_care_team``: a
        search turns it into a predicate). Others: :meth:`among` their own patients."""
        if principal.kind not in ("staff", "system") or (
                grant is not None and grant.patient_context_only):
            own = await self.resolve_patient(principal.patient) if principal.patient else None
            return await self.among(principal, [own], grant=grant)
        facts = await self.queries.reach_facts(*self.hsa_ids(principal), (),
                                               units=self.units(principal))
        return self.from_facts(facts)

    async def read_with_reach(
        self, principal: Principal, resource_type: str, resource_id: str
    ) -> tuple[StoredResource | None, ReachFacts]:
        """A staff member's or system's read by id and its reach, in one round trip."""
        return await self.queries.read_with_reach(
            resource_type, resource_id, *self.hsa_ids(principal), units=self.units(principal))

    def hsa_ids(self, principal: Principal) -> tuple[list[str], list[str]]:
        """:func:`hsa_ids` with this application's setting for staff."""
        return hsa_ids(principal, provider=self.provider_units)

    def from_facts(self, facts: ReachFacts) -> Reach:
        """The reach :class:`ReachFacts` describe; a patient's spärr overrides the care team."""
        blocked: frozenset[str] = frozenset()
        if facts.consents:
            actors = [("Organization", facts.organisations), ("PractitionerRole", facts.roles),
                      ("Practitioner", facts.practitioners)]
            blocked = policy.blocked_patients(
                facts.consents, [(kind, i) for kind, ids in actors for i in ids], self._today())
        return Reach(organisations=facts.organisations, roles=facts.roles,
                     practitioners=facts.practitioners, blocked=blocked, by_care_team=True,
                     patients=facts.patients - blocked)

    async def _narrowed(
        self, principal: Principal, reach: Reach, grant: ScopeGrant | None, q: AccessQueries
    ) -> Reach:
        if grant is None or not grant.patient_context_only or reach.everything:
            return reach
        own = await self.resolve_patient(principal.patient, q)
        return replace(reach, patients=reach.patients & ({own} if own else set()),
                       by_care_team=False)

    async def _relative_patients(self, principal: Principal, q: AccessQueries
                                 ) -> frozenset[str]:
        """The patient a relative acts for: as guardian of a young child, or by a proxy grant."""
        rp_id = principal.fhir_user_id
        related = await q.current_body("RelatedPerson", rp_id) if rp_id else None
        if related is None or rp_id is None:
            return frozenset()
        candidates = policy.patient_ids("RelatedPerson", related) or frozenset()
        if principal.patient is not None:
            in_context = await self.resolve_patient(principal.patient, q)
            candidates = candidates & {in_context} if in_context else frozenset()
        grants = await q.consents_naming([("RelatedPerson", [rp_id])])
        today = self._today()
        reached = set()
        for patient_id in candidates:
            own_grants = [g for g in grants
                          if patient_id in (policy.patient_ids("Consent", g) or ())]
            child = await q.current_body("Patient", patient_id)
            if policy.relative_may_act(related, child, own_grants, today):
                reached.add(patient_id)
        return frozenset(reached)

    async def resolve_patient(
        self, claim: str | None, queries: AccessQueries | None = None
    ) -> str | None:
        """The Patient id for a ``patient`` claim: an id, or a personnummer/samordningsnummer.

        One personnummer names one Patient (a second is refused at write, issue 12); should
        two ever carry it, the claim reaches nobody rather than the wrong person.
        """
        q = queries or self.queries
        if not claim:
            return None
        if ID_PATTERN.match(claim) and await q.exists("Patient", claim):
            return claim
        for system in (PERSONNUMMER_SYSTEM, SAMORDNINGSNUMMER_SYSTEM):
            found = await q.with_identifier("Patient", system, [claim])
            if len(found) == 1:
                return next(iter(found))
            if len(found) > 1:
                return None
        return claim if ID_PATTERN.match(claim) else None


def hsa_ids(principal: Principal, *, provider: bool = False) -> tuple[list[str], list[str]]:
    """The HSA-ids a staff member or system acts as: (organisations, the employee).

    A system acts for its organisation and its care provider (``organizationHsaId``,
    ``healthCareProviderHsaId``). Staff act for their care unit (``commissionHsaId``)
    and organisation, and for their care provider only with ``provider`` (the
    ``SAMPLAN_STAFF_REACH_PROVIDER`` setting): the patient-data law's care relation is
    the unit's.
    """
    found = [principal.organisation_hsa_id]
    if principal.kind == "system":
        found.append(principal.care_provider_hsa_id)
    if principal.kind == "staff":
        found.append(principal.care_unit_hsa_id)
        if provider:
            found.append(principal.care_provider_hsa_id)
    employee = [principal.employee_hsa_id] if (
        principal.kind == "staff" and principal.employee_hsa_id) else []
    return [h for h in dict.fromkeys(found) if h], employee
