"""Who may answer the seven questions, and about whom (issue 16).

The access policy (``security/policy.py``) lets a patient write only their own
Goals and Consents, refuses every write of a relative, and lets staff write
only resources about patients they reach. The seven questions need three more
rules; ``policy.check_write`` asks this module about every QuestionnaireResponse
written (the gate's writer checks every write with it, whatever its path):

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
the write check against the Questionnaire (422 naming the item). The gate logs
the write as every write, with the caller as agent and the patient answered
about as patient.

Answers are created, never changed: updates and deletes go through the policy,
which refuses them to patients and relatives. Staff answers about a unit are
not any patient's data: no one reads them back one by one (the policy finds
no patient in reach), they are read as counts, on the follow-up page and in
MeasureReports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from samplan.fhir.errors import Forbidden
from samplan.fhir.indexing import parse_reference
from samplan.followup.codes import PATIENT_QUESTIONNAIRE, STAFF_QUESTIONNAIRE
from samplan.security.principal import Principal

RESPONSE: Final = "QuestionnaireResponse"


def check_answer(
    principal: Principal, patients: frozenset[str], organisations: frozenset[str],
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None,
) -> bool:
    """Whether this write is an answer to the seven questions the caller may give (True),
    not one of those (False: the policy's ordinary rules decide), or refused (403).

    ``patients`` and ``organisations``: what the caller reaches (their patients, their
    care-team basis) after the write.
    """
    if after is None or principal.kind in ("anonymous-dev",):
        return False
    url = _canonical(after.get("questionnaire"))
    subject = _target(after.get("subject"))
    if principal.kind in ("patient", "relative"):
        if before is not None:
            raise Forbidden("An answer to the seven questions is given once: it is not "
                            "changed afterwards.", ["QuestionnaireResponse"])
        if url != PATIENT_QUESTIONNAIRE:
            raise Forbidden(f"A {principal.kind} answers {PATIENT_QUESTIONNAIRE}, not "
                            f"{after.get('questionnaire')}.",
                            ["QuestionnaireResponse.questionnaire"])
        if subject is None or subject[0] != "Patient" or subject[1] not in patients:
            raise Forbidden("An answer is about yourself (or the patient you act for): "
                            "subject must be that Patient.", ["QuestionnaireResponse.subject"])
        _own_source(after, f"Patient/{subject[1]}" if principal.kind == "patient"
                    else principal.fhir_user)
        return True
    if subject is not None and subject[0] == "Organization":
        if url != STAFF_QUESTIONNAIRE:
            raise Forbidden(f"An answer about a unit answers {STAFF_QUESTIONNAIRE}.",
                            ["QuestionnaireResponse.questionnaire"])
        if subject[1] not in organisations:
            raise Forbidden("Staff answer about their own unit: subject must be an "
                            "Organization carrying your care unit's or organisation's "
                            "HSA-id.", ["QuestionnaireResponse.subject"])
        _own_source(after, principal.fhir_user)
        return True
    return False


def _canonical(value: Any) -> str | None:
    return value.split("|", 1)[0] if isinstance(value, str) else None


def _own_source(body: Mapping[str, Any], own: str | None) -> None:
    source = _target(body.get("source"))
    if source is not None and (own is None or "/".join(source) != own):
        raise Forbidden("source is who answered: yourself.", ["QuestionnaireResponse.source"])


def _target(reference: Any) -> tuple[str, str] | None:
    value = reference.get("reference") if isinstance(reference, Mapping) else None
    return parse_reference(value) if isinstance(value, str) else None
