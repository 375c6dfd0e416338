"""The repository holds what its tests read: two guards against reading above its root.

A fresh clone must pass ``make test`` alone (issue 14, item 1). Tests once read
``../shared/examples``, a folder beside the repository that a user's clone does
not have. Two guards keep that from coming back:

* :func:`scan_source`, static: in the sources of ``tests/``, ``services/`` and
  ``bench/``, every path built from ``__file__`` (``Path(__file__).parents[N]``,
  ``.parent``, ``/ "..."``, ``os.path.dirname``/``join``, and module-level names
  bound to such paths) is evaluated where the file really is, and must stay
  inside the repository root. Catches code that is never run by a test too
  (a ``samplan serve`` subprocess, the benchmark).
* :class:`OutsideReadGuard`, at run time: an audit hook (PEP 578) installed for
  the whole test session refuses (``PermissionError``) and records every
  ``open``, ``listdir``, ``scandir``, ``glob`` and ``sqlite3.connect`` of a
  path above the root: a sibling of the repository (``/work/shared`` beside
  ``/work/wt14``), or a path that climbs out of the root with ``..``. The
  session then fails even if a test swallowed the error (``tests/conftest.py``).
  Not above the root, so allowed: the root itself, the temporary directory,
  the Python installation and its site-packages, hidden folders (caches) beside
  the root, and anything elsewhere on the machine (``/usr``, ``/etc``). So for
  a clone right in the temporary directory (``/tmp/samplan``) only the ``..``
  rule applies at run time; the static scan applies everywhere.
"""

from __future__ import annotations

import ast
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

ROOT: Final[Path] = Path(__file__).resolve().parents[2]
SCANNED: Final[tuple[str, ...]] = ("tests", "services", "bench")
EVENTS: Final[frozenset[str]] = frozenset(
    {"open", "os.listdir", "os.scandir", "glob.glob", "sqlite3.connect"})


# ----------------------------------------------------------------------- static


@dataclass(frozen=True)
class Finding:
    file: Path
    line: int
    path: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: builds {self.path}, outside the repository"


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class _PathEvaluator(ast.NodeVisitor):
    """Evaluates the path expressions anchored at ``__file__`` that it can, lexically."""

    def __init__(self, file: Path, root: Path) -> None:
        self.file = str(file)
        self.root = str(root)
        self.names: dict[str, str] = {}
        self.findings: list[Finding] = []

    def value(self, node: ast.AST) -> str | None:
        """The path ``node`` evaluates to (normalised), or None when unknown."""
        match node:
            case ast.Name(id="__file__"):
                return self.file
            case ast.Name(id=name) if name in self.names:
                return self.names[name]
            case ast.Call(func=ast.Name(id="Path") | ast.Attribute(attr="Path"), args=[arg]):
                return self.value(arg)
            case ast.Call(func=ast.Attribute(attr="resolve" | "absolute", value=inner),
                          args=[]):
                return self.value(inner)
            case ast.Attribute(attr="parent", value=inner):
                base = self.value(inner)
                return os.path.dirname(base) if base is not None else None
            case ast.Subscript(value=ast.Attribute(attr="parents", value=inner),
                               slice=ast.Constant(value=int(n))):
                base = self.value(inner)
                if base is None:
                    return None
                for _ in range(n + 1):
                    base = os.path.dirname(base)
                return base
            case ast.Call(func=ast.Attribute(attr="with_name", value=inner),
                          args=[ast.Constant(value=str(name))]):
                base = self.value(inner)
                return os.path.join(os.path.dirname(base), name) if base is not None else None
            case ast.BinOp(op=ast.Div(), left=left, right=ast.Constant(value=str(part))):
                base = self.value(left)
                return os.path.normpath(os.path.join(base, part)) if base is not None else None
            case ast.Call(func=ast.Attribute(attr="joinpath", value=inner), args=args):
                return self._join(self.value(inner), args)
            case ast.Call(func=ast.Attribute(attr="dirname" | "abspath" | "realpath"
                                             | "normpath" as how), args=[arg]):
                base = self.value(arg)
                if base is None:
                    return None
                return os.path.dirname(base) if how == "dirname" else os.path.normpath(base)
            case ast.Call(func=ast.Attribute(attr="join"), args=[first, *rest]):
                return self._join(self.value(first), rest)
        return None

    def _join(self, base: str | None, parts: list[ast.expr]) -> str | None:
        if base is None:
            return None
        for part in parts:
            if not (isinstance(part, ast.Constant) and isinstance(part.value, str)):
                return None
            base = os.path.join(base, part.value)
        return os.path.normpath(base)

    def generic_visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.expr):
            path = self.value(node)
            if path is not None and not _inside(path, self.root):
                self.findings.append(Finding(Path(self.file), getattr(node, "lineno", 0), path))
                return  # one finding per expression, not one per sub-expression
        super().generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        path = self.value(node.value)
        for target in node.targets:
            if isinstance(target, ast.Name):
                if path is None:
                    self.names.pop(target.id, None)
                else:
                    self.names[target.id] = path


