"""Professional-only content removed for patients and relatives: the one place it is done.

Two kinds of label say "not for the patient" (``NOPATIENT``, v3-ActCode):

* on the whole resource, in ``meta.security``: the resource does not exist for
  a patient or relative (the gate filters it out of searches in SQL, so totals
  and paging cursors never count or name it);
* on one element, as a DS4P *inline security label* (the extension below, with
  a ``valueCoding``): that element is removed, and so is any element that
  references a resource hidden from them (``CarePlan.goal`` pointing to a
  professional-only Goal), so not even its existence shows.

Every output path for a patient or relative goes through :func:`for_patient`
(or :func:`redact_content` on stored bytes): read, vread, history, search and
includes, ``$export-note``, the patient's view and document, operation answers
and notification payloads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

import orjson

from samplan.fhir.indexing import parse_reference

__all__ = [
    "EXT_INLINE_SECURITY_LABEL",
    "NOPATIENT_CODE",
    "NOPATIENT_SYSTEM",
    "for_patient",
    "inline_label",
    "is_nopatient",
    "may_need_redaction",
    "redact_content",
    "references",
]

Resource = dict[str, Any]

NOPATIENT_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
NOPATIENT_CODE: Final = "NOPATIENT"
EXT_INLINE_SECURITY_LABEL: Final = (
    "http://hl7.org/fhir/uv/security-label-ds4p/StructureDefinition/extension-inline-sec-label"
)
"""HL7 DS4P *Inline Security Label* (valueCoding): a label on one element of a resource."""

_MAY_BE_LABELLED: Final = re.compile(rb"NOPATIENT|\\u")
"""In stored bytes (``orjson``'s, which writes letters as themselves): a label could be
there. Without a match there is none, escaped or not."""


def inline_label() -> dict[str, Any]:
    """The extension that labels one element ``NOPATIENT`` (for writers of such content)."""
    return {"url": EXT_INLINE_SECURITY_LABEL,
            "valueCoding": {"system": NOPATIENT_SYSTEM, "code": NOPATIENT_CODE}}


def _is_nopatient_coding(coding: Any) -> bool:
    return (
        isinstance(coding, Mapping)
        and coding.get("code") == NOPATIENT_CODE
        and coding.get("system") in (NOPATIENT_SYSTEM, None)
    )


def is_nopatient(resource: Mapping[str, Any]) -> bool:
    """Whether ``meta.security`` labels the whole resource ``NOPATIENT``."""
    meta = resource.get("meta")
    labels = meta.get("security") if isinstance(meta, Mapping) else None
    return isinstance(labels, list) and any(_is_nopatient_coding(c) for c in labels)


def may_need_redaction(content: bytes | None) -> bool:
    """Cheap test on stored bytes: False means there is certainly nothing to remove
    *inline* (references to hidden resources are asked apart, :func:`references`)."""
    return content is not None and _MAY_BE_LABELLED.search(content) is not None


def _inline_nopatient(element: Mapping[str, Any]) -> bool:
    return any(
        isinstance(ext, Mapping)
        and ext.get("url") == EXT_INLINE_SECURITY_LABEL
        and _is_nopatient_coding(ext.get("valueCoding"))
        for ext in element.get("extension") or ()
    )


def _hidden(element: Mapping[str, Any], hidden: frozenset[str]) -> bool:
    if _inline_nopatient(element):
        return True
    ref = element.get("reference")
    return isinstance(ref, str) and bool(hidden) and _key(ref) in hidden


def _key(reference: str) -> str:
    target = parse_reference(reference)
    return f"{target[0]}/{target[1]}" if target else reference


def _without(node: Any, hidden: frozenset[str]) -> Any:
    """``node`` without inline-labelled elements and references to ``hidden`` resources."""
    if isinstance(node, list):
        return [_without(item, hidden) for item in node
                if not (isinstance(item, Mapping) and _hidden(item, hidden))]
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if isinstance(value, Mapping) and _hidden(value, hidden):
                continue
            cleaned = _without(value, hidden)
            if cleaned == [] and value != []:
                continue  # every element of the list was withheld: drop the empty list
            out[key] = cleaned
        return out
    return node


def for_patient(resource: Mapping[str, Any], hidden: Iterable[str] = ()) -> Resource | None:
    """A copy fit for a patient or relative, or ``None`` when the whole resource is
    ``NOPATIENT``. ``hidden``: ``"Type/id"`` of resources hidden from them, whose
    references go too."""
    if is_nopatient(resource):
        return None
    cleaned: Resource = _without(resource, frozenset(hidden))  # a copy: built anew
    return cleaned


def redact_content(content: bytes, hidden: Iterable[str] = ()) -> bytes | None:
    """:func:`for_patient` on stored bytes; the same bytes when nothing is removed."""
    hidden = frozenset(hidden)
    if not hidden and not may_need_redaction(content):
        return content
    body = orjson.loads(content)
    if not isinstance(body, dict):
        return content
    cleaned = for_patient(body, hidden)
    if cleaned is None:
        return None
    return content if cleaned == body else orjson.dumps(cleaned)


def references(node: Any) -> Iterator[tuple[str, str]]:
    """Every literal reference in a resource, as (type, id)."""
    if isinstance(node, list):
        for item in node:
            yield from references(item)
    elif isinstance(node, Mapping):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                target = parse_reference(value)
                if target:
                    yield target
            else:
                yield from references(value)
