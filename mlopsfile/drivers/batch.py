"""Batch driver: one Ray Job per run of a batch Deployment.

Jobs are observed through the dashboard's job REST API, by the metadata every job of
mlopsfile carries (owner, project, resource, revision, run key, model version, input
digest, output); the published output through its manifest. ``runtime/`` is the job's
working directory (runtime_package). A run whose working directory is already on the
cluster (the local head's) is submitted over the same REST API; one that must be uploaded
first goes through Ray's JobSubmissionClient, which packs and uploads it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mlopsfile.config import Settings
from mlopsfile.drivers.ray_cluster import ClusterAccess
from mlopsfile.drivers.registry import MlflowResolver
from mlopsfile.drivers.runtime_package import runtime_working_dir
from mlopsfile.errors import DriverError, ResolveError
from mlopsfile.plan.batch import batch_settings
from mlopsfile.resources import (
    DesiredBatch,
    InputFile,
    InputSnapshot,
    JobRun,
    ObservedBatch,
    Ownership,
    PublishedRun,
)
from runtime.batch_files import InputError, list_inputs

OWNER = "mlopsfile"
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
FAILURE_MARK = "mlopsfile: run failed: "
DEFAULT_RUN_TIMEOUT_S = 6 * 3600.0
SUBMIT_RETRY_S = 60.0

Events = Callable[[str, str], None]


class BatchDriver:
    """Ray Jobs of batch deployments, and the outputs they publish."""

    target = "batch"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cluster = ClusterAccess(settings)
        self.run_timeout_s = float(os.environ.get("MLOPSFILE_BATCH_TIMEOUT_S", DEFAULT_RUN_TIMEOUT_S))
        self.registry = MlflowResolver(settings.tracking_uri, settings.registry_uri)

    # -- reading -------------------------------------------------------------------

    def snapshot(self, inputs: tuple[str, ...], file_format: str) -> InputSnapshot:
        try:
            files = list_inputs(list(inputs), file_format)
        except (InputError, OSError) as exc:
            raise ResolveError(str(exc)) from exc
        digest = hashlib.sha256()
        for f in files:
            digest.update(f"{f.path}\0{f.size}\0{f.mtime_ns}\n".encode())
        return InputSnapshot(digest=digest.hexdigest(),
                             files=tuple(InputFile(path=f.path, size=f.size, mtime_ns=f.mtime_ns) for f in files))

    def jobs(self) -> list[dict[str, Any]]:
        """Every job of this project on the cluster, as the dashboard lists them."""
        listed = self.cluster.get_json("/api/jobs/") or []
        return [job for job in listed if _is_ours(job.get("metadata") or {}, self.settings.project)]

    def observe(self, outputs: dict[str, str]) -> list[ObservedBatch]:
        """Batch deployments of this project: ``outputs`` names where each one publishes."""
        by_name: dict[str, list[JobRun]] = {}
        output_of = dict(outputs)
        for job in self.jobs():
            metadata = job["metadata"]
            name = metadata["resource"].split("/", 1)[-1]
            by_name.setdefault(name, []).append(_job_run(job))
            output_of.setdefault(name, metadata.get("output", ""))
        found = []
        for name in sorted(output_of):
            runs = sorted(by_name.get(name, []), key=lambda j: j.start_time or 0.0, reverse=True)
            published = read_manifest(output_of[name]) if output_of[name] else None
            if runs or published is not None:
                found.append(ObservedBatch(name=name, project=self.settings.project, output=output_of[name],
                                           published=published, jobs=tuple(runs)))
        return found

    def logs(self, job_id: str) -> str:
        answer = self.cluster.get_json(f"/api/jobs/{job_id}/logs")
        return (answer or {}).get("logs", "")

    # -- running -------------------------------------------------------------------

    def run(self, batch: DesiredBatch, ownership: Ownership, reason: str, events: Events | None = None,
            previous_model_uri: str | None = None) -> JobRun:
        """Submit one run and wait for it to end; a failed run raises with the job's own message.

        ``previous_model_uri``: the published version a canary samples against.
        """
        events = events or (lambda *_: None)
        self.cluster.endpoint(start=True)
        run_id = f"{batch.name}-r{ownership.revision}-{secrets.token_hex(3)}"
        config = self._config(batch, ownership, run_id, previous_model_uri)
        entrypoint = f"{self._python()} -m runtime.batch_job {_encode(config)}"
        job_id = self._submit(batch.name, entrypoint=entrypoint, submission_id=run_id,
                              runtime_env={"working_dir": runtime_working_dir(self.settings)},
                              metadata=self._metadata(batch, ownership, reason))
        events(batch.name, f"job {job_id} submitted: model version {batch.model.version} over "
                           f"{len(batch.input.files)} input file(s)")
        return self.wait(job_id, batch.name, events)

    def _submit(self, name: str, **job: Any) -> str:
        """Submit, retrying while the head's job agent is still starting (a fresh head refuses for a while).

        A working directory already on the cluster needs no upload: the job is one POST to the
        dashboard, so a CLI call never imports Ray's SDK for it (half a second per apply).
        """
        deadline = time.monotonic() + SUBMIT_RETRY_S
        needs_upload = not str(job["runtime_env"]["working_dir"]).startswith("local://")
        while True:
            try:
                if needs_upload:
                    return str(self._client().submit_job(**job))
                return str(self.cluster.post_json("/api/jobs/", job)["submission_id"])
            except Exception as exc:  # the SDK raises plain RuntimeErrors for refusals
                if "No available agent" not in str(exc) or time.monotonic() > deadline:
                    raise DriverError(f"Ray refused the job for {name!r}: {exc}", temporary=True) from exc
                time.sleep(1.0)

    def wait(self, job_id: str, name: str, events: Events) -> JobRun:
        deadline = time.monotonic() + self.run_timeout_s
        status = ""
        while time.monotonic() < deadline:
            job = self.cluster.get_json(f"/api/jobs/{job_id}")
            if job is None:
                raise DriverError(f"the Ray cluster went away while job {job_id} ran", temporary=True)
            if job["status"] != status:
                status = job["status"]
                events(name, f"job {job_id}: {status.lower()}")
            if status in TERMINAL:
                run = _job_run(job)
                if status != "SUCCEEDED":
                    raise DriverError(f"job {job_id} {status.lower()}: {self.failure(run)}")
                return run
            time.sleep(0.5)
        raise DriverError(f"job {job_id} did not end within {self.run_timeout_s:.0f}s; it keeps running "
                          f"(`mlopsfile logs {name}`)", temporary=True)

    def failure(self, run: JobRun) -> str:
        """The job's own one-line reason, else Ray's message."""
        try:
            logs = self.logs(run.job_id)
        except DriverError:
            logs = ""
        marked = [line[len(FAILURE_MARK):] for line in logs.splitlines() if line.startswith(FAILURE_MARK)]
        return marked[-1] if marked else (run.message or "no message from Ray")

    def stop(self, job_id: str) -> None:
        try:
            self.cluster.post_json(f"/api/jobs/{job_id}/stop", {})
        except DriverError as exc:
            raise DriverError(f"cannot stop job {job_id}: {exc}", temporary=True) from exc

    def _client(self) -> Any:
        endpoint = self.cluster.endpoint(start=True)
        assert endpoint is not None
        os.environ.update(endpoint.client_env())  # Ray reads its auth settings when first imported
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(endpoint.dashboard_url, headers=endpoint.auth_headers())

    def _python(self) -> str:
        """The interpreter of the job's driver: on this machine, the one running mlopsfile (and,
        most likely, Ray); on a remote cluster, the nodes' own ``python``."""
        address = self.settings.ray_address or "auto"
        host = urlparse(address if "://" in address else f"ray://{address}").hostname
        local = self.cluster.local_head is not None or address == "auto" or host in ("127.0.0.1", "localhost")
        return sys.executable if local else "python"

    def _config(self, batch: DesiredBatch, ownership: Ownership, run_id: str,
                previous_model_uri: str | None) -> dict[str, Any]:
        job = batch.job
        rollout = batch.rollout
        trial: dict[str, Any] = {}
        if rollout.strategy == "canary" and previous_model_uri:
            trial["canary"] = {"previous_model_uri": previous_model_uri, "sample": rollout.sample,
                               "min_agreement": rollout.min_agreement, "max_mean_shift": rollout.max_mean_shift}
        if rollout.strategy == "shadow" and rollout.candidate is not None:
            trial["shadow"] = {"model_uri": rollout.candidate.pinned_uri, "model_version": rollout.candidate.version,
                               "model": rollout.candidate.name}
        models = [job.model_uri, previous_model_uri, trial.get("shadow", {}).get("model_uri")]
        return {**trial,
            # Resolved here, once, so that neither the job nor each replica opens the registry.
            "model_locations": {uri: self.registry.location(uri) for uri in models if uri},
            "features": self.registry.input_names(job.model_uri),
            "run_id": run_id, "model_uri": job.model_uri, "format": job.format, "output": job.output,
            "columns": list(job.columns), "prediction_column": job.prediction_column,
            "batch_size": job.batch_size, "concurrency": job.concurrency, "num_cpus": job.num_cpus,
            "memory": job.memory, "tracking_uri": self.settings.tracking_uri, "registry_uri": self.settings.registry_uri,
            "input_files": [f.model_dump() for f in batch.input.files],
            "manifest": {
                "project": ownership.project, "resource": ownership.resource, "revision": ownership.revision,
                "spec_digest": ownership.spec_digest, "run_key": batch.run_key, "model_uri": job.model_uri,
                "model_version": job.model_version, "model_digest": job.model_digest,
                "input_digest": batch.input.digest, "settings": batch_settings(batch),
            },
        }

    def _metadata(self, batch: DesiredBatch, ownership: Ownership, reason: str) -> dict[str, str]:
        return {
            "owner": OWNER, "kind": "batch", "project": ownership.project, "resource": ownership.resource,
            "revision": str(ownership.revision), "spec_digest": ownership.spec_digest, "run_key": batch.run_key,
            "model_version": batch.model.version, "input_digest": batch.input.digest, "output": batch.job.output,
            "reason": reason[:500],
        }


