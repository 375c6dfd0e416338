"""The patient's agreement gathered in one statement: the record the searches make, far cheaper.

:meth:`PatientAgreements.record <samplan.agreement.patient_service.PatientAgreements.record>`
describes what is read: the Patient, eight searches, and the directory the care
teams name. Each search through the FHIR service is a statement (or five, with
its includes) and an access-log commit of its own: ~12 ms of CPU for one
document (issue 7). Here :func:`samplan.store.agreement_queries.gather` fetches
all of it at once, and the searches are answered from its rows
(:class:`GatheredDirectory` for the directory's) with the reader's own access
rules (:mod:`samplan.agreement.patient_access`), so the record is the one the
searches would have made:

* the same resources, in the same order, by the same criteria and limits;
* only what the reader may see (scopes, reach, ``NOPATIENT`` for patients);
* one access-log entry (and commit) for all that was disclosed.

:func:`gathered_record` answers ``None`` when it cannot promise that (the Patient
is missing, deleted or out of reach; a scope is missing; a reference the
search index does not hold, such as ``CareTeam.participant.onBehalfOf``, names
something not gathered): the caller then reads through the searches, which
also answer every 404, 410 and 403 exactly as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

import orjson

from samplan.agreement.patient_view import ACTIVE_GOAL_STATUSES, PatientRecord
from samplan.fhir.dates import parse_range
from samplan.fhir.indexing import parse_reference, values_at
from samplan.fhir.registry import REGISTRY
from samplan.fhir.stored import StoredResource
from samplan.security.gate import Access, AgreementRows, Disclosure
from samplan.security.redaction import may_need_redaction

__all__ = [
    "DIRECTORY_TYPES",
    "GOAL_STATUSES",
    "MAX_COUNT",
    "MESSAGE_COUNT",
    "PLAN_INCLUDES",
    "ROLE_INCLUDES",
    "VISIT_COUNT",
    "DirectorySource",
    "Gathered",
    "GatheredDirectory",
    "NotGathered",
    "gathered_record",
    "ids_of",
    "reference_targets",
    "resolve_directory",
    "search_order",
    "visits_since",
]

Resource = dict[str, Any]
Key = tuple[str, str]

MAX_COUNT: Final = 1000
"""``_count`` of the searches that want everything."""
VISIT_COUNT: Final = 100
MESSAGE_COUNT: Final = 20
GOAL_STATUSES: Final[tuple[str, ...]] = (
    "proposed", "planned", "accepted", "active", "on-hold",
)  # fmt: skip
"""``Goal.lifecycleStatus`` of the goals searched for (in the order the search names them)."""
assert frozenset(GOAL_STATUSES) == ACTIVE_GOAL_STATUSES
DIRECTORY_TYPES: Final = ("Practitioner", "PractitionerRole", "Organization", "RelatedPerson")
"""What ``_include=CarePlan:author`` brings that belongs in the directory."""
ROLE_INCLUDES: Final = ("practitioner", "organization")
"""What ``PractitionerRole?_id=`` includes (``PractitionerRole:{param}``)."""
PLAN_INCLUDES: Final = ("care-team", "goal", "author")
"""The plans' ``_include``-s (``CarePlan:{param}``), in the order the search asks for them."""


class NotGathered(Exception):
    """The gathered rows cannot answer a search exactly: read through the searches instead."""


def visits_since(now: datetime) -> str:
    """The ``date=ge`` of the Appointment search: from the day 12 hours ago."""
    return (now - timedelta(hours=12)).date().isoformat()


def _body(stored: StoredResource) -> Resource:
    data: Resource = orjson.loads(stored.content or b"{}")
    return data


def _key(stored: StoredResource) -> Key:
    return stored.resource_type, stored.resource_id


def _order(stored: StoredResource) -> tuple[int, str]:
    """The search engine's default order: ``_lastUpdated``, then id."""
    return stored.last_updated, stored.resource_id


def reference_targets(
    body: Resource, resource_type: str, param: str, base_url: str
) -> list[Key]:
    """What the search index holds for ``param`` of a resource: its references here."""
    definition = REGISTRY[resource_type].params[param]
    found: list[Key] = []
    for path in definition.paths:
        for value in values_at(body, path):
            if isinstance(value, dict) and isinstance(value.get("reference"), str):
                target = parse_reference(value["reference"], base_url)
                if target and (not definition.targets or target[0] in definition.targets):
                    found.append(target)
    return found


