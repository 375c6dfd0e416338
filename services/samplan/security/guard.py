"""The FHIR interactions as one principal may use them: scopes, reach, and the access log.

:class:`AccessControl` is built once per application. It computes a
principal's :class:`~samplan.security.policy.Reach` (SQL in
``store/access.py``) and owns the repository's before-commit hook, which for
every resource version written in a transaction checks the write against the
policy and appends its AuditEvent *in the same transaction* (so transaction
Bundles are checked entry by entry, and a write is never committed unlogged).

:class:`GuardedFhirService` is a :class:`FhirService` for one request. Routes
and the Bundle processor use it exactly like the plain service:

* reads outside reach answer 404 (existence does not leak), missing scopes 403;
* searches get one more filter, on the type's ``patient`` parameter (``_id``
  for Patient), restricting them to the patients in reach; included resources
  and, for patients, ``NOPATIENT`` content are removed afterwards;
* every read, search and history is logged in its own transaction that is
  committed before the method returns, i.e. before the response is sent.

No HTTP here: the API layer builds the principal and passes the client address.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from samplan.fhir.dates import MAX_US, MIN_US
from samplan.fhir.errors import FhirError, Forbidden, Gone, NotFound, PreconditionFailed
from samplan.fhir.identifiers import (
    HSA_SYSTEM,
    PERSONNUMMER_SYSTEM,
    SAMORDNINGSNUMMER_SYSTEM,
)
from samplan.fhir.resource import ID_PATTERN
from samplan.fhir.search import (
    ANY,
    CareTeamValue,
    DateValue,
    Filter,
    ReferenceValue,
    SearchQuery,
    TokenValue,
)
from samplan.fhir.stored import HistoryPage, SearchPage, StoredResource
from samplan.interactions.service import FhirService, WriteResult
from samplan.security import policy
from samplan.security.audit import (
    MINOR_FAILURE,
    Agent,
    AuditInteraction,
    AuditRecord,
)
from samplan.security.policy import AUDIT_TYPE, Operation, Reach, ScopeGrant
from samplan.security.principal import Principal
from samplan.store import audit as audit_store
from samplan.store.access import AccessQueries
from samplan.store.group_commit import GroupCommitter
from samplan.store.repository import Repository, WriteTx

T = TypeVar("T")

_METHOD_OPERATION: dict[str, Operation] = {
    "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete",
}


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who is writing, for the before-commit hook (set around each write transaction).

    ``refused`` collects the entry of a change the hook refused: the transaction
    rolls back, so the entry is written after it, by :meth:`GuardedFhirService._retrying`.
    ``among``: ``reach`` lists only the patients among these (a staff member's
    single write, issue 7); the hook asks again for any other patient a change
    concerns. None: ``reach`` is the whole reach.
    """

    principal: Principal
    reach: Reach
    client_ip: str | None
    refused: list[AuditRecord] = field(default_factory=list)
    among: frozenset[str] | None = None


_CURRENT: ContextVar[RequestContext | None] = ContextVar("samplan_access_context", default=None)


def current_principal() -> Principal | None:
    """Who is writing in the current transaction; None for the service itself."""
    ctx = _CURRENT.get()
    return ctx.principal if ctx is not None else None


