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

import re
from collections.abc import Callable, Mapping
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
    #: the same expression as Python, for a string value (see :func:`compile_on_string`)
    _on_string: Callable[[str], Any] | None = None
    #: the same expression as Python, for an element in its resource (:data:`ON_ELEMENT`)
    _on_element: Callable[[Any, Mapping[str, Any]], bool] | None = None

    def holds(self, value: Any, type_path: str | None, resource: Mapping[str, Any]) -> bool:
        """Evaluate on ``value`` (an element of type ``type_path``) inside ``resource``.

        ``%resource`` and ``%rootResource`` are ``resource``. As in the HL7 Java
        validator, only a single ``true`` passes; empty or ``false`` fails.
        Evaluation errors propagate to the caller.
        """
        if self._on_string is not None and isinstance(value, str):
            try:
                return [self._on_string(value)] == [True]  # as fhirpathpy's result below
            except _Unsure:
                pass  # fhirpathpy says what an empty or odd step makes of it
        if self._on_element is not None:
            try:
                return self._on_element(value, resource)
            except _Unsure:
                pass
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
    return Invariant(expression, compile_fhirpath(expression, R4_MODEL),
                     compile_on_string(expression), ON_ELEMENT.get(expression))


# -- the hot invariants as Python ---------------------------------------------------------
#
# fhirpathpy interprets an expression node by node: the personnummer checksum rule
# (samplan-pnr-2) costs ~0.4 ms per evaluation, on every write naming a patient
# (issue 7). Invariants on a string value (``Identifier.value``: ``matches``,
# ``substring``, ``toInteger``, arithmetic) are also compiled to Python closures
# here. They cover only the case where every step yields exactly one value of
# the expected type, in which fhirpathpy's functions reduce to the Python below;
# anything else (an empty step, a type it would complain about) raises _Unsure
# and that evaluation goes to fhirpathpy, so results, errors included, are its.


class _Unsure(Exception):
    """Not the single-valued case the Python form covers: ask fhirpathpy."""


_Step = Callable[[str], Any]
_INT = re.compile(r"^[+-]?\d+$")  # fhirpathpy's toInteger()


def compile_on_string(expression: str) -> _Step | None:
    """``expression`` as a Python function of the string it is evaluated on, or None
    when it uses anything but the operators and functions below."""
    try:
        tree = parse(expression)  # type: ignore[no-untyped-call]
        return _compile(tree["children"][0])
    except _Unsupported:
        return None


class _Unsupported(Exception):
    pass


