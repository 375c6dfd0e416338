"""Property: over generated notes, nothing is lost or changed between note, FHIR and note again.

Notes are generated in both shapes from random subsets of every variant's
keywords (synonyms, other casing, repeats, keywords of the other variant,
internal keywords, patient-authored lines, HSA-ids) with Swedish-ish text lines,
including blank lines inside a text and real values (dates, times anywhere in
a line, weeks, telephone hours, phone numbers). Keywords are written as people
type them (capitals, a trailing colon or dots, extra inner spaces, a leading
tab, the text on the keyword line) and texts hold lines that are keywords of
the journal template ("Läkemedel:", "Information:"): in a printout, only where
an agreement keyword follows, which is where the template's structure says
they are text (docs/mapping.md, "Limits of the printed shape").
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
from samplan.agreement.model import Agreement
from samplan.agreement.values import SWEDISH_TIME
from samplan.fhir.profiles import ProfileRegistry
from samplan.mapping.export import EXPORT_MEDIA_TYPES, export_note, export_tree
from samplan.mapping.importer import parse_note
from samplan.mapping.note import KeywordNode, normalise_text
from samplan.mapping.spec import KeywordEntry, default_mappings, fold

MAPPINGS = default_mappings()
PROFILES = ProfileRegistry.load(Path(__file__).resolve().parents[2] / "fhir_profiles")
MARKER = MAPPINGS.default.patient_authored_marker
RESERVED = (
    set(MAPPINGS.any_keyword)
    | set(MAPPINGS.any_internal)
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
    "Återbesök 2027-01-20 kl. 08.15, KBT-samtal",
    "tisdag 15 juni 2027 kl. 9.30",
    "Kontroll 2027-03-15 kl 14.30 på vårdcentralen",
    "v. 12",
    "om 3 månader",
    "15/3",
    "Telefon 0480-123 40 vardagar 08.00–16.30, telefontid 08.00-09.00",
    "Direkt 0480-123 99 (endast för hemsjukvården)",
)
SUBHEADINGS = ("Läkemedel:", "Information:", "Aktuellt", "BEDÖMNING", "Status:")
"""Keywords of the journal template that staff also write as lines inside a text."""
INTERNAL = ("Intern anteckning", "Intern anteckning (visas ej för patienten)", "INTERNT")


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
texts_with_subheadings = st.tuples(
    texts, st.lists(st.tuples(st.sampled_from(SUBHEADINGS), lines), max_size=2)
).map(lambda parts: "\n".join((parts[0], *(f"{h}\n{line}" for h, line in parts[1]))))


@dataclass(frozen=True)
class GeneratedKeyword:
    keyword: str
    """As it is kept: written as typed, without a leading tab or the inline text."""
    text: str
    patient_authored: bool
    hsa_id: str | None
    line: str = ""
    """The keyword line as typed in a printout (also holding the text's first line when
    ``inline``)."""
    inline: bool = False


ALL_ENTRIES = [entry for mapping in MAPPINGS for entry, _ in mapping.entries()]


def typed(draw: st.DrawFn, name: str) -> str:
    """A keyword as people type it: capitals, a colon or dots, inner spaces, indentation."""
    written = draw(st.sampled_from([name, name, name.upper(), name.lower()]))
    if " " in written and draw(st.booleans()):
        written = written.replace(" ", "  ", 1)
    return written + draw(st.sampled_from(["", "", ":", "...", "."]))


@st.composite
def keywords(
    draw: st.DrawFn, entries: list[KeywordEntry], subheadings: bool
) -> GeneratedKeyword:
    """Mostly the variant's own keywords; now and then one only another variant has, or (not
    last) an internal one."""
    if subheadings and draw(st.integers(0, 9)) == 0:
        name = draw(st.sampled_from(INTERNAL))
        return GeneratedKeyword(name, draw(texts), False, None, name)
    entry = draw(st.sampled_from(entries) | st.sampled_from(entries) | st.sampled_from(ALL_ENTRIES))
    name = draw(st.sampled_from(entry.names))
    written = typed(draw, name)
    hsa_id = draw(st.sampled_from([None, None, "SE2321000073-1001", "SE2321000073-1009"]))
    text = draw(texts_with_subheadings if subheadings and draw(st.integers(0, 2)) == 0 else texts)
    first, *rest = text.split("\n")
    own = entry in entries
    if own and first == first.strip() and written == written.rstrip(".:") and draw(st.booleans()):
        # "Fortsatt planering: Ny HbA1c i januari": the keyword and its first line on one line.
        return GeneratedKeyword(written, text, draw(st.booleans()), hsa_id,
                                f"{written}: {first}", inline=True)
    indent = draw(st.sampled_from(["", "", "\t", "  "]))
    return GeneratedKeyword(written, text, draw(st.booleans()), hsa_id, indent + written)


@st.composite
def notes(draw: st.DrawFn) -> tuple[bytes, str, list[GeneratedKeyword]]:
    mapping = draw(st.sampled_from(MAPPINGS.mappings))
    own = [e for e, _ in mapping.entries()]
    chosen = draw(st.lists(keywords(own, subheadings=True), min_size=1, max_size=7))
    # The last keyword of a printout is one of the agreement (internal ones may stand outside
    # it too) and holds no template keyword: after it nothing says the agreement goes on, so
    # such a line would end the section (as the template says).
    chosen.append(draw(keywords(own, subheadings=False)))
    section = draw(
        st.sampled_from(["Överenskommelse", "OVERENSKOMMELSE", "Dokumenterad överenskommelse",
                         "Överenskommelse:"])
    )
    section_text = draw(st.one_of(st.none(), st.none(), texts, texts_with_subheadings))
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
                    "children": [_json_keyword(k) for k in chosen],
                }
                | ({"text": section_text} if section_text else {}),
            ],
        }
        if draw(st.booleans()):
            note["noteId"] = "cosmic-note-4711"
        if hint:
            note["templateVariant"] = mapping.id
        return json.dumps(note, ensure_ascii=False).encode(), "application/json", chosen
    chosen = [
        GeneratedKeyword(k.keyword, k.text, k.patient_authored, None, k.line, k.inline)
        for k in chosen
    ]
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
        marker = f" {MARKER}" if k.patient_authored else ""
        if k.inline:
            head, _, first = k.line.partition(": ")
            printed.append(f"{head}{marker}: {first}")
            printed.extend(k.text.split("\n")[1:])
        else:
            printed.append(k.line + marker)
            printed.append(k.text)
    printed += ["Bedömning", "Utanför överenskommelsen den här gången också."]
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    trailing = draw(st.sampled_from(["", " ", "\t"]))
    return newline.join(line + trailing for line in printed).encode(), "text/plain", chosen


def _json_keyword(k: GeneratedKeyword) -> dict[str, Any]:
    if k.inline:
        first, _, rest = k.text.partition("\n")
        node: dict[str, Any] = {"keyword": f"{k.keyword}: {first}"}
        if rest.strip():
            node["text"] = rest
    else:
        node = {"keyword": k.keyword, "text": k.text}
    if k.patient_authored:
        node["patientAuthored"] = True
    if k.hsa_id:
        node["hsaId"] = k.hsa_id
    return node


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


def ends_in_a_template_keyword(agreement: Agreement) -> bool:
    """Whether the printout's last keyword holds a line that is a keyword of the journal
    template: nothing after it says the agreement goes on, so a re-import ends the section
    there (the documented limit of the printed shape; JSON has none)."""
    (section,) = export_tree(agreement).keywords
    printed: list[KeywordNode] = []

    def walk(node: KeywordNode) -> None:
        printed.append(node)
        for child in node.children:
            walk(child)

    walk(section)
    mapping = MAPPINGS.get(agreement.variant)
    last = max(i for i, node in enumerate(printed) if not MAPPINGS.is_internal(node.keyword))
    return any(
        mapping.is_note_keyword(line.strip()) or mapping.is_note_keyword(line.partition(":")[0])
        for node in printed[last:]
        for line in (node.text or "").split("\n")
    )


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
        if fmt == "text" and ends_in_a_template_keyword(agreement):
            continue
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
