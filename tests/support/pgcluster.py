"""A brand-new PostgreSQL cluster for one test session.

``postgres_cluster()`` runs ``initdb`` into a fresh temporary directory, starts
the server on a free loopback port with durability switched off (fast, and
thrown away afterwards), creates the ``samplan`` database and yields its
SQLAlchemy URL. On exit it stops the server (``-m immediate``) and removes the
directory, even when a step in between failed.

Set ``SAMPLAN_TEST_POSTGRES_URL`` to use a server you run yourself instead.

PostgreSQL refuses to run as root. Under root (CI containers) the server
programs run as the ``postgres`` system user through ``runuser``; when that
user does not exist an unprivileged ``samplan-pg`` system user is created.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_URL",
    "PostgresUnavailable",
    "TemporaryCluster",
    "find_pg_bin",
    "postgres_cluster",
    "temporary_cluster",
]

ENV_URL = "SAMPLAN_TEST_POSTGRES_URL"
USER = "samplan"
DATABASE = "samplan"
SERVICE_USERS = ("postgres", "samplan-pg")

_DEBIAN_BIN_DIRS = "/usr/lib/postgresql/*/bin"
_START_ATTEMPTS = 3
_LOG_TAIL_LINES = 40
# sockaddr_un.sun_path is 108 bytes; leave room for "/.s.PGSQL.NNNNN".
_MAX_SOCKET_DIR = 90

log = logging.getLogger(__name__)


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server programs were found, or the cluster would not start."""


