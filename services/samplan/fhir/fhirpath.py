"""FHIRPath for profile invariants: fhirpathpy, made strict where it is lenient.

fhirpathpy evaluates the FHIRPath of a StructureDefinition ``constraint`` well,
but it forgives two things we must not: its parser recovers silently from
syntax errors (``name.(`` compiles into something), and a function it does not
implement (``conformsTo``, ``memberOf``, ``resolve``) only fails when evaluated,
which would turn every write into an error. :func:`compile_invariant` refuses
both when the profiles are loaded, so a typo in a profile stops the server at
start instead of changing what is enforced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.error.ErrorListener import ErrorListener
from fhirpathpy import compile as compile_fhirpath
from fhirpathpy.engine.invocations import invocation_registry
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models
from fhirpathpy.parser import parse
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

R4_MODEL: dict[str, Any] = models["r4"]
"""fhirpathpy's R4 model: element types, choice elements (``value`` -> ``valueBoolean``)."""

IMPLEMENTED_FUNCTIONS = frozenset(invocation_registry)
"""The FHIRPath functions fhirpathpy can evaluate."""

PRIMITIVE_TYPES = frozenset(
    "base64Binary boolean canonical code date dateTime decimal id instant integer markdown oid "
    "positiveInt string time unsignedInt uri url uuid".split()
)
"""The R4 primitive types (how FHIRPath names them: ``boolean``, ``dateTime``)."""


class FhirPathError(ValueError):
    """An expression that is not FHIRPath, or that fhirpathpy cannot evaluate."""


class _Raise(ErrorListener):  # type: ignore[misc]
    def syntaxError(  # noqa: N802 (ANTLR's name and signature)
        self,
        recognizer: Any,  # noqa: ARG002
        offendingSymbol: Any,  # noqa: ARG002, N803
        line: int,  # noqa: ARG002
        column: int,
        msg: str,
        e: Any,  # noqa: ARG002
    ) -> None:
        raise FhirPathError(f"column {column}: {msg}")


def check_syntax(expression: str) -> None:
    """Raise :class:`FhirPathError` unless ``expression`` is one whole FHIRPath expression."""
    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_Raise())
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(_Raise())
    parser.expression()
    rest = parser.getCurrentToken()
    if rest.type != Token.EOF:
        raise FhirPathError(f"column {rest.column}: unexpected {rest.text!r}")


def called_functions(expression: str) -> set[str]:
    """The names of the functions ``expression`` calls."""

    def walk(node: Any) -> set[str]:
        found: set[str] = set()
        if isinstance(node, dict):
            children = node.get("children") or []
            if node.get("type") == "Functn" and children:
                found.add(str(children[0].get("text")))
            for child in children:
                found |= walk(child)
        return found

    return walk(parse(expression))  # type: ignore[no-untyped-call]


def type_of(path: str) -> str | None:
    """The FHIR type of an element path (``Coding`` for ``CarePlan.activity.detail.code.coding``).

    Backbone elements are their own type (``CareTeam.participant``); ``None``
    for primitives, which fhirpathpy needs no type for, and for choice elements,
    whose type only the instance tells.
    """
    parts = path.split(".")
    current = parts[0]
    for part in parts[1:]:
        candidate = f"{current}.{part.removesuffix('[x]')}"
        candidate = R4_MODEL["pathsDefinedElsewhere"].get(candidate, candidate)
        if candidate in R4_MODEL["choiceTypePaths"]:
            return None  # the instance's key (valueBoolean) says which type
        found = R4_MODEL["path2Type"].get(candidate)
        current = candidate if found in (None, "BackboneElement", "Element") else found
    if current.startswith("System.") or current in PRIMITIVE_TYPES:
        return None
    return current


@dataclass(frozen=True, slots=True)
class Invariant:
    """A compiled invariant: evaluates to ``True`` when the rule holds."""

    expression: str
    _evaluate: Any

    def holds(self, value: Any, type_path: str | None, resource: Mapping[str, Any]) -> bool:
        """Evaluate on ``value`` (an element of type ``type_path``) inside ``resource``.

        ``%resource`` and ``%rootResource`` are ``resource``. As in the HL7 Java
        validator, only a single ``true`` passes; empty or ``false`` fails.
        Evaluation errors propagate to the caller.
        """
        if isinstance(value, dict) and "resourceType" not in value and type_path:
            value = ResourceNode.create_node(value, type_path)  # type: ignore[no-untyped-call]
        result = self._evaluate(value, {"resource": resource, "rootResource": resource})
        return bool(result == [True])


def compile_invariant(expression: str) -> Invariant:
    """Compile an invariant's FHIRPath for fhirpathpy, refusing what it would get wrong."""
    check_syntax(expression)
    missing = sorted(called_functions(expression) - IMPLEMENTED_FUNCTIONS)
    if missing:
        raise FhirPathError(f"fhirpathpy does not implement {', '.join(missing)}")
    return Invariant(expression, compile_fhirpath(expression, R4_MODEL))