def search_order(
    matches: Iterable[Resource],
    included: Iterable[StoredResource],
    params: Iterable[str],
    base_url: str,
) -> list[StoredResource]:
    """``included`` in one order, whichever way they were found (the search engine's order
    is the database's): per ``_include`` as asked, by match as the page lists them, each
    match's references as written; then the rest (``_revinclude``, or reached only through
    a match the reader may not see) by ``_lastUpdated``, then id."""
    position: dict[Key, tuple[int, int, str]] = {}
    matches = list(matches)
    for param in params:
        for match in matches:
            for key in reference_targets(match, str(match.get("resourceType")), param, base_url):
                position.setdefault(key, (0, len(position), ""))

    def order(stored: StoredResource) -> tuple[int, int, str]:
        return position.get(_key(stored)) or (1, stored.last_updated, stored.resource_id)

    return sorted(included, key=order)


class GatheredDirectory:
    """The directory's follow-up searches, answered from the gathered rows.

    ``PractitionerRole?_id=..&_include=PractitionerRole:practitioner&_include=
    PractitionerRole:organization``, ``Practitioner?_id=..``, ``Organization?_id=..``
    and ``PractitionerRole?practitioner=..&_include=PractitionerRole:organization``:
    each answers its matches (by ``_lastUpdated``, then id) and then its includes,
    filtered as the reader's search filters them. Anything the gathering did not look
    up raises :class:`NotGathered`.
    """

    def __init__(self, rows: AgreementRows, access: Disclosure, base_url: str, count: int
                 ) -> None:
        self.rows = rows
        self.access = access
        self.bodies: dict[Key, Resource] = {}
        self.base_url = base_url
        self.count = count

    def body(self, stored: StoredResource) -> Resource:
        key = _key(stored)
        body = self.bodies.get(key)
        if body is None:
            body = self.bodies[key] = _body(stored)
        return body

    def targets(self, stored: StoredResource, param: str) -> list[Key]:
        """What the search index holds for ``param`` of ``stored``: its references here."""
        return reference_targets(self.body(stored), stored.resource_type, param, self.base_url)

    def _page(self, matches: list[StoredResource], includes: tuple[str, ...]) -> list[Resource]:
        if len(matches) > self.count:
            raise NotGathered("more matches than one page")
        matches.sort(key=_order)
        seen = {_key(m) for m in matches}
        included: list[StoredResource] = []
        for param in includes:
            for match in matches:
                for key in self.targets(match, param):
                    if key in seen:
                        continue
                    seen.add(key)
                    if key not in self.rows.asked:
                        raise NotGathered(f"{key[0]}/{key[1]} was not looked up")
                    if key in self.rows.directory:
                        included.append(self.rows.directory[key])
        access, body = self.access, self.body
        shown = [body(m) for m in matches if access.matches(m.resource_type, body(m))]
        return [*shown, *(body(i) for i in search_order(shown, included, includes, self.base_url)
                          if access.includes(i.resource_type, body(i)))]

    async def by_id(self, resource_type: str, ids: list[str]) -> list[Resource]:
        matches: list[StoredResource] = []
        for rid in dict.fromkeys(ids):
            key = (resource_type, rid)
            if key not in self.rows.asked:
                raise NotGathered(f"{resource_type}/{rid} was not looked up")
            if key in self.rows.directory:
                matches.append(self.rows.directory[key])
        includes = ROLE_INCLUDES if resource_type == "PractitionerRole" else ()
        return self._page(matches, includes)

    async def roles_of(self, practitioners: list[str]) -> list[Resource]:
        wanted = set(practitioners)
        if not wanted <= self.rows.roles_asked:
            raise NotGathered("the roles of a Practitioner were not looked up")
        matches = [
            stored for stored in self.rows.directory.values()
            if stored.resource_type == "PractitionerRole"
            and any(t[0] == "Practitioner" and t[1] in wanted
                    for t in self.targets(stored, "practitioner"))
        ]
        return self._page(matches, ("organization",))


def ids_of(references: Iterable[Any], resource_type: str) -> list[str]:
    """The ids of the relative references to ``resource_type`` among ``references``, once each."""
    found: list[str] = []
    for reference in references:
        if isinstance(reference, dict):
            value = str(reference.get("reference", ""))
            kind, _, rid = value.partition("/")
            if kind == resource_type and rid and "/" not in rid and rid not in found:
                found.append(rid)
    return found


