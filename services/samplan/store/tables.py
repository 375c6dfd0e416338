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
