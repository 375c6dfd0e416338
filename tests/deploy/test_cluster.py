"""The deployment shape, proven with what runs here (`make test-cluster`).

A real PostgreSQL, migrations run once (the migration Job), 2 `samplan serve`
(the api Deployment) and 2 `samplan worker` (the worker Deployment) processes,
Debian's nginx in front as the load balancer (the Service), auth on with
development tokens. A mixed read/write/subscribe workload runs through nginx
for about 20 s while

* one API process is SIGKILLed and restarted,
* one worker is SIGKILLed and restarted,
* the other API process gets SIGTERM (a rolling update) and is restarted,
* PostgreSQL is stopped for a few seconds and started again (a failover, issue
  17; not when ``SAMPLAN_TEST_POSTGRES_URL`` names a server of your own).

Asserted: no request fails except those in flight at the SIGKILL (the client
never retries; nginx passes idempotent requests on to the other replica) and
those answered while the database was away, which are all quick 503
OperationOutcomes (``transient``, ``Retry-After``); writes succeed again within
seconds of its return, in both replicas, without a restart; no 2xx write is
lost (each version is read back), every notification is delivered (gapless
event numbers, one per CarePlan version), nothing is lost after the restarts.
Then the throughput through nginx with 2 replicas and with 1 replica is
measured in the same run and printed.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from samplan.security.devkeys import load_or_create_dev_key
from samplan.store.database import create_engine
from samplan.subscriptions.bench import subscription_body
from samplan.subscriptions.receiver import Receiver
from support.pgcluster import TemporaryCluster

from .cluster import (
    FAST_SUBSCRIPTIONS,
    SAMPLAN,
    Process,
    cpu_seconds,
    find_nginx,
    free_port,
    machine_cpu_seconds,
    nginx_config,
    tree_cpu_seconds,
    wait_ready,
    wait_worker,
)

pytestmark = [pytest.mark.cluster, pytest.mark.postgres, pytest.mark.e2e,
              pytest.mark.timeout(420)]

ORG_HSA = "SE2321000073-2001"
HSA_SYSTEM = "urn:oid:1.2.752.29.4.19"
SECRET = "a-cluster-receiver-secret-0123456789"
PATIENTS = 10
CONCURRENCY = 16
RUN_SECONDS = 30.0
DATABASE_DOWN_SECONDS = 4.0
#: after the database's return, a request may still meet a connection lost in the outage
DATABASE_SLACK = 3.0
THROUGHPUT_SECONDS = 6.0
#: a request that started this long after the SIGKILL may still have been sent on a
#: keep-alive connection nginx had not yet seen closed
KILL_SLACK = 0.25


@dataclass
class Outcome:
    op: str
    start: float
    end: float
    status: int | None
    error: str | None = None
    retry_after: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def transient(self) -> bool:
        """A 503 OperationOutcome ``transient`` with ``Retry-After`` (the database away)."""
        return (self.status == 503 and self.retry_after is not None
                and '"code":"transient"' in (self.error or "").replace(" ", ""))


@dataclass
class Written:
    resource_type: str
    resource_id: str
    version: str
    marker: str


@dataclass
class Load:
    """The mixed workload: what was asked, what came back, what was written."""

    client: httpx.AsyncClient
    patients: list[str]
    plans: list[str]
    subscription: str
    outcomes: list[Outcome] = field(default_factory=list)
    written: list[Written] = field(default_factory=list)

    async def _call(self, op: str, method: str, url: str,
                    body: dict[str, Any] | None = None) -> httpx.Response | None:
        start = time.monotonic()
        try:
            response = await self.client.request(method, url, json=body)
        except httpx.HTTPError as exc:
            self.outcomes.append(Outcome(op, start, time.monotonic(), None, repr(exc)))
            return None
        self.outcomes.append(Outcome(op, start, time.monotonic(), response.status_code,
                                     None if response.is_success else response.text[:300],
                                     response.headers.get("retry-after")))
        return response if response.is_success else None

    def _remember(self, response: httpx.Response | None, marker: str) -> None:
        if response is None:
            return
        body = response.json()
        self.written.append(Written(body["resourceType"], body["id"],
                                    body["meta"]["versionId"], marker))

    async def step(self, rng: random.Random) -> None:
        roll = rng.random()
        patient = rng.choice(self.patients)
        marker = uuid.uuid4().hex
        if roll < 0.30:  # create a plan with a client-chosen id (PUT: idempotent)
            plan_id = f"cp-{marker[:16]}"
            response = await self._call("put-create", "PUT", f"CarePlan/{plan_id}", {
                "resourceType": "CarePlan", "id": plan_id, "status": "active",
                "intent": "plan", "title": marker, "subject": {"reference": f"Patient/{patient}"}})
            if response is not None:
                self.plans.append(plan_id)
            self._remember(response, marker)
        elif roll < 0.40:  # update an existing plan
            plan_id = rng.choice(self.plans)
            current = await self._call("read", "GET", f"CarePlan/{plan_id}")
            if current is not None:
                body = {**current.json(), "title": marker}
                body.pop("meta", None)
                self._remember(await self._call("put-update", "PUT", f"CarePlan/{plan_id}",
                                                body), marker)
        elif roll < 0.55:  # POST a goal (not idempotent: never retried by nginx)
            self._remember(await self._call("post-create", "POST", "Goal", {
                "resourceType": "Goal", "lifecycleStatus": "active",
                "description": {"text": marker},
                "subject": {"reference": f"Patient/{patient}"}}), marker)
        elif roll < 0.80:
            await self._call("read", "GET", f"CarePlan/{rng.choice(self.plans)}")
        elif roll < 0.95:
            await self._call("search", "GET", f"CarePlan?patient=Patient/{patient}&_count=5")
        else:
            await self._call("status", "GET", f"Subscription/{self.subscription}/$status")

    async def user(self, stop: asyncio.Event, seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            await self.step(rng)


async def _measured(base: str, headers: dict[str, str], plans: list[str], seconds: float,
                    pids: dict[str, int]) -> tuple[float, int, str]:
    """:func:`_throughput` and where the CPU went meanwhile (share of the whole machine)."""
    def cpu(name: str) -> float:  # nginx and PostgreSQL: the master and its workers
        tree = name in ("nginx", "postgres")
        return tree_cpu_seconds(pids[name]) if tree else cpu_seconds(pids[name])

    before = {name: cpu(name) for name in pids}
    machine = machine_cpu_seconds()
    rate, failed = await _throughput(base, headers, plans, seconds)
    used = {name: cpu(name) - before[name] for name in pids}
    busy = machine_cpu_seconds() - machine
    capacity = seconds * (os.cpu_count() or 1)
    shares = ", ".join(f"{name} {100 * value / capacity:.0f}%" for name, value in used.items())
    other = busy - sum(used.values())
    api_ms = 1000 * (used["api-0"] + used["api-1"]) / max(1.0, rate * seconds)
    return rate, failed, (f"{shares}, anything else (workers, other jobs) "
                          f"{100 * other / capacity:.0f}% of the machine's CPU; "
                          f"API CPU per request {api_ms:.1f} ms")


async def _throughput(base: str, headers: dict[str, str], plans: list[str],
                      seconds: float) -> tuple[float, int]:
    """Requests/s answered 2xx: 80 % reads of a plan, 20 % searches, CONCURRENCY at once."""
    done = 0
    failed = 0
    until = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=CONCURRENCY * 2, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits,
                                 timeout=30) as client:
        async def user(seed: int) -> None:
            nonlocal done, failed
            rng = random.Random(seed)
            while time.monotonic() < until:
                if rng.random() < 0.8:
                    response = await client.get(f"CarePlan/{rng.choice(plans)}")
                else:
                    response = await client.get("CarePlan?_count=10")
                if response.is_success:
                    done += 1
                else:
                    failed += 1

        started = time.monotonic()
        await asyncio.gather(*(user(i) for i in range(CONCURRENCY * 2)))
        elapsed = time.monotonic() - started
    return done / elapsed, failed


@pytest.fixture(scope="module")
def cluster_postgres() -> Iterator[tuple[str, TemporaryCluster | None]]:
    """The database's URL, and its cluster when it is ours to stop and start."""
    from support.pgcluster import ENV_URL, PostgresUnavailable, temporary_cluster

    if os.environ.get("SAMPLAN_TEST_SKIP_POSTGRES"):
        pytest.skip("SAMPLAN_TEST_SKIP_POSTGRES is set")
    external = os.environ.get(ENV_URL)
    if external:
        yield external, None
        return
    try:
        with temporary_cluster() as cluster:
            yield cluster.url, cluster
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL here: {exc}")


