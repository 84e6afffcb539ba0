"""The Ray Serve application of an online deployment.

One deployment class plays both parts:

* the **ingress** of a deployment's application scores the stable model in-process (no
  extra hop in the steady state) and, during a rollout, routes a share of requests to a
  candidate application by the weights in its traffic table, mirrors requests for
  shadow tests and counts requests, errors and latency per arm;
* the ingress also hands a sample of answered requests (of every arm) to the drift
  monitors tapping the deployment (see ``runtime.drift_tap``);
* a **candidate application** (``<deployment>.candidate``) runs the same class with no
  traffic table: it only scores, for the ingress (through a handle) and on its preview
  route.

Configuration arrives only through ``user_config`` (see ``reconfigure``), so weights,
replica counts, batching and bookkeeping change in place without restarting replicas.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from runtime.drift_monitor import NAMESPACE, monitor_actor_name
from runtime.drift_tap import DriftTaps, TapItem
from runtime.model_loading import load_pyfunc
from runtime.scoring import BadRequest, ParsedRequest, RequestParser, predict, predictions_json
from runtime.shadow import ShadowMirror
from runtime.stats import StatsPublisher
from runtime.traffic import Arm, ArmStats, TrafficTable

DEPLOYMENT_NAME = "model"
Answer = tuple[int, bytes, dict[str, str]]


@serve.deployment(name=DEPLOYMENT_NAME)
class ModelServer:
    """Loads one MLflow model version, answers MLflow scoring requests, routes by weights."""

    def __init__(self) -> None:
        self.model: Any = None
        self.model_uri: str | None = None
        self.input_schema: Any = None
        self.parser = RequestParser(None)
        self.config: dict[str, Any] = {}
        self.batching = False
        self.version = ""
        self.table = TrafficTable(None, "")
        self.stats: dict[str, ArmStats] = {}
        self.publisher: StatsPublisher | None = None
        self.handles: dict[str, Any] = {}
        self.mirror = ShadowMirror(self._send_batch, self._arm_stats, self._publish)
        self.taps = DriftTaps(self._send_to_monitor)
        self.monitors: dict[str, Any] = {}

    async def reconfigure(self, config: dict[str, Any]) -> None:
        serving = config["serving"]
        if config.get("tracking_uri"):
            os.environ["MLFLOW_TRACKING_URI"] = config["tracking_uri"]
        if config.get("registry_uri"):
            os.environ["MLFLOW_REGISTRY_URI"] = config["registry_uri"]
        if serving["model_uri"] != self.model_uri:
            self.model = load_pyfunc(config.get("model_location") or serving["model_uri"])
            self.input_schema = self.model.metadata.get_input_schema()
            self.parser = RequestParser(self.input_schema)
            self.model_uri = serving["model_uri"]
        self.config = config
        self.version = str(serving["model_version"])
        self.batching = bool(serving.get("max_batch_size"))
        if self.batching:
            self._predict_batch.set_max_batch_size(int(serving["max_batch_size"]))
            self._predict_batch.set_batch_wait_timeout_s(float(serving.get("batch_wait_timeout_s") or 0.0))
        self.table = TrafficTable(config.get("traffic"), self.version)
        # A candidate application's own route carries only preview requests, which its
        # traffic table would file under "stable": they must not reach the monitors.
        candidate = (config.get("mlopsfile") or {}).get("role") == "candidate"
        self.taps.configure([] if candidate else serving.get("taps") or [])
        if config.get("traffic") is not None and self.publisher is None:
            publisher = StatsPublisher(serve.get_replica_context().app_name)
            # Used only once its actor answers: a call queued while the actor is still being
            # created and then cancelled (a caller of /-/stats hanging up) stalls every later
            # call from this replica, and the counters would never be readable again.
            await publisher.ready()
            self.publisher = publisher

    # -- HTTP ------------------------------------------------------------------------

    async def __call__(self, request: Request) -> Response:
        path = request.url.path[len(request.scope.get("root_path", "")):] or "/"
        if path == "/predict":
            if request.method != "POST":
                return _error("use POST for /predict", 405)
            return await self._route(request)
        if request.method == "GET" and path in ("/", "/healthz"):
            return JSONResponse({"status": "ok"})
        if request.method == "GET" and path == "/metadata":
            return JSONResponse(self.metadata())
        if request.method == "GET" and path == "/-/stats":
            return JSONResponse(await self.traffic_stats())
        if request.method == "GET" and path == "/-/smoke":
            return self._smoke()
        return _error(f"no such endpoint {path!r}; POST to /predict", 404)

    def metadata(self) -> dict[str, Any]:
        serving = self.config.get("serving", {})
        owner = self.config.get("mlopsfile", {})
        return {
            "deployment": owner.get("resource"),
            "revision": owner.get("revision"),
            "model_uri": serving.get("model_uri"),
            "model_version": serving.get("model_version"),
            "model_digest": serving.get("model_digest"),
            "input_schema": self.input_schema.to_dict() if self.input_schema is not None else None,
        }

    async def _route(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if content_type not in ("application/json", ""):
            return _error(f"unsupported content type {content_type!r}; send application/json", 415)
        body = await request.body()
        table = self.table
        key = request.headers.get(table.sticky_header) if table.sticky_header else None
        arm = table.pick(key)
        started = time.perf_counter()
        if arm.local:
            status, payload, headers = await self.score(body)
        else:
            status, payload, headers = await self._forward(arm, body)
        self._record(arm.key, (time.perf_counter() - started) * 1000, status < 500)
        if status == 200:
            if self.taps.active:
                self.taps.offer(arm.key, body, payload)
            if arm.local:
                mirror = table.mirror()
                if mirror is not None and mirror.app is not None:
                    self.mirror.offer(mirror.key, mirror.app, body, payload)
        return Response(payload, status_code=status, media_type="application/json", headers=headers)

    # -- scoring (also called through a handle by the ingress of the deployment) ------

    async def score(self, body: bytes) -> Answer:
        started = time.perf_counter()
        try:
            parsed = self.parser.parse(body)
            if self.batching and parsed.params is None and hasattr(parsed.data, "iloc"):
                predictions = await self._predict_batch(parsed)
                if isinstance(predictions, BadRequest):
                    raise predictions
            else:
                predictions = predict(self.model, parsed.data, parsed.params)
            payload = predictions_json(predictions)
        except BadRequest as exc:
            return exc.status, _error_body(str(exc), exc.status), {}
        except Exception as exc:  # a model fault: the caller gets a 500 and the arm counts an error
            return 500, _error_body(f"model {self.version} failed: {type(exc).__name__}: {exc}", 500), \
                {"x-model-version": self.version}
        return 200, payload, {"x-model-version": self.version,
                              "x-inference-ms": f"{(time.perf_counter() - started) * 1000:.2f}"}

    async def score_batch(self, bodies: list[bytes]) -> list[Answer]:
        """Score many requests with one model call where they allow it (mirrored traffic)."""
        import pandas as pd

        answers: list[Answer | None] = [None] * len(bodies)
        frames: list[tuple[int, Any]] = []
        for index, body in enumerate(bodies):
            try:
                parsed = self.parser.parse(body)
            except BadRequest as exc:
                answers[index] = (exc.status, _error_body(str(exc), exc.status), {})
                continue
            if parsed.params is None and hasattr(parsed.data, "iloc"):
                frames.append((index, parsed.data))
            else:
                answers[index] = await self.score(body)
        if frames:
            try:
                combined = predict(self.model, pd.concat([frame for _, frame in frames], ignore_index=True), None)
                start = 0
                for index, frame in frames:
                    answers[index] = (200, predictions_json(combined[start:start + len(frame)]),
                                      {"x-model-version": self.version})
                    start += len(frame)
            except Exception:  # one bad request must not fail the others: score each alone
                for index, _ in frames:
                    answers[index] = await self.score(bodies[index])
        return [answer for answer in answers if answer is not None]

    async def _send_batch(self, app: str, bodies: list[bytes]) -> list[Answer]:
        return await self._handle(app).score_batch.remote(bodies)

    async def _forward(self, arm: Arm, body: bytes) -> Answer:
        try:
            status, payload, headers = await self._handle(arm.app).score.remote(body)
        except Exception as exc:  # the candidate application is gone or its replica died
            return 503, _error_body(f"model {arm.version} unavailable: {type(exc).__name__}", 503), \
                {"x-model-version": arm.version}
        return status, payload, headers

    async def _send_to_monitor(self, monitor: str, batch: list[TapItem], dropped: int) -> None:
        actor = self.monitors.get(monitor)
        try:
            if actor is None:
                # A GCS round trip: kept off the event loop that answers requests.
                actor = await asyncio.to_thread(ray.get_actor, monitor_actor_name(monitor), namespace=NAMESPACE)
                self.monitors[monitor] = actor
            await actor.offer.remote(batch, dropped)
        except Exception:
            # The monitor is not there yet, or was replaced by a new actor of the same name:
            # look it up again next time. The tap counts this batch as dropped.
            self.monitors.pop(monitor, None)
            raise

    def _handle(self, app: str | None) -> Any:
        assert app is not None
        handle = self.handles.get(app)
        if handle is None:
            handle = serve.get_deployment_handle(DEPLOYMENT_NAME, app_name=app, _check_exists=False)
            self.handles[app] = handle
        return handle

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _predict_batch(self, requests: list[ParsedRequest]) -> list[Any]:
        import pandas as pd

        frames = [r.data for r in requests]
        try:
            combined = predict(self.model, pd.concat(frames, ignore_index=True), None)
        except BadRequest:
            # One bad request must not fail its neighbours: score each on its own.
            results: list[Any] = []
            for frame in frames:
                try:
                    results.append(predict(self.model, frame, None))
                except BadRequest as exc:
                    results.append(exc)
            return results
        out, start = [], 0
        for frame in frames:
            out.append(combined[start:start + len(frame)])
            start += len(frame)
        return out

    def _smoke(self) -> Response:
        """Score the model's own input example: a preview check needing no caller data."""
        example = getattr(self.model, "input_example", None)
        if example is None:
            return _error("the model was logged without an input example", 404)
        try:
            payload = predictions_json(predict(self.model, example, None))
        except Exception as exc:
            return _error(f"model {self.version} failed on its input example: {type(exc).__name__}: {exc}", 500)
        return Response(payload, media_type="application/json", headers={"x-model-version": self.version})

    # -- counters -----------------------------------------------------------------

    def _arm_stats(self, key: str) -> ArmStats:
        stats = self.stats.get(key)
        if stats is None:
            stats = self.stats[key] = ArmStats()
        return stats

    def _record(self, key: str, latency_ms: float, ok: bool) -> None:
        self._arm_stats(key).record(latency_ms, ok)
        self._publish()

    def _publish(self) -> None:
        if self.publisher is not None:
            self.publisher.changed(self.stats)

    async def traffic_stats(self) -> dict[str, Any]:
        """Counters of every arm summed over all ingress replicas (read by the control plane)."""
        arms: dict[str, Any] = {}
        if self.publisher is not None:
            arms = await self.publisher.merged(self.stats)
        else:
            arms = {key: stats.to_dict() for key, stats in self.stats.items()}
        return {"generation": self.table.generation, "arms": arms, "taps": self.taps.counters()}


def _error_body(message: str, status: int) -> bytes:
    return json.dumps({"error_code": "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR", "message": message}).encode()


def _error(message: str, status: int) -> Response:
    return Response(_error_body(message, status), status_code=status, media_type="application/json")
