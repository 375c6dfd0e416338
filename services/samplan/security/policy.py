"""Who may do what: pure decisions over a :class:`Principal`, its :class:`Reach` and bodies.

No SQL and no HTTP here. The caller (``security.guard``) asks the store which
patients a principal reaches, then asks this module three questions:

1. **Scopes** (:func:`check_scope`): does the token name this interaction on
   this type? (read/vread/history -> ``r``, search -> ``s``, create -> ``c``,
   update/patch -> ``u``, delete -> ``d``.) No -> 403 ``insufficient_scope``.
2. **Reach** (:func:`visible`): is this resource about a patient the principal
   reaches, and (for patients and relatives) not labelled ``NOPATIENT``?
   No -> the resource does not exist for them (404, never 403, so that
   existence does not leak).
3. **Writes** (:func:`check_write`): may this principal turn ``before`` into
   ``after``?

The table of who may do what is in docs/security.md; keep both in step.

Reach, by kind of principal:

=============  ============================================================
kind           patients reached
=============  ============================================================
patient        the one in the ``patient`` claim (an id, or a personnummer
               resolved to the Patient that carries it)
relative       the ``patient`` of their RelatedPerson (``fhirUser``), read only,
               as guardian of a child under 13 or by a proxy grant (a permit
               Consent naming the RelatedPerson)
staff          patients whose CareTeam has, as participant or managing
               organisation, an Organization carrying one of the staff
               member's HSA-ids (care provider, care unit, organisation), a
               PractitionerRole of such an Organization, or the staff member's
               own Practitioner (``employeeHsaId``); minus the patients who
               block (spärr: a deny Consent) one of those
system         patients whose CareTeam includes the system's organisation,
               minus those who block it
anonymous-dev  everyone (auth switched off for a local demo)
=============  ============================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final, Literal

from samplan.fhir.errors import Forbidden, NotFound
from samplan.fhir.identifiers import birth_date_of
from samplan.fhir.indexing import parse_reference, values_at
from samplan.fhir.registry import REGISTRY
from samplan.security import answers
from samplan.security.principal import Principal
from samplan.security.scopes import Context, Interaction
from samplan.security.tokens import insufficient_scope

Operation = Literal[
    "read", "vread", "history", "search", "create", "update", "patch", "delete"
]

#: The SMART permission letter each operation needs.
SCOPE_LETTER: Final[Mapping[Operation, Interaction]] = {
    "read": "r",
    "vread": "r",
    "history": "r",
    "search": "s",
    "create": "c",
    "update": "u",
    "patch": "u",
    "delete": "d",
}

#: ``meta.security`` label of professional-only content (never shown to patients/proxies).
NOPATIENT_SYSTEM: Final[str] = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
NOPATIENT_CODE: Final[str] = "NOPATIENT"

#: The access log: a wildcard scope (``user/*.rs``) does not open it; the type must be named.
AUDIT_TYPE: Final[str] = "AuditEvent"

#: Types a patient may author (as themselves) in their own plan: goals, and the
#: Consents by which they block a care provider or give a relative a proxy grant.
PATIENT_AUTHORED_TYPES: Final[frozenset[str]] = frozenset({"Goal", "Consent"})

#: Where a patient-writable type must name the patient as its author.
_AUTHOR_PATHS: Final[Mapping[str, str]] = {"Goal": "expressedBy"}

#: RelatedPerson.relationship codes (v3-RoleCode) that make a guardian (vårdnadshavare).
GUARDIAN_RELATIONSHIPS: Final[frozenset[str]] = frozenset({"GUARD", "PRN", "MTH", "FTH"})
#: A guardian acts for a child younger than this (DOMAIN.md, Logins).
GUARDIAN_AGE_LIMIT: Final[int] = 13

#: A patient id no resource can have (ids are 1-64 of [A-Za-z0-9-.]); used as the
#: one value of an "allowed patients" filter when the set is empty.
NO_PATIENT: Final[str] = ""


@dataclass(frozen=True, slots=True)
class Reach:
    """The patients whose data a principal may touch, and the organisations it acts for.

    ``everything`` is only for the anonymous development principal.
    ``organisations`` and ``roles`` (Organization and PractitionerRole ids)
    let staff and systems create the CareTeam that brings a patient into reach.

    ``by_care_team`` (staff and systems): ``patients`` is exactly "patients of
    the CareTeams naming ``organisations``/``roles``/``practitioners``, minus
    ``blocked``", so a search may use that criterion as a SQL subquery
    (``fhir.search.CareTeamValue``) instead of the list of ids. A reach computed
    ``among`` some patients (``ReachResolver.among``) lists only those.
    """

    everything: bool = False
    patients: frozenset[str] = frozenset()
    organisations: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    practitioners: frozenset[str] = frozenset()
    read_only: bool = False
    blocked: frozenset[str] = frozenset()
    by_care_team: bool = False

    def reaches(self, patient_ids: Iterable[str]) -> bool:
        """Whether any of ``patient_ids`` is reached (how search matches, too)."""
        return self.everything or not self.patients.isdisjoint(patient_ids)

    def reaches_all(self, patient_ids: Iterable[str]) -> bool:
        ids = frozenset(patient_ids)
        return self.everything or (bool(ids) and ids <= self.patients)


@dataclass(frozen=True, slots=True)
class ScopeGrant:
    """What the scopes grant for one (type, letter): nothing, everything in reach, or
    only the SMART patient in context (a clinician's app launched with ``patient/``)."""

    granted: bool
    patient_context_only: bool = False
    audit_everything: bool = field(default=False)


def contexts_for(principal: Principal) -> tuple[Context | None, ...]:
    """The scope contexts that count for this kind of principal, in order of preference."""
    if principal.kind == "system":
        return ("system",)
    if principal.kind == "staff":
        return ("user", "patient")
    return (None,)  # patient, relative, anonymous-dev: their reach is already one patient


def scope_grant(principal: Principal, resource_type: str, operation: Operation) -> ScopeGrant:
    """What ``principal``'s scopes grant for ``operation`` on ``resource_type``.

    Scopes narrowed by a query (``patient/Observation.rs?category=x``) are not
    applied yet and grant nothing (conservative). The access log needs a scope
    naming ``AuditEvent`` itself.
    """
    letter = SCOPE_LETTER[operation]
    if resource_type == AUDIT_TYPE:
        if principal.kind == "anonymous-dev":
            return ScopeGrant(True, audit_everything=True)
        named = [
            s for s in principal.scopes.resource_scopes
            if s.resource_type == AUDIT_TYPE and letter in s.interactions and not s.restriction
        ]
        if not named:
            return ScopeGrant(False)
        admin = principal.kind in ("staff", "system") and any(
            s.context in ("user", "system") for s in named
        )
        return ScopeGrant(True, audit_everything=admin)
    for context in contexts_for(principal):
        if principal.scopes.allows(context, resource_type, letter):
            only_patient = principal.kind == "staff" and context == "patient"
            return ScopeGrant(True, patient_context_only=only_patient)
    return ScopeGrant(False)


def check_scope(principal: Principal, resource_type: str, operation: Operation) -> ScopeGrant:
    """The grant, or a 403 ``insufficient_scope`` naming the scope that would do."""
    grant = scope_grant(principal, resource_type, operation)
    if not grant.granted:
        letter = SCOPE_LETTER[operation]
        context = contexts_for(principal)[0] or "patient"
        raise insufficient_scope(
            f"the token's scopes do not allow {operation} on {resource_type}"
            f" (needs e.g. {context}/{resource_type}.{letter})"
        )
    return grant


# ------------------------------------------------------------------ resource facts


def has_patient_compartment(resource_type: str) -> bool:
    """Whether resources of this type are some patient's data (Patient, or a ``patient`` param)."""
    rtype = REGISTRY.get(resource_type)
    return resource_type == "Patient" or (rtype is not None and "patient" in rtype.params)


def patient_ids(resource_type: str, body: Mapping[str, Any]) -> frozenset[str] | None:
    """The Patient ids a resource is about; ``None`` when the type is not patient data.

    Follows the type's ``patient`` search parameter (as search does), so a
    resource is visible by read exactly when a search would find it.
    """
    if resource_type == "Patient":
        rid = body.get("id")
        return frozenset([rid]) if isinstance(rid, str) else frozenset()
    rtype = REGISTRY.get(resource_type)
    param = rtype.params.get("patient") if rtype is not None else None
    if param is None:
        return None
    found: set[str] = set()
    for path in param.paths:
        for value in values_at(dict(body), path):
            if isinstance(value, dict) and isinstance(value.get("reference"), str):
                target = parse_reference(value["reference"])
                if target and target[0] == "Patient":
                    found.add(target[1])
    return frozenset(found)


def is_nopatient(body: Mapping[str, Any]) -> bool:
    """Whether ``meta.security`` carries the ``NOPATIENT`` label."""
    meta = body.get("meta")
    labels = meta.get("security") if isinstance(meta, dict) else None
    return isinstance(labels, list) and any(
        isinstance(c, dict) and c.get("code") == NOPATIENT_CODE
        and c.get("system") in (NOPATIENT_SYSTEM, None)
        for c in labels
    )


#: Types that belong to their writer's organisation (or patient), not to a patient:
#: a Subscription carries channel headers and filters naming patients (issue 12).
OWNED_TYPES: Final[frozenset[str]] = frozenset({"Subscription"})
#: ``meta.tag`` system of the owner the gate stamps on an owned resource at write.
OWNER_SYSTEM: Final[str] = "https://samplan.se/fhir/CodeSystem/owner"


def owner_code(principal: Principal) -> str | None:
    """Who owns what ``principal`` writes: its care unit's or organisation's HSA-id, or
    ``Patient/{claim}`` for a patient; None for those who own nothing (relatives)."""
    if principal.kind == "patient":
        return f"Patient/{principal.patient}" if principal.patient else None
    if principal.kind == "staff":
        return principal.care_unit_hsa_id or principal.organisation_hsa_id
    if principal.kind == "system":
        return principal.organisation_hsa_id
    return None


def owner_codes(principal: Principal) -> frozenset[str]:
    """The owner codes ``principal`` reads as its own (any of its HSA-ids; its patient)."""
    if principal.kind == "patient":
        own = owner_code(principal)
        return frozenset([own]) if own else frozenset()
    if principal.kind in ("staff", "system"):
        return frozenset(h for h in (principal.organisation_hsa_id, principal.care_unit_hsa_id,
                                     principal.care_provider_hsa_id) if h)
    return frozenset()


def owners_of(body: Mapping[str, Any]) -> frozenset[str]:
    meta = body.get("meta")
    tags = meta.get("tag") if isinstance(meta, Mapping) else None
    return frozenset(str(t.get("code")) for t in tags or ()
                     if isinstance(t, Mapping) and t.get("system") == OWNER_SYSTEM)


def owns(principal: Principal, body: Mapping[str, Any]) -> bool:
    return not owner_codes(principal).isdisjoint(owners_of(body))


def stamp_owner(principal: Principal, resource_type: str, body: dict[str, Any]) -> None:
    """Mark an owned resource with its writer's owner code (whatever the body said)."""
    if resource_type not in OWNED_TYPES:
        return
    code = owner_code(principal)
    meta = body.setdefault("meta", {})
    tags = [t for t in meta.get("tag") or () if not (
        isinstance(t, Mapping) and t.get("system") == OWNER_SYSTEM)]
    if code is not None and principal.kind != "anonymous-dev":
        tags.append({"system": OWNER_SYSTEM, "code": code})
    if tags:
        meta["tag"] = tags
    else:
        meta.pop("tag", None)


def hides_professional_content(principal: Principal) -> bool:
    return principal.kind in ("patient", "relative")


def visible(
    principal: Principal, reach: Reach, resource_type: str, body: Mapping[str, Any]
) -> bool:
    """Whether the principal may see this resource at all (scopes are checked apart)."""
    if reach.everything:
        return True
    if hides_professional_content(principal) and is_nopatient(body):
        return False
    if resource_type in OWNED_TYPES:
        return owns(principal, body)
    ids = patient_ids(resource_type, body)
    if ids is None:
        return True  # directory data (Organization, Practitioner, ...): scopes decide
    return reach.reaches(ids)


# -------------------------------------------------------------------------- writes


def check_write(
    principal: Principal,
    reach: Reach,
    resource_type: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    *,
    before_checked: bool = False,
) -> None:
    """Raise unless ``principal`` may turn ``before`` into ``after``.

    ``before`` is ``None`` for a create, ``after`` is ``None`` for a delete.
    A ``before`` out of reach is :class:`NotFound` (its existence must not
    leak); an ``after`` out of reach is :class:`Forbidden`. ``reach`` is the
    reach *after* the write: a CareTeam naming the writer's organisation brings
    its patient into reach, and a patient's block keeps them out whatever
    CareTeam is written. ``before_checked``: ``before`` was seen to be visible
    before the write (with reach as it was then), so it is not judged again.
    """
    label = f"{resource_type}/{_id_of(before, after)}"
    if reach.everything:
        return
    if resource_type == answers.RESPONSE and answers.check_answer(
            principal, reach.patients, reach.organisations, before, after):
        return  # an answer to the seven questions (security/answers.py)
    if (before is not None and not before_checked
            and not visible(principal, reach, resource_type, before)):
        raise NotFound(f"{label} does not exist.")
    if reach.read_only or principal.kind == "relative":
        raise Forbidden(f"{principal.kind} principals may not change data ({label}).")
    if principal.kind == "patient":
        _check_patient_write(reach, resource_type, before, after, label)
        return
    if after is None:
        return  # delete of something in reach: scopes decided
    ids = patient_ids(resource_type, after)
    if ids is None or reach.reaches_all(ids):
        return
    if before is None and resource_type == "Patient":
        return  # registering a new patient: no data about them exists yet
    raise Forbidden(
        f"{label} is about a patient outside your reach (no CareTeam includes your organisation)."
    )


def _check_patient_write(
    reach: Reach,
    resource_type: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    label: str,
) -> None:
    if resource_type not in PATIENT_AUTHORED_TYPES:
        raise Forbidden(
            f"a patient may add or change only their own"
            f" {', '.join(sorted(PATIENT_AUTHORED_TYPES))} (not {resource_type});"
            " what care is responsible for is changed by care."
        )
    for body in (before, after):
        if body is None:
            continue
        ids = patient_ids(resource_type, body) or frozenset()
        if not reach.reaches_all(ids):
            raise Forbidden(f"{label} must be about yourself.")
        if resource_type not in _AUTHOR_PATHS:
            continue
        if not _authored_by_patient(resource_type, body, reach.patients):
            raise Forbidden(
                f"{label} must be marked as patient-authored"
                f" ({resource_type}.{_AUTHOR_PATHS[resource_type]} = your Patient)."
            )


def _authored_by_patient(resource_type: str, body: Mapping[str, Any], own: frozenset[str]) -> bool:
    path = _AUTHOR_PATHS[resource_type]
    for value in values_at(dict(body), path):
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            target = parse_reference(value["reference"])
            if target and target[0] == "Patient" and target[1] in own:
                return True
    return False


def _id_of(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str:
    for body in (after, before):
        if body is not None and isinstance(body.get("id"), str):
            return str(body["id"])
    return "(new)"


# ------------------------------------------------------- consents: spärr and proxies


def consent_in_force(consent: Mapping[str, Any], today: date) -> bool:
    """``status = active`` and today inside ``provision.period`` (when one is given)."""
    if consent.get("status") != "active":
        return False
    provision = consent.get("provision")
    period = provision.get("period") if isinstance(provision, dict) else None
    if isinstance(period, dict):
        start, end = period.get("start"), period.get("end")
        if isinstance(start, str) and start[:10] > today.isoformat():
            return False
        if isinstance(end, str) and end[:10] < today.isoformat():
            return False
    return True


def _provision_actors(consent: Mapping[str, Any]) -> set[tuple[str, str]]:
    actors: set[tuple[str, str]] = set()
    for value in values_at(dict(consent), "provision.actor.reference"):
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            target = parse_reference(value["reference"])
            if target:
                actors.add(target)
    return actors


def _provision_type(consent: Mapping[str, Any]) -> str | None:
    provision = consent.get("provision")
    kind = provision.get("type") if isinstance(provision, dict) else None
    return kind if isinstance(kind, str) else None


def blocked_patients(
    consents: Iterable[Mapping[str, Any]], actors: Iterable[tuple[str, str]], today: date
) -> frozenset[str]:
    """Patients who block (spärr) any of ``actors`` by a Consent in force that denies them.

    A block overrides care-team reach: the blocked care provider, unit or
    person no longer reaches the patient, whatever CareTeam names them.
    """
    wanted = set(actors)
    blocked: set[str] = set()
    for consent in consents:
        if (consent_in_force(consent, today) and _provision_type(consent) == "deny"
                and _provision_actors(consent) & wanted):
            blocked |= patient_ids("Consent", consent) or set()
    return frozenset(blocked)


def relative_may_act(
    related_person: Mapping[str, Any],
    patient: Mapping[str, Any] | None,
    grants: Iterable[Mapping[str, Any]],
    today: date,
) -> bool:
    """Whether a relative reaches the patient their RelatedPerson names.

    Either a guardian (relationship ``GUARD``/``PRN``/``MTH``/``FTH``) of a child
    younger than 13, or anyone with a proxy grant in force: a Consent about the
    patient, ``provision.type = permit``, naming the RelatedPerson as actor.
    Revoking the grant (status other than active, or a past period end) ends it
    at once.
    """
    if related_person.get("active") is False:
        return False
    rp_id = related_person.get("id")
    for grant in grants:
        if (consent_in_force(grant, today) and _provision_type(grant) == "permit"
                and ("RelatedPerson", rp_id) in _provision_actors(grant)):
            return True
    if not is_guardian(related_person) or patient is None:
        return False
    birth = patient.get("birthDate")
    if not birth and (from_number := birth_date_of(patient)) is not None:
        birth = from_number.isoformat()
    age = age_on(birth, today)
    return age is not None and age < GUARDIAN_AGE_LIMIT


def is_guardian(related_person: Mapping[str, Any]) -> bool:
    for value in values_at(dict(related_person), "relationship.coding"):
        if isinstance(value, dict) and value.get("code") in GUARDIAN_RELATIONSHIPS:
            return True
    return False


def age_on(birth_date: Any, today: date) -> int | None:
    """Whole years from a FHIR ``date`` (YYYY, YYYY-MM or YYYY-MM-DD) to ``today``.

    A partial date counts from its latest possible day, so that a child born
    "2014" is not taken for 13 before they may be.
    """
    if not isinstance(birth_date, str) or len(birth_date) < 4:
        return None
    try:
        year = int(birth_date[:4])
        month = int(birth_date[5:7]) if len(birth_date) >= 7 else 12
        day = int(birth_date[8:10]) if len(birth_date) >= 10 else 31 if month == 12 else 28
    except ValueError:
        return None
    return today.year - year - ((today.month, today.day) < (month, day))
