"""`python -m bench` (`make bench`): load a dataset, run every scenario, print the table.

For each backend: a fresh database (a SQLite file in the work directory; a
throw-away PostgreSQL cluster, or --postgres-url), the dataset loaded through
the service's write path (bench/load.py), then a real `samplan serve` and the
ceiling app (bench/ceiling.py) side by side on loopback, and each scenario
run against them in turn: a warm-up, then the measured run. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import bulk, client, indicators, load, report, servers
from bench.scenarios import CEILING, MODES, SCENARIOS, Sample, Scenario, server_features

DEFAULT_PATIENTS = 10_000
QUICK_PATIENTS = 1_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = [s.name for s in SCENARIOS]
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"try it out: {QUICK_PATIENTS:,} patients, 3 s per scenario, 1 s warm-up, "
                        "no BASELINE.md")
    p.add_argument("--patients", type=int,
                   help=f"agreements to load (default {DEFAULT_PATIENTS:,})")
    p.add_argument("--duration", type=float, help="seconds per measured scenario (default 10)")
    p.add_argument("--warmup", type=float, help="seconds of warm-up before each (default 2)")
    p.add_argument("--connections", type=int, default=32, help="concurrent connections (32)")
    p.add_argument("--backends", default="sqlite,postgres", help="sqlite,postgres")
    p.add_argument("--scenarios", default=",".join(names), help=",".join(names))
    p.add_argument("--client", choices=("auto", "wrk", "python"), default="auto",
                   help="load generator: wrk when installed (auto), else a Python asyncio client")
    p.add_argument("--postgres-url", help="use this (empty or already loaded) database instead "
                                          "of a throw-away cluster")
    p.add_argument("--workdir", type=Path, help="keep the SQLite database and logs here "
                                                "(reused when it holds the dataset)")
    p.add_argument("--sample", type=int, default=10_000, help="ids drawn from the dataset (10,000)")
    p.add_argument("--seed", type=int, default=7, help="dataset seed")
    p.add_argument("--notes", type=int,
                   help=f"notes for the import-notes row (default {bulk.DEFAULT_NOTES:,}; "
                        f"--quick {bulk.QUICK_NOTES})")
    p.add_argument("--no-ceiling", action="store_true", help="skip the ceiling app (no ratios)")
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=None,
                   help="write bench/BASELINE.md (default: yes, except with --quick)")
    args = p.parse_args(argv)
    args.patients = args.patients or (QUICK_PATIENTS if args.quick else DEFAULT_PATIENTS)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    args.notes = args.notes or (bulk.QUICK_NOTES if args.quick else bulk.DEFAULT_NOTES)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in args.backends:
        if b not in ("sqlite", "postgres"):
            p.error(f"unknown backend {b!r}")
    wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in wanted:
        if s not in names:
            p.error(f"unknown scenario {s!r} (known: {', '.join(names)})")
    args.scenarios = [s for s in SCENARIOS if s.name in wanted]
    if args.baseline is None:
        args.baseline = not args.quick
    if args.client == "auto":
        args.client = "wrk" if client.wrk_path() else "python"
    elif args.client == "wrk" and not client.wrk_path():
        p.error("wrk is not installed (apt-get install wrk), use --client python")
    return args


def log(message: str) -> None:
    sys.stderr.write(f"bench: {message}\n")
    sys.stderr.flush()


def measure(origin: str, scenario: Scenario, sample: Sample, args: argparse.Namespace,
            *, backend: str, mode: str, target: str, headers: dict[str, str]) -> report.Row:
    workload = scenario.workload(sample)
    workload.headers = {**workload.headers, **headers}
    if args.warmup > 0:
        warm = scenario.workload(sample)  # a post workload gets new identifiers
        warm.headers = workload.headers
        client.run(origin, warm, seconds=args.warmup, connections=args.connections,
                   client=args.client)
    m = client.run(origin, workload, seconds=args.duration, connections=args.connections,
                   client=args.client)
    row = report.Row(
        backend=backend, mode=mode, target=target, scenario=scenario.name, title=scenario.title,
        compare=scenario.compare, client=m.client, seconds=round(m.seconds, 3), ok=m.ok(),
        rps=m.ok() / m.seconds if m.seconds else 0.0,
        p50_ms=m.percentile_ms(50), p90_ms=m.percentile_ms(90), p99_ms=m.percentile_ms(99),
        max_ms=m.percentile_ms(100), errors=m.errors(), conflicts_412=m.conflicts(),
        statuses={str(k): v for k, v in sorted(m.statuses.items())},
        aux_statuses={str(k): v for k, v in sorted(m.aux_statuses.items())},
    )
    log(f"{backend:8} {target:7} {scenario.name:11} {row.rps:8,.0f} req/s  p50 {row.p50_ms:6.1f} ms"
        f"  p99 {row.p99_ms:6.1f} ms  errors {row.errors}  412 {row.conflicts_412}"
        f"  statuses {row.statuses}")
    if row.errors > row.ok:
        args.keep_workdir = True
        log(f"  most requests failed ({row.statuses}): see the server logs in {args.workdir}")
    return row


def run_backend(backend: str, url: str, args: argparse.Namespace,
                rows: list[report.Row], info: dict[str, Any]) -> None:
    log(f"{backend}: loading {args.patients:,} patients into {url}")
    loaded = asyncio.run(load.load(url, args.patients, seed=args.seed, data_dir=args.workdir))
    info["load"][backend] = {"resources": loaded.resources, "seconds": round(loaded.seconds, 1),
                             "skipped": loaded.skipped}
    if not loaded.skipped:
        log(f"{backend}: {loaded.resources:,} resources in {loaded.seconds:.0f} s "
            f"({loaded.resources / loaded.seconds:,.0f}/s)")
    if any(s.timed for s in args.scenarios):
        log(f"{backend}: adding the indicators' data (RUB levels, answers)")
        extra = asyncio.run(indicators.load_data(url, seed=args.seed, data_dir=args.workdir))
        info["load"][f"{backend} indicators"] = {
            "resources": extra.resources, "seconds": round(extra.seconds, 1),
            "skipped": extra.skipped}
        if not extra.skipped:
            log(f"{backend}: {extra.resources:,} resources in {extra.seconds:.0f} s")
    ids = asyncio.run(load.sample_ids(url, args.sample, args.seed))
    sample = Sample(ids["careplans"], ids["patients"], args.seed, args.patients)
    if not sample.careplans:
        raise SystemExit(f"{backend}: no CarePlans in the database")

    for mode in MODES:
        headers = {**mode.headers, **(mode.auth(args.workdir) if mode.auth else {})}
        latency = [s for s in args.scenarios if s.latency]
        with ExitStack() as stack:
            origin = stack.enter_context(servers.samplan(url, log_dir=args.workdir, env=mode.env))
            capability = httpx.get(f"{origin}/fhir/metadata", timeout=30,
                                   headers=headers).json()
            if mode.auth:
                check_auth(origin, sample, headers)
            spec = httpx.get(f"{origin}/openapi.json", timeout=60)
            features = server_features(capability, spec.json() if spec.status_code == 200
                                       else None)
            ceiling_origin = None
            if not args.no_ceiling:
                ceiling_origin = stack.enter_context(
                    servers.ceiling(url, log_dir=args.workdir, pool=args.connections))
            plan: list[tuple[str, Scenario]] = []
            compares = {s.compare for s in args.scenarios}
            for s in args.scenarios:
                if s.latency or s.timed or s.command:
                    continue
                for c in CEILING:  # each ceiling scenario just before its first user
                    if ceiling_origin and c.name in compares and c.name == s.compare \
                            and ("ceiling", c) not in plan:
                        plan.append(("ceiling", c))
                plan.append(("samplan", s))
            for target, s in plan:
                missing = s.needs - features
                if missing:
                    rows.append(report.Row(
                        backend, mode.name, target, s.name, s.title, s.compare, "", 0, 0, 0,
                        float("nan"), float("nan"), float("nan"), float("nan"), 0, 0, {},
                        skipped=f"server lacks {', '.join(sorted(missing))}"))
                    continue
                origin_of = origin if target == "samplan" else ceiling_origin
                assert origin_of is not None
                rows.append(measure(origin_of, s, sample, args, backend=backend,
                                    mode=mode.name, target=target,
                                    headers=headers if target == "samplan" else {}))
            for s in (s for s in args.scenarios if s.timed):
                missing = s.needs - features
                if missing:
                    rows.append(report.Row(
                        backend, mode.name, "samplan", s.name, s.title, s.compare, "", 0, 0, 0,
                        float("nan"), float("nan"), float("nan"), float("nan"), 0, 0, {},
                        skipped=f"server lacks {', '.join(sorted(missing))}"))
                    continue
                row = indicators.measure(
                    origin, headers, passes=indicators.QUICK_PASSES if args.quick
                    else indicators.PASSES, backend=backend, mode=mode.name, title=s.title,
                    log=log)
                log(f"{backend:8} {mode.name:14} indicators: p50 {row.p50_ms / 1000:.2f} s a "
                    f"pass, slowest {row.max_ms / 1000:.2f} s")
                rows.append(row)
        for s in latency:
            if mode.auth:
                rows.append(report.Row(
                    backend, mode.name, "samplan", s.name, s.title, s.compare, "", 0, 0, 0,
                    float("nan"), float("nan"), float("nan"), float("nan"), 0, 0, {},
                    skipped="measured with auth and audit off only (its CarePlan has no CareTeam)"))
                continue
            rows.append(measure_notify(url, s, args, backend=backend, mode=mode))
    for s in (s for s in args.scenarios if s.command):  # after the servers: the cores are its
        rows.append(bulk.measure(url, s, backend=backend, workdir=args.workdir,
                                 notes=args.notes, log=log))


def check_auth(origin: str, sample: Sample, headers: dict[str, str]) -> None:
    """With auth on, the token must reach the dataset: a few reads must answer 200, not 404."""
    paths = [f"/fhir/CarePlan/{i}" for i in sample.careplans[:5]]
    paths += [f"/fhir/Patient/{p}" for p in sample.patients[:5]]
    for path in paths:
        got = httpx.get(origin + path, headers=headers, timeout=30)
        if got.status_code != 200:
            raise SystemExit(f"auth+audit: GET {path} answered {got.status_code} with the "
                             f"bench's token: {got.text[:300]}")
        bare = httpx.get(origin + path, timeout=30)
        if bare.status_code != 401:
            raise SystemExit(f"auth+audit: GET {path} without a token answered "
                             f"{bare.status_code}, not 401: is auth on?")
    log(f"auth+audit: {len(paths)} reads with the bench's token answered 200 "
        "(401 without it)")


def measure_notify(url: str, scenario: Scenario, args: argparse.Namespace, *, backend: str,
                   mode: Any) -> report.Row:
    """Commit -> receipt latency of rest-hook notifications at a steady write rate.

    A server of its own, started with ``--with-worker`` (the delivery worker in the same
    process, as a small deployment runs it), and
    ``samplan.subscriptions.bench.measure_latency``: a local receiver subscribed to one
    agreement, that agreement's CarePlan updated ``rate`` times a second.
    """
    from bench.scenarios import NOTIFY_RATE, NOTIFY_SECONDS
    from samplan.subscriptions.bench import measure_latency

    seconds = 3.0 if args.quick else NOTIFY_SECONDS
    writes = round(NOTIFY_RATE * seconds)
    env = {**mode.env, "SAMPLAN_SUBSCRIPTIONS_ALLOW_PRIVATE_ENDPOINTS": "true"}
    with servers.samplan(url, log_dir=args.workdir, env=env, args=("--with-worker",)) as origin:
        started = time.monotonic()
        got = asyncio.run(measure_latency(f"{origin}/fhir", writes=writes, rate=NOTIFY_RATE))
        elapsed = time.monotonic() - started
    row = report.Row(
        backend=backend, mode=mode.name, target="samplan", scenario=scenario.name,
        title=scenario.title, compare=scenario.compare, client="measure_latency",
        seconds=round(elapsed, 3), ok=got.received, rps=got.received / seconds,
        p50_ms=got.p50_ms, p90_ms=float("nan"), p99_ms=got.p99_ms, max_ms=got.max_ms,
        errors=got.missing + got.duplicates, conflicts_412=0, statuses={},
    )
    log(f"{backend:8} samplan {scenario.name:11} {got}")
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    args.keep_workdir = args.workdir is not None
    args.workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="samplan-bench-"))).resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": report.machine(),
        "code": report.code_version(),
        "client": (f"wrk {client.wrk_version()}" if args.client == "wrk"
                   else "a Python asyncio client"
                   + ("" if client.wrk_path() else " (wrk not installed)")),
        "options": {"patients": args.patients, "duration": args.duration,
                    "warmup": args.warmup, "connections": args.connections,
                    "backends": args.backends, "scenarios": [s.name for s in args.scenarios],
                    "quick": args.quick, "seed": args.seed, "sample": args.sample},
        "load": {},
    }
    log(f"{args.patients:,} patients, {args.duration:g} s per scenario, {args.connections} "
        f"connections, {info['client']}, work directory {args.workdir}")
    rows: list[report.Row] = []
    try:
        for backend in args.backends:
            if backend == "sqlite":
                url = f"sqlite+aiosqlite:///{args.workdir / 'bench.db'}"
                run_backend(backend, url, args, rows, info)
            else:
                with servers.postgres(args.postgres_url) as (url, version):
                    info["postgres"] = version
                    run_backend(backend, url, args, rows, info)
    except BaseException:
        log(f"failed; server logs are in {args.workdir}")
        raise
    if not args.keep_workdir:
        shutil.rmtree(args.workdir, ignore_errors=True)
    report.add_ratios(rows)
    info["targets"] = report.targets(rows, args.patients)
    info["seconds"] = round(time.monotonic() - started)
    md, js = report.write(rows, info, baseline=args.baseline)
    sys.stdout.write("\n" + report.markdown(rows, info))
    sys.stdout.flush()
    log(f"done in {info['seconds']} s; results in {md.relative_to(report.HERE.parent)} and "
        f"{js.name}" + ("; bench/BASELINE.md updated" if args.baseline else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
