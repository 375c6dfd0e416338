"""Our conformance resources (profiles, code systems, value sets, questionnaires, measures), served.

They live as JSON files in ``fhir_profiles/`` (and Questionnaires generated
from ``mappings/``, Measures defined in ``samplan.followup``); at start the
server stores each one that is new or changed, so they are read and searched
like any other resource, with history. Clients may read them, never write them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from samplan.fhir.registry import READ_ONLY, ResourceType, SearchParam, register

CONFORMANCE_TYPES = (
    "StructureDefinition", "CodeSystem", "ValueSet", "Questionnaire", "Measure",
)

_REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_PROFILES_DIR = _REPO_ROOT / "fhir_profiles"
DEFAULT_MAPPINGS_DIR = _REPO_ROOT / "mappings"


def _params() -> dict[str, SearchParam]:
    return {
        "url": SearchParam("url", "token", ("url",), "The canonical URL"),
        "name": SearchParam("name", "string", ("name",), "Computationally friendly name"),
        "status": SearchParam("status", "token", ("status",), "draft | active | retired"),
        "version": SearchParam("version", "token", ("version",), "The business version"),
    }


def register_conformance_types() -> None:
    for name in CONFORMANCE_TYPES:
        register(ResourceType(name, _params(), interactions=READ_ONLY, conditional_create=False))


def without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's content as the files give it (what decides whether it changed)."""
    return {k: v for k, v in resource.items() if k != "meta"}
