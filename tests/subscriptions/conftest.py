"""Fixtures for the subscription tests: a real receiver and real `samplan worker` processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from samplan.subscriptions.receiver import Receiver
from subscriptions.helpers import SECRET, WorkerProcess


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(SECRET) as r:
        yield r


@pytest.fixture
def worker_factory(database_url: str, tmp_path: Path) -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def make(name: str = "worker", **settings: str) -> WorkerProcess:
        process = WorkerProcess(database_url, tmp_path, name, **settings)
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()


@pytest.fixture
def worker(worker_factory: Any) -> WorkerProcess:
    process: WorkerProcess = worker_factory().start()
    return process


