"""The database schema as SQLAlchemy Core tables (the migrations create them).

``resources`` holds the current version of each resource (its bytes too, so
a read by id is one primary-key lookup); ``resource_versions`` is the
append-only history, numbered by a global ``seq`` so history paging is stable.
The ``idx_*`` tables hold one row per indexed value of the *current* version.
Times are integers (microseconds since the epoch) so comparisons and sorting
behave the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# BIGINT on PostgreSQL, INTEGER on SQLite (so it can be the rowid alias).
SeqType = BigInteger().with_variant(Integer(), "sqlite")

resources = Table(
    "resources",
    metadata,
    Column("resource_type", String(64), primary_key=True),
    Column("resource_id", String(64), primary_key=True),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", LargeBinary, nullable=True),
    Index("ix_resources_type_updated", "resource_type", "last_updated"),
)

resource_versions = Table(
    "resource_versions",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("method", String(8), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", LargeBinary, nullable=True),
    Index("uq_resource_versions_key", "resource_type", "resource_id", "version_id", unique=True),
    Index("ix_resource_versions_type_seq", "resource_type", "seq"),
)

idx_token = Table(
    "idx_token",
    metadata,
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    Column("system", String(255), nullable=True),
    Column("code", String(255), nullable=False),
    Index("ix_idx_token_search", "resource_type", "param", "code", "system"),
    Index("ix_idx_token_owner", "resource_type", "resource_id"),
)

idx_reference = Table(
    "idx_reference",
    metadata,
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    Column("target_type", String(64), nullable=False),
    Column("target_id", String(64), nullable=False),
    Index("ix_idx_reference_search", "target_id", "target_type", "param", "resource_type"),
    Index("ix_idx_reference_owner", "resource_type", "resource_id"),
)

idx_date = Table(
    "idx_date",
    metadata,
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    Column("low", BigInteger, nullable=False),
    Column("high", BigInteger, nullable=False),
    Index("ix_idx_date_search", "resource_type", "param", "low", "high"),
    Index("ix_idx_date_owner", "resource_type", "resource_id"),
)

idx_string = Table(
    "idx_string",
    metadata,
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", String(64), nullable=False),
    Column("param", String(64), nullable=False),
    Column("value", String(255), nullable=False),
    Index("ix_idx_string_search", "resource_type", "param", "value"),
    Index("ix_idx_string_owner", "resource_type", "resource_id"),
)

INDEX_TABLES = (idx_token, idx_reference, idx_date, idx_string)

# The access log (issue 6): one row per access to patient data, append-only.
# ``content`` is the FHIR AuditEvent as served; the other columns are what the
# log is searched by (patient, time, agent).
audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("recorded", BigInteger, nullable=False),
    Column("action", String(1), nullable=False),
    Column("interaction", String(32), nullable=False),
    Column("outcome", String(2), nullable=False),
    Column("agent_kind", String(16), nullable=False),
    Column("agent_subject", String(255), nullable=False),
    Column("agent_user_hsa_id", String(64), nullable=True),
    Column("agent_unit_hsa_id", String(64), nullable=True),
    Column("agent_provider_hsa_id", String(64), nullable=True),
    Column("agent_org_hsa_id", String(64), nullable=True),
    Column("agent_fhir_user", String(128), nullable=True),
    Column("client_id", String(255), nullable=True),
    Column("patient_id", String(64), nullable=True),
    Column("entity_type", String(64), nullable=True),
    Column("entity_id", String(64), nullable=True),
    Column("client_ip", String(64), nullable=True),
    Column("content", LargeBinary, nullable=False),
    Index("ix_audit_events_patient", "patient_id", "recorded"),
    Index("ix_audit_events_recorded", "recorded"),
)

# Subscriptions (issue 4, services/samplan/subscriptions/). ``subscriptions`` is the
# delivery state of each Subscription resource (its event counter, status, worker
# lease); ``subscription_events`` is the outbox, one row per event per subscription,
# written in the same transaction as the change; ``subscription_attempts`` logs
# every delivery attempt.
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("topic", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("config", Text, nullable=False),
    Column("secret", Text, nullable=True),
    Column("events_count", BigInteger, nullable=False, default=0),
    Column("due_at", BigInteger, nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", BigInteger, nullable=True),
    Column("handshake_attempts", Integer, nullable=False, default=0),
    Column("last_sent_at", BigInteger, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    # who wrote the Subscription (security/subscriber.py; NULL: the service itself)
    Column("subscriber", Text, nullable=True),
    Index("ix_subscriptions_due", "status", "due_at"),
    Index("ix_subscriptions_topic", "topic", "status"),
)

subscription_events = Table(
    "subscription_events",
    metadata,
    Column("subscription_id", String(64), primary_key=True),
    Column("event_number", BigInteger, primary_key=True),
    Column("focus_type", String(64), nullable=False),
    Column("focus_id", String(64), nullable=False),
    Column("focus_version", Integer, nullable=False),
    Column("method", String(8), nullable=False),
    Column("occurred_at", BigInteger, nullable=False),
    Column("state", String(12), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("delivered_at", BigInteger, nullable=True),
    Column("last_error", Text, nullable=True),
    Index("ix_subscription_events_state", "subscription_id", "state", "event_number"),
    Index("ix_subscription_events_occurred", "occurred_at"),
)

subscription_attempts = Table(
    "subscription_attempts",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("subscription_id", String(64), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("first_event", BigInteger, nullable=True),
    Column("last_event", BigInteger, nullable=True),
    Column("at", BigInteger, nullable=False),
    Column("duration_us", BigInteger, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("ok", Boolean, nullable=False),
    Column("error", Text, nullable=True),
    Column("worker", String(64), nullable=False),
    Index("ix_subscription_attempts_subscription", "subscription_id", "seq"),
    Index("ix_subscription_attempts_at", "at"),
)
