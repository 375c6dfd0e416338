"""The throwaway PostgreSQL cluster the test session runs on."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import asyncpg
import pytest

from .pgcluster import ENV_URL, find_pg_bin, postgres_cluster, temporary_cluster


def _require_server_programs() -> None:
    if find_pg_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server programs are missing on CI (see .ci/run)")
        pytest.skip("PostgreSQL server programs not installed")


def _accepts_connections(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.postgres
class TestTemporaryCluster:
    async def test_serves_the_samplan_database_on_loopback_and_cleans_up(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        _require_server_programs()
        monkeypatch.delenv(ENV_URL, raising=False)

        with temporary_cluster() as cluster:
            url = cluster.url
            assert url == f"postgresql+asyncpg://samplan@127.0.0.1:{cluster.port}/samplan"
            connection = await asyncpg.connect(url.replace("+asyncpg", "", 1))
            try:
                row = await connection.fetchrow(
                    "select 1 as one, current_user as who, current_database() as db,"
                    " host(inet_server_addr()) as addr, inet_server_port() as port,"
                    " current_setting('fsync') as fsync,"
                    " current_setting('max_connections')::int as max_connections"
                )
            finally:
                await connection.close()
            assert row is not None
            assert dict(row) == {
                "one": 1,
                "who": "samplan",
                "db": "samplan",
                "addr": "127.0.0.1",
                "port": cluster.port,
                "fsync": "off",
                "max_connections": 300,
            }
            base_dir, port = cluster.base_dir, cluster.port

        assert not base_dir.exists()
        assert not _accepts_connections(port)


class TestPostgresCluster:
    def test_yields_the_configured_url_without_starting_a_server(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        url = "postgresql+asyncpg://someone@db.example:5433/elsewhere"
        monkeypatch.setenv(ENV_URL, url)
        monkeypatch.setenv("PATH", "")  # would break initdb, were it called
        with postgres_cluster() as yielded:
            assert yielded == url


class TestFindPgBin:
    def test_finds_a_directory_with_initdb_and_pg_ctl(self) -> None:
        _require_server_programs()
        bin_dir = find_pg_bin()
        assert bin_dir is not None
        assert bin_dir.is_absolute()
        assert (bin_dir / "initdb").is_file()
        assert (bin_dir / "pg_ctl").is_file()

    def test_resolves_symlinks_on_path(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real = tmp_path / "lib" / "postgresql" / "99" / "bin"
        real.mkdir(parents=True)
        for name in ("initdb", "pg_ctl"):
            (real / name).write_text("#!/bin/sh\n")
            (real / name).chmod(0o755)
        links = tmp_path / "bin"
        links.mkdir()
        (links / "initdb").symlink_to(real / "initdb")
        monkeypatch.setenv("PATH", str(links))
        assert find_pg_bin() == real.resolve()
