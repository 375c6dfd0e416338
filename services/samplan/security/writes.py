"""The writer of one write transaction: each write checked before it is made, all before commit.

A :class:`TxGuard` is made by the gate for every write transaction (one per
attempt) and handed to the store explicitly (``Repository.transaction(writer)``;
no context variable). It is the store's ``WriteObserver`` and the FHIR
service's ``MatchAdmission``:

* **before each write** (:meth:`TxGuard.before_write`): the scopes for the
  interaction, and whether the version being replaced is one the writer may
  see, asked on the transaction's own connection (so earlier entries of a
  transaction Bundle count). A version the writer may not see does not exist
  for them (404), exactly as for a missing id;
* **conditional matches** (:meth:`TxGuard.admits`, ``If-None-Exist``,
  conditional update, conditional references): a match the writer may not see
  is no match. One exception, recorded and checked again at commit: staff and
  systems find a Patient by personnummer whatever their reach (one
  personnummer names one Patient; a care unit joins a patient's care by
  referring to it), and the transaction must bring that Patient into their reach;
* **before commit** (:meth:`TxGuard.before_commit`): every version written is
  checked against the policy with reach as it is *after* the transaction's
  writes (a CareTeam naming the writer's unit brings its patient in, a block
  keeps them out whatever CareTeam is written), and the access log gets its
  entries in the same transaction: the writes, the reads made inside it, and
  the conditional matches it disclosed.

A refused change rolls the transaction back; its entry is kept in
:attr:`TxGuard.refused` for the gate to log after the rollback.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from samplan.fhir.errors import FhirError, Forbidden, NotFound
from samplan.fhir.stored import StoredResource
from samplan.security import policy
from samplan.security.audit import MINOR_FAILURE, Agent, AuditInteraction, AuditRecord
from samplan.security.policy import Operation, Reach
from samplan.security.principal import Principal
from samplan.security.reach import ReachResolver
from samplan.store import audit as audit_store
from samplan.store.repository import WriteTx

#: Types whose writes change who reaches what (the facts reach is computed from).
REACH_TYPES: Final = frozenset({"CareTeam", "Organization", "PractitionerRole", "Practitioner",
                                "Consent", "Patient", "RelatedPerson"})

_METHOD_OPERATION: Final[dict[str, Operation]] = {
    "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete",
}


def loads(content: bytes | None) -> dict[str, Any] | None:
    if not content:
        return None
    body = orjson.loads(content)
    return body if isinstance(body, dict) else None


def patients_of(resource_type: str, body: dict[str, Any] | None) -> list[str | None]:
    """The patients to log an access under (``[None]``: not about a patient)."""
    ids = policy.patient_ids(resource_type, body) if body is not None else None
    found: list[str | None] = [*sorted(ids)] if ids else [None]
    return found


@dataclass(slots=True)
class WriterContext:
    """Who writes, for the guard: the principal (None: the service itself), from where."""

    principal: Principal | None
    client_ip: str | None
    resolver: ReachResolver
    audit: bool = True
    stamp: Callable[[Principal, str, dict[str, Any]], None] | None = None
    """Fills in what the gate owns on a written body (a Subscription's owner)."""


@dataclass(slots=True)
class TxGuard:
    """The store's ``WriteObserver`` for one write transaction attempt (see the module)."""

    ctx: WriterContext
    refused: list[AuditRecord] = field(default_factory=list)
    disclosed: list[AuditRecord] = field(default_factory=list)
    """Entries of reads inside the transaction, appended with its writes."""
    contribution: Any = None
    """The patient's own additions (``gate.Contribution``): a patient or relative may then
    write its types about that patient (the domain rules what the additions change)."""
    _written: set[tuple[str, str]] = field(default_factory=set)
    _joined: list[StoredResource] = field(default_factory=list)
    _asked: frozenset[str] = frozenset()
    _reach: Reach | None = None

    @property
    def principal(self) -> Principal | None:
        return self.ctx.principal

    def record(self, interaction: AuditInteraction, **fields: Any) -> AuditRecord:
        return AuditRecord(interaction=interaction, agent=Agent.of(self.principal),
                           client_ip=self.ctx.client_ip, **fields)

    def refuse(self, error: FhirError, operation: Operation, resource_type: str,
               resource_id: str | None, patient_id: str | None = None) -> FhirError:
        """Keep the refusal's entry (logged after the rollback) and give the error back."""
        self.refused.append(self.record(
            operation, outcome=MINOR_FAILURE, outcome_text=f"{error.status}: {error.diagnostics}",
            entity_type=resource_type, entity_id=resource_id, patient_id=patient_id))
        return error

    # ------------------------------------------------------------------- reach

    def _unrestricted(self) -> bool:
        principal = self.principal
        return principal is None or principal.kind == "anonymous-dev"

    async def reach(self, tx: WriteTx, patients: Collection[str | None]) -> Reach:
        """Reach as far as ``patients`` go, on the transaction's connection (its own writes
        count); asked again only for patients not asked before, or after a write that
        changes reach."""
        principal = self.principal
        assert principal is not None
        wanted = frozenset(p for p in patients if p)
        if self._reach is not None and wanted <= self._asked:
            return self._reach
        asked = self._asked | wanted
        self._reach = await self.ctx.resolver.among(principal, asked, on=tx)
        self._asked = asked
        return self._reach

    def _reach_changed(self) -> None:
        self._reach, self._asked = None, frozenset()

    # ----------------------------------------------------------- WriteObserver

    async def before_write(
        self, tx: WriteTx, resource_type: str, resource_id: str,
        current: StoredResource | None, body: dict[str, Any] | None,
    ) -> None:
        principal = self.principal
        key = (resource_type, resource_id)
        if principal is not None and body is not None and self.ctx.stamp is not None:
            self.ctx.stamp(principal, resource_type, body)
        if self._unrestricted():
            self._written.add(key)
            return
        assert principal is not None
        existing = current is not None and not current.deleted
        operation: Operation = ("delete" if body is None else
                                "update" if existing else "create")
        try:
            policy.check_scope(principal, resource_type, operation)
        except FhirError as error:
            raise self.refuse(error, operation, resource_type, resource_id) from None
        if existing and key not in self._written:
            assert current is not None
            before = loads(current.content)
            patients = patients_of(resource_type, before)
            reach = await self.reach(tx, patients)
            if before is None or not policy.visible(principal, reach, resource_type, before):
                missing = NotFound(f"{resource_type}/{resource_id} does not exist.")
                raise self.refuse(missing, operation, resource_type, resource_id, patients[0])
        if resource_type in REACH_TYPES:
            self._reach_changed()
        self._written.add(key)

    async def before_commit(self, tx: WriteTx) -> None:
        principal = self.principal
        befores = [loads(c.previous.content)
                   if c.previous is not None and not c.previous.deleted else None
                   for c in tx.changes]
        if not self._unrestricted():
            assert principal is not None
            concerned: set[str | None] = set()
            for change, before in zip(tx.changes, befores, strict=True):
                rtype = change.resource.resource_type
                concerned.update(patients_of(rtype, change.body))
                concerned.update(patients_of(rtype, before))
            concerned.update(p.resource_id for p in self._joined)
            reach = await self.reach(tx, concerned)
            for change, before in zip(tx.changes, befores, strict=True):
                stored = change.resource
                rtype = stored.resource_type
                operation = self._operation(stored, before, change.body)
                try:
                    if self._contributed(rtype, before, change.body, reach):
                        continue
                    policy.check_write(principal, reach, rtype, before, change.body,
                                       before_checked=True)
                except FhirError as error:
                    about = change.body if change.body is not None else before
                    raise self.refuse(error, operation, rtype, stored.resource_id,
                                      patients_of(rtype, about)[0]) from None
            for joined in self._joined:
                if not reach.reaches([joined.resource_id]):
                    raise self.refuse(Forbidden(
                        "The Patient found by its identifier is outside your reach: write a "
                        "CareTeam naming your organisation in the same transaction."),
                        "read", "Patient", joined.resource_id, joined.resource_id)
        if self.ctx.audit:
            records = [*self.disclosed, *self._write_records(tx, befores)]
            await audit_store.append(tx.conn, [r.to_row() for r in records])

    def _contributed(self, resource_type: str, before: dict[str, Any] | None,
                     after: dict[str, Any] | None, reach: Reach) -> bool:
        """A patient's (or relative's) own addition, about that patient only."""
        contribution, principal = self.contribution, self.principal
        if (contribution is None or principal is None
                or principal.kind not in ("patient", "relative")
                or resource_type not in contribution.types):
            return False
        own = contribution.patient_id
        for body in (before, after):
            ids = policy.patient_ids(resource_type, body) if body is not None else None
            if body is not None and (ids is None or not ids <= {own}):
                return False
        return reach.reaches([own])

    def _operation(self, stored: StoredResource, before: dict[str, Any] | None,
                   after: dict[str, Any] | None) -> Operation:
        if before is None and after is not None:
            return "create"
        return _METHOD_OPERATION.get(stored.method, "update")

    def _write_records(self, tx: WriteTx, befores: list[dict[str, Any] | None]
                       ) -> Iterable[AuditRecord]:
        for change, before in zip(tx.changes, befores, strict=True):
            stored = change.resource
            about = change.body if change.body is not None else before
            for patient in patients_of(stored.resource_type, about):
                yield self.record(
                    self._operation(stored, before, change.body), patient_id=patient,
                    entity_type=stored.resource_type, entity_id=stored.resource_id,
                    entity_version=stored.version_id)

    # ---------------------------------------------------------- MatchAdmission

    async def admits(self, tx: WriteTx, stored: StoredResource, purpose: str) -> bool:
        """Whether a conditional match counts (see the module); admitted matches are logged
        as reads, in the transaction."""
        principal = self.principal
        body = loads(stored.content)
        patients = patients_of(stored.resource_type, body)
        if not self._unrestricted():
            assert principal is not None
            reach = await self.reach(tx, patients)
            if body is None or not policy.visible(principal, reach, stored.resource_type,
                                                  body):
                if not (stored.resource_type == "Patient"
                        and principal.kind in ("staff", "system")
                        and (body is None or not policy.is_nopatient(body))):
                    return False
                self._joined.append(stored)  # must be in reach when the transaction ends
        self.disclosed.extend(self.record(
            "read", patient_id=p, entity_type=stored.resource_type,
            entity_id=stored.resource_id, entity_version=stored.version_id,
            query=f"{purpose} match") for p in patients)
        return True
