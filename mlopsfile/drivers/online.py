"""Online driver: one Ray Serve application per online Deployment.

Reads go through the Ray dashboard's Serve REST API (no Ray client needed, so ``plan``
stays fast and starts nothing). Writes go through ``serve.run_many`` from a Ray client,
one named application at a time, which leaves every other application alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any

import httpx

from mlopsfile.config import Settings
from mlopsfile.drivers.ray_cluster import ClusterAccess, ClusterEndpoint
from mlopsfile.drivers.registry import MlflowResolver
from mlopsfile.drivers.runtime_package import runtime_working_dir
from mlopsfile.errors import DriverError
from mlopsfile.resources import (
    DesiredDeployment,
    Health,
    ObservedArm,
    ObservedDeployment,
    OnlineServing,
    Ownership,
    Traffic,
    candidate_app,
    replace_digest,
)

DEPLOYMENT_NAME = "model"  # runtime.serve_app.DEPLOYMENT_NAME, repeated to keep plan free of Ray imports
OWNER_KEY = "mlopsfile"
AUTOSCALING_KEYS = ("min_replicas", "max_replicas", "target_ongoing_requests", "upscale_delay_s", "downscale_delay_s")
DEFAULT_DEPLOY_TIMEOUT_S = 300.0


class OnlineDriver:
    """Ray Serve applications, observed over HTTP and changed through a Ray client."""

    target = "online"

    def __init__(self, settings: Settings, deploy_timeout_s: float | None = None) -> None:
        self.settings = settings
        self.deploy_timeout_s = deploy_timeout_s or float(os.environ.get("MLOPSFILE_DEPLOY_TIMEOUT_S", DEFAULT_DEPLOY_TIMEOUT_S))
        self.cluster = ClusterAccess(settings)
        self.local_head = self.cluster.local_head
        self.registry = MlflowResolver(settings.tracking_uri, settings.registry_uri)
        self._connected: ClusterEndpoint | None = None

    # -- reading -----------------------------------------------------------------

    def endpoint(self, start: bool = False) -> ClusterEndpoint | None:
        return self.cluster.endpoint(start)

    def serve_details(self) -> dict[str, Any]:
        return self.cluster.get_json("/api/serve/applications/") or {"applications": {}}

    def observe(self) -> list[ObservedDeployment]:
        details = self.serve_details()
        # An application Serve is deleting is gone for planning: it no longer serves, and
        # deploying its name again takes it back. Seen as live, a resync would miss the drift.
        return attach_candidates([observe_application(name, app, self._http_base(details))
                                  for name, app in sorted((details.get("applications") or {}).items())
                                  if app.get("status") != "DELETING"])

    def observe_one(self, name: str) -> ObservedDeployment | None:
        return next((d for d in self.observe() if d.name == name), None)

    def health(self, name: str) -> Health | None:
        app = (self.serve_details().get("applications") or {}).get(name)
        return observe_application(name, app).health if app else None

    def http_base(self) -> str:
        return self._http_base(self.serve_details())

    def _http_base(self, details: dict[str, Any]) -> str:
        """Where Serve's HTTP proxy really listens (whoever started Serve chose it)."""
        options = details.get("http_options") or {}
        host = options.get("host") or self.settings.http_host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://{host}:{options.get('port') or self.settings.http_port}"

    # -- writing -----------------------------------------------------------------

    def create(self, desired: DesiredDeployment, ownership: Ownership) -> None:
        self._deploy(desired.name, desired.serving, ownership)

    def update(self, desired: DesiredDeployment, ownership: Ownership, traffic: Traffic | None = None) -> None:
        self._deploy(desired.name, desired.serving, ownership, traffic)

    def replace(self, desired: DesiredDeployment, ownership: Ownership, traffic: Traffic | None = None) -> None:
        # Serve starts replicas of the new version and retires the old ones only once
        # the new ones pass their health checks: create-before-destroy.
        self._deploy(desired.name, desired.serving, ownership, traffic)

    def restore(self, previous: ObservedDeployment) -> None:
        if previous.serving is None or previous.ownership is None:
            return
        self._deploy(previous.name, previous.serving, previous.ownership, previous.traffic)

    def delete(self, name: str) -> None:
        serve = self._serve()
        serve.delete(name, _blocking=True)
        self.delete_candidate(name)
        self._drop_stats(name)

    # -- rollouts ----------------------------------------------------------------------

    def deploy_candidate(self, name: str, serving: OnlineServing, ownership: Ownership,
                         preview_route: str | None) -> None:
        """The candidate application: scores for the ingress, and on ``preview_route`` if given."""
        self._deploy(candidate_app(name), serving, ownership, route_prefix=preview_route)

    def set_traffic(self, name: str, serving: OnlineServing, ownership: Ownership, traffic: Traffic) -> None:
        """New weights for the ingress, applied in place; returns once Serve reports them applied."""
        self._deploy(name, serving, ownership, traffic)

    def replace_serving(self, name: str, serving: OnlineServing, ownership: Ownership) -> None:
        self._deploy(name, serving, ownership)

    def smoke(self, route: str, body: dict[str, Any] | None, count: int) -> list[tuple[int, float, str]]:
        base = f"{self.http_base()}{route.rstrip('/')}"
        results = []
        with httpx.Client(timeout=30) as client:
            for _ in range(count):
                started = time.perf_counter()
                try:
                    response = (client.post(f"{base}/predict", json=body) if body is not None
                                else client.get(f"{base}/-/smoke"))
                    status, text = response.status_code, "" if response.status_code < 400 else response.text[:200]
                except httpx.HTTPError as exc:
                    status, text = 599, f"{type(exc).__name__}: {exc}"
                results.append((status, (time.perf_counter() - started) * 1000, text))
        return results

    def delete_candidate(self, name: str) -> None:
        serve = self._serve()
        if candidate_app(name) in (self.serve_details().get("applications") or {}):
            serve.delete(candidate_app(name), _blocking=True)

    def traffic_stats(self, observed: ObservedDeployment) -> dict[str, Any]:
        """Per-arm counters summed over every ingress replica, read through the deployment's route."""
        url = f"{self.http_base()}{(observed.serving.route if observed.serving else '').rstrip('/')}/-/stats"
        try:
            response = httpx.get(url, timeout=10)
        except httpx.HTTPError as exc:
            raise DriverError(f"cannot read traffic counters at {url}: {exc}", temporary=True) from exc
        if response.status_code != 200:
            raise DriverError(f"traffic counters at {url} answered {response.status_code}", temporary=True)
        return response.json()

    def _drop_stats(self, name: str) -> None:
        import ray

        from runtime.stats import NAMESPACE, stats_actor_name

        with contextlib.suppress(ValueError):  # never created: the deployment had no rollout
            ray.kill(ray.get_actor(stats_actor_name(name), namespace=NAMESPACE))

    def _deploy(self, name: str, serving: OnlineServing, ownership: Ownership, traffic: Traffic | None = None,
                route_prefix: str | None = "") -> None:
        serve = self._serve()
        from ray.serve.api import RunTarget

        from runtime.serve_app import ModelServer

        user_config: dict[str, Any] = {
            OWNER_KEY: ownership.model_dump(),
            "serving": serving.model_dump(),
            "model_location": self.registry.location(serving.model_uri),
            "tracking_uri": self.settings.tracking_uri,
            "registry_uri": self.settings.registry_uri or self.settings.tracking_uri,
        }
        if traffic is not None:
            user_config["traffic"] = traffic.model_dump()
        actor_options: dict[str, Any] = {"num_cpus": serving.num_cpus, "num_gpus": serving.num_gpus}
        if serving.memory:
            actor_options["memory"] = serving.memory
        if serving.custom_resources:
            actor_options["resources"] = dict(serving.custom_resources)
        options: dict[str, Any] = {
            "user_config": user_config,
            "ray_actor_options": actor_options,
            "max_ongoing_requests": serving.max_ongoing_requests,
            # A fixed version makes Serve treat replica-count, batching and bookkeeping
            # changes as in-place reconfigurations instead of restarting every replica.
            "version": replace_digest(serving),
            "_internal": True,
        }
        if serving.autoscaling:
            options["autoscaling_config"] = dict(serving.autoscaling)
            options["num_replicas"] = "auto"
        else:
            options["num_replicas"] = serving.replicas
        application = ModelServer.options(**options).bind()
        route = serving.route if route_prefix == "" else route_prefix
        try:
            serve.run_many([RunTarget(target=application, name=name, route_prefix=route)],
                           wait_for_ingress_deployment_creation=False, wait_for_applications_running=False)
        except Exception as exc:  # Ray raises many types here; all mean "not deployed"
            raise DriverError(f"Ray Serve refused application {name!r}: {_first_line(exc)}") from exc
        self._wait_ready(name, ownership, traffic)

    def _wait_ready(self, name: str, ownership: Ownership, traffic: Traffic | None = None) -> None:
        deadline = time.monotonic() + self.deploy_timeout_s
        last = "not visible yet"
        while time.monotonic() < deadline:
            app = (self.serve_details().get("applications") or {}).get(name)
            if app:
                observed = observe_application(name, app)
                health = observed.health
                current = observed.ownership is not None and observed.ownership.revision == ownership.revision
                if traffic is not None:
                    current = current and observed.traffic is not None and observed.traffic == traffic
                if health.status == "DEPLOY_FAILED" and current:
                    raise DriverError(f"application {name!r} failed to deploy: {health.message or 'see Ray Serve logs'}")
                if current and health.status == "RUNNING" and health.running_replicas >= health.target_replicas:
                    return
                last = f"{health.status}, {health.running_replicas}/{health.target_replicas} replicas; {health.message}".strip("; ")
            time.sleep(0.2)
        raise DriverError(f"application {name!r} not ready after {self.deploy_timeout_s:.0f}s ({last})", temporary=True)

    def connect(self) -> Any:
        """The ray module, connected to the cluster with the runtime package (for monitor actors)."""
        self._serve()
        import ray

        return ray

    def _serve(self) -> Any:
        endpoint = self.endpoint(start=True)
        assert endpoint is not None
        if self._connected is None:
            # Ray reads its auth settings when it is first imported.
            os.environ.update(endpoint.client_env())
        import ray
        from ray import serve

        if self._connected is None:
            for noisy in ("ray", "ray.serve", "ray._private", "ray.runtime_env"):
                logging.getLogger(noisy).setLevel(logging.ERROR)
            if not ray.is_initialized():
                ray.init(address=endpoint.address, namespace="mlopsfile", logging_level=logging.ERROR,
                         log_to_driver=False, configure_logging=False,
                         runtime_env={"working_dir": runtime_working_dir(self.settings)})
            serve.start(http_options={"host": self.settings.http_host, "port": self.settings.http_port})
            self._connected = endpoint
        return serve


