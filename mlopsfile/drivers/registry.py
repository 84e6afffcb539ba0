"""MLflow registry driver: pins model URIs to versions and digests their artifacts."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from mlopsfile.errors import ResolveError
from mlopsfile.resources import ResolvedModel
from mlopsfile.spec.model import MODEL_URI_FORMS


def quiet_mlflow() -> None:
    """MLflow sets its own log levels on import; keep its INFO chatter off the CLI's output."""
    for noisy in ("mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a progress bar per download


def digest_directory(root: Path) -> str:
    """sha256 over relative paths and contents of every file, in a stable order."""
    digest = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        relative = path.name if path == root else path.relative_to(root).as_posix()
        digest.update(relative.encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


class MlflowResolver:
    """Resolves ``models:/`` and ``runs:/`` URIs against one MLflow tracking server and registry."""

    def __init__(self, tracking_uri: str, registry_uri: str | None = None, cache_dir: Path | None = None) -> None:
        if tracking_uri.startswith("sqlite:///"):
            Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        self.cache_file = cache_dir / "model-digests.json" if cache_dir else None
        self._client = None
        self._locations: dict[str, str] = {}

    @property
    def client(self):
        if self._client is None:
            from mlflow import MlflowClient

            quiet_mlflow()
            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)
        return self._client

    def resolve(self, name: str, uri: str) -> ResolvedModel:
        from mlflow.exceptions import MlflowException

        match = next((m for m in (form.match(uri) for form in MODEL_URI_FORMS) if m), None)
        if match is None:
            raise ResolveError(f"unsupported model URI {uri!r}")
        groups = match.groupdict()
        try:
            if "run_id" in groups:
                return self._resolve_run(name, uri, groups["run_id"], groups["path"])
            return self._resolve_registered(name, uri, groups["name"], groups.get("alias"), groups.get("version"))
        except MlflowException as exc:
            raise ResolveError(self._explain(exc, uri)) from exc
        except OSError as exc:
            raise ResolveError(f"cannot read the artifacts of {uri}: {exc}") from exc

    def _resolve_registered(self, name: str, uri: str, registered: str, alias: str | None, version: str | None) -> ResolvedModel:
        self._require_registered(registered)
        if alias is not None:
            try:
                model_version = self.client.get_model_version_by_alias(registered, alias)
            except Exception as exc:
                aliases = sorted(self.client.get_registered_model(registered).aliases or {})
                known = ", ".join(f"@{a}" for a in aliases) or "none"
                raise ResolveError(f"model {registered!r} has no alias @{alias} (aliases: {known})") from exc
        elif version == "latest":
            versions = self.client.search_model_versions(f"name='{registered}'")
            if not versions:
                raise ResolveError(f"model {registered!r} has no versions")
            model_version = max(versions, key=lambda v: int(v.version))
        else:
            try:
                model_version = self.client.get_model_version(registered, str(version))
            except Exception as exc:
                versions = sorted(int(v.version) for v in self.client.search_model_versions(f"name='{registered}'"))
                known = ", ".join(map(str, versions)) or "none"
                raise ResolveError(f"model {registered!r} has no version {version} (versions: {known})") from exc
        pinned = f"models:/{registered}/{model_version.version}"
        key = f"{pinned}|{model_version.source}|{model_version.creation_timestamp}"
        return ResolvedModel(
            name=name, uri=uri, registered_name=registered, version=str(model_version.version), alias=alias,
            pinned_uri=pinned, run_id=model_version.run_id, digest=self._digest(lambda: self.location(pinned), key=key),
        )

    def location(self, pinned_uri: str) -> str:
        """Where a pinned model's artifacts are stored. Loading from there skips the registry and the
        tracking store (seconds of imports and queries in every new replica); the version is the same."""
        from mlflow.exceptions import MlflowException

        if pinned_uri in self._locations:
            return self._locations[pinned_uri]
        match = next((m for m in (form.match(pinned_uri) for form in MODEL_URI_FORMS) if m), None)
        groups = match.groupdict() if match else {}
        try:
            if groups.get("version") not in (None, "latest"):
                location = self.client.get_model_version_download_uri(groups["name"], groups["version"])
            elif "run_id" in groups:
                location = self._run_location(groups["run_id"], groups["path"].strip("/"))
            else:
                raise ResolveError(f"{pinned_uri} does not name one version")
        except MlflowException as exc:
            raise ResolveError(self._explain(exc, pinned_uri)) from exc
        if location.startswith("file://"):  # some MLflow loaders take a local path but not a file: URI
            location = url2pathname(urlparse(location).path)
        self._locations[pinned_uri] = location
        return location

    def _run_location(self, run_id: str, path: str) -> str:
        """A run's artifact, or (MLflow 3) the model that run logged under that name, as MLflow's
        own runs:/ repository finds it."""
        run = self.client.get_run(run_id)
        logged = self.client.search_logged_models(experiment_ids=[run.info.experiment_id],
                                                  filter_string=f"name = '{path}'") if "/" not in path else []
        model = next((m for m in logged if m.source_run_id == run_id), None)
        if model is not None:
            return str(model.artifact_location)
        return f"{run.info.artifact_uri.rstrip('/')}/{path}"

    def input_names(self, pinned_uri: str) -> list[str]:
        """Input column names of the model's signature; [] when it has no named inputs."""
        from mlflow.models import Model

        try:
            # Model.load reads the MLmodel file alone; get_model_info would look the logged model up
            # in MLflow's default tracking store.
            signature = Model.load(self.location(pinned_uri)).signature
        except Exception as exc:  # MLflow raises its own, OSError or ValueError for a broken MLmodel
            raise ResolveError(self._explain(exc, pinned_uri)) from exc
        inputs = signature.inputs if signature is not None else None
        if inputs is None or not inputs.has_input_names():
            return []
        return [spec.name for spec in inputs.inputs]

    def _require_registered(self, registered: str) -> None:
        try:
            self.client.get_registered_model(registered)
        except Exception as exc:
            raise ResolveError(f"no registered model {registered!r} in the MLflow registry at {self.registry_uri}") from exc

    def _resolve_run(self, name: str, uri: str, run_id: str, path: str) -> ResolvedModel:
        try:
            self.client.get_run(run_id)
        except Exception as exc:
            raise ResolveError(f"no MLflow run {run_id!r} at {self.tracking_uri}") from exc
        return ResolvedModel(name=name, uri=uri, version=run_id[:12], pinned_uri=uri, run_id=run_id,
                             digest=self._digest(lambda: self.location(uri), key=uri))

    def _digest(self, location: Callable[[], str], key: str) -> str:
        cache = self._read_cache()
        cache_key = f"{self.tracking_uri}|{key}"
        if cache_key in cache:
            return cache[cache_key]
        import mlflow.artifacts

        # The storage location, not the models:/ URI: MLflow would open its default
        # tracking store (a ./mlflow.db in the working directory) to resolve that.
        local = mlflow.artifacts.download_artifacts(artifact_uri=location(), tracking_uri=self.tracking_uri)
        digest = "sha256:" + digest_directory(Path(local))
        cache[cache_key] = digest
        self._write_cache(cache)
        return digest

    def _read_cache(self) -> dict[str, str]:
        if self.cache_file is None or not self.cache_file.is_file():
            return {}
        try:
            return json.loads(self.cache_file.read_text())
        except (OSError, ValueError):
            return {}

    def _write_cache(self, cache: dict[str, str]) -> None:
        if self.cache_file is None:
            return
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.cache_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(cache, indent=1, sort_keys=True))
        temporary.replace(self.cache_file)

    def _explain(self, exc: Exception, uri: str) -> str:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"cannot resolve {uri} at {self.registry_uri}: {message}"
