"""An agreement rendered back as a keyword note: printed text or the integration JSON.

What ``GET /fhir/CarePlan/{id}/$export-note`` answers. The keywords come in the
template's order and nesting (the agreement's variant, ``mappings/<variant>.yaml``),
each with the keyword as the note wrote it (or the template's name, with
``canonical_keywords``, or when the agreement came from FHIR without one) and
its text verbatim. Keywords the template does not have (unknown keywords kept
on import, parts the variant lacks) follow at the end of the section.
Patient-authored items are their own keyword lines, marked with the variant's
``patient_authored_marker`` in text and ``patientAuthored`` in JSON.

The output re-imports to the same agreement: the text carries an
``Anteckningsid:`` and a ``Sökordsmall:`` header, the JSON ``noteId`` and
``templateVariant``. Limits of the printed shape (documented in docs/mapping.md):
a text line that is itself a keyword would be read as one on re-import.
"""

from __future__ import annotations

import json
from typing import Literal

from samplan.agreement.model import Agreement, AgreementItem
from samplan.agreement.values import Unreadable, local_datetime, to_local
from samplan.fhir.errors import UnsupportedMediaType
from samplan.mapping.note import (
    KeywordNode,
    Note,
    NoteAuthor,
    NoteCareProvider,
    NoteCareUnit,
    NotePatient,
)
from samplan.mapping.spec import KeywordEntry, MappingSet, TemplateMapping, default_mappings

__all__ = ["EXPORT_MEDIA_TYPES", "ExportFormat", "export_note", "export_tree"]

ExportFormat = Literal["text", "json"]

EXPORT_MEDIA_TYPES: dict[ExportFormat, str] = {
    "text": "text/plain; charset=utf-8",
    "json": "application/json",
}
"""The ``Content-Type`` of each format's bytes."""

_FORMATS: dict[str, ExportFormat] = {
    "text": "text",
    "text/plain": "text",
    "json": "json",
    "application/json": "json",
}


