"""Switching follow-up on at start: write checks, the CapabilityStatement, the Measures.

Called once per application from ``samplan.main.build_services`` (idempotent:
tests build many apps in one process). Observation and QuestionnaireResponse
are registered in ``samplan.fhir.registry`` (so every layer knows them from
import on) and Measure is a conformance type (``samplan.fhir.conformance``);
what is added here needs the loaded profiles: the Questionnaires the answers
are checked against, and the Measures that name their questions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from samplan.fhir.capability import CONTRIBUTORS
from samplan.fhir.errors import Issue
from samplan.fhir.profiles import ProfileRegistry
from samplan.fhir.resource import WRITE_CHECKS
from samplan.followup import measures
from samplan.followup.codes import RUB_PROFILE
from samplan.followup.questionnaires import AnswerCheck, Questionnaire, SevenQuestions

EXTRAS_KEY: Final = "followup"
"""``services.extras`` key of the installed :class:`FollowUp`."""

EVALUATE_MEASURE: Final = "http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure"


@dataclass(frozen=True, slots=True)
class FollowUp:
    """What the routes need: the seven questions (for the page) and the published Measures."""

    questions: SevenQuestions
    measure_resources: tuple[dict[str, Any], ...]


def only_rub_observations(resource: dict[str, Any]) -> list[Issue]:
    """SamPlan stores one kind of Observation, the RUB level: it must claim that profile.

    The profile itself is checked by the profile registry's write check (it runs on
    every profile a resource claims); this check makes the claim mandatory.
    """
    if resource.get("resourceType") != "Observation":
        return []
    meta = resource.get("meta")
    claimed = meta.get("profile") if isinstance(meta, dict) else None
    if isinstance(claimed, list) and any(
        isinstance(p, str) and p.split("|", 1)[0] == RUB_PROFILE for p in claimed
    ):
        return []
    return [Issue("required", f"SamPlan stores only RUB levels as Observation: meta.profile "
                  f"must name {RUB_PROFILE}.", ("Observation.meta.profile",))]


def _advertise(statement: dict[str, Any]) -> None:
    for entry in statement["rest"][0]["resource"]:
        if entry["type"] == "Measure":
            operations = entry.setdefault("operation", [])
            if not any(o.get("name") == "evaluate-measure" for o in operations):
                operations.append({"name": "evaluate-measure", "definition": EVALUATE_MEASURE})


def install(profiles: ProfileRegistry) -> FollowUp:
    """Add the write checks and the capability entry; give the Measures to publish."""
    conformance = profiles.conformance_resources()
    questions = SevenQuestions.of(conformance)
    check = AnswerCheck([Questionnaire.of(r) for r in conformance
                         if r["resourceType"] == "Questionnaire"])
    WRITE_CHECKS[:] = [c for c in WRITE_CHECKS
                       if not isinstance(c, AnswerCheck) and c is not only_rub_observations]
    WRITE_CHECKS.extend([only_rub_observations, check])
    CONTRIBUTORS[:] = [c for c in CONTRIBUTORS if c is not _advertise]
    CONTRIBUTORS.append(_advertise)
    return FollowUp(questions, tuple(measures.resources(questions)))
