"""What routes get from the application: the services built once by the lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import httpx
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from samplan.interactions.service import FhirService
from samplan.settings import Settings
from samplan.store.repository import Repository


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    repo: Repository
    fhir: FhirService
    http: httpx.AsyncClient
    capability: bytes = b""
    extras: dict[str, Any] = field(default_factory=dict)


async def get_services(request: Request) -> Services:
    """Async on purpose: a sync dependency costs a threadpool hop per request."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