class AccessControl:
    """Reach computation and the write hook; one per application."""

    def __init__(self, repo: Repository, *, hook: bool = True, audit: bool = True) -> None:
        """``hook=False``: reach and the log only, no write check (the delivery worker).

        ``audit=False`` (``SAMPLAN_AUDIT_ENABLED=false``, only with auth off): nothing
        is logged; the settings refuse it whenever real callers can come in.
        """
        self.repo = repo
        self.audit = audit
        self.queries = AccessQueries(repo.engine, driver=repo.driver_connection)
        # Reads log through one shared committer: concurrent reads share a commit.
        self._log_committer: GroupCommitter[audit_store.AuditEntry] = GroupCommitter(
            repo, audit_store.append, commit=audit_store.committer(repo)
        )
        if hook and self.before_commit not in repo.before_commit:
            repo.before_commit.append(self.before_commit)

    # ---------------------------------------------------------------- reach

    async def reach_of(
        self,
        principal: Principal,
        *,
        among: Collection[str] | None = None,
        conn: AsyncConnection | None = None,
    ) -> Reach:
        """The patients ``principal`` reaches now (see the policy module's table).

        ``among``: only these patients are looked at (the reach then lists only
        those of them it reaches: enough to decide about resources concerning
        them, cheap for a care provider reaching 100 000 patients). ``conn``:
        ask on that connection (inside a write transaction, to see its changes).
        """
        q = AccessQueries(self.repo.engine, conn) if conn is not None else self.queries
        if principal.kind == "anonymous-dev":
            return Reach(everything=True)
        if principal.kind == "patient":
            own = await self.resolve_patient(principal.patient, q)
            return Reach(patients=frozenset([own]) if own else frozenset())
        today = datetime.now(self.repo.tz).date()
        if principal.kind == "relative":
            return Reach(patients=await self._relative_patients(principal, today, q),
                         read_only=True)
        if among is not None:
            found = await q.staff_reach_among(*_basis_hsa_ids(principal), among)
            if found is not None:  # one round trip: a read by id
                basis = _basis(found.organisations, found.roles,
                               found.practitioners, found.consents, today)
                return replace(basis, patients=found.patients - basis.blocked)
        basis = await self.care_team_basis(principal, q)
        patients = await q.patients_of_care_teams(
            organisations=basis.organisations, roles=basis.roles,
            practitioners=basis.practitioners, among=among,
        )
        return replace(basis, patients=patients - basis.blocked)

    async def care_team_basis(
        self, principal: Principal, queries: AccessQueries | None = None
    ) -> Reach:
        """A staff member's or system's reach without its patient list: the
        organisations, roles and practitioner it acts as, and the patients who
        block one of them (``by_care_team``; the search turns it into a subquery)."""
        q = queries or self.queries
        today = datetime.now(self.repo.tz).date()
        organisation_ids, employee_ids = _basis_hsa_ids(principal)
        at_once = await q.staff_reach_among(organisation_ids, employee_ids, ())
        if at_once is not None:  # one statement instead of four (no patients asked about)
            return _basis(at_once.organisations, at_once.roles, at_once.practitioners,
                          at_once.consents, today)
        organisations = await q.with_identifier("Organization", HSA_SYSTEM, organisation_ids)
        roles = await q.referring("PractitionerRole", "organization", "Organization",
                                  organisations)
        practitioners: frozenset[str] = frozenset()
        if employee_ids:
            practitioners = await q.with_identifier("Practitioner", HSA_SYSTEM, employee_ids)
        blocks = await q.consents_naming([
            ("Organization", organisations), ("PractitionerRole", roles),
            ("Practitioner", practitioners)])
        return _basis(organisations, roles, practitioners, blocks, today)

    async def _relative_patients(
        self, principal: Principal, today: date, q: AccessQueries
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
        """The Patient id for a ``patient`` claim: an id, or a personnummer/samordningsnummer."""
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
                return None  # ambiguous: reach nobody rather than the wrong person
        return claim if ID_PATTERN.match(claim) else None

    async def scoped_reach(
        self,
        principal: Principal,
        grant: ScopeGrant,
        *,
        among: Collection[str] | None = None,
        conn: AsyncConnection | None = None,
    ) -> Reach:
        """:meth:`reach_of`, narrowed to the patient in context for a ``patient/`` grant."""
        reach = await self.reach_of(principal, among=among, conn=conn)
        if grant.patient_context_only and not reach.everything:
            q = AccessQueries(self.repo.engine, conn) if conn is not None else self.queries
            own = await self.resolve_patient(principal.patient, q)
            reach = replace(reach, patients=reach.patients & ({own} if own else set()),
                            by_care_team=False)
        return reach

    # ------------------------------------------------------------ the log

    async def log(self, records: Iterable[AuditRecord]) -> None:
        """Append entries, committed when this returns (group commit with concurrent reads).

        The data is sent only after its entry is durable, so a crash cannot lose
        the entry of something already shown; concurrent callers share one
        commit (store/group_commit.py), so the log does not cap read throughput.
        """
        if self.audit:
            await self._log_committer.submit([r.to_row() for r in records])

    async def before_commit(self, tx: WriteTx) -> None:
        """Check every change of the transaction against the policy, and log it (same tx)."""
        ctx = _CURRENT.get()
        records: list[AuditRecord] = []
        reach = ctx.reach if ctx is not None else None
        befores = [
            _loads(c.previous.content)
            if c.previous is not None and not c.previous.deleted and c.previous.content
            else None
            for c in tx.changes
        ]
        if ctx is not None and ctx.among is not None:
            # the reach was asked among the patients of the resource written: ask again
            # here should a change concern others (the version it replaces, say)
            concerned: set[str] = set()
            for change, before in zip(tx.changes, befores, strict=True):
                for body in (before, change.body):
                    if body is not None:
                        concerned.update(policy.patient_ids(change.resource.resource_type,
                                                            body) or ())
            if any(c.resource.resource_type in GuardedFhirService.REACH_TYPES
                   for c in tx.changes):  # never so by _retrying: a safety net
                reach = await self.reach_of(ctx.principal, conn=tx.conn)
            elif not concerned <= ctx.among:
                reach = await self.reach_of(ctx.principal, among=concerned, conn=tx.conn)
        if ctx is not None and reach is not None:
            reach = policy.grown_by(ctx.principal, reach, [
                (c.resource.resource_type, c.resource.resource_id, c.body)
                for c in tx.changes if c.body is not None
            ])
        for change, before in zip(tx.changes, befores, strict=True):
            stored = change.resource
            rtype = stored.resource_type
            after = change.body
            operation: Operation = _METHOD_OPERATION.get(stored.method, "update")
            if before is None and after is not None:
                operation = "create"
            about = after if after is not None else before
            ids = policy.patient_ids(rtype, about) if about is not None else None
            if ctx is not None:
                try:
                    policy.check_scope(ctx.principal, rtype, operation)
                    policy.check_write(ctx.principal, reach or ctx.reach, rtype, before, after)
                except FhirError as error:
                    ctx.refused.append(AuditRecord(
                        interaction=operation, agent=Agent.of(ctx.principal),
                        outcome=MINOR_FAILURE,
                        outcome_text=f"{error.status}: {error.diagnostics}",
                        patient_id=min(ids) if ids else None, entity_type=rtype,
                        entity_id=stored.resource_id, client_ip=ctx.client_ip,
                    ))
                    raise
            for patient in sorted(ids) if ids else [None]:
                records.append(AuditRecord(
                    interaction=operation,
                    agent=Agent.of(ctx.principal if ctx else None),
                    patient_id=patient,
                    entity_type=rtype,
                    entity_id=stored.resource_id,
                    entity_version=stored.version_id,
                    client_ip=ctx.client_ip if ctx else None,
                ))
        if self.audit:
            await audit_store.append(tx.conn, [r.to_row() for r in records])


class GuardedFhirService(FhirService):
    """The FHIR service as seen by one principal (one instance per request)."""

    #: Staff and system searches restrict to reach by a SQL subquery (``CareTeamValue``);
    #: False sends the list of patient ids instead (as patients and relatives always do).
    reach_as_subquery: bool = True

    def __init__(
        self,
        base: FhirService,
        control: AccessControl,
        principal: Principal,
        *,
        client_ip: str | None = None,
    ) -> None:
        super().__init__(base.repo, tz=base.tz, base_url=base.base_url,
                         default_count=base.default_count, max_count=base.max_count)
        self.control = control
        self.principal = principal
        self.client_ip = client_ip
        self._reach: Reach | None = None
        self._logged: set[int] = set()  # errors whose refusal is already in the log

    # ------------------------------------------------------------ helpers

    async def reach(
        self, grant: ScopeGrant | None = None, *, among: Collection[str | None] | None = None
    ) -> Reach:
        """The caller's reach; with ``among``, only as far as those patients are concerned.

        A read by id concerns one resource's patients: asking whether the caller
        reaches *them* is a few index lookups, while the whole reach of a care
        provider is every patient it serves (100 000 at county scale), once per read.
        """
        if among is not None and self._reach is None and self.principal.kind in (
            "staff", "system"
        ):
            reach = await self.control.reach_of(
                self.principal, among=[p for p in among if p is not None]
            )
        else:
            if self._reach is None:
                self._reach = await self.control.reach_of(self.principal)
            reach = self._reach
        if grant is not None and grant.patient_context_only and not reach.everything:
            own = await self.control.resolve_patient(self.principal.patient)
            reach = replace(reach, patients=reach.patients & ({own} if own else set()),
                            by_care_team=False)
        return reach

    def _record(self, interaction: AuditInteraction, **fields: Any) -> AuditRecord:
        return AuditRecord(interaction=interaction, agent=Agent.of(self.principal),
                           client_ip=self.client_ip, **fields)

    async def _scope(
        self, resource_type: str, operation: Operation, resource_id: str | None = None
    ) -> ScopeGrant:
        try:
            return policy.check_scope(self.principal, resource_type, operation)
        except Forbidden as error:
            await self._log_denied(operation, resource_type, resource_id, error)
            raise

    async def _log_denied(
        self, operation: Operation, resource_type: str, resource_id: str | None,
        error: FhirError, patient_id: str | None = None,
    ) -> None:
        await self.control.log([self._record(
            operation, outcome=MINOR_FAILURE, outcome_text=f"{error.status}: {error.diagnostics}",
            entity_type=resource_type, entity_id=resource_id, patient_id=patient_id,
        )])

    async def _live_body(self, stored: StoredResource) -> dict[str, Any] | None:
        """The body that decides visibility: the current one, or the last before a delete."""
        if not stored.deleted and stored.content:
            return _loads(stored.content)
        version = stored.version_id - 1
        while version >= 1:
            older = await self.repo.vread(stored.resource_type, stored.resource_id, version)
            if older is not None and not older.deleted and older.content:
                return _loads(older.content)
            version -= 1
        return None

    def _visible(self, reach: Reach, resource_type: str, body: dict[str, Any] | None) -> bool:
        if reach.everything:
            return True
        return body is not None and policy.visible(self.principal, reach, resource_type, body)

    # --------------------------------------------------------------- reads

    async def read(self, resource_type: str, resource_id: str) -> StoredResource:
        self.resource_type(resource_type, "read")
        if resource_type == AUDIT_TYPE:
            return await self._read_audit(resource_id)
        grant = await self._scope(resource_type, "read", resource_id)
        missing = NotFound(f"{resource_type}/{resource_id} does not exist.")
        at_once = await self._read_as_staff(resource_type, resource_id, grant)
        if at_once is not None:
            stored, body, reach = at_once
            if stored is None:
                raise missing
            patients = _patients(resource_type, body)
        else:
            stored = await self.repo.read(resource_type, resource_id)
            if stored is None:
                raise missing
            if self.principal.kind == "anonymous-dev" and not self.control.audit:
                # auth and audit off: everything is in reach and nothing is logged,
                # so the body need not even be parsed
                if stored.deleted:
                    raise Gone(f"{resource_type}/{resource_id} was deleted "
                               f"(version {stored.version_id}).", headers={"ETag": stored.etag})
                return stored
            body = await self._live_body(stored)
            patients = _patients(resource_type, body)
            reach = await self.reach(grant, among=patients)
        if not self._visible(reach, resource_type, body):
            await self._log_denied("read", resource_type, resource_id, missing, patients[0])
            raise missing
        if stored.deleted:
            raise Gone(
                f"{resource_type}/{resource_id} was deleted (version {stored.version_id}).",
                headers={"ETag": stored.etag},
            )
        await self.control.log(
            self._record("read", patient_id=p, entity_type=resource_type,
                         entity_id=resource_id, entity_version=stored.version_id)
            for p in patients
        )
        return stored

    async def _read_as_staff(
        self, resource_type: str, resource_id: str, grant: ScopeGrant
    ) -> tuple[StoredResource | None, dict[str, Any] | None, Reach] | None:
        """A staff member's or system's read in one round trip: the row and the
        caller's reach for its patients in one statement (issue 7).

        The statement finds the patients through the ``patient`` index; they are
        used only when they are the patients of the body read (as
        :func:`policy.patient_ids` finds them), else None: ask the usual way, as
        for a deleted resource (decided by an older version) or a ``patient/``
        grant (narrowed to the patient in context).
        """
        if (self.principal.kind not in ("staff", "system") or self._reach is not None
                or grant.patient_context_only):
            return None
        found = await self.control.queries.read_with_staff_reach(
            resource_type, resource_id, *_basis_hsa_ids(self.principal))
        if found is None:
            return None
        stored, facts = found
        if stored is None:
            return None, None, Reach()
        if stored.deleted or not stored.content:
            return None
        body = _loads(stored.content)
        ids = policy.patient_ids(resource_type, body) if body is not None else None
        if (ids or frozenset()) != facts.indexed_patients:
            return None
        today = datetime.now(self.repo.tz).date()
        basis = _basis(facts.organisations, facts.roles, facts.practitioners, facts.consents,
                       today)
        return stored, body, replace(basis, patients=facts.patients - basis.blocked)

    async def vread(self, resource_type: str, resource_id: str, version: str) -> StoredResource:
        self.resource_type(resource_type, "vread")
        grant = await self._scope(resource_type, "vread", resource_id)
        current = await self.repo.read(resource_type, resource_id)
        missing = NotFound(f"Version {version} of {resource_type}/{resource_id} does not exist.")
        if current is None:
            raise missing
        live = await self._live_body(current)
        reach = await self.reach(grant, among=_patients(resource_type, live))
        if not self._visible(reach, resource_type, live):
            await self._log_denied("vread", resource_type, resource_id, missing,
                                   _patients(resource_type, live)[0])
            raise missing
        stored = await super().vread(resource_type, resource_id, version)
        older = _loads(stored.content) if stored.content else None
        if not self._visible(reach, resource_type, older):  # e.g. an older NOPATIENT version
            raise missing
        await self.control.log(
            self._record("vread", patient_id=p, entity_type=resource_type,
                         entity_id=resource_id, entity_version=stored.version_id)
            for p in _patients(resource_type, older)
        )
        return stored

    async def search(
        self, resource_type: str, params: list[tuple[str, str]], *, strict: bool = False
    ) -> tuple[SearchQuery, SearchPage]:
        self.resource_type(resource_type, "search-type")
        if resource_type == AUDIT_TYPE:
            return await self._search_audit(params, strict=strict)
        grant = await self._scope(resource_type, "search")
        query = self.parse_query(resource_type, params, strict=strict)
        by_subquery = (self.reach_as_subquery and self._reach is None
                       and self.principal.kind in ("staff", "system")
                       and not grant.patient_context_only)
        # staff and systems: the care-team criterion goes into the SQL as a subquery and
        # reach is then computed only among the patients the page concerns
        reach = (await self.control.care_team_basis(self.principal) if by_subquery
                 else await self.reach(grant))
        if not reach.everything and policy.has_patient_compartment(resource_type):
            query.filters.append(_reach_filter(resource_type, reach, self.reach_as_subquery))
        page = await self.repo.search(query)
        if by_subquery:
            concerned = {p for m in [*page.matches, *page.includes]
                         for p in _patients(m.resource_type, _body(m)) if p is not None}
            reach = await self.control.reach_of(self.principal, among=concerned)
        kept = [m for m in page.matches if self._visible(reach, resource_type, _body(m))]
        if page.total is not None:
            page.total -= len(page.matches) - len(kept)
        page.matches = kept
        page.includes = [i for i in page.includes if self._may_include(reach, i)]
        await self.control.log(self._search_records(query, page))
        return query, page

    def _may_include(self, reach: Reach, stored: StoredResource) -> bool:
        rtype = stored.resource_type
        if not (policy.scope_grant(self.principal, rtype, "read").granted
                or policy.scope_grant(self.principal, rtype, "search").granted):
            return False
        return self._visible(reach, rtype, _body(stored))

    def _search_records(self, query: SearchQuery, page: SearchPage) -> list[AuditRecord]:
        by_patient: dict[str | None, list[tuple[str, str]]] = {}
        for stored in [*page.matches, *page.includes]:
            for p in _patients(stored.resource_type, _body(stored)):
                by_patient.setdefault(p, []).append((stored.resource_type, stored.resource_id))
        text = f"{query.resource_type}?{urlencode(query.link_params)}"
        if not by_patient:
            by_patient[None] = []
        return [
            self._record("search", patient_id=p, entity_type=query.resource_type,
                         entities=tuple(found), query=text)
            for p, found in by_patient.items()
        ]

    async def history(
        self,
        resource_type: str | None,
        resource_id: str | None,
        *,
        count: int | None,
        since_us: int | None,
        before_seq: int | None,
    ) -> HistoryPage:
        if resource_type is not None:
            self.resource_type(resource_type, "history-instance" if resource_id
                               else "history-type")
            grant: ScopeGrant | None = await self._scope(resource_type, "history", resource_id)
        else:
            grant = None
        reach = await self.reach(grant)
        instance_visible = False
        if resource_type is not None and resource_id is not None:
            current = await self.repo.read(resource_type, resource_id)
            missing = NotFound(f"{resource_type}/{resource_id} does not exist.")
            if current is None:
                raise missing
            live = await self._live_body(current)
            if not self._visible(reach, resource_type, live):
                await self._log_denied("history", resource_type, resource_id, missing,
                                       _patients(resource_type, live)[0])
                raise missing
            instance_visible = True
        page = await super().history(resource_type, resource_id, count=count,
                                     since_us=since_us, before_seq=before_seq)
        if not reach.everything or resource_type is None:
            page.entries = [
                e for e in page.entries
                if policy.scope_grant(self.principal, e.resource_type, "history").granted
                and (self._visible(reach, e.resource_type, _body(e)) if e.content
                     else instance_visible or reach.everything)
            ]
        by_patient: dict[str | None, list[tuple[str, str]]] = {}
        for e in page.entries:
            for p in _patients(e.resource_type, _body(e)):
                by_patient.setdefault(p, []).append((e.resource_type, e.resource_id))
        if not by_patient:
            by_patient[None] = []
        await self.control.log(
            self._record("history", patient_id=p, entity_type=resource_type,
                         entity_id=resource_id, entities=tuple(found))
            for p, found in by_patient.items()
        )
        return page

    # -------------------------------------------------------------- writes

    #: Types whose writes change who reaches what (the facts AccessControl.reach_of reads).
    REACH_TYPES = frozenset({"CareTeam", "Organization", "PractitionerRole", "Practitioner",
                             "Consent", "Patient", "RelatedPerson"})

    async def _retrying(
        self, unit: Callable[[WriteTx], Awaitable[T]], *, writes: dict[str, Any] | None = None
    ) -> T:
        """``writes`` (the one resource the unit writes, when known): a staff member's
        or system's reach is then asked only as far as that resource's patients are
        concerned, one index lookup instead of every patient the caller serves
        (issue 7); the before-commit hook asks again should the version it replaces
        concern other patients."""
        among: frozenset[str] | None = None
        if (writes is not None and self._reach is None
                and self.principal.kind in ("staff", "system")
                and writes.get("resourceType") not in self.REACH_TYPES):
            among = policy.patient_ids(str(writes.get("resourceType")), writes) or frozenset()
            reach = await self.reach(among=among)
        else:
            reach = await self.reach()
        context = RequestContext(self.principal, reach, self.client_ip, among=among)
        token = _CURRENT.set(context)
        try:
            return await super()._retrying(unit, writes=writes)
        except FhirError as error:
            if context.refused:  # the hook refused a change; its tx (and entry) rolled back
                await self.control.log(context.refused[-1:])
                self._logged.add(id(error))
            raise
        finally:
            _CURRENT.reset(token)

    async def _guarded_write(
        self,
        operation: Operation,
        resource_type: str,
        resource_id: str | None,
        write: Callable[[], Awaitable[T]],
    ) -> T:
        await self._scope(resource_type, operation, resource_id)
        try:
            return await write()
        except (Forbidden, NotFound) as error:
            if id(error) not in self._logged:
                await self._log_denied(operation, resource_type, resource_id, error)
            raise

    async def create(
        self, resource_type: str, body: Any, *, if_none_exist: str | None = None
    ) -> WriteResult:
        self.resource_type(resource_type, "create")
        result = await self._guarded_write(
            "create", resource_type, None,
            lambda: super(GuardedFhirService, self).create(
                resource_type, body, if_none_exist=if_none_exist),
        )
        if result.existing:
            reach = await self.reach()
            if not self._visible(reach, resource_type, _body(result.stored)):
                raise PreconditionFailed(
                    "If-None-Exist matches a resource you may not see.", ["If-None-Exist"]
                )
        return result

    async def update(
        self, resource_type: str, resource_id: str, body: Any, *, if_match: str | None = None
    ) -> WriteResult:
        self.resource_type(resource_type, "update")
        return await self._guarded_write(
            "update", resource_type, resource_id,
            lambda: super(GuardedFhirService, self).update(
                resource_type, resource_id, body, if_match=if_match),
        )

    async def patch(
        self, resource_type: str, resource_id: str, body: Any, *, if_match: str | None = None
    ) -> WriteResult:
        self.resource_type(resource_type, "patch")
        return await self._guarded_write(
            "patch", resource_type, resource_id,
            lambda: super(GuardedFhirService, self).patch(
                resource_type, resource_id, body, if_match=if_match),
        )

    async def delete(
        self, resource_type: str, resource_id: str, *, if_match: str | None = None
    ) -> StoredResource | None:
        self.resource_type(resource_type, "delete")

        async def run() -> StoredResource | None:
            reach = await self.reach()
            if not reach.everything:
                # deleting twice answers 204 for the owner; others must not learn it existed
                current = await self.repo.read(resource_type, resource_id)
                if current is not None and not self._visible(
                    reach, resource_type, await self._live_body(current)
                ):
                    raise NotFound(f"{resource_type}/{resource_id} does not exist.")
            return await super(GuardedFhirService, self).delete(
                resource_type, resource_id, if_match=if_match)

        return await self._guarded_write("delete", resource_type, resource_id, run)

    # ------------------------------------------------------------- bundles

    async def check_bundle(self, bundle: Any) -> None:
        """Scope-check every entry of a transaction before anything runs.

        Writes are checked again (with reach) by the before-commit hook. Reads
        inside a transaction bypass this service, so they are allowed only to
        principals that reach everything. A batch needs nothing here: each of
        its entries goes through the guarded methods and fails on its own.
        """
        if not isinstance(bundle, dict) or not isinstance(bundle.get("entry"), list):
            return
        if bundle.get("type") != "transaction":
            return  # a batch answers each entry apart: the guarded methods check them
        reach = await self.reach()
        for i, entry in enumerate(bundle["entry"]):
            request = entry.get("request") if isinstance(entry, dict) else None
            if not isinstance(request, dict) or not isinstance(request.get("url"), str):
                continue  # the Bundle processor reports malformed entries
            method = str(request.get("method", "")).upper()
            path = urlsplit(request["url"].lstrip("/")).path.strip("/").split("/")
            rtype = path[0]
            if method == "GET":
                operation: Operation = "read" if len(path) > 1 and path[1] else "search"
                if len(path) > 2:
                    operation = "history"
            elif method in _METHOD_OPERATION:
                operation = _METHOD_OPERATION[method]
            else:
                continue
            where = f"Bundle.entry[{i}]"
            try:
                await self._scope(rtype, operation)
            except Forbidden as error:
                error.diagnostics = f"{where}: {error.diagnostics}"
                error.expression = [where]
                raise
            if method == "GET" and not reach.everything:
                raise Forbidden(f"{where}: reads inside a transaction are not filtered by "
                                "access rights; send them in a batch instead.", [where])

    # ----------------------------------------------------------- the log

    async def _audit_grant(self, operation: Operation, resource_id: str | None) -> ScopeGrant:
        return await self._scope(AUDIT_TYPE, operation, resource_id)

    async def _read_audit(self, event_id: str) -> StoredResource:
        grant = await self._audit_grant("read", event_id)
        missing = NotFound(f"AuditEvent/{event_id} does not exist.")
        row = await audit_store.read(self.repo.engine, event_id)
        if row is None:
            raise missing
        if not grant.audit_everything:
            reach = await self.reach()
            patient = await audit_store.patient_of(self.repo.engine, event_id)
            if patient is None or not reach.reaches([patient]):
                raise missing
        return StoredResource(AUDIT_TYPE, row.event_id, 1, row.recorded_us, False, row.content)

    async def _search_audit(
        self, params: list[tuple[str, str]], *, strict: bool
    ) -> tuple[SearchQuery, SearchPage]:
        grant = await self._audit_grant("search", None)
        query = self.parse_query(AUDIT_TYPE, params, strict=strict)
        criteria = _audit_criteria(query)
        if not grant.audit_everything:
            own = (await self.reach()).patients
            asked = set(criteria.patients) if criteria.patients is not None else set(own)
            criteria = replace(criteria, patients=tuple(sorted(asked & own)))
        rows, total = await audit_store.search(self.repo.engine, criteria)
        matches = [StoredResource(AUDIT_TYPE, r.event_id, 1, r.recorded_us, False, r.content)
                   for r in rows]
        return query, SearchPage(matches, [], total, None, None)


# --------------------------------------------------------------------- helpers


def _basis_hsa_ids(principal: Principal) -> tuple[list[str], list[str]]:
    """The HSA-ids a staff member or system acts as: (organisations, the employee)."""
    hsa_ids = [principal.organisation_hsa_id]
    if principal.kind == "staff":
        hsa_ids += [principal.care_provider_hsa_id, principal.care_unit_hsa_id]
    employee = [principal.employee_hsa_id] if (
        principal.kind == "staff" and principal.employee_hsa_id) else []
    return [h for h in hsa_ids if h], employee


def _basis(
    organisations: frozenset[str], roles: frozenset[str],
    practitioners: frozenset[str], blocks: list[dict[str, Any]], today: date,
) -> Reach:
    """The care-team basis of a reach; a patient's spärr overrides the care team."""
    blocked: frozenset[str] = frozenset()
    if blocks:
        actors = [("Organization", organisations), ("PractitionerRole", roles),
                  ("Practitioner", practitioners)]
        blocked = policy.blocked_patients(
            blocks, [(kind, i) for kind, ids in actors for i in ids], today
        )
    return Reach(organisations=organisations, roles=roles, practitioners=practitioners,
                 blocked=blocked, by_care_team=True)


def _loads(content: bytes) -> dict[str, Any] | None:
    body = orjson.loads(content)
    return body if isinstance(body, dict) else None


def _body(stored: StoredResource) -> dict[str, Any] | None:
    return _loads(stored.content) if stored.content else None


def _patients(resource_type: str, body: dict[str, Any] | None) -> list[str | None]:
    """The patients to log an access under (``[None]``: not about a patient)."""
    ids = policy.patient_ids(resource_type, body) if body is not None else None
    found: list[str | None] = [*sorted(ids)] if ids else [None]
    return found


def _reach_filter(resource_type: str, reach: Reach, subquery: bool = True) -> Filter:
    name = "_id" if resource_type == "Patient" else "patient"
    if subquery and reach.by_care_team:
        value = CareTeamValue(
            organisations=tuple(sorted(reach.organisations)), roles=tuple(sorted(reach.roles)),
            practitioners=tuple(sorted(reach.practitioners)), blocked=tuple(sorted(reach.blocked)),
        )
        return Filter(name, "reference", (value,))
    ids = sorted(reach.patients) or [policy.NO_PATIENT]
    if resource_type == "Patient":
        return Filter("_id", "token", tuple(TokenValue(ANY, i) for i in ids))
    return Filter("patient", "reference", tuple(ReferenceValue("Patient", i) for i in ids))


def _audit_criteria(query: SearchQuery) -> audit_store.AuditSearch:
    patients: set[str] | None = None
    agents: set[str] | None = None
    recorded: list[tuple[tuple[int, int], ...]] = []
    tokens: dict[str, set[str]] = {}
    for flt in query.filters:
        if flt.name in ("patient", "agent"):
            values = set()
            for v in flt.values:
                if isinstance(v, ReferenceValue):
                    values.add(v.target_id)
                    if v.target_type:
                        values.add(f"{v.target_type}/{v.target_id}")
            if flt.name == "patient":
                patients = values if patients is None else patients & values
            else:
                agents = values if agents is None else agents & values
        elif flt.type == "date":
            recorded.append(tuple(_span(v) for v in flt.values if isinstance(v, DateValue)))
        elif flt.type == "token":
            codes = {v.code for v in flt.values if isinstance(v, TokenValue) and v.code}
            tokens[flt.name] = tokens[flt.name] & codes if flt.name in tokens else codes
    return audit_store.AuditSearch(
        patients=tuple(sorted(patients)) if patients is not None else None,
        agents=tuple(sorted(agents)) if agents is not None else None,
        recorded=tuple(g for g in recorded if g),
        actions=_maybe(tokens.get("action")),
        subtypes=_maybe(tokens.get("subtype")),
        outcomes=_maybe(tokens.get("outcome")),
        ids=_maybe(tokens.get("_id")),
        count=query.count,
    )


def _maybe(values: set[str] | None) -> tuple[str, ...] | None:
    return tuple(sorted(values)) if values is not None else None


def _span(v: DateValue) -> tuple[int, int]:
    """The instants a ``recorded`` value may take to match (search.html#prefix, for a point)."""
    if v.prefix in ("gt", "sa"):
        return v.high + 1, MAX_US
    if v.prefix == "ge":
        return v.low, MAX_US
    if v.prefix in ("lt", "eb"):
        return MIN_US, v.low - 1
    if v.prefix == "le":
        return MIN_US, v.high
    return v.low, v.high  # eq (ne is read as eq: rarely useful on a log)
