"""Property: over generated notes, nothing is lost or changed between note, FHIR and note again.

Notes are generated in both shapes from random subsets of every variant's
keywords (synonyms, other casing, repeats, keywords of the other variant,
patient-authored lines, HSA-ids) with Swedish-ish text lines, including blank
lines inside a text and real values (dates, times, phone numbers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from samplan.agreement.fhir_build import build_transaction
from samplan.agreement.fhir_read import read_agreement
from samplan.agreement.values import SWEDISH_TIME
from samplan.fhir.profiles import ProfileRegistry
from samplan.mapping.export import EXPORT_MEDIA_TYPES, export_note
from samplan.mapping.importer import parse_note
from samplan.mapping.note import KeywordNode, normalise_text
from samplan.mapping.spec import KeywordEntry, default_mappings, fold

MAPPINGS = default_mappings()
PROFILES = ProfileRegistry.load(Path(__file__).resolve().parents[2] / "fhir_profiles")
MARKER = MAPPINGS.default.patient_authored_marker
RESERVED = (
    set(MAPPINGS.any_keyword)
    | {fold(name) for m in MAPPINGS for name in (*m.section.names, *m.note_keywords)}
    | {fold(MARKER)}
)
PNRS = ("19450101-1235", "19380315-2341", "194501611232", "191212121212")
ALPHABET = "abcdefghijklmnopqrstuvwxyzåäöéABCDEFGHIJKLMNOPRSTUVWXYZÅÄÖ0123456789 ,.-;!?()/%&'\"+"
REAL_LINES = (
    "2027-01-12 09:30, Hälsocentralen Lindsdal",
    "2027-06-15 kl. 14.00 på vårdcentralen",
    "2026-11-20 -- 2027-05-20",
    "tillsvidare",
    "6 månader",
    "Telefon 0480-840 00, 1177 e-tjänster",
    "Karin Ek (SE2321000073-1002), distriktssköterska",
    "SIP upprättad 2026-10-01 tillsammans med Kalmar kommun.",
    "Om tre veckor",
)


def is_plain_line(line: str) -> bool:
    """A text line that a printed note cannot mistake for a keyword or a signature."""
    folded = fold(line)
    return bool(folded) and folded not in RESERVED and not folded.startswith("signera")


lines = st.one_of(
    st.text(alphabet=ALPHABET, min_size=1, max_size=40).map(str.rstrip).filter(is_plain_line),
    st.sampled_from(REAL_LINES),
)
texts = st.tuples(lines, st.lists(st.one_of(lines, lines, st.just("")), max_size=3)).map(
    lambda parts: normalise_text("\n".join((parts[0], *parts[1])))
)


@dataclass(frozen=True)
class GeneratedKeyword:
    keyword: str
    text: str
    patient_authored: bool
    hsa_id: str | None


ALL_ENTRIES = [entry for mapping in MAPPINGS for entry, _ in mapping.entries()]


@st.composite
def keywords(draw: st.DrawFn, entries: list[KeywordEntry]) -> GeneratedKeyword:
    """Mostly the variant's own keywords; now and then one only another variant has."""
    entry = draw(st.sampled_from(entries) | st.sampled_from(entries) | st.sampled_from(ALL_ENTRIES))
    name = draw(st.sampled_from(entry.names))
    written = draw(st.sampled_from([name, name.upper(), name.lower()]))
    hsa_id = draw(st.sampled_from([None, None, "SE2321000073-1001", "SE2321000073-1009"]))
    return GeneratedKeyword(written, draw(texts), draw(st.booleans()), hsa_id)


