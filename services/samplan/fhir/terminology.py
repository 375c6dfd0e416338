"""The code systems and value sets that our profiles bind to, expanded in memory.

Profiles say "this element takes a code from ValueSet X"; checking that needs
the value set's codes. Ours are small and enumerated (activity kinds, KV Typ av
fast kontakt, Inera's typeofcareplan), so they are expanded once at start from
the CodeSystem and ValueSet resources in ``fhir_profiles/``; no terminology
server is involved. A value set that cannot be expanded here (filters,
unknown code systems without an explicit concept list) is refused when loaded,
because a binding we cannot check would silently let any code through.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any


class TerminologyError(ValueError):
    """A CodeSystem or ValueSet in ``fhir_profiles/`` that cannot be used as written."""


@dataclass(frozen=True, slots=True)
class Concept:
    """One code of an expanded value set, with the display to show for it."""

    system: str
    code: str
    display: str | None = None


def canonical_url(reference: str) -> str:
    """A canonical reference without its ``|version`` suffix (we hold one version of each)."""
    return reference.split("|", 1)[0]


def _walk_concepts(concepts: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """Every concept of a CodeSystem, including nested (hierarchical) ones."""
    for concept in concepts:
        yield concept
        yield from _walk_concepts(concept.get("concept", ()))


class Terminology:
    """Code systems and value sets by canonical URL, with cached expansions."""

    def __init__(
        self,
        code_systems: Iterable[Mapping[str, Any]],
        value_sets: Iterable[Mapping[str, Any]],
    ) -> None:
        self._codes: dict[str, dict[str, str | None]] = {}
        for cs in code_systems:
            url = cs["url"]
            if cs.get("content", "complete") != "complete":
                raise TerminologyError(f"CodeSystem {url}: only content 'complete' is supported")
            self._codes[url] = {
                c["code"]: c.get("display") for c in _walk_concepts(cs.get("concept", ()))
            }
        self._value_sets = {vs["url"]: vs for vs in value_sets}
        self._expansions: dict[str, dict[tuple[str, str], Concept]] = {}
        for url in self._value_sets:
            self._expand(url, ())

    def has_value_set(self, url: str) -> bool:
        return canonical_url(url) in self._value_sets

    def expand(self, url: str) -> list[Concept]:
        """The concepts of a value set, in the order they were declared."""
        return list(self._expand(canonical_url(url), ()).values())

    def contains(self, value_set: str, system: str | None, code: str | None) -> bool:
        """Whether ``system|code`` is in the value set. A code without a system never is."""
        if system is None or code is None:
            return False
        return (system, code) in self._expand(canonical_url(value_set), ())

    def contains_code(self, value_set: str, code: str) -> bool:
        """Whether a bare ``code`` (an element of type code, system implied) is in the value set."""
        return any(c.code == code for c in self._expand(canonical_url(value_set), ()).values())

    def display(self, system: str, code: str) -> str | None:
        """The display a code system we hold gives a code, if any."""
        return self._codes.get(system, {}).get(code)

    def _expand(self, url: str, seen: tuple[str, ...]) -> dict[tuple[str, str], Concept]:
        cached = self._expansions.get(url)
        if cached is not None:
            return cached
        if url in seen:
            raise TerminologyError(f"ValueSet {url} includes itself ({' -> '.join(seen)})")
        vs = self._value_sets.get(url)
        if vs is None:
            raise TerminologyError(f"unknown ValueSet {url}")
        compose = vs.get("compose")
        if not compose:
            raise TerminologyError(f"ValueSet {url} has no compose; cannot expand it")
        included: dict[tuple[str, str], Concept] = {}
        for part in compose.get("include", ()):
            included.update(self._expand_part(url, part, (*seen, url)))
        for part in compose.get("exclude", ()):
            for key in self._expand_part(url, part, (*seen, url)):
                included.pop(key, None)
        self._expansions[url] = included
        return included

    def _expand_part(
        self, url: str, part: Mapping[str, Any], seen: tuple[str, ...]
    ) -> dict[tuple[str, str], Concept]:
        """One ``compose.include`` / ``exclude``: a system, its listed concepts, imported sets."""
        if part.get("filter"):
            raise TerminologyError(f"ValueSet {url}: compose filters are not supported")
        result: dict[tuple[str, str], Concept] | None = None
        system = part.get("system")
        if system is not None:
            known = self._codes.get(system)
            if part.get("concept"):
                result = {}
                for concept in part["concept"]:
                    code = concept["code"]
                    if known is not None and code not in known:
                        raise TerminologyError(
                            f"ValueSet {url}: {system}|{code} is not in its CodeSystem"
                        )
                    display = concept.get("display") or (known or {}).get(code)
                    result[(system, code)] = Concept(system, code, display)
            elif known is not None:
                result = {(system, code): Concept(system, code, d) for code, d in known.items()}
            else:
                raise TerminologyError(
                    f"ValueSet {url} includes all of {system}, which is not loaded; "
                    "list the concepts"
                )
        for imported in part.get("valueSet", ()):
            other = self._expand(canonical_url(imported), seen)
            # Several parts in one include are intersected (FHIR R4 ValueSet.compose.include).
            result = (
                dict(other) if result is None else {k: v for k, v in result.items() if k in other}
            )
        if result is None:
            raise TerminologyError(
                f"ValueSet {url}: an include names neither a system nor a valueSet"
            )
        return result
