"""Subscriptions (R5 Backport IG for R4): topics, matching in the write transaction, delivery.

| module | what |
|---|---|
| ``topics``        | SubscriptionTopics (Basic, from ``fhir_profiles/subscription-topics/``) |
| ``model``         | a Subscription read and checked (the write check, 422s) |
| ``signing``       | the subscriber's secret: sealed at rest, HMAC-SHA256 signatures |
| ``endpoints``     | which endpoint URLs and addresses may be contacted |
| ``matching``      | the before-commit hook: state and outbox rows in the write's transaction |
| ``store``         | all SQL of this feature |
| ``notifications`` | notification Bundles and SubscriptionStatus Parameters |
| ``delivery``      | one signed POST; the backoff formula |
| ``worker``        | ``samplan worker``: claims, delivers in order, retries, dead letters |
| ``service``       | ``install()``: types, hooks, CapabilityStatement; ``$status``, ``$events`` |
| ``receiver``      | a small notification receiver (tests, bench), with signature checks |
| ``bench``         | commit-to-receipt latency measurement |
"""
