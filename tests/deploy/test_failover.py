"""The database goes away and comes back; the service rides it out without a restart (issue 17).

A dedicated PostgreSQL cluster (so the session's own is never stopped), one real
`samplan serve` and one real `samplan worker`, auth on, a subscriber (a real
receiver) to every plan change. Both tests run against the same two processes,
which are never restarted:

* ``test_database_outage``: under a steady load of writes, reads, searches and
  probes, PostgreSQL is stopped (``pg_ctl stop -m fast``, as a failover or a
  maintenance window does) for six seconds and started again. During the outage
  every request is answered quickly with a 503 OperationOutcome (``transient``,
  ``Retry-After``), never a 500 and never a hang; ``/readyz`` is 503 and
  ``/healthz`` 200; ``/metrics`` still answers. After it, writes and reads
  succeed within seconds, ``/readyz`` is 200 again, the worker LISTENs again and
  delivers; nothing acknowledged is lost, every read that returned data has its
  access-log entry, and every plan version reaches the subscriber (each event
  number with one meaning, first arrivals in order).
* ``test_full_server``: PostgreSQL refuses new connections (``max_connections``
  reached) while the service's connections are gone: the same quick 503; once
  slots are free again, the service recovers by itself.

The time from the database's return to the first successful write of the API and
of the worker is printed (the issue's closing note).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from samplan.security.devkeys import load_or_create_dev_key
from samplan.subscriptions.bench import subscription_body
from samplan.subscriptions.receiver import Receiver
from support.pgcluster import (
    ENV_URL,
    PostgresUnavailable,
    TemporaryCluster,
    find_pg_bin,
    temporary_cluster,
)

from .cluster import FAST_SUBSCRIPTIONS, SAMPLAN, Process, free_port, wait_ready, wait_worker

pytestmark = [pytest.mark.postgres, pytest.mark.e2e, pytest.mark.timeout(240)]

ORG_HSA = "SE2321000073-2001"
HSA_SYSTEM = "urn:oid:1.2.752.29.4.19"
SECRET = "a-failover-receiver-secret-0123456789"
MAX_CONNECTIONS = 40
CONNECT_TIMEOUT = 2.0
POOL_TIMEOUT = 2.0
#: an answer during the outage comes within the timeouts (and the machine's noise)
QUICK = CONNECT_TIMEOUT + POOL_TIMEOUT + 1.0
OUTAGE_SECONDS = 6.0
#: the worker polls this rarely: a delivery sooner than this after a quiet write was
#: woken by its LISTEN connection
WORKER_POLL = 5.0
WRITERS = 4


@dataclass
class Call:
    op: str
    start: float
    end: float
    status: int | None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def transient(self) -> bool:
        """A 503 OperationOutcome ``transient`` with ``Retry-After``."""
        return (self.status == 503 and isinstance(self.body, dict)
                and self.body.get("resourceType") == "OperationOutcome"
                and self.body["issue"][0]["code"] == "transient"
                and int(self.headers.get("retry-after", "0")) > 0)


@dataclass
class Service:
    cluster: TemporaryCluster
    base: str
    root: str
    api: Process
    worker: Process
    receiver: Receiver
    headers: dict[str, str]
    subscription: str
    plans: list[str]

    @property
    def dsn(self) -> str:
        return self.cluster.url.replace("+asyncpg", "", 1)


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    if os.environ.get("SAMPLAN_TEST_SKIP_POSTGRES"):
        pytest.skip("SAMPLAN_TEST_SKIP_POSTGRES is set")
    if os.environ.get(ENV_URL):
        pytest.skip(f"{ENV_URL} is set: this test stops and starts a cluster of its own")
    if find_pg_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server programs are missing on CI (see .ci/run)")
        pytest.skip("PostgreSQL server programs not installed")
    work = Path(tempfile.mkdtemp(prefix="samplan-failover-"))
    processes: list[Process] = []
    receiver = Receiver(SECRET).start()
    try:
        with temporary_cluster(max_connections=str(MAX_CONNECTIONS)) as cluster:
            port = free_port()
            root = f"http://127.0.0.1:{port}"
            env = {
                **os.environ,
                "SAMPLAN_DATABASE_URL": cluster.url,
                "SAMPLAN_DATABASE_POOL_SIZE": "6",
                "SAMPLAN_DATABASE_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
                "SAMPLAN_DATABASE_POOL_TIMEOUT": str(POOL_TIMEOUT),
                "SAMPLAN_ENVIRONMENT": "test",
                "SAMPLAN_AUTH_ENABLED": "true",
                "SAMPLAN_DATA_DIR": str(work / "keys"),
                "SAMPLAN_PUBLIC_BASE_URL": f"{root}/fhir",
                "SAMPLAN_SUBSCRIPTIONS_ALLOW_PRIVATE_ENDPOINTS": "true",
                "SAMPLAN_LOG_FORMAT": "json",
                **FAST_SUBSCRIPTIONS,
                "SAMPLAN_SUBSCRIPTIONS_WORKER_POLL_INTERVAL": str(WORKER_POLL),
            }
            migrate = Process("migrate", [str(SAMPLAN), "migrate"], env, work).start()
            assert migrate.wait(120) == 0, migrate.log()
            api = Process("api", [str(SAMPLAN), "serve", "--host", "127.0.0.1",
                                  "--port", str(port)], env, work).start()
            worker = Process("worker", [str(SAMPLAN), "worker"], env, work).start()
            processes += [api, worker]
            wait_ready(f"{root}/readyz", api)
            wait_worker(worker, 0)
            key = load_or_create_dev_key(work / "keys")
            token = key.mint(scopes="system/*.cruds", issuer="https://samplan.local/dev",
                             audience="https://samplan.local/fhir", org=ORG_HSA,
                             lifetime_s=3600)
            headers = {"Authorization": f"Bearer {token}",
                       "Content-Type": "application/fhir+json"}
            subscription, plans = asyncio.run(_seed(f"{root}/fhir/", headers, receiver))
            yield Service(cluster, f"{root}/fhir/", root, api, worker, receiver, headers,
                          subscription, plans)
            for process in processes:
                assert process.alive, f"{process.name} exited:\n{process.log()[-3000:]}"
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL here: {exc}")
    finally:
        for process in reversed(processes):
            process.stop()
        receiver.stop()
        if os.environ.get("SAMPLAN_KEEP_CLUSTER_LOGS"):
            sys.stderr.write(f"failover logs kept in {work}\n")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


async def _seed(base: str, headers: dict[str, str], receiver: Receiver) -> tuple[str, list[str]]:
    """A care unit, its patient and plans, and a subscription to every plan change."""
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        created = await client.post("Subscription",
                                    json=subscription_body(receiver.url, SECRET, max_count=5))
        assert created.status_code == 201, created.text
        org = await client.post("Organization", json={
            "resourceType": "Organization", "name": "Vårdcentralen Failover",
            "identifier": [{"system": HSA_SYSTEM, "value": ORG_HSA}]})
        assert org.status_code == 201, org.text
        assert (await client.put("Patient/pt-f", json={
            "resourceType": "Patient", "id": "pt-f", "name": [{"family": "Failoversson"}]})
        ).is_success
        assert (await client.put("CareTeam/team-f", json={
            "resourceType": "CareTeam", "id": "team-f", "status": "active",
            "subject": {"reference": "Patient/pt-f"},
            "participant": [{"member": {"reference": f"Organization/{org.json()['id']}"}}],
        })).is_success
        plans = [f"cp-f{i}" for i in range(WRITERS)]
        for plan in plans:
            assert (await client.put(f"CarePlan/{plan}", json=_plan(plan, "start"))).is_success
        return str(created.json()["id"]), plans


def _plan(plan_id: str, title: str) -> dict[str, Any]:
    return {"resourceType": "CarePlan", "id": plan_id, "status": "active", "intent": "plan",
            "title": title, "subject": {"reference": "Patient/pt-f"}}


@dataclass
class Load:
    """Writers (PUT, each its own plan), a reader, a searcher and a prober, until stopped."""

    service: Service
    client: httpx.AsyncClient
    calls: list[Call] = field(default_factory=list)
    written: list[tuple[str, int, str]] = field(default_factory=list)  # (plan, version, title)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def call(self, op: str, method: str, url: str,
                   body: dict[str, Any] | None = None) -> Call:
        start = time.monotonic()
        try:
            response = await self.client.request(method, url, json=body)
        except httpx.HTTPError as exc:  # a hang (the client's timeout) or a dropped connection
            done = Call(op, start, time.monotonic(), None, error=repr(exc))
        else:
            try:
                parsed = response.json()
            except ValueError:
                parsed = response.text
            done = Call(op, start, time.monotonic(), response.status_code, parsed,
                        {k.lower(): v for k, v in response.headers.items()})
        self.calls.append(done)
        return done

    async def writer(self, plan: str) -> None:
        while not self.stop.is_set():
            title = uuid.uuid4().hex
            done = await self.call("write", "PUT", f"CarePlan/{plan}", _plan(plan, title))
            if done.ok:
                self.written.append((plan, int(done.body["meta"]["versionId"]), title))
            await asyncio.sleep(0.03)

    async def reader(self) -> None:
        plans = self.service.plans
        n = 0
        while not self.stop.is_set():
            await self.call("read", "GET", f"CarePlan/{plans[n % len(plans)]}")
            await self.call("search", "GET", "CarePlan?patient=Patient/pt-f&_count=5")
            n += 1
            await asyncio.sleep(0.05)

    async def prober(self) -> None:
        root = self.service.root
        while not self.stop.is_set():
            await self.call("readyz", "GET", f"{root}/readyz")
            await self.call("healthz", "GET", f"{root}/healthz")
            await self.call("metrics", "GET", f"{root}/metrics")
            await asyncio.sleep(0.1)

    async def run(self) -> None:
        await asyncio.gather(*(self.writer(p) for p in self.service.plans),
                             self.reader(), self.prober())

    def between(self, lo: float, hi: float, *ops: str) -> list[Call]:
        return [c for c in self.calls if lo <= c.start and c.end <= hi and (not ops or c.op in ops)]


async def test_database_outage(service: Service, capsys: pytest.CaptureFixture[str]) -> None:
    cluster = service.cluster
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
    async with httpx.AsyncClient(base_url=service.base, headers=service.headers,
                                 limits=limits, timeout=20) as client:
        load = Load(service, client)
        running = asyncio.create_task(load.run())
        await asyncio.sleep(3)
        halting = time.monotonic()
        await asyncio.to_thread(cluster.halt, "fast")
        down = time.monotonic()
        await asyncio.sleep(OUTAGE_SECONDS)
        resuming = time.monotonic()
        await asyncio.to_thread(cluster.resume)
        back, back_wall = time.monotonic(), time.time()
        await asyncio.sleep(8)
        load.stop.set()
        await running

        # -- during the outage: a quick 503 OperationOutcome (transient, Retry-After) ----------
        outage = [c for c in load.calls if c.end >= halting and c.start <= back
                  and c.op not in ("healthz", "metrics")]
        wrong = [c for c in outage if not (c.ok or c.transient)]
        assert not wrong, ([(c.op, c.status, c.error, c.body) for c in wrong[:5]],
                           _errors(service.api))
        answered_down = load.between(down, resuming)
        assert [c for c in answered_down if c.op == "write"], "no write tried in the outage"
        assert all(c.transient for c in answered_down
                   if c.op in ("write", "read", "search", "readyz")), "not 503 while down"
        slow = [c for c in outage if c.end - c.start > QUICK]
        assert not slow, [(c.op, c.end - c.start) for c in slow[:5]]
        assert not [c for c in load.calls if c.status is None], "a request hung or was dropped"
        assert not [c for c in load.calls if c.status == 500]
        # liveness and metrics do not depend on the database
        assert all(c.status == 200 for c in load.calls if c.op in ("healthz", "metrics"))
        scraped_down = [c for c in answered_down if c.op == "metrics"]
        assert scraped_down
        assert all("samplan_database_up 0.0" in c.body for c in scraped_down)

        # -- after it: everything succeeds within seconds, without a restart -----------------
        def first_ok(op: str) -> float:
            done = [c.end for c in load.calls if c.op == op and c.ok and c.end >= back]
            assert done, f"no {op} succeeded after the database came back"
            return min(done) - back

        api_first_write = first_ok("write")
        readyz_back = first_ok("readyz")
        assert api_first_write < 5, api_first_write
        assert first_ok("read") < 5
        assert first_ok("search") < 5
        assert readyz_back < 5, readyz_back
        settled = load.between(back + 5, float("inf"))
        assert settled
        assert all(c.ok for c in settled), [(c.op, c.status, c.body)
                                            for c in settled if not c.ok][:5]
        assert all("samplan_database_up 1.0" in c.body for c in settled if c.op == "metrics")

        # the worker LISTENs again: once it is idle, a quiet write is delivered long before
        # its next poll
        await _delivered(service, await _events_count(service))
        await asyncio.sleep(0.5)
        listening = await _listening(service.dsn)
        assert listening == 1, f"{listening} connections LISTEN"
        quiet = await client.put(f"CarePlan/{service.plans[0]}",
                                 json=_plan(service.plans[0], "quiet"))
        sent = time.monotonic()
        assert quiet.is_success, quiet.text
        load.written.append((service.plans[0], int(quiet.json()["meta"]["versionId"]), "quiet"))
        await _delivered(service, await _events_count(service), timeout=WORKER_POLL * 3)
        woken_after = time.monotonic() - sent
        assert woken_after < 1.0, f"delivered after {woken_after:.1f} s: polled, not woken"

    await _nothing_lost(service, load)
    worker_first_write = await _worker_first_write(service.dsn, back_wall)
    assert worker_first_write is not None
    assert worker_first_write < 10, worker_first_write
    summary = (f"\nfailover: PostgreSQL down {resuming - down:.1f} s under load; "
               f"{len(load.calls)} requests, {len(outage)} around the outage, all 2xx or 503 "
               f"(slowest {max(c.end - c.start for c in outage):.2f} s), 0 lost\n"
               f"time from the database's return to the first successful write: "
               f"API {api_first_write:.2f} s, worker {worker_first_write:.2f} s; "
               f"/readyz 200 after {readyz_back:.2f} s; a quiet write delivered in "
               f"{woken_after:.2f} s (LISTEN)\n")
    with capsys.disabled():
        sys.stdout.write(summary)


def _errors(process: Process) -> list[str]:
    """The ERROR lines of a process's JSON log: the message and the last line of its stack."""
    found = []
    for line in process.log().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("level") == "ERROR":
            stack = str(record.get("exc", "")).strip().splitlines()
            found.append(f"{record.get('msg')} {stack[-1] if stack else ''}")
    return found[:10]


