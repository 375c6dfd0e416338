"""The access log: one row per access to patient data (issue 6).

Revision ID: 0002_audit_events
Revises: 0001_resources
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_audit_events"
down_revision = "0001_resources"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("recorded", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(1), nullable=False),
        sa.Column("interaction", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(2), nullable=False),
        sa.Column("agent_kind", sa.String(16), nullable=False),
        sa.Column("agent_subject", sa.String(255), nullable=False),
        sa.Column("agent_user_hsa_id", sa.String(64), nullable=True),
        sa.Column("agent_unit_hsa_id", sa.String(64), nullable=True),
        sa.Column("agent_provider_hsa_id", sa.String(64), nullable=True),
        sa.Column("agent_org_hsa_id", sa.String(64), nullable=True),
        sa.Column("agent_fhir_user", sa.String(128), nullable=True),
        sa.Column("client_id", sa.String(255), nullable=True),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("entity_type", sa.String(64), nullable=True),
        sa.Column("entity_id", sa.String(64), nullable=True),
        sa.Column("client_ip", sa.String(64), nullable=True),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.UniqueConstraint("event_id", name="uq_audit_events_event_id"),
    )
    op.create_index("ix_audit_events_patient", "audit_events", ["patient_id", "recorded"])
    op.create_index("ix_audit_events_recorded", "audit_events", ["recorded"])


def downgrade() -> None:
    op.drop_table("audit_events")
