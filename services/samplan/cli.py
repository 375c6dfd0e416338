"""The ``samplan`` command: serve, migrate, load demo data."""

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
) -> None:
    """Serve the FHIR API on http://HOST:PORT/fhir."""
    import uvicorn

    from samplan.settings import get_settings

    if host is not None:
        os.environ["SAMPLAN_HOST"] = host
    if port is not None:
        os.environ["SAMPLAN_PORT"] = str(port)
    get_settings.cache_clear()
    settings = get_settings()
    if migrate:
        _migrate(settings.database_url)
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
