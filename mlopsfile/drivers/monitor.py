"""Monitor driver: one detached Ray actor per drift monitor, and its MLflow run.

Observation reads Ray's State API over the dashboard (no Ray client, so ``plan`` stays
fast): a monitor actor's repr names its project, monitor and config digest. Writes and
history reads go through the Ray client of the online driver, which ships the runtime
package the actor's code lives in.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from mlopsfile.drivers.monitor_data import published_rows, reference_array
from mlopsfile.drivers.online import OnlineDriver
from mlopsfile.errors import DriverError, MonitorDataError
from mlopsfile.monitor_resources import DesiredMonitor, ObservedMonitor
from mlopsfile.resources import PublishedRun

ACTOR_CLASS = "DriftMonitor"
ACTOR_PREFIX = "drift-monitor:"  # runtime.drift_monitor.monitor_actor_name, repeated to keep plan free of Ray
NAMESPACE = "mlopsfile"
EXPERIMENT = "mlopsfile-monitors"
START_TIMEOUT_S = 180.0
CALL_TIMEOUT_S = 30.0


class MonitorDriver:
    target = "monitor"

    def __init__(self, online: OnlineDriver) -> None:
        self.online = online
        self.settings = online.settings

    # -- reading -----------------------------------------------------------------

    def observe(self) -> list[ObservedMonitor]:
        if self.online.endpoint(start=False) is None:
            return []
        query = urlencode({"filter_keys": "class_name", "filter_predicates": "=", "filter_values": ACTOR_CLASS,
                           "detail": "true", "limit": "10000"})
        body = self.online.cluster.get_json(f"/api/v0/actors?{query}") or {}
        rows = ((body.get("data") or {}).get("result") or {}).get("result") or []
        found: dict[str, ObservedMonitor] = {}
        for row in rows:
            if row.get("ray_namespace") != NAMESPACE or row.get("state") == "DEAD":
                continue
            parsed = parse_repr(row.get("repr_name") or "", row.get("name") or "", str(row.get("state")))
            if parsed is not None:
                found[parsed.name] = parsed
        return [found[name] for name in sorted(found)]

    def history(self, name: str, since: int = 0) -> dict[str, Any]:
        return self._call(name, "history", since)

    def pending_actions(self, name: str) -> list[dict[str, Any]]:
        return list(self._call(name, "pending_actions"))

    def ack_action(self, name: str, action_id: Any, outcome: str, message: str) -> None:
        self._call(name, "ack_action", action_id, outcome, message)

    def check_published(self, name: str, arm: str, published: PublishedRun, target: str, sample: float) -> int:
        """Hand one published batch run to the monitor as a window of its own; returns its rows."""
        features = list(self._call(name, "config")["features"])  # what the actor was built on
        try:
            rows = published_rows(published.path, [f.path for f in published.input_files], features, target,
                                  sample, seed=published.run_id)
        except (OSError, ValueError, MonitorDataError) as exc:
            raise DriverError(f"cannot read the published run {published.run_id} of monitor {name!r}: {exc}") from exc
        return int(self._call(name, "check_rows", arm, rows))

    # -- writing -----------------------------------------------------------------

    def start(self, want: DesiredMonitor) -> None:
        """Start the monitor's actor with the wanted config, replacing one that runs another."""
        ray = self.online.connect()
        from runtime.drift_monitor import DriftMonitor, monitor_actor_name

        reference = reference_array(want.prepared.reference_path, list(want.prepared.features))
        config = {**want.config, "mlflow": {"tracking_uri": self.settings.tracking_uri,
                                            "run_id": self._mlflow_run(want)}}
        self.stop(want.name)
        try:
            actor = DriftMonitor.options(  # type: ignore[attr-defined]
                name=monitor_actor_name(want.name), namespace=NAMESPACE, lifetime="detached", get_if_exists=False,
            ).remote(config, reference)
            ray.get(actor.config.remote(), timeout=START_TIMEOUT_S)
        except Exception as exc:  # Ray raises many types here; all mean "not started"
            self.stop(want.name)
            raise DriverError(f"monitor {want.name!r} did not start: {_first_line(exc)}") from exc

    def stop(self, name: str) -> None:
        ray = self.online.connect()
        from runtime.drift_monitor import monitor_actor_name

        try:
            actor = ray.get_actor(monitor_actor_name(name), namespace=NAMESPACE)
        except ValueError:
            return
        ray.kill(actor, no_restart=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the name is free only once Ray has buried the actor
            try:
                ray.get_actor(monitor_actor_name(name), namespace=NAMESPACE)
            except ValueError:
                return
            time.sleep(0.1)

    def _call(self, name: str, method: str, *args: Any) -> Any:
        ray = self.online.connect()
        from runtime.drift_monitor import monitor_actor_name

        try:
            actor = ray.get_actor(monitor_actor_name(name), namespace=NAMESPACE)
        except ValueError as exc:
            raise DriverError(f"monitor {name!r} is not running (apply the specs to start it)") from exc
        try:
            return ray.get(getattr(actor, method).remote(*args), timeout=CALL_TIMEOUT_S)
        except Exception as exc:  # the actor died or is restarting
            raise DriverError(f"monitor {name!r} did not answer: {_first_line(exc)}", temporary=True) from exc

    def _mlflow_run(self, want: DesiredMonitor) -> str | None:
        """One MLflow run per monitor and project: its metrics are the monitor's history across restarts."""
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        from mlopsfile.drivers.registry import quiet_mlflow

        quiet_mlflow()
        client = MlflowClient(tracking_uri=self.settings.tracking_uri)
        project = want.config["project"]
        try:
            experiment = client.get_experiment_by_name(EXPERIMENT)
            experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
            runs = client.search_runs([experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
                                      filter_string=f"tags.`mlopsfile.monitor` = '{want.name}' and "
                                                    f"tags.`mlopsfile.project` = '{project}'")
            if runs:
                return str(runs[0].info.run_id)
            run = client.create_run(experiment_id, run_name=want.name, tags={
                "mlopsfile.monitor": want.name, "mlopsfile.project": project,
                "mlopsfile.deployment": want.deployment})
            return str(run.info.run_id)
        except MlflowException as exc:
            raise DriverError(f"cannot open the MLflow run of monitor {want.name!r}: {_first_line(exc)}") from exc


def parse_repr(repr_name: str, actor_name: str, state: str) -> ObservedMonitor | None:
    """``DriftMonitor:<project>:<monitor>:<digest>`` → ObservedMonitor; anything else is not ours."""
    parts = repr_name.split(":")
    if len(parts) != 4 or parts[0] != ACTOR_CLASS or actor_name != f"{ACTOR_PREFIX}{parts[2]}":
        if actor_name.startswith(ACTOR_PREFIX) and state != "ALIVE":  # restarting: no repr until it is back
            return ObservedMonitor(name=actor_name.removeprefix(ACTOR_PREFIX), project="", digest="", state=state)
        return None
    return ObservedMonitor(name=parts[2], project=parts[1], digest=parts[3], state=state)


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0][:300] if text else ""
