"""Results: one row per (backend, mode, target, scenario), ratios, the issue's targets, files."""

from __future__ import annotations

import json
import math
import os
import platform
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
BASELINE = HERE / "BASELINE.md"


@dataclass(slots=True)
class Row:
    backend: str  # sqlite | postgres
    mode: str  # auth+audit off | auth+audit ...
    target: str  # samplan | ceiling
    scenario: str
    title: str
    compare: str  # the ceiling scenario this row is a ratio to
    client: str
    seconds: float
    ok: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    conflicts_412: int
    statuses: dict[str, int]
    aux_statuses: dict[str, int] = field(default_factory=dict)
    ratio: float | None = None  # rps / the same backend's ceiling rps
    p99_ratio: float | None = None  # p99 / the same backend's ceiling p99
    skipped: str = ""  # why it did not run
    parts_ms: dict[str, float] = field(default_factory=dict)  # indicators: p50 of each Measure


def machine() -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or "?"
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        nproc = os.cpu_count() or 0
    memory = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return {
        "nproc": nproc,
        "cpu": model,
        "memory": memory,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "os": f"{platform.system()} {platform.release()}",
    }


def code_version() -> str:
    """``git describe`` of the checkout, with ``-dirty`` when it has uncommitted changes."""
    import subprocess

    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=HERE.parent,
                             capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    return out.stdout.strip() or "?"


def add_ratios(rows: list[Row]) -> None:
    ceilings = {(r.backend, r.mode, r.scenario): r for r in rows
                if r.target == "ceiling" and not r.skipped}
    for r in rows:
        c = ceilings.get((r.backend, r.mode, r.compare))
        if r.skipped or c is None or not c.rps:
            continue
        r.ratio = r.rps / c.rps
        if c.p99_ms and not math.isnan(c.p99_ms) and not math.isnan(r.p99_ms):
            r.p99_ratio = r.p99_ms / c.p99_ms


def _num(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _ms(value: float) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def table(rows: list[Row]) -> str:
    modes = {r.mode for r in rows}
    head = ["backend", *(["mode"] if len(modes) > 1 else []), "scenario", "req/s", "p50 ms",
            "p99 ms", "errors", "412", "× ceiling", "p99 × ceiling"]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] * (2 + (len(modes) > 1)) + ["---:"] * (len(head) - 2
                                                                       - (len(modes) > 1))) + "|"]
    for r in rows:
        name = r.title
        if r.skipped:
            cells = [r.backend, *([r.mode] if len(modes) > 1 else []), name,
                     f"skipped: {r.skipped}", "", "", "", "", "", ""]
        else:
            na = "n/a" if r.compare == "none" else ""
            cells = [r.backend, *([r.mode] if len(modes) > 1 else []),
                     f"**{name}**" if r.target == "ceiling" else name,
                     _num(r.rps), _ms(r.p50_ms), _ms(r.p99_ms), str(r.errors),
                     str(r.conflicts_412) if r.scenario == "update" else "",
                     _num(r.ratio, 2) if r.ratio is not None else na,
                     _num(r.p99_ratio, 2) if r.p99_ratio is not None else na]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _find(rows: list[Row], backend: str, scenario: str, target: str = "samplan",
          mode: str = "auth+audit off") -> Row | None:
    for r in rows:
        if (r.backend, r.scenario, r.target, r.mode) == (backend, scenario, target, mode) \
                and not r.skipped:
            return r
    return None