def _children(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(node.get("children") or [])


def _operator(node: Mapping[str, Any]) -> str:
    terminals = node.get("terminalNodeText") or []
    if len(terminals) != 1:
        raise _Unsupported
    return str(terminals[0])


def _compile(node: Mapping[str, Any]) -> _Step:
    kind = node.get("type")
    children = _children(node)
    if kind in ("TermExpression", "InvocationTerm") and len(children) == 1:
        return _compile(children[0])
    if kind == "ParenthesizedTerm" and len(children) == 1:
        return _compile(children[0])
    if kind == "LiteralTerm" and len(children) == 1:
        return _literal(children[0])
    if kind == "FunctionInvocation" and len(children) == 1:
        return _function(children[0], None)
    if kind == "InvocationExpression" and len(children) == 2:
        if children[1].get("type") != "FunctionInvocation":
            raise _Unsupported  # member navigation: not a function of the string alone
        return _function(_children(children[1])[0], _compile(children[0]))
    if kind in _BINARY and len(children) == 2:
        op = _BINARY[kind].get(_operator(node))
        if op is None:
            raise _Unsupported
        left, right = _compile(children[0]), _compile(children[1])
        return lambda value: op(left(value), right(value))
    raise _Unsupported


def _literal(node: Mapping[str, Any]) -> _Step:
    text = str(node.get("text"))
    kind = node.get("type")
    if kind == "NumberLiteral" and text.isdigit() and text.isascii():
        number = int(text)
        return lambda _value: number
    if kind == "StringLiteral" and len(text) >= 2 and text[0] == text[-1] == "'" and (
            "\\" not in text and "'" not in text[1:-1]):
        string = text[1:-1]
        return lambda _value: string
    if kind == "BooleanLiteral" and text in ("true", "false"):
        flag = text == "true"
        return lambda _value: flag
    raise _Unsupported


def _function(functn: Mapping[str, Any], target: _Step | None) -> _Step:
    """``name(literals)`` on ``target`` (None: on the string itself)."""
    parts = _children(functn)
    if not parts or parts[0].get("type") != "Identifier" or len(parts) > 2:
        raise _Unsupported
    name = str(parts[0].get("text"))
    params = [_literal_param(p) for p in (_children(parts[1]) if len(parts) > 1 else [])]
    on: _Step = target if target is not None else (lambda value: value)
    if name == "matches" and len(params) == 1:
        pattern = params[0]
        if not isinstance(pattern, str) or not pattern:
            raise _Unsupported
        regex = re.compile(pattern, re.DOTALL)
        return lambda value: regex.search(_string(on(value))) is not None
    if name == "substring" and len(params) == 2:
        start, length = params
        if not _is_int(start) or not _is_int(length) or start < 0 or length < 1:
            raise _Unsupported

        def substring(value: str) -> str:
            string = _string(on(value))
            if start >= len(string):
                raise _Unsure
            return string[start:start + length]

        return substring
    if name == "toInteger" and not params:

        def to_integer(value: str) -> int:
            string = _string(on(value))
            if _INT.match(string) is None:
                raise _Unsure
            return int(string)

        return to_integer
    raise _Unsupported


def _literal_param(node: Mapping[str, Any]) -> Any:
    """A function's parameter, which here must be a literal (no focus to get wrong)."""
    children = _children(node)
    if node.get("type") != "TermExpression" or len(children) != 1 or (
            children[0].get("type") != "LiteralTerm"):
        raise _Unsupported
    return _compile(children[0])("")


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Unsure
    return value


def _integer(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Unsure
    return value


def _boolean(value: Any) -> bool:
    if value is not True and value is not False:
        raise _Unsure
    return bool(value)


def _int_div(x: Any, y: Any) -> int:
    dividend, divisor = _integer(x), _integer(y)
    if divisor == 0:
        raise _Unsure
    return int(dividend / divisor)  # as fhirpathpy (math.intdiv)


def _int_mod(x: Any, y: Any) -> int:
    dividend, divisor = _integer(x), _integer(y)
    if divisor == 0:
        raise _Unsure
    return dividend % divisor  # as fhirpathpy (math.mod)


def _equal(x: Any, y: Any) -> bool:
    same_kind = (isinstance(x, str) and isinstance(y, str)) or (
        _is_int(x) and _is_int(y))
    if not same_kind:
        raise _Unsure
    return bool(x == y)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _implies(a: Any, b: Any) -> bool:
    left, right = _boolean(a), _boolean(b)  # both checked, as fhirpathpy does
    return True if left is False else right


def _and(a: Any, b: Any) -> bool:
    left, right = _boolean(a), _boolean(b)
    return left and right


def _or(a: Any, b: Any) -> bool:
    left, right = _boolean(a), _boolean(b)
    return left or right


_BINARY: dict[str, dict[str, Callable[[Any, Any], Any]]] = {
    "ImpliesExpression": {"implies": _implies},
    "AndExpression": {"and": _and},
    "OrExpression": {"or": _or},
    "EqualityExpression": {"=": _equal},
    "AdditiveExpression": {"+": lambda x, y: _integer(x) + _integer(y),
                           "-": lambda x, y: _integer(x) - _integer(y)},
    "MultiplicativeExpression": {"*": lambda x, y: _integer(x) * _integer(y),
                                 "div": _int_div, "mod": _int_mod},
}


# -- invariants over a resource, written out --------------------------------------------------
#
# samplan-ct-1 (at most one participant is the patient's fast vårdkontakt) is
# evaluated on every participant's role and walks every participant: in
# fhirpathpy ~1.3 ms per role, 11% of a note import (issue 15). Its Python form
# below is looked up by the expression's exact text, so a profile that changes
# the rule gets fhirpathpy again; tests/fhir/test_fhirpath_on_element.py holds
# the two to the same verdict on generated CareTeams. Anything not shaped as
# the JSON of a valid resource (a coding that is not an object, a code that is
# not a string) raises _Unsure and goes to fhirpathpy.

ROLE_SYSTEM = "urn:oid:1.2.752.129.5.1.69"
ONE_FAST_CONTACT = (
    "iif(coding.where(system = 'urn:oid:1.2.752.129.5.1.69' and code = '2').empty(), true, "
    "%resource.participant.where(role.coding.where(system = 'urn:oid:1.2.752.129.5.1.69' "
    "and code = '2').exists()).count() <= 1)"
)


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Unsure
    return value


def _coded(concept: Any, system: str, code: str) -> bool:
    """``coding.where(system = system and code = code).exists()`` on a CodeableConcept."""
    if not isinstance(concept, Mapping):
        raise _Unsure
    found = False
    for coding in _list(concept.get("coding")):
        if not isinstance(coding, Mapping):
            raise _Unsure
        has_system, has_code = coding.get("system"), coding.get("code")
        if not isinstance(has_system, str | None) or not isinstance(has_code, str | None):
            raise _Unsure
        found = found or (has_system == system and has_code == code)
    return found


def _one_fast_contact(value: Any, resource: Mapping[str, Any]) -> bool:
    if not _coded(value, ROLE_SYSTEM, "2"):
        return True
    named = 0
    for participant in _list(resource.get("participant")):
        if not isinstance(participant, Mapping):
            raise _Unsure
        roles = [_coded(role, ROLE_SYSTEM, "2") for role in _list(participant.get("role"))]
        named += any(roles)
    return named <= 1


ON_ELEMENT: dict[str, Callable[[Any, Mapping[str, Any]], bool]] = {
    ONE_FAST_CONTACT: _one_fast_contact,
}
"""Invariants written out in Python, by their exact FHIRPath."""
