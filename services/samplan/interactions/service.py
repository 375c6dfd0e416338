"""The FHIR RESTful interactions (https://hl7.org/fhir/R4/http.html), free of HTTP and SQL.

Each write runs in one repository transaction and is retried when a
concurrent writer got there first (WriteConflict); preconditions (If-Match,
If-None-Exist) are checked inside that transaction against locked rows, so of
N racing writers with the same ETag exactly one wins, and N equal conditional
creates make exactly one resource.

Every write names its writer (a :class:`WriteObserver` factory, one observer per
attempt): the security layer's, which checks each write and logs it, or the
service's own. There is no default: a write without a writer does not type-check.
Who may *see* a conditional match is the writer's to say too
(:meth:`MatchAdmission.admits`): a match the writer may not see is no match.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable
from zoneinfo import ZoneInfo

import jsonpatch
import jsonpointer
import orjson

from samplan.fhir.errors import (
    BadRequest,
    Conflict,
    FhirError,
    Gone,
    Issue,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
    Unprocessable,
)
from samplan.fhir.identifiers import PERSONNUMMER_SYSTEM, SAMORDNINGSNUMMER_SYSTEM
from samplan.fhir.registry import REGISTRY, Interaction, ResourceType
from samplan.fhir.resource import ID_PATTERN, validate_resource
from samplan.fhir.search import SearchQuery, parse_search, single_identifier
from samplan.fhir.stored import HistoryPage, SearchPage, StoredResource, WriteConflict
from samplan.store.repository import Repository, WriteObserver, WriteTx

T = TypeVar("T")
_RETRIES = 8

Writer = Callable[[], WriteObserver]
"""Makes the observer of one write attempt (a retry starts with a fresh one)."""

#: Identifiers of which one value names one Patient (issue 12, finding 7).
UNIQUE_PATIENT_IDENTIFIERS = (PERSONNUMMER_SYSTEM, SAMORDNINGSNUMMER_SYSTEM)
#: How many matches of a conditional criteria are looked at (for the writer to admit).
_MATCH_WINDOW = 50


@runtime_checkable
class MatchAdmission(Protocol):
    """What a writer may see among the matches of a conditional criteria."""

    async def admits(self, tx: WriteTx, stored: StoredResource, purpose: str) -> bool:
        """Whether ``stored`` counts as a match (``purpose``: ``If-None-Exist``,
        ``ifNoneExist``, ``request.url`` or ``reference``)."""


@dataclass(slots=True)
class WriteResult:
    stored: StoredResource
    created: bool
    # a conditional create that found its match: nothing was written
    existing: bool = False
    warnings: list[Issue] = field(default_factory=list)


def parse_etag(value: str | None) -> int | None:
    """The version number in an ETag (``W/"3"``, ``"3"``); None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    return int(text) if text.isdigit() else -1


