"""Who is calling: the verified claims of one token, named the way the policy thinks.

The policy and the audit log never read raw JWT claims; they read a
:class:`Principal`. That keeps the claim names of the Swedish identity providers
(SITHS/HSA for staff, 1177 for patients, organisation certificates for
systems) in this one module.

Claims accepted (all optional strings unless said otherwise):

=============================  ===========================================================
Principal field                claim(s), first present wins
=============================  ===========================================================
``subject``                    ``sub`` (required)
``scopes``                     ``scope`` (space-separated string), else ``scp`` (list or
                               string)
``patient``                    ``patient`` (SMART launch context: a Patient id or a
                               personnummer); for a patient, else the id in ``fhirUser``
``fhir_user``                  ``fhirUser``; an absolute URL is cut to ``Type/id``
``employee_hsa_id``            ``employeeHsaId``
``care_provider_hsa_id``       ``healthCareProviderHsaId``
``care_unit_hsa_id``           ``commissionHsaId``
``commission_purpose``         ``commissionPurpose``
``organisation_hsa_id``        ``organizationHsaId``, else ``client_org_hsa_id``
``client_id``                  ``client_id``, else ``azp``
``token_id``                   ``jti``
``issuer``                     ``iss``
``expires_at``                 ``exp`` (NumericDate)
=============================  ===========================================================

Kind, decided from the scopes and ``fhirUser`` (first rule that applies):

1. any ``system/`` scope -> ``system``; mixing ``system/`` with ``patient/`` or
   ``user/`` is refused (a backend service acts for nobody).
2. ``fhirUser`` is ``RelatedPerson/..`` -> ``relative``.
3. ``fhirUser`` is ``Patient/..`` -> ``patient``.
4. ``fhirUser`` is ``Practitioner/..`` or ``PractitionerRole/..`` -> ``staff``
   (a clinician's app launched with ``patient/`` scopes is still staff: it
   must not be able to author content "as the patient").
5. any ``user/`` scope -> ``staff``; otherwise (only ``patient/``) -> ``patient``.

``patient`` (and ``relative`` with ``patient/`` scopes) must name the patient in
context, as SMART requires for ``patient/`` scopes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from samplan.security.scopes import ScopeSet

PrincipalKind = Literal["patient", "relative", "staff", "system", "anonymous-dev"]

#: Claim names, in order of preference, for each optional string field.
CLAIMS: dict[str, tuple[str, ...]] = {
    "patient": ("patient",),
    "fhir_user": ("fhirUser",),
    "employee_hsa_id": ("employeeHsaId",),
    "care_provider_hsa_id": ("healthCareProviderHsaId",),
    "care_unit_hsa_id": ("commissionHsaId",),
    "commission_purpose": ("commissionPurpose",),
    "organisation_hsa_id": ("organizationHsaId", "client_org_hsa_id"),
    "client_id": ("client_id", "azp"),
    "token_id": ("jti",),
    "issuer": ("iss",),
}

_STAFF_USER_TYPES = frozenset({"Practitioner", "PractitionerRole"})


class InvalidClaims(ValueError):
    """The token verified but its claims cannot describe a caller.

    The token layer turns this into a 401 ``invalid_token``.
    """


class NoUsableScope(ValueError):
    """The token verified but grants no FHIR resource scope at all.

    Kept apart from :class:`InvalidClaims` because it is an authorisation
    answer (RFC 6750 ``insufficient_scope``), not a broken token.
    """

    def __init__(self, scopes: ScopeSet) -> None:
        super().__init__(f"token grants no FHIR resource scope (scope: {str(scopes)!r})")
        self.scopes = scopes


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller, as the access policy and the audit log see it."""

    kind: PrincipalKind
    subject: str
    scopes: ScopeSet
    patient: str | None = None
    fhir_user: str | None = None
    employee_hsa_id: str | None = None
    care_provider_hsa_id: str | None = None
    care_unit_hsa_id: str | None = None
    commission_purpose: str | None = None
    organisation_hsa_id: str | None = None
    client_id: str | None = None
    token_id: str | None = None
    issuer: str | None = None
    expires_at: datetime | None = None

    @property
    def fhir_user_type(self) -> str | None:
        """``"RelatedPerson"`` for ``fhirUser = "RelatedPerson/9"``."""
        return self.fhir_user.partition("/")[0] if self.fhir_user else None

    @property
    def fhir_user_id(self) -> str | None:
        """``"9"`` for ``fhirUser = "RelatedPerson/9"``."""
        if self.fhir_user is None:
            return None
        return self.fhir_user.partition("/")[2]

    @classmethod
    def anonymous_dev(cls) -> Principal:
        """The caller when auth is explicitly switched off for the local demo.

        Holds every scope; the policy must still refuse to run this outside
        development (the settings decide that, not this class).
        """
        return cls(kind="anonymous-dev", subject="anonymous-dev", scopes=ScopeSet.everything())

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Principal:
        """Build a principal from verified claims.

        :raises InvalidClaims: a claim has the wrong type, or the scopes and
            identity contradict each other.
        :raises NoUsableScope: no resource scope was granted.
        """
        subject = _string(claims, "sub")
        if subject is None:
            raise InvalidClaims("token has no 'sub' claim")
        scopes = ScopeSet.parse(_scope_claim(claims))
        if not scopes.usable:
            raise NoUsableScope(scopes)
        values = {name: _first(claims, names) for name, names in CLAIMS.items()}
        fhir_user = _relative_reference(values["fhir_user"])
        kind = _kind(scopes, fhir_user)
        patient = values["patient"]
        if kind == "patient" and patient is None and fhir_user:
            patient = fhir_user.partition("/")[2]
        if patient is None and kind in ("patient", "relative") and "patient" in scopes.contexts():
            raise InvalidClaims("patient/ scopes need a 'patient' claim (the patient in context)")
        return cls(
            kind=kind,
            subject=subject,
            scopes=scopes,
            patient=patient,
            fhir_user=fhir_user,
            employee_hsa_id=values["employee_hsa_id"],
            care_provider_hsa_id=values["care_provider_hsa_id"],
            care_unit_hsa_id=values["care_unit_hsa_id"],
            commission_purpose=values["commission_purpose"],
            organisation_hsa_id=values["organisation_hsa_id"],
            client_id=values["client_id"],
            token_id=values["token_id"],
            issuer=values["issuer"],
            expires_at=_timestamp(claims.get("exp")),
        )


