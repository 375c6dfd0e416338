"""The README's first steps, run as written against a real server (issue 14, item 2).

The shell block under "Your first agreement" is taken from README.md and run
with bash, its first line (``base=http://127.0.0.1:8080/fhir``, where
``make run`` serves) pointed at a ``samplan serve`` on a free port with auth
on. The token it mints with ``samplan token`` must create the organisation,
the patient, the care team and the agreement, and read the agreement back.
And the mistake the README warns about: a ``system/`` token without ``--org``
is warned about, and its own Patient answers 404.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from support.repo_bounds import ROOT
from support.server import running_server

pytestmark = [pytest.mark.e2e]

README = ROOT / "README.md"
BASE_LINE = "base=http://127.0.0.1:8080/fhir"
SAMPLAN = Path(sys.executable).with_name("samplan")


def first_agreement_block(readme: str) -> str:
    """The first ```sh block of the section "Your first agreement"."""
    section = readme.split("## Your first agreement", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "README.md: no ```sh block under 'Your first agreement'"
    return match.group(1)


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("first-agreement")


@pytest.fixture(scope="module")
def server(state: Path) -> Iterator[str]:
    """``make run``'s server as a newcomer has it: auth on, the development key in its
    data folder (shared with ``samplan token``)."""
    env = {"SAMPLAN_AUTH_ENABLED": "true", "SAMPLAN_DATA_DIR": str(state / "var")}
    with running_server(f"sqlite+aiosqlite:///{state / 'first.db'}", env=env,
                        log_dir=state) as base:
        yield base


def shell_env(state: Path) -> dict[str, str]:
    """A newcomer's shell after ``. .venv/bin/activate``, next to the running server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAMPLAN_")}
    env.update(PATH=f"{SAMPLAN.parent}{os.pathsep}{env.get('PATH', '')}",
               SAMPLAN_DATA_DIR=str(state / "var"))
    return env


def need_curl() -> None:
    if shutil.which("curl") is None:
        if os.environ.get("CI"):
            pytest.fail("curl is required in CI (.ci/run installs it)")
        pytest.skip("curl is not installed")


class TestTheReadmesFirstAgreement:
    def test_the_block_starts_where_make_run_serves(self) -> None:
        block = first_agreement_block(README.read_text(encoding="utf-8"))
        assert block.splitlines()[0] == BASE_LINE
        assert "samplan token --scope 'system/*.cruds' --org" in block

    def test_runs_as_written_and_reads_the_agreement_back(
        self, server: str, state: Path
    ) -> None:
        need_curl()
        block = first_agreement_block(README.read_text(encoding="utf-8"))
        script = block.replace(BASE_LINE, f"base={server}", 1)
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=state,
                              env=shell_env(state), capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert "warning" not in done.stderr, done.stderr  # the --org form reaches its patient
        answers = [orjson.loads(line) for line in done.stdout.splitlines() if line]
        assert [a["resourceType"] for a in answers] == [
            "Organization", "Patient", "CareTeam", "CarePlan", "CarePlan"]
        plan = answers[-1]
        assert (plan["id"], plan["status"], plan["subject"]) == (
            "first-plan", "active", {"reference": "Patient/first-patient"})

    def test_run_again_the_steps_update_what_they_made(self, server: str, state: Path) -> None:
        need_curl()
        block = first_agreement_block(README.read_text(encoding="utf-8"))
        script = block.replace(BASE_LINE, f"base={server}", 1)
        for _ in range(2):
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=state,
                                  env=shell_env(state), capture_output=True, text=True,
                                  timeout=120)
            assert done.returncode == 0, done.stderr[-2000:]
        plan = orjson.loads(done.stdout.splitlines()[-1])
        assert int(plan["meta"]["versionId"]) >= 2


class TestATokenWithoutAnOrganisation:
    def test_is_warned_about_and_its_own_patient_answers_404(
        self, server: str, state: Path
    ) -> None:
        minted = subprocess.run([str(SAMPLAN), "token", "--scope", "system/*.cruds"],
                                env=shell_env(state), capture_output=True, text=True,
                                timeout=60, check=True)
        assert "reaches no patient" in minted.stderr
        assert "--org" in minted.stderr
        token = minted.stdout.strip().splitlines()[-1]
        headers = {"Authorization": f"Bearer {token}",
                   "Content-Type": "application/fhir+json"}
        patient = {"resourceType": "Patient", "identifier": [{
            "system": "http://electronichealth.se/identifier/personnummer",
            "value": "193803152341"}]}
        with httpx.Client(timeout=30) as http:
            created = http.post(f"{server}/Patient", json=patient, headers=headers)
            assert created.status_code == 201, created.text
            read = http.get(f"{server}/Patient/{created.json()['id']}", headers=headers)
            assert read.status_code == 404  # outside reach: as if it did not exist
