"""The baselines of bench/serving.py and bench/rollout.py: the same model served without mlopsfile.

Two servers, each run by the benchmark as its own process:

``fastapi``  plain FastAPI on uvicorn (one worker), bound to 127.0.0.1.
``serve``    one bare ``@serve.deployment`` on the Ray cluster mlopsfile started, behind
             the same Serve HTTP proxy; it stays deployed until this process reads a
             line (or end of file) on stdin, then deletes its application and exits.
             With ``--hop`` the application is a plain two-deployment composition
             instead: an ingress that passes the request body through a
             ``DeploymentHandle`` to the same model deployment (``.score.remote(body)``)
             and returns its answer, the shape of mlopsfile's forward to a candidate
             (runtime/serve_app.py) with none of its code. Both deployments get the
             same replica count, ``num_cpus`` and ``max_ongoing_requests``.

Both score with one of two handlers, chosen by ``--scoring``:

``plain``    what a hand-written server must do at least: json.loads, a pandas
             DataFrame from ``dataframe_split``, ``pyfunc.predict`` (which enforces the
             signature), json.dumps of the predictions.
``runtime``  mlopsfile's own data-plane helpers (runtime/scoring.py: parse_payload,
             predict, predictions_json). Served by bare Serve this isolates the cost of
             the scoring helpers from the cost of the ModelServer wrapper around them.

Every handler runs its work inline in an ``async def`` (as runtime/serve_app.py does) and
sets ``x-inference-ms`` to the time spent on parse + predict + serialise, like mlopsfile.

No ``from __future__ import annotations`` here: FastAPI reads the route annotations at
run time, and ``Request`` is imported inside the function that builds the app.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
HEADER = "x-inference-ms"
Answer = tuple[int, bytes, dict[str, str]]  # status, body, headers: what crosses the handle


class Scorer:
    """Loads one pyfunc model and turns a request body into a response body."""

    def __init__(self, model_uri: str, tracking_uri: str, scoring: str) -> None:
        # pyfunc.load_model resolves models:/ URIs through the registry in the environment.
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
        os.environ["MLFLOW_REGISTRY_URI"] = tracking_uri
        import mlflow.pyfunc

        self.model = mlflow.pyfunc.load_model(model_uri)
        self.input_schema = self.model.metadata.get_input_schema()
        self.scoring = scoring

    def score(self, body: bytes) -> tuple[int, bytes]:
        if self.scoring == "runtime":
            return self._score_runtime(body)
        return self._score_plain(body)

    def _score_plain(self, body: bytes) -> tuple[int, bytes]:
        import numpy as np
        import pandas as pd

        try:
            split = json.loads(body)["dataframe_split"]
            frame = pd.DataFrame(split["data"], columns=split["columns"])
            predictions = self.model.predict(frame)
        except Exception as exc:  # a baseline only needs to tell success from failure
            return 400, json.dumps({"error_code": "BAD_REQUEST", "message": str(exc)[:200]}).encode()
        return 200, json.dumps({"predictions": np.asarray(predictions).tolist()}).encode()

    def _score_runtime(self, body: bytes) -> tuple[int, bytes]:
        from runtime.scoring import BadRequest, parse_payload, predict, predictions_json

        try:
            parsed = parse_payload(body, self.input_schema)
            predictions = predict(self.model, parsed.data, parsed.params)
        except BadRequest as exc:
            return exc.status, json.dumps({"error_code": "BAD_REQUEST", "message": str(exc)}).encode()
        return 200, predictions_json(predictions)


# -- FastAPI -----------------------------------------------------------------------------


def run_fastapi(args: argparse.Namespace) -> None:
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import Response

    scorer = Scorer(args.model_uri, args.tracking_uri, args.scoring)
    app = FastAPI()

    @app.post("/predict")
    async def predict_route(request: Request) -> Response:
        payload = await request.body()
        started = time.perf_counter()  # after the body, as mlopsfile's handler times it
        status, body = scorer.score(payload)
        return Response(body, status_code=status, media_type="application/json",
                        headers={HEADER: f"{(time.perf_counter() - started) * 1000:.2f}"})

    @app.get("/healthz")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    # One worker, access log off (Serve's proxy does not log each request to stdout either).
    uvicorn.run(app, host="127.0.0.1", port=args.port, workers=1, access_log=False, log_level="warning")


# -- bare Ray Serve ----------------------------------------------------------------------


def run_serve(args: argparse.Namespace) -> None:
    import logging

    import ray
    from ray import serve
    from ray.serve.handle import DeploymentHandle
    from starlette.requests import Request
    from starlette.responses import Response

    def respond(answer: Answer) -> Response:
        status, body, headers = answer
        return Response(body, status_code=status, media_type="application/json", headers=headers)

    @serve.deployment(name="model")
    class BareModel:
        def __init__(self, model_uri: str, tracking_uri: str, scoring: str) -> None:
            self.scorer = Scorer(model_uri, tracking_uri, scoring)

        async def score(self, payload: bytes) -> Answer:
            started = time.perf_counter()
            status, body = self.scorer.score(payload)
            return status, body, {HEADER: f"{(time.perf_counter() - started) * 1000:.2f}"}

        async def __call__(self, request: Request) -> Response:
            return respond(await self.score(await request.body()))

    @serve.deployment(name="ingress")
    class BareIngress:
        """Scores nothing itself: every request body goes to the model by handle."""

        def __init__(self, model: DeploymentHandle) -> None:
            self.model = model

        async def __call__(self, request: Request) -> Response:
            return respond(await self.model.score.remote(await request.body()))

    # runtime/ must be importable in the replica for --scoring runtime; the repository
    # root on PYTHONPATH does that without relying on how mlopsfile was installed.
    ray.init(address=args.address, namespace="mlopsfile-bench", logging_level=logging.ERROR,
             log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}})
    options: dict[str, Any] = {"num_replicas": args.replicas, "ray_actor_options": {"num_cpus": args.num_cpus},
                               "max_ongoing_requests": args.max_ongoing_requests}
    application = BareModel.options(**options).bind(args.model_uri, args.tracking_uri, args.scoring)
    if args.hop:
        application = BareIngress.options(**options).bind(application)
    serve.run(application, name=args.name, route_prefix=args.route, blocking=False)
    print("READY", flush=True)
    try:
        sys.stdin.readline()  # the benchmark writes a line (or closes stdin) when it is done
    finally:
        serve.delete(args.name, _blocking=True)
        ray.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("server", choices=("fastapi", "serve"))
    parser.add_argument("--model-uri", required=True)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--scoring", choices=("plain", "runtime"), default="plain")
    parser.add_argument("--port", type=int, default=0, help="fastapi: port on 127.0.0.1")
    parser.add_argument("--address", help="serve: Ray GCS address")
    parser.add_argument("--name", default="bench-bare", help="serve: application name")
    parser.add_argument("--route", default="/bare", help="serve: route prefix")
    parser.add_argument("--hop", action="store_true",
                        help="serve: an ingress deployment forwarding to the model by handle")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--num-cpus", type=float, default=0.1)
    parser.add_argument("--max-ongoing-requests", type=int, default=5)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))  # runtime.scoring, for --scoring runtime
    runner: Any = run_fastapi if args.server == "fastapi" else run_serve
    runner(args)


if __name__ == "__main__":
    main()
