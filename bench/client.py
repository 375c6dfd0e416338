"""The load generators: wrk with bench/wrk/scenario.lua, or a small asyncio HTTP client.

Both run a fixed number of connections, each sending its next request when the
previous one answered (closed loop), for a fixed time, and time every request
themselves, so they report the same things: the measured requests' latencies,
their count per status, and, for an update, the statuses of the reads that
fetched the ETag (not timed, not counted as throughput).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

LUA_SCRIPT = Path(__file__).with_name("wrk") / "scenario.lua"


@dataclass(slots=True)
class Workload:
    """What one scenario sends (see bench/scenarios.py)."""

    mode: Literal["get", "update", "post", "notify", "indicators", "command"]
    paths: list[str] = field(default_factory=list)  # get/update: pick one at random
    path: str = ""  # post: where to
    templates: list[str] = field(default_factory=list)  # post: bodies with placeholders
    genders: list[str] = field(default_factory=list)
    first: int = 0  # post: the first patient index of this run
    run: str = ""  # post: token in every business identifier
    content_type: str = "application/fhir+json"  # post: of the body
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Measurement:
    client: str
    seconds: float
    latencies_us: list[float]
    statuses: dict[int, int]
    aux_statuses: dict[int, int] = field(default_factory=dict)
    socket_errors: int = 0

    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if 200 <= s < 300)

    def conflicts(self) -> int:
        return self.statuses.get(412, 0)

    def errors(self) -> int:
        bad = sum(n for s, n in self.statuses.items() if not 200 <= s < 300 and s != 412)
        bad_aux = sum(n for s, n in self.aux_statuses.items() if not 200 <= s < 300)
        return bad + bad_aux + self.socket_errors

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_us:
            return float("nan")
        ordered = sorted(self.latencies_us)
        index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
        return ordered[index] / 1000


def wrk_path() -> str | None:
    return shutil.which("wrk")


def wrk_version() -> str:
    exe = wrk_path()
    if exe is None:
        return ""
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).split("[")[0].replace("wrk", "").strip()


def _lua(value: object) -> str:
    if isinstance(value, str):
        escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
                   .replace("\r", "\\r").replace("\0", "\\0"))
        return f'"{escaped}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{_lua(k)}] = {_lua(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "{\n" + ",\n".join(_lua(v) for v in value) + "\n}"
    raise TypeError(type(value))


def run_wrk(origin: str, workload: Workload, *, seconds: float, connections: int) -> Measurement:
    """wrk, one connection per thread, the scenario in bench/wrk/scenario.lua."""
    exe = wrk_path()
    assert exe is not None
    config = {
        "mode": workload.mode, "paths": workload.paths, "headers": workload.headers,
        "path": workload.path, "templates": workload.templates, "genders": workload.genders,
        "first": workload.first, "stride": connections, "run": workload.run,
        "content_type": workload.content_type,
    }
    with tempfile.TemporaryDirectory(prefix="samplan-wrk-") as tmp:
        config_file, out_file = Path(tmp) / "config.lua", Path(tmp) / "out.json"
        config_file.write_text("return " + _lua(config) + "\n", encoding="utf-8")
        env = {**os.environ, "BENCH_WRK_CONFIG": str(config_file), "BENCH_WRK_OUT": str(out_file)}
        command = [exe, "-t", str(connections), "-c", str(connections),
                   "-d", f"{max(1, round(seconds))}s", "--timeout", "30s",
                   "-s", str(LUA_SCRIPT), origin + "/"]
        proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False,
                              timeout=seconds + 120)
        if proc.returncode != 0 or not out_file.exists():
            raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
        data = json.loads(out_file.read_text())
    errors = data["socket_errors"]
    return Measurement(
        client="wrk",
        seconds=data["duration_us"] / 1e6,
        latencies_us=[float(v) for v in data["latencies_us"]],
        statuses={int(k): v for k, v in data["statuses"].items()},
        aux_statuses={int(k): v for k, v in data["aux_statuses"].items()},
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
    )


def run_python(origin: str, workload: Workload, *, seconds: float,
               connections: int) -> Measurement:
    """The fallback when wrk is missing: ``connections`` asyncio workers, one connection each.

    A minimal HTTP/1.1 client on asyncio streams (keep-alive, Content-Length bodies,
    which is what uvicorn sends for these routes): a pooled httpx client does under
    half the requests a second at 32 connections on two cores, and the load generator
    shares the cores with the server it measures.
    """
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(_python(origin, workload, seconds, connections))
    return uvloop.run(_python(origin, workload, seconds, connections))


class _Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(self, method: str, path: str, headers: dict[str, str],
                      body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        answer: dict[str, str] = {}
        for line in header_lines:
            if ":" in line:
                key, value = line.split(":", 1)
                answer[key.strip().lower()] = value.strip()
        if "chunked" in answer.get("transfer-encoding", ""):
            raise OSError("chunked answers are not supported by this client")
        content = await self.reader.readexactly(int(answer.get("content-length", "0")))
        if answer.get("connection", "").lower() == "close":
            await self.close()
        return int(status_line.split(" ", 2)[1]), answer, content


async def _python(origin: str, workload: Workload, seconds: float,
                  connections: int) -> Measurement:
    import re
    from urllib.parse import urlsplit

    from bench.dataset import fill_template

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    aux: dict[int, int] = {}
    socket_errors = 0
    title = re.compile(rb'"title":"[^"]*"')
    where = urlsplit(origin)
    host, port = where.hostname or "127.0.0.1", where.port or 80
    started = time.perf_counter()
    deadline = started + seconds

    async def worker(thread: int) -> None:
        nonlocal socket_errors
        conn = _Connection(host, port)
        rng = random.Random(thread * 7919 + int(started))
        sent = revision = 0
        while time.perf_counter() < deadline:
            try:
                headers = dict(workload.headers)
                if workload.mode == "post":
                    n = workload.first + thread + connections * sent
                    sent += 1
                    k = n % len(workload.templates)
                    body = fill_template(workload.templates[k], workload.genders[k], n,
                                         workload.run).encode()
                    headers["Content-Type"] = workload.content_type
                    t0 = time.perf_counter()
                    status, _, _ = await conn.request("POST", workload.path, headers, body)
                else:
                    path = rng.choice(workload.paths)
                    if workload.mode == "update":
                        got, got_headers, content = await conn.request("GET", path, headers)
                        aux[got] = aux.get(got, 0) + 1
                        if got != 200:
                            continue
                        revision += 1
                        body = title.sub(
                            f'"title":"Dokumenterad överenskommelse (rev {thread}.{revision})"'
                            .encode(), content, count=1)
                        headers["If-Match"] = got_headers.get("etag", "")
                        headers["Content-Type"] = "application/fhir+json"
                        t0 = time.perf_counter()
                        status, _, _ = await conn.request("PUT", path, headers, body)
                    else:
                        t0 = time.perf_counter()
                        status, _, _ = await conn.request("GET", path, headers)
                elapsed = time.perf_counter() - t0
            except (OSError, asyncio.IncompleteReadError, ValueError):
                socket_errors += 1
                await conn.close()
                continue
            statuses[status] = statuses.get(status, 0) + 1
            latencies.append(elapsed * 1e6)
        await conn.close()

    await asyncio.gather(*(worker(t) for t in range(connections)))
    return Measurement("python", time.perf_counter() - started, latencies, statuses, aux,
                       socket_errors)


def run(origin: str, workload: Workload, *, seconds: float, connections: int,
        client: str) -> Measurement:
    if client == "wrk":
        return run_wrk(origin, workload, seconds=seconds, connections=connections)
    return run_python(origin, workload, seconds=seconds, connections=connections)
