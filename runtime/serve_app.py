"""The Ray Serve application of an online deployment.

Configuration arrives only through ``user_config`` (see ``reconfigure``), so replica
counts, batching and bookkeeping change in place without restarting replicas.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from runtime.scoring import BadRequest, ParsedRequest, RequestParser, predict, predictions_json

DEPLOYMENT_NAME = "model"


@serve.deployment(name=DEPLOYMENT_NAME)
class ModelServer:
    """Loads one MLflow model version and answers MLflow scoring requests."""

    def __init__(self) -> None:
        self.model: Any = None
        self.model_uri: str | None = None
        self.input_schema: Any = None
        self.parser = RequestParser(None)
        self.config: dict[str, Any] = {}
        self.batching = False

    def reconfigure(self, config: dict[str, Any]) -> None:
        serving = config["serving"]
        if config.get("tracking_uri"):
            os.environ["MLFLOW_TRACKING_URI"] = config["tracking_uri"]
        if config.get("registry_uri"):
            os.environ["MLFLOW_REGISTRY_URI"] = config["registry_uri"]
        if serving["model_uri"] != self.model_uri:
            import mlflow.pyfunc

            self.model = mlflow.pyfunc.load_model(serving["model_uri"])
            self.input_schema = self.model.metadata.get_input_schema()
            self.parser = RequestParser(self.input_schema)
            self.model_uri = serving["model_uri"]
        self.config = config
        self.batching = bool(serving.get("max_batch_size"))
        if self.batching:
            self._predict_batch.set_max_batch_size(int(serving["max_batch_size"]))
            self._predict_batch.set_batch_wait_timeout_s(float(serving.get("batch_wait_timeout_s") or 0.0))

    async def __call__(self, request: Request) -> Response:
        path = request.url.path[len(request.scope.get("root_path", "")):] or "/"
        if path == "/predict":
            if request.method != "POST":
                return _error("use POST for /predict", 405)
            return await self._score(request)
        if request.method == "GET" and path in ("/", "/healthz"):
            return JSONResponse({"status": "ok"})
        if request.method == "GET" and path == "/metadata":
            return JSONResponse(self.metadata())
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

    async def _score(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if content_type not in ("application/json", ""):
            return _error(f"unsupported content type {content_type!r}; send application/json", 415)
        body = await request.body()
        started = time.perf_counter()
        try:
            parsed = self.parser.parse(body)
            if self.batching and parsed.params is None and hasattr(parsed.data, "iloc"):
                predictions = await self._predict_batch(parsed)
                if isinstance(predictions, BadRequest):
                    raise predictions
            else:
                predictions = predict(self.model, parsed.data, parsed.params)
        except BadRequest as exc:
            return _error(str(exc), exc.status)
        return Response(predictions_json(predictions), media_type="application/json",
                        headers={"x-model-version": str(self.config["serving"]["model_version"]),
                                 "x-inference-ms": f"{(time.perf_counter() - started) * 1000:.2f}"})

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


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error_code": "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR", "message": message}, status_code=status)
