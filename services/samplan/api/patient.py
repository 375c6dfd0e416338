"""The patient's view over HTTP: one call for a portal, a page, paper, and the patient's additions.

=======================================  =============================================
route                                    what
=======================================  =============================================
GET  /fhir/Patient/{id}/$agreement       FHIR document Bundle (default), ``text/html``
                                         or ``application/pdf`` (``Accept``/``_format``)
POST /fhir/Patient/{id}/$add-goal        Parameters ``text`` (+ ``careplan``): a Goal
                                         the patient expressed
POST /fhir/Patient/{id}/$add-activity    Parameters ``text`` (+ ``kind``, ``careplan``)
POST /fhir/Patient/{id}/$add-message     Parameters ``text`` (+ ``topic``): Communication
POST /fhir/Patient/{id}/$withdraw        Parameters ``item``: the patient's own goal or
                                         activity (what care wrote: 403)
GET  /portal/patient/{id}                the demo portal page (same renderer, forms)
POST /portal/patient/{id}/{form}         ``goal``, ``activity``, ``message``,
                                         ``withdraw`` (urlencoded), then 303 back
=======================================  =============================================

Routes do HTTP only; the work is in ``agreement/patient_service.py`` (reading
and writing), ``patient_view.py``, ``patient_document.py`` and
``patient_render.py``. Everything goes through the gate (the request's
:class:`~samplan.security.gate.Access`), so reach, scopes, NOPATIENT and the
access log apply exactly as for any FHIR interaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Final
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from samplan.agreement.coauthoring import Actor, ActorKind
from samplan.agreement.patient_render import PortalForms, render_error, render_html, render_pdf
from samplan.agreement.patient_service import PatientAgreements
from samplan.api.body import media_type, read_body, read_json
from samplan.api.deps import Services, ServicesDep
from samplan.api.responses import JSON_CONTENT_TYPES, FhirResponse, version_headers
from samplan.fhir.errors import BadRequest, FhirError, NotFound, Unauthorized, UnsupportedMediaType
from samplan.fhir.stored import StoredResource
from samplan.security.gate import Access
from samplan.security.principal import Principal

router = APIRouter(tags=["Patient view"])

NO_STORE: Final = {"Cache-Control": "no-store", "Vary": "Accept"}
PAGE_POLICY: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'self'"
)
"""No script may run on the page: it needs none (and so cannot be made to run any)."""


class NotAcceptable(FhirError):
    status: ClassVar[int] = 406
    default_code: ClassVar[str] = "not-supported"


_ACCEPTED: Final[dict[str, str]] = {
    "application/fhir+json": "fhir",
    "application/json+fhir": "fhir",
    "application/json": "fhir",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
    "*/*": "fhir",
    "application/*": "fhir",
    "text/*": "html",
}
_FORMATS: Final[dict[str, str]] = {
    "json": "fhir", "application/fhir+json": "fhir", "application/json": "fhir",
    "html": "html", "text/html": "html", "pdf": "pdf", "application/pdf": "pdf",
}  # fmt: skip


def negotiate(accept: str | None, format_: str | None) -> str:
    """``fhir``, ``html`` or ``pdf``: ``_format`` wins, then ``Accept`` by quality."""
    if format_:
        chosen = _FORMATS.get(format_.strip().lower())
        if chosen is None:
            raise NotAcceptable(f"_format {format_!r} is not offered; use json, html or pdf.",
                                ("_format",))
        return chosen
    if not accept or not accept.strip():
        return "fhir"
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media.lower() in _ACCEPTED and quality > 0:
            ranked.append((-quality, position, _ACCEPTED[media.lower()]))
    if not ranked:
        raise NotAcceptable(
            f"None of Accept: {accept!r} is offered; the agreement is served as "
            "application/fhir+json, text/html or application/pdf."
        )
    return min(ranked)[2]


# -- who is calling (the security layer's principal, when there is one) ----------------------


def reader_for(request: Request, services: Services) -> Access:
    """The gate's access for this request's principal, with the request's base for links."""
    client = request.client.host if request.client else None
    return reader_of(services, getattr(request.state, "principal", None), client,
                     services.base_url(request.scope))