@st.composite
def notes(draw: st.DrawFn) -> tuple[bytes, str, list[GeneratedKeyword]]:
    mapping = draw(st.sampled_from(MAPPINGS.mappings))
    chosen = draw(st.lists(keywords([e for e, _ in mapping.entries()]), min_size=1, max_size=8))
    section = draw(
        st.sampled_from(["Överenskommelse", "OVERENSKOMMELSE", "Dokumenterad överenskommelse"])
    )
    section_text = draw(st.one_of(st.none(), texts))
    pnr = draw(st.sampled_from(PNRS))
    name = draw(st.sampled_from([None, "Greta Holm", "Sven Åke Lund"]))
    hint = draw(st.booleans())  # name the variant, as SamPlan's own exports do
    signed = draw(
        st.datetimes(datetime(2020, 1, 1), datetime(2030, 12, 31), timezones=st.just(UTC))
    ).astimezone(SWEDISH_TIME)
    if draw(st.booleans()):
        note: dict[str, Any] = {
            "patient": {"personnummer": pnr} | ({"name": name} if name else {}),
            "author": {
                "name": "Anna Berg",
                "title": "Distriktsläkare",
                "hsaId": "SE2321000073-1001",
            },
            "signedAt": signed.isoformat(),
            "keywords": [
                {"keyword": "Aktuellt", "text": "Utanför överenskommelsen."},
                {
                    "keyword": section,
                    "children": [
                        {"keyword": k.keyword, "text": k.text}
                        | ({"patientAuthored": True} if k.patient_authored else {})
                        | ({"hsaId": k.hsa_id} if k.hsa_id else {})
                        for k in chosen
                    ],
                }
                | ({"text": section_text} if section_text else {}),
            ],
        }
        if draw(st.booleans()):
            note["noteId"] = "cosmic-note-4711"
        if hint:
            note["templateVariant"] = mapping.id
        return json.dumps(note, ensure_ascii=False).encode(), "application/json", chosen
    chosen = [GeneratedKeyword(k.keyword, k.text, k.patient_authored, None) for k in chosen]
    printed = [
        "Besöksanteckning",
        *([f"Sökordsmall: {mapping.id}"] if hint else []),
        f"Patient: {pnr}" + (f" {name}" if name else ""),
        f"Signerad: {signed.isoformat(sep=' ')} av Karin Ek, distriktssköterska",
        "",
        "Aktuellt",
        "Utanför överenskommelsen.",
        section,
        *([section_text] if section_text else []),
    ]
    for k in chosen:
        printed.append(k.keyword + (f" {MARKER}" if k.patient_authored else ""))
        printed.append(k.text)
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return newline.join(printed).encode(), "text/plain", chosen


def validate_bundle(bundle: dict[str, Any]) -> None:
    """Valid R4 (fhir.resources) and conformant to the profile each resource claims."""
    get_fhir_model_class("Bundle").model_validate(bundle)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        issues = PROFILES.validate(resource)
        assert [i for i in issues if i.severity in ("error", "fatal")] == []


def lines_in(value: Any) -> set[str]:
    """Every line of every string anywhere in a JSON value."""
    if isinstance(value, str):
        return set(value.split("\n"))
    children = (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    )
    return set().union(set(), *(lines_in(child) for child in children))


def pairs(nodes: tuple[KeywordNode, ...]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for node in nodes:
        for line in (node.text or "").split("\n"):
            found.add((node.keyword, line))
        found |= pairs(node.children)
    return found


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(notes())
def test_notes_survive_fhir_and_export_unchanged(
    note: tuple[bytes, str, list[GeneratedKeyword]],
) -> None:
    body, content_type, chosen = note
    parsed = parse_note(body, content_type)
    agreement = parsed.agreement

    # Valid FHIR, and every line of every keyword kept verbatim somewhere in the resources.
    bundle = build_transaction(agreement)
    validate_bundle(bundle)
    kept = lines_in(bundle)
    for keyword in chosen:
        assert keyword.keyword.strip() in kept
        assert set(keyword.text.split("\n")) <= kept

    # FHIR back to the agreement changes nothing.
    assert read_agreement(bundle) == agreement

    for fmt in ("text", "json"):
        exported = export_note(agreement, fmt)
        again = parse_note(exported, EXPORT_MEDIA_TYPES[fmt])
        # Importing an export changes nothing ...
        assert again.agreement == agreement
        assert build_transaction(again.agreement) == bundle
        # ... and exporting an import reproduces every keyword and every line.
        (section,) = again.note.keywords
        exported_pairs = pairs(section.children)
        for keyword in chosen:
            for line in keyword.text.split("\n"):
                assert (keyword.keyword.strip(), line) in exported_pairs
