"""The scenario table: what is measured, against what it is compared, and what it needs.

A scenario turns the ids sampled from the loaded dataset into a
:class:`~bench.client.Workload`. ``compare`` names the ceiling scenario its
ratio is computed against (reads against the ceiling's read, writes against
its write). ``needs`` names server features the scenario depends on; when
the server's CapabilityStatement does not offer them the scenario is skipped
and the report says why, so scenarios for features still to come can sit in
the table before the feature does.

Adding one (see bench/README.md):

* the Patient view, once ``Patient/{id}/$agreement`` exists::

      Scenario("agreement", "Patient/{id}/$agreement", compare="read",
               workload=lambda s: Workload("get", [f"/fhir/Patient/{p}/$agreement"
                                                   for p in s.patients]),
               needs=frozenset({"operation:agreement"}))

* ``$import-note``: a ``post`` workload of keyword notes (templates with
  placeholders, like the transaction's), ``compare="update"``;
* auth and audit: a second :class:`Mode` with the server's settings and a
  bearer token in ``headers`` (bench/__main__.py runs every mode);
* notification latency needs a receiver and a steady write rate rather than
  a closed loop: a new ``mode`` in bench/client.py.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from bench import dataset
from bench.client import Workload


@dataclass(frozen=True, slots=True)
class Sample:
    """Ids drawn at random from the loaded dataset, and what a scenario may need besides."""

    careplans: list[str]
    patients: list[str]  # the subject of careplans[i] is patients[i]
    seed: int
    patients_loaded: int


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    title: str
    compare: Literal["read", "update"]
    workload: Callable[[Sample], Workload]
    needs: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Mode:
    """How the server runs and what every request carries (auth and audit on or off)."""

    name: str
    env: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)


def _read(s: Sample) -> Workload:
    return Workload("get", [f"/fhir/CarePlan/{i}" for i in s.careplans])


def _search(s: Sample) -> Workload:
    return Workload("get", [f"/fhir/CarePlan?patient={p}&_include=CarePlan:care-team"
                            for p in s.patients])


def _update(s: Sample) -> Workload:
    return Workload("update", [f"/fhir/CarePlan/{i}" for i in s.careplans])


TEMPLATES = 16


def _transaction(s: Sample) -> Workload:
    pool, _ = dataset.shared_pool(s.seed)
    made = [dataset.transaction_template(k, pool, s.seed) for k in range(TEMPLATES)]
    rng = random.Random()
    # New patients every run (identifiers carry the run token too), far from the dataset's
    first = rng.randrange(dataset.BIRTH_DAYS * 100, dataset.BIRTH_DAYS * 400)
    run = f"bench{rng.randrange(16**6):06x}"
    return Workload("post", path="/fhir", templates=[t for t, _ in made],
                    genders=[g for _, g in made], first=first, run=run)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("read", "read CarePlan by id", "read", _read),
    Scenario("search", "search CarePlan?patient=&_include=CarePlan:care-team", "read", _search),
    Scenario("update", "update CarePlan, If-Match", "update", _update),
    Scenario("transaction", "transaction: a full agreement", "update", _transaction),
    # Still to come (issue 7): "agreement" (Patient/{id}/$agreement, needs
    # operation:agreement), "import-note" ($import-note), notification latency
    # once subscriptions exist. See the module docstring.
)

# The ceiling app (bench/ceiling.py) implements exactly these two.
CEILING: tuple[Scenario, ...] = (
    Scenario("read", "ceiling: read by id", "read", _read),
    Scenario("update", "ceiling: update, If-Match", "update", _update),
)

# The per-client rate limit is off in every mode: the load generator is one client
# asking as fast as it can, which is what the limit exists to refuse.
_NO_RATE_LIMIT = {"SAMPLAN_RATE_LIMIT_PER_MINUTE": "0",
                  "SAMPLAN_RATE_LIMIT_UNAUTHENTICATED_PER_MINUTE": "0"}

MODES: tuple[Mode, ...] = (
    Mode("auth off", {"SAMPLAN_AUTH_ENABLED": "false", **_NO_RATE_LIMIT}),
    # When auth and audit are wired into the API (issue 6):
    # Mode("auth+audit", {"SAMPLAN_AUTH_ENABLED": "true", **_NO_RATE_LIMIT, ...},
    #      {"Authorization": "Bearer <token from samplan.security.devkeys>"}),
)


def server_features(capability: dict[str, Any]) -> set[str]:
    """What a CapabilityStatement offers, as names ``needs`` can use: operation:<name>."""
    features: set[str] = set()
    for rest in capability.get("rest", []):
        for op in rest.get("operation", []):
            features.add(f"operation:{op.get('name', '').lstrip('$')}")
        for resource in rest.get("resource", []):
            for op in resource.get("operation", []):
                features.add(f"operation:{op.get('name', '').lstrip('$')}")
    return features
