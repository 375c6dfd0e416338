"""A keyword note (bytes, as posted) -> the agreement it documents, plus warnings.

This is what ``POST /fhir/CarePlan/$import-note`` calls. The steps:

1. :func:`~samplan.mapping.note.decode_body`: media type and charset (UTF-8,
   or windows-1252, iso-8859-1, us-ascii when declared) (415 / 400);
2. the note's shape into a :class:`~samplan.mapping.note.Note` (400 with the
   JSON path for a wrong JSON shape);
3. choose the template variant: the hint if given, else the one whose
   keywords match the note's agreement section best (:func:`detect_variant`);
4. :func:`note_to_agreement`: each keyword of the agreement section becomes an
   item of the part its mapping names; internal keywords ("Intern anteckning")
   become internal items (professional-only); keywords the variant does not
   know are kept as "other keyword" items and warned about; a keyword with its
   text after a colon ("Fortsatt planering: Ny HbA1c") is that keyword with
   that text; keywords outside the section are ignored; a note without the
   section, or with an invalid personnummer, is
   :class:`~samplan.fhir.errors.Unprocessable` (422);
5. :func:`~samplan.agreement.interpret.interpret`: dates, times and numbers
   that cannot be read become warnings (the words are kept regardless).

Warnings are ``Issue(severity="warning")`` whose ``expression`` is the keyword
path, e.g. ``Överenskommelse/Vården ansvarar för/Okänt sökord``; the API
returns them in the CarePlan entry's ``response.outcome`` (docs/mapping.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from samplan.agreement.interpret import interpret
from samplan.agreement.model import (
    Agreement,
    AgreementItem,
    Author,
    CareProvider,
    CareUnit,
    Part,
    PatientInfo,
)
from samplan.agreement.values import find_hsa_ids, to_local
from samplan.fhir.errors import BadRequest, Issue, Unprocessable
from samplan.fhir.identifiers import InvalidIdentifier, is_hsa_id, normalise_personnummer
from samplan.mapping.note import (
    KeywordNode,
    Note,
    NoteShape,
    decode_body,
    normalise_text,
    parse_json_note,
    parse_text_note,
    split_marker,
)
from samplan.mapping.spec import MappingSet, TemplateMapping, default_mappings, fold

__all__ = ["ParsedNote", "detect_variant", "note_to_agreement", "parse_note"]


@dataclass(frozen=True, slots=True)
class ParsedNote:
    """A parsed note: the note as read, the variant used, the agreement, and the warnings."""

    note: Note
    shape: NoteShape
    mapping: TemplateMapping
    agreement: Agreement
    warnings: tuple[Issue, ...]


def parse_note(
    body: bytes,
    content_type: str,
    *,
    variant: str | None = None,
    mappings: MappingSet | None = None,
) -> ParsedNote:
    """Read a posted keyword note into its agreement. Pure: nothing is stored.

    ``variant`` names a ``mappings/`` variant to use instead of detecting it
    (an unknown name is a 400). Raises the 4xx errors described in the module
    docstring; warnings come back in ``ParsedNote.warnings``.
    """
    mappings = mappings or default_mappings()
    shape, text = decode_body(body, content_type)
    if variant is not None and variant not in mappings.by_id:
        raise BadRequest(
            f"unknown template variant '{variant}'; known: {', '.join(mappings.by_id)}",
            ("variant",),
        )
    header_issues: list[Issue] = []
    if shape == "json":
        note = parse_json_note(text)
        hint = variant or note.template_variant
        mapping = mappings.by_id.get(hint) if hint else None
        mapping = mapping or detect_variant(note, mappings)
    else:
        if variant is None:
            # A "Sökordsmall:" header (SamPlan's own exports write one) names the variant.
            hinted = parse_text_note(text, mappings.default, mappings)[0].template_variant
            variant = hinted if hinted in mappings.by_id else None
        candidates = [mappings.by_id[variant]] if variant else list(mappings)
        best: tuple[int, Note, TemplateMapping, list[Issue]] | None = None
        for candidate in candidates:
            read, issues = parse_text_note(text, candidate, mappings)
            score = _score(read, candidate)
            if score is not None and (best is None or score > best[0]):
                best = (score, read, candidate, issues)
        if best is None:
            read, issues = parse_text_note(text, candidates[0], mappings)
            best = (0, read, candidates[0], issues)
        _, note, mapping, header_issues = best
    agreement, warnings = note_to_agreement(note, mapping, mappings)
    return ParsedNote(
        note=note,
        shape=shape,
        mapping=mapping,
        agreement=agreement,
        warnings=(*header_issues, *warnings),
    )


def detect_variant(note: Note, mappings: MappingSet) -> TemplateMapping:
    """The variant whose keywords fit the note's agreement section best.

    Score: keywords the variant knows minus keywords it does not; ties go to
    the higher ``priority``, then to the name. Without any agreement section
    the default variant is returned (the importer then answers 422).
    """
    best: tuple[int, TemplateMapping] | None = None
    for mapping in mappings:  # already in priority order: the first best wins ties
        score = _score(note, mapping)
        if score is not None and (best is None or score > best[0]):
            best = (score, mapping)
    return best[1] if best else mappings.default


def _sections(nodes: tuple[KeywordNode, ...], mapping: TemplateMapping) -> list[KeywordNode]:
    found: list[KeywordNode] = []
    for node in nodes:
        if mapping.is_section(node.keyword):
            found.append(node)
        else:
            found += _sections(node.children, mapping)
    return found


def _descendants(
    nodes: tuple[KeywordNode, ...], path: tuple[str, ...]
) -> Iterator[tuple[KeywordNode, tuple[str, ...]]]:
    for node in nodes:
        yield node, (*path, node.keyword)
        yield from _descendants(node.children, (*path, node.keyword))


def _score(note: Note, mapping: TemplateMapping) -> int | None:
    sections = _sections(note.keywords, mapping)
    if not sections:
        return None
    score = 0
    for section in sections:
        for node, _ in _descendants(section.children, ()):
            keyword, _ = split_marker(node.keyword, mapping.patient_authored_marker)
            if mapping.is_internal(keyword):
                continue  # every variant has them: they say nothing about which one
            if mapping.entry_for(keyword) is None and ":" in keyword:
                keyword = keyword.partition(":")[0].strip()
            score += 1 if mapping.entry_for(keyword) is not None else -1
    return score


_ONLY_ONE = {
    Part.VALIDITY: "an agreement has one validity period",
    Part.GP_CONTACT: "a patient has at most one fast läkarkontakt",
}
"""Parts an agreement holds once; a repeat is kept, as an unknown keyword, and warned about."""


def _warning(code: str, diagnostics: str, path: tuple[str, ...]) -> Issue:
    return Issue(
        code=code, diagnostics=diagnostics, expression=("/".join(path),), severity="warning"
    )


def note_to_agreement(
    note: Note, mapping: TemplateMapping, mappings: MappingSet | None = None
) -> tuple[Agreement, list[Issue]]:
    """The agreement a note documents, read with ``mapping``; and the warnings.

    ``mappings`` (default: the loaded ones) says which keywords are internal in
    any variant: such a keyword is never read as something the patient sees,
    whichever variant reads the note. Raises :class:`Unprocessable` when the
    note has no agreement section or its personnummer/samordningsnummer is
    invalid.
    """
    mappings = mappings or default_mappings()
    sections = _sections(note.keywords, mapping)
    if not sections:
        raise Unprocessable(
            f"the note has no agreement section (keyword '{mapping.section.keyword}')",
            ("keywords",),
        )
    warnings: list[Issue] = []
    section_keyword = sections[0].keyword
    if len(sections) > 1:
        warnings.append(
            _warning(
                "business-rule",
                f"the note has {len(sections)} '{section_keyword}' sections; they are read as one",
                (section_keyword,),
            )
        )
    section_text = "\n".join(t for s in sections if (t := normalise_text(s.text))) or None

    items: list[AgreementItem] = []
    seen: set[Part] = set()
    for section in sections:
        for node, path in _descendants(section.children, (section_keyword,)):
            item = _item(node, path, mapping, mappings, seen, warnings)
            if item is not None:
                seen.add(item.part)
                items.append(item)

    agreement = Agreement(
        patient=_patient(note),
        items=tuple(items),
        note_id=note.note_id,
        variant=mapping.id,
        template=note.template,
        author=_author(note, warnings),
        care_unit=_care_unit(note, warnings),
        care_provider=_care_provider(note, warnings),
        signed_at=to_local(note.signed_at) if note.signed_at else None,
        section_keyword=section_keyword,
        section_text=section_text,
    )
    warnings += interpret(agreement).issues
    return agreement, warnings


def _known(keyword: str, mapping: TemplateMapping, mappings: MappingSet) -> bool:
    """A keyword of the variant, of another variant, or an internal one."""
    return (
        mapping.entry_for(keyword) is not None
        or fold(keyword) in mappings.any_keyword
        or mapping.is_internal(keyword)
        or mappings.is_internal(keyword)
    )


def _inline(
    keyword: str, text: str | None, mapping: TemplateMapping, mappings: MappingSet
) -> tuple[str, str | None]:
    """A JSON keyword written with its text after a colon: "Fortsatt planering: Ny HbA1c".

    Read as the printed shape reads such a line: when the part before the colon
    is a known keyword and the keyword as a whole is not, it is that keyword,
    and the rest is the first line of its text.
    """
    if _known(keyword, mapping, mappings):
        return keyword, text
    head, colon, rest = keyword.partition(":")
    if colon and head.strip() and rest.strip() and _known(head.strip(), mapping, mappings):
        return head.strip(), rest.strip() + (f"\n{text}" if text else "")
    return keyword, text


def _item(
    node: KeywordNode,
    path: tuple[str, ...],
    mapping: TemplateMapping,
    mappings: MappingSet,
    seen: set[Part],
    warnings: list[Issue],
) -> AgreementItem | None:
    keyword, marked = split_marker(node.keyword, mapping.patient_authored_marker)
    keyword, written = _inline(keyword, node.text, mapping, mappings)
    text = normalise_text(written)
    entry = mapping.entry_for(keyword)
    if not text:
        return None  # a bare heading (or an empty keyword) says nothing to keep
    if entry is None and (mapping.is_internal(keyword) or mappings.is_internal(keyword)):
        # Professional-only, whatever else the line says: never the patient's, never theirs.
        return AgreementItem(part=Part.INTERNAL, keyword=keyword, text=text)
    if entry is None:
        part = Part.OTHER
        warnings.append(
            _warning(
                "not-supported",
                f"keyword '{keyword}' is not in template variant '{mapping.id}'; "
                "kept as an 'other keyword' activity",
                path,
            )
        )
    elif entry.part in _ONLY_ONE and entry.part in seen:
        part = Part.OTHER
        warnings.append(
            _warning(
                "business-rule",
                f"a second '{keyword}': {_ONLY_ONE[entry.part]}, so it is kept as an "
                "'other keyword' activity",
                path,
            )
        )
    else:
        part = entry.part
    hsa_id = node.hsa_id
    if part.is_contact:
        if hsa_id is not None and not is_hsa_id(hsa_id):
            warnings.append(
                _warning("value", f"'{hsa_id}' is not an HSA-id; the contact is kept by name", path)
            )
            hsa_id = None
        if hsa_id is None:
            found = [value for value in find_hsa_ids(text) if is_hsa_id(value)]
            hsa_id = found[0] if len(found) == 1 else None
    return AgreementItem(
        part=part,
        keyword=keyword,
        text=text,
        hsa_id=hsa_id if part.is_contact else None,
        patient_authored=node.patient_authored or marked,
    )


def _patient(note: Note) -> PatientInfo:
    given = note.patient.samordningsnummer or note.patient.personnummer or ""
    samordning = note.patient.samordningsnummer is not None
    if not samordning:
        digits = "".join(char for char in given if char.isdigit())
        samordning = len(digits) in (10, 12) and int(digits[-6:-4]) > 60
    kind = "samordningsnummer" if samordning else "personnummer"
    if not given.strip():
        raise Unprocessable("the note names no patient (personnummer)", ("patient",))
    try:
        number = normalise_personnummer(given, samordning=samordning)
    except InvalidIdentifier as error:
        raise Unprocessable(
            f"the patient's {kind} is invalid: {error}", (f"patient.{kind}",)
        ) from None
    name = " ".join((note.patient.name or "").split()) or None
    return PatientInfo(personnummer=number, samordning=samordning, name=name)


def _author(note: Note, warnings: list[Issue]) -> Author | None:
    if note.author is None:
        return None
    hsa_id = _checked_hsa(note.author.hsa_id, "author", warnings)
    return Author(name=note.author.name, title=note.author.title, hsa_id=hsa_id)


def _care_unit(note: Note, warnings: list[Issue]) -> CareUnit | None:
    if note.care_unit is None:
        return None
    hsa_id = _checked_hsa(note.care_unit.hsa_id, "careUnit", warnings)
    return CareUnit(name=note.care_unit.name, hsa_id=hsa_id)


def _care_provider(note: Note, warnings: list[Issue]) -> CareProvider | None:
    if note.care_provider is None:
        return None
    hsa_id = _checked_hsa(note.care_provider.hsa_id, "careProvider", warnings)
    return CareProvider(name=note.care_provider.name, hsa_id=hsa_id)


def _checked_hsa(value: str | None, where: str, warnings: list[Issue]) -> str | None:
    if value is None or is_hsa_id(value):
        return value
    warnings.append(
        _warning("value", f"'{value}' is not an HSA-id; it is not used as an identifier", (where,))
    )
    return None