def reader_of(services: Services, principal: object, client: str | None,
              base_url: str | None = None) -> Access:
    """:func:`reader_for` from the principal and the client's address themselves; a
    request without one was not authenticated (401), never served unguarded."""
    if not isinstance(principal, Principal):
        raise Unauthorized("this request was not authenticated")
    return services.access(principal, client, base_url)


_KINDS: Final[frozenset[str]] = frozenset(
    {"patient", "relative", "staff", "system", "anonymous-dev"}
)


def actor_of(request: Request) -> Actor:
    """Who is contributing, from the principal on ``request.state`` (development: nobody)."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        return Actor("anonymous-dev")
    kind = str(getattr(principal, "kind", "staff"))
    actor_kind: ActorKind = kind if kind in _KINDS else "staff"  # type: ignore[assignment]
    fhir_user = getattr(principal, "fhir_user", None)
    reference = fhir_user if isinstance(fhir_user, str) and "/" in fhir_user else None
    if actor_kind == "patient" and reference and not reference.startswith("Patient/"):
        reference = None
    return Actor(actor_kind, reference)


def agreements_of(services: Services) -> PatientAgreements:
    return PatientAgreements(services.co_creation_check)


def _now(services: Services) -> datetime:
    return datetime.now(services.gate.tz)


# -- the one call for a portal ---------------------------------------------------------------


FormatQuery = Annotated[
    str | None, Query(alias="_format", description="json, html or pdf (overrides Accept)")
]


@router.get("/fhir/Patient/{patient_id}/$agreement", operation_id="patient_agreement")
async def patient_agreement(
    patient_id: str, request: Request, services: ServicesDep, format_: FormatQuery = None
) -> Response:
    """The patient's agreement: a FHIR document Bundle, or as a page (text/html) or A4 PDF."""
    kind = negotiate(request.headers.get("accept"), format_)
    reader = reader_for(request, services)
    if kind == "fhir":  # (mostly answered before routing: api/agreement_fast.py)
        return await agreement_document(services, reader, patient_id)
    agreements = agreements_of(services)
    now = _now(services)
    view = await agreements.page_view(reader, patient_id, now=now)
    if kind == "html":
        here = f"{_site_path(services, request)}/fhir/Patient/{quote(patient_id, safe='')}"
        html = render_html(view, pdf_href=f"{here}/$agreement?_format=pdf")
        return HTMLResponse(html, headers={**NO_STORE, "Content-Security-Policy": PAGE_POLICY})
    pdf = await run_in_threadpool(render_pdf, view)
    filename = f"overenskommelse-{now:%Y-%m-%d}.pdf"
    return Response(pdf, media_type="application/pdf",
                    headers={**NO_STORE, "Content-Disposition": f'inline; filename="{filename}"'})


async def agreement_document(services: Services, reader: Access, patient_id: str
                             ) -> Response:
    """The answer of ``$agreement`` as a FHIR document (the route's and the fast path's)."""
    bundle, _ = await agreements_of(services).document(reader, patient_id, now=_now(services))
    return FhirResponse(bundle, headers=dict(NO_STORE))


# -- the patient's additions as FHIR operations ---------------------------------------------------


async def _parameters(request: Request, services: Services) -> dict[str, str]:
    """The operation's Parameters as name -> string (valueString/Code/Markdown/Reference)."""
    s = services.settings
    body = await read_json(request, limit=s.max_body_bytes, max_depth=s.max_json_depth,
                           accepted=JSON_CONTENT_TYPES)
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequest("The operation takes a Parameters resource.", ("resourceType",))
    values: dict[str, str] = {}
    for index, parameter in enumerate(body.get("parameter") or []):
        if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
            raise BadRequest("Each parameter needs a name.", (f"Parameters.parameter[{index}]",))
        value: Any = None
        for key in ("valueString", "valueCode", "valueMarkdown", "valueId"):
            if key in parameter:
                value = parameter[key]
        reference = parameter.get("valueReference")
        if isinstance(reference, dict):
            value = reference.get("reference")
        if not isinstance(value, str):
            raise BadRequest(
                f"Parameter {parameter['name']!r} needs a valueString (or valueReference).",
                (f"Parameters.parameter[{index}]",),
            )
        values[parameter["name"]] = value
    return values


