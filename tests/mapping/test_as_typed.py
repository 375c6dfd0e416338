"""Reading notes as staff type them (issue 13): where the section ends, headings, internal
keywords, keyword text on the keyword line, and declared charsets. Pure: no HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

from samplan.agreement.model import Part
from samplan.fhir.errors import BadRequest, UnsupportedMediaType
from samplan.mapping.importer import ParsedNote, parse_note
from samplan.mapping.note import decode_body, read_heading
from samplan.mapping.spec import default_mappings, fold

MAPPINGS = default_mappings()
KALMAR = MAPPINGS.by_id["kalmar-flat"]
HEADER = "Patient: 19450101-1235 Greta Holm\nSignerad: 2026-11-20 10:15 av Anna Berg\n\n"


def text(*lines: str, **kwargs: Any) -> ParsedNote:
    return parse_note((HEADER + "\n".join(lines) + "\n").encode(), "text/plain", **kwargs)


def items(parsed: ParsedNote) -> list[tuple[Part, str, str]]:
    return [(i.part, i.keyword, i.text) for i in parsed.agreement.items]


class TestWhereTheSectionEnds:
    def test_a_template_keyword_followed_by_agreement_keywords_is_text(self) -> None:
        parsed = text("Överenskommelse", "Patienten ansvarar för", "Väga mig.", "Läkemedel:",
                      "Furix 40 mg.", "Vården ansvarar för", "Följa upp.")
        assert items(parsed) == [
            (Part.PATIENT_RESPONSIBILITY, "Patienten ansvarar för",
             "Väga mig.\nLäkemedel:\nFurix 40 mg."),
            (Part.CARE_RESPONSIBILITY, "Vården ansvarar för", "Följa upp."),
        ]
        (warning,) = parsed.warnings
        assert warning.severity == "warning"
        assert warning.expression == ("Överenskommelse/Patienten ansvarar för",)
        assert warning.diagnostics == (
            "line 7 'Läkemedel:' looks like a keyword of the journal template, but it is "
            "followed by keywords of the agreement: it is read as text of 'Patienten ansvarar "
            "för', not as the end of the agreement section")

    def test_a_template_keyword_that_already_headed_the_note_is_text(self) -> None:
        parsed = text("Aktuellt", "Mår bra.", "Överenskommelse", "Mål", "Gå ut.", "AKTUELLT:",
                      "Promenad varje dag.")
        assert items(parsed) == [(Part.GOAL, "Mål", "Gå ut.\nAKTUELLT:\nPromenad varje dag.")]
        assert "heads an earlier part of the note" in parsed.warnings[0].diagnostics

    def test_with_nothing_of_the_agreement_after_it_the_section_ends(self) -> None:
        parsed = text("Överenskommelse", "Mål", "Gå ut.", "Information:", "Broschyr given.")
        assert items(parsed) == [(Part.GOAL, "Mål", "Gå ut.")]
        assert parsed.warnings == ()

    def test_a_signature_line_inside_the_section_is_text_when_the_agreement_goes_on(
        self
    ) -> None:
        parsed = text("Överenskommelse", "Mål", "Gå ut.", "Signerad: 2026-11-20 10:16 av X",
                      "Vården ansvarar för", "Följa upp.")
        assert items(parsed)[0] == (Part.CARE_RESPONSIBILITY, "Vården ansvarar för", "Följa upp.")
        assert items(parsed)[1] == (Part.GOAL, "Mål", "Gå ut.\nSignerad: 2026-11-20 10:16 av X")
        assert parsed.agreement.signed_at_local is not None
        assert parsed.agreement.signed_at_local.minute == 15  # the header's, not the line's

    def test_lines_after_a_closing_signature_are_warned_about(self) -> None:
        parsed = text("Överenskommelse", "Mål", "Gå ut.", "Signerad: 2026-11-20 10:16",
                      "Vidimerad.")
        (warning,) = parsed.warnings
        assert warning.diagnostics == (
            "line 8 'Vidimerad.' is under no keyword (after a signature): it is not part of "
            "the agreement")
        assert warning.expression == ("note",)

    def test_the_section_text_keeps_a_template_keyword_line(self) -> None:
        parsed = text("Överenskommelse", "Information:", "Muntligt och skriftligt.", "Mål", "X")
        assert parsed.agreement.section_text == "Information:\nMuntligt och skriftligt."
        assert parsed.warnings[0].expression == ("Överenskommelse",)


class TestHeadingsAsTyped:
    @pytest.mark.parametrize("written", [
        "Patienten ansvarar för", "PATIENTEN ANSVARAR FÖR", "patienten ansvarar för:",
        "Patienten  ansvarar   för", "\tPatienten ansvarar för", "   Patienten ansvarar för.",
        "Patienten ansvarar för...", "Patienten ansvarar för…", "Patienten\u00a0ansvarar för",
        "Patienten ansvarar\u200b för",
    ])
    def test_a_heading_is_found_however_it_is_typed(self, written: str) -> None:
        parsed = text("Överenskommelse", written, "Väga mig.")
        assert items(parsed) == [(Part.PATIENT_RESPONSIBILITY, written.strip(), "Väga mig.")]

    def test_the_keyword_and_its_text_on_one_line(self) -> None:
        parsed = text("Överenskommelse: Gjord med dottern.", "Fortsatt planering: Ny HbA1c",
                      "i januari.", "Mål (patientens tillägg): Gå ut.",
                      "Fast vårdkontakt (SE2321000073-1002): Karin Ek")
        assert parsed.agreement.section_text == "Gjord med dottern."
        assert [(i.part, i.keyword, i.text, i.patient_authored, i.hsa_id)
                for i in parsed.agreement.items] == [
            (Part.CARE_CONTACT, "Fast vårdkontakt", "Karin Ek", False, "SE2321000073-1002"),
            (Part.NEXT_STEP, "Fortsatt planering", "Ny HbA1c\ni januari.", False, None),
            (Part.GOAL, "Mål", "Gå ut.", True, None),
        ]

    def test_a_line_with_a_colon_that_is_no_keyword_is_text(self) -> None:
        parsed = text("Överenskommelse", "Mål", "Obs: ring innan.", "Kl. 09:30 varje dag.")
        assert items(parsed) == [(Part.GOAL, "Mål", "Obs: ring innan.\nKl. 09:30 varje dag.")]

    def test_read_heading(self) -> None:
        heading = read_heading("Fortsatt planering: Ny HbA1c", KALMAR, MAPPINGS)
        assert heading is not None
        assert (heading.kind, heading.keyword, heading.inline) == (
            "entry", "Fortsatt planering", "Ny HbA1c")
        assert read_heading("Bedömning:", KALMAR, MAPPINGS) is not None
        assert read_heading("Fast omsorgskontakt", KALMAR, MAPPINGS).kind == "other"  # type: ignore[union-attr]
        assert read_heading("Vårdplan: x", KALMAR, MAPPINGS) is None

    @pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
    @pytest.mark.parametrize("trailing", ["", "  ", "\t"])
    def test_the_variant_and_note_do_not_depend_on_line_endings_or_trailing_space(
        self, newline: str, trailing: str
    ) -> None:
        lines = [*HEADER.split("\n")[:2], "", "Överenskommelse", "Vid försämring kan patienten",
                 "Ring.", "Tid för uppföljning", "2027-01-12 09:30"]
        body = newline.join(line + trailing for line in lines).encode()
        parsed = parse_note(body, "text/plain")
        reference = text(*lines[3:])
        assert parsed.mapping.id == "kalmar-flat"
        assert parsed.agreement == reference.agreement
        plain = parse_note("\n".join(lines).encode(), "text/plain")
        assert parsed.note.note_id == plain.note.note_id

    def test_json_keywords_as_typed(self) -> None:
        body = json.dumps({"patient": {"personnummer": "19450101-1235"}, "keywords": [
            {"keyword": "  ÖVERENSKOMMELSE:", "children": [
                {"keyword": "vid  försämring...", "text": "Ring."},
                {"keyword": "Tid för uppföljning: 2027-01-12 09:30", "text": "HC Lindsdal"},
                {"keyword": "Fast läkarkontakt: Per Ström"},
            ]}]}).encode()
        parsed = parse_note(body, "application/json")
        assert parsed.mapping.id == "kalmar-flat"
        assert items(parsed) == [
            (Part.ON_DETERIORATION, "vid  försämring...", "Ring."),
            (Part.GP_CONTACT, "Fast läkarkontakt", "Per Ström"),
            (Part.FOLLOW_UP_TIME, "Tid för uppföljning", "2027-01-12 09:30\nHC Lindsdal"),
        ]


class TestInternalKeywords:
    @pytest.mark.parametrize("written", [
        "Intern anteckning", "INTERN ANTECKNING:", "Intern anteckning (visas ej för patienten)",
        "Intern anteckning (ej till patient):", "Internt", "Anteckning för vårdpersonal",
    ])
    def test_read_as_internal_in_a_printout(self, written: str) -> None:
        parsed = text("Överenskommelse", "Fast vårdkontakt", "Karin Ek", written,
                      "Hotfull anhörig.", "Mål", "Gå ut.")
        assert items(parsed) == [
            (Part.CARE_CONTACT, "Fast vårdkontakt", "Karin Ek"),
            (Part.GOAL, "Mål", "Gå ut."),
            (Part.INTERNAL, written.strip(), "Hotfull anhörig."),
        ]
        assert parsed.warnings == ()

    def test_read_as_internal_in_json_wherever_it_is_nested(self) -> None:
        body = json.dumps({"patient": {"personnummer": "19450101-1235"}, "keywords": [
            {"keyword": "Överenskommelse", "children": [
                {"keyword": "Vården ansvarar för", "text": "Följa upp.", "children": [
                    {"keyword": "Fast vårdkontakt", "text": "Karin Ek", "children": [
                        {"keyword": "Intern anteckning (visas ej för patienten)",
                         "text": "Hotfull anhörig.", "patientAuthored": True}]}]},
                {"keyword": "Internt: ring dottern först"},
            ]}]}).encode()
        parsed = parse_note(body, "application/json")
        internal = parsed.agreement.of(Part.INTERNAL)
        assert [(i.keyword, i.text, i.patient_authored) for i in internal] == [
            ("Intern anteckning (visas ej för patienten)", "Hotfull anhörig.", False),
            ("Internt", "ring dottern först", False),
        ]
        assert parsed.warnings == ()

    def test_every_variant_lists_internal_keywords(self) -> None:
        for mapping in MAPPINGS:
            assert mapping.is_internal("Intern anteckning (visas ej för patienten)")
            assert not mapping.is_internal("Anteckning")
        assert fold("Intern anteckning") in MAPPINGS.any_internal


class TestDeclaredCharsets:
    NOTE = "Överenskommelse\nMål\nGå ut – varje dag … och må bra.\n"

    @pytest.mark.parametrize("charset", ["windows-1252", "cp1252", "WINDOWS-1252"])
    def test_windows_1252(self, charset: str) -> None:
        assert decode_body(self.NOTE.encode("cp1252"), f"text/plain; charset={charset}") == (
            "text", self.NOTE)

    @pytest.mark.parametrize("charset", ["iso-8859-1", "ISO-8859-1", "latin1", '"iso-8859-1"'])
    def test_latin_1_reads_the_c1_range_as_windows_1252(self, charset: str) -> None:
        latin = "Överenskommelse\nMål\nGå ut.\n"
        assert decode_body(latin.encode("latin-1"), f"text/plain; charset={charset}") == (
            "text", latin)
        assert decode_body(self.NOTE.encode("cp1252"), f"text/plain; charset={charset}") == (
            "text", self.NOTE)

    def test_us_ascii(self) -> None:
        assert decode_body(b"Mal\n", "text/plain; charset=us-ascii") == ("text", "Mal\n")
        with pytest.raises(BadRequest) as raised:
            decode_body("Mål".encode(), "text/plain; charset=us-ascii")
        assert raised.value.diagnostics == (
            "the note is not us-ascii: byte 0xc3 at offset 1 cannot be decoded")
        assert raised.value.expression == ("Content-Type",)

    def test_json_may_declare_a_charset_too(self) -> None:
        body = json.dumps({"a": "Å"}, ensure_ascii=False).encode("cp1252")
        assert decode_body(body, "application/json; charset=windows-1252") == (
            "json", '{"a": "Å"}')

    def test_an_unknown_charset_is_unsupported(self) -> None:
        with pytest.raises(UnsupportedMediaType) as raised:
            decode_body(b"x", "text/plain; charset=utf-16")
        assert raised.value.diagnostics == (
            "a keyword note is UTF-8, windows-1252, iso-8859-1 or us-ascii, not 'utf-16'")

    def test_a_c1_control_character_is_refused_in_any_charset(self) -> None:
        with pytest.raises(BadRequest, match="U\\+0085"):
            parse_note((HEADER + "Överenskommelse\nMål\nA\u0085B\n").encode(), "text/plain")
