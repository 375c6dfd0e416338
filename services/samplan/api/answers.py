"""``POST /fhir/QuestionnaireResponse``: answering the seven questions (issue 16).

Included before the generic routes, so that a patient's (or relative's) answer
about themselves and a staff member's answer about their unit are decided by
``samplan.security.answers`` (the access policy has no rule for them yet); any
other QuestionnaireResponse is created exactly as by the generic ``create``.
Every answer is checked against its Questionnaire first (422 naming the item).
Reading and searching answers is the generic FHIR API.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from starlette.responses import Response

from samplan.api.auth import FhirDep
from samplan.api.body import read_body_json
from samplan.api.deps import ServicesDep
from samplan.api.responses import write_response
from samplan.security.answers import create_answer

router = APIRouter(prefix="/fhir", tags=["Follow-up"])


@router.post("/QuestionnaireResponse", status_code=201, operation_id="create_answer")
async def answer(
    request: Request,
    services: ServicesDep,
    fhir: FhirDep,
    prefer: Annotated[str | None, Header(alias="Prefer")] = None,
    if_none_exist: Annotated[str | None, Header(alias="If-None-Exist")] = None,
) -> Response:
    """Create a QuestionnaireResponse: the seven questions answered, or any other answer."""
    settings = services.settings
    body = await read_body_json(request, settings)
    result = await create_answer(fhir, body, if_none_exist=if_none_exist)
    return write_response(result.stored, status=201 if result.created else 200,
                          base_url=settings.base_url, prefer=prefer, location=True,
                          warnings=result.warnings)