def _careplan_id(values: dict[str, str]) -> str | None:
    value = values.get("careplan")
    return value.removeprefix("CarePlan/") if value else None


def _written(base_url: str, stored: StoredResource, status: int) -> Response:
    headers = version_headers(stored, base_url, location=status == 201)
    return FhirResponse(stored.content, status, headers)


def _text(values: dict[str, str]) -> str:
    if "text" not in values:
        raise BadRequest("The parameter 'text' is required.", ("Parameters.parameter",))
    return values["text"]


@router.post("/fhir/Patient/{patient_id}/$add-goal", operation_id="patient_add_goal")
async def add_goal(patient_id: str, request: Request, services: ServicesDep) -> Response:
    """The patient adds what is important to them: a Goal expressed by the patient."""
    values = await _parameters(request, services)
    stored = await agreements_of(services).add_goal(
        reader_for(request, services), actor_of(request), patient_id, _text(values),
        now=_now(services), careplan_id=_careplan_id(values),
    )
    return _written(services.base_url(request.scope), stored, 201)


@router.post("/fhir/Patient/{patient_id}/$add-activity", operation_id="patient_add_activity")
async def add_activity(patient_id: str, request: Request, services: ServicesDep) -> Response:
    """The patient adds something they do themselves to their agreement (the new CarePlan)."""
    values = await _parameters(request, services)
    stored = await agreements_of(services).add_activity(
        reader_for(request, services), actor_of(request), patient_id, _text(values),
        now=_now(services), kind=values.get("kind", "patient-responsibility"),
        careplan_id=_careplan_id(values),
    )
    return _written(services.base_url(request.scope), stored, 200)


@router.post("/fhir/Patient/{patient_id}/$add-message", operation_id="patient_add_message")
async def add_message(patient_id: str, request: Request, services: ServicesDep) -> Response:
    """The patient sends a note or question to their care team (a Communication)."""
    values = await _parameters(request, services)
    stored = await agreements_of(services).add_message(
        reader_for(request, services), actor_of(request), patient_id, _text(values),
        now=_now(services), topic=values.get("topic"),
    )
    return _written(services.base_url(request.scope), stored, 201)


@router.post("/fhir/Patient/{patient_id}/$withdraw", operation_id="patient_withdraw")
async def withdraw(patient_id: str, request: Request, services: ServicesDep) -> Response:
    """The patient takes back their own goal or activity; what care wrote cannot be (403)."""
    values = await _parameters(request, services)
    if "item" not in values:
        raise BadRequest("The parameter 'item' is required (Goal/id or CarePlan/id#activity).",
                         ("Parameters.parameter",))
    stored = await agreements_of(services).withdraw(
        reader_for(request, services), actor_of(request), patient_id, values["item"]
    )
    return _written(services.base_url(request.scope), stored, 200)


# -- the demo portal -------------------------------------------------------------------------

_NOTICES: Final[dict[str, str]] = {
    "mal": "Tack! Det som är viktigt för dig är sparat.",
    "aktivitet": "Tack! Det du gör själv är sparat i din överenskommelse.",
    "meddelande": "Tack! Ditt meddelande är skickat till ditt vårdteam.",
    "borttaget": "Det du skrev är borttaget.",
}
_ANCHORS: Final[dict[str, str]] = {
    "goal": "viktigt", "activity": "jag", "message": "kontakter", "withdraw": "innehall",
}
_SAVED: Final[dict[str, str]] = {
    "goal": "mal", "activity": "aktivitet", "message": "meddelande", "withdraw": "borttaget",
}


def _site_path(services: Services, request: Request) -> str:
    """The path the service is reached under (``/samplan`` behind a proxy that mounts it
    there, as the request's base says; empty at the root). The page links by path only,
    so it stays on the origin the browser is on (CSP ``form-action 'self'``)."""
    path = urlsplit(services.base_url(request.scope)).path
    return path.removesuffix("/fhir").rstrip("/")


