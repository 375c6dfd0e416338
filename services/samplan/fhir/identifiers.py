"""Swedish identifiers: personnummer, samordningsnummer and HSA-id.

Every write passes through :func:`normalise_identifiers`, which stores person
identifiers in one form (HL7 Sweden system URI, 12 digits, no separator), so
that search, deduplication and access checks compare like with like. The search
indexer and the search parser both go through :func:`canonical_token`, so a
client may search with the RIVTA OID or a written form such as
``19450101-1235`` and still match.

Rules, from Skatteverket's description of the personnummer:

* written ``YYMMDD-NNNC`` (or ``+`` from the year the person turns 100), or
  ``YYYYMMDDNNNC`` in the 12-digit form;
* ``C`` is the Luhn check digit over the 10-digit form ``YYMMDDNNN``;
* a samordningsnummer is built the same way with 60 added to the day.

References: HL7 Sweden base profiles (SEBasePatient, SEBasePractitioner),
https://build.fhir.org/ig/HL7Sweden/basprofiler-r4/
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from functools import lru_cache
from typing import Any, Literal

from samplan.fhir.errors import Issue

__all__ = [
    "HSA_RIVTA_SYSTEM",
    "HSA_SYSTEM",
    "PERSONNUMMER_OID",
    "PERSONNUMMER_SYSTEM",
    "SAMORDNINGSNUMMER_OID",
    "SAMORDNINGSNUMMER_SYSTEM",
    "InvalidIdentifier",
    "birth_date_of",
    "canonical_system",
    "canonical_token",
    "is_hsa_id",
    "luhn_check_digit",
    "normalise_identifiers",
    "normalise_personnummer",
]

PERSONNUMMER_SYSTEM = "http://electronichealth.se/identifier/personnummer"
SAMORDNINGSNUMMER_SYSTEM = "http://electronichealth.se/identifier/samordningsnummer"
PERSONNUMMER_OID = "1.2.752.129.2.1.3.1"
SAMORDNINGSNUMMER_OID = "1.2.752.129.2.1.3.3"
HSA_SYSTEM = "urn:oid:1.2.752.29.4.19"
HSA_RIVTA_SYSTEM = "urn:oid:1.2.752.129.2.1.4.1"

_HSA_OID = HSA_SYSTEM.removeprefix("urn:oid:")
_HSA_RIVTA_OID = HSA_RIVTA_SYSTEM.removeprefix("urn:oid:")

_SYSTEM_ALIASES: dict[str, str] = {
    PERSONNUMMER_OID: PERSONNUMMER_SYSTEM,
    f"urn:oid:{PERSONNUMMER_OID}": PERSONNUMMER_SYSTEM,
    SAMORDNINGSNUMMER_OID: SAMORDNINGSNUMMER_SYSTEM,
    f"urn:oid:{SAMORDNINGSNUMMER_OID}": SAMORDNINGSNUMMER_SYSTEM,
    _HSA_OID: HSA_SYSTEM,
    _HSA_RIVTA_OID: HSA_SYSTEM,
    HSA_RIVTA_SYSTEM: HSA_SYSTEM,
}

_PERSON_SYSTEMS = frozenset({PERSONNUMMER_SYSTEM, SAMORDNINGSNUMMER_SYSTEM})

# YYMMDD or YYYYMMDD, an optional separator, then NNNC; ASCII digits only.
_WRITTEN_FORM = re.compile(r"(?P<date>[0-9]{6}|[0-9]{8})(?P<sep>[-+]?)(?P<serial>[0-9]{4})")

# Country code, organisation number (10 digits, or 12 with a "16" prefix),
# then a unique suffix; at most 31 characters in all (Inera, HSA-id format).
# Lenient on the middle part: some older ids carry letters there.
_HSA_ID = re.compile(r"SE[0-9A-Z]{10,}(?:-[0-9A-Za-z]+)?")
_HSA_ID_MAX_LENGTH = 31

Rule = Literal["format", "length", "date", "check digit"]


class InvalidIdentifier(ValueError):
    """A personnummer or samordningsnummer that breaks one of the rules.

    ``rule`` names the rule that failed; ``str(error)`` is a sentence a client
    can act on. The value itself is never repeated in the message, so it is
    safe to log.
    """

    def __init__(self, rule: Rule, reason: str) -> None:
        super().__init__(reason)
        self.rule: Rule = rule


def luhn_check_digit(digits: str) -> int:
    """The Luhn (mod 10) check digit for ``digits``, weights 2, 1, 2, ... from the left.

    For a personnummer pass the nine digits ``YYMMDDNNN``.
    """
    total = 0
    for position, char in enumerate(digits):
        product = int(char) * (2 if position % 2 == 0 else 1)
        total += product - 9 if product > 9 else product
    return (10 - total % 10) % 10


def normalise_personnummer(
    value: str, *, samordning: bool = False, today: date | None = None
) -> str:
    """Validate a personnummer (or samordningsnummer) and return its 12 digits.

    Accepts ``YYMMDD-NNNC``, ``YYMMDD+NNNC``, ``YYMMDDNNNC``, ``YYYYMMDDNNNC``
    and ``YYYYMMDD-NNNC``, with surrounding whitespace. For the 10-digit forms
    the century follows the separator: ``-`` or none means born within the
    100 years before ``today``, ``+`` means born 100 or more years before it.
    With ``samordning`` the day of birth is expected with 60 added, and it
    stays so in the result.

    Raises :class:`InvalidIdentifier` naming the rule that failed: format,
    length, date or check digit.
    """
    kind = "samordningsnummer" if samordning else "personnummer"
    today = today or date.today()
    text = value.strip()

    match = _WRITTEN_FORM.fullmatch(text)
    if match is None:
        digits = sum(c in "0123456789" for c in text)
        if digits not in (10, 12):
            raise InvalidIdentifier(
                "length", f"{kind} must have 10 or 12 digits, this one has {digits}"
            )
        raise InvalidIdentifier(
            "format",
            f"{kind} must be written YYYYMMDDNNNC, YYYYMMDD-NNNC, YYMMDD-NNNC or YYMMDD+NNNC",
        )

    written_date, separator, serial = match["date"], match["sep"], match["serial"]
    month, written_day = int(written_date[-4:-2]), int(written_date[-2:])
    day = written_day - 60 if samordning else written_day

    if len(written_date) == 8:
        if separator == "+":
            raise InvalidIdentifier(
                "format", f"'+' belongs to the 10-digit form of a {kind}, not the 12-digit form"
            )
        year = int(written_date[:4])
    else:
        centenarian = separator == "+"
        year = _century_year(int(written_date[:2]), month, day, centenarian, today)

    try:
        born = date(year, month, day)
    except ValueError:
        hint = ""
        if not samordning and 61 <= written_day <= 91:
            hint = " (a day of 61-91 is a samordningsnummer: use the samordningsnummer system)"
        elif samordning and 1 <= written_day <= 31:
            hint = " (a samordningsnummer has 60 added to the day of birth)"
        raise InvalidIdentifier(
            "date", f"{kind} does not contain a valid date of birth{hint}"
        ) from None
    if born > today:
        raise InvalidIdentifier("date", f"{kind} has a date of birth in the future")

    ten_digits = f"{year % 100:02d}{month:02d}{written_day:02d}{serial}"
    expected = luhn_check_digit(ten_digits[:9])
    if int(ten_digits[9]) != expected:
        raise InvalidIdentifier(
            "check digit",
            f"{kind} check digit is {ten_digits[9]}, but the Luhn rule gives {expected}",
        )
    return f"{year:04d}{ten_digits[2:]}"


def birth_date_of(patient: Mapping[str, Any]) -> date | None:
    """The date of birth a Patient's stored personnummer or samordningsnummer holds.

    ``Patient.birthDate`` is written from the number on import, but a Patient
    stored without it (before that, or by a plain create that left it out) is
    still a child by its number: the guardian rule must not depend on the writer
    having copied the date. Stored numbers are the 12 digits
    :func:`normalise_identifiers` leaves; anything else gives None.
    """
    for identifier in patient.get("identifier") or ():
        if not isinstance(identifier, Mapping):
            continue
        system, value = identifier.get("system"), identifier.get("value")
        if system not in (PERSONNUMMER_SYSTEM, SAMORDNINGSNUMMER_SYSTEM):
            continue
        if not isinstance(value, str) or len(value) != 12 or not value.isdigit():
            continue
        day = int(value[6:8]) - (60 if system == SAMORDNINGSNUMMER_SYSTEM else 0)
        try:
            return date(int(value[:4]), int(value[4:6]), day)
        except ValueError:
            continue
    return None


def _century_year(yy: int, month: int, day: int, centenarian: bool, today: date) -> int:
    """The full year for a 10-digit form: the latest one not after ``today``.

    Compares (year, month, day) tuples rather than dates, so that an
    impossible date (say 29 February in a common year) is reported by the
    caller as a date error and not here.
    """
    year = today.year - today.year % 100 + yy
    if (year, month, day) > (today.year, today.month, today.day):
        year -= 100
    return year - 100 if centenarian else year


def canonical_system(system: str) -> str:
    """The one system URI under which an identifier is stored and searched.

    The RIVTA OIDs (with or without ``urn:oid:``) for personnummer and
    samordningsnummer become the HL7 Sweden URIs; both HSA-id OIDs become
    :data:`HSA_SYSTEM`. Anything else is returned unchanged.
    """
    return _SYSTEM_ALIASES.get(system, system)


def canonical_token(system: str | None, value: str | None) -> tuple[str | None, str | None]:
    """The (system, value) pair to index or to search with. Never raises.

    Personnummer and samordningsnummer values become their 12 digits when
    they are valid; an invalid value is returned unchanged, so that a search
    for it simply finds nothing.
    """
    if system is None:
        return None, value
    canonical = canonical_system(system)
    if canonical in _PERSON_SYSTEMS and isinstance(value, str):
        try:
            value = normalise_personnummer(value, samordning=canonical == SAMORDNINGSNUMMER_SYSTEM)
        except InvalidIdentifier:
            pass
    return canonical, value


def is_hsa_id(value: str) -> bool:
    """Whether ``value`` looks like an HSA-id, e.g. ``SE2321000073-1001``."""
    return len(value) <= _HSA_ID_MAX_LENGTH and _HSA_ID.fullmatch(value) is not None


def normalise_identifiers(resource: dict[str, Any]) -> list[Issue]:
    """Validate and normalise every Swedish identifier in ``resource``, in place.

    Walks the whole resource (``Patient.identifier``, ``Reference.identifier``
    such as ``CarePlan.subject.identifier``, contained resources, extensions).
    Each Identifier (a JSON object with ``system`` and ``value``) whose system
    is a personnummer or samordningsnummer, in any accepted spelling, is
    rewritten to the HL7 Sweden URI and the 12-digit value. HSA-ids keep the
    system they were sent with and are only checked.

    Returns one ``value`` issue per invalid identifier, with the FHIRPath of
    its value (``Patient.identifier[0].value``); an empty list when all is
    well. Invalid identifiers are left as they were sent.
    """
    issues: list[Issue] = []
    root = resource.get("resourceType")
    _walk(resource, [root if isinstance(root, str) else "Resource"], issues)
    return issues


def _walk(node: Any, path: list[str | int], issues: list[Issue]) -> None:
    """``path``: the steps to ``node``, made a FHIRPath only for an issue (most of a
    resource has no identifier)."""
    if isinstance(node, dict):
        if "system" in node and "value" in node:
            _check_identifier(node, path, issues)
        for key, child in node.items():
            if isinstance(child, dict | list):
                path.append(key)
                _walk(child, path, issues)
                path.pop()
    else:
        for index, child in enumerate(node):
            if isinstance(child, dict | list):
                path.append(index)
                _walk(child, path, issues)
                path.pop()


def _value_at(path: list[str | int]) -> tuple[str]:
    """The FHIRPath of the ``value`` of the identifier at ``path``, for an issue."""
    from samplan.fhir.resource import fhirpath  # (fhir.resources loads only for an issue)

    return (f"{fhirpath(str(path[0]), tuple(path[1:]))}.value",)


@lru_cache(maxsize=8192)
def _normalised(value: str, samordning: bool, today: date) -> str:
    """:func:`normalise_personnummer`, once per number and day (a patient's number is in
    each resource of its agreement; an invalid one raises each time, as it is not kept)."""
    return normalise_personnummer(value, samordning=samordning, today=today)


def _check_identifier(
    identifier: dict[str, Any], path: list[str | int], issues: list[Issue]
) -> None:
    system, value = identifier["system"], identifier["value"]
    if not isinstance(system, str):
        return
    canonical = canonical_system(system)

    if canonical in _PERSON_SYSTEMS:
        samordning = canonical == SAMORDNINGSNUMMER_SYSTEM
        if not isinstance(value, str):
            kind = "samordningsnummer" if samordning else "personnummer"
            issues.append(
                Issue(code="value", diagnostics=f"{kind} must be a string",
                      expression=_value_at(path))
            )
            return
        try:
            normalised = _normalised(value, samordning, date.today())
        except InvalidIdentifier as error:
            issues.append(Issue(code="value", diagnostics=str(error), expression=_value_at(path)))
            return
        identifier["system"] = canonical
        identifier["value"] = normalised

    elif canonical == HSA_SYSTEM:
        if not isinstance(value, str) or not value.strip():
            issues.append(
                Issue(code="value", diagnostics="HSA-id must not be empty",
                      expression=_value_at(path))
            )
        elif not is_hsa_id(value):
            issues.append(
                Issue(
                    code="value",
                    diagnostics="HSA-id must look like SE<organisation number>-<suffix>, "
                    "e.g. SE2321000073-1001, at most 31 characters",
                    expression=_value_at(path),
                )
            )
