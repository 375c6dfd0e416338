"""Rendering the agreement back as a keyword note, and the round trips."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from samplan.agreement.fhir_build import build_transaction
from samplan.agreement.fhir_read import read_agreement
from samplan.agreement.model import Agreement, AgreementItem, Part
from samplan.fhir.errors import UnsupportedMediaType
from samplan.mapping.export import EXPORT_MEDIA_TYPES, ExportFormat, export_note
from samplan.mapping.importer import parse_note
from samplan.mapping.note import KeywordNode, normalise_text, parse_json_note

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "notes"
SHAPES = [("region-nested.json", "application/json"), ("kalmar-flat.txt", "text/plain")]


def imported(name: str, content_type: str) -> Agreement:
    return parse_note((EXAMPLES / name).read_bytes(), content_type).agreement


def section_pairs(nodes: tuple[KeywordNode, ...]) -> Iterator[tuple[str, str]]:
    """(keyword, line) for every line under every keyword of the agreement section."""
    for node in nodes:
        yield node.keyword, ""
        for line in normalise_text(node.text).split("\n"):
            if line:
                yield node.keyword, line
        yield from section_pairs(node.children)


def example_pairs(name: str) -> set[tuple[str, str]]:
    if name.endswith(".json"):
        note = parse_json_note((EXAMPLES / name).read_text(encoding="utf-8"))
        (section,) = [n for n in note.keywords if n.keyword == "Överenskommelse"]
        return set(section_pairs(section.children))
    pairs, keyword = set(), None
    lines = (EXAMPLES / name).read_text(encoding="utf-8").split("\n")
    start = lines.index("Överenskommelse") + 1
    for line in lines[start:]:
        if not line:
            continue
        if keyword is None or line in KALMAR_KEYWORDS:
            keyword = line
            pairs.add((keyword, ""))
        else:
            pairs.add((keyword, line))
    return pairs


KALMAR_KEYWORDS = {
    "Patienten ansvarar för", "Vid försämring kan patienten", "Vården ansvarar för",
    "Fast läkarkontakt i primärvården", "Fast vårdkontakt", "Patienten kan kontakta vården via",
    "Fortsatt planering", "Tid för uppföljning",
}  # fmt: skip


def exported_pairs(agreement: Agreement, fmt: str) -> set[tuple[str, str]]:
    content_type = "text/plain" if fmt == "text" else "application/json"
    note = parse_note(export_note(agreement, fmt), content_type).note
    (section,) = note.keywords
    return set(section_pairs(section.children))


class TestSharedExamplesRoundTrip:
    @pytest.mark.parametrize(("name", "content_type"), SHAPES)
    @pytest.mark.parametrize("fmt", ["text", "json"])
    def test_importing_an_export_changes_nothing(
        self, name: str, content_type: str, fmt: ExportFormat
    ) -> None:
        agreement = imported(name, content_type)
        again = parse_note(export_note(agreement, fmt), EXPORT_MEDIA_TYPES[fmt]).agreement
        assert again == agreement
        assert build_transaction(again) == build_transaction(agreement)

    @pytest.mark.parametrize(("name", "content_type"), SHAPES)
    @pytest.mark.parametrize("fmt", ["text", "json"])
    def test_exporting_an_import_reproduces_every_keyword_and_line(
        self, name: str, content_type: str, fmt: str
    ) -> None:
        agreement = imported(name, content_type)
        assert example_pairs(name) <= exported_pairs(agreement, fmt)

    @pytest.mark.parametrize(("name", "content_type"), SHAPES)
    def test_through_fhir_and_back(self, name: str, content_type: str) -> None:
        agreement = imported(name, content_type)
        assert read_agreement(build_transaction(agreement)) == agreement

    def test_the_printed_kalmar_note_comes_back_as_printed(self) -> None:
        agreement = imported("kalmar-flat.txt", "text/plain")
        original = (EXAMPLES / "kalmar-flat.txt").read_text(encoding="utf-8")
        section = original[original.index("Överenskommelse") :]
        exported = export_note(agreement, "text").decode()
        assert exported.endswith(section.rstrip("\n") + "\n")
        assert exported.startswith(
            "Besöksanteckning sjuksköterska\n"
            f"Anteckningsid: {agreement.note_id}\n"
            "Sökordsmall: kalmar-flat\n"
            "Patient: 19380315-2341 Sven Lund\n"
            "Vårdenhet: Hälsocentralen Lindsdal (SE2321000073-2002)\n"
            "Signerad: 2026-11-18 14:02 av Karin Ek, distriktssköterska (SE2321000073-1002)\n\n"
        )

    def test_the_json_export_has_the_input_shape(self) -> None:
        agreement = imported("region-nested.json", "application/json")
        exported = json.loads(export_note(agreement, "application/json; charset=utf-8"))
        original = json.loads((EXAMPLES / "region-nested.json").read_text(encoding="utf-8"))
        (section,) = [k for k in original["keywords"] if k["keyword"] == "Överenskommelse"]
        assert exported["keywords"] == [section]
        for key in ("noteId", "patient", "author", "careUnit", "signedAt", "template"):
            assert exported[key] == original[key]
        assert exported["templateVariant"] == "region-nested"


def agreement_with(
    *items: AgreementItem, variant: str = "region-nested", **fields: Any
) -> Agreement:
    base = imported("region-nested.json", "application/json")
    return Agreement(**(dict(base) | {"items": items, "variant": variant} | fields))


class TestRendering:
    def test_keywords_come_in_template_order_and_nesting(self) -> None:
        agreement = agreement_with(
            AgreementItem(part=Part.GOAL, keyword="Mål", text="Gå."),
            AgreementItem(part=Part.CARE_CONTACT, keyword="Fast vårdkontakt", text="Karin"),
            AgreementItem(
                part=Part.PATIENT_RESPONSIBILITY, keyword="Patientens ansvar", text="Väga."
            ),
        )
        exported = json.loads(export_note(agreement, "json"))
        assert exported["keywords"] == [
            {"keyword": "Överenskommelse", "children": [
                {"keyword": "Patientens ansvar", "text": "Väga."},
                {"keyword": "Vården ansvarar för", "children": [
                    {"keyword": "Fast vårdkontakt", "text": "Karin"}]},
                {"keyword": "Fortsatt planering", "children": [
                    {"keyword": "Sammanhållen planering", "children": [
                        {"keyword": "Mål", "text": "Gå."}]}]},
            ]}
        ]  # fmt: skip
        text = export_note(agreement, "text").decode()
        assert text.split("\n\n", 1)[1] == (
            "Överenskommelse\nPatientens ansvar\nVäga.\nVården ansvarar för\nFast vårdkontakt\n"
            "Karin\nFortsatt planering\nSammanhållen planering\nMål\nGå.\n"
        )
        assert parse_note(text.encode(), "text/plain").agreement == agreement

    def test_canonical_keywords_use_the_template_names(self) -> None:
        agreement = agreement_with(
            AgreementItem(
                part=Part.PATIENT_RESPONSIBILITY, keyword="Patientens ansvar", text="Väga."
            )
        )
        text = export_note(agreement, "text", canonical_keywords=True).decode()
        assert "\nPatienten ansvarar för\nVäga.\n" in text

    def test_patient_authored_items_are_their_own_marked_keyword_lines(self) -> None:
        agreement = agreement_with(
            AgreementItem(part=Part.PATIENT_RESPONSIBILITY, keyword="Patienten ansvarar för",
                          text="Väga."),
            AgreementItem(part=Part.PATIENT_RESPONSIBILITY, keyword="Patienten ansvarar för",
                          text="Vattengympa.", patient_authored=True),
            AgreementItem(part=Part.GOAL, keyword="Mål", text="Dansa.", patient_authored=True),
        )  # fmt: skip
        text = export_note(agreement, "text").decode()
        assert (
            "Patienten ansvarar för\nVäga.\n"
            "Patienten ansvarar för (patientens tillägg)\nVattengympa.\n"
        ) in text
        assert "Sammanhållen planering\nMål (patientens tillägg)\nDansa.\n" in text
        assert parse_note(text.encode(), "text/plain").agreement == agreement
        exported = json.loads(export_note(agreement, "json"))
        assert exported["keywords"][0]["children"][1] == {
            "keyword": "Patienten ansvarar för",
            "text": "Vattengympa.",
            "patientAuthored": True,
        }
        assert parse_note(export_note(agreement, "json"), "application/json").agreement == agreement

    def test_keywords_the_template_lacks_follow_at_the_end_and_come_back_as_other(self) -> None:
        agreement = agreement_with(
            AgreementItem(part=Part.OTHER, keyword="Hjälpmedel", text="Rollator."),
            AgreementItem(part=Part.VALIDITY, keyword="Giltighet", text="tillsvidare"),
            AgreementItem(
                part=Part.PATIENT_RESPONSIBILITY, keyword="Patienten ansvarar för", text="X"
            ),
            variant="kalmar-flat",
        )
        text = export_note(agreement, "text").decode()
        assert text.endswith(
            "Överenskommelse\nPatienten ansvarar för\nX\nGiltighet\ntillsvidare\n"
            "Hjälpmedel\nRollator.\n"
        )
        # A part the variant has no keyword for (here from a CarePlan written without a
        # note) keeps its words; read back with this variant it is an "other keyword".
        again = parse_note(export_note(agreement, "json"), "application/json")
        assert [(i.part, i.keyword, i.text) for i in again.agreement.items] == [
            (Part.PATIENT_RESPONSIBILITY, "Patienten ansvarar för", "X"),
            (Part.OTHER, "Giltighet", "tillsvidare"),
            (Part.OTHER, "Hjälpmedel", "Rollator."),
        ]
        assert [w.code for w in again.warnings] == ["not-supported", "not-supported"]
        # In print, a keyword no variant knows cannot be told from text: its line stays,
        # as text of the keyword before it.
        printed = parse_note(export_note(agreement, "text"), "text/plain")
        assert [(i.part, i.keyword, i.text) for i in printed.agreement.items] == [
            (Part.PATIENT_RESPONSIBILITY, "Patienten ansvarar för", "X"),
            (Part.OTHER, "Giltighet", "tillsvidare\nHjälpmedel\nRollator."),
        ]

    def test_an_hsa_id_the_text_does_not_name_goes_on_the_keyword_line(self) -> None:
        agreement = agreement_with(
            AgreementItem(part=Part.GP_CONTACT, keyword="Fast läkarkontakt i primärvården",
                          text="Anna Berg", hsa_id="SE2321000073-1001"),
        )  # fmt: skip
        text = export_note(agreement, "text").decode()
        assert "\nFast läkarkontakt i primärvården (SE2321000073-1001)\nAnna Berg\n" in text
        assert parse_note(text.encode(), "text/plain").agreement == agreement

    def test_a_signing_time_in_the_autumn_overlap_carries_its_offset(self) -> None:
        from datetime import datetime, timedelta, timezone

        signed = datetime(2026, 10, 25, 2, 30, tzinfo=timezone(timedelta(hours=1)))
        agreement = agreement_with(
            AgreementItem(part=Part.GOAL, keyword="Mål", text="X"), signed_at=signed
        )
        text = export_note(agreement, "text").decode()
        assert "Signerad: 2026-10-25 02:30+01:00 av Anna Berg" in text
        assert parse_note(text.encode(), "text/plain").agreement == agreement

    def test_an_unknown_format_is_unsupported(self) -> None:
        with pytest.raises(UnsupportedMediaType):
            export_note(agreement_with(), "application/pdf")


def all_lines(bundle: Any) -> set[str]:
    if isinstance(bundle, str):
        return set(bundle.split("\n"))
    if isinstance(bundle, dict):
        return set().union(*(all_lines(v) for v in bundle.values())) if bundle else set()
    if isinstance(bundle, list):
        return set().union(*(all_lines(v) for v in bundle)) if bundle else set()
    return set()


@pytest.mark.parametrize(("name", "content_type"), SHAPES)
def test_every_line_of_the_section_is_kept_verbatim_in_the_resources(
    name: str, content_type: str
) -> None:
    bundle = build_transaction(imported(name, content_type))
    lines = all_lines(bundle)
    for keyword, line in example_pairs(name):
        assert keyword in lines
        assert not line or line in lines