def targets(rows: list[Row], patients: int) -> list[dict[str, str]]:
    """The targets of issues 7 and 15 that this run can judge, and the ones it cannot yet."""
    out: list[dict[str, str]] = []

    def add(name: str, figure: str, met: bool | None) -> None:
        out.append({"target": name, "figure": figure,
                    "met": "n/a" if met is None else ("yes" if met else "**no**")})

    read = _find(rows, "postgres", "read")
    if read and read.ratio is not None:
        add("read by id, auth + audit off: ≥ 70% of the ceiling (PostgreSQL)",
            f"{read.ratio:.0%}", read.ratio >= 0.70)
        if read.p99_ratio is not None:
            add("read by id: p99 ≤ 2× the ceiling's p99 (PostgreSQL)",
                f"{read.p99_ratio:.2f}×", read.p99_ratio <= 2.0)
    authed = _find(rows, "postgres", "read", mode="auth+audit")
    if authed and authed.ratio is not None:
        add("read by id, auth + audit on: ≥ 60% of the ceiling (PostgreSQL; issue 15, "
            "issue 7 asked 50%)", f"{authed.ratio:.1%}", authed.ratio >= 0.60)
    else:
        add("read by id, auth + audit on: ≥ 60% of the ceiling",
            "not measured in this run (postgres read, mode auth+audit)", None)
    update = _find(rows, "postgres", "update")
    if update and update.ratio is not None:
        add("update with If-Match: ≥ 40% of the ceiling's write (PostgreSQL)",
            f"{update.ratio:.0%}", update.ratio >= 0.40)
    lite, pg = _find(rows, "sqlite", "read"), _find(rows, "postgres", "read")
    if lite and pg and pg.rps:
        share = lite.rps / pg.rps
        add("SQLite read ≥ 50% of the PostgreSQL read", f"{share:.0%}", share >= 0.5)
    search = _find(rows, "postgres", "search")
    if search:
        add("search p50 at 1M agreements ≤ 1.5× at 10k (PostgreSQL)",
            f"p50 {search.p50_ms:.1f} ms at {patients:,} patients; 1M vs 10k: bench/SCALING.md",
            None)
    view = _find(rows, "postgres", "agreement")
    if view and read and read.p50_ms:
        times = view.p50_ms / read.p50_ms
        add("patient view ≤ 3× a read by id (PostgreSQL, auth+audit off; p50 latency of "
            "Patient/{id}/$agreement ÷ p50 of the CarePlan read, same run)",
            f"{times:.1f}× (p50 {view.p50_ms:.1f} ms vs {read.p50_ms:.1f} ms; "
            f"{view.rps:,.0f} vs {read.rps:,.0f} req/s)", times <= 3.0)
    else:
        add("patient view ≤ 3× a read by id", "not measured in this run", None)
    for r in rows:
        if r.scenario == "indicators" and not r.skipped:
            slowest = max(r.parts_ms, key=r.parts_ms.__getitem__) if r.parts_ms else None
            add(f"all seven indicators over {patients:,} patients ({r.backend}, {r.mode}; "
                "no target in the issue)",
                f"p50 {r.p50_ms / 1000:.1f} s a pass of the seven $evaluate-measure, slowest "
                f"{r.max_ms / 1000:.1f} s"
                + (f"; slowest Measure {slowest} {r.parts_ms[slowest] / 1000:.1f} s"
                   if slowest else ""), None)
    for backend in ("sqlite", "postgres"):
        for scenario, what in (("import-note", "$import-note"),
                               ("transaction", "the agreement transaction")):
            off = _find(rows, backend, scenario)
            on = _find(rows, backend, scenario, mode="auth+audit")
            if off and on and off.rps:
                share = on.rps / off.rps
                add(f"{what} with auth + audit: ≥ 60% of the same without ({backend}; "
                    "issue 15)", f"{share:.0%} ({on.rps:,.1f} vs {off.rps:,.1f} req/s; p50 "
                    f"{on.p50_ms:.0f} vs {off.p50_ms:.0f} ms)", share >= 0.60)
        note = _find(rows, backend, "import-note")
        if note:
            add(f"$import-note throughput ({backend}, auth+audit off; no target in the issue)",
                f"{note.rps:,.1f} notes/s, p50 {note.p50_ms:.0f} ms", None)
        backlog = _find(rows, backend, "import-notes")
        if backlog:
            add(f"`samplan import-notes DIR`: ≥ 150 notes/s in one process ({backend}; issue 15"
                + ("" if backend == "postgres" else ", which asks it of PostgreSQL") + ")",
                f"{backlog.rps:,.0f} notes/s ({backlog.ok:,} notes, {backlog.errors} failed; "
                f"{backlog.seconds:.0f} s with the command's start)",
                backlog.rps >= 150 if backend == "postgres" else None)
        notify = _find(rows, backend, "notify")
        if notify:
            add(f"notification commit -> receipt ({backend}; no target in the issue)",
                f"p50 {notify.p50_ms:.1f} ms, p99 {notify.p99_ms:.1f} ms, "
                f"{notify.ok} received, {notify.errors} missing/duplicate", None)
    return out


def markdown(rows: list[Row], info: dict[str, Any]) -> str:
    m = info["machine"]
    o = info["options"]
    loads = "; ".join(
        f"{b}: {v['resources']:,} resources in {v['seconds']:.0f} s"
        if not v["skipped"] else f"{b}: already loaded"
        for b, v in info["load"].items()
    )
    lines = [
        f"Run {info['date']} on {m['nproc']} × {m['cpu']} (nproc {m['nproc']}, {m['memory']}), "
        f"Python {m['python']}, SQLite {m['sqlite']}"
        + (f", PostgreSQL {info['postgres']}" if info.get("postgres") else "")
        + f"; code at `{info.get('code', '?')}`.",
        "",
        f"{o['patients']:,} patients ({loads}); {o['connections']} connections; "
        f"{o['duration']:g} s per scenario after {o['warmup']:g} s of warm-up; load by "
        f"{info['client']} on loopback, sharing the cores with the server and the database."
        + (" Quick mode." if o.get("quick") else ""),
        "",
        table(rows),
        "",
        "× ceiling: req/s as a share of the same backend's ceiling (bench/ceiling.py) in this "
        "run: reads against its read by id, writes against its update. p99 × ceiling: the "
        "same for p99 latency. req/s counts 2xx answers; an update's req/s and latency are "
        "its PUT's (the GET before it is not timed).",
        "",
        "| target (issue 7) | figure | met |",
        "|---|---|---|",
        *(f"| {t['target']} | {t['figure']} | {t['met']} |" for t in info["targets"]),
    ]
    return "\n".join(lines) + "\n"


def write(rows: list[Row], info: dict[str, Any], *, baseline: bool) -> tuple[Path, Path]:
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = markdown(rows, info)
    md = RESULTS_DIR / f"{stamp}.md"
    md.write_text(f"# SamPlan benchmark {info['date']}\n\n{text}", encoding="utf-8")
    js = RESULTS_DIR / f"{stamp}.json"
    data = {**info, "rows": [{k: clean(v) for k, v in asdict(r).items()} for r in rows]}
    js.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if baseline:
        BASELINE.write_text(
            "# Benchmark baseline\n\n"
            "The latest `make bench` (bench/README.md says what each row measures). "
            "Update it with every change that moves a number: run `make bench` and commit "
            "this file.\n\n" + text,
            encoding="utf-8",
        )
    return md, js


def clean(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value