class FhirService:
    """What a FHIR client can do, in terms of the repository."""

    def __init__(
        self,
        repo: Repository,
        *,
        tz: ZoneInfo,
        base_url: str,
        default_count: int = 20,
        max_count: int = 1000,
    ) -> None:
        self.repo = repo
        self.tz = tz
        self.base_url = base_url
        self.default_count = default_count
        self.max_count = max_count

    # -- helpers -------------------------------------------------------------------------

    def resource_type(self, name: str, interaction: Interaction | None = None) -> ResourceType:
        rtype = REGISTRY.get(name)
        if rtype is None:
            raise NotFound(f"Resource type {name!r} is not supported by this server.")
        if interaction is not None and not rtype.supports(interaction):
            raise MethodNotAllowed(f"{interaction} is not supported on {name}.")
        return rtype

    def parse_query(
        self, resource_type: str, params: list[tuple[str, str]], *, strict: bool = False
    ) -> SearchQuery:
        return parse_search(
            resource_type,
            params,
            tz=self.tz,
            base_url=self.base_url,
            strict=strict,
            default_count=self.default_count,
            max_count=self.max_count,
        )

    async def run(self, unit: Callable[[WriteTx], Awaitable[T]], writer: Writer) -> T:
        """Run ``unit`` in a write transaction made by ``writer``, again on a write conflict."""
        for attempt in range(_RETRIES):
            try:
                async with self.repo.transaction(writer()) as tx:
                    return await unit(tx)
            except WriteConflict:
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    # -- reads ---------------------------------------------------------------------------

    async def read(self, resource_type: str, resource_id: str) -> StoredResource:
        self.resource_type(resource_type, "read")
        stored = await self.repo.read(resource_type, resource_id)
        if stored is None:
            raise NotFound(f"{resource_type}/{resource_id} does not exist.")
        if stored.deleted:
            raise Gone(
                f"{resource_type}/{resource_id} was deleted (version {stored.version_id}).",
                headers={"ETag": stored.etag},
            )
        return stored

    async def vread(self, resource_type: str, resource_id: str, version: str) -> StoredResource:
        self.resource_type(resource_type, "vread")
        if not version.isdigit():
            raise NotFound(f"Version {version!r} of {resource_type}/{resource_id} does not exist.")
        stored = await self.repo.vread(resource_type, resource_id, int(version))
        if stored is None:
            raise NotFound(f"Version {version} of {resource_type}/{resource_id} does not exist.")
        if stored.deleted:
            raise Gone(f"Version {version} of {resource_type}/{resource_id} is a deletion.")
        return stored

    async def live_body(self, stored: StoredResource) -> dict[str, Any] | None:
        """The body that decides who may see a resource: the current one, or the last one
        before it was deleted (None: nothing is kept)."""
        if not stored.deleted and stored.content:
            body = orjson.loads(stored.content)
            return body if isinstance(body, dict) else None
        version = stored.version_id - 1
        while version >= 1:
            older = await self.repo.vread(stored.resource_type, stored.resource_id, version)
            if older is not None and not older.deleted and older.content:
                body = orjson.loads(older.content)
                return body if isinstance(body, dict) else None
            version -= 1
        return None

    async def search(
        self, resource_type: str, params: list[tuple[str, str]], *, strict: bool = False
    ) -> tuple[SearchQuery, SearchPage]:
        self.resource_type(resource_type, "search-type")
        query = self.parse_query(resource_type, params, strict=strict)
        return query, await self.repo.search(query)

    async def search_query(self, query: SearchQuery) -> SearchPage:
        """A parsed (and perhaps restricted) search, run as it is."""
        return await self.repo.search(query)

    async def read_many(self, keys: list[tuple[str, str]]) -> list[StoredResource]:
        return await self.repo.read_many(keys)

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
            self.resource_type(
                resource_type, "history-instance" if resource_id else "history-type"
            )
        if resource_id is not None and resource_type is not None:
            if await self.repo.read(resource_type, resource_id) is None:
                raise NotFound(f"{resource_type}/{resource_id} does not exist.")
        size = min(count if count is not None else self.default_count, self.max_count)
        return await self.repo.history(
            resource_type, resource_id, count=size, since_us=since_us, before_seq=before_seq
        )

    # -- writes --------------------------------------------------------------------------

    async def create(
        self, resource_type: str, body: Any, *, writer: Writer, if_none_exist: str | None = None
    ) -> WriteResult:
        self.resource_type(resource_type, "create")
        resource = validate_resource(body, resource_type)

        async def unit(tx: WriteTx) -> WriteResult:
            return await self.create_in(tx, resource, if_none_exist=if_none_exist)

        return await self.run(unit, writer)

    async def create_in(
        self,
        tx: WriteTx,
        resource: dict[str, Any],
        *,
        if_none_exist: str | None = None,
        resource_id: str | None = None,
    ) -> WriteResult:
        resource_type = resource["resourceType"]
        if if_none_exist:
            match = await self.find_one(tx, resource_type, if_none_exist, "If-None-Exist")
            if match is not None:
                return WriteResult(match, created=False, existing=True)
        new_id = resource_id or str(uuid.uuid4())
        resource = {**resource, "id": new_id}
        await self._check_integrity(tx, resource)
        stored = await tx.write(resource, resource_id=new_id, current=None, method="POST")
        return WriteResult(stored, created=True)

    async def find_one(
        self, tx: WriteTx, resource_type: str, criteria: str, what: str,
        prefetched: dict[tuple[str, str], list[StoredResource]] | None = None,
    ) -> StoredResource | None:
        """The single match of a conditional criteria; when there is none, as found under
        a lock on that criteria (see :meth:`prefetch_matches`).

        ``prefetched`` (:meth:`prefetch_matches`): the matches of identifier criteria,
        found for a whole transaction Bundle at once.
        """
        if prefetched is not None and (resource_type, criteria) in prefetched:
            candidates = prefetched[(resource_type, criteria)]
        else:
            params = _query_pairs(criteria)
            if not params:
                raise BadRequest(f"{what} has no search criteria.", [what])
            query = self.parse_query(resource_type, params, strict=True)
            query.count = _MATCH_WINDOW
            candidates = (await tx.search(query)).matches
            if not candidates:
                await tx.lock(_criteria_lock(resource_type, params))
                candidates = (await tx.search(query)).matches
        admission = tx.writer if isinstance(tx.writer, MatchAdmission) else None
        matches = [m for m in candidates
                   if admission is None or await admission.admits(tx, m, what)]
        if len(matches) > 1:
            raise PreconditionFailed(
                f"{what} {criteria!r} matches more than one {resource_type}.", [what]
            )
        return matches[0] if matches else None

    async def prefetch_matches(
        self, tx: WriteTx, wanted: list[tuple[str, str]]
    ) -> dict[tuple[str, str], list[StoredResource]]:
        """The matches of many ``(type, criteria)`` at once: one round trip for a
        transaction Bundle's conditional creates when all match (two more when some do
        not), instead of two each. Only criteria that
        are one identifier (``identifier=system|code``, as journal notes write them); the
        others are left out and searched one by one (:meth:`find_one`).

        A criteria that matches nothing is locked and asked again, so that two
        transactions creating the same new resource make one (the second sees the first's
        once it has committed). One that matches is not locked: a match needs no create,
        and a lock on it would make every transaction naming the same care unit or
        practitioner wait for the one before to commit (issue 15: one region, one
        journal engine, all its notes naming a few hundred units).
        """
        simple: dict[tuple[str, str], tuple[str, str | None, str]] = {}
        locks: dict[tuple[str, str], str] = {}
        for resource_type, criteria in wanted:
            try:
                params = _query_pairs(criteria)
                query = self.parse_query(resource_type, params, strict=True)
            except FhirError:
                continue  # find_one answers it, with its own error
            token = single_identifier(query)
            if token is None:
                continue
            simple[(resource_type, criteria)] = (resource_type, *token)
            locks[(resource_type, criteria)] = _criteria_lock(resource_type, params)
        if not simple:
            return {}
        found = await tx.by_identifiers(list(dict.fromkeys(simple.values())))
        missing = [key for key, token in simple.items() if not found[token]]
        if missing:
            await tx.lock_many([locks[key] for key in missing])
            found.update(await tx.by_identifiers(
                list(dict.fromkeys(simple[key] for key in missing))))
        return {key: found[token][:_MATCH_WINDOW] for key, token in simple.items()}

    async def _check_integrity(self, tx: WriteTx, resource: dict[str, Any]) -> None:
        """Rules over more than one resource, checked inside the write's transaction."""
        await self._check_unique(tx, resource)
        await self._check_part_of(tx, resource)

    async def _check_part_of(self, tx: WriteTx, resource: dict[str, Any]) -> None:
        """An Organization's ``partOf`` chain must not lead back to it (422).

        A care provider's units are found by following ``partOf`` (reach of a provider's
        system token, docs/security.md): a cycle would make every unit in it part of
        every other. Writes of the hierarchy are serialised by a lock, so two
        concurrent writes cannot close a cycle between them.
        """
        if resource.get("resourceType") != "Organization" or not resource.get("partOf"):
            return
        await tx.lock("organization-hierarchy")
        own = resource.get("id")
        parent = _organization_id(resource.get("partOf"))
        seen: set[str] = set()
        while parent is not None and parent not in seen and len(seen) < _MAX_DEPTH:
            if parent == own:
                raise Unprocessable(
                    "Organization.partOf leads back to this Organization (a cycle): a unit "
                    "cannot be part of itself, directly or through others.",
                    ["Organization.partOf"], code="business-rule")
            seen.add(parent)
            found = await tx.read_many([("Organization", parent)])
            body = orjson.loads(found[0].content) if found and found[0].content else {}
            parent = _organization_id(body.get("partOf"))

    async def _check_unique(self, tx: WriteTx, resource: dict[str, Any]) -> None:
        """One personnummer or samordningsnummer names one Patient: a second is a 409.

        Checked under a lock on the number, so two concurrent registrations of one
        person make one Patient. The message says how to refer to the one there is
        (a conditional reference); which Patient it is, it does not say.
        """
        if resource.get("resourceType") != "Patient":
            return
        for identifier in resource.get("identifier") or ():
            system, value = identifier.get("system"), identifier.get("value")
            if system not in UNIQUE_PATIENT_IDENTIFIERS or not isinstance(value, str):
                continue
            await tx.lock(f"patient-identifier:{system}|{value}")
            query = self.parse_query("Patient", [("identifier", f"{system}|{value}")])
            token = single_identifier(query)
            if token is not None:  # the identifier lookup, without a search's building
                matches = (await tx.by_identifiers([("Patient", *token)]))[("Patient", *token)]
            else:  # a value the search reads as more than one (a comma in it)
                query.count = 2
                matches = (await tx.search(query)).matches
            others = [m for m in matches if m.resource_id != resource.get("id")]
            if others:
                kind = "personnummer" if system == PERSONNUMMER_SYSTEM else "samordningsnummer"
                raise Conflict(
                    f"A Patient with this {kind} is already registered: one {kind} names one "
                    f"Patient. Refer to it as Patient?identifier={system}|{value} (a conditional "
                    "reference); a CareTeam naming your organisation brings it into your reach.",
                    ["Patient.identifier"],
                )

    async def update(
        self, resource_type: str, resource_id: str, body: Any, *, writer: Writer,
        if_match: str | None = None,
    ) -> WriteResult:
        self.resource_type(resource_type, "update")
        resource = validate_resource(
            body, resource_type, stored=await self._stored_content(resource_type, resource_id))
        if resource.get("id") is None:
            raise BadRequest("The resource in a PUT must have an id.", [f"{resource_type}.id"])
        if resource["id"] != resource_id:
            raise BadRequest(
                f"The id in the body ({resource['id']!r}) differs from the URL ({resource_id!r}).",
                [f"{resource_type}.id"],
            )

        async def unit(tx: WriteTx) -> WriteResult:
            return await self.update_in(tx, resource, resource_id, if_match=if_match)

        return await self.run(unit, writer)

    async def _stored_content(self, resource_type: str, resource_id: str) -> bytes | None:
        """The stored JSON of the resource an update replaces, to set aside in the body's
        check what it sends back unchanged (``validate_resource``): a read outside the
        write's transaction, since any version stored passed the check."""
        if not ID_PATTERN.match(resource_id):
            return None  # update_in answers for it
        current = await self.repo.read(resource_type, resource_id)
        return current.content if current is not None and not current.deleted else None

    async def update_in(
        self,
        tx: WriteTx,
        resource: dict[str, Any],
        resource_id: str,
        *,
        if_match: str | None = None,
    ) -> WriteResult:
        if not ID_PATTERN.match(resource_id):
            raise BadRequest(f"{resource_id!r} is not a valid id.", ["id"])
        current = await tx.current(resource["resourceType"], resource_id)
        _check_if_match(current, if_match, f"{resource['resourceType']}/{resource_id}")
        resource = {**resource, "id": resource_id}
        await self._check_integrity(tx, resource)
        stored = await tx.write(resource, resource_id=resource_id, current=current, method="PUT")
        return WriteResult(stored, created=current is None or current.deleted)

    async def patch(
        self, resource_type: str, resource_id: str, body: Any, *, writer: Writer,
        if_match: str | None = None,
    ) -> WriteResult:
        self.resource_type(resource_type, "patch")
        if not isinstance(body, list):
            raise BadRequest("A JSON Patch body must be an array of operations.")

        async def unit(tx: WriteTx) -> WriteResult:
            return await self.patch_in(tx, resource_type, resource_id, body, if_match=if_match)

        return await self.run(unit, writer)

    async def patch_in(
        self,
        tx: WriteTx,
        resource_type: str,
        resource_id: str,
        operations: list[Any],
        *,
        if_match: str | None = None,
    ) -> WriteResult:
        current = await tx.current(resource_type, resource_id)
        if current is None:
            raise NotFound(f"{resource_type}/{resource_id} does not exist.")
        if current.deleted:
            raise Gone(f"{resource_type}/{resource_id} was deleted.")
        _check_if_match(current, if_match, f"{resource_type}/{resource_id}")
        assert current.content is not None
        document = orjson.loads(current.content)
        try:
            patched = jsonpatch.JsonPatch(operations).apply(document)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise Unprocessable(f"A JSON Patch test failed: {exc}", code="processing") from None
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise Unprocessable(f"The JSON Patch cannot be applied: {exc}",
                                code="processing") from None
        except (TypeError, KeyError, AttributeError) as exc:
            raise BadRequest(f"The JSON Patch is malformed: {exc}") from None
        if not isinstance(patched, dict) or patched.get("resourceType") != resource_type:
            raise Unprocessable("A patch may not change the resourceType.",
                                [f"{resource_type}.resourceType"])
        if patched.get("id") != resource_id:
            raise Unprocessable("A patch may not change the id.", [f"{resource_type}.id"])
        resource = validate_resource(patched, resource_type, stored=current.content)
        await self._check_integrity(tx, resource)
        stored = await tx.write(resource, resource_id=resource_id, current=current,
                                method="PATCH")
        return WriteResult(stored, created=False)

    async def delete(
        self, resource_type: str, resource_id: str, *, writer: Writer,
        if_match: str | None = None,
    ) -> StoredResource | None:
        """Delete; None when it was already deleted (deleting twice is not an error)."""
        self.resource_type(resource_type, "delete")

        async def unit(tx: WriteTx) -> StoredResource | None:
            return await self.delete_in(tx, resource_type, resource_id, if_match=if_match)

        return await self.run(unit, writer)

    async def delete_in(
        self, tx: WriteTx, resource_type: str, resource_id: str, *, if_match: str | None = None
    ) -> StoredResource | None:
        current = await tx.current(resource_type, resource_id)
        if current is None:
            raise NotFound(f"{resource_type}/{resource_id} does not exist.")
        _check_if_match(current, if_match, f"{resource_type}/{resource_id}")
        if current.deleted:
            return None
        return await tx.delete(current)


