"""The ``samplan`` command: serve, migrate, load demo data, mint development tokens.

Every command that opens the database first takes its settings from
:func:`_safe_settings`: an unsafe production configuration (settings that do
not validate, no JWKS, a development key in it by kid or key material) is
refused with exit status 2 and one line on stderr before anything creates a
database, so a SQLite file is never written by a server that may not start.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer

from samplan.settings import Settings

# Plain click help: it wraps long variable names instead of cutting them off.
app = typer.Typer(help="SamPlan: the shared care plan FHIR service.", no_args_is_help=True,
                  rich_markup_mode=None)


def _default(name: str) -> object:
    """A setting's default, so `--help` shows what the service really uses."""
    return Settings.model_fields[name].default


SERVE_EPILOG = """Every option can also be set by its variable (shown in brackets). All the
other settings are SAMPLAN_* variables too, for example SAMPLAN_DATABASE_URL
(default sqlite+aiosqlite:///var/samplan.db), SAMPLAN_AUTH_ENABLED (default
true), SAMPLAN_PUBLIC_BASE_URL, SAMPLAN_LOG_FORMAT (json or text); every one
is in docs/configuration.md (`samplan config-docs` writes it)."""


@app.command(epilog=SERVE_EPILOG)
def serve(
    host: Annotated[str, typer.Option(
        help="Address to bind.", envvar="SAMPLAN_HOST", show_envvar=True,
    )] = str(_default("host")),
    port: Annotated[int, typer.Option(
        help="Port to bind.", envvar="SAMPLAN_PORT", show_envvar=True,
    )] = int(str(_default("port"))),
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
    migrate: Annotated[bool, typer.Option(
        help="Run migrations before serving (say what they did).")] = False,
    with_worker: Annotated[bool, typer.Option(
        "--with-worker", help="Also deliver subscription notifications in this process.",
        envvar="SAMPLAN_SUBSCRIPTIONS_IN_PROCESS_WORKER", show_envvar=True)] = False,
    graceful_timeout: Annotated[float, typer.Option(
        help="Seconds in-flight requests may take after SIGTERM.",
        envvar="SAMPLAN_SHUTDOWN_GRACE_SECONDS", show_envvar=True,
    )] = float(str(_default("shutdown_grace_seconds"))),
) -> None:
    """Serve the FHIR API on http://HOST:PORT/fhir."""
    import math

    import uvicorn

    from samplan.observability.logs import logging_config
    from samplan.settings import get_settings

    os.environ["SAMPLAN_HOST"] = host
    os.environ["SAMPLAN_PORT"] = str(port)
    if with_worker:
        os.environ["SAMPLAN_SUBSCRIPTIONS_IN_PROCESS_WORKER"] = "true"
    get_settings.cache_clear()
    settings = _safe_settings()
    if migrate:
        _migrate(settings.database_url)
    if with_worker and workers > 1 and settings.is_sqlite:
        typer.echo("refusing: on SQLite only one process may deliver (use --workers 1 or "
                   "a separate `samplan worker`)", err=True)
        raise typer.Exit(2)
    uvicorn.run(
        "samplan.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_config=logging_config(settings.log_format, settings.log_level),
        log_level=settings.log_level.lower(),
        access_log=False,  # samplan.access writes one line per request, with its request id
        proxy_headers=True,
        timeout_graceful_shutdown=math.ceil(graceful_timeout),
    )


@app.command()
def migrate() -> None:
    """Bring the database schema to the newest revision; say whether it was created,
    upgraded or left as it was."""
    _migrate(_safe_settings().database_url)


@app.command()
def worker() -> None:
    """Deliver subscription notifications (any number on PostgreSQL, one on SQLite)."""
    from samplan.observability.logs import configure_logging
    from samplan.subscriptions.worker import run_worker

    settings = _safe_settings()
    configure_logging(settings.log_format, settings.log_level)
    # SIGTERM: stop claiming, let in-flight deliveries finish, release every claimed row
    asyncio.run(run_worker(settings))


def _safe_settings() -> Settings:
    """The settings, or exit 2 with the reason when production may not run with them."""
    from pydantic import ValidationError

    from samplan.security.authn import UnsafeConfiguration, refuse_unsafe_configuration
    from samplan.settings import get_settings

    try:
        settings = get_settings()
        asyncio.run(refuse_unsafe_configuration(settings))
    except ValidationError as exc:
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        typer.echo(f"refusing: invalid settings: {reasons}", err=True)
        raise typer.Exit(2) from None
    except UnsafeConfiguration as exc:
        typer.echo(f"refusing: {exc}", err=True)
        raise typer.Exit(2) from None
    return settings


def _migrate(database_url: str) -> None:
    from samplan.security.gate import migrate_schema

    typer.echo(migrate_schema(database_url))


@app.command("load-demo")
def load_demo(
    path: Annotated[
        Path | None, typer.Argument(help="A transaction Bundle (default: demo).")
    ] = None,
) -> None:
    """Load the demo agreement (idempotent: conditional creates)."""
    from samplan.demo import load

    _safe_settings()
    created = asyncio.run(load(path))
    typer.echo(f"demo data loaded ({created} entries)")