def read_manifest(output: str) -> PublishedRun | None:
    """The manifest of ``<output>/current``; None when nothing is published (or it is unreadable)."""
    path = Path(output) / "current" / "_manifest.json"
    try:
        data = json.loads(path.read_text())
        return PublishedRun(
            run_id=data["run_id"], run_key=data["run_key"], model_uri=data.get("model_uri", ""),
            model_version=str(data["model_version"]),
            model_digest=data["model_digest"], input_digest=data["input_digest"], rows=int(data["rows"]),
            started_at=data["started_at"], finished_at=data["finished_at"], path=str(path.parent.resolve()),
            input_files=tuple(InputFile(**f) for f in data.get("input_files", [])),
            settings=data.get("settings", {}),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _is_ours(metadata: dict[str, str], project: str) -> bool:
    return metadata.get("owner") == OWNER and metadata.get("kind") == "batch" and metadata.get("project") == project


def _job_run(job: dict[str, Any]) -> JobRun:
    metadata = job.get("metadata") or {}
    start, end = job.get("start_time"), job.get("end_time")
    return JobRun(
        job_id=job.get("submission_id") or job.get("job_id") or "?", status=job.get("status", "PENDING"),
        run_key=metadata.get("run_key", ""), revision=int(metadata.get("revision", 0)),
        model_version=metadata.get("model_version", ""), input_digest=metadata.get("input_digest", ""),
        reason=metadata.get("reason", ""), message=(job.get("message") or "").strip(),
        exit_code=job.get("driver_exit_code"),
        start_time=start / 1000 if start else None, end_time=end / 1000 if end else None,
    )


def _encode(config: dict[str, Any]) -> str:
    # zlib: long input listings compress well, and one argument may hold at most 128 KiB.
    return base64.b64encode(zlib.compress(json.dumps(config).encode(), 9)).decode()
