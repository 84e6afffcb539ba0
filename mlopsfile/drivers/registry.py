"""MLflow registry driver: pins model URIs to versions and digests their artifacts."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

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
        return ResolvedModel(
            name=name, uri=uri, registered_name=registered, version=str(model_version.version), alias=alias,
            pinned_uri=pinned, run_id=model_version.run_id,
            digest=self._digest(pinned, key=f"{pinned}|{model_version.source}|{model_version.creation_timestamp}"),
        )

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
                             digest=self._digest(uri, key=uri))

    def _digest(self, artifact_uri: str, key: str) -> str:
        cache = self._read_cache()
        cache_key = f"{self.tracking_uri}|{key}"
        if cache_key in cache:
            return cache[cache_key]
        import mlflow.artifacts

        previous = os.environ.get("MLFLOW_REGISTRY_URI")
        os.environ["MLFLOW_REGISTRY_URI"] = self.registry_uri
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, tracking_uri=self.tracking_uri)
        finally:
            if previous is None:
                os.environ.pop("MLFLOW_REGISTRY_URI", None)
            else:
                os.environ["MLFLOW_REGISTRY_URI"] = previous
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
