"""``samplan token`` says when a token will reach no patient (issue 14, item 2)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from samplan.cli import app as cli
from samplan.security.token_advice import claims_of, warnings_for
from samplan.settings import get_settings


def claims(scope: str, **more: str) -> dict[str, str]:
    return {"sub": "someone", "scope": scope, **more}


class TestWarnings:
    def test_a_system_token_without_an_organisation_reaches_no_patient(self) -> None:
        [warning] = warnings_for(claims("system/*.cruds"))
        assert "reaches no patient" in warning
        assert "--org" in warning
        assert warnings_for(claims("system/*.cruds", organizationHsaId="SE1-1")) == []

    def test_a_staff_token_needs_a_unit_provider_or_organisation(self) -> None:
        [nothing] = warnings_for(claims("user/*.rs"))
        assert "reaches no patient" in nothing
        [only_own] = warnings_for(claims("user/*.rs", employeeHsaId="SE1-2"))
        assert "Practitioner" in only_own
        for claim in ("commissionHsaId", "healthCareProviderHsaId", "organizationHsaId"):
            assert warnings_for(claims("user/*.rs", **{claim: "SE1-1"})) == []

    def test_patients_have_nothing_to_be_told_but_a_missing_patient(self) -> None:
        assert warnings_for(claims("patient/*.rs", patient="194501011235")) == []
        [refused] = warnings_for(claims("patient/*.rs"))
        assert refused.startswith("the server will refuse this token")

    def test_a_token_without_resource_scopes_is_refused(self) -> None:
        [refused] = warnings_for(claims("openid fhirUser"))
        assert "no FHIR resource scope" in refused


@pytest.fixture
def dev_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SAMPLAN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SAMPLAN_ENVIRONMENT", "development")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("dev_env")
class TestTheCommand:
    def test_warns_on_stderr_and_keeps_the_token_alone_on_stdouts_last_line(self) -> None:
        result = CliRunner().invoke(cli, ["token", "--scope", "system/*.cruds"])
        assert result.exit_code == 0, result.output
        assert "warning: this system/ token has no organisation" in result.stderr
        token = result.stdout.strip().splitlines()[-1]
        assert claims_of(token)["scope"] == "system/*.cruds"
        assert "warning" not in result.stdout

    def test_the_org_form_is_quiet(self) -> None:
        result = CliRunner().invoke(cli, ["token", "--scope", "system/*.cruds",
                                          "--org", "SE2321000073-5001"])
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
        assert claims_of(result.stdout.strip().splitlines()[-1])["organizationHsaId"] == (
            "SE2321000073-5001")
