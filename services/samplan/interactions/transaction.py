"""Batch and transaction Bundles posted to the base (https://hl7.org/fhir/R4/http.html#transaction).

A transaction is one database transaction: any failing entry rolls back all of
them and the answer is that entry's OperationOutcome. Entries run in the order
the spec fixes (DELETE, POST, PUT/PATCH, GET); ``urn:uuid:`` fullUrls are
given server ids first and every reference to them is rewritten, and
conditional references (``Patient?identifier=...``) are resolved to the one
resource they match. A batch runs each entry on its own.

Who may do what is not decided here: every entry goes through the
:class:`EntryGate` the caller passes (the security layer's gate), which checks
each entry's scopes before anything runs, writes the transaction as its writer,
and answers the reads inside it. An entry whose method is not GET, POST, PUT,
PATCH or DELETE is refused (400 at ``Bundle.entry[i].request.method``), never
run as something else.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson

from samplan.fhir import bundle as bundles
from samplan.fhir.bundle import response_entry
from samplan.fhir.errors import BadRequest, FhirError, Issue, NotFound, PreconditionFailed
from samplan.fhir.resource import validate_resource
from samplan.fhir.search import SearchQuery
from samplan.fhir.stored import SearchPage, StoredResource
from samplan.interactions.service import FhirService, WriteResult
from samplan.store.repository import WriteObserver, WriteTx

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3}


class EntryGate(Protocol):
    """Runs a Bundle's entries as their sender may (the security layer's gate)."""

    def writer(self) -> WriteObserver:
        """The writer of one transaction attempt."""

    async def check_entries(self, entries: Sequence[tuple[int, str, str]]) -> None:
        """Before anything runs: may the sender do each (index, method, url) at all?"""

    async def read_in(self, tx: WriteTx, resource_type: str, resource_id: str
                      ) -> StoredResource:
        """A read inside the transaction (sees its writes)."""

    async def search_in(self, tx: WriteTx, resource_type: str, params: list[tuple[str, str]]
                        ) -> tuple[SearchQuery, SearchPage]:
        """A search inside the transaction (sees its writes)."""

    def present(self, stored: StoredResource) -> StoredResource:
        """A resource as the sender may see it in an answer (an existing conditional match)."""

    async def read(self, resource_type: str, resource_id: str) -> StoredResource: ...

    async def search(self, resource_type: str, params: list[tuple[str, str]], *,
                     strict: bool = False) -> tuple[SearchQuery, SearchPage]: ...

    async def create(self, resource_type: str, body: Any, *, if_none_exist: str | None = None
                     ) -> WriteResult: ...

    async def update(self, resource_type: str, resource_id: str, body: Any, *,
                     if_match: str | None = None) -> WriteResult: ...

    async def patch(self, resource_type: str, resource_id: str, body: Any, *,
                    if_match: str | None = None) -> WriteResult: ...

    async def delete(self, resource_type: str, resource_id: str, *, if_match: str | None = None
                     ) -> StoredResource | None: ...


@dataclass(slots=True)
class _Entry:
    index: int
    method: str
    url: str
    resource: dict[str, Any] | None
    full_url: str | None
    if_none_exist: str | None
    if_match: str | None
    raw_resource: Any


def _parse_entries(bundle: Any, expected_type: str) -> list[_Entry]:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BadRequest("POST to the base takes a Bundle.", ["Bundle.resourceType"])
    if bundle.get("type") != expected_type:
        raise BadRequest(f"Bundle.type must be batch or transaction, not {bundle.get('type')!r}.",
                         ["Bundle.type"])
    entries = []
    raw_entries = bundle.get("entry") or []
    if not isinstance(raw_entries, list):
        raise BadRequest("Bundle.entry must be an array.", ["Bundle.entry"])
    for i, raw in enumerate(raw_entries):
        where = f"Bundle.entry[{i}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("request"), dict):
            raise BadRequest(f"{where} has no request.", [f"{where}.request"])
        request = raw["request"]
        method = str(request.get("method", "")).upper()
        url = request.get("url")
        if method not in _ORDER:
            raise BadRequest(f"{where}.request.method must be GET, POST, PUT, PATCH or DELETE, "
                             f"not {request.get('method')!r}.", [f"{where}.request.method"])
        if not isinstance(url, str) or not url:
            raise BadRequest(f"{where}.request needs a url.", [f"{where}.request.url"])
        resource = raw.get("resource")
        url, if_none_exist = _conditional_create(where, method, url.lstrip("/"),
                                                 request.get("ifNoneExist"))
        entries.append(
            _Entry(i, method, url, resource if isinstance(resource, dict) else None,
                   raw.get("fullUrl"), if_none_exist, request.get("ifMatch"), resource)
        )
    return entries


def _conditional_create(where: str, method: str, url: str, if_none_exist: Any
                        ) -> tuple[str, Any]:
    """``POST Type?criteria`` (as clients send a get-or-create) is a conditional create
    with those criteria, as on the REST API (api/conditional.py); given with a different
    ``ifNoneExist`` it is refused rather than guessed."""
    from urllib.parse import parse_qsl

    path, _, query = url.partition("?")
    if method != "POST" or not query:
        return url, if_none_exist
    if isinstance(if_none_exist, str) and if_none_exist.strip():
        def pairs(text: str) -> list[tuple[str, str]]:
            return sorted(parse_qsl(text.split("?", 1)[-1], keep_blank_values=True))

        if pairs(if_none_exist) != pairs(query):
            raise BadRequest(f"{where}.request.url has search criteria that differ from its "
                             "ifNoneExist: give them once.", [f"{where}.request.url"])
    return path, query


def _split_url(url: str) -> tuple[str, str | None, list[tuple[str, str]]]:
    rtype, rid, params = _split_url_once(url)
    return rtype, rid, list(params)


@lru_cache(maxsize=1024)
def _split_url_once(url: str) -> tuple[str, str | None, tuple[tuple[str, str], ...]]:
    """An entry's ``request.url`` as type, id and query (each entry's is read several
    times, and a journal's transactions repeat the same few conditional ones)."""
    from urllib.parse import parse_qsl

    parts = urlsplit(url)
    path = parts.path.strip("/").split("/")
    params = parse_qsl(parts.query, keep_blank_values=True)
    return path[0], (path[1] if len(path) > 1 and path[1] else None), tuple(params)


