"""What a development token will be able to do, said before it is used.

``samplan token`` mints whatever it is asked for. A newcomer's first token,
``--scope 'system/*.cruds'`` without ``--org``, verifies and then reaches no
patient: a Patient it creates answers 404 to it (issue 14, item 2). The
warnings here say so on stderr when the token is minted. They read the token's
claims through :class:`~samplan.security.principal.Principal`, the way the
server will, so they cannot drift from the rules (docs/security.md).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import orjson

from samplan.security.principal import InvalidClaims, NoUsableScope, Principal


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a compact JWS, unverified (the caller just minted it)."""
    payload = token.split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    decoded: dict[str, Any] = orjson.loads(base64.urlsafe_b64decode(padded))
    return decoded


def warnings_for(claims: Mapping[str, Any]) -> list[str]:
    """Why a token with these claims may disappoint its user (empty: nothing to say)."""
    try:
        principal = Principal.from_claims(claims)
    except (InvalidClaims, NoUsableScope) as exc:
        return [f"the server will refuse this token: {exc}"]
    reach_note = ("a patient is reached only through a CareTeam that names its "
                  "organisation (docs/security.md, 'Your first patient answers 404')")
    if principal.kind == "system" and not principal.organisation_hsa_id:
        return ["this system/ token has no organisation (--org HSA-ID), so it reaches no "
                f"patient: a Patient it creates answers 404 to it; {reach_note}"]
    if principal.kind == "staff":
        units = (principal.organisation_hsa_id, principal.care_unit_hsa_id,
                 principal.care_provider_hsa_id)
        if any(units):
            return []
        if principal.employee_hsa_id:
            return ["this user/ token has no care unit, care provider or organisation "
                    "(--care-unit/--care-provider/--org HSA-ID): it reaches only the patients "
                    "whose CareTeam names the staff member's Practitioner"]
        return ["this user/ token has no care unit, care provider, organisation or staff "
                "HSA-id (--care-unit/--org/--user HSA-ID), so it reaches no patient: a "
                f"Patient it creates answers 404 to it; {reach_note}"]
    return []