async def test_two_replicas_behind_nginx_survive_kills_and_lose_nothing(
    cluster_postgres: tuple[str, TemporaryCluster | None], capsys: pytest.CaptureFixture[str],
) -> None:
    cluster_database, postgres = cluster_postgres
    nginx = find_nginx()
    if nginx is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed (.ci/run installs it)")
        pytest.skip("nginx is not installed: apt-get install nginx")
    work = Path(tempfile.mkdtemp(prefix="samplan-cluster-"))
    work.chmod(0o755)  # nginx workers run as nobody when we are root
    logs = work / "logs"
    logs.mkdir()
    lb_port, single_port = free_port(), free_port()
    base = f"http://127.0.0.1:{lb_port}/fhir"
    env = {
        **os.environ,
        "SAMPLAN_DATABASE_URL": cluster_database,
        "SAMPLAN_DATABASE_POOL_SIZE": "10",
        "SAMPLAN_ENVIRONMENT": "test",
        "SAMPLAN_AUTH_ENABLED": "true",
        "SAMPLAN_DATA_DIR": str(work / "keys"),
        "SAMPLAN_PUBLIC_BASE_URL": base,
        "SAMPLAN_SUBSCRIPTIONS_ALLOW_PRIVATE_ENDPOINTS": "true",
        "SAMPLAN_LOG_FORMAT": "json",
        "SAMPLAN_SHUTDOWN_GRACE_SECONDS": "15",
        **FAST_SUBSCRIPTIONS,
    }
    settings_env = {k: v for k, v in env.items() if k.startswith("SAMPLAN_")}
    processes: list[Process] = []
    receiver = Receiver(SECRET).start()
    engine = create_engine(cluster_database)
    try:
        # -- the migration Job: once, before anything serves --------------------------------
        migrate = Process("migrate", [str(SAMPLAN), "migrate"], env, logs).start()
        assert await asyncio.to_thread(migrate.wait, 120) == 0, migrate.log()

        # -- the api and worker Deployments, and the load balancer ----------------------------
        api_ports = [free_port(), free_port()]
        apis = [Process(f"api-{i}", [str(SAMPLAN), "serve", "--host", "127.0.0.1",
                                     "--port", str(port)], env, logs)
                for i, port in enumerate(api_ports)]
        workers = [Process(f"worker-{i}", [str(SAMPLAN), "worker"], env, logs)
                   for i in range(2)]
        processes += [*apis, *workers]
        for process in processes:
            process.start()
        conf = nginx_config(work, {lb_port: api_ports, single_port: api_ports[:1]})
        lb = Process("nginx", [nginx, "-p", str(work), "-c", str(conf), "-e",
                               str(work / "error.log")], env, logs).start()
        processes.append(lb)
        for api, port in zip(apis, api_ports, strict=True):
            await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{port}/readyz", api)
        for process in workers:
            await asyncio.to_thread(wait_worker, process, 0)
        await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{lb_port}/healthz", lb)

        key = load_or_create_dev_key(work / "keys")
        token = key.mint(scopes="system/*.cruds", issuer=settings_env.get(
            "SAMPLAN_TOKEN_ISSUER", "https://samplan.local/dev"),
            audience=settings_env.get("SAMPLAN_TOKEN_AUDIENCE", "https://samplan.local/fhir"),
            org=ORG_HSA, lifetime_s=3600)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
        limits = httpx.Limits(max_connections=CONCURRENCY * 2,
                              max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(base_url=base + "/", headers=headers, limits=limits,
                                     timeout=30) as client:
            # -- a care unit, its patients and plans; a subscription to every plan change ------
            unsub = subscription_body(receiver.url, SECRET, max_count=5)
            everything = (await client.post("Subscription", json=unsub)).json()["id"]
            org = await client.post("Organization", json={
                "resourceType": "Organization", "name": "Vårdcentralen Klustret",
                "identifier": [{"system": HSA_SYSTEM, "value": ORG_HSA}]})
            assert org.status_code == 201, org.text
            patients, plans = [], []
            for i in range(PATIENTS):
                patient = f"pt-{i}"
                assert (await client.put(f"Patient/{patient}", json={
                    "resourceType": "Patient", "id": patient,
                    "name": [{"family": f"Klustersson {i}"}]})).is_success
                assert (await client.put(f"CareTeam/team-{i}", json={
                    "resourceType": "CareTeam", "id": f"team-{i}", "status": "active",
                    "subject": {"reference": f"Patient/{patient}"},
                    "participant": [{"member": {"reference": f"Organization/{org.json()['id']}"}}],
                })).is_success
                plan = await client.put(f"CarePlan/cp-start-{i}", json={
                    "resourceType": "CarePlan", "id": f"cp-start-{i}", "status": "active",
                    "intent": "plan", "title": "start",
                    "subject": {"reference": f"Patient/{patient}"}})
                assert plan.is_success, plan.text
                patients.append(patient)
                plans.append(f"cp-start-{i}")

            load = Load(client, patients, plans, everything)
            started = time.monotonic()
            stop = asyncio.Event()
            kills: list[float] = []
            followers: list[str] = []
            outage: list[float] = []  # stopping, stopped, starting, started (monotonic)

            async def at(second: float) -> None:
                await asyncio.sleep(max(0.0, started + second - time.monotonic()))

            async def back_in_service(index: int) -> None:
                await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{api_ports[index]}/readyz",
                                        apis[index])
                await asyncio.sleep(2)  # past nginx's fail_timeout: it routes there again

            async def chaos() -> None:
                await at(4)
                kills.append(time.monotonic())
                await asyncio.to_thread(apis[0].kill)  # a crash: in-flight requests are lost
                await at(5)
                await asyncio.to_thread(workers[0].kill)  # its claims are taken over
                await at(7)
                offset = workers[0].log_path.stat().st_size
                apis[0].start()
                workers[0].start()
                await back_in_service(0)
                await asyncio.to_thread(wait_worker, workers[0], offset)
                # a new subscriber joins mid-run (the "subscribe" part of the workload)
                follow = subscription_body(receiver.url, SECRET,
                                           criteria=f"CarePlan?patient=Patient/{patients[0]}")
                created = await client.post("Subscription", json=follow)
                assert created.status_code == 201, created.text
                followers.append(created.json()["id"])
                # a rolling update of the other replica: out of the load balancer first (the
                # endpoint removal and preStop of Kubernetes), then SIGTERM: in-flight
                # requests finish, then the replacement comes up and is put back
                nginx_config(work, {lb_port: api_ports, single_port: api_ports[:1]},
                             down=frozenset({api_ports[1]}))
                lb.reload()
                await asyncio.sleep(1.5)
                apis[1].terminate()
                # uvicorn re-raises the signal after a clean shutdown: -15, or 0
                code = await asyncio.to_thread(apis[1].wait, 30)
                assert code in (0, -15), apis[1].log()[-2000:]
                assert "Application shutdown complete" in apis[1].log()
                apis[1].start()
                await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{api_ports[1]}/readyz",
                                        apis[1])
                nginx_config(work, {lb_port: api_ports, single_port: api_ports[:1]})
                lb.reload()
                await asyncio.sleep(2)
                if postgres is not None:
                    # a failover: PostgreSQL goes away under the load and comes back; nothing
                    # is restarted, every replica and worker finds it again by itself
                    outage.append(time.monotonic())
                    await asyncio.to_thread(postgres.halt, "fast")
                    outage.append(time.monotonic())
                    await asyncio.sleep(DATABASE_DOWN_SECONDS)
                    outage.append(time.monotonic())
                    await asyncio.to_thread(postgres.resume)
                    outage.append(time.monotonic())
                    for index in (0, 1):
                        await asyncio.to_thread(
                            wait_ready, f"http://127.0.0.1:{api_ports[index]}/readyz",
                            apis[index], 10.0)
                    await asyncio.sleep(DATABASE_SLACK + 2)
                await at(RUN_SECONDS)
                stop.set()

            await asyncio.gather(chaos(), *(load.user(stop, seed) for seed in range(CONCURRENCY)))
        run_seconds = time.monotonic() - started

        # -- no request lost beyond those in flight at the kill --------------------------------
        outcomes = load.outcomes
        failed = [o for o in outcomes if not o.ok]
        kill = kills[0]
        in_flight = [o for o in failed if o.start <= kill + KILL_SLACK and o.end >= kill]
        database_away = [o for o in failed if outage and o not in in_flight
                         and o.end >= outage[0] and o.start <= outage[3] + DATABASE_SLACK]
        lost = [o for o in failed if o not in in_flight and o not in database_away]
        assert not lost, f"requests failed outside the kill and outage windows: {lost[:10]}"
        assert len(in_flight) <= CONCURRENCY
        assert all(o.op == "post-create" or o.status is None or o.status >= 500
                   for o in in_flight)
        # while the database was away: quick 503s, never a 500 or a hang
        assert all(o.transient for o in database_away), [
            (o.op, o.status, o.error) for o in database_away if not o.transient][:10]
        assert all(o.end - o.start < 5 for o in database_away)
        recovery = ""
        if outage:
            back = outage[3]
            assert [o for o in outcomes if o.start >= outage[1] and o.end <= outage[2]
                    and o.transient], "no request met the database away"
            writes_back = [o.end - back for o in outcomes if o.ok and o.end >= back
                           and o.op in ("put-create", "put-update", "post-create")]
            assert writes_back, "no write succeeded after the database's return"
            assert min(writes_back) < 5, min(writes_back)
            recovery = (f"; PostgreSQL down {outage[2] - outage[1]:.1f} s: "
                        f"{len(database_away)} answered 503, first write "
                        f"{min(writes_back):.2f} s after its return")

        # -- every notification delivered --------------------------------------------------------
        async with engine.connect() as conn:
            plan_versions = (await conn.execute(text(
                "SELECT count(*) FROM resource_versions WHERE resource_type = 'CarePlan'"
                " AND resource_id LIKE 'cp-%'"  # ours (SAMPLAN_TEST_POSTGRES_URL may be shared)
            ))).scalar()
        expected = {everything: int(plan_versions or 0)}
        async with httpx.AsyncClient(base_url=base + "/", headers=headers, timeout=30) as client:
            for follower in followers:
                status = (await client.get(f"Subscription/{follower}/$status")).json()
                events = next(p for p in status["entry"][0]["resource"]["parameter"]
                              if p["name"] == "events-since-subscription-start")
                expected[follower] = int(events["valueString"] if "valueString" in events
                                         else events.get("valueInteger64",
                                                         events.get("valueUnsignedInt", 0)))
        deadline = time.monotonic() + 90
        while True:
            seen = {sid: set() for sid in expected}
            for item in list(receiver.received):
                if item.kind == "event-notification" and item.subscription_id in seen:
                    seen[item.subscription_id].update(item.event_numbers)
            missing = {sid: n - len(seen[sid] & set(range(1, n + 1)))
                       for sid, n in expected.items()}
            if not any(missing.values()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        assert not any(missing.values()), f"notifications not delivered: {missing}"
        assert expected[everything] >= len([w for w in load.written
                                            if w.resource_type == "CarePlan"])
        assert all(item.signature_ok for item in receiver.received)
        assert followers
        assert expected[followers[0]] >= 0

        # -- no write lost, nothing lost after the restarts: every 2xx version reads back ---------
        async with httpx.AsyncClient(base_url=base + "/", headers=headers, timeout=30) as client:
            semaphore = asyncio.Semaphore(CONCURRENCY)

            async def check(w: Written) -> str | None:
                async with semaphore:
                    got = await client.get(
                        f"{w.resource_type}/{w.resource_id}/_history/{w.version}")
                if got.status_code != 200:
                    return f"{w.resource_type}/{w.resource_id} v{w.version}: {got.status_code}"
                body = got.json()
                value = body.get("title") or body.get("description", {}).get("text")
                return None if value == w.marker else f"{w.resource_id}: {value} != {w.marker}"

            problems = [p for p in await asyncio.gather(*(check(w) for w in load.written)) if p]
        assert not problems, problems[:10]
        assert len(load.written) > 50

        # -- throughput through nginx: 2 replicas against 1, same run, same data ------------------
        read_headers = {"Authorization": headers["Authorization"]}
        all_plans = list(load.plans)
        await _throughput(base + "/", read_headers, all_plans, 1.0)  # warm both
        async with engine.connect() as conn:
            data_directory = (await conn.execute(text("SHOW data_directory"))).scalar()
        postmaster = int((Path(str(data_directory)) / "postmaster.pid").read_text().split()[0])
        pids = {"api-0": apis[0].pid, "api-1": apis[1].pid, "load client": os.getpid(),
                "nginx": lb.pid, "postgres": postmaster}
        two, two_failed, two_cpu = await _measured(base + "/", read_headers, all_plans,
                                                   THROUGHPUT_SECONDS, pids)
        one, one_failed, one_cpu = await _measured(f"http://127.0.0.1:{single_port}/fhir/",
                                                   read_headers, all_plans, THROUGHPUT_SECONDS,
                                                   pids)
        assert two_failed == 0
        assert one_failed == 0
        summary = (
            f"\ncluster: {len(outcomes)} requests in {run_seconds:.0f} s "
            f"({len(load.written)} writes), {len(in_flight)} failed in flight at the SIGKILL"
            f"{recovery}, 0 lost; {sum(expected.values())} events delivered "
            f"({len(receiver.received)} notifications incl. handshakes and redeliveries)\n"
            f"throughput through nginx (reads+searches, {CONCURRENCY * 2} clients, "
            f"{os.cpu_count()} cores): 2 replicas {two:.0f} req/s, 1 replica {one:.0f} req/s "
            f"(x{two / one:.2f})\n"
            f"  CPU with 2 replicas: {two_cpu}\n  CPU with 1 replica: {one_cpu}\n"
        )
        with capsys.disabled():
            sys.stdout.write(summary)
        (logs / "summary.txt").write_text(summary)
    finally:
        for process in reversed(processes):
            process.stop()
        receiver.stop()
        await engine.dispose()
        if os.environ.get("SAMPLAN_KEEP_CLUSTER_LOGS"):
            sys.stderr.write(f"cluster logs kept in {work}\n")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