async def _events_count(service: Service) -> int:
    conn = await asyncpg.connect(service.dsn)
    try:
        return int(await conn.fetchval("SELECT events_count FROM subscriptions WHERE id = $1",
                                       service.subscription))
    finally:
        await conn.close()


async def _delivered(service: Service, count: int, timeout: float = 30) -> None:
    """Until the subscriber has received every event number up to ``count``."""
    wanted = set(range(1, count + 1))
    await service.receiver.wait_for(
        lambda: wanted <= set(service.receiver.event_numbers(service.subscription)),
        timeout=timeout, what=f"events 1-{count}")


async def _listening(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'LISTEN %'"))
    finally:
        await conn.close()


async def _worker_first_write(dsn: str, since_wall: float) -> float | None:
    """Seconds from ``since_wall`` to the first event the worker marked delivered after it."""
    conn = await asyncpg.connect(dsn)
    try:
        first = await conn.fetchval(
            "SELECT min(delivered_at) FROM subscription_events WHERE delivered_at >= $1",
            int(since_wall * 1_000_000))
    finally:
        await conn.close()
    return None if first is None else first / 1_000_000 - since_wall


async def _nothing_lost(service: Service, load: Load) -> None:
    """Every acknowledged write in the history with its event; every event delivered, each
    number with one meaning, first arrivals in order; every read that got data logged."""
    conn = await asyncpg.connect(service.dsn)
    try:
        versions = {(r["resource_id"], r["version_id"]): bytes(r["content"]) for r in
                    await conn.fetch("SELECT resource_id, version_id, content FROM "
                                     "resource_versions WHERE resource_type = 'CarePlan'")}
        events = {(r["focus_id"], r["focus_version"]): r["event_number"] for r in
                  await conn.fetch("SELECT focus_id, focus_version, event_number FROM "
                                   "subscription_events WHERE subscription_id = $1 "
                                   "AND focus_type = 'CarePlan'", service.subscription)}
        count = int(await conn.fetchval("SELECT events_count FROM subscriptions WHERE id = $1",
                                        service.subscription))
        logged = {r["entity_id"]: int(r["n"]) for r in await conn.fetch(
            "SELECT entity_id, count(*) AS n FROM audit_events WHERE interaction = 'read' "
            "AND entity_type = 'CarePlan' GROUP BY entity_id")}
    finally:
        await conn.close()
    assert len(load.written) > 50
    for plan, version, title in load.written:
        content = versions.get((plan, version))
        assert content is not None, f"{plan} v{version} lost"
        assert title.encode() in content, f"{plan} v{version} is not what was written"
        assert (plan, version) in events, f"{plan} v{version} has no event"
    assert count == len(events) >= len(load.written)
    # every event reaches the subscriber: at least once, one meaning per number, in order
    deadline = time.monotonic() + 30
    while True:
        received = service.receiver.notifications(service.subscription)
        numbers = {n for item in received for n in item.event_numbers}
        if numbers >= set(range(1, count + 1)) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert numbers == set(range(1, count + 1)), sorted(set(range(1, count + 1)) - numbers)[:10]
    meaning: dict[int, tuple[str, str]] = {}
    first_seen: list[int] = []
    for item in received:
        assert item.signature_ok
        for event in item.status["notification-event"]:
            number = int(event["event-number"])
            what = (str(event.get("focus", {}).get("reference")), str(event["timestamp"]))
            assert meaning.setdefault(number, what) == what, f"event {number} changed meaning"
            if number not in first_seen:
                first_seen.append(number)
    assert first_seen == sorted(first_seen), "events first arrived out of order"
    # the access-log rule: no data sent without its entry
    reads: dict[str, int] = {}
    for c in load.calls:
        if c.op == "read" and c.ok:
            plan = str(c.body["id"])
            reads[plan] = reads.get(plan, 0) + 1
    for plan, n in reads.items():
        assert logged.get(plan, 0) >= n, f"{n} reads of {plan} returned data, " \
                                         f"{logged.get(plan, 0)} logged"


async def test_full_server(service: Service) -> None:
    """max_connections reached: the same quick 503; then recovery without a restart."""
    holders: list[asyncpg.Connection] = []

    async def fill() -> None:
        while True:
            try:
                holders.append(await asyncpg.connect(service.dsn, timeout=5))
            except asyncpg.TooManyConnectionsError:
                return

    try:
        await fill()
        pids = [h.get_server_pid() for h in holders]
        # the service's connections go (as in a failover); their slots are taken at once
        terminated = await holders[0].fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> ALL($1::int[])", pids)
        await fill()
        assert terminated > 0
        async with httpx.AsyncClient(base_url=service.base, headers=service.headers,
                                     timeout=20) as client:
            load = Load(service, client)
            calls = [await load.call("write", "PUT", f"CarePlan/{service.plans[1]}",
                                     _plan(service.plans[1], "full")) for _ in range(3)]
            calls += [await load.call("search", "GET", "CarePlan?_count=2") for _ in range(3)]
            calls.append(await load.call("readyz", "GET", f"{service.root}/readyz"))
            assert all(c.transient for c in calls), [(c.op, c.status, c.body) for c in calls]
            assert all(c.end - c.start < QUICK for c in calls)
            for holder in holders:
                await holder.close()
            holders.clear()
            freed = time.monotonic()
            while True:  # recovery: the next requests open new connections
                write = await load.call("write", "PUT", f"CarePlan/{service.plans[1]}",
                                        _plan(service.plans[1], "after"))
                if write.ok or time.monotonic() - freed > 10:
                    break
                assert write.transient, (write.status, write.body)
                await asyncio.sleep(0.1)
            assert write.ok, write.body
            assert (await load.call("readyz", "GET", f"{service.root}/readyz")).ok
            assert (await load.call("read", "GET", f"CarePlan/{service.plans[1]}")).ok
    finally:
        for holder in holders:
            await holder.close()
