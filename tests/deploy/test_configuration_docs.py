"""docs/configuration.md is generated from Settings and kept up to date."""

from __future__ import annotations

from pathlib import Path

from samplan.config_docs import env_names, render
from samplan.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_committed_configuration_docs_are_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is out of date: run `samplan config-docs`")


def test_every_setting_is_documented_with_a_description() -> None:
    text = render()
    for name in env_names():
        assert f"`{name}`" in text
    assert all(field.description for field in Settings.model_fields.values())


def test_secrets_show_no_default() -> None:
    line = next(x for x in render().splitlines() if x.startswith("| `SAMPLAN_WEBHOOK_SECRET_KEY`"))
    assert "**secret**" in line
    assert "(unset)" in line