# what the interactions name in an error, and where that is in a Bundle entry
_ENTRY_FIELDS = {
    "If-Match": "request.ifMatch",
    "ifNoneExist": "request.ifNoneExist",
    "If-None-Exist": "request.ifNoneExist",
    "request.url": "request.url",
    "id": "resource.id",
}


def _entry_path(where: str, expression: str) -> str:
    if expression in _ENTRY_FIELDS:
        return f"{where}.{_ENTRY_FIELDS[expression]}"
    if "." in expression:
        return f"{where}.resource.{expression.split('.', 1)[1]}"
    return f"{where}.{expression}"


def _prefix(error: FhirError, index: int) -> FhirError:
    """Point an entry's error at the entry (Bundle.entry[i].resource...)."""
    where = f"Bundle.entry[{index}]"
    expression = [_entry_path(where, e) for e in error.expression] or [where]
    error.expression = expression
    error.diagnostics = f"{where}: {error.diagnostics}"
    return error


class BundleProcessor:
    def __init__(self, service: FhirService, gate: EntryGate, *, base_url: str,
                 return_representation: bool) -> None:
        self.service = service
        self.gate = gate
        self.base_url = base_url
        self.representation = return_representation

    async def process(self, bundle: Any) -> bytes:
        """A batch or a transaction, by its ``type``."""
        kind = bundle.get("type") if isinstance(bundle, dict) else None
        if kind == "batch":
            return await self.batch(bundle)
        return await self.transaction(bundle)

    # -- transaction ---------------------------------------------------------------------

    async def transaction(self, bundle: Any) -> bytes:
        entries = self._prepare(bundle)
        await self.gate.check_entries([(e.index, e.method, e.url) for e in entries])

        async def unit(tx: WriteTx) -> list[dict[str, Any]]:
            # a retry (after a WriteConflict) starts again from the entries as posted
            return await self._run_transaction(tx, [replace(e) for e in entries])

        results = await self.service.run(unit, self.gate.writer)
        return orjson.dumps({
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": "transaction-response",
            "entry": results,
        })

    async def transaction_in(self, tx: WriteTx, bundle: Any) -> list[dict[str, Any]]:
        """Run a transaction Bundle inside a write transaction the caller already holds
        (made by this processor's gate's writer)."""
        entries = self._prepare(bundle)
        await self.gate.check_entries([(e.index, e.method, e.url) for e in entries])
        return await self._run_transaction(tx, entries)

    def _prepare(self, bundle: Any) -> list[_Entry]:
        """Parse and validate every entry before anything touches the database."""
        entries = _parse_entries(bundle, "transaction")
        # validate every resource before touching the database
        for e in entries:
            if e.method in ("POST", "PUT"):
                if e.resource is None:
                    raise BadRequest(f"Bundle.entry[{e.index}] needs a resource for {e.method}.",
                                     [f"Bundle.entry[{e.index}].resource"])
                try:
                    e.resource = validate_resource(e.resource, _split_url(e.url)[0])
                except FhirError as exc:
                    raise _prefix(exc, e.index) from None
        urls = [e.full_url for e in entries if e.full_url]
        if len(urls) != len(set(urls)):
            raise BadRequest("Two entries share a fullUrl.", ["Bundle.entry.fullUrl"])
        return entries

    async def _run_transaction(self, tx: WriteTx, entries: list[_Entry]) -> list[dict[str, Any]]:
        ids: dict[str, str] = {}  # fullUrl -> "Type/id"
        existing: dict[int, StoredResource] = {}  # conditional creates that matched
        prefetched = await self.service.prefetch_matches(tx, [
            (_split_url(e.url)[0], e.if_none_exist) for e in entries
            if e.method == "POST" and isinstance(e.if_none_exist, str) and e.if_none_exist])
        # 1. give every created resource its id (or its conditional match)
        for e in entries:
            try:
                rtype, rid, params = _split_url(e.url)
                if e.method == "POST":
                    target_id = None
                    if e.if_none_exist:
                        match = await self.service.find_one(tx, rtype, e.if_none_exist,
                                                            "ifNoneExist", prefetched)
                        if match is not None:
                            existing[e.index] = match
                            target_id = match.resource_id
                    if target_id is None:
                        target_id = str(uuid.uuid4())
                    if e.full_url:
                        ids[e.full_url] = f"{rtype}/{target_id}"
                    e.url = f"{rtype}/{target_id}" if e.index not in existing else e.url
                elif e.method == "PUT" and rid is None and params:
                    match = await self.service.find_one(tx, rtype, e.url, "request.url")
                    target_id = match.resource_id if match else str(uuid.uuid4())
                    e.url = f"{rtype}/{target_id}"
                    if e.full_url:
                        ids[e.full_url] = e.url
                elif e.method == "PUT" and rid is not None and e.full_url:
                    ids[e.full_url] = f"{rtype}/{rid}"
            except FhirError as exc:
                raise _prefix(exc, e.index) from None
        # 2. rewrite references (urn:uuid and conditional) in every resource
        for e in entries:
            if e.resource is not None:
                try:
                    e.resource = await self._rewrite(
                        tx, e.resource, ids, str(e.resource.get("resourceType", "Resource")))
                except FhirError as exc:
                    raise _prefix(exc, e.index) from None
        # 3. run the entries in the order the spec gives, answer in the request's order
        results: dict[int, dict[str, Any]] = {}
        for e in sorted(entries, key=lambda x: (_ORDER[x.method], x.index)):
            try:
                results[e.index] = await self._run_entry(tx, e, existing.get(e.index))
            except FhirError as exc:
                raise _prefix(exc, e.index) from None
        return [results[i] for i in range(len(entries))]

    async def _rewrite(self, tx: WriteTx, node: Any, ids: dict[str, str], path: str) -> Any:
        """``node`` with its references resolved; ``path`` is its FHIRPath, for errors."""
        if isinstance(node, list):
            return [await self._rewrite(tx, item, ids, f"{path}[{i}]")
                    for i, item in enumerate(node)]
        if not isinstance(node, dict):
            return node
        out = {}
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                try:
                    out[key] = await self._resolve_reference(tx, value, ids)
                except FhirError as exc:
                    exc.expression = [f"{path}.reference"]
                    raise
            else:
                out[key] = await self._rewrite(tx, value, ids, f"{path}.{key}")
        return out

    async def _resolve_reference(self, tx: WriteTx, ref: str, ids: dict[str, str]) -> str:
        if ref in ids:
            return ids[ref]
        if ref.startswith("urn:uuid:") or ref.startswith("urn:oid:"):
            raise BadRequest(f"The reference {ref!r} names no entry of this transaction.",
                             ["reference"])
        if "?" in ref and "/" not in ref.split("?", 1)[0]:
            rtype = ref.split("?", 1)[0]
            self.service.resource_type(rtype)
            match = await self.service.find_one(tx, rtype, ref, "reference")
            if match is None:
                raise PreconditionFailed(f"The conditional reference {ref!r} matches nothing.",
                                         ["reference"])
            return f"{rtype}/{match.resource_id}"
        return ref

    async def _run_entry(
        self, tx: WriteTx, e: _Entry, existing: StoredResource | None
    ) -> dict[str, Any]:
        rtype, rid, params = _split_url(e.url)
        service = self.service
        if e.method == "POST":
            service.resource_type(rtype, "create")
            if existing is not None:
                return response_entry("200 OK", self.gate.present(existing),
                                      base_url=self.base_url,
                                      include_resource=self.representation)
            assert e.resource is not None
            assert rid is not None
            result = await service.create_in(tx, e.resource, resource_id=rid)
            return self._write_entry(result)
        if e.method == "PUT":
            service.resource_type(rtype, "update")
            assert e.resource is not None
            if rid is None:
                raise BadRequest("PUT needs Type/id or Type?criteria.", ["request.url"])
            if e.resource.get("id") not in (None, rid):
                raise BadRequest("The resource id differs from the request url.", ["id"])
            result = await service.update_in(tx, e.resource, rid, if_match=e.if_match)
            return self._write_entry(result)
        if e.method == "PATCH":
            service.resource_type(rtype, "patch")
            if rid is None:
                raise BadRequest("PATCH needs Type/id.", ["request.url"])
            operations = _patch_operations(e.raw_resource)
            result = await service.patch_in(tx, rtype, rid, operations, if_match=e.if_match)
            return self._write_entry(result)
        if e.method == "DELETE":
            service.resource_type(rtype, "delete")
            if rid is None:
                raise BadRequest("Conditional delete is not supported.", ["request.url"])
            try:
                await service.delete_in(tx, rtype, rid, if_match=e.if_match)
            except NotFound:
                return response_entry("404 Not Found", base_url=self.base_url)
            return response_entry("204 No Content", base_url=self.base_url)
        return await self._get(tx, rtype, rid, params)

    async def _get(
        self, tx: WriteTx, rtype: str, rid: str | None, params: list[tuple[str, str]]
    ) -> dict[str, Any]:
        if rid is None:
            query, page = await self.gate.search_in(tx, rtype, params)
            body = bundles.searchset(self.base_url, query, page)
            return {"resource": orjson.Fragment(body), "response": {"status": "200 OK"}}
        stored = await self.gate.read_in(tx, rtype, rid)
        return response_entry("200 OK", stored, base_url=self.base_url, include_resource=True)

    def _write_entry(self, result: WriteResult) -> dict[str, Any]:
        status = "201 Created" if result.created else "200 OK"
        return response_entry(status, result.stored, base_url=self.base_url,
                              include_resource=self.representation)

    # -- batch ---------------------------------------------------------------------------

    async def batch(self, bundle: Any) -> bytes:
        entries = _parse_entries(bundle, "batch")
        results = []
        for e in entries:
            try:
                results.append(await self._batch_entry(e))
            except FhirError as exc:
                results.append(
                    response_entry(f"{exc.status} {_reason(exc.status)}", base_url=self.base_url,
                                   outcome=exc.issues)
                )
        return orjson.dumps({
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": "batch-response",
            "entry": results,
        })

    async def _batch_entry(self, e: _Entry) -> dict[str, Any]:
        rtype, rid, params = _split_url(e.url)
        service = self.gate
        if e.method == "GET":
            if rid is None:
                query, page = await service.search(rtype, params)
                body = bundles.searchset(self.base_url, query, page)
                return {"resource": orjson.Fragment(body), "response": {"status": "200 OK"}}
            stored = await service.read(rtype, rid)
            return response_entry("200 OK", stored, base_url=self.base_url, include_resource=True)
        if e.method == "POST":
            result = await service.create(rtype, e.raw_resource, if_none_exist=e.if_none_exist)
            if result.existing:
                return response_entry("200 OK", result.stored, base_url=self.base_url)
            return self._write_entry(result)
        if rid is None:
            raise BadRequest(f"{e.method} needs Type/id.", ["request.url"])
        if e.method == "PUT":
            return self._write_entry(
                await service.update(rtype, rid, e.raw_resource, if_match=e.if_match)
            )
        if e.method == "PATCH":
            ops = _patch_operations(e.raw_resource)
            return self._write_entry(await service.patch(rtype, rid, ops, if_match=e.if_match))
        await service.delete(rtype, rid, if_match=e.if_match)
        return response_entry("204 No Content", base_url=self.base_url)


def _patch_operations(resource: Any) -> list[Any]:
    """A PATCH entry carries its JSON Patch as a Binary (base64 data) or a Parameters list."""
    import base64

    if isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        try:
            ops = orjson.loads(base64.b64decode(resource.get("data", "")))
        except (ValueError, orjson.JSONDecodeError):
            raise BadRequest("The Binary of a PATCH entry must hold a JSON Patch.") from None
        if isinstance(ops, list):
            return ops
    if isinstance(resource, list):
        return resource
    raise BadRequest("A PATCH entry must carry a JSON Patch as a Binary resource.")


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


__all__ = ["BundleProcessor", "EntryGate", "Issue"]
