"""The keyword templates as FHIR Questionnaires, and their responses as notes (SDC ``$extract``).

Cambio's FHIR API represents journal templates as ``Questionnaire`` and signed
notes as ``QuestionnaireResponse``. Each variant in ``mappings/`` is published
as one Questionnaire (:func:`questionnaire`): a group for the agreement
section with one ``text`` item per keyword, nested as the template nests them
(a keyword with sub-keywords is a group whose first item is its own text),
and last the variant's internal keyword (professional-only text).
:func:`extract` reads a response to it into the same :class:`ParsedNote` a
keyword note gives, so ``POST /QuestionnaireResponse/$extract`` and
``$import-note`` share everything after parsing.

Items are matched by ``linkId`` (``<variant keyword, folded, dashes>``) and,
for responses to other questionnaires, by their ``text`` as a keyword.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from samplan.agreement.codes import BASE, PERSONNUMMER_SYSTEM, SAMORDNINGSNUMMER_SYSTEM
from samplan.agreement.values import SWEDISH_TIME, Unreadable, local_datetime
from samplan.fhir.errors import BadRequest, Issue, Unprocessable
from samplan.fhir.identifiers import HSA_SYSTEM, canonical_system
from samplan.mapping.importer import ParsedNote, detect_variant, note_to_agreement
from samplan.mapping.note import KeywordNode, Note, NoteAuthor, NotePatient
from samplan.mapping.spec import KeywordEntry, MappingSet, TemplateMapping, default_mappings, fold

__all__ = ["SECTION_LINK_ID", "extract", "link_id", "questionnaire", "questionnaire_url"]

SECTION_LINK_ID = "overenskommelse"
_TEXT_SUFFIX = ".text"


def questionnaire_url(mapping: TemplateMapping) -> str:
    """The canonical URL of a variant's Questionnaire."""
    return f"{BASE}/Questionnaire/{mapping.id}"


def link_id(keyword: str) -> str:
    """A keyword's ``linkId``: folded, with dashes (``patienten-ansvarar-for``)."""
    return "-".join(fold(keyword).replace("/", " ").split())


def questionnaire(mapping: TemplateMapping) -> dict[str, Any]:
    """The variant as an R4 Questionnaire resource (JSON-ready)."""

    def item(entry: KeywordEntry) -> dict[str, Any]:
        own = {"linkId": link_id(entry.keyword), "text": entry.keyword, "type": "text"}
        if not entry.children:
            return own | {"repeats": True}
        own_text = own | {"linkId": own["linkId"] + _TEXT_SUFFIX}
        children = [own_text, *(item(child) for child in entry.children)]
        return {"linkId": own["linkId"], "text": entry.keyword, "type": "group", "item": children}

    section_text = {
        "linkId": SECTION_LINK_ID + _TEXT_SUFFIX,
        "text": mapping.section.keyword,
        "type": "text",
    }
    resource: dict[str, Any] = {
        "resourceType": "Questionnaire",
        "url": questionnaire_url(mapping),
        "name": "Samplan" + "".join(part.capitalize() for part in mapping.id.split("-")),
        "title": mapping.title,
        "status": "active",
        "subjectType": ["Patient"],
    }
    if mapping.description:
        resource["description"] = mapping.description.strip()
    resource["item"] = [
        {
            "linkId": SECTION_LINK_ID,
            "text": mapping.section.keyword,
            "type": "group",
            "item": [section_text, *(item(entry) for entry in mapping.keywords),
                     *_internal_item(mapping)],
        }
    ]
    return resource


def _internal_item(mapping: TemplateMapping) -> list[dict[str, Any]]:
    """The variant's internal keyword, last: what is answered there is professional-only."""
    if not mapping.internal_keywords:
        return []
    keyword = mapping.internal_keywords[0]
    return [{"linkId": link_id(keyword), "text": keyword, "type": "text", "repeats": True}]


