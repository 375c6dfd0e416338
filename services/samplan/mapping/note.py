"""A journal note as a keyword tree, read from either shape a journal hands us.

Two shapes carry the same note (examples in examples/notes/):

* **JSON** from an integration engine (``application/json``): validated with
  pydantic; a wrong shape is a :class:`~samplan.fhir.errors.BadRequest` whose
  issues name the JSON path (``$.keywords[1].children[0].text``).
* **Printed text** (``text/plain``, UTF-8, any line endings): header lines
  (``Patient:``, ``Vårdenhet:``, ``Signerad:``, optionally ``Anteckningsid:``),
  then keywords as lines of their own. Which lines are keywords, and how the
  flat lines nest, comes from a :class:`~samplan.mapping.spec.TemplateMapping`:
  a line is a keyword when it *is* a keyword of the variant (folded), or of
  any other variant (then it is an unknown keyword for this one), or one of
  the surrounding template's keywords (which ends the agreement section). The
  text under a keyword runs until the next keyword.

Both give a :class:`Note`. Text is normalised the same way for both: line
endings become ``\\n``, trailing whitespace on each line and blank lines
around a keyword's text are dropped (a printed note cannot keep them), and
everything else is kept verbatim. A note without an id gets one derived from
a hash of its normalised content, so importing it again is recognised.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from samplan.agreement.values import SWEDISH_TIME, Unreadable, local_datetime, parse_date
from samplan.fhir.errors import BadRequest, Issue, UnsupportedMediaType
from samplan.mapping.spec import KeywordEntry, MappingSet, TemplateMapping, fold

__all__ = [
    "KeywordNode",
    "Note",
    "NoteAuthor",
    "NoteCareUnit",
    "NotePatient",
    "NoteShape",
    "decode_body",
    "derive_note_id",
    "normalise_text",
    "parse_json_note",
    "parse_text_note",
    "split_marker",
]

NoteShape = Literal["json", "text"]

# C0 controls other than tab and newline (and DEL): a journal text never has
# them, PostgreSQL text cannot store NUL, and FHIR strings should not.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_NEWLINES = re.compile(r"\r\n|\r|\n")


def normalise_text(text: str | None) -> str:
    """``\\n`` line endings, no trailing whitespace, no blank lines around the text."""
    if not text:
        return ""
    lines = [line.rstrip() for line in _NEWLINES.split(text)]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def _no_controls(value: str | None) -> str | None:
    if value is not None and (match := _CONTROL.search(_NEWLINES.sub("\n", value))):
        raise ValueError(f"contains the control character U+{ord(match[0]):04X}")
    return value


class _NoteModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class NotePatient(_NoteModel):
    """The patient as the note names them (the number is validated later, to answer 422)."""

    personnummer: str | None = None
    samordningsnummer: str | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _one_number(self) -> NotePatient:
        if (self.personnummer is None) == (self.samordningsnummer is None):
            raise ValueError("give exactly one of personnummer and samordningsnummer")
        return self


class NoteAuthor(_NoteModel):
    """Who signed the note."""

    hsa_id: str | None = None
    name: str | None = None
    title: str | None = None


class NoteCareUnit(_NoteModel):
    """The care unit the note was written at."""

    hsa_id: str | None = None
    name: str | None = None


class KeywordNode(_NoteModel):
    """One keyword of the note, its text and the keywords nested under it."""

    keyword: str = Field(min_length=1)
    text: str | None = None
    hsa_id: str | None = None
    """The HSA-id of the person the keyword names, when the journal knows it."""
    patient_authored: bool = False
    """Written by the patient (portal), not staff: SamPlan's own addition to the shape."""
    children: tuple[KeywordNode, ...] = ()

    @field_validator("keyword")
    @classmethod
    def _one_line(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("a keyword must not be blank")
        if "\n" in value or "\r" in value:
            raise ValueError("a keyword is one line")
        _no_controls(value)
        return value

    @field_validator("text")
    @classmethod
    def _clean_text(cls, value: str | None) -> str | None:
        return _no_controls(value)


class Note(_NoteModel):
    """A signed journal note, as a keyword tree."""

    note_id: str | None = None
    patient: NotePatient
    author: NoteAuthor | None = None
    care_unit: NoteCareUnit | None = None
    signed_at: AwareDatetime | None = None
    template: str | None = None
    template_variant: str | None = None
    """Which ``mappings/`` variant wrote the note (set on export; a hint on import)."""
    keywords: tuple[KeywordNode, ...]


# -- bytes to text ------------------------------------------------------------------------


def decode_body(body: bytes, content_type: str) -> tuple[NoteShape, str]:
    """The note's shape (from the media type) and its text (strict UTF-8).

    Raises :class:`UnsupportedMediaType` (415) for anything but
    ``application/json`` and ``text/plain`` in UTF-8, and :class:`BadRequest`
    (400) for bytes that are not UTF-8.
    """
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    charset = "utf-8"
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    shape: NoteShape
    if media == "application/json":
        shape = "json"
    elif media == "text/plain":
        shape = "text"
    else:
        raise UnsupportedMediaType(
            f"a keyword note is application/json or text/plain, not '{media or content_type}'",
            ("Content-Type",),
        )
    if charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(f"a keyword note is UTF-8, not '{charset}'", ("Content-Type",))
    try:
        return shape, body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BadRequest(
            f"the note is not UTF-8: byte 0x{body[error.start]:02x} at offset {error.start} "
            "cannot be decoded",
        ) from None


def derive_note_id(content: str) -> str:
    """A stable id for a note that has none: a hash of its normalised content."""
    return "note-sha256-" + hashlib.sha256(normalise_text(content).encode()).hexdigest()[:32]


# -- JSON ---------------------------------------------------------------------------------


def _json_path(loc: tuple[int | str, ...]) -> str:
    path = "$"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def parse_json_note(text: str) -> Note:
    """The JSON shape, validated; errors name the JSON path of each fault."""
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadRequest(
            f"the note is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        ) from None
    try:
        note = Note.model_validate(data)
    except ValidationError as error:
        issues = [
            Issue(
                code="structure",
                diagnostics=f"{_json_path(e['loc'])}: {e['msg']}",
                expression=(_json_path(e["loc"]),),
            )
            for e in error.errors(include_url=False)
        ]
        raise BadRequest.from_issues(issues) from None
    if note.note_id is None:
        canonical = json.dumps(
            note.model_dump(mode="json", by_alias=True, exclude_none=True),
            sort_keys=True,
            ensure_ascii=False,
        )
        note = note.model_copy(update={"note_id": derive_note_id(canonical)})
    return note


# -- printed text -------------------------------------------------------------------------

_PNR_IN_TEXT = re.compile(r"(?<!\d)(\d{6}(?:\d{2})?[-+]?\d{4})(?!\d)")
_HSA_PARENS = re.compile(r"^(?P<name>.*?)\s*\((?P<hsa>SE[0-9A-Za-z-]+)\)\s*$")
_SIGNED = re.compile(
    r"^(?:(?P<date>\d{4}-\d{2}-\d{2})[ T](?P<hh>\d{1,2})[:.](?P<mm>\d{2})"
    r"(?::(?P<ss>\d{2})(?:\.(?P<frac>\d{1,6}))?)?"
    r"(?P<offset>[+-]\d{2}:\d{2}|Z)?)?(?:\s*\bav\s+(?P<who>.+))?$"
)
_HEADERS: dict[str, str] = {
    "patient": "patient",
    "vardenhet": "unit",
    "enhet": "unit",
    "signerad": "signed",
    "signerat": "signed",
    "anteckningsid": "note_id",
    "anteckning-id": "note_id",
    "antecknings-id": "note_id",
    "sokordsmall": "variant",
}


def _header(line: str) -> tuple[str, str] | None:
    key, colon, value = line.partition(":")
    if not colon:
        return None
    kind = _HEADERS.get(fold(key))
    return (kind, value.strip()) if kind else None


def _is_signature(line: str) -> bool:
    """A ``Signerad:`` line that really is a signature (it may close a printout)."""
    head = _header(line)
    return head is not None and head[0] == "signed" and _signature(head[1]) is not None


def _signature(value: str) -> re.Match[str] | None:
    match = _SIGNED.match(value)
    return match if match is not None and (match["date"] or match["who"]) else None


def split_marker(keyword: str, marker: str) -> tuple[str, bool]:
    """``keyword`` without a trailing patient-authored marker, and whether it had one."""
    folded_marker = fold(marker)
    if not folded_marker or not fold(keyword).endswith(folded_marker):
        return keyword, False
    for cut in range(len(keyword), -1, -1):
        if fold(keyword[cut:]) == folded_marker:
            head = keyword[:cut].strip()
            return (head, True) if head else (keyword, False)
    return keyword, False


@dataclass
class _Open:
    keyword: str
    patient_authored: bool = False
    hsa_id: str | None = None
    lines: list[str] = field(default_factory=list)
    children: list[_Open] = field(default_factory=list)

    def node(self) -> KeywordNode:
        text = normalise_text("\n".join(self.lines))
        return KeywordNode(
            keyword=self.keyword,
            text=text or None,
            hsa_id=self.hsa_id,
            patient_authored=self.patient_authored,
            children=tuple(child.node() for child in self.children),
        )


@dataclass(slots=True)
class _Header:
    template: str | None = None
    note_id: str | None = None
    patient: str | None = None
    unit: str | None = None
    signed: str | None = None
    variant: str | None = None


def parse_text_note(
    text: str, mapping: TemplateMapping, mappings: MappingSet
) -> tuple[Note, list[Issue]]:
    """The printed shape read with ``mapping``'s keywords; also header warnings.

    Raises :class:`BadRequest` for control characters, and
    :class:`~samplan.fhir.errors.Unprocessable` is left to the importer (a
    note without a patient line still parses, with ``patient`` empty).
    """
    if match := _CONTROL.search(_NEWLINES.sub("\n", text)):
        raise BadRequest(f"the note contains the control character U+{ord(match[0]):04X}")
    lines = [line.rstrip() for line in _NEWLINES.split(text)]
    header = _Header()
    top: list[_Open] = []
    section: _Open | None = None
    stack: list[tuple[KeywordEntry | None, _Open]] = []  # open keywords inside the section
    current: _Open | None = None
    seen_content = seen_keyword = False

    for line in lines:
        stripped = line.strip()
        if not stripped:
            if current is not None:
                current.lines.append(line)
            continue
        if section is not None:
            keyword, patient_authored = split_marker(stripped, mapping.patient_authored_marker)
            hsa_id = None
            if (suffixed := _HSA_PARENS.match(keyword)) and (
                mapping.entry_for(suffixed["name"])
                or fold(suffixed["name"]) in mappings.any_keyword
            ):
                keyword, hsa_id = suffixed["name"], suffixed["hsa"]
            entry = mapping.entry_for(keyword)
            if mapping.is_section(stripped):
                section = _Open(stripped)
                top.append(section)
                current, stack = section, []
                continue
            if entry is not None or fold(keyword) in mappings.any_keyword:
                node = _Open(keyword, patient_authored, hsa_id)
                parent = mapping.parent_of(entry) if entry is not None else None
                while stack and (parent is None or stack[-1][0] is not parent):
                    stack.pop()
                (stack[-1][1].children if stack else section.children).append(node)
                stack.append((entry, node))
                current = node
                continue
            if not (mapping.is_note_keyword(stripped) or _is_signature(stripped)):
                if current is not None:
                    current.lines.append(line)
                continue
            section, stack = None, []  # the section ends; read the line as outside it
        head = _header(stripped)
        if head is not None and (not seen_keyword or _is_signature(stripped)):
            setattr(header, head[0], head[1])
            seen_content, current = True, None
        elif mapping.is_section(stripped):
            section = current = _Open(stripped)
            top.append(section)
            seen_content = seen_keyword = True
        elif mapping.is_note_keyword(stripped):
            current = _Open(stripped)
            top.append(current)
            seen_content = seen_keyword = True
        elif not seen_content:
            header.template = stripped
            seen_content = True
        elif current is not None:
            current.lines.append(line)

    issues: list[Issue] = []
    patient = _patient(header.patient)
    author, signed_at = _signed(header.signed, issues)
    note = Note(
        note_id=header.note_id or derive_note_id(text),
        patient=patient,
        author=author,
        care_unit=_unit(header.unit),
        signed_at=signed_at,
        template=header.template,
        template_variant=header.variant,
        keywords=tuple(node.node() for node in top),
    )
    return note, issues


def _patient(value: str | None) -> NotePatient:
    """The ``Patient:`` line: a personnummer (validated later) and a name."""
    if value is None:
        return NotePatient(personnummer="")
    match = _PNR_IN_TEXT.search(value)
    if match is None:
        return NotePatient(personnummer=value)
    number = match[1]
    name = " ".join((value[: match.start()] + " " + value[match.end() :]).replace(",", " ").split())
    digits = number.replace("-", "").replace("+", "")
    day = int(digits[-6:-4])
    if day > 60:
        return NotePatient(samordningsnummer=number, name=name or None)
    return NotePatient(personnummer=number, name=name or None)


def _unit(value: str | None) -> NoteCareUnit | None:
    if not value:
        return None
    if match := _HSA_PARENS.match(value):
        return NoteCareUnit(name=match["name"] or None, hsa_id=match["hsa"])
    return NoteCareUnit(name=value)


def _signed(value: str | None, issues: list[Issue]) -> tuple[NoteAuthor | None, datetime | None]:
    """``Signerad: 2026-11-18 14:02 av Karin Ek, distriktssköterska (SE...)``."""
    if value is None:
        return None, None
    match = _signature(value)
    if match is None:
        issues.append(
            Issue(
                code="value",
                diagnostics=f"'Signerad: {value}' is not 'YYYY-MM-DD HH:MM av Namn, titel (HSA-id)'"
                "; the note's date is unknown",
                expression=("Signerad",),
                severity="warning",
            )
        )
        return None, None
    signed_at: datetime | None = None
    if not match["date"]:
        return _who(match["who"]), None
    try:
        naive = datetime.combine(
            parse_date(match["date"]),
            time(
                int(match["hh"]),
                int(match["mm"]),
                int(match["ss"] or 0),
                int((match["frac"] or "0").ljust(6, "0")),
            ),
        )
        if match["offset"]:
            offset = match["offset"].replace("Z", "+00:00")
            signed_at = datetime.fromisoformat(naive.isoformat() + offset).astimezone(SWEDISH_TIME)
        else:
            signed_at = local_datetime(naive)
    except (Unreadable, ValueError) as problem:
        issues.append(
            Issue(
                code="value",
                diagnostics=f"the signing time is not read: {problem}",
                expression=("Signerad",),
                severity="warning",
            )
        )
    return _who(match["who"]), signed_at


def _who(value: str | None) -> NoteAuthor | None:
    if not value:
        return None
    hsa_id = None
    if match := _HSA_PARENS.match(value):
        value, hsa_id = match["name"], match["hsa"]
    name, _, title = value.partition(",")
    return NoteAuthor(name=name.strip() or None, title=title.strip() or None, hsa_id=hsa_id)
