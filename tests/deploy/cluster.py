"""The production shape on one machine: PostgreSQL, N `samplan serve`, M `samplan worker`, nginx.

Used by ``test_cluster.py``. Every process is started by us, on free loopback
ports, with its own log file in the test's temporary directory, and is stopped
(or killed) by its own pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

SAMPLAN = Path(sys.executable).with_name("samplan")

# Short timings so a killed worker's claims are taken over within seconds.
FAST_SUBSCRIPTIONS = {
    "SAMPLAN_SUBSCRIPTIONS_BACKOFF_BASE": "0.05",
    "SAMPLAN_SUBSCRIPTIONS_BACKOFF_CAP": "0.4",
    "SAMPLAN_SUBSCRIPTIONS_MAX_ATTEMPTS": "60",
    "SAMPLAN_SUBSCRIPTIONS_TIMEOUT": "2",
    "SAMPLAN_SUBSCRIPTIONS_LEASE_MARGIN": "0.5",
    "SAMPLAN_SUBSCRIPTIONS_WORKER_POLL_INTERVAL": "0.1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)


class Process:
    """One child process with a log file; ``kill()`` is SIGKILL, ``stop()`` SIGTERM then wait."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.argv, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL, as in a crash or an OOM kill: no cleanup at all."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM, as Kubernetes does: the process shuts down gracefully (no wait here)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def reload(self) -> None:
        """SIGHUP: nginx re-reads its configuration (new workers, old ones finish)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float = 25.0) -> None:
        if not self.alive:
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its direct children (nginx's or PostgreSQL's workers)."""
    total = cpu_seconds(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid:
            total += cpu_seconds(int(stat.parent.name))
    return total


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (all cores)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_ready(url: str, process: Process, timeout: float = 60.0) -> None:
    """Until ``url`` answers 200 (the process's /readyz)."""
    deadline = time.monotonic() + timeout
    while True:
        if not process.alive:
            raise RuntimeError(f"{process.name} exited:\n{process.log()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.name} not ready:\n{process.log()[-3000:]}")
        time.sleep(0.1)


def wait_worker(process: Process, offset: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while b" started" not in process.log_path.read_bytes()[offset:]:
        if not process.alive:
            raise RuntimeError(f"{process.name} exited:\n{process.log()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.name} did not start:\n{process.log()[-3000:]}")
        time.sleep(0.05)


def nginx_config(directory: Path, listen: dict[int, list[int]],
                 down: frozenset[int] = frozenset()) -> Path:
    """An nginx.conf with one ``server`` per listen port, proxying to its upstream ports.

    As the Kubernetes Service / an ingress would: round robin, a failed
    upstream is taken out for 2 s after one connection error, and idempotent
    requests (GET, PUT, DELETE) whose upstream failed before answering are
    passed to the next one. POST and PATCH are not retried once sent (nginx's
    default): those in flight at a crash fail, and the test counts them.
    Ports in ``down`` are drained (``server ... down``), as Kubernetes takes a
    terminating pod out of the Service's endpoints before it gets SIGTERM.
    """
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / sub).mkdir(exist_ok=True)
        (directory / sub).chmod(0o777)
    user = "user nobody nogroup;" if os.geteuid() == 0 else ""
    servers = []
    for port, upstreams in listen.items():
        members = "\n".join(
            f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=1s"
            f"{' down' if p in down else ''};"
            for p in upstreams)
        servers.append(f"""
    upstream samplan_{port} {{
{members}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://samplan_{port};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host:$server_port;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-ID $request_id;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 2;
            proxy_connect_timeout 2s;
            proxy_read_timeout 30s;
        }}
    }}""")
    conf = directory / "nginx.conf"
    conf.write_text(f"""{user}
worker_processes 2;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    client_max_body_size 2m;
    # No keep-alive towards the clients: the drain below reloads nginx, and an old worker
    # closes its idle client connections, racing a request just sent on one. (An ingress
    # controller updates endpoints without a reload; the test has only plain nginx.)
    keepalive_timeout 0;
{"".join(servers)}
}}
""")
    return conf
