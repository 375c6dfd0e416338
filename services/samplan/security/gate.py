"""The gate: every access to patient data made for a request passes here.

One :class:`Gate` per application holds the FHIR service (``interactions/``) and
the reach queries; nothing above ``security/`` reaches the store or that service
any other way (``make lint`` holds it with import-linter contracts). For each
request the gate gives an :class:`Access`: the FHIR interactions as that
principal may use them. It applies, on every path:

* **scopes**: a missing scope is a 403 (``insufficient_scope``), logged;
* **reach** (``reach.py``, SQL defined once in ``store/access.py``): outside it a
  resource does not exist (404, never 403, and the same message as a missing id);
  searches carry reach into the SQL, so totals and paging see only what may be seen;
* **spärr**: a patient's block overrides any CareTeam, also one written in the
  same transaction;
* **NOPATIENT**: whole resources are left out for patients and relatives in SQL,
  inline labels and references to hidden resources are removed from everything
  they get (``redaction.py``);
* **the access log**: every read, search, history, write, operation and
  notification leaves its entries; reads are committed before the data is sent,
  writes in their own transaction (``writes.py``).

Writes are made with an explicit writer (:class:`~samplan.security.writes.TxGuard`)
passed to the store: composition, not a subclass of the FHIR service. Domain
operations (``$import-note``, the patient's additions) run as units of work on a
:class:`GuardedTx`, which offers only guarded reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from samplan.fhir.dates import MAX_US, MIN_US
from samplan.fhir.errors import BadRequest, FhirError, Forbidden, Gone, Issue, NotFound
from samplan.fhir.registry import Interaction, ResourceType
from samplan.fhir.search import (
    ANY,
    CareTeamValue,
    DateValue,
    Filter,
    ReferenceValue,
    SearchQuery,
    TokenValue,
    single_identifier,
)
from samplan.fhir.stored import HistoryPage, SearchPage, StoredResource
from samplan.interactions import conformance as stored_conformance
from samplan.interactions.service import FhirService, WriteResult
from samplan.interactions.transaction import BundleProcessor
from samplan.security import policy, redaction
from samplan.security.audit import MINOR_FAILURE, Agent, AuditInteraction, AuditRecord
from samplan.security.commit import CommitHook, CommitView
from samplan.security.disclosure import Disclosure
from samplan.security.policy import AUDIT_TYPE, Operation, Reach, ScopeGrant
from samplan.security.principal import Principal
from samplan.security.reach import ReachResolver, hsa_ids
from samplan.security.writes import REACH_TYPES, TxGuard, WriterContext, loads, patients_of
from samplan.settings import Settings
from samplan.store import agreement_queries, migrate
from samplan.store import audit as audit_store
from samplan.store.access import AccessQueries
from samplan.store.agreement_queries import AgreementRows
from samplan.store.database import Timeouts, create_engine, seed_sqlite_statistics
from samplan.store.group_commit import GroupCommitter
from samplan.store.indicators import IndicatorQueries
from samplan.store.repository import Repository, WriteTx

T = TypeVar("T")

_METHOD_OPERATION: dict[str, Operation] = {
    "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_NOPATIENT_FILTER = Filter("_security", "token", (
    TokenValue(redaction.NOPATIENT_SYSTEM, redaction.NOPATIENT_CODE),), modifier="not")


def migrate_schema(database_url: str) -> str:
    """Bring the database to this code's schema (``samplan migrate``); what was done."""
    return migrate.upgrade_reporting(database_url).message()


async def open_gate(settings: Settings, *, pool_size: int | None = None) -> Gate:
    """The gate over the configured database: engine, store and FHIR service behind it.

    Call it only once the configuration is known to be safe (production refuses
    development keys before this, so not even an SQLite file is made for them).
    """
    engine = create_engine(
        settings.database_url, pool_size=pool_size or settings.database_pool_size,
        timeouts=Timeouts(settings.database_connect_timeout, settings.database_pool_timeout))
    await seed_sqlite_statistics(engine)
    tz = ZoneInfo(settings.timezone)
    repo = Repository(engine, tz=tz, base_url=settings.base_url)
    service = FhirService(repo, tz=tz, base_url=settings.base_url,
                          default_count=settings.default_page_size,
                          max_count=settings.max_page_size)
    return Gate(service, audit=settings.audit_enabled,
                provider_units=settings.staff_reach_provider)


