"""Resources, their history and the search index tables.

Revision ID: 0001_resources
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_resources"
down_revision = None
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _owner_columns() -> list[sa.Column[str]]:
    return [
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "resources",
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("resource_type", "resource_id", name="pk_resources"),
    )
    op.create_index("ix_resources_type_updated", "resources", ["resource_type", "last_updated"])
    op.create_table(
        "resource_versions",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=True),
    )
    op.create_index("uq_resource_versions_key", "resource_versions",
                    ["resource_type", "resource_id", "version_id"], unique=True)
    op.create_index("ix_resource_versions_type_seq", "resource_versions", ["resource_type", "seq"])

    op.create_table("idx_token", *_owner_columns(),
                    sa.Column("system", sa.String(255), nullable=True),
                    sa.Column("code", sa.String(255), nullable=False))
    op.create_index("ix_idx_token_search", "idx_token",
                    ["resource_type", "param", "code", "system"])
    op.create_index("ix_idx_token_owner", "idx_token", ["resource_type", "resource_id"])

    op.create_table("idx_reference", *_owner_columns(),
                    sa.Column("target_type", sa.String(64), nullable=False),
                    sa.Column("target_id", sa.String(64), nullable=False))
    op.create_index("ix_idx_reference_search", "idx_reference",
                    ["target_id", "target_type", "param", "resource_type"])
    op.create_index("ix_idx_reference_owner", "idx_reference", ["resource_type", "resource_id"])

    op.create_table("idx_date", *_owner_columns(),
                    sa.Column("low", sa.BigInteger(), nullable=False),
                    sa.Column("high", sa.BigInteger(), nullable=False))
    op.create_index("ix_idx_date_search", "idx_date", ["resource_type", "param", "low", "high"])
    op.create_index("ix_idx_date_owner", "idx_date", ["resource_type", "resource_id"])

    op.create_table("idx_string", *_owner_columns(),
                    sa.Column("value", sa.String(255), nullable=False))
    op.create_index("ix_idx_string_search", "idx_string", ["resource_type", "param", "value"])
    op.create_index("ix_idx_string_owner", "idx_string", ["resource_type", "resource_id"])


def downgrade() -> None:
    for table in ("idx_string", "idx_date", "idx_reference", "idx_token", "resource_versions",
                  "resources"):
        op.drop_table(table)
