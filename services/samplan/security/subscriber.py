"""What a subscriber may be told: access facts kept with a Subscription, and event screening.

Notifications carry patient data to a system that is not asking at that
moment, so the usual per-request check cannot run. Instead, when a
Subscription is written through the API, the writer's access facts are kept
with its delivery state (:class:`SubscriberAccess`: kind, HSA-ids, ``patient``
and ``fhirUser`` claims, scopes; never the token itself). Every event is then
screened with the same policy functions a read uses (:func:`screen`):

* at **match time**, inside the write transaction (``subscriptions/matching.py``):
  a change whose focus the subscriber may not see (outside reach, a type its
  scopes do not name, ``NOPATIENT`` content for a patient or relative) is no
  event for that subscription at all, so it gets no event number;
* at **delivery** and in **``$events``**: again, with reach as it is then (a
  block or a revoked grant acts at once). An event that is no longer visible
  keeps its number (so receivers see no gap) but is sent *withheld*: number
  and timestamp only, no focus, no resource. A full-resource payload carries
  the resource only when the scopes grant ``read`` on its type.

``None`` as a subscriber is the service itself (a Subscription written
without a principal, e.g. by a test or a migration): not restricted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import orjson

from samplan.security import policy
from samplan.security.policy import Reach
from samplan.security.principal import Principal, PrincipalKind
from samplan.security.scopes import ScopeSet

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from samplan.security.guard import AccessControl

_KINDS: frozenset[str] = frozenset({"patient", "relative", "staff", "system", "anonymous-dev"})


@dataclass(frozen=True, slots=True)
class SubscriberAccess:
    """The access facts of the principal that last wrote a Subscription (no token)."""

    kind: PrincipalKind
    subject: str
    scopes: str
    patient: str | None = None
    fhir_user: str | None = None
    employee_hsa_id: str | None = None
    care_provider_hsa_id: str | None = None
    care_unit_hsa_id: str | None = None
    organisation_hsa_id: str | None = None
    client_id: str | None = None

    @classmethod
    def of(cls, principal: Principal) -> SubscriberAccess:
        return cls(
            kind=principal.kind, subject=principal.subject, scopes=str(principal.scopes),
            patient=principal.patient, fhir_user=principal.fhir_user,
            employee_hsa_id=principal.employee_hsa_id,
            care_provider_hsa_id=principal.care_provider_hsa_id,
            care_unit_hsa_id=principal.care_unit_hsa_id,
            organisation_hsa_id=principal.organisation_hsa_id, client_id=principal.client_id,
        )

    def principal(self) -> Principal:
        """The principal the policy judges notifications for (as if it were asking now)."""
        scopes = (ScopeSet.everything() if self.kind == "anonymous-dev"
                  else ScopeSet.parse(self.scopes))
        return Principal(
            kind=self.kind, subject=self.subject, scopes=scopes, patient=self.patient,
            fhir_user=self.fhir_user, employee_hsa_id=self.employee_hsa_id,
            care_provider_hsa_id=self.care_provider_hsa_id,
            care_unit_hsa_id=self.care_unit_hsa_id,
            organisation_hsa_id=self.organisation_hsa_id, client_id=self.client_id,
        )

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str | None) -> SubscriberAccess | None:
        """The stored facts; ``None`` for the service itself. Unreadable facts reach nobody."""
        if text is None:
            return None
        try:
            data = orjson.loads(text)
            if not isinstance(data, dict) or data.get("kind") not in _KINDS:
                raise ValueError("not subscriber facts")
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except (ValueError, TypeError):
            return cls(kind="patient", subject="unreadable", scopes="")  # reaches no one


def principal_of(text: str | None) -> Principal | None:
    facts = SubscriberAccess.from_json(text)
    return facts.principal() if facts is not None else None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one event may carry to one recipient."""

    visible: bool  # the event may name its focus (otherwise: withheld)
    full: bool  # the focus resource itself may be sent
    patients: tuple[str, ...]  # whose data it is (the access log)


async def screen(
    control: AccessControl,
    recipients: Sequence[Principal | None],
    focuses: Sequence[tuple[str, Mapping[str, Any] | None]],
    *,
    conn: AsyncConnection | None = None,
) -> list[Verdict]:
    """A verdict per ``(resource type, body)`` focus, for all ``recipients`` at once.

    ``body`` is the version the event points at (for a deletion, the last
    version before it); ``None`` when it is no longer kept (only an
    unrestricted recipient sees such an event). An event must pass for every
    recipient (``$events``: the Subscription's writer *and* the caller).
    """
    concerned = [
        (policy.patient_ids(rtype, body) if body is not None else None) for rtype, body in focuses
    ]
    everyone = {p for ids in concerned if ids for p in ids}
    visible = [True] * len(focuses)
    full = [True] * len(focuses)
    for principal in recipients:
        if principal is None:
            continue
        reach = await control.reach_of(principal, among=everyone, conn=conn)
        narrowed: Reach | None = None
        for i, (rtype, body) in enumerate(focuses):
            if not visible[i]:
                continue
            read = policy.scope_grant(principal, rtype, "read")
            search = policy.scope_grant(principal, rtype, "search")
            grant = read if read.granted else search
            if not grant.granted:
                visible[i] = full[i] = False
                continue
            judged = reach
            if grant.patient_context_only and not reach.everything:
                if narrowed is None:
                    narrowed = await control.scoped_reach(principal, grant, among=everyone,
                                                          conn=conn)
                judged = narrowed
            if reach.everything:
                ok = True
            else:
                ok = body is not None and policy.visible(principal, judged, rtype, body)
            visible[i] = ok
            full[i] = full[i] and ok and read.granted
    return [
        Verdict(visible[i], visible[i] and full[i], tuple(sorted(concerned[i] or ())))
        for i in range(len(focuses))
    ]
