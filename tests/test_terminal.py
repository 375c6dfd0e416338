"""A calm terminal (issue 14, item 8): what `make` and `samplan` print, and what they do not.

* ``make install`` says what it is doing and lets pip show its progress;
* ``samplan migrate`` says whether it created, upgraded or left the schema;
* Alembic's "setup plugin" lines are not logged at every start;
* ``samplan serve --help`` shows each option's default and its variable's full name;
* the README's command table lists every ``samplan`` command.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from samplan.cli import app as cli
from samplan.settings import get_settings
from samplan.store import migrate
from support.repo_bounds import ROOT


class TestMakeInstall:
    def test_announces_itself_and_lets_pip_show_progress(self) -> None:
        if shutil.which("make") is None:
            pytest.skip("make is not installed")
        dry = subprocess.run(["make", "-n", "-B", "install"], cwd=ROOT, capture_output=True,
                             text=True, timeout=60, check=True).stdout
        assert "Installing samplan and its dev tools" in dry
        [install] = [line for line in dry.splitlines() if "-e '.[dev]'" in line]
        assert "--quiet" not in install
        assert " -q " not in install


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'terminal.db'}"
    monkeypatch.setenv("SAMPLAN_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def run_migrate() -> str:
    result = CliRunner().invoke(cli, ["migrate"])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


class TestMigrateSaysWhatItDid:
    def test_created_then_left_as_it_is(self, database: str) -> None:
        head = migrate.head_revision()
        assert run_migrate() == f"created the schema at revision {head} in {database}"
        assert run_migrate() == (f"the schema in {database} is already at the newest "
                                 f"revision ({head}): left as it is")

    def test_upgraded_from_an_older_revision(self, database: str) -> None:
        from alembic.script import ScriptDirectory

        head = migrate.head_revision()
        script = ScriptDirectory.from_config(migrate.alembic_config(database))
        previous = script.get_revision(head).down_revision
        assert isinstance(previous, str)
        migrate.upgrade(database, previous)
        assert run_migrate() == (f"upgraded the schema from revision {previous} to {head} "
                                 f"in {database}")

    def test_a_password_is_never_printed(self) -> None:
        shown = migrate.Migration("postgresql+asyncpg://u:***@h/db", "a", "b").message()
        assert "***" in shown


class TestStartingIsQuiet:
    def test_alembic_plugin_lines_are_not_logged(self) -> None:
        code = ("from samplan.observability.logs import configure_logging\n"
                "configure_logging('text', 'INFO')\n"
                "import logging; logging.getLogger('samplan').info('started')\n"
                "from samplan.store import migrate; migrate.head_revision()\n")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60, check=True)
        assert "started" in done.stderr  # INFO is logged
        assert "setup plugin" not in done.stderr
        assert "alembic" not in done.stderr


class TestServeHelp:
    def test_shows_defaults_and_the_full_variable_names(self) -> None:
        result = CliRunner().invoke(cli, ["serve", "--help"])
        assert result.exit_code == 0, result.output
        text = " ".join(result.stdout.split())
        for expected in ("SAMPLAN_HOST", "default: 127.0.0.1", "SAMPLAN_PORT", "default: 8080",
                         "SAMPLAN_SHUTDOWN_GRACE_SECONDS", "default: 20.0",
                         "SAMPLAN_SUBSCRIPTIONS_IN_PROCESS_WORKER", "SAMPLAN_DATABASE_URL",
                         "docs/configuration.md"):
            assert expected in text, expected
        assert "…" not in result.stdout  # nothing cut off

    def test_the_variables_still_set_the_options(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import uvicorn

        started: dict[str, object] = {}
        monkeypatch.setattr(uvicorn, "run", lambda *_, **kw: started.update(kw))
        monkeypatch.setenv("SAMPLAN_HOST", "127.0.0.2")
        monkeypatch.setenv("SAMPLAN_PORT", "18999")
        monkeypatch.setenv("SAMPLAN_SHUTDOWN_GRACE_SECONDS", "7.5")
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(cli, ["serve"])
        finally:
            get_settings.cache_clear()
        assert result.exit_code == 0, result.output
        assert (started["host"], started["port"], started["timeout_graceful_shutdown"]) == (
            "127.0.0.2", 18999, 8)
        monkeypatch.setenv("SAMPLAN_PORT", "not-a-port")
        assert CliRunner().invoke(cli, ["serve"]).exit_code == 2


class TestTheReadmeCommandTable:
    def test_lists_every_command(self) -> None:
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        section = readme.split("## The `samplan` command", 1)[1].split("\n## ", 1)[0]
        listed = set(re.findall(r"^\| `samplan ([a-z-]+)", section, re.MULTILINE))
        group = typer.main.get_command(cli)
        assert isinstance(group, typer.core.TyperGroup)
        assert listed == set(group.commands)