def export_note(
    agreement: Agreement,
    fmt: str = "text",
    *,
    mappings: MappingSet | None = None,
    canonical_keywords: bool = False,
) -> bytes:
    """The agreement as a keyword note in UTF-8.

    ``fmt`` is ``"text"``/``"text/plain"`` or ``"json"``/``"application/json"``
    (media-type parameters are ignored); anything else is a 415.
    """
    chosen = _FORMATS.get(fmt.partition(";")[0].strip().lower())
    if chosen is None:
        raise UnsupportedMediaType(
            f"a keyword note is exported as text/plain or application/json, not '{fmt}'",
            ("_format",),
        )
    note = export_tree(agreement, mappings=mappings, canonical_keywords=canonical_keywords)
    mapping = (mappings or default_mappings()).get(agreement.variant)
    if chosen == "json":
        data = note.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
        return (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode()
    return _text(agreement, note, mapping).encode()


def export_tree(
    agreement: Agreement,
    *,
    mappings: MappingSet | None = None,
    canonical_keywords: bool = False,
) -> Note:
    """The agreement as a :class:`Note` keyword tree in its variant's order and nesting."""
    mapping = (mappings or default_mappings()).get(agreement.variant)
    assigned: dict[int, list[AgreementItem]] = {}
    leftovers: list[AgreementItem] = []
    for item in agreement.items:
        entry = mapping.entry_for(item.keyword)
        if entry is None or entry.part is not item.part:
            entry = mapping.entry_for_part(item.part)
        if entry is None:
            leftovers.append(item)
        else:
            assigned.setdefault(id(entry), []).append(item)

    def keyword_of(item: AgreementItem, entry: KeywordEntry) -> str:
        return entry.keyword if canonical_keywords else item.keyword

    def node(
        item: AgreementItem, keyword: str, children: tuple[KeywordNode, ...] = ()
    ) -> KeywordNode:
        return KeywordNode(
            keyword=keyword,
            text=item.text,
            hsa_id=item.hsa_id,
            patient_authored=item.patient_authored,
            children=children,
        )

    def render(entries: tuple[KeywordEntry, ...]) -> list[KeywordNode]:
        nodes: list[KeywordNode] = []
        for entry in entries:
            own = assigned.get(id(entry), [])
            children = tuple(render(entry.children))
            if not own and not children:
                continue
            holder = next((item for item in own if not item.patient_authored), None)
            if holder is None and children:
                nodes.append(KeywordNode(keyword=entry.keyword, children=children))
            for item in own:
                kids = children if item is holder else ()
                nodes.append(node(item, keyword_of(item, entry), kids))
        return nodes

    section = KeywordNode(
        keyword=agreement.section_keyword,
        text=agreement.section_text,
        children=(*render(mapping.keywords), *(node(i, i.keyword) for i in leftovers)),
    )
    patient = agreement.patient
    number = patient.written
    return Note(
        note_id=agreement.note_id,
        patient=NotePatient(
            personnummer=None if patient.samordning else number,
            samordningsnummer=number if patient.samordning else None,
            name=patient.name,
        ),
        author=(
            NoteAuthor(
                hsa_id=agreement.author.hsa_id,
                name=agreement.author.name,
                title=agreement.author.title,
            )
            if agreement.author
            else None
        ),
        care_unit=(
            NoteCareUnit(hsa_id=agreement.care_unit.hsa_id, name=agreement.care_unit.name)
            if agreement.care_unit
            else None
        ),
        care_provider=(
            NoteCareProvider(hsa_id=agreement.care_provider.hsa_id,
                             name=agreement.care_provider.name)
            if agreement.care_provider
            else None
        ),
        signed_at=to_local(agreement.signed_at) if agreement.signed_at else None,
        template=agreement.template,
        template_variant=mapping.id,
        keywords=(section,),
    )


def _text(agreement: Agreement, note: Note, mapping: TemplateMapping) -> str:
    lines: list[str] = []
    if note.template:
        lines.append(note.template)
    if note.note_id:
        lines.append(f"Anteckningsid: {note.note_id}")
    lines.append(f"Sökordsmall: {mapping.id}")
    name = f" {agreement.patient.name}" if agreement.patient.name else ""
    lines.append(f"Patient: {agreement.patient.written}{name}")
    unit = agreement.care_unit
    if unit is not None and (unit.name or unit.hsa_id):
        lines.append("Vårdenhet: " + _with_hsa(unit.name or "", unit.hsa_id))
    provider = agreement.care_provider
    if provider is not None and (provider.name or provider.hsa_id):
        lines.append("Vårdgivare: " + _with_hsa(provider.name or "", provider.hsa_id))
    signed = _signed_line(agreement)
    if signed:
        lines.append(signed)
    lines.append("")

    def walk(nodes: tuple[KeywordNode, ...]) -> None:
        for node in nodes:
            line = node.keyword
            if node.hsa_id and node.hsa_id not in (node.text or ""):
                line += f" ({node.hsa_id})"  # the text does not name it: keep it on the keyword
            if node.patient_authored:
                line += f" {mapping.patient_authored_marker}"
            lines.append(line)
            if node.text:
                lines.extend(node.text.split("\n"))
            walk(node.children)

    walk(note.keywords)
    return "\n".join(lines) + "\n"


def _with_hsa(text: str, hsa_id: str | None) -> str:
    return f"{text} ({hsa_id})".strip() if hsa_id else text


def _signed_line(agreement: Agreement) -> str | None:
    author = agreement.author
    who = ""
    if author is not None:
        named = (author.name or "") + (f", {author.title}" if author.title else "")
        who = _with_hsa(named, author.hsa_id)
    when = ""
    if agreement.signed_at is not None:
        local = to_local(agreement.signed_at)
        when = f"{local:%Y-%m-%d %H:%M}"
        if local.second or local.microsecond:
            when += f":{local:%S}" + (f".{local:%f}" if local.microsecond else "")
        try:
            unambiguous = local_datetime(local.replace(tzinfo=None)) == local
        except Unreadable:
            unambiguous = False
        if not unambiguous:
            when += local.isoformat()[-6:]
    if when and who:
        return f"Signerad: {when} av {who}"
    if when:
        return f"Signerad: {when}"
    return f"Signerad: av {who}" if who else None
