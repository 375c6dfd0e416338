"""Subscription topics, matching inside the write transaction, the outbox and the delivery worker."""
