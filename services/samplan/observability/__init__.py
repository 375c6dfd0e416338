"""Operating the service: Prometheus metrics, JSON logs with request ids, readiness, tracing.

``install(app, settings)`` adds the request middleware (outermost: it sees the
401s of the auth middleware too) and the ``/metrics`` route; ``attach(services)``
hooks the counters that need the running services (audit write failures).
"""

from __future__ import annotations

from samplan.observability.install import attach, install

__all__ = ["attach", "install"]
