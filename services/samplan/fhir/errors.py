"""FHIR errors, each rendered as one OperationOutcome by the API's single handler.

The tree (the HTTP status each class answers with)::

    FhirError (500)
     ├── BadRequest (400)            malformed JSON, wrong resourceType, bad search
     │    └── UnknownElement (400)   an element R4 does not define
     ├── Unauthorized (401)
     ├── Forbidden (403)
     ├── NotFound (404)              unknown type or id
     ├── MethodNotAllowed (405)      interaction the type does not support
     ├── Conflict (409)              a write that lost a race it cannot retry
     ├── Gone (410)                  the current version is a deletion
     ├── PreconditionFailed (412)    If-Match / If-None-Exist not satisfied
     ├── PayloadTooLarge (413)
     ├── UnsupportedMediaType (415)
     ├── Unprocessable (422)         valid JSON, invalid content (values, profiles, ids)
     └── TooManyRequests (429)

Every error carries one or more :class:`Issue`; the domain raises them with the
FHIRPath of the element at fault so clients can point at it. Nothing here knows
about HTTP frameworks: ``status`` is just a number the API layer uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Severity = Literal["fatal", "error", "warning", "information"]


@dataclass(frozen=True, slots=True)
class Issue:
    """One ``OperationOutcome.issue``: what went wrong, and where."""

    code: str
    diagnostics: str
    expression: tuple[str, ...] = ()
    severity: Severity = "error"

    def to_fhir(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


def operation_outcome(issues: list[Issue] | tuple[Issue, ...]) -> dict[str, Any]:
    """An OperationOutcome resource as a JSON-ready dict."""
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


def information(diagnostics: str, code: str = "informational") -> dict[str, Any]:
    """A one-issue informational OperationOutcome (for ``Prefer: return=OperationOutcome``)."""
    return operation_outcome([Issue(code=code, diagnostics=diagnostics, severity="information")])


@dataclass
class FhirError(Exception):
    """Base of every error the service answers with an OperationOutcome."""

    diagnostics: str
    expression: tuple[str, ...] | list[str] = ()
    code: str = ""
    extra_issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "exception"

    def __post_init__(self) -> None:
        super().__init__(self.diagnostics)

    @property
    def issues(self) -> list[Issue]:
        first = Issue(
            code=self.code or self.default_code,
            diagnostics=self.diagnostics,
            expression=tuple(self.expression),
        )
        return [first, *self.extra_issues]

    @classmethod
    def from_issues(cls, issues: list[Issue]) -> FhirError:
        """Raise several issues at once (the first becomes the headline)."""
        head, *rest = issues
        return cls(head.diagnostics, head.expression, head.code, rest)

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class BadRequest(FhirError):
    status = 400
    default_code = "invalid"


class UnknownElement(BadRequest):
    default_code = "structure"


class Unauthorized(FhirError):
    status = 401
    default_code = "login"


class Forbidden(FhirError):
    status = 403
    default_code = "forbidden"


class NotFound(FhirError):
    status = 404
    default_code = "not-found"


class MethodNotAllowed(FhirError):
    status = 405
    default_code = "not-supported"


class Conflict(FhirError):
    status = 409
    default_code = "conflict"


class Gone(FhirError):
    status = 410
    default_code = "deleted"


class PreconditionFailed(FhirError):
    status = 412
    default_code = "conflict"


class PayloadTooLarge(FhirError):
    status = 413
    default_code = "too-costly"


class UnsupportedMediaType(FhirError):
    status = 415
    default_code = "not-supported"


class Unprocessable(FhirError):
    status = 422
    default_code = "invalid"


class TooManyRequests(FhirError):
    status = 429
    default_code = "throttled"
