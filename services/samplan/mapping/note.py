"""A journal note as a keyword tree, read from either shape a journal hands us.

Two shapes carry the same note (examples in ``examples/notes/``):

* **JSON** from an integration engine (``application/json``): validated with
  pydantic; a wrong shape is a :class:`~samplan.fhir.errors.BadRequest` whose
  issues name the JSON path (``$.keywords[1].children[0].text``).
* **Printed text** (``text/plain``, any line endings; UTF-8 unless another
  charset is declared): header lines (``Patient:``, ``Vårdenhet:``,
  ``Signerad:``, optionally ``Anteckningsid:``), then keywords as lines of
  their own, typed as people type them (capitals, a colon or dots, extra
  spaces, indentation) or with their text after a colon on the same line.
  Which lines are keywords, and how the flat lines nest, comes from a
  :class:`~samplan.mapping.spec.TemplateMapping` (:func:`read_heading`); where
  the agreement section ends comes from the template's structure, not from
  one line (:func:`parse_text_note`). The text under a keyword runs until the
  next keyword.

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
from typing import Any, Final, Literal

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
    "NoteCareProvider",
    "NoteCareUnit",
    "NotePatient",
    "NoteShape",
    "decode_body",
    "Heading",
    "derive_note_id",
    "normalise_text",
    "parse_json_note",
    "parse_text_note",
    "read_heading",
    "split_marker",
]

NoteShape = Literal["json", "text"]

# C0 controls other than tab and newline, DEL and the C1 controls: a journal
# text never has them, PostgreSQL text cannot store NUL, and FHIR strings should not.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
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


class NoteCareProvider(_NoteModel):
    """The care provider (vårdgivare) the unit belongs to: a region, a municipality, a
    private provider. Named so that a unit first seen in a note is registered under it."""

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
    care_provider: NoteCareProvider | None = None
    signed_at: AwareDatetime | None = None
    template: str | None = None
    template_variant: str | None = None
    """Which ``mappings/`` variant wrote the note (set on export; a hint on import)."""
    keywords: tuple[KeywordNode, ...]


# -- bytes to text ------------------------------------------------------------------------


_UTF8: Final = frozenset({"utf-8", "utf8"})
_WINDOWS_1252: Final = frozenset({"windows-1252", "cp1252", "x-cp1252"})
_LATIN_1: Final = frozenset(
    {"iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "latin-1", "l1", "cp819", "ibm819"}
)
_ASCII: Final = frozenset({"us-ascii", "ascii", "iso646-us", "ansi_x3.4-1968"})
_C1_AS_WINDOWS_1252: Final = {
    byte: bytes([byte]).decode("cp1252")
    for byte in range(0x80, 0xA0)
    if byte not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)
}
"""Latin-1's C1 range holds no text; a journal that says ISO-8859-1 means Windows-1252 there
(the WHATWG Encoding Standard, and every browser, read the label the same way)."""


def decode_body(body: bytes, content_type: str) -> tuple[NoteShape, str]:
    """The note's shape (from the media type) and its text, decoded as declared.

    ``charset`` may be UTF-8 (the default), ``windows-1252``, ``iso-8859-1``
    (read as the WHATWG standard reads it: Windows-1252 in the C1 range) or
    ``us-ascii``: journals on Windows still send these. Raises
    :class:`UnsupportedMediaType` (415) for another media type or charset, and
    :class:`BadRequest` (400) for bytes that are not in the declared charset
    (undeclared: UTF-8), naming the first such byte.
    """
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    charset = "utf-8"
    declared = False
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"').strip("'").lower()
            declared = True
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
    if charset in _UTF8:
        codec, name = "utf-8-sig", "UTF-8"
    elif charset in _WINDOWS_1252:
        codec, name = "cp1252", "windows-1252"
    elif charset in _LATIN_1:
        codec, name = "latin-1", "iso-8859-1"
    elif charset in _ASCII:
        codec, name = "ascii", "us-ascii"
    else:
        raise UnsupportedMediaType(
            f"a keyword note is UTF-8, windows-1252, iso-8859-1 or us-ascii, not '{charset}'",
            ("Content-Type",),
        )
    try:
        text = body.decode(codec)
    except UnicodeDecodeError as error:
        raise BadRequest(
            f"the note is not {name}: byte 0x{body[error.start]:02x} at offset {error.start} "
            "cannot be decoded",
            ("Content-Type",) if declared else (),
        ) from None
    if codec == "latin-1":
        text = text.translate(_C1_AS_WINDOWS_1252)
    return shape, text


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
    "vardgivare": "provider",
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
    provider: str | None = None
    signed: str | None = None
    variant: str | None = None


HeadingKind = Literal["section", "entry", "other", "internal", "note"]


@dataclass(frozen=True, slots=True)
class Heading:
    """A line of a printed note read as a keyword, and what kind of keyword it is.

    ``entry``: a sub-keyword of the variant; ``other``: one only another variant
    has; ``internal``: a professional-only keyword; ``note``: a keyword of the
    surrounding journal template (Aktuellt, Bedömning); ``section``: the
    agreement's own keyword.
    """

    kind: HeadingKind
    keyword: str
    """As written, without the patient-authored marker, an HSA-id suffix or inline text."""
    entry: KeywordEntry | None = None
    patient_authored: bool = False
    hsa_id: str | None = None
    inline: str | None = None
    """Text written after the keyword on the same line: "Fortsatt planering: Ny HbA1c"."""


def read_heading(line: str, mapping: TemplateMapping, mappings: MappingSet) -> Heading | None:
    """``line`` (stripped) as a keyword of ``mapping``, or None when it is text.

    The keyword is compared folded (case, diacritics, inner spaces, a trailing
    colon or dots do not matter). A line that is not a keyword as a whole may
    still be one with its text after a colon: "Fortsatt planering: Ny HbA1c i
    januari" is the keyword "Fortsatt planering" with that text.
    """
    heading = _heading(line, mapping, mappings)
    if heading is not None:
        return heading
    head, colon, rest = line.partition(":")
    if colon and head.strip() and rest.strip():
        heading = _heading(head.strip(), mapping, mappings)
        if heading is not None:
            return Heading(
                heading.kind, heading.keyword, heading.entry, heading.patient_authored,
                heading.hsa_id, rest.strip(),
            )  # fmt: skip
    return None


def _heading(text: str, mapping: TemplateMapping, mappings: MappingSet) -> Heading | None:
    if mapping.is_section(text):
        return Heading("section", text)
    keyword, patient_authored = split_marker(text, mapping.patient_authored_marker)
    hsa_id = None
    if (suffixed := _HSA_PARENS.match(keyword)) and (
        mapping.entry_for(suffixed["name"]) or fold(suffixed["name"]) in mappings.any_keyword
    ):
        keyword, hsa_id = suffixed["name"], suffixed["hsa"]
    entry = mapping.entry_for(keyword)
    if entry is not None:
        return Heading("entry", keyword, entry, patient_authored, hsa_id)
    if fold(keyword) in mappings.any_keyword:
        return Heading("other", keyword, None, patient_authored, hsa_id)
    if mapping.is_internal(text) or mappings.is_internal(text):
        return Heading("internal", text)
    if mapping.is_note_keyword(text):
        return Heading("note", text)
    return None


_AGREEMENT_KINDS: Final = frozenset({"entry", "other"})
"""Keywords that exist only inside the agreement section: one later in the note proves
that the section has not ended yet."""


def parse_text_note(
    text: str, mapping: TemplateMapping, mappings: MappingSet
) -> tuple[Note, list[Issue]]:
    """The printed shape read with ``mapping``'s keywords; also the warnings about the reading.

    Where the agreement section ends is decided from the template's structure,
    not from one line: a keyword of the surrounding journal template (or a
    ``Signerad:`` line) ends it only when no sub-keyword of the agreement comes
    after it (those exist only inside the section) and when it has not already
    headed a part of the note before (a template has each keyword once).
    Otherwise the line is text of the keyword it is under, and a warning says
    so. Lines that end up under no keyword at all come back as warnings, so no
    line vanishes silently.

    Raises :class:`BadRequest` for control characters, and
    :class:`~samplan.fhir.errors.Unprocessable` is left to the importer (a
    note without a patient line still parses, with ``patient`` empty).
    """
    if match := _CONTROL.search(_NEWLINES.sub("\n", text)):
        raise BadRequest(f"the note contains the control character U+{ord(match[0]):04X}")
    lines = [line.rstrip() for line in _NEWLINES.split(text)]
    headings = [read_heading(line.strip(), mapping, mappings) if line else None for line in lines]
    # agreement_after[i]: an agreement sub-keyword follows line i before the next section line.
    agreement_after = [False] * len(lines)
    follows = False
    for index in range(len(lines) - 1, -1, -1):
        agreement_after[index] = follows
        found = headings[index]
        kind = found.kind if found is not None else None
        if kind == "section":
            follows = False
        elif kind in _AGREEMENT_KINDS:
            follows = True

    header = _Header()
    top: list[_Open] = []
    section: _Open | None = None
    stack: list[tuple[KeywordEntry | None, _Open]] = []  # open keywords inside the section
    current: _Open | None = None
    seen_content = seen_keyword = False
    note_keywords_seen: set[str] = set()
    issues: list[Issue] = []

    def open_node(heading: Heading) -> _Open:
        node = _Open(heading.keyword, heading.patient_authored, heading.hsa_id)
        if heading.inline:
            node.lines.append(heading.inline)
        return node

    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            if current is not None:
                current.lines.append(line)
            continue
        heading = headings[number - 1]
        if section is not None:
            if heading is not None and heading.kind == "section":
                section = current = open_node(heading)
                top.append(section)
                stack = []
                continue
            if heading is not None and heading.kind in ("entry", "other", "internal"):
                node = open_node(heading)
                entry = heading.entry
                parent = mapping.parent_of(entry) if entry is not None else None
                while stack and (parent is None or stack[-1][0] is not parent):
                    stack.pop()
                (stack[-1][1].children if stack else section.children).append(node)
                stack.append((entry, node))
                current = node
                continue
            signature = heading is None and _is_signature(stripped)
            if (heading is None or heading.kind != "note") and not signature:
                if current is not None:
                    current.lines.append(line)
                continue
            repeated = heading is not None and fold(heading.keyword) in note_keywords_seen
            if agreement_after[number - 1] or repeated:
                holder = current or section
                holder.lines.append(line)
                path = (section.keyword, *(open_.keyword for _, open_ in stack))
                why = (
                    "heads an earlier part of the note" if repeated
                    else "is followed by keywords of the agreement"
                )
                issues.append(_warning(
                    "informational",
                    f"line {number} '{stripped}' looks like a keyword of the journal template, "
                    f"but it {why}: it is read as text of '{holder.keyword}', not as the end "
                    "of the agreement section",
                    "/".join(path),
                ))  # fmt: skip
                continue
            section, stack = None, []  # the section ends; read the line as outside it
        head = _header(stripped)
        if head is not None and (not seen_keyword or _is_signature(stripped)):
            setattr(header, head[0], head[1])
            seen_content, current = True, None
        elif heading is not None and heading.kind == "section":
            section = current = open_node(heading)
            top.append(section)
            seen_content = seen_keyword = True
        elif heading is not None and heading.kind == "note":
            current = open_node(heading)
            top.append(current)
            note_keywords_seen.add(fold(heading.keyword))
            seen_content = seen_keyword = True
        elif not seen_content:
            header.template = stripped
            seen_content = True
        elif current is not None:
            current.lines.append(line)
        elif seen_keyword:
            issues.append(_warning(
                "informational",
                f"line {number} '{stripped}' is under no keyword (after a signature): it is "
                "not part of the agreement",
                "note",
            ))  # fmt: skip

    patient = _patient(header.patient)
    author, signed_at = _signed(header.signed, issues)
    note = Note(
        note_id=header.note_id or derive_note_id(text),
        patient=patient,
        author=author,
        care_unit=_unit(header.unit),
        care_provider=_provider(header.provider),
        signed_at=signed_at,
        template=header.template,
        template_variant=header.variant,
        keywords=tuple(node.node() for node in top),
    )
    return note, issues


def _warning(code: str, diagnostics: str, where: str) -> Issue:
    return Issue(code=code, diagnostics=diagnostics, expression=(where,), severity="warning")


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


def _provider(value: str | None) -> NoteCareProvider | None:
    """``Vårdgivare: Region Kalmar län (SE2321000073-0001)``."""
    unit = _unit(value)
    return NoteCareProvider(name=unit.name, hsa_id=unit.hsa_id) if unit is not None else None


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
