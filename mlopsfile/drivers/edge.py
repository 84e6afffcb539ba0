"""Edge driver: ONNX conversion at plan time, images and channel tags in a Docker engine.

Images are found by their labels (project, deployment, build key), so observation needs
no state store and a second apply builds nothing. Builds run with no network: the base
image must be in the engine and Python packages come from wheels downloaded on the host.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from mlopsfile.drivers.edge_bundle import context_files, edge_server_digest, write_bundle, write_tar
from mlopsfile.drivers.ray_cluster import free_port
from mlopsfile.edge_resources import DesiredEdge, EdgeImage, ObservedEdge, ParitySummary, PreparedEdge
from mlopsfile.errors import DriverError, ResolveError
from mlopsfile.resources import ResolvedModel
from mlopsfile.spec.edge import EdgeTarget
from mlopsfile.spec.specset import canonical_digest

LABEL = "io.mlopsfile"
PREPARED = "prepared.json"
SAMPLE = "sample.json"


def labels_of(want: DesiredEdge, project: str) -> dict[str, str]:
    return {f"{LABEL}.owner": project, f"{LABEL}.resource": f"deployment/{want.name}",
            f"{LABEL}.deployment": want.name, f"{LABEL}.model": want.model.name,
            f"{LABEL}.model-version": want.model.version, f"{LABEL}.model-digest": want.model.digest,
            f"{LABEL}.spec-digest": want.spec_digest, f"{LABEL}.build-key": want.build.key,
            f"{LABEL}.parity": want.parity.summary}


class EdgeDriver:
    def __init__(self, project: str, state_dir: Path, docker_host: str | None, tracking_uri: str | None) -> None:
        self.project = project
        self.cache = state_dir / "edge"
        # Wheels depend only on their pins: one download serves every project of this user.
        self.wheel_cache = Path(os.environ.get("MLOPSFILE_CACHE") or Path.home() / ".cache" / "mlopsfile")
        self.docker_host = docker_host
        self.tracking_uri = tracking_uri
        self._client: Any = None

    # -- plan time: conversion and parity --------------------------------------------------

    def prepare(self, name: str, model: ResolvedModel, target: EdgeTarget, root: Path) -> PreparedEdge:
        from mlopsfile.drivers.edge_wheels import default_edge_requirements

        settings = {"quantize": target.quantize, "parity": target.parity.model_dump(),
                    "reference": _reference_digest(target, root)}
        out = self.cache / "builds" / f"{model.digest[:16]}-{canonical_digest(settings)[:12]}"
        requirements = tuple(default_edge_requirements())
        cached = out / PREPARED
        if cached.is_file():
            parity = ParitySummary.model_validate_json(cached.read_text())
        else:
            parity = self._convert_and_check(model, target, root, out)
        if not parity.passed:
            raise ResolveError(f"model {model.name} version {model.version}: ONNX parity check failed: {parity.summary}")
        manifest = json.loads((out / "manifest.json").read_text())
        return PreparedEdge(edge_dir=str(out), onnx_sha256=manifest["onnx"]["sha256"], requirements=requirements,
                            runtime_digest=edge_server_digest(), parity=parity)

    def _convert_and_check(self, model: ResolvedModel, target: EdgeTarget, root: Path, out: Path) -> ParitySummary:
        from mlopsfile.drivers.edge_convert import ModelMeta, convert
        from mlopsfile.drivers.edge_parity import check_parity, sample_origin, sample_payload
        from mlopsfile.errors import EdgeConversionError

        local = self._download(model)
        staging = out.with_name(out.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        meta = ModelMeta(name=model.name, version=model.version, uri=model.pinned_uri, digest=model.digest)
        parity = target.parity
        reference = (root / parity.reference) if parity.reference else None
        if reference is not None and not reference.is_file():
            raise ResolveError(f"parity.reference {parity.reference!r}: no such file under {root}")
        try:
            converted = convert(model.pinned_uri, local, staging, meta, quantize=target.quantize)
            payload = sample_payload(local, parity.rows, reference, parity.seed)
            report = check_parity(local, staging, payload, parity.atol, parity.rtol,
                                  original_onnx_bytes=converted.original_onnx_bytes)
        except EdgeConversionError as exc:
            raise ResolveError(f"model {model.name} version {model.version} cannot run on the edge: {exc}") from exc
        summary = ParitySummary(
            sample=sample_origin(local, reference), rows=report.rows, label_mismatches=report.label_mismatches,
            max_abs_diff=report.max_abs_diff, passed=report.passed, onnx_bytes=report.onnx_bytes,
            original_onnx_bytes=report.original_onnx_bytes, summary=_one_line(report),
        )
        if not report.passed:
            shutil.rmtree(staging, ignore_errors=True)
            return summary  # not cached: a new plan checks again
        (staging / SAMPLE).write_text(json.dumps(payload))
        (staging / PREPARED).write_text(summary.model_dump_json())
        shutil.rmtree(out, ignore_errors=True)
        staging.replace(out)
        return summary

    def _download(self, model: ResolvedModel) -> Path:
        target = self.cache / "models" / model.digest[:32]
        if (target / "MLmodel").is_file():
            return target
        import mlflow

        from mlopsfile.drivers.registry import quiet_mlflow

        quiet_mlflow()
        if self.tracking_uri:
            mlflow.set_tracking_uri(self.tracking_uri)
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            mlflow.artifacts.download_artifacts(artifact_uri=model.pinned_uri, dst_path=str(partial))
        except Exception as exc:  # MLflow raises many types for an unreachable or missing model
            raise ResolveError(f"cannot download {model.pinned_uri}: {str(exc).splitlines()[0]}") from exc
        found = next(iter(partial.rglob("MLmodel")), None)
        if found is None:
            raise ResolveError(f"{model.pinned_uri} has no MLmodel file")
        shutil.rmtree(target, ignore_errors=True)
        found.parent.replace(target)
        shutil.rmtree(partial, ignore_errors=True)
        return target

    # -- the engine --------------------------------------------------------------------------

    def client(self) -> Any:
        if self._client is None:
            import docker
            from docker.errors import DockerException

            try:
                self._client = docker.DockerClient(base_url=self.docker_host) if self.docker_host \
                    else docker.from_env()
                self._client.ping()
            except DockerException as exc:
                where = self.docker_host or "DOCKER_HOST or the default socket"
                raise DriverError(f"cannot reach the Docker engine at {where}: {_first(exc)}") from exc
        return self._client

    def observe(self, bundles: dict[str, str | None]) -> list[ObservedEdge]:
        """Every image this project's edge deployments own, by deployment."""
        images = self.client().images.list(filters={"label": [f"{LABEL}.owner={self.project}"]})
        found: dict[str, list[EdgeImage]] = {}
        repositories: dict[str, str] = {}
        for image in images:
            labels = image.labels or {}
            name = labels.get(f"{LABEL}.deployment")
            if not name:
                continue
            repository = labels.get(f"{LABEL}.repository", name)
            repositories[name] = repository
            tags = tuple(sorted(t.rsplit(":", 1)[1] for t in image.tags if t.rsplit(":", 1)[0] == repository))
            pushed = tuple(sorted({d.split("@", 1)[0] for d in image.attrs.get("RepoDigests") or []}))
            found.setdefault(name, []).append(EdgeImage(
                image_id=image.id, build_key=labels.get(f"{LABEL}.build-key", ""),
                model_version=labels.get(f"{LABEL}.model-version", "?"),
                spec_digest=labels.get(f"{LABEL}.spec-digest", ""), tags=tags, pushed=pushed,
                created=image.attrs.get("Created", ""), size=int(image.attrs.get("Size") or 0),
                parity=labels.get(f"{LABEL}.parity", "")))
        observed = []
        for name in sorted(set(found) | {n for n, d in bundles.items() if d}):
            directory = bundles.get(name)
            present = tuple(sorted(p.name for p in Path(directory).glob(f"{name}-*.tar.gz"))) if directory else ()
            observed.append(ObservedEdge(name=name, project=self.project, repository=repositories.get(name, name),
                                         images=tuple(sorted(found.get(name, []), key=lambda i: i.created)),
                                         bundles=present))
        return observed

    def build(self, want: DesiredEdge) -> str:
        """Build the image of ``want`` offline; return its id."""
        from docker.errors import APIError, BuildError

        from mlopsfile.drivers.edge_wheels import image_wheels

        self._require_base_image(want.build.base_image)
        wheels = image_wheels(self.wheel_cache, list(want.build.requirements), want.build.python_version)
        labels = {**labels_of(want, self.project), f"{LABEL}.repository": want.image}
        with tempfile.TemporaryDirectory(prefix="mlopsfile-edge-") as scratch:
            context = Path(scratch) / "context.tar"
            write_tar(context_files(Path(want.edge_dir), wheels), context, compress=False)
            try:
                with context.open("rb") as handle:
                    image, _ = self.client().images.build(
                        fileobj=handle, custom_context=True, tag=f"{want.image}:{want.model.version}",
                        buildargs={"BASE_IMAGE": want.build.base_image}, labels=labels, rm=True, forcerm=True,
                        pull=False, network_mode="none")
            except BuildError as exc:
                raise DriverError(f"building {want.image}:{want.model.version} failed: {_build_failure(exc)}") \
                    from exc
            except APIError as exc:
                raise DriverError(f"building {want.image}:{want.model.version} failed: {_first(exc)}") from exc
            finally:
                self._remove_install_stages()
        return str(image.id)

    def _require_base_image(self, base: str) -> None:
        """The base image is used as the engine has it; pulled only when it is missing."""
        from docker.errors import APIError, ImageNotFound

        try:
            self.client().images.get(base)
            return
        except ImageNotFound:
            pass
        try:
            self.client().images.pull(base)
        except APIError as exc:
            raise DriverError(f"base image {base} is not in the Docker engine and pulling it failed "
                              f"({_first(exc)}); build one locally (see .ci/edge-base-image) or name one the "
                              "engine has") from exc

    def _remove_install_stages(self) -> None:
        """The classic builder keeps the wheel-installing stage as an untagged image: drop it."""
        from docker.errors import APIError

        with contextlib.suppress(APIError):  # only disk space is at stake
            self.client().images.prune(filters={"dangling": True, "label": "io.mlopsfile.stage=install"})

    def move_tags(self, want: DesiredEdge, tags: tuple[str, ...]) -> None:
        for tag in tags:
            self.point(want.name, want.image, tag, want.build.key)

    def point(self, name: str, repository: str, tag: str, build_key: str) -> None:
        """Move one tag onto the deployment's image of ``build_key`` (promotion and rollback)."""
        image = self._image_of(name, build_key)
        if tag == "stable":
            self._keep_previous(repository, image.id)
        image.tag(repository, tag)

    def _keep_previous(self, repository: str, new_id: str) -> None:
        from docker.errors import ImageNotFound

        try:
            current = self.client().images.get(f"{repository}:stable")
        except ImageNotFound:
            return
        if current.id != new_id:
            current.tag(repository, "previous")

    def push(self, want: DesiredEdge) -> None:
        remote = want.remote()
        assert remote is not None
        image = self._image_of(want.name, want.build.key)
        tags = [want.model.version, *(t for t in ("stable", "canary") if f"{want.image}:{t}" in image.tags)]
        for tag in tags:
            image.tag(remote, tag)
            for line in self.client().images.push(remote, tag=tag, stream=True, decode=True):
                if "error" in line:
                    raise DriverError(f"pushing {remote}:{tag} failed: {line['error']}")

    def bundle(self, want: DesiredEdge) -> Path:
        from mlopsfile.drivers.edge_wheels import image_wheels

        assert want.bundle is not None
        wheels = image_wheels(self.wheel_cache, list(want.build.requirements), want.build.python_version)
        destination = Path(want.bundle) / want.bundle_name()
        write_bundle(Path(want.edge_dir), wheels, destination, labels_of(want, self.project))
        return destination

    def delete(self, name: str) -> None:
        from docker.errors import APIError

        for image in self.client().images.list(filters={"label": [f"{LABEL}.owner={self.project}",
                                                                  f"{LABEL}.deployment={name}"]}):
            try:
                self.client().images.remove(image.id, force=True)
            except APIError as exc:
                raise DriverError(f"removing image {image.short_id} of {name} failed: {_first(exc)}") from exc

    def _image_of(self, name: str, build_key: str) -> Any:
        images = self.client().images.list(filters={"label": [f"{LABEL}.owner={self.project}",
                                                              f"{LABEL}.deployment={name}",
                                                              f"{LABEL}.build-key={build_key}"]})
        if not images:
            raise DriverError(f"no image of {name} with build key {build_key} in the engine")
        return images[0]

    # -- running an image ------------------------------------------------------------------------

    def smoke(self, image_ref: str, edge_dir: Path, requests: int) -> str | None:
        """Run the image on loopback, send it the parity sample; None when every answer matches."""
        import httpx

        from runtime.edge.predictor import EdgeModel

        body = (edge_dir / SAMPLE).read_bytes()
        expected = EdgeModel(edge_dir).predict(json.loads(body))
        port = free_port()
        container = self.client().containers.run(image_ref, command=["--host", "127.0.0.1", "--port", str(port)],
                                                  network_mode="host", detach=True)
        try:
            url = f"http://127.0.0.1:{port}"
            if not _wait_healthy(url, container):
                return f"the container did not become healthy: {container.logs(tail=5).decode(errors='replace')}"
            with httpx.Client(timeout=30) as client:
                for _ in range(requests):
                    answer = client.post(f"{url}/predict", content=body, headers={"content-type": "application/json"})
                    if answer.status_code != 200:
                        return f"smoke request answered {answer.status_code}: {answer.text[:200]}"
                    if answer.json().get("predictions") != expected:
                        return "the container's predictions differ from the ONNX reference on the parity sample"
            return None
        finally:
            container.remove(force=True)


def _wait_healthy(url: str, container: Any, timeout_s: float = 60) -> bool:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        container.reload()
        if container.status == "exited":
            return False
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def _reference_digest(target: EdgeTarget, root: Path) -> str | None:
    if not target.parity.reference:
        return None
    import hashlib

    path = root / target.parity.reference
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def _one_line(report: Any) -> str:
    """The report, with the worst rows spelled out when it failed (the reviewer needs them)."""
    summary = report.summary()
    if report.passed or not report.worst_rows:
        return summary
    rows = "; ".join(f"row {row.index}: input {row.input}, original {row.original}, onnx {row.onnx}"
                     for row in report.worst_rows[:5])
    return f"{summary}; worst rows: {rows}"


def _build_failure(exc: Any) -> str:
    lines = [str(chunk.get("stream") or chunk.get("error") or "").strip() for chunk in exc.build_log or []]
    text = " ".join(line for line in lines if line)[-400:]
    return f"{exc.msg}: {text}" if text else str(exc.msg)


def _first(exc: Exception) -> str:
    """The engine's own explanation when it gave one (the Docker SDK wraps it in HTTP detail)."""
    text = str(getattr(exc, "explanation", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0]
