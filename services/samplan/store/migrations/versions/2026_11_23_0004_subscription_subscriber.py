"""Subscriptions: the access facts of the principal that last wrote each Subscription.

Notifications only carry what that principal may read (docs/security.md,
"Notifications"); the facts (kind, HSA-ids, patient claim, scopes; never the
token) are kept as JSON next to the delivery state. NULL means the service
itself wrote the Subscription (no restriction).

Revision ID: 0004_subscription_subscriber
Revises: 0003_subscriptions
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_subscription_subscriber"
down_revision = "0003_subscriptions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("subscriber", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("subscriber")
