"""The scenario table: what is measured, against what it is compared, and what it needs.

A scenario turns the ids sampled from the loaded dataset into a
:class:`~bench.client.Workload`. ``compare`` names the ceiling scenario its
ratio is computed against (reads against the ceiling's read, writes against
its write). ``needs`` names server features the scenario depends on; when
the server's CapabilityStatement does not offer them the scenario is skipped
and the report says why, so scenarios for features still to come can sit in
the table before the feature does.

Adding one (see bench/README.md): a name, a title, ``compare``, a function from
the :class:`Sample` to a :class:`~bench.client.Workload` (``get`` paths, an
``update``, or ``post`` templates with ``@PNR@``/``@BIRTH@``/``@TOKEN@``
placeholders and their ``content_type``), and ``needs``. ``latency=True``
marks a row that is not a load run (``notify``: bench/__main__.py
``measure_notify``; ``compare="none"``, no ratio). Every scenario runs in every
:class:`Mode` (auth and audit off; auth+audit with a staff token minted with the server's
development key).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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
    compare: Literal["read", "update", "none"]
    workload: Callable[[Sample], Workload]
    needs: frozenset[str] = frozenset()
    # a latency row (notification commit -> receipt at a steady rate), not a load run:
    # its own server with --with-worker, no ratio to a ceiling
    latency: bool = False
    # a timed row, one request at a time on the mode's server (indicators: bench/indicators.py)
    timed: bool = False
    # a command, not a server: `samplan import-notes DIR` on the backend (bench/bulk.py)
    command: bool = False


@dataclass(frozen=True, slots=True)
class Mode:
    """How the server runs and what every request carries (auth and audit on or off)."""

    name: str
    env: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)
    # headers that need the server's data directory (a token signed by its dev key)
    auth: Callable[[Path], dict[str, str]] | None = None


def _read(s: Sample) -> Workload:
    return Workload("get", [f"/fhir/CarePlan/{i}" for i in s.careplans])


def _search(s: Sample) -> Workload:
    return Workload("get", [f"/fhir/CarePlan?patient={p}&_include=CarePlan:care-team"
                            for p in s.patients])


def _update(s: Sample) -> Workload:
    return Workload("update", [f"/fhir/CarePlan/{i}" for i in s.careplans])


TEMPLATES = 16
NOTIFY_RATE = 20.0  # writes per second
NOTIFY_SECONDS = 10.0  # of writes (--quick: 3)


def _transaction(s: Sample) -> Workload:
    pool, _ = dataset.shared_pool(s.seed)
    made = [dataset.transaction_template(k, pool, s.seed) for k in range(TEMPLATES)]
    rng = random.Random()
    # New patients every run (identifiers carry the run token too), far from the dataset's
    first = rng.randrange(dataset.BIRTH_DAYS * 100, dataset.BIRTH_DAYS * 400)
    run = f"bench{rng.randrange(16**6):06x}"
    return Workload("post", path="/fhir", templates=[t for t, _ in made],
                    genders=[g for _, g in made], first=first, run=run)


def _agreement(s: Sample) -> Workload:
    return Workload("get", [f"/fhir/Patient/{p}/$agreement" for p in s.patients],
                    headers={"Accept": "application/fhir+json"})


NOTE_TEMPLATE = Path(__file__).with_name("templates") / "import-note.json"


def _import_note(_: Sample) -> Workload:
    """POST the region's example keyword note, a new noteId and personnummer each time."""
    rng = random.Random()
    first = rng.randrange(dataset.BIRTH_DAYS * 100, dataset.BIRTH_DAYS * 400)
    run = f"note{rng.randrange(16**6):06x}"
    return Workload("post", path="/fhir/CarePlan/$import-note",
                    templates=[NOTE_TEMPLATE.read_text(encoding="utf-8")], genders=["female"],
                    first=first, run=run, content_type="application/json")


