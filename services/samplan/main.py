"""The application factory and its lifespan, which owns every long-lived resource."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import orjson
from fastapi import FastAPI
from starlette.responses import Response

from samplan import observability, openapi_export
from samplan.api import auth as api_auth
from samplan.api import errors as api_errors
from samplan.api import hardening, smart
from samplan.api.agreement_fast import AgreementMiddleware
from samplan.api.deps import Services
from samplan.api.fast_read import FastReadMiddleware
from samplan.api.fhir import router as fhir_router
from samplan.api.indicators_page import router as indicators_page_router
from samplan.api.measures import router as measures_router
from samplan.api.operations import router as operations_router
from samplan.api.paths import TrailingSlashMiddleware
from samplan.api.patient import router as patient_router
from samplan.api.subscriptions import router as subscriptions_router
from samplan.fhir import conformance, identifiers
from samplan.fhir.capability import CONTRIBUTORS, capability_statement
from samplan.fhir.profiles import ProfileRegistry
from samplan.fhir.registry import REGISTRY
from samplan.fhir.resource import WRITE_CHECKS
from samplan.fhir.stored import WriteConflict
from samplan.followup import install as followup
from samplan.mapping.questionnaire import questionnaire
from samplan.mapping.spec import default_mappings
from samplan.observability.health import readiness
from samplan.security.authn import build_authenticator
from samplan.security.gate import open_gate
from samplan.settings import Settings, get_settings
from samplan.subscriptions import service as subscriptions

_PROFILES: dict[str, ProfileRegistry] = {}


def load_profiles(settings: Settings) -> ProfileRegistry:
    """The profile registry of ``settings.profiles_dir`` (loaded once per folder per process)."""
    directory = settings.profiles_dir or conformance.DEFAULT_PROFILES_DIR
    key = str(directory.resolve())
    if key not in _PROFILES:
        _PROFILES[key] = ProfileRegistry.load(directory)
    return _PROFILES[key]


def questionnaires() -> list[dict[str, object]]:
    """Each keyword-template variant published as a Questionnaire (Cambio's FHIR shape)."""
    return [{**questionnaire(m), "id": m.id} for m in default_mappings()]


def install_write_checks(profiles: ProfileRegistry) -> None:
    """Checks every write passes (idempotent: the app may be created many times in tests).

    Identifiers first (they normalise personnummer in place), then the profiles
    the resource claims in ``meta.profile``.
    """
    if identifiers.normalise_identifiers not in WRITE_CHECKS:
        WRITE_CHECKS.append(identifiers.normalise_identifiers)
    if not any(getattr(c, "__self__", None) is profiles for c in WRITE_CHECKS):
        WRITE_CHECKS[:] = [c for c in WRITE_CHECKS
                           if not isinstance(getattr(c, "__self__", None), ProfileRegistry)]
        WRITE_CHECKS.append(profiles.validate)


def _advertise_profiles(profiles: ProfileRegistry) -> None:
    def contribute(statement: dict[str, object]) -> None:
        rest = statement["rest"]
        assert isinstance(rest, list)
        for entry in rest[0]["resource"]:
            supported = profiles.supported_profiles(entry["type"])
            if supported:
                entry["supportedProfile"] = supported
            if entry["type"] in REGISTRY and REGISTRY[entry["type"]].supports("create"):
                entry.setdefault("operation", []).append({
                    "name": "validate",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                })

    CONTRIBUTORS[:] = [c for c in CONTRIBUTORS if getattr(c, "__name__", "") != "contribute"]
    CONTRIBUTORS.append(contribute)


async def _retrying_conflicts(step: Callable[[], Awaitable[object]], attempts: int = 5) -> None:
    """Replicas starting at once store the same conformance resources: the loser retries
    (and then finds them stored)."""
    for attempt in range(1, attempts + 1):
        try:
            await step()
            return
        except WriteConflict:
            if attempt == attempts:
                raise
            await asyncio.sleep(0.05 * attempt)


async def build_services(settings: Settings) -> Services:
    http = httpx.AsyncClient(timeout=httpx.Timeout(10.0))
    try:  # first: production must not even touch the database with unsafe keys
        authenticator = await build_authenticator(settings, http)
    except Exception:
        await http.aclose()
        raise
    gate = await open_gate(settings)
    try:
        profiles = load_profiles(settings)
        conformance.register_conformance_types()
        install_write_checks(profiles)
        _advertise_profiles(profiles)
        feature = subscriptions.install(settings, gate)  # before the CapabilityStatement
        follow_up = followup.install(profiles)  # the seven questions and the Measures (issue 16)
        await _retrying_conflicts(lambda: gate.sync_conformance(
            [*profiles.conformance_resources(), *questionnaires(), *feature.topics.resources(),
             *follow_up.measure_resources]))
        capability = orjson.dumps(
            capability_statement(settings.base_url, auth_enabled=settings.auth_enabled,
                                 authorize_url=settings.authorization_endpoint,
                                 token_url=settings.token_endpoint))
        services = Services(settings, gate, authenticator, http, profiles, feature, follow_up,
                            capability)
        await feature.start(http)  # topics stored; in-process worker if --with-worker
    except BaseException:
        await http.aclose()
        await gate.close()
        raise
    return services


async def close_services(services: Services) -> None:
    await services.subscriptions.stop()
    await services.http.aclose()
    await services.gate.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await build_services(settings)
        app.state.services = services
        observability.attach(services)
        # Start-up leaves ~190,000 long-lived objects (profiles, models, SQL); a full
        # collection walking them stalls every request for 50-180 ms (the read p99,
        # issue 7). Frozen, the collector leaves them alone; they live as long as we do.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # collectable again (tests start many apps in one process)
            await close_services(services)

    app = FastAPI(
        title="SamPlan",
        version="0.1.0",
        summary="The documented agreement (dokumenterad överenskommelse) as a FHIR R4 service.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    api_errors.install(app)
    app.add_middleware(FastReadMiddleware)  # innermost: reads by id skip the router
    app.add_middleware(AgreementMiddleware)  # and Patient/{id}/$agreement documents
    app.add_middleware(hardening.ClientRateLimitMiddleware, settings=settings)  # after auth
    app.add_middleware(api_auth.BearerAuthMiddleware)
    app.add_middleware(hardening.HardeningMiddleware, settings=settings,  # before auth
                       public=api_auth.PUBLIC_PATHS, public_prefixes=api_auth.PUBLIC_PREFIXES)
    app.add_middleware(TrailingSlashMiddleware)  # /fhir/ is /fhir, never a 307
    observability.install(app, settings)  # outermost: request id, metrics, access log
    openapi_export.install(app)
    app.include_router(smart.router)  # SMART discovery (public)
    app.include_router(subscriptions_router)  # before fhir_router: Subscription/$status
    app.include_router(operations_router)
    app.include_router(patient_router)  # before fhir_router: Patient/{id}/$agreement
    app.include_router(measures_router)  # follow-up (issue 16): Measure/{id}/$evaluate-measure
    app.include_router(indicators_page_router)  # /portal/indicators and its CSV
    app.include_router(fhir_router)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        """Ready: the database answers and is at this code's migration head (else 503)."""
        return await readiness(app.state.services.gate)

    return app
