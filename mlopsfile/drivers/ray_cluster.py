"""Reaching a Ray cluster: a configured address, or a local head mlopsfile starts and owns.

The local head runs as a background service (``ray start --head --block`` in its own
session) so models keep serving after the CLI exits. Its pid, ports and auth token are
recorded under ``.mlopsfile/ray/``; ``down`` stops exactly that process group and nothing
else. Token authentication is always on for the local head.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from mlopsfile.config import Settings
from mlopsfile.errors import DriverError

HEAD_START_TIMEOUT_S = 90.0
HEAD_STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class ClusterEndpoint:
    """How to talk to one Ray cluster."""

    address: str
    dashboard_url: str
    token: str | None
    token_path: str | None = None

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client_env(self) -> dict[str, str]:
        """Environment a Ray client process needs to be let in."""
        # Ray's fatal-signal handler prints a stack dump on SIGTERM, the normal way to stop `watch`.
        env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_FAILURE_SIGNAL_HANDLER": "1"}
        if self.token_path:
            env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": self.token_path}
        elif self.token:
            env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}
        return env


@dataclass
class HeadRecord:
    pid: int
    address: str
    dashboard_url: str
    token_path: str
    temp_dir: str
    log_path: str
    started_at: float


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; an exited child nobody reaped yet (a zombie) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _token_from_environment() -> tuple[str | None, str | None]:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"], None
    for candidate in (os.environ.get("RAY_AUTH_TOKEN_PATH"), str(Path.home() / ".ray" / "auth_token")):
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_text().strip(), candidate
    return None, None


def external_endpoint(address: str, dashboard_url: str | None) -> ClusterEndpoint:
    """Endpoint of a cluster someone else runs (``ray.address`` or RAY_ADDRESS)."""
    token, token_path = _token_from_environment()
    if address.startswith(("http://", "https://")):
        dashboard = address
        host = urlparse(address).hostname or "127.0.0.1"
        address = f"{host}:6379"
    else:
        host = address.split(":")[0] if address != "auto" else "127.0.0.1"
        dashboard = f"http://{host}:8265"
    return ClusterEndpoint(address=address, dashboard_url=(dashboard_url or dashboard).rstrip("/"),
                           token=token, token_path=token_path)


class LocalHead:
    """The local Ray head of one project directory."""

    def __init__(self, state_dir: Path, num_cpus: int | None = None) -> None:
        self.directory = state_dir / "ray"
        self.record_path = self.directory / "head.json"
        self.num_cpus = num_cpus

    def record(self) -> HeadRecord | None:
        try:
            return HeadRecord(**json.loads(self.record_path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def endpoint(self) -> ClusterEndpoint | None:
        """The running head's endpoint, or None when it is not running."""
        record = self.record()
        if record is None or not pid_alive(record.pid):
            return None
        token = Path(record.token_path).read_text().strip() if Path(record.token_path).is_file() else None
        return ClusterEndpoint(record.address, record.dashboard_url, token, record.token_path)

    def ensure_started(self) -> ClusterEndpoint:
        running = self.endpoint()
        if running is not None:
            return running
        return self._start()

    def _start(self) -> ClusterEndpoint:
        self.directory.mkdir(parents=True, exist_ok=True)
        token_path = self.directory / "auth_token"
        if not token_path.is_file():
            token_path.write_text(secrets.token_hex(32))
            token_path.chmod(0o600)
        gcs_port, dashboard_port = free_port(), free_port()
        # Ray's unix socket paths must stay short, so its temp dir lives under /tmp.
        temp_dir = Path("/tmp") / f"mlopsfile-ray-{hashlib.sha256(str(self.directory).encode()).hexdigest()[:10]}"
        log_path = self.directory / "head.log"
        ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray") or "ray"
        command = [
            ray_cli, "start", "--head", "--block", "--disable-usage-stats",
            "--port", str(gcs_port), "--node-ip-address", "127.0.0.1",
            "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port),
            "--temp-dir", str(temp_dir),
            # Ray's fixed default ports (52365, 10001, ...) would clash with a second head on this
            # machine (another project, a benchmark): every listening port is chosen free.
            "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port()),
            "--ray-client-server-port", str(free_port()),
        ]
        if self.num_cpus is not None:
            command += ["--num-cpus", str(self.num_cpus)]
        # A one-node head has no peer to drain work to; a short drain keeps `down` quick.
        env = os.environ | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path),
                            "RAY_USAGE_STATS_ENABLED": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "2"}
        env.pop("RAY_ADDRESS", None)
        with open(log_path, "ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env, start_new_session=True, cwd=self.directory)
        record = HeadRecord(pid=process.pid, address=f"127.0.0.1:{gcs_port}",
                            dashboard_url=f"http://127.0.0.1:{dashboard_port}", token_path=str(token_path),
                            temp_dir=str(temp_dir), log_path=str(log_path), started_at=time.time())
        endpoint = ClusterEndpoint(record.address, record.dashboard_url, token_path.read_text().strip(), str(token_path))
        deadline = time.monotonic() + HEAD_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DriverError(f"the local Ray head exited during start (code {process.returncode}); see {log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{record.dashboard_url}/api/version", headers=endpoint.auth_headers(), timeout=2).status_code == 200:
                    self.record_path.write_text(json.dumps(asdict(record), indent=1))
                    return endpoint
            time.sleep(0.5)
        self._terminate(process.pid)
        raise DriverError(f"the local Ray head did not come up within {HEAD_START_TIMEOUT_S:.0f}s; see {log_path}",
                          temporary=True)

    def stop(self) -> bool:
        """Stop the head this project started; False when none was running."""
        record = self.record()
        if record is None:
            return False
        was_running = pid_alive(record.pid)
        if was_running:
            self._terminate(record.pid)
        self.record_path.unlink(missing_ok=True)
        shutil.rmtree(record.temp_dir, ignore_errors=True)
        return was_running

    @staticmethod
    def _terminate(pid: int) -> None:
        # SIGTERM lets Ray drain; the whole session (its process group) goes after that.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + HEAD_STOP_TIMEOUT_S
        while time.monotonic() < deadline and pid_alive(pid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.3)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


class ClusterAccess:
    """The Ray cluster of a project: the local head mlopsfile manages, or one named by address.

    Reads go over the dashboard's REST API with the auth token, so planning imports no Ray.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.local_head = LocalHead(settings.state_dir, settings.ray_num_cpus) if settings.manages_local_ray else None
        # One client for all reads: a fresh one per request builds a TLS context (about 20 ms of CPU),
        # which, twice a second while apply waits for a job, took that CPU from the job on a small machine.
        self._http: httpx.Client | None = None

    def endpoint(self, start: bool = False) -> ClusterEndpoint | None:
        """None: the local head is not running (and ``start`` was not asked)."""
        if self.local_head is None:
            return external_endpoint(self.settings.ray_address or "auto", self.settings.ray_dashboard_url)
        return self.local_head.ensure_started() if start else self.local_head.endpoint()

    def get_json(self, path: str, timeout_s: float = 15.0) -> Any:
        """GET a dashboard API path; None when no cluster runs."""
        endpoint = self.endpoint()
        return None if endpoint is None else self._call(endpoint, "GET", path, None, timeout_s)

    def post_json(self, path: str, body: dict[str, Any], timeout_s: float = 30.0) -> Any:
        """POST ``body`` to a dashboard API path of the running cluster; its JSON answer."""
        endpoint = self.endpoint()
        if endpoint is None:
            raise DriverError("the local Ray head is not running", temporary=True)
        return self._call(endpoint, "POST", path, body, timeout_s)

    def _call(self, endpoint: ClusterEndpoint, method: str, path: str, body: dict[str, Any] | None,
              timeout_s: float) -> Any:
        url = f"{endpoint.dashboard_url}{path}"
        try:
            self._http = self._http or httpx.Client()
            response = self._http.request(method, url, json=body, headers=endpoint.auth_headers(), timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise DriverError(f"cannot reach the Ray dashboard at {endpoint.dashboard_url}: {exc}", temporary=True) from exc
        if response.status_code in (401, 403):
            raise DriverError(f"the Ray dashboard at {endpoint.dashboard_url} refused the auth token "
                              "(set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH)")
        if response.status_code != 200:
            raise DriverError(f"the Ray dashboard at {endpoint.dashboard_url} answered {response.status_code} "
                              f"for {path}: {_gist(response.text)}", temporary=True)
        return response.json()


def _gist(text: str) -> str:
    """One line of an error answer: the dashboard sends whole Python tracebacks, whose last line says what went wrong."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    gist = lines[-1] if lines and lines[0].startswith("Traceback") else " ".join(lines)
    return gist[:200]
