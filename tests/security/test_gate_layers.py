"""The gate holds by construction: ``make lint`` runs import-linter contracts that fail
when code above ``security/`` imports what reads the store.

The contracts are in ``pyproject.toml`` (``[tool.importlinter]``). Here they run
for real, once on the package as it is (they must hold) and once on a copy with
a deliberate unguarded read added to ``api/`` (they must fail, naming it), so a
contract that cannot fail would be noticed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")


def _lint(package_parent: Path, config_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=config_dir, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_contracts_hold_for_the_package_as_it_is() -> None:
    result = _lint(ROOT / "services", ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_unguarded_read_above_the_gate_breaks_the_gate_contract(tmp_path: Path) -> None:
    copy = tmp_path / "services"
    shutil.copytree(ROOT / "services" / "samplan", copy / "samplan",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "samplan" / "api" / "leak.py").write_text(
        '"""A route that reads the store around the gate (never in the real code)."""\n\n'
        "from samplan.store.repository import Repository\n\n"
        "__all__ = ['Repository']\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    result = _lint(copy, tmp_path)
    assert result.returncode != 0
    assert "The gate: only security/ reaches stored data and the FHIR service BROKEN" \
        in result.stdout
    assert "samplan.api.leak -> samplan.store.repository" in result.stdout


def test_no_route_or_domain_code_acts_as_the_service_itself() -> None:
    """``Gate.as_service()`` reaches everything (demo load, the bulk import command, the
    worker's bookkeeping); a request must never be served with it. Imports cannot show
    an attribute call, so the sources are read."""
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("api", "agreement", "mapping")
        for path in sorted((ROOT / "services" / "samplan" / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "as_service(" in line
    ]
    assert offenders == []