class Gate:
    """The one way to patient data; one per application."""

    def __init__(self, service: FhirService, *, audit: bool = True,
                 provider_units: bool = False) -> None:
        """``audit=False`` (``SAMPLAN_AUDIT_ENABLED=false``, only with auth off): nothing
        is logged; the settings refuse it whenever real callers can come in.
        ``provider_units``: staff also reach through the units under their care provider."""
        repo = service.repo
        self.service = service
        self.audit = audit
        self.queries = AccessQueries(repo.engine, driver=repo.driver_connection)
        self.resolver = ReachResolver(self.queries, service.tz, provider_units=provider_units)
        # The follow-up counts (security/indicators.py decides who is counted).
        self.indicators = IndicatorQueries(repo.engine)
        # Reads log through one shared committer: concurrent reads share a commit.
        self._log_committer: GroupCommitter[audit_store.AuditEntry] = GroupCommitter(
            repo, audit_store.append, commit=audit_store.committer(repo))

    @property
    def tz(self) -> Any:
        return self.service.tz

    @property
    def base_url(self) -> str:
        return self.service.base_url

    @property
    def engine(self) -> AsyncEngine:
        """The database engine, for readiness probes and the service's own bookkeeping."""
        return self.service.repo.engine

    @property
    def is_sqlite(self) -> bool:
        return self.service.repo.is_sqlite

    async def close(self) -> None:
        await self.service.repo.close()
        await self.service.repo.engine.dispose()

    @asynccontextmanager
    async def service_tx(self) -> AsyncIterator[ServiceTx]:
        """A write transaction of the service itself (the delivery worker's bookkeeping):
        its own tables on ``conn``, and resources written as the service (logged so)."""
        async with self.service.repo.transaction(self.as_service().writer()) as tx:
            yield ServiceTx(self, tx)

    def access(self, principal: Principal, *, client_ip: str | None = None,
               base_url: str | None = None) -> Access:
        """The FHIR interactions as ``principal`` may use them, for one request."""
        return Access(self, principal, client_ip=client_ip, base_url=base_url)

    def as_service(self) -> Access:
        """The service itself (demo load, conformance resources, the delivery worker's own
        bookkeeping): reaches everything; its writes are logged with the agent ``samplan``,
        its reads are not requests and are not logged."""
        return Access(self, None)

    def add_commit_hook(self, hook: CommitHook) -> None:
        """Run ``hook`` at the end of every write transaction, after the writer's checks and
        log (the subscription matcher); it sees a :class:`CommitView`, not the store."""

        async def run(tx: WriteTx) -> None:
            await hook(CommitView(self, tx))

        run.hook = hook  # type: ignore[attr-defined]
        repo = self.service.repo
        repo.before_commit[:] = [h for h in repo.before_commit
                                 if getattr(h, "hook", None) is not hook]
        repo.before_commit.append(run)

    def remove_commit_hook(self, hook: CommitHook) -> None:
        repo = self.service.repo
        repo.before_commit[:] = [h for h in repo.before_commit
                                 if getattr(h, "hook", None) is not hook]

    async def sync_conformance(self, resources: list[dict[str, Any]]) -> int:
        """Store our conformance resources that are new or changed (written by the service)."""
        return await stored_conformance.sync(self.service, resources, self.as_service().writer)

    def on_audit_failure(self, listener: Callable[[BaseException], None]) -> None:
        """Tell ``listener`` of every access-log append that fails, whatever path wrote it
        (the metrics count them); once per listener."""
        if listener not in audit_store.failure_listeners:
            audit_store.failure_listeners.append(listener)

    async def schema_revisions(self) -> tuple[str | None, str | None]:
        """The database's migration revision and the one this code needs (readiness)."""
        return await migrate.current_revision(self.engine), migrate.head_revision()

    async def log(self, records: Iterable[AuditRecord]) -> None:
        """Append entries, committed when this returns (group commit with concurrent reads).

        The data is sent only after its entry is durable, so a crash cannot lose the
        entry of something already shown.
        """
        if self.audit:
            rows = [r.to_row() for r in records]
            if rows:
                await self._log_committer.submit(rows)