def find_pg_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or None.

    First ``initdb`` on PATH (symlinks resolved, so ``/usr/local/bin/initdb``
    gives ``/usr/lib/postgresql/15/bin``), then the highest version under
    ``/usr/lib/postgresql/*/bin`` (Debian and Ubuntu keep them off PATH).
    """
    on_path = shutil.which("initdb")
    if on_path is not None:
        resolved = Path(on_path).resolve()
        # Debian's postgresql-common may point programs at its pg_wrapper script.
        if resolved.name == "initdb" and _is_bin_dir(resolved.parent):
            return resolved.parent
    candidates = [p for p in Path("/").glob(_DEBIAN_BIN_DIRS.lstrip("/")) if _is_bin_dir(p)]
    if not candidates:
        return None
    return max(candidates, key=lambda p: _version_key(p.parent.name))


def _is_bin_dir(path: Path) -> bool:
    return all(os.access(path / name, os.X_OK) for name in ("initdb", "pg_ctl"))


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (-1,)


def _traversable_by_all(path: Path) -> bool:
    """Whether every directory down to ``path`` lets other users pass (o+x)."""
    return all(os.stat(p).st_mode & 0o001 for p in (path, *path.parents))


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _service_user() -> pwd.struct_passwd:
    """The unprivileged user that runs the server when we are root."""
    for name in SERVICE_USERS:
        with suppress(KeyError):
            return pwd.getpwnam(name)
    name = SERVICE_USERS[-1]
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(name)


@dataclass
class TemporaryCluster:
    """One throwaway PostgreSQL cluster in ``base_dir``; see :func:`temporary_cluster`."""

    bin_dir: Path
    base_dir: Path
    port: int = 0
    run_as: pwd.struct_passwd | None = None
    settings: dict[str, str] = field(default_factory=dict)
    """Server settings over the defaults of :meth:`configure` (``max_connections``...)."""
    _env: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def __post_init__(self) -> None:
        # PG* variables of the caller (PGPORT, PGDATA, PGOPTIONS...) must not leak in.
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        self._env.update(LC_ALL="C", LANG="C", HOME=str(self.base_dir))

    def run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program from ``bin_dir``, as ``run_as`` when set."""
        command = [str(self.bin_dir / program), *args]
        as_user: dict[str, Any] = {}
        if self.run_as is not None:
            if shutil.which("runuser"):
                command = ["runuser", "-u", self.run_as.pw_name, "--", *command]
            else:
                as_user = {
                    "user": self.run_as.pw_uid,
                    "group": self.run_as.pw_gid,
                    "extra_groups": [],
                }
        return subprocess.run(
            command,
            **as_user,
            cwd=self.base_dir,  # the caller's cwd (/root) may be unreadable to run_as
            env=self._env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def run_checked(self, program: str, *args: str) -> None:
        result = self.run(program, *args)
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"{program} failed with exit status {result.returncode}:\n"
                f"{result.stdout}{result.stderr}{self.log_tail()}"
            )

    def log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n--- postgres.log (tail) ---\n" + "\n".join(lines[-_LOG_TAIL_LINES:])

    def init(self) -> None:
        self.run_checked(
            "initdb",
            "--pgdata",
            str(self.data_dir),
            "--auth=trust",
            f"--username={USER}",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )

    def configure(self) -> None:
        socket_dir = str(self.base_dir) if len(str(self.base_dir)) <= _MAX_SOCKET_DIR else ""
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{socket_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "300",
            "shared_buffers": "128MB",
            **self.settings,
        }
        # Appended, so that on a retry with another port the last block wins. Opening
        # the existing file keeps its owner (the service user when we are root).
        lines = [f"{name} = {value}" for name, value in settings.items()]
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# samplan test cluster\n" + "\n".join(lines) + "\n")

    def start(self) -> None:
        """Start on a free port, trying another when the one found was taken meanwhile."""
        for attempt in range(1, _START_ATTEMPTS + 1):
            self.port = _free_loopback_port()
            self.configure()
            result = self.run(
                "pg_ctl", "start", "--wait", "--timeout=60", "-D", str(self.data_dir),
                "-l", str(self.log_file),
            )  # fmt: skip
            if result.returncode == 0:
                return
            tail = self.log_tail()
            if attempt < _START_ATTEMPTS and "could not bind" in tail:
                log.info("port %d was taken, retrying", self.port)
                continue
            raise PostgresUnavailable(
                f"pg_ctl start failed with exit status {result.returncode}:\n"
                f"{result.stdout}{result.stderr}{tail}"
            )

    def halt(self, mode: str = "fast") -> None:
        """Stop the server as a failover or a maintenance window does (``fast``: every
        session is ended with an error, ``immediate``: a crash), keeping its port and data
        for :meth:`resume`. Raises when it does not stop."""
        self.run_checked("pg_ctl", "stop", "--wait", "--timeout=60", "-m", mode,
                         "-D", str(self.data_dir))

    def resume(self) -> None:
        """Start the server stopped by :meth:`halt` again, on the same port."""
        self.run_checked("pg_ctl", "start", "--wait", "--timeout=60", "-D", str(self.data_dir),
                         "-l", str(self.log_file))

    def set(self, **settings: object) -> None:
        """Append server settings to postgresql.conf (they take effect at the next start)."""
        lines = [f"{name} = {value}" for name, value in settings.items()]
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# set by a test\n" + "\n".join(lines) + "\n")

    def create_database(self) -> None:
        self.run_checked("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, DATABASE)

    def stop(self) -> None:
        """Stop the server if it runs; never raises."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        try:
            result = self.run(
                "pg_ctl", "stop", "--wait", "-m", "immediate", "-D", str(self.data_dir)
            )
            if result.returncode == 0:
                return
            log.warning("pg_ctl stop failed: %s%s", result.stdout, result.stderr)
        except (OSError, subprocess.SubprocessError):
            log.warning("pg_ctl stop failed", exc_info=True)
        self._kill_postmaster()

    def _kill_postmaster(self) -> None:
        """SIGQUIT (immediate shutdown) to the postmaster this cluster started."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGQUIT)
        except (OSError, ValueError, IndexError):
            log.warning("could not signal the postmaster of %s", self.data_dir, exc_info=True)


@contextmanager
def temporary_cluster(**settings: str) -> Iterator[TemporaryCluster]:
    """Create, start and finally stop and delete a cluster with a ``samplan`` database
    (``settings``: server settings over the defaults, e.g. ``max_connections="40"``)."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise PostgresUnavailable(
            f"PostgreSQL server programs not found (no initdb on PATH nor in {_DEBIAN_BIN_DIRS}); "
            f"install PostgreSQL or set {ENV_URL}"
        )
    as_root = os.geteuid() == 0
    parent = tempfile.gettempdir()
    if as_root and not _traversable_by_all(Path(parent)):
        parent = "/tmp"
    base_dir = Path(tempfile.mkdtemp(prefix="samplan-pg-", dir=parent))
    try:
        run_as = None
        if as_root:
            run_as = _service_user()
            os.chown(base_dir, run_as.pw_uid, run_as.pw_gid)
        cluster = TemporaryCluster(bin_dir=bin_dir, base_dir=base_dir, run_as=run_as,
                                   settings=dict(settings))
        try:
            cluster.init()
            cluster.start()
            cluster.create_database()
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """A SQLAlchemy URL (``postgresql+asyncpg://...``) for an empty ``samplan`` database.

    ``SAMPLAN_TEST_POSTGRES_URL`` when set, else a new temporary cluster that
    lives as long as the ``with`` block.
    """
    external = os.environ.get(ENV_URL)
    if external:
        yield external
        return
    with temporary_cluster() as cluster:
        yield cluster.url
