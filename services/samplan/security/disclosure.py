"""Who may see what of a gathered agreement, and its access-log entries: the gate's part.

:mod:`samplan.agreement.patient_gather` reads a patient's agreement in one
statement (:meth:`samplan.security.gate.Access.gather_agreement`) instead of a
read and eight searches. What those searches would have let through must still
be all that comes out, and logged; this module decides it with the rules every
search of the gate applies (``security/policy.py``: scopes, reach, ``NOPATIENT``
for patients and relatives):

* a search's matches are kept when :func:`~samplan.security.policy.visible`;
* what it ``_include``-s also needs a read or search scope on its type;
* reach is the gate's own, asked once for every patient the gathered resources
  concern (what each search asks for its page).

:meth:`Disclosure.of` answers ``None`` when the searches would not all be
allowed (a missing scope is a 403 at the search that needs it, a ``patient/``
scope of a clinician narrows reach): the caller then reads through the gate's
own searches, which answer and log those cases.

The access log gets one entry (``search``, query ``Patient/{id}/$agreement``) naming
the Patient and every resource the agreement disclosed, directory data included
(the searches logged nine entries), and one more for each other patient a
disclosed resource is about (an Appointment shared with another patient): the
same patients, the same resources, one commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from samplan.fhir.stored import StoredResource
from samplan.security import policy
from samplan.security.audit import Agent, AuditRecord
from samplan.security.policy import Operation, Reach

if TYPE_CHECKING:
    from samplan.security.gate import Access

__all__ = ["SEARCHED", "Disclosure"]

SEARCHED: Final[tuple[str, ...]] = (
    "CarePlan", "PractitionerRole", "Practitioner", "Organization", "Goal", "Appointment",
    "Communication",
)  # fmt: skip
"""The types the agreement is searched in (``search`` scope needed on each)."""

Resource = dict[str, Any]


class Disclosure:
    """The reader's view of gathered resources: what it may see, and the log of what it saw."""

    def __init__(self, guarded: Access | None = None) -> None:
        """``guarded``: the caller's access (None: the service itself, which sees all)."""
        self.guarded = guarded
        self.reach: Reach | None = None
        self.disclosed: dict[tuple[str, str], Mapping[str, Any]] = {}
        """What a search let through so far (what the log names), by (type, id)."""
        self._patients: dict[tuple[str, str], frozenset[str] | None] = {}
        self._includable: dict[str, bool] = {}

    @classmethod
    def of(cls, reader: Access) -> Disclosure | None:
        """How ``reader`` sees what is gathered; None: use its own searches (see the module)."""
        principal = reader.principal
        if principal is None:
            return cls()
        wanted: list[tuple[str, Operation]] = [("Patient", "read")]
        wanted += [(rtype, "search") for rtype in SEARCHED]
        for rtype, operation in wanted:
            grant = policy.scope_grant(principal, rtype, operation)
            if not grant.granted or grant.patient_context_only:
                return None
        return cls(reader)

    def patient_ids(self, resource_type: str, body: Mapping[str, Any]) -> frozenset[str] | None:
        """:func:`~samplan.security.policy.patient_ids`, once per resource."""
        key = (resource_type, str(body.get("id")))
        if key not in self._patients:
            self._patients[key] = policy.patient_ids(resource_type, body)
        return self._patients[key]

    @property
    def everything(self) -> bool:
        """The reader sees every resource (the plain service; reach of the development
        principal): no body needs reading to decide."""
        return self.guarded is None or (self.reach is not None and self.reach.everything)

    async def settle(
        self, patient_id: str, resources: Iterable[tuple[str, Mapping[str, Any]]]
    ) -> None:
        """Ask the reader's reach, as its searches would, for the patients ``resources``
        (and the patient) concern."""
        guarded = self.guarded
        if guarded is None:
            return
        if guarded.principal is None or guarded.principal.kind == "anonymous-dev":
            self.reach = Reach(everything=True)  # nothing to ask among
            return
        concerned = {patient_id}
        for rtype, body in resources:
            concerned |= self.patient_ids(rtype, body) or frozenset()
        self.reach = await guarded.reach(concerned)

    def may_include_type(self, resource_type: str) -> bool:
        """Whether the scopes let an ``_include`` bring this type along (read or search)."""
        guarded = self.guarded
        if guarded is None:
            return True
        found = self._includable.get(resource_type)
        if found is None:
            principal = guarded.principal
            assert principal is not None
            found = self._includable[resource_type] = (
                policy.scope_grant(principal, resource_type, "read").granted
                or policy.scope_grant(principal, resource_type, "search").granted)
        return found

    def visible(self, resource_type: str, body: Mapping[str, Any]) -> bool:
        """Whether the reader may see this resource at all (as a read decides)."""
        guarded, reach = self.guarded, self.reach
        if guarded is None:
            return True
        if reach is None:
            raise RuntimeError("settle() first: reach is not known yet")
        if reach.everything or guarded.principal is None:
            return True
        return policy.visible(guarded.principal, reach, resource_type, body)

    def matches(self, resource_type: str, body: Mapping[str, Any]) -> bool:
        """Whether a search's match reaches the reader (and so is disclosed)."""
        if not self.visible(resource_type, body):
            return False
        self.disclosed.setdefault((resource_type, str(body.get("id"))), body)
        return True

    def includes(self, resource_type: str, body: Mapping[str, Any]) -> bool:
        """Whether an ``_include`` brings this resource along (and so discloses it)."""
        return self.may_include_type(resource_type) and self.matches(resource_type, body)

    def log_under(self, resource_type: str, body: Mapping[str, Any]) -> tuple[str | None, ...]:
        """The patients to log an access under (``(None,)``: not about a patient), as the guard."""
        ids = self.patient_ids(resource_type, body)
        return (*sorted(ids),) if ids else (None,)

    def by_patient(self) -> tuple[tuple[str | None, tuple[tuple[str, str], ...]], ...]:
        """What was disclosed, by the patient it is logged under (the guard's grouping)."""
        grouped: dict[str | None, list[tuple[str, str]]] = {}
        for key, body in self.disclosed.items():
            for p in self.log_under(key[0], body):
                grouped.setdefault(p, []).append(key)
        return tuple((p, tuple(keys)) for p, keys in grouped.items())

    async def log(
        self,
        patient: StoredResource,
        disclosed: Iterable[tuple[str | None, tuple[tuple[str, str], ...]]],
    ) -> None:
        """One entry for the patient (the Patient, and all the agreement disclosed with it,
        directory data included), and one for each other patient a disclosed resource is
        about (an Appointment shared with another patient); one commit."""
        guarded = self.guarded
        if guarded is None:
            return
        own = patient.resource_id
        by_patient = dict(disclosed)
        entities = [*by_patient.pop(own, ()), *by_patient.pop(None, ())]
        agent = Agent.of(guarded.principal)
        query = f"Patient/{own}/$agreement"
        records = [AuditRecord(
            interaction="search", agent=agent, client_ip=guarded.client_ip, patient_id=own,
            entity_type="Patient", entity_id=own, entity_version=patient.version_id,
            entities=tuple(dict.fromkeys(entities)), query=query,
        )]
        records += [
            AuditRecord(interaction="search", agent=agent, client_ip=guarded.client_ip,
                        patient_id=p, entities=found, query=query)
            for p, found in by_patient.items() if p is not None
        ]
        await guarded.gate.log(records)