class DirectorySource(Protocol):
    """The directory's follow-up searches: by the reader, or from the gathered rows."""

    async def by_id(self, resource_type: str, ids: list[str]) -> list[Resource]:
        """``{type}?_id=..`` (a PractitionerRole with its practitioner and organization):
        the matches, then the includes."""

    async def roles_of(self, practitioners: list[str]) -> list[Resource]:
        """``PractitionerRole?practitioner=..&_include=PractitionerRole:organization``."""


async def resolve_directory(
    source: DirectorySource,
    careteams: list[Resource],
    careplans: list[Resource],
    found: dict[str, Resource],
) -> None:
    """Add to ``found`` the Practitioners, PractitionerRoles and Organizations the care teams
    and the plans' authors name, the PractitionerRoles of those Practitioners (phone, opening
    hours), and the Organizations of those PractitionerRoles."""
    refs: list[Any] = []
    for team in careteams:
        for participant in team.get("participant") or ():
            refs += [participant.get("member"), participant.get("onBehalfOf")]
        refs += team.get("managingOrganization") or []
    refs += [plan.get("author") for plan in careplans]

    async def fetch(resource_type: str, ids: list[str]) -> None:
        missing = [i for i in ids if f"{resource_type}/{i}" not in found]
        if missing:
            for resource in await source.by_id(resource_type, missing):
                found[f"{resource['resourceType']}/{resource['id']}"] = resource

    await fetch("PractitionerRole", ids_of(refs, "PractitionerRole"))
    await fetch("Practitioner", ids_of(refs, "Practitioner"))
    practitioners = [key.partition("/")[2] for key in found if key.startswith("Practitioner/")]
    if practitioners:
        for resource in await source.roles_of(practitioners):
            found.setdefault(f"{resource['resourceType']}/{resource['id']}", resource)
    organisations = ids_of(refs, "Organization") + ids_of(
        (r.get("organization") for r in list(found.values())
         if r.get("resourceType") == "PractitionerRole"), "Organization")
    await fetch("Organization", list(dict.fromkeys(organisations)))