def observe_application(name: str, app: dict[str, Any], http_base: str = "") -> ObservedDeployment:
    """Turn one application of Serve's details into an ObservedDeployment."""
    deployments = app.get("deployments") or {}
    ingress = deployments.get(DEPLOYMENT_NAME) or {}
    config = ingress.get("deployment_config") or {}
    user_config = config.get("user_config") if isinstance(config.get("user_config"), dict) else {}
    replicas = ingress.get("replicas") or []
    health = Health(
        status=str(app.get("status", "UNKNOWN")),
        running_replicas=sum(1 for r in replicas if r.get("state") == "RUNNING"),
        target_replicas=int(ingress.get("target_num_replicas") or 0),
        message=_first_line(app.get("message") or ingress.get("message") or ""),
    )
    route = app.get("route_prefix") or ""
    details = {"route": route, "source": app.get("source"), "url": f"{http_base}{route.rstrip('/')}/predict"}
    try:
        ownership = Ownership.model_validate(user_config[OWNER_KEY])
        recorded = OnlineServing.model_validate(user_config["serving"])
        traffic = Traffic.model_validate(user_config["traffic"]) if user_config.get("traffic") else None
    except (KeyError, TypeError, ValueError):
        return ObservedDeployment(name=name, health=health, details=details)
    return ObservedDeployment(name=name, ownership=ownership, serving=_live_serving(recorded, app, config),
                              health=health, details=details, traffic=traffic)


