"""A real `samplan serve` process on a free loopback port, for end-to-end tests."""

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

from samplan.store import migrate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(
    database_url: str, *, env: dict[str, str] | None = None, log_dir: Path | None = None,
    extra_args: tuple[str, ...] = (),
) -> Iterator[str]:
    """Migrate, start `samplan serve`, wait for /healthz, yield the FHIR base URL, stop it."""
    migrate.upgrade(database_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    environment = {
        **os.environ,
        "SAMPLAN_DATABASE_URL": database_url,
        "SAMPLAN_ENVIRONMENT": "test",
        "SAMPLAN_AUTH_ENABLED": "false",
        "SAMPLAN_PUBLIC_BASE_URL": base,
        "SAMPLAN_SUBSCRIPTIONS_ALLOW_PRIVATE_ENDPOINTS": "true",
        **(env or {}),
    }
    samplan = Path(sys.executable).with_name("samplan")
    log_path = (log_dir or Path("/tmp")) / f"samplan-serve-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(samplan), "serve", "--host", "127.0.0.1", "--port", str(port), *extra_args],
            env=environment, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"samplan serve exited: {log_path.read_text()[-2000:]}")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"samplan serve did not start: {log_path.read_text()}")
                time.sleep(0.1)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