@app.command()
def token(
    scope: Annotated[str, typer.Option(help="Space-separated scopes, e.g. 'patient/*.rs'.")],
    patient: Annotated[str | None, typer.Option(help="Patient id or personnummer.")] = None,
    org: Annotated[
        str | None, typer.Option(help="Organisation HSA-id (organizationHsaId).")
    ] = None,
    user: Annotated[str | None, typer.Option(help="Staff HSA-id (employeeHsaId).")] = None,
    fhir_user: Annotated[
        str | None, typer.Option("--fhir-user", help="fhirUser, e.g. Practitioner/123.")
    ] = None,
    care_provider: Annotated[
        str | None, typer.Option(help="Care provider HSA-id (healthCareProviderHsaId).")
    ] = None,
    care_unit: Annotated[
        str | None, typer.Option(help="Care unit HSA-id (commissionHsaId).")
    ] = None,
    lifetime: Annotated[int, typer.Option(help="Seconds until it expires.")] = 3600,
) -> None:
    """Mint a token signed by the local development key (never in production).

    The token is printed alone on the last line of stdout:
    TOKEN=$(samplan token --scope 'patient/*.rs' --patient 194501011235 | tail -n1)
    """
    from samplan.security.devkeys import load_or_create_dev_key
    from samplan.security.token_advice import claims_of, warnings_for
    from samplan.settings import get_settings

    settings = get_settings()
    if settings.environment == "production":
        typer.echo("refusing: development tokens are not trusted in production", err=True)
        raise typer.Exit(2)
    if settings.jwks_file is not None or settings.jwks_url:
        typer.echo("note: this server trusts SAMPLAN_JWKS_*, not the development key", err=True)
    key = load_or_create_dev_key(settings.data_dir)
    minted = key.mint(
        scopes=scope, issuer=settings.token_issuer, audience=settings.token_audience,
        patient=patient, fhir_user=fhir_user, org=org, user=user,
        care_provider=care_provider, care_unit=care_unit, lifetime_s=lifetime,
    )
    for warning in warnings_for(claims_of(minted)):
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"# development token ({key.kid}), valid {lifetime} s, scope: {scope}")
    typer.echo(minted)


@app.command("import-notes")
def import_notes(
    folder: Annotated[Path, typer.Argument(help="Folder of notes (*.json, *.txt).")],
    report: Annotated[Path, typer.Option(help="Where failures are written (JSON lines).")] = Path(
        "import-failures.jsonl"),
    journal: Annotated[Path, typer.Option(
        help="The notes already imported, one a line: a run started again skips them.")] = Path(
        "import-notes.journal"),
    concurrency: Annotated[int, typer.Option(help="Notes imported at once.")] = 8,
) -> None:
    """Import a folder of keyword notes: progress with rate and time left; interrupt it
    (Ctrl-C) and run it again to go on (no note is imported twice)."""
    import signal

    from samplan.agreement.bulk import import_folder
    from samplan.agreement.notes import AgreementNotes
    from samplan.main import build_services, close_services

    settings = _safe_settings()

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.current_task()

        def interrupt() -> None:  # the first: finish what is under way; the second: now
            if stop.is_set() and task is not None:
                task.cancel()
            stop.set()

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, interrupt)
        services = await build_services(settings)
        try:
            notes = AgreementNotes(services.gate.as_service())
            summary = await import_folder(notes, folder, report=report, journal=journal,
                                          concurrency=concurrency, stop=stop)
        finally:
            await close_services(services)
        if summary.interrupted:
            raise KeyboardInterrupt
        counts = summary.counts
        typer.echo(f"created {counts['created']}, updated {counts['updated']}, "
                   f"unchanged {counts['unchanged']}, failed {counts['failed']}, "
                   f"already done {counts['skipped']}; {summary.rate:.0f} notes/s"
                   + (f" (see {report})" if counts["failed"] else ""))
        if counts["failed"]:
            raise typer.Exit(1)

    try:
        asyncio.run(run())
    except (KeyboardInterrupt, asyncio.CancelledError):
        typer.echo(f"interrupted: what was imported is in {journal}; run the same command "
                   "again to go on", err=True)
        raise typer.Exit(130) from None


@app.command()
def openapi(
    output: Annotated[Path, typer.Option(help="Where to write it.")] = Path("openapi/openapi.json"),
    check: Annotated[bool, typer.Option(help="Only check that the file is up to date.")] = False,
) -> None:
    """Export the OpenAPI document (operationIds, FHIR media types, security scheme)."""
    from samplan.openapi_export import export_document, render

    _write_or_check(output, render(export_document()), check, "make openapi")


@app.command("config-docs")
def config_docs(
    output: Annotated[Path, typer.Option(help="Where to write it.")] = Path(
        "docs/configuration.md"),
    check: Annotated[bool, typer.Option(help="Only check that the file is up to date.")] = False,
) -> None:
    """Write docs/configuration.md from the Settings class."""
    from samplan.config_docs import render

    _write_or_check(output, render(), check, "samplan config-docs")


def _write_or_check(output: Path, text: str, check: bool, fix: str) -> None:
    if check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        if current != text:
            typer.echo(f"{output} is out of date: run `{fix}`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{output} is up to date")
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {output}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