def scan_source(source: str, file: Path, root: Path = ROOT) -> list[Finding]:
    """Paths built from ``__file__`` in ``source`` (as if it lived at ``file``) that leave
    ``root``."""
    evaluator = _PathEvaluator(file, root)
    evaluator.visit(ast.parse(source, filename=str(file)))
    return evaluator.findings


def scan_repository(root: Path = ROOT) -> list[Finding]:
    findings: list[Finding] = []
    for folder in SCANNED:
        for file in sorted((root / folder).rglob("*.py")):
            findings += scan_source(file.read_text(encoding="utf-8"), file, root)
    return findings


# ---------------------------------------------------------------------- runtime


def default_allowed() -> list[Path]:
    """Outside the root, yet not the repository's business: the temporary directory,
    the Python installation, the site-packages on ``sys.path``."""
    places = {tempfile.gettempdir(), sys.prefix, sys.base_prefix, sys.exec_prefix}
    places |= {entry for entry in sys.path if entry and "-packages" in entry}
    return [Path(p) for p in places]


@dataclass
class OutsideReadGuard:
    """Refuses and records file-system reads above ``root`` (see the module docstring)."""

    root: Path
    allowed: list[Path] = field(default_factory=default_allowed)
    violations: list[str] = field(default_factory=list)
    _expecting: int = 0

    def __post_init__(self) -> None:
        self._root = os.path.normpath(os.path.abspath(self.root))
        self._above = os.path.dirname(self._root)
        self._allowed = [os.path.normpath(os.path.abspath(p)) for p in self.allowed]

    def outside(self, path: Any) -> str | None:
        """The normalised path when reading ``path`` would read above the root, else None."""
        if path is None or isinstance(path, int):
            return None
        try:
            text = os.fsdecode(path)
        except TypeError:
            return None
        joined = text if os.path.isabs(text) else os.path.join(os.getcwd(), text)
        full = os.path.normpath(joined)
        if _inside(full, self._root):
            return None
        climbs_out = _inside(joined, self._root)  # /repo/../x: lexically inside, really not
        beside = (self._above != os.sep and _inside(full, self._above)
                  and not os.path.relpath(full, self._above).startswith("."))
        if climbs_out:  # never needed: whatever it reaches has a proper name
            return full
        if not beside or any(_inside(full, place) for place in self._allowed):
            return None
        return full

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event not in EVENTS or not args:
            return
        path = self.outside(args[0])
        if path is None:
            return
        if not self._expecting:
            self.violations.append(f"{event} {path}")
        raise PermissionError(
            f"{path} is above the repository root {self._root}: the repository must hold "
            "what its tests and code read (tests/support/repo_bounds.py)")

    @contextmanager
    def expecting(self) -> Iterator[None]:
        """Refuse as always, but do not record (a test that shows the guard works)."""
        self._expecting += 1
        try:
            yield
        finally:
            self._expecting -= 1


_GUARDS: list[OutsideReadGuard] = []


def _dispatch(event: str, args: tuple[Any, ...]) -> None:
    if event in EVENTS:
        for guard in _GUARDS:
            guard.hook(event, args)


def install(guard: OutsideReadGuard) -> OutsideReadGuard:
    """Route audit events to ``guard`` (audit hooks cannot be removed: one dispatcher
    is added once per process, guards come and go through :func:`active`). A guard
    for a root that already has one is not added twice: the installed one is returned
    (``conftest`` may be imported twice under ``--import-mode=importlib``)."""
    if not getattr(sys, "_samplan_repo_bounds", False):
        sys.addaudithook(_dispatch)
        sys._samplan_repo_bounds = True  # type: ignore[attr-defined]
    for installed in _GUARDS:
        if installed.root == guard.root and installed.allowed == guard.allowed:
            return installed
    _GUARDS.append(guard)
    return guard


@contextmanager
def active(guard: OutsideReadGuard) -> Iterator[OutsideReadGuard]:
    """``guard`` on for the block (a test of the guard itself)."""
    added = guard not in _GUARDS and install(guard) is guard
    try:
        yield guard
    finally:
        if added:
            _GUARDS.remove(guard)


def session_guards() -> Iterable[OutsideReadGuard]:
    return tuple(_GUARDS)
