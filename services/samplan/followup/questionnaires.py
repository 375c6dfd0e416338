"""The seven questions, and the check every answer passes before it is stored.

The Questionnaires are JSON in ``fhir_profiles/`` (published at start like the
profiles); this module reads them rather than spelling the Swedish text again,
so the page, the Measures and the check all say what the files say.

:class:`AnswerCheck` is a write check (``fhir.resource.WRITE_CHECKS``): a
QuestionnaireResponse must name a Questionnaire this server publishes, be about
the kind of subject it asks about (a Patient, or an Organization for the staff
version), say when it was authored, and answer only its questions, each with
the value type the question asks for. Every issue names the element at fault
(``QuestionnaireResponse.item[3].answer[0]``), so a 422 tells the client which
question to fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from samplan.fhir.errors import Issue
from samplan.fhir.indexing import parse_reference
from samplan.followup.codes import PATIENT_QUESTIONNAIRE, STAFF_QUESTIONNAIRE

#: The ``answer.value[x]`` each Questionnaire item type takes (R4 "questionnaire-item-type").
VALUE_OF_TYPE: Final[Mapping[str, str]] = {
    "boolean": "valueBoolean",
    "decimal": "valueDecimal",
    "integer": "valueInteger",
    "date": "valueDate",
    "dateTime": "valueDateTime",
    "time": "valueTime",
    "string": "valueString",
    "text": "valueString",
    "url": "valueUri",
    "choice": "valueCoding",
    "open-choice": "valueCoding",
    "attachment": "valueAttachment",
    "reference": "valueReference",
    "quantity": "valueQuantity",
}


@dataclass(frozen=True, slots=True)
class Question:
    """One item of a Questionnaire, as far as answers need it."""

    link_id: str
    text: str
    type: str
    prefix: str = ""
    required: bool = False
    repeats: bool = False

    @property
    def label(self) -> str:
        """How an issue names the question: ``fråga 5 (Vet du ditt nästa steg?)``."""
        return f"fråga {self.prefix.rstrip('.') or self.link_id} ({self.text})"


@dataclass(frozen=True, slots=True)
class Questionnaire:
    """A published Questionnaire, flattened: its questions in order."""

    id: str
    url: str
    title: str
    subject_types: tuple[str, ...]
    questions: tuple[Question, ...]

    @classmethod
    def of(cls, resource: Mapping[str, Any]) -> Questionnaire:
        questions: list[Question] = []
        stack = list(reversed(resource.get("item") or []))
        while stack:
            item = stack.pop()
            if item.get("type") != "group" and item.get("type") != "display":
                questions.append(Question(
                    link_id=str(item["linkId"]), text=str(item.get("text", "")),
                    type=str(item.get("type")), prefix=str(item.get("prefix", "")),
                    required=bool(item.get("required")), repeats=bool(item.get("repeats")),
                ))
            stack.extend(reversed(item.get("item") or []))
        return cls(id=str(resource["id"]), url=str(resource["url"]),
                   title=str(resource.get("title") or resource.get("name") or resource["id"]),
                   subject_types=tuple(resource.get("subjectType") or ("Patient",)),
                   questions=tuple(questions))

    def question(self, link_id: str) -> Question | None:
        return next((q for q in self.questions if q.link_id == link_id), None)

    @property
    def link_ids(self) -> tuple[str, ...]:
        return tuple(q.link_id for q in self.questions)


@dataclass(frozen=True, slots=True)
class SevenQuestions:
    """SKR's seven questions: the patients' version and the staff's, question by question."""

    patient: Questionnaire
    staff: Questionnaire

    @classmethod
    def of(cls, conformance: Iterable[Mapping[str, Any]]) -> SevenQuestions:
        """From the published conformance resources (``ProfileRegistry.conformance_resources``)."""
        by_url = {r["url"]: r for r in conformance if r.get("resourceType") == "Questionnaire"}
        missing = [u for u in (PATIENT_QUESTIONNAIRE, STAFF_QUESTIONNAIRE) if u not in by_url]
        if missing:
            raise ValueError(f"fhir_profiles/ lacks the Questionnaire(s) {', '.join(missing)}")
        seven = cls(Questionnaire.of(by_url[PATIENT_QUESTIONNAIRE]),
                    Questionnaire.of(by_url[STAFF_QUESTIONNAIRE]))
        if seven.patient.link_ids != seven.staff.link_ids or len(seven.patient.questions) != 7:
            raise ValueError("the seven questions must be seven, with the same linkIds in both "
                             "Questionnaires")
        return seven

    def pairs(self) -> list[tuple[Question, Question]]:
        """(patients' question, staff's question), in order."""
        return list(zip(self.patient.questions, self.staff.questions, strict=True))


