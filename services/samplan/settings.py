"""Service settings, read once from ``SAMPLAN_*`` environment variables.

One class so every knob is documented in one place (docs/configuration.md is
generated from it) and so tests build their own instance instead of patching
globals.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})


class Settings(BaseSettings):
    """Everything the service can be told from the outside."""

    model_config = SettingsConfigDict(env_prefix="SAMPLAN_", extra="ignore")

    environment: Literal["development", "test", "production"] = Field(
        "development", description="Production refuses development keys and disabled auth."
    )
    database_url: str = Field(
        "sqlite+aiosqlite:///var/samplan.db",
        description="sqlite+aiosqlite:///path or postgresql+asyncpg://user@host:port/db",
    )
    database_pool_size: int = Field(
        32, description="Database connections per process (no overflow: requests queue)."
    )
    database_connect_timeout: float = Field(
        5.0, gt=0, description="Seconds to open a database connection; past it (or when the "
        "database refuses) the request is answered 503 with Retry-After."
    )
    database_pool_timeout: float = Field(
        5.0, gt=0, description="Seconds a request waits for a free pooled database connection "
        "before it is answered 503 with Retry-After."
    )
    host: str = Field("127.0.0.1", description="Address `samplan serve` binds to.")
    port: int = Field(8080, description="Port `samplan serve` binds to.")
    public_base_url: str | None = Field(
        None,
        description="Absolute FHIR base used in links, fullUrls and Location. Unset (or empty): "
        "each request's own scheme and host (forwarding headers only from "
        "SAMPLAN_TRUSTED_PROXIES); outside a request (the delivery worker) "
        "http://HOST:PORT/fhir, with localhost for a wildcard HOST.",
    )
    trusted_proxies: list[str] = Field(
        [], description="Addresses or CIDR networks of the reverse proxies whose "
        "X-Forwarded-Proto, X-Forwarded-Host and Forwarded headers are believed, "
        'as JSON: ["10.0.0.0/8", "127.0.0.1"]. None by default.'
    )
    max_body_bytes: int = Field(1_048_576, description="Largest accepted request body (413 above).")
    max_json_depth: int = Field(64, description="Deepest accepted JSON nesting (400 above).")
    default_page_size: int = Field(20, description="Search page size when _count is not given.")
    max_page_size: int = Field(1000, description="Largest _count honoured.")
    timezone: str = Field(
        "Europe/Stockholm",
        description="Zone for dates without an offset (search on a plain date, keyword notes).",
    )
    profiles_dir: Path | None = Field(
        None, description="Folder of conformance resources (default: the packaged fhir_profiles/)."
    )
    data_dir: Path = Field(Path("var"), description="Local state: SQLite file, development key.")
    auth_enabled: bool = Field(
        True, description="Bearer tokens required; false only for a local demo."
    )
    staff_reach_provider: bool = Field(
        False, description=(
            "Staff tokens also reach the patients of their care provider's units (every "
            "Organization under healthCareProviderHsaId by partOf). Off: staff reach their "
            "care unit's patients, as the patient-data law's care relation asks; systems "
            "(a region's journal integration) always act for their provider's units."
        ),
    )
    audit_enabled: bool = Field(
        True, description=(
            "An AuditEvent for every read and write of patient data. false only with auth "
            "off, outside production (a benchmark's baseline, a demo); refused otherwise."
        ),
    )
    token_issuer: str = Field("https://samplan.local/dev", description="Expected `iss` of tokens.")
    token_audience: str = Field(
        "https://samplan.local/fhir", description="Expected `aud` of tokens."
    )
    jwks_url: str | None = Field(None, description="JWKS URL of the token issuer.")
    jwks_file: Path | None = Field(None, description="JWKS file of the token issuer.")
    authorization_endpoint: str | None = Field(
        None, description="The token issuer's OAuth2 authorization endpoint, published in "
        "SMART discovery (with a token endpoint: the authorization_code grant and app launch). "
        "None by default: this server issues no tokens."
    )
    token_endpoint: str | None = Field(
        None, description="The token issuer's OAuth2 token endpoint, published in SMART "
        "discovery (the client_credentials grant of backend services). None by default."
    )
    subscriptions_allow_private_endpoints: bool = Field(
        False, description="Allow rest-hook endpoints on loopback/private addresses."
    )
    webhook_secret_key: SecretStr | None = Field(
        None, description="Key that encrypts stored subscription secrets."
    )
    subscriptions_retention_days: float = Field(
        30, description="How long subscription events are kept for $events."
    )
    subscriptions_max_attempts: int = Field(
        8, description="Delivery attempts of one notification before the subscription errs."
    )
    subscriptions_backoff_base: float = Field(
        1.0, description="Seconds before the first retry; doubles per attempt (full jitter)."
    )
    subscriptions_backoff_cap: float = Field(
        300.0, description="Longest wait in seconds between two delivery attempts."
    )
    subscriptions_timeout: float = Field(
        10.0, description="Seconds a notification POST may take (channel backport-timeout wins)."
    )
    subscriptions_lease_margin: float = Field(
        15.0, description="Seconds a worker's claim outlives its POST timeout (crash takeover)."
    )
    subscriptions_worker_poll_interval: float = Field(
        0.5, description="Seconds between the worker's looks for due work when not woken."
    )
    subscriptions_worker_concurrency: int = Field(
        32, description="Subscriptions one worker delivers to at the same time."
    )
    subscriptions_in_process_worker: bool = Field(
        False, description="Run the delivery worker inside `samplan serve` (--with-worker)."
    )

    log_format: Literal["json", "text"] = Field(
        "json", description="Log lines as JSON objects (with request_id) or as plain text."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level logged by `samplan serve` and `samplan worker`."
    )
    metrics_token: SecretStr | None = Field(
        None, description="Bearer token Prometheus must send to /metrics (open when unset)."
    )
    otel_enabled: bool = Field(
        False, description="OpenTelemetry tracing over OTLP (OTEL_EXPORTER_OTLP_* env; "
        "needs `pip install 'samplan[otel]'`)."
    )
    shutdown_grace_seconds: float = Field(
        20.0, description="On SIGTERM: seconds in-flight requests and deliveries may take."
    )

    rate_limit_per_minute: int | None = Field(
        None, description="Requests per minute per client (token client_id and subject) for "
        "every kind of caller without a setting of its own; 0 is off. With auth off, set it to "
        "limit each address (no limit otherwise). Over a limit: 429 with Retry-After."
    )
    rate_limit_system_per_minute: int | None = Field(
        None, description="Requests per minute per system client (system/ scopes), 0 is off. "
        "Default 6000 (100 a second; off when SAMPLAN_ENVIRONMENT=test)."
    )
    rate_limit_staff_per_minute: int | None = Field(
        None, description="Requests per minute per staff member's app (user/ scopes), 0 is off. "
        "Default 600 (off when SAMPLAN_ENVIRONMENT=test)."
    )
    rate_limit_patient_per_minute: int | None = Field(
        None, description="Requests per minute per patient or relative (patient/ scopes), 0 is "
        "off. Default 300 (off when SAMPLAN_ENVIRONMENT=test)."
    )
    rate_limit_clients: dict[str, int] = Field(
        {}, description="Requests per minute for named token client ids, over their kind's "
        'budget, as JSON: {"journal-engine": 30000}; 0 is no limit for that client.'
    )
    rate_limit_burst: int | None = Field(
        None, description="Requests a client may send at once on top of the steady rate "
        "(default: a tenth of its per-minute rate, at least 10)."
    )
    rate_limit_unauthenticated_per_minute: int | None = Field(
        None, description="Requests per minute per IP address without a valid token (public "
        "paths, 401 answers); 0 is off. Default 120 (off when SAMPLAN_ENVIRONMENT=test)."
    )
    cors_origins: list[str] = Field(
        [], description="Browser origins (portals) allowed to call the API, "
        'as JSON: ["https://portal.example.se"]. None by default.'
    )

    @field_validator("public_base_url")
    @classmethod
    def _absolute_base(cls, value: str | None) -> str | None:
        """Empty is unset (``SAMPLAN_PUBLIC_BASE_URL=`` in a compose file or a shell)."""
        if value is None or not value.strip():
            return None
        text = value.strip().rstrip("/")
        if not text.startswith(("http://", "https://")) or "?" in text or "#" in text:
            raise ValueError(f"SAMPLAN_PUBLIC_BASE_URL: {value!r} is no absolute http(s) URL")
        return text

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError as exc:
                raise ValueError(f"SAMPLAN_TRUSTED_PROXIES: {entry!r} is no address or "
                                 "CIDR network") from exc
        return [entry.strip() for entry in value]

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if not self.audit_enabled and self.auth_enabled:
            raise ValueError("SAMPLAN_AUDIT_ENABLED=false needs SAMPLAN_AUTH_ENABLED=false: "
                             "real callers' access to patient data is always logged")
        if self.environment == "production":
            if not self.auth_enabled:
                raise ValueError("SAMPLAN_AUTH_ENABLED=false is not allowed in production")
            if not self.audit_enabled:
                raise ValueError("SAMPLAN_AUDIT_ENABLED=false is not allowed in production")
            if self.subscriptions_allow_private_endpoints:
                raise ValueError("private subscription endpoints are not allowed in production")
            if self.webhook_secret_key is None:
                raise ValueError("SAMPLAN_WEBHOOK_SECRET_KEY is required in production")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def base_url(self) -> str:
        """The base of links made outside a request (notifications, the CapabilityStatement's
        default): the configured one, else where ``samplan serve`` listens. A wildcard
        address (``0.0.0.0``, ``::``) is no place to send anyone: localhost stands in."""
        if self.public_base_url:
            return self.public_base_url
        host = "localhost" if self.host in WILDCARD_HOSTS else self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}/fhir"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
