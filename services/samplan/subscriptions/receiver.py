"""A small notification receiver: what a subscriber runs, for tests and the bench.

It listens on ``127.0.0.1`` (port 0 picks a free one), answers each POST with
``status`` after ``delay`` seconds, and records every notification with the
time it arrived and whether its ``X-Hub-Signature-256`` verifies. ``stop()``
makes it unreachable (connection refused) and ``start()`` brings it back on the
same port, which is how tests take a subscriber offline.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from samplan.subscriptions.signing import SIGNATURE_HEADER, verify


@dataclass
class Received:
    """One notification as it arrived."""

    body: bytes
    headers: dict[str, str]
    at: float  # time.time() on arrival
    signature_ok: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def bundle(self) -> dict[str, Any]:
        data: dict[str, Any] = orjson.loads(self.body)
        return data

    @cached_property
    def status(self) -> dict[str, Any]:
        """The SubscriptionStatus parameters (first entry), by name; events as a list."""
        parameters = self.bundle["entry"][0]["resource"]["parameter"]
        out: dict[str, Any] = {"notification-event": []}
        for p in parameters:
            if p["name"] == "notification-event":
                out["notification-event"].append(
                    {part["name"]: next(v for k, v in part.items() if k.startswith("value"))
                     for part in p["part"]})
            else:
                value = next((v for k, v in p.items() if k.startswith("value")), None)
                out[p["name"]] = value
        return out

    @property
    def kind(self) -> str:
        return str(self.status["type"])

    @property
    def subscription_id(self) -> str:
        return str(self.status["subscription"]["reference"]).rsplit("/", 1)[-1]

    @property
    def event_numbers(self) -> list[int]:
        return [int(e["event-number"]) for e in self.status["notification-event"]]

    @property
    def event_timestamps(self) -> list[str]:
        return [str(e["timestamp"]) for e in self.status["notification-event"]]


class Receiver:
    """A threaded HTTP server recording notifications (see the module docstring)."""

    def __init__(self, secret: str | None = None, *, port: int = 0) -> None:
        self.secret = secret
        self.status = 200
        self.delay = 0.0
        self.received: list[Received] = []
        self.on_receive: Callable[[Received], None] | None = None
        self._lock = threading.Lock()
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                item = Received(body, {k.lower(): v for k, v in self.headers.items()},
                                time.time())
                if receiver.secret is not None:
                    item.signature_ok = verify(receiver.secret, body,
                                               self.headers.get(SIGNATURE_HEADER))
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver.status
                if 200 <= status < 300:
                    with receiver._lock:
                        receiver.received.append(item)
                    if receiver.on_receive is not None:
                        receiver.on_receive(item)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        server.daemon_threads = True
        self._port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/notify"

    # -- what arrived --------------------------------------------------------------------------

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def notifications(self, subscription_id: str | None = None,
                      kind: str = "event-notification") -> list[Received]:
        return [r for r in self.snapshot() if r.kind == kind
                and (subscription_id is None or r.subscription_id == subscription_id)]

    def event_numbers(self, subscription_id: str | None = None) -> list[int]:
        """Every event number received, in arrival order (duplicates kept)."""
        return [n for r in self.notifications(subscription_id) for n in r.event_numbers]

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 20.0,
                       what: str = "notifications") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                kinds = [(r.kind, r.event_numbers) for r in self.snapshot()]
                raise TimeoutError(f"waited {timeout} s for {what}; got {kinds[-20:]}")
            await asyncio.sleep(0.02)