class Gathered:
    """One patient's agreement as gathered for one reader: the rows, and what the reader sees.

    :meth:`of` gathers; :meth:`key` says what a view made of it depends on (for
    :mod:`samplan.agreement.patient_cache`); :meth:`record` answers the searches from the
    rows; :meth:`log` writes the access log, once, for what was disclosed.
    """

    def __init__(self, reader: Access, rows: AgreementRows, patient: StoredResource,
                 access: Disclosure, count: int) -> None:
        self.reader = reader
        self.rows = rows
        self.patient = patient
        self.access = access
        self.lookup = GatheredDirectory(rows, access, reader.gate.base_url, count)
        self.body = self.lookup.body
        self.all = [patient, *rows.plans, *rows.included, *rows.goals, *rows.visits,
                    *rows.messages, *rows.directory.values()]

    @classmethod
    async def of(cls, reader: Access, patient_id: str, *, now: datetime) -> Gathered | None:
        """The gathering, or None: read through the searches (see the module)."""
        span = parse_range(visits_since(now), reader.tz)
        if span is None:  # pragma: no cover - an ISO date always parses
            return None
        count = min(MAX_COUNT, reader.max_count)
        found = await reader.gather_agreement(
            patient_id, plan_status="active", goal_statuses=GOAL_STATUSES,
            visits_from_us=span[0], plan_count=count, goal_count=count,
            visit_count=min(VISIT_COUNT, reader.max_count),
            message_count=min(MESSAGE_COUNT, reader.max_count),
        )
        if found is None:
            return None
        rows, access = found
        patient = rows.patient
        if patient is None or patient.deleted or not patient.content:
            return None  # the read answers 404 or 410 (and logs it)
        gathered = cls(reader, rows, patient, access, count)
        body = gathered.body
        # read lazily: the development principal's reach is everything, nothing to parse
        await access.settle(patient_id, ((s.resource_type, body(s)) for s in gathered.all))
        if not access.everything and not access.visible("Patient", body(patient)):
            return None  # the read answers 404 (and logs the attempt)
        return gathered

    def key(self, *more: str) -> bytes:
        """A digest of everything a record made of this gathering depends on: every row
        (bytes and all, in order), what the reader may see of each, and ``more``.

        Every field is delimited or length-prefixed, so two different inputs never
        serialize alike (the digest then tells them apart as SHA-256 does).
        """
        rows = self.rows
        parts: tuple[tuple[bytes, Iterable[StoredResource]], ...] = (
            (b"patient", (self.patient,)), (b"plans", rows.plans), (b"included", rows.included),
            (b"goals", rows.goals), (b"visits", rows.visits), (b"messages", rows.messages),
            (b"directory", rows.directory.values()),
        )
        chunks: list[bytes] = []
        for name, stored_rows in parts:
            chunks.append(b"\x1e" + name)
            for stored in stored_rows:
                content = stored.content or b""
                chunks.append(f"\x1f{stored.resource_type}/{stored.resource_id}/"
                              f"{stored.version_id}/{stored.last_updated}/{stored.deleted:d}/"
                              f"{len(content)}:".encode())
                chunks.append(content)
        asked = sorted(f"{t}/{i}" for t, i in rows.asked)
        for name, keys in ((b"asked", asked), (b"roles", sorted(rows.roles_asked)),
                           (b"more", [self.lookup.base_url, str(self.lookup.count), *more])):
            chunks.append(b"\x1e" + name)
            chunks += [f"\x1f{len(k)}:{k}".encode() for k in keys]
        chunks += [b"\x1eaccess", self._decisions()]
        return hashlib.sha256(b"".join(chunks)).digest()

    def _decisions(self) -> bytes:
        """What the reader may see of each row: as a match, as an include (by scope)."""
        access = self.access
        if access.guarded is None:
            return b"all"
        if access.everything:  # every row seen; includes by type (the rows name their types)
            types = sorted({stored.resource_type for stored in self.all})
            return ";".join(f"{t}={access.may_include_type(t):d}" for t in types).encode()
        return bytes(  # 0-3 each: never the text above
            2 * access.visible(s.resource_type, self.body(s)) + access.may_include_type(
                s.resource_type) for s in self.all)

    async def record(self) -> PatientRecord:
        """The record as :meth:`PatientAgreements.record` builds it from its searches
        (:class:`NotGathered` when the rows cannot answer a search)."""
        rows, access, body = self.rows, self.access, self.body
        careplans = [body(m) for m in rows.plans if access.matches("CarePlan", body(m))]
        plan_keys = {_key(m) for m in rows.plans}
        included = [body(i) for i in search_order(careplans, rows.included, PLAN_INCLUDES,
                                                  self.lookup.base_url)
                    if _key(i) not in plan_keys and access.includes(i.resource_type, body(i))]
        careteams = [r for r in included if r.get("resourceType") == "CareTeam"]
        goals = {r["id"]: r for r in included if r.get("resourceType") == "Goal"}
        appointments = {r["id"]: r for r in included if r.get("resourceType") == "Appointment"}
        directory = {f"{r['resourceType']}/{r['id']}": r for r in included
                     if r.get("resourceType") in DIRECTORY_TYPES}
        await resolve_directory(self.lookup, careteams, careplans, directory)
        goals |= {m.resource_id: body(m) for m in rows.goals if access.matches("Goal", body(m))}
        appointments |= {m.resource_id: body(m) for m in rows.visits
                         if access.matches("Appointment", body(m))}
        messages = [body(m) for m in rows.messages
                    if access.matches("Communication", body(m))]
        hidden = await self.reader.hidden_references(
            [body(self.patient), *careplans, *included, *goals.values(), *appointments.values(),
             *directory.values(), *messages])
        return PatientRecord(
            patient=body(self.patient),
            careplans=tuple(careplans),
            careteams=tuple(careteams),
            goals=tuple(goals.values()),
            appointments=tuple(appointments.values()),
            directory=tuple(directory.values()),
            messages=tuple(messages),
            hidden=hidden,
            unlabelled=not hidden and not any(may_need_redaction(s.content) for s in self.all),
        )

    async def log(self, disclosed: tuple[tuple[str | None, tuple[Key, ...]], ...]) -> None:
        """The access log of this reading (nothing for the plain service)."""
        await self.access.log(self.patient, disclosed)


async def gathered_record(
    reader: Access, patient_id: str, *, now: datetime
) -> PatientRecord | None:
    """What the read and the searches would give ``reader``, from one statement (and logged
    as one access); None when it cannot say exactly (then search: see the module)."""
    gathered = await Gathered.of(reader, patient_id, now=now)
    if gathered is None:
        return None
    try:
        record = await gathered.record()
    except NotGathered:
        return None
    await gathered.log(gathered.access.by_patient())
    return record
