"""The ``samplan`` command: serve, migrate, load demo data, mint development tokens."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="SamPlan: the shared care plan FHIR service.", no_args_is_help=True)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (SAMPLAN_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind (SAMPLAN_PORT).")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
    migrate: Annotated[bool, typer.Option(help="Run migrations before serving.")] = False,
    with_worker: Annotated[bool, typer.Option(
        "--with-worker", help="Also deliver subscription notifications in this process.")] = False,
) -> None:
    """Serve the FHIR API on http://HOST:PORT/fhir."""
    import uvicorn

    from samplan.settings import get_settings

    if host is not None:
        os.environ["SAMPLAN_HOST"] = host
    if port is not None:
        os.environ["SAMPLAN_PORT"] = str(port)
    if with_worker:
        os.environ["SAMPLAN_SUBSCRIPTIONS_IN_PROCESS_WORKER"] = "true"
    get_settings.cache_clear()
    settings = get_settings()
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
        log_level="info",
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=20,
    )


@app.command()
def migrate() -> None:
    """Bring the database schema to the newest revision."""
    from samplan.settings import get_settings

    _migrate(get_settings().database_url)
    typer.echo("database is at the newest revision")


@app.command()
def worker() -> None:
    """Deliver subscription notifications (any number on PostgreSQL, one on SQLite)."""
    import logging

    from samplan.settings import get_settings
    from samplan.subscriptions.worker import run_worker

    logging.basicConfig(level=getattr(logging, os.environ.get("SAMPLAN_LOG_LEVEL", "INFO")),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(run_worker(get_settings()))


def _migrate(database_url: str) -> None:
    from samplan.store import migrate as migrations

    migrations.upgrade(database_url)


@app.command("load-demo")
def load_demo(
    path: Annotated[Path | None, typer.Argument(help="A transaction Bundle (default: demo).")] = None,
) -> None:
    """Load the demo agreement (idempotent: conditional creates)."""
    from samplan.demo import load

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
    typer.echo(f"# development token ({key.kid}), valid {lifetime} s, scope: {scope}")
    typer.echo(minted)


@app.command("import-notes")
def import_notes(
    folder: Annotated[Path, typer.Argument(help="Folder of notes (*.json, *.txt).")],
    report: Annotated[Path, typer.Option(help="Where failures are written (JSON lines).")] = Path(
        "import-failures.jsonl"),
    concurrency: Annotated[int, typer.Option(help="Notes imported at once.")] = 4,
) -> None:
    """Import a folder of keyword notes (idempotent by note id: safe to re-run)."""
    from samplan.agreement.bulk import import_folder
    from samplan.main import build_services, close_services
    from samplan.settings import get_settings

    async def run() -> None:
        services = await build_services(get_settings())
        try:
            summary = await import_folder(services.extras["notes"], folder, report=report,
                                          concurrency=concurrency)
        finally:
            await close_services(services)
        counts = summary.counts
        typer.echo(f"created {counts['created']}, updated {counts['updated']}, "
                   f"unchanged {counts['unchanged']}, failed {counts['failed']}"
                   + (f" (see {report})" if counts["failed"] else ""))
        if counts["failed"]:
            raise typer.Exit(1)

    asyncio.run(run())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