def attach_candidates(found: list[ObservedDeployment]) -> list[ObservedDeployment]:
    """Candidate applications belong to their deployment, not beside it."""
    candidates = {d.ownership.resource: d for d in found
                  if d.ownership is not None and d.ownership.role == "candidate" and d.serving is not None}
    attached: set[str] = set()
    out = []
    for deployment in found:
        arm = candidates.get(deployment.ownership.resource) if deployment.ownership else None
        if arm is not None and arm is not deployment and arm.name == candidate_app(deployment.name):
            assert arm.ownership is not None and arm.serving is not None
            deployment = deployment.model_copy(update={"candidate": ObservedArm(
                app=arm.name, ownership=arm.ownership, serving=arm.serving, health=arm.health)})
            attached.add(arm.name)
        out.append(deployment)
    # A candidate whose deployment is gone stays visible, so the plan removes it.
    return [d for d in out if d.name not in attached]


def _live_serving(recorded: OnlineServing, app: dict[str, Any], config: dict[str, Any]) -> OnlineServing:
    """What runs now: recorded values, overridden by what Serve reports live."""
    actor = config.get("ray_actor_options") or {}
    autoscaling = config.get("autoscaling_config")
    live: dict[str, Any] = {
        "route": app.get("route_prefix") or recorded.route,
        "max_ongoing_requests": config.get("max_ongoing_requests", recorded.max_ongoing_requests),
        "num_cpus": float(actor.get("num_cpus", recorded.num_cpus) or 0),
        "num_gpus": float(actor.get("num_gpus", recorded.num_gpus) or 0),
        "memory": actor.get("memory") or None,
        "custom_resources": {k: float(v) for k, v in (actor.get("resources") or {}).items()},
    }
    if autoscaling:
        live["autoscaling"] = {key: autoscaling[key] for key in AUTOSCALING_KEYS if key in autoscaling}
        live["replicas"] = None
    else:
        live["autoscaling"] = None
        live["replicas"] = config.get("num_replicas", recorded.replicas)
    return recorded.model_copy(update=live)


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0][:300] if text else ""
