"""Keyword-template variants: the ``mappings/*.yaml`` files that say which keyword means what.

Regions name and nest the agreement's keywords differently and change the
wording over time, so the meaning of a keyword is data, not code. One YAML
file describes one template variant (schema: :class:`TemplateMapping`; see
docs/mapping.md): the section keyword, its sub-keywords in template order
(nested where the template nests them), the part of the agreement each one
is, and synonyms. Adding a region's variant is adding a file.

Keywords are matched *folded*: case, diacritics, runs of whitespace (also
tabs and no-break spaces), invisible format characters and trailing
dots/colons/ellipses do not matter, so "Vid försämring kan patienten....."
and "VID FORSAMRING KAN PATIENTEN" both match "Vid försämring kan patienten".
Synonyms cover real wording differences.

A variant also lists its *internal* keywords (``internal_keywords``:
"Intern anteckning" and the wordings staff use): what is written under them
is for professionals only. They match folded too, and with a parenthesis
after them ("Intern anteckning (visas ej för patienten)"), because that is
how staff mark such a heading in a free-text template.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from samplan.agreement.model import Part

__all__ = [
    "DEFAULT_MAPPINGS_DIR",
    "KeywordEntry",
    "MappingError",
    "MappingSet",
    "TemplateMapping",
    "default_mappings",
    "fold",
    "load_mappings",
    "without_parenthesis",
]

DEFAULT_MAPPINGS_DIR = Path(__file__).resolve().parents[3] / "mappings"
"""The repository's ``mappings/`` folder; ``SAMPLAN_MAPPINGS_DIR`` overrides it."""

_TRAILING = re.compile(r"[\s.:…]+$")
_PARENTHESIS = re.compile(r"\s*\([^()]*\)[\s.:…]*$")


@lru_cache(maxsize=16384)
def fold(keyword: str) -> str:
    """The form keywords are compared in: no case or diacritics, single spaces, no trailing dots."""
    decomposed = unicodedata.normalize("NFKD", keyword)
    bare = "".join(
        char
        for char in decomposed
        if not unicodedata.combining(char) and unicodedata.category(char) != "Cf"
    )
    return _TRAILING.sub("", " ".join(bare.casefold().split()))


def without_parenthesis(keyword: str) -> str:
    """``keyword`` without one trailing ``(...)``: "Intern anteckning (visas ej)" -> the keyword."""
    return _PARENTHESIS.sub("", keyword)


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the file and the fault."""


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KeywordEntry(_Spec):
    """One sub-keyword of the template."""

    keyword: str = Field(min_length=1)
    """The template's name for it (used when rendering the agreement back)."""
    part: Part
    synonyms: tuple[str, ...] = ()
    """Other wordings that mean the same keyword (older templates, other regions)."""
    children: tuple[KeywordEntry, ...] = ()
    """Sub-keywords the template nests under this one."""

    @property
    def names(self) -> tuple[str, ...]:
        return (self.keyword, *self.synonyms)

    def walk(
        self, parent: KeywordEntry | None = None
    ) -> Iterator[tuple[KeywordEntry, KeywordEntry | None]]:
        """This entry and its descendants, depth first, each with its parent."""
        yield self, parent
        for child in self.children:
            yield from child.walk(self)


class SectionEntry(_Spec):
    """The agreement section's own keyword."""

    keyword: str = Field(min_length=1)
    synonyms: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.keyword, *self.synonyms)