@dataclass(slots=True)
class Access:
    """The FHIR service as one principal may use it (one per request)."""

    gate: Gate
    principal: Principal | None
    client_ip: str | None = None
    base_url: str | None = None
    _guards: list[TxGuard] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.base_url is None:
            self.base_url = self.gate.base_url

    # -------------------------------------------------------------- the rules

    @property
    def tz(self) -> Any:
        return self.gate.tz

    @property
    def service(self) -> FhirService:
        return self.gate.service

    @property
    def max_count(self) -> int:
        return self.gate.service.max_count

    def resource_type(self, name: str, interaction: Interaction | None = None) -> ResourceType:
        return self.gate.service.resource_type(name, interaction)

    def parse_query(self, resource_type: str, params: list[tuple[str, str]], *,
                    strict: bool = False) -> SearchQuery:
        return self.gate.service.parse_query(resource_type, params, strict=strict)

    @property
    def _own(self) -> Principal:
        """The principal of a request (never the service's own access)."""
        assert self.principal is not None
        return self.principal

    def _unrestricted(self) -> bool:
        return self.principal is None or self.principal.kind == "anonymous-dev"

    def _hides(self) -> bool:
        return self.principal is not None and policy.hides_professional_content(self.principal)

    def _record(self, interaction: AuditInteraction, **fields: Any) -> AuditRecord:
        return AuditRecord(interaction=interaction, agent=Agent.of(self.principal),
                           client_ip=self.client_ip, **fields)

    async def _log(self, records: Iterable[AuditRecord]) -> None:
        if self.principal is not None:
            await self.gate.log(records)

    async def _scope(self, resource_type: str, operation: Operation,
                     resource_id: str | None = None, patient_id: str | None = None
                     ) -> ScopeGrant:
        if self.principal is None:
            return ScopeGrant(True)
        try:
            return policy.check_scope(self.principal, resource_type, operation)
        except FhirError as error:
            await self._log_denied(operation, resource_type, resource_id, error, patient_id)
            raise

    async def _log_denied(self, operation: Operation, resource_type: str,
                          resource_id: str | None, error: FhirError,
                          patient_id: str | None = None) -> None:
        await self._log([self._record(
            operation, outcome=MINOR_FAILURE, outcome_text=f"{error.status}: {error.diagnostics}",
            entity_type=resource_type, entity_id=resource_id, patient_id=patient_id)])

    async def reach(self, patients: Iterable[str | None], grant: ScopeGrant | None = None
                    ) -> Reach:
        """The caller's reach as far as ``patients`` go."""
        if self._unrestricted():
            return Reach(everything=True)
        return await self.gate.resolver.among(self._own, list(patients), grant=grant)

    def _visible(self, reach: Reach, resource_type: str, body: dict[str, Any] | None) -> bool:
        if reach.everything or self.principal is None:
            return True
        return body is not None and policy.visible(self.principal, reach, resource_type, body)

    # ---------------------------------------------------------- what is shown

    async def hidden_references(self, bodies: Iterable[dict[str, Any] | None]) -> frozenset[str]:
        """``Type/id`` of the resources these bodies refer to that are hidden from this caller
        (``NOPATIENT`` for a patient or relative): their references are removed too."""
        if not self._hides():
            return frozenset()
        referred = {key for body in bodies if body is not None
                    for key in redaction.references(body)}
        return frozenset(f"{t}/{i}" for t, i in await self.gate.queries.labelled(
            referred, redaction.NOPATIENT_SYSTEM, redaction.NOPATIENT_CODE))

    async def present_all(self, stored: Sequence[StoredResource]) -> list[StoredResource]:
        """Resources as this caller may be shown them: for patients and relatives without
        inline ``NOPATIENT`` elements and references to hidden resources."""
        if not self._hides():
            return list(stored)
        hidden = await self.hidden_references(loads(s.content) for s in stored)
        shown: list[StoredResource] = []
        for s in stored:
            if not s.content:
                shown.append(s)
                continue
            content = redaction.redact_content(s.content, hidden)
            shown.append(s if content is s.content else replace(s, content=content or b"{}"))
        return shown

    async def present_one(self, stored: StoredResource) -> StoredResource:
        return (await self.present_all([stored]))[0]

    def present(self, stored: StoredResource) -> StoredResource:
        """A conditional match in a write's answer: only inline labels can be removed here
        without a lookup (the match itself was judged visible)."""
        if not self._hides() or not stored.content:
            return stored
        content = redaction.redact_content(stored.content)
        return stored if content is stored.content else replace(stored, content=content or b"{}")

    def redact(self, resource_type: str, body: dict[str, Any],
               hidden: Iterable[str] = ()) -> dict[str, Any] | None:
        """:func:`redaction.for_patient` for this caller (the body itself for staff)."""
        del resource_type
        return redaction.for_patient(body, hidden) if self._hides() else body

    # ------------------------------------------------------------------ reads

    async def read(self, resource_type: str, resource_id: str) -> StoredResource:
        self.resource_type(resource_type, "read")
        if resource_type == AUDIT_TYPE:
            return await self._read_audit(resource_id)
        missing = NotFound(f"{resource_type}/{resource_id} does not exist.")
        if self.principal is None:
            return await self.service.read(resource_type, resource_id)
        grant = await self._scope(resource_type, "read", resource_id)
        at_once = await self._read_as_staff(resource_type, resource_id, grant)
        if at_once is not None:
            stored, body, reach = at_once
            if stored is None:
                raise missing
        else:
            stored = await self.service.repo.read(resource_type, resource_id)
            if stored is None:
                raise missing
            if self.principal.kind == "anonymous-dev" and not self.gate.audit:
                # auth and audit off: everything is in reach and nothing is logged,
                # so the body need not even be parsed
                if stored.deleted:
                    raise Gone(f"{resource_type}/{resource_id} was deleted "
                               f"(version {stored.version_id}).", headers={"ETag": stored.etag})
                return stored
            body = await self.service.live_body(stored)
            reach = await self.reach(patients_of(resource_type, body), grant)
        patients = patients_of(resource_type, body)
        if not self._visible(reach, resource_type, body):
            await self._log_denied("read", resource_type, resource_id, missing, patients[0])
            raise missing
        if stored.deleted:
            raise Gone(f"{resource_type}/{resource_id} was deleted (version {stored.version_id}).",
                       headers={"ETag": stored.etag})
        await self._log(
            self._record("read", patient_id=p, entity_type=resource_type,
                         entity_id=resource_id, entity_version=stored.version_id)
            for p in patients)
        return await self.present_one(stored) if self._hides() else stored

    async def _read_as_staff(
        self, resource_type: str, resource_id: str, grant: ScopeGrant
    ) -> tuple[StoredResource | None, dict[str, Any] | None, Reach] | None:
        """A staff member's or system's read in one round trip: the row and the caller's
        reach for its patients in one statement (issue 7). None: ask the usual way (the
        index's patients differ from the body's, a deletion, a ``patient/`` grant)."""
        principal = self._own
        if principal.kind not in ("staff", "system") or grant.patient_context_only:
            return None
        stored, facts = await self.gate.resolver.read_with_reach(
            principal, resource_type, resource_id)
        if stored is None:
            return None, None, Reach()
        if stored.deleted or not stored.content:
            return None
        body = loads(stored.content)
        ids = policy.patient_ids(resource_type, body) if body is not None else None
        if (ids or frozenset()) != facts.indexed_patients:
            return None
        return stored, body, self.gate.resolver.from_facts(facts)

    async def vread(self, resource_type: str, resource_id: str, version: str) -> StoredResource:
        self.resource_type(resource_type, "vread")
        if self.principal is None:
            return await self.service.vread(resource_type, resource_id, version)
        grant = await self._scope(resource_type, "vread", resource_id)
        current = await self.service.repo.read(resource_type, resource_id)
        missing = NotFound(f"Version {version} of {resource_type}/{resource_id} does not exist.")
        if current is None:
            raise missing
        live = await self.service.live_body(current)
        reach = await self.reach(patients_of(resource_type, live), grant)
        if not self._visible(reach, resource_type, live):
            await self._log_denied("vread", resource_type, resource_id, missing,
                                   patients_of(resource_type, live)[0])
            raise missing
        stored = await self.service.vread(resource_type, resource_id, version)
        older = loads(stored.content)
        if not self._visible(reach, resource_type, older):  # e.g. an older NOPATIENT version
            raise missing
        await self._log(
            self._record("vread", patient_id=p, entity_type=resource_type,
                         entity_id=resource_id, entity_version=stored.version_id)
            for p in patients_of(resource_type, older))
        return await self.present_one(stored)

    def _restrict(self, query: SearchQuery, reach: Reach) -> None:
        """Put the caller's rights into the search's SQL: reach, owners, NOPATIENT."""
        if reach.everything or self.principal is None:
            return
        rtype = query.resource_type
        if policy.has_patient_compartment(rtype):
            query.filters.append(_reach_filter(rtype, reach))
        if rtype in policy.OWNED_TYPES:
            codes = sorted(policy.owner_codes(self.principal)) or [policy.NO_PATIENT]
            query.filters.append(Filter("_tag", "token", tuple(
                TokenValue(policy.OWNER_SYSTEM, c) for c in codes)))
        if self._hides():
            query.filters.append(_NOPATIENT_FILTER)

    async def _search_reach(self, grant: ScopeGrant) -> Reach:
        if self._unrestricted():
            return Reach(everything=True)
        return await self.gate.resolver.basis(self._own, grant=grant)

    async def search(
        self, resource_type: str, params: list[tuple[str, str]], *, strict: bool = False
    ) -> tuple[SearchQuery, SearchPage]:
        self.resource_type(resource_type, "search-type")
        if resource_type == AUDIT_TYPE:
            return await self._search_audit(params, strict=strict)
        query = self.parse_query(resource_type, params, strict=strict)
        grant = await self._scope(resource_type, "search",
                                  patient_id=_asked_patient(query))
        basis = await self._search_reach(grant)
        self._restrict(query, basis)
        page = await self.service.search_query(query)
        return query, await self._screen_page(query, page, basis)

    async def _screen_page(self, query: SearchQuery, page: SearchPage, basis: Reach,
                           *, guard: TxGuard | None = None, tx: WriteTx | None = None
                           ) -> SearchPage:
        """What a search found, as the caller may see it, logged (in ``tx`` when given)."""
        if self.principal is None:
            return page
        reach = basis
        if not basis.everything and basis.by_care_team or guard is not None:
            concerned = {p for m in [*page.matches, *page.includes]
                         for p in patients_of(m.resource_type, loads(m.content))}
            if guard is not None and tx is not None and not self._unrestricted():
                reach = await guard.reach(tx, concerned)
            elif not basis.everything:
                reach = await self.reach(concerned)
        rtype = query.resource_type
        kept = [m for m in page.matches if self._visible(reach, rtype, loads(m.content))]
        if page.total is not None:
            page.total -= len(page.matches) - len(kept)
        page.matches = kept
        page.includes = [i for i in page.includes if self._may_include(reach, i)]
        records = self._search_records(query, page)
        if guard is not None:
            guard.disclosed.extend(records)
        else:
            await self._log(records)
        if self._hides():
            shown = await self.present_all([*page.matches, *page.includes])
            page.matches, page.includes = shown[:len(page.matches)], shown[len(page.matches):]
        return page

    def _may_include(self, reach: Reach, stored: StoredResource) -> bool:
        rtype = stored.resource_type
        principal = self._own
        if not (policy.scope_grant(principal, rtype, "read").granted
                or policy.scope_grant(principal, rtype, "search").granted):
            return False
        return self._visible(reach, rtype, loads(stored.content))

    def _search_records(self, query: SearchQuery, page: SearchPage) -> list[AuditRecord]:
        by_patient: dict[str | None, list[tuple[str, str]]] = {}
        for stored in [*page.matches, *page.includes]:
            for p in patients_of(stored.resource_type, loads(stored.content)):
                by_patient.setdefault(p, []).append((stored.resource_type, stored.resource_id))
        for p in _asked_patients(query):  # an empty answer about a patient is theirs too
            by_patient.setdefault(p, [])
        text = f"{query.resource_type}?{urlencode(query.link_params)}"
        if not by_patient:
            by_patient[None] = []
        if None in by_patient and len(by_patient) > 1 and not by_patient[None]:
            del by_patient[None]
        return [
            self._record("search", patient_id=p, entity_type=query.resource_type,
                         entities=tuple(found), query=text)
            for p, found in by_patient.items()
        ]

    async def history(
        self, resource_type: str | None, resource_id: str | None, *,
        count: int | None, since_us: int | None, before_seq: int | None,
    ) -> HistoryPage:
        if resource_type is not None:
            self.resource_type(resource_type, "history-instance" if resource_id
                               else "history-type")
        if self.principal is None:
            return await self.service.history(resource_type, resource_id, count=count,
                                              since_us=since_us, before_seq=before_seq)
        grant = (await self._scope(resource_type, "history", resource_id)
                 if resource_type is not None else None)
        instance_visible = False
        if resource_type is not None and resource_id is not None:
            current = await self.service.repo.read(resource_type, resource_id)
            missing = NotFound(f"{resource_type}/{resource_id} does not exist.")
            if current is None:
                raise missing
            live = await self.service.live_body(current)
            reach = await self.reach(patients_of(resource_type, live), grant)
            if not self._visible(reach, resource_type, live):
                await self._log_denied("history", resource_type, resource_id, missing,
                                       patients_of(resource_type, live)[0])
                raise missing
            instance_visible = True
        page = await self.service.history(resource_type, resource_id, count=count,
                                          since_us=since_us, before_seq=before_seq)
        concerned = {p for e in page.entries for p in patients_of(e.resource_type,
                                                                  loads(e.content))}
        reach = await self.reach(concerned, grant)
        if not reach.everything or resource_type is None:
            page.entries = [
                e for e in page.entries
                if (self._unrestricted()
                    or policy.scope_grant(self._own, e.resource_type, "history").granted)
                and (self._visible(reach, e.resource_type, loads(e.content)) if e.content
                     else instance_visible or reach.everything
                     or self._deletion_visible(e, page.entries, reach))
            ]
        by_patient: dict[str | None, list[tuple[str, str]]] = {}
        for e in page.entries:
            for p in patients_of(e.resource_type, loads(e.content)):
                by_patient.setdefault(p, []).append((e.resource_type, e.resource_id))
        if not by_patient:
            by_patient[None] = []
        await self._log(
            self._record("history", patient_id=p, entity_type=resource_type,
                         entity_id=resource_id, entities=tuple(found))
            for p, found in by_patient.items())
        page.entries = await self.present_all(page.entries)
        return page

    def _deletion_visible(self, deletion: StoredResource, entries: list[StoredResource],
                          reach: Reach) -> bool:
        """A deletion in a type or system history shows when the version before it, on the
        same page, may be seen."""
        for e in entries:
            if (e.resource_type, e.resource_id) == (deletion.resource_type, deletion.resource_id) \
                    and e.version_id == deletion.version_id - 1 and e.content:
                return self._visible(reach, e.resource_type, loads(e.content))
        return False

    # ----------------------------------------------------------------- writes

    def writer(self) -> TxGuard:
        """The writer of one write transaction attempt (``writes.py``)."""
        guard = TxGuard(WriterContext(self.principal, self.client_ip, self.gate.resolver,
                                      audit=self.gate.audit, stamp=policy.stamp_owner))
        self._guards.append(guard)
        return guard

    async def _writing(self, operation: Operation, resource_type: str,
                       resource_id: str | None, write: Callable[[], Awaitable[T]]) -> T:
        """Run a write; log what its writer refused (its transaction rolled back)."""
        await self._scope(resource_type, operation, resource_id)
        start = len(self._guards)
        try:
            return await write()
        except FhirError:
            await self._log_refused(start)
            raise

    async def _log_refused(self, start: int) -> None:
        refused = [r for g in self._guards[start:] for r in g.refused]
        if refused:
            await self._log(refused[-1:])

    async def create(self, resource_type: str, body: Any, *, if_none_exist: str | None = None
                     ) -> WriteResult:
        self.resource_type(resource_type, "create")
        result = await self._writing("create", resource_type, None, lambda: self.service.create(
            resource_type, body, writer=self.writer, if_none_exist=if_none_exist))
        if result.existing:
            result.stored = self.present(result.stored)
        return result

    async def update(self, resource_type: str, resource_id: str, body: Any, *,
                     if_match: str | None = None) -> WriteResult:
        self.resource_type(resource_type, "update")
        return await self._writing("update", resource_type, resource_id,
                                   lambda: self.service.update(resource_type, resource_id, body,
                                                               writer=self.writer,
                                                               if_match=if_match))

    async def patch(self, resource_type: str, resource_id: str, body: Any, *,
                    if_match: str | None = None) -> WriteResult:
        self.resource_type(resource_type, "patch")
        return await self._writing("patch", resource_type, resource_id,
                                   lambda: self.service.patch(resource_type, resource_id, body,
                                                              writer=self.writer,
                                                              if_match=if_match))

    async def delete(self, resource_type: str, resource_id: str, *,
                     if_match: str | None = None) -> StoredResource | None:
        self.resource_type(resource_type, "delete")
        return await self._writing("delete", resource_type, resource_id,
                                   lambda: self.service.delete(resource_type, resource_id,
                                                               writer=self.writer,
                                                               if_match=if_match))

    # ---------------------------------------------------------------- bundles

    async def bundle(self, body: Any, *, return_representation: bool) -> bytes:
        """A batch or transaction Bundle: each entry through this gate."""
        assert self.base_url is not None
        processor = BundleProcessor(self.service, self, base_url=self.base_url,
                                    return_representation=return_representation)
        start = len(self._guards)
        try:
            return await processor.process(body)
        except FhirError:
            await self._log_refused(start)
            raise

    async def check_entries(self, entries: Sequence[tuple[int, str, str]]) -> None:
        """Scope-check every entry of a transaction before anything runs."""
        if self.principal is None:
            return
        for index, method, url in entries:
            path = urlsplit(url.lstrip("/")).path.strip("/").split("/")
            rtype = path[0]
            operation: Operation
            if method == "GET":
                operation = "read" if len(path) > 1 and path[1] else "search"
                if len(path) > 2:
                    operation = "history"
            else:
                operation = _METHOD_OPERATION[method]
            where = f"Bundle.entry[{index}]"
            if rtype == AUDIT_TYPE:
                raise BadRequest(f"{where}: the access log is not read or written in a "
                                 "transaction.", [f"{where}.request.url"])
            try:
                await self._scope(rtype, operation)
            except Forbidden as error:
                error.diagnostics = f"{where}: {error.diagnostics}"
                error.expression = [where]
                raise

    async def read_in(self, tx: WriteTx, resource_type: str, resource_id: str
                      ) -> StoredResource:
        """A read inside a transaction (a ``GET`` entry): guarded, logged with its writes."""
        self.resource_type(resource_type, "read")
        guard = self._guard_of(tx)
        missing = NotFound(f"{resource_type}/{resource_id} does not exist.")
        found = await tx.read_many([(resource_type, resource_id)])
        stored = found[0] if found else None
        body = loads(stored.content) if stored is not None else None
        patients = patients_of(resource_type, body)
        if stored is None:
            raise guard.refuse(missing, "read", resource_type, resource_id)
        if not self._unrestricted():
            reach = await guard.reach(tx, patients)
            if not self._visible(reach, resource_type, body):
                raise guard.refuse(missing, "read", resource_type, resource_id, patients[0])
        guard.disclosed.extend(
            guard.record("read", patient_id=p, entity_type=resource_type,
                         entity_id=resource_id, entity_version=stored.version_id)
            for p in patients)
        return await self.present_one(stored)

    async def search_in(self, tx: WriteTx, resource_type: str, params: list[tuple[str, str]]
                        ) -> tuple[SearchQuery, SearchPage]:
        """A search inside a transaction: guarded, logged with its writes."""
        self.resource_type(resource_type, "search-type")
        query = self.parse_query(resource_type, params)
        return query, await self._search_in(tx, query)

    async def _search_in(self, tx: WriteTx, query: SearchQuery) -> SearchPage:
        basis = await self._search_reach(ScopeGrant(True)) if self.principal else Reach(
            everything=True)
        self._restrict(query, basis)
        page = await tx.search(query)
        if self.principal is None:
            return page
        return await self._screen_page(query, page, basis, guard=self._guard_of(tx), tx=tx)

    def _guard_of(self, tx: WriteTx) -> TxGuard:
        guard = tx.writer
        assert isinstance(guard, TxGuard), "a transaction of this gate has its TxGuard"
        return guard

    # ----------------------------------------------------------- units of work

    async def run(self, unit: Callable[[GuardedTx], Awaitable[T]], *,
                  contribution: Contribution | None = None) -> T:
        """Run a domain operation's unit of work in one write transaction, retried on a
        conflict; every read in it is guarded and every write checked (``writes.py``).

        ``contribution``: the patient's own additions (``$add-goal`` and friends): a
        patient or relative may then write the contribution's types about that patient,
        with the write scopes for them; what the additions may change is the domain's rule.
        """
        if contribution is not None:
            await self._scope(*contribution.needs, patient_id=contribution.patient_id)
        start = len(self._guards)

        def writer() -> TxGuard:
            guard = self.writer()
            guard.contribution = contribution
            return guard

        try:
            return await self.service.run(lambda tx: unit(GuardedTx(self, tx)), writer)
        except FhirError:
            await self._log_refused(start)
            raise

    # ------------------------------------------------------- the agreement at once

    async def gather_agreement(
        self, patient_id: str, *, plan_status: str, goal_statuses: Sequence[str],
        visits_from_us: int, plan_count: int, goal_count: int, visit_count: int,
        message_count: int,
    ) -> tuple[AgreementRows, Disclosure] | None:
        """Everything ``Patient/{id}/$agreement`` draws on in one statement, with the
        :class:`Disclosure` that decides what of it this caller sees and logs it; None
        when the caller's searches would not all be allowed (then search one by one)."""
        disclosure = Disclosure.of(self)
        if disclosure is None:
            return None
        rows = await agreement_queries.gather(
            self.service.repo, patient_id, plan_status=plan_status,
            goal_statuses=goal_statuses, visits_from_us=visits_from_us,
            plan_count=plan_count, goal_count=goal_count, visit_count=visit_count,
            message_count=message_count)
        return rows, disclosure

    # ------------------------------------------------------------- $validate

    async def validate(self, resource_type: str, body: Any, profiles: list[str],
                       check: Callable[[dict[str, Any], list[str]], list[Issue]] | None
                       ) -> list[Issue]:
        """``$validate``: needs a create or update scope on the type; reads nothing stored."""
        from samplan.fhir.resource import validate_resource

        self.resource_type(resource_type)
        if self.principal is not None:
            granted = any(policy.scope_grant(self.principal, resource_type, op).granted
                          for op in ("create", "update"))
            if not granted:
                await self._scope(resource_type, "create")
        issues: list[Issue] = []
        try:
            checked = validate_resource(body, resource_type)
            if profiles and check is not None:
                issues.extend(check(checked, profiles))
        except FhirError as exc:
            issues.extend(exc.issues)
        return issues

    # -------------------------------------------------------------- the log

    async def _read_audit(self, event_id: str) -> StoredResource:
        grant = await self._scope(AUDIT_TYPE, "read", event_id)
        missing = NotFound(f"AuditEvent/{event_id} does not exist.")
        engine = self.service.repo.engine
        row = await audit_store.read(engine, event_id)
        if row is None:
            raise missing
        if not grant.audit_everything and self.principal is not None:
            patient = await audit_store.patient_of(engine, event_id)
            if patient is None or not (await self.reach([patient])).reaches([patient]):
                raise missing
        return StoredResource(AUDIT_TYPE, row.event_id, 1, row.recorded_us, False, row.content)

    async def _search_audit(self, params: list[tuple[str, str]], *, strict: bool
                            ) -> tuple[SearchQuery, SearchPage]:
        grant = await self._scope(AUDIT_TYPE, "search")
        query = self.parse_query(AUDIT_TYPE, params, strict=strict)
        criteria = _audit_criteria(query)
        if not grant.audit_everything and self.principal is not None:
            own = await self._own_patients()
            asked = set(criteria.patients) if criteria.patients is not None else set(own)
            criteria = replace(criteria, patients=tuple(sorted(asked & own)))
        rows, total = await audit_store.search(self.service.repo.engine, criteria)
        matches = [StoredResource(AUDIT_TYPE, r.event_id, 1, r.recorded_us, False, r.content)
                   for r in rows]
        return query, SearchPage(matches, [], total, None, None)

    async def _own_patients(self) -> frozenset[str]:
        """A patient's or relative's own patients (whose access log they may read)."""
        return (await self.reach([])).patients