def _check_if_match(current: StoredResource | None, if_match: str | None, label: str) -> None:
    expected = parse_etag(if_match)
    if expected is None:
        return
    if current is None or current.deleted:
        raise PreconditionFailed(
            f"If-Match {if_match} given, but {label} has no current version.", ["If-Match"]
        )
    if current.version_id != expected:
        raise PreconditionFailed(
            f"If-Match {if_match} does not match the current version "
            f"W/\"{current.version_id}\" of {label}; read it again and retry.",
            ["If-Match"],
            headers={"ETag": current.etag},
        )


def _criteria_lock(resource_type: str, params: list[tuple[str, str]]) -> str:
    return f"conditional:{resource_type}?{sorted(params)!r}"


_MAX_DEPTH = 64
"""How far up ``Organization.partOf`` is followed (regions are a few levels deep)."""


def _organization_id(reference: Any) -> str | None:
    """The id of a relative ``Organization/{id}`` reference."""
    if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
        return None
    kind, _, rid = reference["reference"].rpartition("/")
    return rid if kind.endswith("Organization") and rid else None


def _query_pairs(criteria: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    text = criteria.split("?", 1)[1] if "?" in criteria else criteria
    try:
        return parse_qsl(text, keep_blank_values=False, strict_parsing=True)
    except ValueError:
        raise BadRequest(f"Cannot read the criteria {criteria!r}.") from None


__all__ = ["FhirError", "FhirService", "MatchAdmission", "WriteResult", "Writer", "parse_etag"]
