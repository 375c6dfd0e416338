"""Alembic migrations (async env); `samplan migrate` runs them to head."""
