"""`samplan serve --with-worker`: a real server that delivers by itself (uses the bench hook)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from samplan.subscriptions.bench import measure_latency
from support.server import running_server

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("services")]


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[str]:
    with running_server(database_url, extra_args=("--with-worker",), log_dir=tmp_path) as base:
        yield base


class TestServeWithWorker:
    async def test_changes_arrive_without_a_separate_worker(self, server: str) -> None:
        report = await measure_latency(server, writes=30, rate=50.0, settle=15)
        assert report.received == 30, str(report)
        assert report.missing == 0
        assert report.duplicates == 0
        assert report.p50_ms < 1000, str(report)
