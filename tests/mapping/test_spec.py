"""The keyword-template variants in mappings/*.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from samplan.agreement.model import Part
from samplan.mapping.importer import parse_note
from samplan.mapping.spec import MappingError, default_mappings, fold, load_mappings

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"

MINIMAL_VARIANT = """\
title: Region Test, kort
priority: 50
section:
  keyword: Patientkontrakt
keywords:
  - keyword: Jag gör
    part: patient-responsibility
  - keyword: Vi gör
    part: care-responsibility
"""


class TestShippedVariants:
    def test_both_variants_load_and_the_nested_one_is_the_default(self) -> None:
        mappings = default_mappings()
        assert {m.id for m in mappings} >= {"region-nested", "kalmar-flat"}
        assert mappings.default.id == "region-nested"

    def test_the_region_variant_nests_contacts_under_care_responsibility(self) -> None:
        region = default_mappings().by_id["region-nested"]
        gp = region.entry_for("Fast läkarkontakt i primärvården")
        assert gp is not None
        assert gp.part is Part.GP_CONTACT
        parent = region.parent_of(gp)
        assert parent is not None
        assert parent.keyword == "Vården ansvarar för"
        assert [e.keyword for e in region.keywords] == [
            "Överenskommelsens giltighet",
            "Patienten ansvarar för",
            "Vården ansvarar för",
            "Fortsatt planering",
        ]

    def test_the_kalmar_variant_is_flat_in_template_order(self) -> None:
        kalmar = default_mappings().by_id["kalmar-flat"]
        assert all(not entry.children for entry in kalmar.keywords)
        assert [e.keyword for e in kalmar.keywords][:8] == [
            "Patienten ansvarar för",
            "Vid försämring kan patienten",
            "Vården ansvarar för",
            "Fast läkarkontakt i primärvården",
            "Fast vårdkontakt",
            "Patienten kan kontakta vården via",
            "Fortsatt planering",
            "Tid för uppföljning",
        ]

    @pytest.mark.parametrize(
        ("written", "part"),
        [
            ("Överenskommelsens giltighetstid", Part.VALIDITY),
            ("OVERENSKOMMELSENS GILTIGHET", Part.VALIDITY),
            ("Fast vardkontakt", Part.CARE_CONTACT),
            ("Fast läkarkontakt i PV", Part.GP_CONTACT),
            ("Fast omsorgskontakt", Part.OMSORG_CONTACT),
            ("Fast vårdkontakt med övergripande samordningsansvar", Part.COORDINATING_CONTACT),
            ("Patienten kan kontakta vården...", Part.CONTACT_VIA),
            ("Sammanhållen planering:", Part.COORDINATED_PLAN),
        ],
    )
    def test_region_synonyms_and_spelling_variants(self, written: str, part: Part) -> None:
        entry = default_mappings().by_id["region-nested"].entry_for(written)
        assert entry is not None
        assert entry.part is part

    @pytest.mark.parametrize(
        "written",
        ["Vid försämring kan patienten.....", "VID FORSAMRING KAN PATIENTEN", "Vid försämring"],
    )
    def test_kalmar_spelling_variants(self, written: str) -> None:
        entry = default_mappings().by_id["kalmar-flat"].entry_for(written)
        assert entry is not None
        assert entry.part is Part.ON_DETERIORATION

    def test_every_shipped_file_is_a_variant(self) -> None:
        assert sorted(p.stem for p in MAPPINGS.glob("*.yaml")) == sorted(default_mappings().by_id)


def test_internal_keywords_are_listed_in_every_shipped_variant() -> None:
    for mapping in default_mappings():
        assert "Intern anteckning" in mapping.internal_keywords
        assert mapping.is_internal("INTERN ANTECKNING (visas ej för patienten):")


def test_fold_ignores_case_diacritics_spacing_and_trailing_dots() -> None:
    assert fold("  Vid  FÖRSÄMRING kan patienten….. ") == "vid forsamring kan patienten"
    assert fold("Patienten kan kontakta vården:") == "patienten kan kontakta varden"
    assert fold("Patienten\u00a0kan\u200b kontakta\tvården via...") == (
        "patienten kan kontakta varden via")


class TestAddingAVariant:
    def test_a_new_file_is_a_new_variant_without_code(self, tmp_path: Path) -> None:
        for path in MAPPINGS.glob("*.yaml"):
            (tmp_path / path.name).write_bytes(path.read_bytes())
        (tmp_path / "region-test.yaml").write_text(MINIMAL_VARIANT, encoding="utf-8")
        mappings = load_mappings(tmp_path)
        note = (
            "Patient: 19450101-1235 Greta Holm\n\nPatientkontrakt\nJag gör\nPromenerar.\n"
            "Vi gör\nRinger varje vecka.\n"
        ).encode()
        parsed = parse_note(note, "text/plain", mappings=mappings)
        assert parsed.mapping.id == "region-test"
        assert [(i.part, i.text) for i in parsed.agreement.items] == [
            (Part.PATIENT_RESPONSIBILITY, "Promenerar."),
            (Part.CARE_RESPONSIBILITY, "Ringer varje vecka."),
        ]

    @pytest.mark.parametrize(
        ("content", "fault"),
        [
            (MINIMAL_VARIANT.replace("care-responsibility", "coffee"), "keywords.1.part"),
            (MINIMAL_VARIANT.replace("Vi gör", "JAG GOR"), "listed twice"),
            (MINIMAL_VARIANT + "colour: blue\n", "colour"),
            ("title: [unclosed\n", "cannot be read"),
            ("- just a list\n", "must be a mapping"),
            (MINIMAL_VARIANT + "id: something-else\n", "must be the file's name"),
            (MINIMAL_VARIANT + "internal_keywords: [Intern anteckning, VI GÖR]\n",
             "internal keyword 'VI GÖR' is also another keyword"),
        ],
    )
    def test_a_broken_file_is_refused_naming_the_fault(
        self, tmp_path: Path, content: str, fault: str
    ) -> None:
        (tmp_path / "broken.yaml").write_text(content, encoding="utf-8")
        with pytest.raises(MappingError, match="broken.yaml") as raised:
            load_mappings(tmp_path)
        assert fault in str(raised.value)

    def test_an_empty_folder_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(MappingError, match="no keyword-template mappings"):
            load_mappings(tmp_path)
