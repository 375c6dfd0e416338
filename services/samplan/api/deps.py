"""What routes get from the application: the services built once by the lifespan.

Every field is typed and set at start: a missing gate is a startup error, never
a silent fallback to something that reads the store unguarded. Patient data is
reached only through :meth:`Services.access` (the gate, for one request).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import httpx
from fastapi import Depends, Request
from starlette.types import Scope

from samplan.agreement.coauthoring import ContributionCheck
from samplan.api.base_url import BaseUrlResolver
from samplan.fhir.profiles import ProfileRegistry
from samplan.followup.install import FollowUp
from samplan.security.authn import Authenticator
from samplan.security.gate import Access, Gate
from samplan.security.principal import Principal
from samplan.settings import Settings
from samplan.subscriptions.service import SubscriptionFeature


@dataclass
class Services:
    settings: Settings
    gate: Gate
    authenticator: Authenticator
    http: httpx.AsyncClient
    profiles: ProfileRegistry
    subscriptions: SubscriptionFeature
    followup: FollowUp
    capability: bytes = b""
    co_creation_check: ContributionCheck | None = None
    """Replaces the default rule of who may add to a patient's plan (tests, policy)."""
    links: BaseUrlResolver = field(init=False)
    """The FHIR base of each request's links (``api/base_url.py``), settings parsed once."""

    def __post_init__(self) -> None:
        self.links = BaseUrlResolver.from_settings(self.settings)

    def base_url(self, scope: Scope) -> str:
        """The FHIR base this request's links and ``Location`` headers use."""
        return self.links(scope)

    def access(self, principal: Principal, client_ip: str | None,
               base_url: str | None = None) -> Access:
        """The FHIR interactions as ``principal`` may use them, for one request; its links
        start with ``base_url`` (the configured base when None: nothing it answers links)."""
        return self.gate.access(principal, client_ip=client_ip, base_url=base_url)


def link_base(access: Access) -> str:
    """The base of the links an :class:`Access` answers with (set when it is made)."""
    assert access.base_url is not None, "an Access always has its base"
    return access.base_url


async def get_services(request: Request) -> Services:
    """Async on purpose: a sync dependency costs a threadpool hop per request."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