def canonical(value: str) -> str:
    """A canonical URL without its ``|version``."""
    return value.split("|", 1)[0]


class AnswerCheck:
    """The write check of QuestionnaireResponses against the Questionnaires we publish."""

    def __init__(self, questionnaires: Sequence[Questionnaire]) -> None:
        self.questionnaires = {q.url: q for q in questionnaires}

    def __call__(self, resource: dict[str, Any]) -> list[Issue]:
        if resource.get("resourceType") != "QuestionnaireResponse":
            return []
        where = "QuestionnaireResponse"
        url = resource.get("questionnaire")
        if not isinstance(url, str):
            return [Issue("required", "A QuestionnaireResponse must name its Questionnaire "
                          f"(one of {', '.join(sorted(self.questionnaires))}).",
                          (f"{where}.questionnaire",))]
        questionnaire = self.questionnaires.get(canonical(url))
        if questionnaire is None:
            return [Issue("value", f"{url} is not a Questionnaire this server publishes "
                          f"(known: {', '.join(sorted(self.questionnaires))}).",
                          (f"{where}.questionnaire",))]
        issues = self._subject(resource, questionnaire)
        if not isinstance(resource.get("authored"), str):
            issues.append(Issue("required", "authored (when the questions were answered) is "
                                "required: the follow-up counts answers by it.",
                                (f"{where}.authored",)))
        issues += self._items(resource.get("item") or [], questionnaire, f"{where}.item")
        if resource.get("status") in ("completed", "amended"):
            answered = {i.get("linkId") for i in _all_items(resource.get("item") or [])
                        if i.get("answer")}
            issues += [Issue("required", f"{q.label} is required.", (f"{where}.item",))
                       for q in questionnaire.questions
                       if q.required and q.link_id not in answered]
        return issues

    @staticmethod
    def _subject(resource: Mapping[str, Any], questionnaire: Questionnaire) -> list[Issue]:
        subject = resource.get("subject")
        reference = subject.get("reference") if isinstance(subject, dict) else None
        target = parse_reference(reference) if isinstance(reference, str) else None
        kinds = " or ".join(questionnaire.subject_types)
        if target is None or target[0] not in questionnaire.subject_types:
            return [Issue("value" if subject else "required",
                          f"{questionnaire.title!r} ({questionnaire.id}) is answered about: "
                          f"{kinds}; subject must be a reference {kinds}/{{id}}.",
                          ("QuestionnaireResponse.subject",))]
        return []

    def _items(self, items: list[Any], questionnaire: Questionnaire, path: str) -> list[Issue]:
        issues: list[Issue] = []
        seen: set[str] = set()
        for i, item in enumerate(items):
            at = f"{path}[{i}]"
            link_id = item.get("linkId") if isinstance(item, dict) else None
            question = questionnaire.question(link_id) if isinstance(link_id, str) else None
            if question is None:
                issues.append(Issue("value", f"{at}: linkId {link_id!r} is not a question of "
                                    f"{questionnaire.id} (its questions: "
                                    f"{', '.join(questionnaire.link_ids)}).", (f"{at}.linkId",)))
                continue
            if question.link_id in seen:
                issues.append(Issue("structure", f"{question.label} is answered twice: one item "
                                    "per question.", (at,)))
                continue
            seen.add(question.link_id)
            answers = item.get("answer") or []
            if len(answers) > 1 and not question.repeats:
                issues.append(Issue("structure", f"{question.label} takes one answer, not "
                                    f"{len(answers)}.", (f"{at}.answer[1]",)))
            wanted = VALUE_OF_TYPE.get(question.type)
            for j, answer in enumerate(answers):
                values = [k for k in answer if k.startswith("value")]
                if wanted is not None and values != [wanted]:
                    found = ", ".join(values) or "no value"
                    kind = "ja or nej (valueBoolean)" if wanted == "valueBoolean" else wanted
                    issues.append(Issue("value", f"{question.label} is answered {kind}, not "
                                        f"{found}.", (f"{at}.answer[{j}]",)))
                if answer.get("item"):
                    issues.append(Issue("structure", f"{question.label} has no follow-up "
                                        "questions.", (f"{at}.answer[{j}].item",)))
            if item.get("item"):
                issues += self._items(item["item"], questionnaire, f"{at}.item")
        return issues


def _all_items(items: list[Any]) -> Iterable[dict[str, Any]]:
    for item in items:
        if isinstance(item, dict):
            yield item
            yield from _all_items(item.get("item") or [])
            for answer in item.get("answer") or []:
                if isinstance(answer, dict):
                    yield from _all_items(answer.get("item") or [])

