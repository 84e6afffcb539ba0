"""The project file mlopsfile.yaml: where Ray, MLflow and the state store are.

Every setting has a default that needs nothing running, so the first ``apply`` works on a
bare laptop: a local Ray head started on demand, MLflow and the state store in SQLite
files under ``.mlopsfile/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import Field, ValidationError, field_validator

from mlopsfile.errors import ConfigError
from mlopsfile.spec.common import Strict
from mlopsfile.spec.overlay import environment_dir
from mlopsfile.spec.rollout import Duration, duration_seconds

PROJECT_FILE = "mlopsfile.yaml"
STATE_DIR = ".mlopsfile"


class RaySettings(Strict):
    """Which Ray cluster runs online and batch deployments."""

    address: str | None = Field(
        default=None,
        description="Ray cluster address (host:port of the GCS). Unset: RAY_ADDRESS, else a local head that mlopsfile starts and manages.",
    )
    dashboard_url: str | None = Field(
        default=None,
        description="Ray dashboard URL used to observe Serve and Jobs (default: http://<address host>:8265).",
    )
    http_host: str = Field(default="127.0.0.1", description="Interface the Serve HTTP proxy binds to.")
    http_port: int = Field(default=8000, ge=1, le=65535, description="Port of the Serve HTTP proxy.")
    num_cpus: int | None = Field(default=None, ge=1, description="CPUs the local head offers (default: all).")


class MlflowSettings(Strict):
    """Which MLflow tracking server and registry models are resolved in."""

    tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI. Unset: MLFLOW_TRACKING_URI, else sqlite under .mlopsfile/.",
    )
    registry_uri: str | None = Field(default=None, description="MLflow registry URI, when it differs from tracking.")


class StateSettings(Strict):
    """Where revisions, locks and the audit log are kept."""

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the state store (e.g. postgresql://…). Unset: sqlite under .mlopsfile/.",
    )


class DockerSettings(Strict):
    """Which Docker engine builds edge images."""

    host: str | None = Field(
        default=None,
        description="Docker engine URL (unix:///path/docker.sock or tcp://host:port). Unset: DOCKER_HOST, else the default socket.",
    )


class WatchSettings(Strict):
    """How `mlopsfile watch` (the agent) keeps the live systems matching the specs."""

    resync: Duration = Field(
        default="30s",
        description="How often the agent plans against the live systems to find drift (changes made outside mlopsfile).",
    )
    self_heal: bool = Field(
        default=True,
        description="Repair drift found by a resync by applying the specs; false: only report it (and audit it).",
    )

    @field_validator("resync")
    @classmethod
    def _positive(cls, value: float | int | str) -> float | int | str:
        if duration_seconds(value) <= 0:
            raise ValueError("the resync interval must be longer than zero")
        return value


class ProjectFile(Strict):
    """The optional project file mlopsfile.yaml at the repository root."""

    project: str | None = Field(
        default=None,
        description="Project name, recorded as the owner of everything mlopsfile creates (default: the directory name).",
    )
    specs: str = Field(default="specs", description="Directory (or file) of spec documents, relative to this file.")
    ray: RaySettings = Field(default_factory=RaySettings, description="Ray cluster settings.")
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings, description="MLflow settings.")
    state: StateSettings = Field(default_factory=StateSettings, description="State store settings.")
    docker: DockerSettings = Field(default_factory=DockerSettings, description="Docker engine settings (edge targets).")
    watch: WatchSettings = Field(default_factory=WatchSettings, description="Settings of `mlopsfile watch`, the agent.")


@dataclass(frozen=True)
class Settings:
    """Resolved settings: the project file, then the environment, then the defaults."""

    root: Path
    project: str
    specs: Path
    ray_address: str | None
    ray_dashboard_url: str | None
    http_host: str
    http_port: int
    ray_num_cpus: int | None
    tracking_uri: str
    registry_uri: str | None
    state_url: str
    docker_host: str | None = None
    env: str | None = None  # the environment overlay (environments/ENV/) layered over the specs
    watch_resync_s: float = 30.0
    watch_self_heal: bool = True

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def manages_local_ray(self) -> bool:
        return self.ray_address is None


def find_root(start: Path) -> Path:
    """The nearest directory upwards holding mlopsfile.yaml, else ``start``."""
    start = start.resolve()
    for directory in (start, *start.parents):
        if (directory / PROJECT_FILE).is_file():
            return directory
    return start


def read_project_file(root: Path) -> ProjectFile:
    path = root / PROJECT_FILE
    if not path.is_file():
        return ProjectFile()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return ProjectFile.model_validate(data)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{path}: {field}: {first['msg']}") from exc


def load_settings(start: Path | None = None, specs: Path | None = None, environment: str | None = None) -> Settings:
    """Settings of the project around ``start``; with ``environment``, those of that environment.

    An environment is a project of its own: its name is ``PROJECT-ENV`` (the owner of what
    it creates, so two environments on one Ray cluster never take each other's resources)
    and its default state store is ``.mlopsfile/envs/ENV/state.db``.
    """
    root = find_root(start or Path.cwd())
    project_file = read_project_file(root)
    env = os.environ
    state_dir = root / STATE_DIR
    specs_path = specs.resolve() if specs else (root / project_file.specs)
    project = project_file.project or root.name.lower() or "default"
    state_db = state_dir / "state.db"
    if environment:
        environment_dir(specs_path, environment)  # an unknown one fails here, naming the known ones
        project, state_db = f"{project}-{environment}", state_dir / "envs" / environment / "state.db"
    tracking = project_file.mlflow.tracking_uri or env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{state_dir / 'mlflow.db'}"
    return Settings(
        root=root,
        project=project,
        specs=specs_path,
        ray_address=project_file.ray.address or env.get("RAY_ADDRESS") or None,
        ray_dashboard_url=project_file.ray.dashboard_url or env.get("RAY_DASHBOARD_URL") or None,
        http_host=project_file.ray.http_host,
        http_port=project_file.ray.http_port,
        ray_num_cpus=project_file.ray.num_cpus,
        tracking_uri=tracking,
        registry_uri=project_file.mlflow.registry_uri or env.get("MLFLOW_REGISTRY_URI") or None,
        state_url=project_file.state.url or env.get("MLOPSFILE_STATE_URL") or f"sqlite:///{state_db}",
        docker_host=project_file.docker.host or env.get("DOCKER_HOST") or None,
        env=environment or None,
        watch_resync_s=duration_seconds(project_file.watch.resync),
        watch_self_heal=project_file.watch.self_heal,
    )