class TemplateMapping(_Spec):
    """One keyword-template variant, as read from ``mappings/<id>.yaml``."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    """The variant's name: the file's stem."""
    title: str
    description: str = ""
    priority: int = 0
    """Which variant wins when two match a note equally well (higher wins)."""
    section: SectionEntry
    keywords: tuple[KeywordEntry, ...] = Field(min_length=1)
    note_keywords: tuple[str, ...] = ()
    """Keywords of the surrounding journal templates ("Aktuellt", "Bedömning"):
    in a printed note they end the agreement section."""
    patient_authored_marker: str = "(patientens tillägg)"
    """Appended to a keyword line in a printed note for what the patient added."""
    internal_keywords: tuple[str, ...] = ()
    """Keywords whose text is for professionals only ("Intern anteckning"): stored with a
    ``NOPATIENT`` label, kept in ``$export-note``, never shown to the patient."""

    @model_validator(mode="after")
    def _unique_keywords(self) -> TemplateMapping:
        seen: dict[str, str] = {}
        for name in [*self.section.names, *(n for e, _ in self.entries() for n in e.names)]:
            folded = fold(name)
            if folded in seen:
                raise ValueError(f"keyword '{name}' is listed twice (as '{seen[folded]}')")
            seen[folded] = name
        for name in self.note_keywords:
            if fold(name) in seen:
                raise ValueError(f"note keyword '{name}' is also an agreement keyword")
        notes = {fold(name) for name in self.note_keywords}
        for name in self.internal_keywords:
            if fold(name) in seen or fold(name) in notes:
                raise ValueError(f"internal keyword '{name}' is also another keyword")
        return self

    def entries(self) -> Iterator[tuple[KeywordEntry, KeywordEntry | None]]:
        """Every sub-keyword entry in template order, each with its parent entry."""
        for entry in self.keywords:
            yield from entry.walk()

    _lookup: dict[str, KeywordEntry] = PrivateAttr(default_factory=dict)
    _section_names: frozenset[str] = PrivateAttr(default=frozenset())
    _note_names: frozenset[str] = PrivateAttr(default=frozenset())
    _internal_names: frozenset[str] = PrivateAttr(default=frozenset())

    def model_post_init(self, _context: Any, /) -> None:
        self._lookup = {fold(name): entry for entry, _ in self.entries() for name in entry.names}
        self._section_names = frozenset(fold(name) for name in self.section.names)
        self._note_names = frozenset(fold(name) for name in self.note_keywords)
        self._internal_names = frozenset(fold(name) for name in self.internal_keywords)

    def entry_for(self, keyword: str) -> KeywordEntry | None:
        """The entry a keyword (as written) stands for, or None if the template lacks it."""
        return self._lookup.get(fold(keyword))

    def is_section(self, keyword: str) -> bool:
        return fold(keyword) in self._section_names

    def is_note_keyword(self, keyword: str) -> bool:
        return fold(keyword) in self._note_names

    def is_internal(self, keyword: str) -> bool:
        """An internal (professional-only) keyword, also with a parenthesis after it."""
        return (
            fold(keyword) in self._internal_names
            or fold(without_parenthesis(keyword)) in self._internal_names
        )

    def parent_of(self, entry: KeywordEntry) -> KeywordEntry | None:
        for candidate, parent in self.entries():
            if candidate is entry:
                return parent
        return None

    def entry_for_part(self, part: Part) -> KeywordEntry | None:
        """The first entry of ``part`` in template order."""
        return next((entry for entry, _ in self.entries() if entry.part is part), None)


class MappingSet:
    """All loaded variants, with the questions the importer and exporter ask of them."""

    def __init__(self, mappings: list[TemplateMapping]) -> None:
        if not mappings:
            raise MappingError("no keyword-template mappings were found")
        self.mappings = sorted(mappings, key=lambda m: (-m.priority, m.id))
        self.by_id = {mapping.id: mapping for mapping in self.mappings}
        self.any_keyword = frozenset(
            fold(name) for m in self.mappings for entry, _ in m.entries() for name in entry.names
        )
        """Every sub-keyword any variant knows: in a printed note, such a line is a keyword."""
        self.any_internal = frozenset(
            fold(name) for m in self.mappings for name in m.internal_keywords
        )
        """Every internal keyword any variant lists: never shown to a patient, whichever reads."""

    def __iter__(self) -> Iterator[TemplateMapping]:
        return iter(self.mappings)

    @property
    def default(self) -> TemplateMapping:
        """The variant used to render an agreement that names none."""
        return self.mappings[0]

    def is_internal(self, keyword: str) -> bool:
        """Whether any variant lists ``keyword`` as internal (professional-only)."""
        return (
            fold(keyword) in self.any_internal
            or fold(without_parenthesis(keyword)) in self.any_internal
        )

    def get(self, variant: str | None) -> TemplateMapping:
        """The named variant, or the default when ``variant`` is None or unknown."""
        if variant is None:
            return self.default
        return self.by_id.get(variant, self.default)


def load_mappings(directory: Path | None = None) -> MappingSet:
    """Read and validate every ``*.yaml`` in ``directory`` (``yaml.safe_load`` + pydantic).

    Raises :class:`MappingError` naming the file and the fault; a broken
    mapping file is a deployment error, never something to skip quietly.
    """
    folder = directory or Path(os.environ.get("SAMPLAN_MAPPINGS_DIR") or DEFAULT_MAPPINGS_DIR)
    mappings = [_load_file(path) for path in sorted(folder.glob("*.yaml"))]
    return MappingSet(mappings)


def _load_file(path: Path) -> TemplateMapping:
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise MappingError(f"{path.name}: cannot be read: {error}") from error
    if not isinstance(data, dict):
        raise MappingError(f"{path.name}: must be a mapping of keys to values")
    data.setdefault("id", path.stem)
    if data["id"] != path.stem:
        raise MappingError(f"{path.name}: id '{data['id']}' must be the file's name")
    try:
        return TemplateMapping.model_validate(data)
    except ValidationError as error:
        faults = "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or '(top)'}: {e['msg']}"
            for e in error.errors()
        )
        raise MappingError(f"{path.name}: {faults}") from error


@lru_cache(maxsize=1)
def default_mappings() -> MappingSet:
    """The mappings in the default folder, loaded once per process."""
    return load_mappings()
