"""What the builder writes conforms to the agreement profiles in fhir_profiles/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from samplan.agreement.fhir_build import build_transaction
from samplan.agreement.model import Agreement, Author, CareUnit, Part
from samplan.fhir.profiles import ProfileRegistry

from .factories import make_agreement, make_item
from .test_fhir_read import ALL_PARTS

PROFILES = Path(__file__).resolve().parents[2] / "fhir_profiles"


@pytest.fixture(scope="module")
def registry() -> ProfileRegistry:
    return ProfileRegistry.load(PROFILES)


def errors(registry: ProfileRegistry, bundle: dict[str, Any]) -> list[Any]:
    found = []
    for index, entry in enumerate(bundle["entry"]):
        issues = registry.validate(entry["resource"], location=f"Bundle.entry[{index}].resource")
        found += [issue for issue in issues if issue.severity in ("error", "fatal")]
    return found


AGREEMENTS: dict[str, Agreement] = {
    "every part": ALL_PARTS,
    "no validity keyword": make_agreement(items=(make_item(part=Part.NEXT_STEP),)),
    "unreadable validity": make_agreement(items=(make_item(part=Part.VALIDITY, text="snart"),)),
    "samordningsnummer, no hsa-ids": make_agreement(
        personnummer="194501611232",
        samordning=True,
        author=Author(name="Karin Ek"),
        care_unit=CareUnit(name="HC Lindsdal"),
        items=(
            make_item(part=Part.CARE_CONTACT, text="Karin Ek"),
            make_item(part=Part.FOLLOW_UP_TIME, text="2027-01-12 09:30, HC Lindsdal"),
            make_item(part=Part.GOAL, text="Gå.", patient_authored=True),
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(AGREEMENTS))
def test_built_resources_conform_to_their_profiles(registry: ProfileRegistry, name: str) -> None:
    assert errors(registry, build_transaction(AGREEMENTS[name])) == []


def test_updates_conform_too(registry: ProfileRegistry) -> None:
    bundle = build_transaction(ALL_PARTS, careplan_id="cp1", careteam_id="ct1")
    assert errors(registry, bundle) == []
