"""SMART App Launch scopes: parsed once per token, asked many times by the policy.

A token's ``scope`` claim is a space-separated list. The resource scopes have
the shape ``<context>/<ResourceType|*>.<permissions>[?param=value&...]``
(SMART App Launch 2.x, "Scopes and Launch Context"):

* v2 permissions are a subset of ``cruds`` written in that order
  (``rs``, ``cud``, ``cruds``); ``patient/CarePlan.rs``, ``user/*.cruds``,
  ``system/Appointment.cud``. An optional query string narrows the grant to
  resources matching a search (``patient/Observation.rs?category=laboratory``).
* v1 permissions ``read`` (= ``rs``), ``write`` (= ``cud``) and ``*``
  (= ``cruds``) are still issued by many authorisation servers, so they are
  accepted and translated.

Everything else (``openid``, ``fhirUser``, ``launch/patient``,
``offline_access``, custom scopes) is kept in :attr:`ScopeSet.other` so callers
can still ask for it with :meth:`ScopeSet.has`. A scope that *looks* like a
resource scope but is malformed (``patient/CarePlan.sr``, ``user/*.read?x=1``,
``team/*.rs``) is not an error: it grants nothing and is listed in
:attr:`ScopeSet.ignored` for diagnostics. Parsing never raises, so a token
whose scopes are all unusable is recognised by ``not scopes.usable``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, cast, get_args
from urllib.parse import parse_qsl

Context = Literal["patient", "user", "system"]
Interaction = Literal["c", "r", "u", "d", "s"]

CONTEXTS: Final[tuple[Context, ...]] = get_args(Context)
ALL_INTERACTIONS: Final[str] = "cruds"

#: v1 permission words and the v2 letters they stand for.
V1_PERMISSIONS: Final[dict[str, str]] = {"read": "rs", "write": "cud", "*": "cruds"}

# A FHIR resource type name (R4 names are ASCII letters starting upper case) or "*".
_RESOURCE_TYPE = re.compile(r"\*|[A-Z][A-Za-z]{0,63}")
# v2 letters: non-empty, each at most once, in c-r-u-d-s order.
_V2_PERMISSIONS = re.compile(r"(?=.)c?r?u?d?s?")

#: One restriction: the ``(param, value)`` pairs of one scope's query string,
#: all of which must match (a scope's parameters are AND-ed).
Restriction = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Scope:
    """One resource scope, normalised to v2 letters."""

    context: Context
    resource_type: str
    interactions: frozenset[Interaction]
    restriction: Restriction = ()
    raw: str = ""
    version: Literal[1, 2] = 2

    def covers(self, context: Context | None, resource_type: str, interaction: Interaction) -> bool:
        """Whether this scope names the triple, ignoring its restriction."""
        return (
            (context is None or context == self.context)
            and self.resource_type in ("*", resource_type)
            and interaction in self.interactions
        )


@dataclass(frozen=True, slots=True)
class Access:
    """What a :class:`ScopeSet` grants for one (context, type, interaction).

    ``unrestricted`` means some scope grants it outright. Otherwise each entry
    of ``restrictions`` is one scope's query (its parameters AND-ed); a resource
    is in reach when it matches any of them (the scopes are OR-ed). The caller
    that asks for restricted access must apply those searches itself.
    """

    unrestricted: bool = False
    restrictions: tuple[Restriction, ...] = ()

    @property
    def granted(self) -> bool:
        return self.unrestricted or bool(self.restrictions)


@dataclass(frozen=True, slots=True)
class ScopeSet:
    """The scopes of one token: resource scopes, other scopes, and ignored ones."""

    resource_scopes: tuple[Scope, ...] = ()
    other: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str | Iterable[str] | None) -> ScopeSet:
        """Parse a ``scope`` claim (space-separated string) or a list of scopes.

        Never raises: malformed resource scopes end up in ``ignored``.
        """
        if value is None:
            return cls()
        items = value.split() if isinstance(value, str) else [s for v in value for s in v.split()]
        resource: list[Scope] = []
        other: list[str] = []
        ignored: list[str] = []
        for item in dict.fromkeys(items):  # de-duplicate, keep order
            prefix = item.partition("/")[0]
            if "/" in item and (prefix in CONTEXTS or _looks_like_resource_scope(item)):
                parsed = parse_scope(item)
                if parsed is None:
                    ignored.append(item)
                else:
                    resource.append(parsed)
            else:
                other.append(item)
        return cls(tuple(resource), tuple(other), tuple(ignored))

    @classmethod
    def everything(cls) -> ScopeSet:
        """Every interaction on every type in every context (local demo only)."""
        return _everything()

    @property
    def usable(self) -> bool:
        """Whether at least one scope grants access to FHIR resources."""
        return bool(self.resource_scopes)

    def contexts(self) -> frozenset[Context]:
        """The contexts (``patient``, ``user``, ``system``) the resource scopes use."""
        return frozenset(s.context for s in self.resource_scopes)

    def has(self, scope: str) -> bool:
        """Whether a non-resource scope (``openid``, ``launch/patient``...) was granted."""
        return scope in self.other

    def access(
        self, context: Context | None, resource_type: str, interaction: Interaction
    ) -> Access:
        """What the scopes grant for the triple; ``context=None`` means any context."""
        restrictions: list[Restriction] = []
        for scope in self.resource_scopes:
            if not scope.covers(context, resource_type, interaction):
                continue
            if not scope.restriction:
                return Access(unrestricted=True)
            if scope.restriction not in restrictions:
                restrictions.append(scope.restriction)
        return Access(restrictions=tuple(restrictions))

    def allows(self, context: Context | None, resource_type: str, interaction: Interaction) -> bool:
        """Whether some scope grants the triple *without* a query restriction.

        Deliberately conservative: ``patient/Observation.rs?category=vital-signs``
        does not make ``allows(..., "Observation", "r")`` true, because a yes/no
        answer cannot carry the condition. Use :meth:`access` to get the
        restrictions and apply them. ``context=None`` accepts any context.
        """
        return self.access(context, resource_type, interaction).unrestricted

    def __str__(self) -> str:
        return " ".join([*(s.raw for s in self.resource_scopes), *self.other, *self.ignored])


def parse_scope(text: str) -> Scope | None:
    """Parse one resource scope; ``None`` when it is not a valid v1 or v2 one."""
    context, slash, rest = text.partition("/")
    if not slash or context not in CONTEXTS:
        return None
    rest, question, query = rest.partition("?")
    resource_type, dot, permissions = rest.partition(".")
    if not dot or not _RESOURCE_TYPE.fullmatch(resource_type):
        return None
    version: Literal[1, 2]
    if permissions in V1_PERMISSIONS:
        if question:  # finer-grained restrictions exist only in v2
            return None
        letters, version = V1_PERMISSIONS[permissions], 1
    elif _V2_PERMISSIONS.fullmatch(permissions):
        letters, version = permissions, 2
    else:
        return None
    restriction: Restriction = ()
    if question:
        try:
            # keep blanks so that "?category=&status=final" is refused rather
            # than silently widened to "?status=final"
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            return None
        if not pairs or any(not name or not value for name, value in pairs):
            return None
        restriction = tuple(pairs)
    return Scope(
        context=context,  # narrowed by the CONTEXTS check above
        resource_type=resource_type,
        interactions=cast(frozenset[Interaction], frozenset(letters)),  # letters are from "cruds"
        restriction=restriction,
        raw=text,
        version=version,
    )


def _looks_like_resource_scope(item: str) -> bool:
    """``team/CarePlan.rs``: resource-scope shaped but with an unknown context.

    Such scopes are listed as ignored (a likely typo worth seeing in logs) rather
    than passed through as an opaque "other" scope like ``launch/patient``.
    """
    after = item.partition("/")[2]
    return "." in after and bool(_RESOURCE_TYPE.fullmatch(after.partition(".")[0]))


@functools.cache
def _everything() -> ScopeSet:
    """Parsed once: the anonymous principal of every request with auth off holds it."""
    return ScopeSet.parse(" ".join(f"{c}/*.cruds" for c in CONTEXTS))