def _kind(scopes: ScopeSet, fhir_user: str | None) -> PrincipalKind:
    contexts = scopes.contexts()
    if "system" in contexts:
        if len(contexts) > 1:
            raise InvalidClaims("system/ scopes cannot be combined with patient/ or user/ scopes")
        return "system"
    user_type = fhir_user.partition("/")[0] if fhir_user else None
    if user_type == "RelatedPerson":
        return "relative"
    if user_type == "Patient":
        return "patient"
    if user_type in _STAFF_USER_TYPES or "user" in contexts:
        return "staff"
    return "patient"


def _scope_claim(claims: Mapping[str, Any]) -> str | list[str] | None:
    """``scope`` (RFC 9068, a string) or ``scp`` (a list, as some servers send)."""
    for name in ("scope", "scp"):
        value = claims.get(name)
        if value is None:
            continue
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise InvalidClaims(f"claim {name!r} must be a string or a list of strings")
    return None


def _first(claims: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = _string(claims, name)
        if value is not None:
            return value
    return None


def _string(claims: Mapping[str, Any], name: str) -> str | None:
    """A claim as a non-empty string; absent or ``null`` is ``None``."""
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidClaims(f"claim {name!r} must be a non-empty string")
    return value.strip()


def _relative_reference(fhir_user: str | None) -> str | None:
    """``https://idp.example/fhir/Practitioner/123`` -> ``Practitioner/123``.

    SMART allows ``fhirUser`` as an absolute URL; the policy compares it with
    references stored in our resources, which are relative.
    """
    if fhir_user is None:
        return None
    parts = fhir_user.rstrip("/").split("/")
    if len(parts) < 2 or not parts[-2][:1].isupper() or not parts[-1]:
        raise InvalidClaims(f"claim 'fhirUser' is not a FHIR reference: {fhir_user!r}")
    return f"{parts[-2]}/{parts[-1]}"


def _timestamp(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidClaims("claim 'exp' must be a NumericDate (seconds)")
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (ValueError, OverflowError, OSError) as error:
        raise InvalidClaims("claim 'exp' is out of range") from error