def _notify(_: Sample) -> Workload:
    return Workload("notify")  # run by bench/__main__.py: measure_latency, not a load generator


def _indicators(_: Sample) -> Workload:
    return Workload("indicators")  # run by bench/indicators.py: measure, one request at a time


def _import_notes(_: Sample) -> Workload:
    return Workload("command")  # run by bench/bulk.py: `samplan import-notes DIR`, once


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("read", "read CarePlan by id", "read", _read),
    Scenario("search", "search CarePlan?patient=&_include=CarePlan:care-team", "read", _search),
    Scenario("agreement", "Patient/{id}/$agreement (FHIR document)", "read", _agreement,
             needs=frozenset({"operation:agreement"})),
    Scenario("update", "update CarePlan, If-Match", "update", _update),
    Scenario("transaction", "transaction: a full agreement", "update", _transaction),
    Scenario("import-note", "$import-note: a keyword note, new agreement", "update",
             _import_note, needs=frozenset({"operation:import-note"})),
    Scenario("notify", f"notification commit -> receipt (ms), {NOTIFY_RATE:g} writes/s",
             "none", _notify, latency=True),
    Scenario("indicators", "all 7 $evaluate-measure, one year (ms a pass)", "none",
             _indicators, needs=frozenset({"operation:evaluate-measure"}), timed=True),
    Scenario("import-notes", "samplan import-notes DIR: a backlog, one process (notes/s)",
             "none", _import_notes, command=True),
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

# Auth on: the server checks a bearer token on every request, computes the caller's
# reach (the CareTeams naming its organisations) and audits every read and write, as
# in production. The token is the region's journal integration's (system/*.cruds,
# issue 15) signed by the development key the server makes in its SAMPLAN_DATA_DIR
# (the bench's work directory): its organisation is the care provider every care unit
# of the dataset is part of (bench/dataset.py: REGION_HSA_ID), so it reaches every
# patient through the units; the note $import-note posts names the region as its care
# provider, so its unit is registered under it and the new agreements are in reach too.

def region_token(data_dir: Path, lifetime_s: int = 4 * 3600) -> str:
    from samplan.security.devkeys import load_or_create_dev_key
    from samplan.settings import Settings

    defaults = Settings(auth_enabled=True)
    return load_or_create_dev_key(data_dir).mint(
        scopes="system/*.cruds", issuer=defaults.token_issuer, audience=defaults.token_audience,
        org=dataset.REGION_HSA_ID, lifetime_s=lifetime_s)


def _bearer(data_dir: Path) -> dict[str, str]:
    return {"Authorization": f"Bearer {region_token(data_dir)}"}


MODES: tuple[Mode, ...] = (
    Mode("auth+audit off", {"SAMPLAN_AUTH_ENABLED": "false", "SAMPLAN_AUDIT_ENABLED": "false",
                            **_NO_RATE_LIMIT}),
    Mode("auth+audit", {"SAMPLAN_AUTH_ENABLED": "true", "SAMPLAN_ENVIRONMENT": "development",
                        **_NO_RATE_LIMIT}, auth=_bearer),
)


def server_features(capability: dict[str, Any],
                    openapi: dict[str, Any] | None = None) -> set[str]:
    """What the server offers, as names ``needs`` can use: operation:<name>.

    From the CapabilityStatement and, since SamPlan's does not list its operations
    (yet), from the ``$name`` path segments of its OpenAPI document.
    """
    features: set[str] = set()
    for path in (openapi or {}).get("paths", {}):
        for segment in path.split("/"):
            if segment.startswith("$"):
                features.add(f"operation:{segment[1:]}")
    for rest in capability.get("rest", []):
        for op in rest.get("operation", []):
            features.add(f"operation:{op.get('name', '').lstrip('$')}")
        for resource in rest.get("resource", []):
            for op in resource.get("operation", []):
                features.add(f"operation:{op.get('name', '').lstrip('$')}")
    return features