class ServiceTx:
    """A write transaction of the service itself (not made for a request)."""

    def __init__(self, gate: Gate, tx: WriteTx) -> None:
        self._gate = gate
        self._tx = tx

    @property
    def conn(self) -> AsyncConnection:
        """The connection, for the service's own tables (the subscriptions' outbox)."""
        return self._tx.conn

    async def current(self, resource_type: str, resource_id: str) -> StoredResource | None:
        return await self._tx.current(resource_type, resource_id)

    async def write(self, body: dict[str, Any], current: StoredResource) -> StoredResource:
        """A new version of ``current`` (its id), written by the service."""
        return await self._tx.write(body, resource_id=current.resource_id, current=current,
                                    method="PUT")

    async def log(self, records: Sequence[AuditRecord]) -> None:
        """Entries committed with this transaction (a notification marked delivered)."""
        if self._gate.audit and records:
            await audit_store.append(self._tx.conn, [r.to_row() for r in records])


@dataclass(slots=True)
class Contribution:
    """The patient's own additions to their plan: who they are about, what is written, and
    the scope the addition needs before anything is read for it (``(type, operation)``)."""

    patient_id: str
    types: frozenset[str]
    needs: tuple[str, Operation]


class GuardedTx:
    """A unit of work's view of its write transaction: only guarded reads, checked writes."""

    def __init__(self, access: Access, tx: WriteTx) -> None:
        self.access = access
        self._tx = tx

    @property
    def changes(self) -> list[Any]:
        """What this transaction wrote so far (``store.repository.Change``)."""
        return self._tx.changes

    async def lock(self, key: str) -> None:
        await self._tx.lock(key)

    def parse_query(self, resource_type: str, params: list[tuple[str, str]]) -> SearchQuery:
        return self.access.parse_query(resource_type, params)

    async def search(self, resource_type: str, params: list[tuple[str, str]]
                     ) -> tuple[list[StoredResource], list[StoredResource]]:
        """Matches and includes, as the caller may see them (logged with the writes)."""
        self.access.resource_type(resource_type, "search-type")
        page = await self.access._search_in(self._tx, self.parse_query(resource_type, params))
        return page.matches, page.includes

    async def current(self, resource_type: str, resource_id: str) -> StoredResource | None:
        """The current version, locked for this transaction; None when it is missing,
        deleted or not the caller's to see (the three look alike)."""
        stored = await self._tx.current(resource_type, resource_id)
        if stored is None or stored.deleted:
            return None
        if self.access._unrestricted():
            return stored
        body = loads(stored.content)
        guard = self.access._guard_of(self._tx)
        reach = await guard.reach(self._tx, patients_of(resource_type, body))
        if not self.access._visible(reach, resource_type, body):
            return None
        guard.disclosed.extend(
            guard.record("read", patient_id=p, entity_type=resource_type,
                         entity_id=resource_id, entity_version=stored.version_id)
            for p in patients_of(resource_type, body))
        return stored

    async def exists_unseen(self, resource_type: str, params: list[tuple[str, str]]) -> bool:
        """Whether anything matches, in the caller's reach or not: nothing of it is shown
        or logged (for refusing a duplicate without showing it, e.g. a note imported into
        another unit's plan, and for skipping a guarded search that would find nothing)."""
        query = self.parse_query(resource_type, params)
        token = single_identifier(query)
        if token is not None:  # the identifier lookup, without a search's building
            return bool((await self._tx.by_identifiers([(resource_type, *token)]))[
                (resource_type, *token)])
        query.count = 1
        return bool((await self._tx.search(query)).matches)

    async def create(self, resource: dict[str, Any]) -> WriteResult:
        return await self.access.service.create_in(self._tx, resource)

    async def update(self, resource: dict[str, Any], resource_id: str, *,
                     if_match: str | None = None) -> WriteResult:
        return await self.access.service.update_in(self._tx, resource, resource_id,
                                                   if_match=if_match)

    async def transaction(self, bundle: Any) -> list[dict[str, Any]]:
        """A transaction Bundle run inside this unit, each entry through the gate."""
        assert self.access.base_url is not None
        processor = BundleProcessor(self.access.service, self.access,
                                    base_url=self.access.base_url, return_representation=True)
        return await processor.transaction_in(self._tx, bundle)


