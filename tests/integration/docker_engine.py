"""A real Docker engine, the local edge base image and a local image registry, once per session.

- ``docker_engine``: the engine named by ``MLOPSFILE_TEST_DOCKER_HOST`` (tests/run.sh starts
  one for the whole run), else a private engine started with ``.ci/docker-engine`` in a
  temporary directory and stopped at the end of the session. Private engines run without a
  bridge network (see .ci/docker-engine): run servers with ``network_mode="host"`` on
  127.0.0.1 and a free port; ``network_mode="none"`` works as usual.
- ``edge_base_image``: ``mlopsfile-edge-base:bookworm`` in that engine, built by
  ``.ci/edge-base-image`` (cached under ``$MLOPSFILE_CACHE``, so only the first build is slow).
- ``local_registry``: ``127.0.0.1:PORT`` of a throwaway registry (``.ci/local-registry``);
  engines push to it over plain HTTP without configuration.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

REPO = Path(__file__).resolve().parents[2]
CI = REPO / ".ci"
ENGINE_ENV = "MLOPSFILE_TEST_DOCKER_HOST"


@dataclass(frozen=True)
class DockerEngine:
    """A running Docker engine: ``host`` is its DOCKER_HOST URL (``unix:///…/docker.sock``)."""

    host: str
    _clients: list[Any] = field(default_factory=list, compare=False, repr=False)

    def client(self) -> docker.DockerClient:
        """A ``docker.DockerClient`` for this engine (one per engine, shared by the session)."""
        if not self._clients:
            self._clients.append(docker.DockerClient(base_url=self.host))
        return self._clients[0]

    def close(self) -> None:
        while self._clients:
            self._clients.pop().close()


def _script(name: str, *args: str, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(CI / name), *args], capture_output=True, text=True, timeout=timeout,
                          env=os.environ | (env or {}), check=False)


def _failure(what: str, result: subprocess.CompletedProcess[str]) -> str:
    return f"{what} (exit {result.returncode}):\n{result.stderr.strip()}\n{result.stdout.strip()}".rstrip()


def _remove(directory: Path) -> None:
    """Delete a scratch directory, unless something is still mounted below it."""
    mounts = Path("/proc/mounts").read_text() if Path("/proc/mounts").exists() else ""
    if any(line.split()[1].startswith(f"{directory}/") for line in mounts.splitlines() if len(line.split()) > 1):
        return
    shutil.rmtree(directory, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    shared = os.environ.get(ENGINE_ENV)
    if shared:
        engine = DockerEngine(shared)
        try:
            engine.client().ping()
        except Exception as exc:  # docker.errors.DockerException, requests' connection errors
            pytest.fail(f"{ENGINE_ENV}={shared}: no Docker engine answers there: {exc}")
        try:
            yield engine
        finally:
            engine.close()
        return
    # A short path: the engine's unix sockets live below it (at most 107 bytes each).
    directory = Path(tempfile.mkdtemp(prefix="mlopsfile-docker-"))
    started = _script("docker-engine", "start", str(directory), timeout=900)  # may apt-get install docker.io
    exports = [line for line in started.stdout.splitlines() if line.startswith("export DOCKER_HOST=")]
    if started.returncode != 0 or not exports:
        _script("docker-engine", "stop", str(directory))
        _remove(directory)
        pytest.fail(_failure("could not start a Docker engine with .ci/docker-engine", started))
    engine = DockerEngine(exports[-1].split("=", 1)[1])
    try:
        yield engine
    finally:
        engine.close()
        stopped = _script("docker-engine", "stop", str(directory), timeout=120)
        if stopped.returncode == 0:
            _remove(directory)


@pytest.fixture(scope="session")
def edge_base_image(docker_engine: DockerEngine) -> str:
    built = _script("edge-base-image", env={"DOCKER_HOST": docker_engine.host}, timeout=1800)
    if built.returncode != 0 or not built.stdout.strip():
        pytest.fail(_failure("could not build the edge base image with .ci/edge-base-image", built))
    return built.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def local_registry() -> Iterator[str]:
    directory = Path(tempfile.mkdtemp(prefix="mlopsfile-registry-"))
    started = _script("local-registry", "start", str(directory), str(_free_port()), timeout=300)
    if started.returncode != 0 or not started.stdout.strip():
        _script("local-registry", "stop", str(directory))
        _remove(directory)
        pytest.fail(_failure("could not start a local registry with .ci/local-registry", started))
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        _script("local-registry", "stop", str(directory), timeout=60)
        _remove(directory)
