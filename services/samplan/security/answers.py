"""Who may answer the seven questions, and about whom (issue 16).

The access policy (``security/policy.py``) lets a patient write only their own
Goals and Consents, refuses every write of a relative, and lets staff write
only resources about patients they reach. The seven questions need three more
rules, decided here until the policy (the gate) learns them:

==========  ==========================================================================
caller      may create a QuestionnaireResponse
==========  ==========================================================================
patient     to ``sju-fragor-patient``, about themselves (``subject`` = their Patient);
            ``source``, when given, is their Patient
relative    to ``sju-fragor-patient``, about the patient they act for (guardian or
            proxy grant: their reach); ``source``, when given, is their RelatedPerson
staff       to ``sju-fragor-personal``, about their unit: ``subject`` an Organization
            carrying their care unit's, care provider's or organisation's HSA-id;
            to ``sju-fragor-patient`` about a patient in reach (a paper answer typed
            in), as any other write about a patient: the policy decides
system      as staff (its organisation's units)
==========  ==========================================================================

Each still needs a scope that grants ``create`` on QuestionnaireResponse
(``patient/QuestionnaireResponse.c``, ``user/...``), and the answers must pass
the write check against the Questionnaire (422 naming the item). Once this
module has decided, the write goes through the guarded service as every write
does: the scope is checked again and the access-log entry written in the write's
own transaction (the before-commit hook), with the caller as agent and the
patient answered about as patient. Only the reach the hook checks the write
against is the one decided here: the answer just validated, nothing else.

Answers are created, never changed: updates and deletes go through the policy,
which refuses them to patients and relatives. Staff answers about a unit are
not any patient's data: no one reads them back one by one (the policy finds
no patient in reach), they are read as counts, on the follow-up page and in
MeasureReports.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Final

from samplan.fhir.errors import BadRequest, Forbidden
from samplan.fhir.indexing import parse_reference
from samplan.fhir.interactions import WriteResult
from samplan.followup.codes import PATIENT_QUESTIONNAIRE, STAFF_QUESTIONNAIRE
from samplan.followup.questionnaires import canonical
from samplan.security import policy
from samplan.security.audit import MINOR_FAILURE, Agent, AuditRecord
from samplan.security.guard import GuardedFhirService
from samplan.security.policy import Reach, ScopeGrant

RESPONSE: Final = "QuestionnaireResponse"


class _DecidedAnswer(GuardedFhirService):
    """The guarded service for one answer this module has already decided on: the
    before-commit hook checks the scope and logs as always; the reach it checks the
    write against is the answer's own (nothing else is written in its transaction)."""

    async def reach(self, grant: ScopeGrant | None = None, *,  # noqa: ARG002
                    among: Collection[str | None] | None = None) -> Reach:  # noqa: ARG002
        return Reach(everything=True)


async def create_answer(
    fhir: GuardedFhirService, body: Any, *, if_none_exist: str | None = None
) -> WriteResult:
    """Create a QuestionnaireResponse as ``fhir``'s principal may (see the table above)."""
    principal = fhir.principal
    if principal.kind == "anonymous-dev" or not (
        isinstance(body, dict) and body.get("resourceType") == RESPONSE
    ):
        return await fhir.create(RESPONSE, body, if_none_exist=if_none_exist)
    try:
        decided = await _may_answer(fhir, body)
    except Forbidden as error:  # logged as a refused attempt, as the guard logs its own
        subject = _target(body.get("subject"))
        await fhir.control.log([AuditRecord(
            interaction="create", agent=Agent.of(principal), outcome=MINOR_FAILURE,
            outcome_text=f"{error.status}: {error.diagnostics}", entity_type=RESPONSE,
            patient_id=subject[1] if subject and subject[0] == "Patient" else None,
            client_ip=fhir.client_ip)])
        raise
    if not decided:
        return await fhir.create(RESPONSE, body, if_none_exist=if_none_exist)
    if if_none_exist is not None:
        raise BadRequest("An answer to the seven questions is created as it is: "
                         "If-None-Exist is not supported here.", ["If-None-Exist"])
    answering = _DecidedAnswer(fhir, fhir.control, principal, client_ip=fhir.client_ip)
    return await answering.create(RESPONSE, body)


async def _may_answer(fhir: GuardedFhirService, body: dict[str, Any]) -> bool:
    """True when this module lets the answer through; False: the policy decides as for
    any write (staff answering about a patient); 403 when the caller may not give it."""
    principal = fhir.principal
    policy.check_scope(principal, RESPONSE, "create")
    questionnaire = body.get("questionnaire")
    url = canonical(questionnaire) if isinstance(questionnaire, str) else None
    subject = _target(body.get("subject"))
    if principal.kind in ("patient", "relative"):
        if url != PATIENT_QUESTIONNAIRE:
            raise Forbidden(f"A {principal.kind} answers {PATIENT_QUESTIONNAIRE}, not "
                            f"{questionnaire}.", ["QuestionnaireResponse.questionnaire"])
        reach = await fhir.control.reach_of(principal)
        if subject is None or subject[0] != "Patient" or subject[1] not in reach.patients:
            raise Forbidden("An answer is about yourself (or the patient you act for): "
                            "subject must be that Patient.", ["QuestionnaireResponse.subject"])
        _own_source(body, f"Patient/{subject[1]}" if principal.kind == "patient"
                    else principal.fhir_user)
        return True
    if subject is not None and subject[0] == "Organization":
        if url != STAFF_QUESTIONNAIRE:
            raise Forbidden(f"An answer about a unit answers {STAFF_QUESTIONNAIRE}.",
                            ["QuestionnaireResponse.questionnaire"])
        basis = await fhir.control.care_team_basis(principal)
        if subject[1] not in basis.organisations:
            raise Forbidden("Staff answer about their own unit: subject must be an "
                            "Organization carrying your care unit's, care provider's or "
                            "organisation's HSA-id.", ["QuestionnaireResponse.subject"])
        _own_source(body, principal.fhir_user)
        return True
    return False


def _own_source(body: dict[str, Any], own: str | None) -> None:
    source = _target(body.get("source"))
    if source is not None and (own is None or "/".join(source) != own):
        raise Forbidden("source is who answered: yourself.", ["QuestionnaireResponse.source"])


def _target(reference: Any) -> tuple[str, str] | None:
    value = reference.get("reference") if isinstance(reference, dict) else None
    return parse_reference(value) if isinstance(value, str) else None
