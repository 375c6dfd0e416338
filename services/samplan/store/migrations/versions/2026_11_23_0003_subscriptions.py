"""Subscriptions: delivery state per Subscription, the outbox of events, the attempt log.

Revision ID: 0003_subscriptions
Revises: 0002_audit_events
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_subscriptions"
down_revision = "0002_audit_events"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("events_count", sa.BigInteger(), nullable=False),
        sa.Column("due_at", sa.BigInteger(), nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.BigInteger(), nullable=True),
        sa.Column("handshake_attempts", sa.Integer(), nullable=False),
        sa.Column("last_sent_at", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_subscriptions"),
    )
    op.create_index("ix_subscriptions_due", "subscriptions", ["status", "due_at"])
    op.create_index("ix_subscriptions_topic", "subscriptions", ["topic", "status"])

    op.create_table(
        "subscription_events",
        sa.Column("subscription_id", sa.String(64), nullable=False),
        sa.Column("event_number", sa.BigInteger(), nullable=False),
        sa.Column("focus_type", sa.String(64), nullable=False),
        sa.Column("focus_id", sa.String(64), nullable=False),
        sa.Column("focus_version", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("occurred_at", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=False),
        sa.Column("delivered_at", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("subscription_id", "event_number",
                                name="pk_subscription_events"),
    )
    op.create_index("ix_subscription_events_state", "subscription_events",
                    ["subscription_id", "state", "event_number"])
    op.create_index("ix_subscription_events_occurred", "subscription_events", ["occurred_at"])

    op.create_table(
        "subscription_attempts",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("subscription_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("first_event", sa.BigInteger(), nullable=True),
        sa.Column("last_event", sa.BigInteger(), nullable=True),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("duration_us", sa.BigInteger(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(64), nullable=False),
    )
    op.create_index("ix_subscription_attempts_subscription", "subscription_attempts",
                    ["subscription_id", "seq"])
    op.create_index("ix_subscription_attempts_at", "subscription_attempts", ["at"])


def downgrade() -> None:
    for table in ("subscription_attempts", "subscription_events", "subscriptions"):
        op.drop_table(table)
