"""The processes under test: `samplan serve`, the ceiling app, and a throw-away PostgreSQL.

Each server is its own process on a free loopback port, started the way an
operator would (``samplan serve``; uvicorn for the ceiling), its output in a
log file in the work directory, stopped with SIGTERM (SIGKILL after 15 s).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _process(command: list[str], env: dict[str, str], health: str, log_path: Path,
             name: str) -> Iterator[subprocess.Popen[bytes]]:
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=REPO)
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited:\n{log_path.read_text()[-3000:]}")
                try:
                    if httpx.get(health, timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.1)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def samplan(database_url: str, *, log_dir: Path, env: dict[str, str],
            args: tuple[str, ...] = ()) -> Iterator[str]:
    """A real `samplan serve` (one worker, as `make run`), plus ``args``; yields its origin."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    environment = {
        **os.environ,
        "SAMPLAN_DATABASE_URL": database_url,
        "SAMPLAN_PUBLIC_BASE_URL": f"{origin}/fhir",
        "SAMPLAN_DATA_DIR": str(log_dir),
        **env,
    }
    samplan_exe = Path(sys.executable).with_name("samplan")
    command = [str(samplan_exe), "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    log = log_dir / f"samplan-serve-{port}.log"
    with _process(command, environment, f"{origin}/healthz", log, "samplan serve"):
        yield origin


@contextmanager
def ceiling(database_url: str, *, log_dir: Path, pool: int) -> Iterator[str]:
    """bench/ceiling.py under uvicorn (uvloop, httptools: what `samplan serve` gets)."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    environment = {**os.environ, "BENCH_CEILING_DATABASE_URL": database_url,
                   "BENCH_CEILING_POOL": str(pool)}
    command = [sys.executable, "-m", "uvicorn", "bench.ceiling:create_app", "--factory",
               "--app-dir", str(REPO), "--host", "127.0.0.1", "--port", str(port),
               "--no-access-log", "--log-level", "warning"]
    log = log_dir / f"ceiling-{port}.log"
    with _process(command, environment, f"{origin}/healthz", log, "ceiling"):
        yield origin


@contextmanager
def postgres(url: str | None) -> Iterator[tuple[str, str]]:
    """An existing database (``url``) or a new throw-away cluster; yields (url, version)."""
    if url:
        yield url, _pg_version(url)
        return
    sys.path.insert(0, str(REPO / "tests"))
    try:
        from support.pgcluster import temporary_cluster
    finally:
        sys.path.remove(str(REPO / "tests"))
    with temporary_cluster() as cluster:
        yield cluster.url, _pg_version(cluster.url)


def _pg_version(url: str) -> str:
    import asyncio

    async def version() -> str:
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    try:
        return asyncio.run(version())
    except Exception:  # noqa: BLE001 - only for the report
        return "?"
