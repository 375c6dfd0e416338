"""Index ``meta.security`` and ``meta.tag`` as ``_security`` and ``_tag`` for every resource.

Searches for patients and relatives leave out ``NOPATIENT``-labelled resources
in SQL (so totals and paging cursors never count or name them), and owned
resources (Subscriptions) are searched by their owner tag: both read these
index rows, which writes fill from now on. This fills them for what is stored.

Revision ID: 0005_meta_label_index
Revises: 0004_subscription_subscriber
Create Date: 2026-12-03
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0005_meta_label_index"
down_revision = "0004_subscription_subscriber"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    conn = op.get_bind()
    resources = sa.table("resources", sa.column("resource_type"), sa.column("resource_id"),
                         sa.column("deleted"), sa.column("content"))
    idx_token = sa.table("idx_token", sa.column("resource_type"), sa.column("resource_id"),
                         sa.column("param"), sa.column("system"), sa.column("code"))
    rows = conn.execute(sa.select(resources.c.resource_type, resources.c.resource_id,
                                  resources.c.content)
                        .where(resources.c.deleted == sa.false()))
    pending: list[dict[str, object]] = []
    for rtype, rid, content in rows:
        if not content or (b'"security"' not in bytes(content) and b'"tag"' not in bytes(content)):
            continue
        meta = json.loads(bytes(content)).get("meta") or {}
        for name, key in (("_security", "security"), ("_tag", "tag")):
            for coding in meta.get(key) or ():
                if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                    system = coding.get("system")
                    pending.append({"resource_type": rtype, "resource_id": rid, "param": name,
                                    "system": system if isinstance(system, str) else None,
                                    "code": coding["code"][:255]})
        if len(pending) >= _BATCH:
            conn.execute(sa.insert(idx_token), pending)
            pending = []
    if pending:
        conn.execute(sa.insert(idx_token), pending)


def downgrade() -> None:
    op.execute("DELETE FROM idx_token WHERE param IN ('_security', '_tag')")
