"""Principal: claim names, kind derivation, and refusals."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from samplan.security.principal import InvalidClaims, NoUsableScope, Principal
from samplan.security.scopes import ScopeSet


def make_claims(
    *,
    scope: str | None = "user/*.cruds",
    sub: str | None = "user-1",
    **extra: Any,
) -> dict[str, Any]:
    claims: dict[str, Any] = {"iss": "https://idp.example", "exp": 1_900_000_000, **extra}
    if scope is not None:
        claims["scope"] = scope
    if sub is not None:
        claims["sub"] = sub
    return claims


class TestKind:
    @pytest.mark.parametrize(
        ("scope", "fhir_user", "kind"),
        [
            ("system/Appointment.cud", None, "system"),
            ("system/*.rs openid", "Device/1", "system"),
            ("user/*.cruds", None, "staff"),
            ("user/*.cruds", "Practitioner/123", "staff"),
            ("user/*.cruds", "PractitionerRole/7", "staff"),
            ("user/*.rs", "RelatedPerson/9", "relative"),
            ("user/*.rs", "Patient/5", "patient"),
            ("patient/*.rs", None, "patient"),
            ("patient/*.rs", "Patient/5", "patient"),
            ("patient/*.rs", "RelatedPerson/9", "relative"),
            # a clinician's app in a patient launch stays staff
            ("patient/*.rs", "Practitioner/123", "staff"),
            ("patient/*.rs user/*.rs", None, "staff"),
            ("patient/*.rs user/*.rs", "RelatedPerson/9", "relative"),
        ],
    )
    def test_kind_table(self, scope: str, fhir_user: str | None, kind: str) -> None:
        claims = make_claims(scope=scope, patient="5", fhirUser=fhir_user)
        assert Principal.from_claims(claims).kind == kind

    @pytest.mark.parametrize("scope", ["system/*.rs user/*.rs", "system/*.rs patient/*.rs"])
    def test_system_scopes_mixed_with_others_are_refused(self, scope: str) -> None:
        with pytest.raises(InvalidClaims, match="system/ scopes cannot be combined"):
            Principal.from_claims(make_claims(scope=scope, patient="5"))

    @pytest.mark.parametrize("scope", [None, "", "openid fhirUser", "patient/CarePlan.sr"])
    def test_no_resource_scope_is_its_own_error(self, scope: str | None) -> None:
        with pytest.raises(NoUsableScope) as caught:
            Principal.from_claims(make_claims(scope=scope))
        assert not caught.value.scopes.usable

    def test_patient_without_patient_in_context_is_refused(self) -> None:
        with pytest.raises(InvalidClaims, match="patient/ scopes need a 'patient' claim"):
            Principal.from_claims(make_claims(scope="patient/*.rs"))

    def test_relative_with_patient_scopes_needs_the_patient(self) -> None:
        with pytest.raises(InvalidClaims, match="need a 'patient' claim"):
            Principal.from_claims(make_claims(scope="patient/*.rs", fhirUser="RelatedPerson/9"))

    def test_relative_with_user_scopes_needs_no_patient(self) -> None:
        principal = Principal.from_claims(
            make_claims(scope="user/*.rs", fhirUser="RelatedPerson/9")
        )
        assert (principal.kind, principal.patient) == ("relative", None)

    def test_patient_in_context_defaults_to_the_fhir_user_id(self) -> None:
        principal = Principal.from_claims(make_claims(scope="patient/*.rs", fhirUser="Patient/5"))
        assert principal.patient == "5"

    def test_patient_claim_wins_over_fhir_user(self) -> None:
        principal = Principal.from_claims(
            make_claims(scope="patient/*.rs", fhirUser="Patient/5", patient="194501011235")
        )
        assert principal.patient == "194501011235"


class TestClaims:
    def test_staff_claims_are_all_read(self) -> None:
        principal = Principal.from_claims(
            make_claims(
                scope="user/*.cruds openid fhirUser",
                sub="SE2321000016-1003",
                fhirUser="Practitioner/123",
                employeeHsaId="SE2321000016-1003",
                healthCareProviderHsaId="SE2321000016-0001",
                commissionHsaId="SE2321000016-0002",
                commissionPurpose="Vård och behandling",
                client_id="cosmic",
                jti="t-1",
                patient="194501011235",
            )
        )
        assert principal == Principal(
            kind="staff",
            subject="SE2321000016-1003",
            scopes=ScopeSet.parse("user/*.cruds openid fhirUser"),
            patient="194501011235",
            fhir_user="Practitioner/123",
            employee_hsa_id="SE2321000016-1003",
            care_provider_hsa_id="SE2321000016-0001",
            care_unit_hsa_id="SE2321000016-0002",
            commission_purpose="Vård och behandling",
            client_id="cosmic",
            token_id="t-1",
            issuer="https://idp.example",
            expires_at=datetime(2030, 3, 17, 17, 46, 40, tzinfo=UTC),
        )

    def test_system_organisation_claim(self) -> None:
        principal = Principal.from_claims(
            make_claims(scope="system/CarePlan.rs", organizationHsaId="SE2120000001-0001")
        )
        assert principal.organisation_hsa_id == "SE2120000001-0001"

    def test_system_organisation_fallback_claim(self) -> None:
        principal = Principal.from_claims(
            make_claims(scope="system/CarePlan.rs", client_org_hsa_id="SE2120000001-0002")
        )
        assert principal.organisation_hsa_id == "SE2120000001-0002"

    def test_preferred_organisation_claim_wins(self) -> None:
        principal = Principal.from_claims(
            make_claims(
                scope="system/CarePlan.rs",
                organizationHsaId="SE-A",
                client_org_hsa_id="SE-B",
            )
        )
        assert principal.organisation_hsa_id == "SE-A"

    def test_client_id_falls_back_to_azp(self) -> None:
        principal = Principal.from_claims(make_claims(azp="portal"))
        assert principal.client_id == "portal"

    def test_scp_list_is_read_when_scope_is_absent(self) -> None:
        claims = make_claims(scope=None, scp=["user/CarePlan.rs", "openid"])
        assert Principal.from_claims(claims).scopes == ScopeSet.parse("user/CarePlan.rs openid")

    def test_absolute_fhir_user_is_cut_to_a_relative_reference(self) -> None:
        claims = make_claims(fhirUser="https://idp.example/fhir/Practitioner/123")
        principal = Principal.from_claims(claims)
        assert principal.fhir_user == "Practitioner/123"
        assert (principal.fhir_user_type, principal.fhir_user_id) == ("Practitioner", "123")

    @pytest.mark.parametrize("fhir_user", ["123", "practitioner/123", "Practitioner/", ""])
    def test_fhir_user_that_is_not_a_reference_is_refused(self, fhir_user: str) -> None:
        with pytest.raises(InvalidClaims, match="fhirUser"):
            Principal.from_claims(make_claims(fhirUser=fhir_user))

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("employeeHsaId", 123),
            ("healthCareProviderHsaId", ["SE-1"]),
            ("commissionHsaId", ""),
            ("patient", {"id": "5"}),
            ("sub", 7),
            ("scope", 7),
            ("scp", [1, 2]),
        ],
    )
    def test_claim_of_the_wrong_type_is_refused(self, name: str, value: object) -> None:
        claims = make_claims()
        claims[name] = value
        if name == "scp":
            del claims["scope"]
        with pytest.raises(InvalidClaims, match=repr(name)):
            Principal.from_claims(claims)

    @pytest.mark.parametrize(
        ("exp", "message"),
        [
            (1e20, "'exp' is out of range"),
            ("soon", "'exp' must be a NumericDate"),
            (True, "NumericDate"),
        ],
    )
    def test_unusable_expiry_is_refused(self, exp: object, message: str) -> None:
        with pytest.raises(InvalidClaims, match=message):
            Principal.from_claims(make_claims(exp=exp))

    def test_missing_subject_is_refused(self) -> None:
        with pytest.raises(InvalidClaims, match="'sub'"):
            Principal.from_claims(make_claims(sub=None))

    def test_null_claims_count_as_absent(self) -> None:
        principal = Principal.from_claims(make_claims(employeeHsaId=None, fhirUser=None))
        assert principal.employee_hsa_id is None
        assert principal.fhir_user is None


class TestAnonymousDev:
    def test_anonymous_dev_holds_every_scope(self) -> None:
        principal = Principal.anonymous_dev()
        assert principal.kind == "anonymous-dev"
        assert principal.scopes.allows("system", "AuditEvent", "d")
        assert principal.scopes.allows("patient", "CarePlan", "c")
        assert principal.patient is None

    def test_principal_is_immutable(self) -> None:
        principal = Principal.anonymous_dev()
        with pytest.raises(dataclasses.FrozenInstanceError):
            principal.kind = "staff"  # type: ignore[misc]
