"""nginx as a reverse proxy in front of a test server: Debian's nginx, started by the test itself
(never the system service) with a configuration, logs, pid file and temporary files all in a
folder of the test's own, on a free loopback port, and always stopped.

`.ci/run` installs nginx and sets XRCOMPLETE_REQUIRE_NGINX=1: there a missing nginx is a
failure, not a skip."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

CONFIG = """\
daemon off;
worker_processes 1;
{user}
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{
    worker_connections 1024;
}}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_connect_timeout 10s;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    """The nginx program; skips the test without one (fails it under XRCOMPLETE_REQUIRE_NGINX)."""
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None
    )
    if found is None:
        message = "needs Debian's nginx (apt-get install -y nginx)"
        if os.environ.get("XRCOMPLETE_REQUIRE_NGINX"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Proxy:
    """A running nginx: requests to ``host:port`` are passed to the upstream server."""

    host: str
    port: int
    root: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _answers(port: int) -> bool:
    """Whether nginx on ``port`` passes GET /healthz through to a live upstream."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Fast shutdown (SIGTERM: the master stops its workers, then exits); if the master is
    still there after 10 s, SIGKILL to its process group (the master and its workers, started
    in a session of their own; the master not yet reaped, the group is still theirs)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@contextmanager
def nginx_in_front(root: Path, upstream: int, *, timeout: float = 15.0) -> Iterator[Proxy]:
    """nginx on a free loopback port proxying to ``127.0.0.1:upstream`` (which must answer
    ``GET /healthz``), its files in ``root``; yields once requests pass through, and stops it
    on exit."""
    binary = nginx_binary()
    root.mkdir(parents=True, exist_ok=True)
    # A master started as root hands its workers to "nobody" by default, who cannot enter the
    # test's temporary folder: keep them as root there.
    user = "user root;" if os.geteuid() == 0 else ""
    conf = root / "nginx.conf"
    failed = ""
    for _attempt in range(3):  # another process may take the free port before nginx does
        port = free_port()
        text = CONFIG.format(user=user, root=root, port=port, upstream=upstream)
        conf.write_text(text, encoding="utf-8")
        # -e: the errors met before the configuration is read go there too, not to /var/log.
        command = [binary, "-c", str(conf), "-p", str(root), "-e", str(root / "error.log")]
        with (root / "stderr.log").open("wb") as stderr:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + timeout
            while proc.poll() is None and not _answers(port):
                if time.monotonic() > deadline:
                    raise AssertionError(f"nginx did not answer within {timeout} s: {_logs(root)}")
                time.sleep(0.05)
            if proc.poll() is None:
                yield Proxy("127.0.0.1", port, root)
                return
            failed = _logs(root)
        finally:
            _stop(proc)
        if "Address already in use" not in failed:
            break
    raise AssertionError(f"nginx did not start: {failed}")


def _logs(root: Path) -> str:
    return "".join(
        (root / name).read_text(encoding="utf-8", errors="replace")
        for name in ["stderr.log", "error.log"]
        if (root / name).exists()
    )
