"""Subscription test helpers: real `samplan worker` processes, short timings, subscribing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from samplan.subscriptions.bench import subscription_body
from samplan.subscriptions.receiver import Receiver

BASE_URL = "http://samplan.test/fhir"
SECRET = "a-receiver-secret-0123456789"

# Short timings so a test sees retries, errors and crash takeovers within seconds.
FAST = {
    "SAMPLAN_SUBSCRIPTIONS_BACKOFF_BASE": "0.05",
    "SAMPLAN_SUBSCRIPTIONS_BACKOFF_CAP": "0.4",
    "SAMPLAN_SUBSCRIPTIONS_MAX_ATTEMPTS": "40",
    "SAMPLAN_SUBSCRIPTIONS_TIMEOUT": "2",
    "SAMPLAN_SUBSCRIPTIONS_LEASE_MARGIN": "0.5",
    "SAMPLAN_SUBSCRIPTIONS_WORKER_POLL_INTERVAL": "0.05",
}


class WorkerProcess:
    """A `samplan worker` subprocess on the test database."""

    def __init__(self, database_url: str, log_dir: Path, name: str = "worker",
                 **settings: str) -> None:
        self.database_url = database_url
        self.log_path = log_dir / f"{name}.log"
        self.env = {
            **os.environ,
            "SAMPLAN_DATABASE_URL": database_url,
            "SAMPLAN_ENVIRONMENT": "test",
            "SAMPLAN_AUTH_ENABLED": "false",
            "SAMPLAN_PUBLIC_BASE_URL": BASE_URL,
            "SAMPLAN_SUBSCRIPTIONS_ALLOW_PRIVATE_ENDPOINTS": "true",
            **FAST,
            **{f"SAMPLAN_SUBSCRIPTIONS_{k.upper()}": v for k, v in settings.items()},
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        samplan = Path(sys.executable).with_name("samplan")
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([str(samplan), "worker"], env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 20
        while b"worker" not in self.log_path.read_bytes()[offset:] or \
                b" started" not in self.log_path.read_bytes()[offset:]:
            if self.process.poll() is not None:
                raise RuntimeError(f"samplan worker exited: {self.log()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"samplan worker did not start: {self.log()[-2000:]}")
            time.sleep(0.02)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as in a crash."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def subscribe(client: httpx.AsyncClient, receiver: Receiver, *,
                    criteria: str | None = None, content: str = "id-only",
                    **channel: int) -> str:
    """Create a Subscription to agreement-changed for ``receiver``; its id."""
    body = subscription_body(receiver.url, SECRET, criteria=criteria, content=content, **channel)
    response = await client.post("/fhir/Subscription", json=body)
    assert response.status_code == 201, response.text
    sid: str = response.json()["id"]
    return sid


async def wait_status(client: httpx.AsyncClient, sid: str, *wanted: str,
                      timeout: float = 20.0) -> dict[str, Any]:
    """Poll the Subscription until its status is one of ``wanted``."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = (await client.get(f"/fhir/Subscription/{sid}")).json()
        if body.get("status") in wanted:
            return body
        if time.monotonic() > deadline:
            raise TimeoutError(f"Subscription/{sid} is {body.get('status')}, not {wanted}")
        await asyncio.sleep(0.05)


async def subscribe_active(client: httpx.AsyncClient, receiver: Receiver, **kwargs: Any) -> str:
    sid = await subscribe(client, receiver, **kwargs)
    await wait_status(client, sid, "active")
    return sid
