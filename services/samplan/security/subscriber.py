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

from dataclasses import asdict, dataclass

import orjson

from samplan.security.principal import Principal, PrincipalKind
from samplan.security.scopes import ScopeSet

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