# --------------------------------------------------------------------- helpers


def _reach_filter(resource_type: str, reach: Reach) -> Filter:
    name = "_id" if resource_type == "Patient" else "patient"
    if reach.by_care_team:
        value = CareTeamValue(
            organisations=tuple(sorted(reach.organisations)), roles=tuple(sorted(reach.roles)),
            practitioners=tuple(sorted(reach.practitioners)), blocked=tuple(sorted(reach.blocked)),
        )
        return Filter(name, "reference", (value,))
    ids = sorted(reach.patients) or [policy.NO_PATIENT]
    if resource_type == "Patient":
        return Filter("_id", "token", tuple(TokenValue(ANY, i) for i in ids))
    return Filter("patient", "reference", tuple(ReferenceValue("Patient", i) for i in ids))


def _asked_patients(query: SearchQuery) -> list[str]:
    """The patients a search names in its criteria (``patient``, ``subject``, ``_id``)."""
    found: list[str] = []
    for flt in query.filters:
        for v in flt.values:
            if isinstance(v, ReferenceValue) and flt.name in ("patient", "subject") and (
                    v.target_type in (None, "Patient")):
                found.append(v.target_id)
            elif (isinstance(v, TokenValue) and flt.name == "_id"
                  and query.resource_type == "Patient" and v.code and flt.modifier is None):
                found.append(v.code)
    return list(dict.fromkeys(found))


def _asked_patient(query: SearchQuery) -> str | None:
    asked = _asked_patients(query)
    return asked[0] if asked else None


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


__all__ = ["REACH_TYPES", "Access", "AgreementRows", "CommitView", "Contribution", "Disclosure",
           "Gate", "GuardedTx", "ServiceTx", "hsa_ids", "open_gate"]