def extract(response: Mapping[str, Any], *, mappings: MappingSet | None = None) -> ParsedNote:
    """A QuestionnaireResponse to one of our Questionnaires, read as a keyword note.

    Raises :class:`BadRequest` for a resource that is not a valid R4
    QuestionnaireResponse and :class:`Unprocessable` for one without a patient
    identifier or without the agreement section.
    """
    mappings = mappings or default_mappings()
    if response.get("resourceType") != "QuestionnaireResponse":
        raise BadRequest("expected a QuestionnaireResponse", ("resourceType",))
    try:
        get_fhir_model_class("QuestionnaireResponse").model_validate(dict(response))
    except ValidationError as error:
        raise BadRequest.from_issues(
            [
                Issue(
                    code="structure",
                    diagnostics=e["msg"],
                    expression=(_fhirpath(e["loc"]),),
                )
                for e in error.errors(include_url=False)
            ]
        ) from None

    canonical = str(response.get("questionnaire", "")).partition("|")[0]
    mapping = next((m for m in mappings if questionnaire_url(m) == canonical), None)
    warnings: list[Issue] = []
    note = Note(
        note_id=(response.get("identifier") or {}).get("value"),
        patient=_patient(response),
        author=_author(response.get("author")),
        signed_at=_authored(response.get("authored"), warnings),
        template_variant=mapping.id if mapping else None,
        keywords=tuple(_nodes(response.get("item") or [], mapping or mappings.default)),
    )
    mapping = mapping or detect_variant(note, mappings)
    if note.note_id is None and response.get("id"):
        note = note.model_copy(update={"note_id": f"QuestionnaireResponse/{response['id']}"})
    agreement, found = note_to_agreement(note, mapping, mappings)
    return ParsedNote(
        note=note,
        shape="json",
        mapping=mapping,
        agreement=agreement,
        warnings=(*warnings, *found),
    )


def _fhirpath(loc: tuple[int | str, ...]) -> str:
    path = "QuestionnaireResponse"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _nodes(items: list[Any], mapping: TemplateMapping) -> list[KeywordNode]:
    """Response items as keyword nodes: a group is a keyword, each answer of a text item too."""
    nodes: list[KeywordNode] = []
    for item in items:
        link = str(item.get("linkId", ""))
        keyword = _keyword(item, mapping)
        children = item.get("item") or []
        own_text = [
            child for child in children if str(child.get("linkId", "")).endswith(_TEXT_SUFFIX)
        ]
        rest = [child for child in children if child not in own_text]
        if children or link == SECTION_LINK_ID:
            text = "\n".join(a for child in own_text for a in _answers(child)) or None
            nodes.append(
                KeywordNode(keyword=keyword, text=text, children=tuple(_nodes(rest, mapping)))
            )
        else:
            nodes.extend(KeywordNode(keyword=keyword, text=answer) for answer in _answers(item))
    return nodes


def _keyword(item: Mapping[str, Any], mapping: TemplateMapping) -> str:
    link = str(item.get("linkId", ""))
    if link == SECTION_LINK_ID:
        return str(item.get("text") or mapping.section.keyword)
    for entry, _ in mapping.entries():
        if link_id(entry.keyword) == link:
            return str(item.get("text") or entry.keyword)
    for keyword in mapping.internal_keywords:
        if link_id(keyword) == link:
            return str(item.get("text") or keyword)
    return str(item.get("text") or link)


def _answers(item: Mapping[str, Any]) -> list[str]:
    return [
        str(answer["valueString"])
        for answer in item.get("answer") or []
        if isinstance(answer.get("valueString"), str) and answer["valueString"].strip()
    ]


def _patient(response: Mapping[str, Any]) -> NotePatient:
    subject = response.get("subject") or {}
    identifiers = [subject.get("identifier") or {}]
    reference = str(subject.get("reference", ""))
    for contained in response.get("contained") or []:
        if reference == f"#{contained.get('id')}":
            identifiers += contained.get("identifier") or []
    for identifier in identifiers:
        system = canonical_system(str(identifier.get("system", "")))
        value = identifier.get("value")
        if system == PERSONNUMMER_SYSTEM and value:
            return NotePatient(personnummer=value, name=subject.get("display"))
        if system == SAMORDNINGSNUMMER_SYSTEM and value:
            return NotePatient(samordningsnummer=value, name=subject.get("display"))
    raise Unprocessable(
        "the response's subject has no personnummer or samordningsnummer identifier",
        ("QuestionnaireResponse.subject",),
    )


def _author(reference: Any) -> NoteAuthor | None:
    if not isinstance(reference, Mapping):
        return None
    identifier = reference.get("identifier") or {}
    hsa_id = (
        identifier.get("value")
        if canonical_system(str(identifier.get("system", ""))) == HSA_SYSTEM
        else None
    )
    if not (reference.get("display") or hsa_id):
        return None
    return NoteAuthor(name=reference.get("display"), hsa_id=hsa_id)


def _authored(value: Any, warnings: list[Issue]) -> datetime | None:
    if not isinstance(value, str) or "T" not in value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        return moment.astimezone(SWEDISH_TIME)
    try:
        return local_datetime(moment)
    except Unreadable as problem:
        warnings.append(
            Issue(
                code="value",
                diagnostics=f"authored is not read: {problem}",
                expression=("QuestionnaireResponse.authored",),
                severity="warning",
            )
        )
        return None