def _portal_base(services: Services, request: Request, patient_id: str) -> str:
    return f"{_site_path(services, request)}/portal/patient/{quote(patient_id, safe='')}"


async def _portal_page(
    request: Request, services: Services, patient_id: str, *,
    saved: str | None = None, problem: str | None = None, status: int = 200,
) -> Response:
    _, view = await agreements_of(services).view(
        reader_for(request, services), patient_id, now=_now(services)
    )
    action = next((a for a, code in _SAVED.items() if code == saved), None)
    forms = PortalForms(base=_portal_base(services, request, patient_id),
                        notice=_NOTICES.get(saved or ""),
                        notice_at=_ANCHORS.get(action or "", "innehall"), problem=problem)
    html = render_html(view, portal=forms,
                       pdf_href=f"{_site_path(services, request)}/fhir/Patient/"
                                f"{quote(patient_id, safe='')}/$agreement?_format=pdf")
    return HTMLResponse(html, status_code=status,
                        headers={**NO_STORE, "Content-Security-Policy": PAGE_POLICY})


def _error_page(error: FhirError) -> Response:
    if error.status == 404 or error.status == 410:
        title, message = "Sidan finns inte", "Vi hittar ingen överenskommelse här."
    elif error.status in (401, 403):
        title, message = "Du har inte tillgång", "Du kan bara se din egen överenskommelse."
    else:
        title, message = "Något gick fel", "Försök igen om en stund."
    return HTMLResponse(render_error(title, message), status_code=error.status,
                        headers=dict(NO_STORE))


@router.get("/portal/patient/{patient_id}", operation_id="portal_page",
            response_class=HTMLResponse)
async def portal_page(
    patient_id: str, request: Request, services: ServicesDep,
    sparat: Annotated[str | None, Query(description="what was just saved")] = None,
) -> Response:
    """The patient's page in a portal (demo): the agreement, with forms to add to it."""
    try:
        return await _portal_page(request, services, patient_id, saved=sparat)
    except FhirError as error:
        return _error_page(error)


@router.post("/portal/patient/{patient_id}/{action}", operation_id="portal_form",
             response_class=HTMLResponse)
async def portal_form(
    patient_id: str, action: str, request: Request, services: ServicesDep
) -> Response:
    """A form of the portal page: add a goal, an activity or a message, or take one back."""
    if action not in _SAVED:
        return _error_page(NotFound(f"No form {action!r}."))
    if media_type(request) != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("The portal's forms post application/x-www-form-urlencoded.")
    body = await read_body(request, services.settings.max_body_bytes)
    fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    agreements = agreements_of(services)
    reader, actor, now = reader_for(request, services), actor_of(request), _now(services)
    try:
        if action == "goal":
            await agreements.add_goal(reader, actor, patient_id, fields.get("text", ""), now=now)
        elif action == "activity":
            await agreements.add_activity(reader, actor, patient_id, fields.get("text", ""),
                                          now=now)
        elif action == "message":
            await agreements.add_message(reader, actor, patient_id, fields.get("text", ""),
                                         now=now)
        else:
            await agreements.withdraw(reader, actor, patient_id, fields.get("item", ""))
    except FhirError as error:
        if error.status in (404, 410):
            return _error_page(error)
        problem = (
            "Det här kan bara vården ändra. Du kan lägga till egna saker, eller skriva till vården."
            if error.status == 403 else "Skriv något i rutan innan du sparar."
            if error.status == 422 else "Det gick inte att spara. Försök igen."
        )
        try:
            return await _portal_page(request, services, patient_id, problem=problem,
                                      status=error.status)
        except FhirError as again:
            return _error_page(again)
    page = _portal_base(services, request, patient_id)
    target = f"{page}?sparat={_SAVED[action]}#{_ANCHORS[action]}"
    return RedirectResponse(target, status_code=303, headers=dict(NO_STORE))
