"""Reading a note's two shapes (printed text and integration JSON) into a keyword tree."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from samplan.agreement.values import SWEDISH_TIME
from samplan.fhir.errors import BadRequest, Issue, UnsupportedMediaType
from samplan.mapping.note import (
    KeywordNode,
    Note,
    decode_body,
    derive_note_id,
    parse_json_note,
    parse_text_note,
)
from samplan.mapping.spec import default_mappings

KALMAR_TEXT = """\
Besöksanteckning sjuksköterska
Patient: 19380315-2341 Sven Lund
Vårdenhet: Hälsocentralen Lindsdal (SE2321000073-2002)
Signerad: 2026-11-18 14:02 av Karin Ek, distriktssköterska (SE2321000073-1002)

Aktuellt
Inskriven i hemsjukvården sedan oktober.

Överenskommelse
Patienten ansvarar för
Ta inhalationer morgon och kväll.
Vid försämring kan patienten.....
Ringa 0480-840 10.
Tid för uppföljning
2027-01-12 09:30, Hälsocentralen Lindsdal
"""


def text_note(text: str, variant: str = "kalmar-flat") -> tuple[Note, list[Issue]]:
    mappings = default_mappings()
    return parse_text_note(text, mappings.by_id[variant], mappings)


def tree(nodes: tuple[KeywordNode, ...]) -> list[Any]:
    return [
        (n.keyword, n.text, tree(n.children)) if n.children else (n.keyword, n.text) for n in nodes
    ]


class TestText:
    def test_header_lines_and_keywords(self) -> None:
        note, issues = text_note(KALMAR_TEXT)
        assert issues == []
        assert note.template == "Besöksanteckning sjuksköterska"
        assert note.patient.personnummer == "19380315-2341"
        assert note.patient.name == "Sven Lund"
        assert note.care_unit is not None
        assert (note.care_unit.name, note.care_unit.hsa_id) == (
            "Hälsocentralen Lindsdal",
            "SE2321000073-2002",
        )
        assert note.author is not None
        assert (note.author.name, note.author.title, note.author.hsa_id) == (
            "Karin Ek", "distriktssköterska", "SE2321000073-1002",
        )  # fmt: skip
        assert note.signed_at == datetime(2026, 11, 18, 14, 2, tzinfo=SWEDISH_TIME)
        assert note.signed_at.isoformat() == "2026-11-18T14:02:00+01:00"
        assert tree(note.keywords) == [
            ("Aktuellt", "Inskriven i hemsjukvården sedan oktober."),
            ("Överenskommelse", None, [
                ("Patienten ansvarar för", "Ta inhalationer morgon och kväll."),
                ("Vid försämring kan patienten.....", "Ringa 0480-840 10."),
                ("Tid för uppföljning", "2027-01-12 09:30, Hälsocentralen Lindsdal"),
            ]),
        ]  # fmt: skip

    @pytest.mark.parametrize("newline", ["\r\n", "\r", "\n"])
    def test_any_line_endings_read_the_same(self, newline: str) -> None:
        note, _ = text_note(KALMAR_TEXT.replace("\n", newline))
        expected, _ = text_note(KALMAR_TEXT)
        assert note == expected

    def test_the_derived_id_is_stable_and_follows_the_content(self) -> None:
        note, _ = text_note(KALMAR_TEXT)
        assert note.note_id == derive_note_id(KALMAR_TEXT)
        assert note.note_id == text_note(KALMAR_TEXT.replace("\n", "\r\n") + "\n\n")[0].note_id
        assert note.note_id != text_note(KALMAR_TEXT.replace("kväll", "natt"))[0].note_id
        assert note.note_id is not None
        assert note.note_id.startswith("note-sha256-")

    def test_an_id_header_is_the_note_id(self) -> None:
        note, _ = text_note("Anteckningsid: cosmic-note-7\n" + KALMAR_TEXT)
        assert note.note_id == "cosmic-note-7"

    def test_keywords_match_without_case_or_diacritics(self) -> None:
        note, _ = text_note(
            "Patient: 19380315-2341\nOVERENSKOMMELSE\n  patienten ANSVARAR för:\nGå.\n"
        )
        assert tree(note.keywords) == [
            ("OVERENSKOMMELSE", None, [("patienten ANSVARAR för:", "Gå.")])
        ]

    def test_text_runs_until_the_next_keyword_keeping_inner_blank_lines(self) -> None:
        note, _ = text_note(
            "Överenskommelse\nPatienten ansvarar för\n\nRad ett.   \n\n  Rad två.\n\n"
            "Fortsatt planering\nX\n"
        )
        (section,) = note.keywords
        assert section.children[0].text == "Rad ett.\n\n  Rad två."

    def test_nesting_of_a_flat_printout_comes_from_the_mapping(self) -> None:
        note, _ = text_note(
            "Överenskommelse\nVården ansvarar för\nA\nFast vårdkontakt\nB\nFortsatt planering\nC\n"
            "Sammanhållen planering\nD\nMål\nE\nFast omsorgskontakt\nF\n",
            variant="region-nested",
        )
        assert tree(note.keywords) == [
            ("Överenskommelse", None, [
                ("Vården ansvarar för", "A", [("Fast vårdkontakt", "B")]),
                ("Fortsatt planering", "C", [("Sammanhållen planering", "D", [("Mål", "E")])]),
                ("Fast omsorgskontakt", "F"),
            ]),
        ]  # fmt: skip

    def test_a_note_keyword_or_signature_ends_the_section(self) -> None:
        note, _ = text_note(
            "Överenskommelse\nFortsatt planering\nRöntgen.\nBedömning\nStabil.\n"
            "Signerad: 2026-11-18 14:02 av Karin Ek\n"
        )
        assert tree(note.keywords) == [
            ("Överenskommelse", None, [("Fortsatt planering", "Röntgen.")]),
            ("Bedömning", "Stabil."),
        ]
        assert note.author is not None
        assert note.author.name == "Karin Ek"

    def test_keywords_of_other_variants_are_keywords_too(self) -> None:
        note, _ = text_note("Överenskommelse\nFortsatt planering\nA\nFast omsorgskontakt\nB\n")
        assert tree(note.keywords) == [
            ("Överenskommelse", None, [("Fortsatt planering", "A"), ("Fast omsorgskontakt", "B")])
        ]

    def test_sub_keywords_outside_the_section_are_plain_text(self) -> None:
        note, _ = text_note("Aktuellt\nFortsatt planering\nsom vanligt\nÖverenskommelse\nMål\nX\n")
        assert tree(note.keywords) == [
            ("Aktuellt", "Fortsatt planering\nsom vanligt"),
            ("Överenskommelse", None, [("Mål", "X")]),
        ]

    def test_patient_marker_and_hsa_id_on_a_keyword_line(self) -> None:
        note, _ = text_note(
            "Överenskommelse\nFast vårdkontakt (SE2321000073-1009)\nKarin Ek\n"
            "Patienten ansvarar för (patientens tillägg)\nVattengympa.\n"
        )
        (section,) = note.keywords
        contact, added = section.children
        assert (contact.keyword, contact.hsa_id) == ("Fast vårdkontakt", "SE2321000073-1009")
        assert (added.keyword, added.patient_authored) == ("Patienten ansvarar för", True)

    def test_samordningsnummer_is_told_by_the_day(self) -> None:
        note, _ = text_note("Patient: 19450161-1232 Greta Holm\nÖverenskommelse\n")
        assert (note.patient.samordningsnummer, note.patient.personnummer) == (
            "19450161-1232",
            None,
        )

    def test_an_unreadable_signing_date_is_a_warning(self) -> None:
        note, issues = text_note("Signerad: igår av Karin Ek\nÖverenskommelse\n")
        assert note.signed_at is None
        assert issues == [
            Issue(
                code="value",
                diagnostics="'Signerad: igår av Karin Ek' is not 'YYYY-MM-DD HH:MM av Namn, "
                "titel (HSA-id)'; the note's date is unknown",
                expression=("Signerad",),
                severity="warning",
            )
        ]

    def test_a_signing_time_in_the_autumn_overlap_needs_an_offset(self) -> None:
        note, issues = text_note("Signerad: 2026-10-25 02:30\nÖverenskommelse\n")
        assert note.signed_at is None
        assert issues[0].expression == ("Signerad",)
        note, issues = text_note("Signerad: 2026-10-25 02:30+01:00\nÖverenskommelse\n")
        assert issues == []
        assert note.signed_at is not None
        assert note.signed_at.isoformat() == "2026-10-25T02:30:00+01:00"

    def test_control_characters_are_refused(self) -> None:
        with pytest.raises(BadRequest, match="U\\+0000"):
            text_note("Överenskommelse\nMål\nA\x00B\n")


class TestBytes:
    def test_utf8_with_or_without_bom(self) -> None:
        assert decode_body("Å".encode(), "text/plain") == ("text", "Å")
        assert decode_body("\ufeffÅ".encode(), "text/plain; charset=UTF-8") == ("text", "Å")
        assert decode_body(b"{}", "application/json") == ("json", "{}")

    def test_undecodable_bytes_are_a_bad_request(self) -> None:
        with pytest.raises(BadRequest) as raised:
            decode_body("Överenskommelse".encode("latin-1"), "text/plain")
        assert raised.value.status == 400
        assert raised.value.diagnostics == (
            "the note is not UTF-8: byte 0xd6 at offset 0 cannot be decoded"
        )

    @pytest.mark.parametrize(
        "content_type",
        ["application/xml", "application/fhir+json", "text/plain; charset=koi8-r", ""],
    )
    def test_other_media_types_are_unsupported(self, content_type: str) -> None:
        with pytest.raises(UnsupportedMediaType) as raised:
            decode_body(b"x", content_type)
        assert raised.value.status == 415


class TestJson:
    def test_the_json_shape(self) -> None:
        note = parse_json_note(
            json.dumps(
                {
                    "noteId": "n1",
                    "patient": {"personnummer": "19450101-1235", "name": "Greta Holm"},
                    "signedAt": "2026-11-20T10:15:00+01:00",
                    "keywords": [
                        {"keyword": " Överenskommelse ", "children": [
                            {"keyword": "Fast vårdkontakt", "text": "K", "hsaId": "SE2321000073-1"},
                        ]},
                    ],
                }
            )
        )  # fmt: skip
        assert note.note_id == "n1"
        assert note.keywords[0].keyword == "Överenskommelse"
        assert note.keywords[0].children[0].hsa_id == "SE2321000073-1"

    def test_without_id_the_id_is_derived_from_the_content(self) -> None:
        body = {"patient": {"personnummer": "19450101-1235"}, "keywords": []}
        first = parse_json_note(json.dumps(body))
        assert first.note_id == parse_json_note(json.dumps(body, indent=4)).note_id
        body["patient"] = {"personnummer": "19380315-2341"}
        assert first.note_id != parse_json_note(json.dumps(body)).note_id

    @pytest.mark.parametrize(
        ("body", "path", "message"),
        [
            ({"keywords": []}, "$.patient", "Field required"),
            ({"patient": {"personnummer": "1"}, "keywords": [{"keyword": "Ö", "childs": []}]},
             "$.keywords[0].childs", "Extra inputs are not permitted"),
            ({"patient": {"personnummer": "1"},
              "keywords": [{"keyword": "Ö", "children": [{"text": "x"}]}]},
             "$.keywords[0].children[0].keyword", "Field required"),
            ({"patient": {"personnummer": "1"}, "keywords": [{"keyword": "Ö", "text": 5}]},
             "$.keywords[0].text", "Input should be a valid string"),
            ({"patient": {"personnummer": "1"}, "signedAt": "2026-11-20T10:15:00", "keywords": []},
             "$.signedAt", "Input should have timezone info"),
            ({"patient": {"personnummer": "1"}, "keywords": [{"keyword": "A\nB"}]},
             "$.keywords[0].keyword", "a keyword is one line"),
            ({"patient": {"personnummer": "1"}, "keywords": [{"keyword": "Ö", "text": "a\u0007"}]},
             "$.keywords[0].text", "control character U+0007"),
            ({"patient": {}, "keywords": []}, "$.patient",
             "give exactly one of personnummer and samordningsnummer"),
            ([], "$", "Input should be a valid dictionary"),
        ],
    )  # fmt: skip
    def test_a_wrong_shape_is_a_bad_request_naming_the_json_path(
        self, body: Any, path: str, message: str
    ) -> None:
        with pytest.raises(BadRequest) as raised:
            parse_json_note(json.dumps(body))
        (issue,) = raised.value.issues
        assert issue.expression == (path,)
        assert issue.code == "structure"
        assert issue.diagnostics.startswith(f"{path}: ")
        assert message in issue.diagnostics

    def test_malformed_json_is_a_bad_request(self) -> None:
        with pytest.raises(BadRequest) as raised:
            parse_json_note('{"patient": ')
        assert raised.value.diagnostics == (
            "the note is not valid JSON: Expecting value (line 1, column 13)"
        )
