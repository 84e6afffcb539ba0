"""The drift monitor: one detached Ray actor per Monitor, fed by the taps of an ingress.

``MonitorCore`` holds all of the behaviour and no Ray, so it can be tested directly:

- ``offer`` reads the sampled requests (or their predictions) into rows of the monitor's
  features, per arm (``stable/3``, ``candidate/4``), and cuts windows of ``window_rows``
  rows; ``tick`` cuts time windows (``window_seconds``) once they hold enough rows;
- windows are tested one after another in a background lane, the detector in a worker
  thread, so the actor keeps taking rows while a window is tested;
- every window leaves a verdict record (kept, logged to MLflow, handed to the metrics
  sink); a drifted window of a non-candidate arm fires the ``on_drift`` actions, each with
  its own cooldown. Candidate windows only feed the rollout's drift gate. Alerts are
  posted from here; a rollback or a batch run is the control plane's to do, so it waits
  in ``pending_actions`` until acknowledged.

``DriftMonitor`` is the thin actor around it (Prometheus metrics, the time-window ticker).
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import numpy as np
import ray

from runtime.drift_engine import TORCH_KINDS, DetectorSpec, DriftEngine, Verdict, build_detector
from runtime.drift_tap import TapItem
from runtime.scoring import BadRequest, decode_request
from runtime.stats import NAMESPACE

__all__ = ["NAMESPACE", "DriftMonitor", "MonitorCore", "MonitorMetrics", "monitor_actor_name", "monitor_repr"]

TICK_S = 1.0
MIN_TIME_WINDOW_ROWS = 10
# Windows waiting for the detector; past this a new window is skipped (counted), so a
# detector slower than the traffic costs coverage, not memory.
MAX_PENDING_WINDOWS = 16
MAX_BUFFERED_ROWS = 1_000_000
MAX_PENDING_LOGS = 1000
ALERT_ATTEMPTS = 4
ALERT_BACKOFF_S = 0.5
ALERT_TIMEOUT_S = 5.0
_METRIC_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. /]")


def monitor_actor_name(name: str) -> str:
    return f"drift-monitor:{name}"


def monitor_repr(config: dict[str, Any]) -> str:
    """What Ray's State API shows as the actor's ``repr_name``: the control plane reads
    which monitor (of which project, when the config names one) and which config digest a
    live actor runs from it."""
    owner = f"{config['project']}:" if config.get("project") else ""
    return f"DriftMonitor:{owner}{config['name']}:{config['digest']}"


class MonitorMetrics(Protocol):
    """Where the monitor reports rows, drops and verdicts (Prometheus in the actor)."""

    def rows(self, arm: str, count: int) -> None: ...

    def dropped(self, count: int) -> None: ...

    def verdict(self, record: dict[str, Any]) -> None: ...


class _NoMetrics:
    def rows(self, arm: str, count: int) -> None:
        pass

    def dropped(self, count: int) -> None:
        pass

    def verdict(self, record: dict[str, Any]) -> None:
        pass


class _Lane:
    """Runs queued jobs one at a time, in order, in a background task."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.jobs: deque[Callable[[], Awaitable[None]]] = deque()
        self.task: asyncio.Task[None] | None = None

    def put(self, job: Callable[[], Awaitable[None]]) -> bool:
        if len(self.jobs) >= self.limit:
            return False
        self.jobs.append(job)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())
        return True

    async def _run(self) -> None:
        while self.jobs:
            await self.jobs.popleft()()

    async def idle(self) -> None:
        while self.task is not None and not self.task.done():
            await asyncio.wait({self.task})


class _ArmBuffer:
    """Rows of one arm waiting for their window, kept as the arrays they arrived in."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []
        self.rows = 0
        self.started: float | None = None

    def add(self, rows: np.ndarray, now: float) -> None:
        if self.rows == 0:
            self.started = now
        self.chunks.append(rows)
        self.rows += rows.shape[0]

    def take(self, count: int, now: float) -> np.ndarray:
        joined = np.concatenate(self.chunks) if len(self.chunks) > 1 else self.chunks[0]
        window, rest = joined[:count], joined[count:]
        self.chunks = [rest] if rest.shape[0] else []
        self.rows = rest.shape[0]
        # Rows carried over open the next window now: it spans their wait too.
        self.started = now if self.rows else None
        return window


class MonitorCore:
    """A monitor's state and behaviour, without Ray; see the module docstring.

    ``offer`` and ``tick`` must be called from a running event loop: they queue work on it
    and return without waiting for detectors, MLflow or webhooks.
    """

    def __init__(self, config: dict[str, Any], reference: Any, metrics: MonitorMetrics | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if (config.get("window_rows") is None) == (config.get("window_seconds") is None):
            raise ValueError("window: set exactly one of window_rows or window_seconds")
        self.config = config
        self.name: str = config["name"]
        self.deployment: str = config["deployment"]
        self.features: tuple[str, ...] = tuple(config["features"])
        self.predictions = config.get("target") == "predictions"
        self.window_rows: int | None = config.get("window_rows")
        self.window_seconds: float | None = config.get("window_seconds")
        self.cooldown_s = float(config.get("cooldown_s") or 0.0)
        self.actions: list[dict[str, Any]] = list(config.get("actions") or [])
        self.metrics: MonitorMetrics = metrics or _NoMetrics()
        self.clock = clock
        # Verdict and action numbers start again at 1 when the actor restarts; readers
        # tell the runs apart by this.
        self.incarnation = uuid.uuid4().hex
        self.started_at = clock()
        detector = config["detector"]
        spec = DetectorSpec(detector["kind"], p_val=detector.get("p_val", 0.05),
                            parameters=detector.get("parameters") or {}, feature_names=self.features,
                            categorical=tuple(detector.get("categorical") or ()))
        reference = np.asarray(reference)
        self.engine: DriftEngine = build_detector(spec, reference)
        # Online detectors keep a stream per arm; each arm gets a copy of this untouched
        # engine, so the thresholds are simulated once.
        self.engines: dict[str, DriftEngine] = {}
        self.dtype = np.float64 if np.issubdtype(reference.dtype, np.number) else object
        self.buffers: dict[str, _ArmBuffer] = {}
        limit = int(config.get("history_limit") or 1000)
        self.verdicts: deque[dict[str, Any]] = deque(maxlen=limit)
        self.action_records: deque[dict[str, Any]] = deque(maxlen=limit)
        self.pending: dict[int, dict[str, Any]] = {}
        self.last_fired: dict[int, float] = {}
        self.verdict_seq = 0
        self.action_seq = 0
        self.counters = {"rows": 0, "windows": 0, "drifted": 0, "unparsed": 0, "dropped": 0, "skipped_windows": 0,
                         "errors": 0, "mlflow_errors": 0, "alerts_failed": 0}
        self.last_error: str | None = None
        self.windows = _Lane(MAX_PENDING_WINDOWS)
        self.logs = _Lane(MAX_PENDING_LOGS)
        self.alerts: set[asyncio.Task[None]] = set()
        mlflow = config.get("mlflow") or {}
        self.mlflow_run: str | None = mlflow.get("run_id")
        self.mlflow_uri: str | None = mlflow.get("tracking_uri")
        self._mlflow_client: Any = None

    # -- rows in ------------------------------------------------------------------------

    def offer(self, batch: Sequence[TapItem], dropped: int = 0) -> None:
        """Take a batch from a tap: rows per arm, and how many the tap had to drop."""
        if dropped:
            self.counters["dropped"] += dropped
            self.metrics.dropped(dropped)
        by_arm: dict[str, list[list[Any]]] = {}
        for arm, body, payload in batch:
            rows, unparsed = self._read(body, payload)
            self.counters["unparsed"] += unparsed
            if rows:
                by_arm.setdefault(arm, []).extend(rows)
        now = self.clock()
        for arm, rows in by_arm.items():
            array, unparsed = to_array(rows, self.dtype)
            self.counters["unparsed"] += unparsed
            if array.shape[0]:
                self._buffer(arm, array, now)

    def check_rows(self, arm: str, rows: Any) -> int:
        """Test rows handed over whole (a batch deployment's published output) as one window of
        their own, whatever the window size; returns the rows tested."""
        array, unparsed = to_array(np.asarray(rows).tolist(), self.dtype) if len(rows) else (np.empty((0, 0)), 0)
        self.counters["unparsed"] += unparsed
        if not array.shape[0]:
            return 0
        self.counters["rows"] += array.shape[0]
        self.metrics.rows(arm, array.shape[0])
        self._queue_window(arm, array)
        return int(array.shape[0])

    def _read(self, body: bytes, payload: bytes | None) -> tuple[list[list[Any]], int]:
        if self.predictions:
            if payload is None:
                return [], 1
            return prediction_rows(payload, self.features)
        return request_rows(body, self.features)

    def _buffer(self, arm: str, rows: np.ndarray, now: float) -> None:
        buffer = self.buffers.get(arm)
        if buffer is None:
            buffer = self.buffers[arm] = _ArmBuffer()
        room = MAX_BUFFERED_ROWS - buffer.rows
        if rows.shape[0] > room:
            self.counters["dropped"] += rows.shape[0] - room
            self.metrics.dropped(rows.shape[0] - room)
            rows = rows[:room]
        if not rows.shape[0]:
            return
        buffer.add(rows, now)
        self.counters["rows"] += rows.shape[0]
        self.metrics.rows(arm, rows.shape[0])
        if self.window_rows is not None:
            while buffer.rows >= self.window_rows:
                self._queue_window(arm, buffer.take(self.window_rows, now))

    def tick(self) -> None:
        """Cut the time windows that are due (called every ``TICK_S`` by the actor)."""
        if self.window_seconds is None:
            return
        now = self.clock()
        for arm, buffer in self.buffers.items():
            due = buffer.started is not None and now - buffer.started >= self.window_seconds
            if due and buffer.rows >= MIN_TIME_WINDOW_ROWS:
                self._queue_window(arm, buffer.take(buffer.rows, now))

    def _queue_window(self, arm: str, rows: np.ndarray) -> None:
        if not self.windows.put(lambda: self._test_window(arm, rows)):
            self.counters["skipped_windows"] += 1

    # -- windows ------------------------------------------------------------------------

    async def _test_window(self, arm: str, rows: np.ndarray) -> None:
        try:
            result = await asyncio.to_thread(self._run_detector, arm, rows)
        except Exception as exc:  # a window the detector refuses must not stop the monitor
            self.counters["errors"] += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return
        self.verdict_seq += 1
        record = {"seq": self.verdict_seq, "time": self.clock(), "arm": arm, **result}
        self.verdicts.append(record)
        self.counters["windows"] += 1
        self.counters["drifted"] += record["is_drift"]
        self.metrics.verdict(record)
        if self.mlflow_run and not self.logs.put(lambda: self._log_verdict(record)):
            self.counters["mlflow_errors"] += 1
        if record["is_drift"] and arm.split("/", 1)[0] != "candidate":
            self._fire_actions(record)

    def _run_detector(self, arm: str, rows: np.ndarray) -> dict[str, Any]:
        if not self.engine.online:
            return _verdict_fields(self.engine.check(rows))
        engine = self.engines.get(arm)
        if engine is None:
            engine = self.engines[arm] = copy.deepcopy(self.engine)
        steps = engine.update(rows)
        last = steps[-1]
        fields = _verdict_fields(last)
        fields.update(is_drift=any(step.is_drift for step in steps), rows=len(steps),
                      seconds=sum(step.seconds for step in steps))
        return fields

    # -- actions ------------------------------------------------------------------------

    def _fire_actions(self, verdict: dict[str, Any]) -> None:
        now = self.clock()
        for index, action in enumerate(self.actions):
            record = self._action_record(verdict, action["type"], now)
            last = self.last_fired.get(index)
            if last is not None and now - last < self.cooldown_s:
                record.update(outcome="held", message=f"cooldown: next in {self.cooldown_s - (now - last):.0f} s")
                continue
            self.last_fired[index] = now
            if action["type"] == "alert":
                record.update(outcome="sending", message=action["url"])
                task = asyncio.get_running_loop().create_task(self._alert(action, verdict, record))
                self.alerts.add(task)
                task.add_done_callback(self.alerts.discard)
                continue
            record.update(outcome="requested", message="waiting for the control plane")
            pending = {"id": record["seq"], "type": action["type"], "verdict_seq": verdict["seq"], "time": now}
            if action["type"] == "run":
                pending["deployment"] = action["deployment"]
            self.pending[record["seq"]] = pending

    def _action_record(self, verdict: dict[str, Any], kind: str, now: float) -> dict[str, Any]:
        self.action_seq += 1
        record = {"seq": self.action_seq, "time": now, "verdict_seq": verdict["seq"], "type": kind,
                  "outcome": "", "message": "", "attempts": 0}
        self.action_records.append(record)
        return record

    async def _alert(self, action: dict[str, Any], verdict: dict[str, Any], record: dict[str, Any]) -> None:
        import httpx

        body = {"monitor": self.name, "deployment": self.deployment, "arm": verdict["arm"], "verdict": verdict,
                "time": record["time"]}
        error = ""
        try:
            async with httpx.AsyncClient(timeout=ALERT_TIMEOUT_S) as client:
                for attempt in range(1, ALERT_ATTEMPTS + 1):
                    record["attempts"] = attempt
                    try:
                        response = await client.post(action["url"], json=body, headers=action.get("headers") or {})
                    except httpx.TransportError as exc:  # refused, reset, timed out: worth another try
                        error = f"{type(exc).__name__}: {exc}"
                    else:
                        status = response.status_code
                        if 200 <= status < 300:
                            record.update(outcome="sent", message=f"HTTP {status}")
                            return
                        error = f"HTTP {status}"
                        if status < 500 and status != 429:  # the receiver refuses this alert: retrying will not help
                            break
                    if attempt < ALERT_ATTEMPTS:
                        await asyncio.sleep(ALERT_BACKOFF_S * 2 ** (attempt - 1))
        except Exception as exc:  # a malformed URL or header: the alert fails, the monitor goes on
            error = f"{type(exc).__name__}: {exc}"
        self.counters["alerts_failed"] += 1
        record.update(outcome="failed", message=error)

    def pending_actions(self) -> list[dict[str, Any]]:
        """Rollbacks and batch runs the control plane has yet to carry out, oldest first."""
        return [dict(item) for item in self.pending.values()]

    def ack_action(self, id: int, outcome: str, message: str = "") -> bool:
        """The control plane reports what became of a requested action; False if unknown."""
        if self.pending.pop(id, None) is None:
            return False
        for record in self.action_records:
            if record["seq"] == id:
                record.update(outcome=outcome, message=message)
        return True

    # -- MLflow -------------------------------------------------------------------------

    async def _log_verdict(self, record: dict[str, Any]) -> None:
        try:
            await asyncio.to_thread(self._write_mlflow, record)
        except Exception as exc:  # the tracking server is down or refuses a key: verdicts are still kept here
            self.counters["mlflow_errors"] += 1
            self.last_error = f"mlflow: {type(exc).__name__}: {exc}"

    def _write_mlflow(self, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        if self._mlflow_client is None:
            self._mlflow_client = MlflowClient(self.mlflow_uri)
        role = record["arm"].split("/", 1)[0]
        prefix = "" if role == "stable" else f"{role}."
        values: dict[str, float | None] = {"p_value": record["p_value"], "statistic": record["statistic"],
                                           "is_drift": float(record["is_drift"]), "rows": float(record["rows"])}
        for feature, p_value in record["feature_p_values"].items():
            values[f"p_value.{_METRIC_KEY_UNSAFE.sub('_', feature)}"] = p_value
        stamp = int(record["time"] * 1000)
        metrics = [Metric(prefix + key, float(value), stamp, record["seq"])
                   for key, value in values.items() if value is not None]
        self._mlflow_client.log_batch(self.mlflow_run, metrics=metrics)

    # -- reading ------------------------------------------------------------------------

    def history(self, since: int = 0) -> dict[str, Any]:
        """Verdicts after ``since``, every kept action record, the counters and the detector."""
        window = {"rows": self.window_rows} if self.window_rows is not None else {"seconds": self.window_seconds}
        counters: dict[str, Any] = dict(self.counters)
        counters["buffered"] = {arm: buffer.rows for arm, buffer in self.buffers.items()}
        counters["pending_windows"] = len(self.windows.jobs)
        counters["last_error"] = self.last_error
        return {
            "incarnation": self.incarnation,
            "verdicts": [dict(record) for record in self.verdicts if record["seq"] > since],
            "actions": [dict(record) for record in self.action_records],
            "counters": counters,
            "describe": {**self.engine.describe(), "name": self.name, "deployment": self.deployment,
                         "digest": self.config.get("digest"), "target": "predictions" if self.predictions else "inputs",
                         "window": window, "started_at": self.started_at},
        }

    async def settle(self) -> None:
        """Wait until every queued window, MLflow write and alert has finished."""
        while self.windows.jobs or self.logs.jobs or self.alerts or _busy(self.windows) or _busy(self.logs):
            await self.windows.idle()
            await self.logs.idle()
            if self.alerts:
                await asyncio.wait(set(self.alerts))


def _busy(lane: _Lane) -> bool:
    return lane.task is not None and not lane.task.done()


def _verdict_fields(verdict: Verdict) -> dict[str, Any]:
    return {"is_drift": verdict.is_drift, "statistic": verdict.statistic, "threshold": verdict.threshold,
            "p_value": verdict.p_value, "feature_p_values": dict(verdict.feature_p_values),
            "feature_statistics": dict(verdict.feature_statistics), "rows": verdict.rows,
            "seconds": verdict.seconds, "distance_threshold": verdict.distance_threshold}


# -- reading rows out of requests and predictions -------------------------------------------


def request_rows(body: bytes, features: Sequence[str]) -> tuple[list[list[Any]], int]:
    """The feature rows of an MLflow scoring request, and how many rows could not be read.

    Named forms (dataframe_split with columns, dataframe_records, records in instances or
    inputs, a dict of columns) are read by feature name; plain row lists by position.
    """
    try:
        decoded = decode_request(body)
    except BadRequest:
        return [], 1
    if "dataframe_split" in decoded:
        split = decoded["dataframe_split"]
        if not isinstance(split, dict) or not isinstance(split.get("data"), list):
            return [], 1
        data = split["data"]
        columns = split.get("columns")
        if columns is None:
            return table_rows(data, features, by_position=False)
        if not isinstance(columns, list) or any(feature not in columns for feature in features):
            return [], max(len(data), 1)
        index = [columns.index(feature) for feature in features]
        rows, bad, width = [], 0, len(columns)
        for row in data:
            if isinstance(row, list) and len(row) == width:
                rows.append([row[i] for i in index])
            else:
                bad += 1
        return rows, bad
    key = next(key for key in ("dataframe_records", "instances", "inputs") if key in decoded)
    return table_rows(decoded[key], features, by_position=False)


def prediction_rows(payload: bytes, features: Sequence[str]) -> tuple[list[list[Any]], int]:
    """The rows of a scoring answer (``{"predictions": ...}``), by name or by position."""
    try:
        decoded = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return [], 1
    if not isinstance(decoded, dict) or "predictions" not in decoded:
        return [], 1
    return table_rows(decoded["predictions"], features, by_position=True)


def table_rows(value: Any, features: Sequence[str], by_position: bool) -> tuple[list[list[Any]], int]:
    """Rows from a JSON table: a list of rows, of records or of scalars (one feature), or a
    dict of columns. Records and columns are matched by name, or by their order when
    ``by_position`` and their count is the number of features."""
    width = len(features)
    if isinstance(value, dict):
        columns = _by_name(value, features, by_position)
        if columns is None:
            return [], 1
        if all(isinstance(column, list) for column in columns):
            lengths = {len(column) for column in columns}
            if len(lengths) != 1:
                return [], max(lengths)
            return [list(row) for row in zip(*columns, strict=True)], 0
        return [columns], 0  # one record
    if not isinstance(value, list):
        return ([[value]], 0) if width == 1 else ([], 1)
    rows: list[list[Any]] = []
    bad = 0
    for item in value:
        if isinstance(item, dict):
            row = _by_name(item, features, by_position)
            if row is None:
                bad += 1
            else:
                rows.append(row)
        elif isinstance(item, list):
            if len(item) == width:
                rows.append(item)
            else:
                bad += 1
        elif width == 1:
            rows.append([item])
        else:
            bad += 1
    return rows, bad


def _by_name(mapping: dict[str, Any], features: Sequence[str], by_position: bool) -> list[Any] | None:
    try:
        return [mapping[feature] for feature in features]
    except KeyError:
        if by_position and len(mapping) == len(features):
            return list(mapping.values())
        return None


def to_array(rows: list[list[Any]], dtype: Any) -> tuple[np.ndarray, int]:
    """Rows as a 2-D array of ``dtype`` without the rows that do not convert or hold a
    missing value (the detectors refuse NaN); the second value counts those left out."""
    width = len(rows[0])
    try:
        array = np.asarray(rows, dtype=dtype)
    except (ValueError, TypeError):
        kept = []
        for row in rows:
            try:
                converted = np.asarray(row, dtype=dtype)
            except (ValueError, TypeError):
                continue
            if converted.shape == (width,):
                kept.append(converted)
        array = np.stack(kept) if kept else np.empty((0, width), dtype=dtype)
    if array.ndim != 2:
        return np.empty((0, width), dtype=dtype), len(rows)
    if dtype is object:
        complete = np.array([all(value is not None for value in row) for row in array], dtype=bool)
    else:
        complete = np.isfinite(array).all(axis=1)
    if not complete.all():
        array = array[complete]
    return array, len(rows) - array.shape[0]


# -- the Ray actor --------------------------------------------------------------------------


class _Prometheus:
    """The monitor's metrics through Ray's Prometheus exporter."""

    def __init__(self, monitor: str, deployment: str) -> None:
        from ray.util.metrics import Counter, Gauge

        keys = ("monitor", "deployment", "arm")
        self.tags = {"monitor": monitor, "deployment": deployment}
        self.p_value = Gauge("mlopsfile_drift_p_value", description="p-value of the last drift window.", tag_keys=keys)
        self.statistic = Gauge("mlopsfile_drift_statistic", description="Test statistic of the last drift window.",
                               tag_keys=keys)
        self.windows = Counter("mlopsfile_drift_windows_total", description="Drift windows tested.",
                               tag_keys=(*keys, "drifted"))
        self.rows_total = Counter("mlopsfile_drift_rows_total", description="Rows the drift monitor took in.",
                                  tag_keys=keys)
        self.dropped_total = Counter("mlopsfile_drift_dropped_rows_total",
                                     description="Sampled requests or rows dropped before a drift test.",
                                     tag_keys=("monitor", "deployment"))

    def rows(self, arm: str, count: int) -> None:
        self.rows_total.inc(count, tags={**self.tags, "arm": arm})

    def dropped(self, count: int) -> None:
        self.dropped_total.inc(count, tags=self.tags)

    def verdict(self, record: dict[str, Any]) -> None:
        tags = {**self.tags, "arm": record["arm"]}
        if record["p_value"] is not None:
            self.p_value.set(record["p_value"], tags=tags)
        if record["statistic"] is not None:
            self.statistic.set(record["statistic"], tags=tags)
        self.windows.inc(1, tags={**tags, "drifted": "true" if record["is_drift"] else "false"})


@ray.remote(num_cpus=0, max_restarts=-1)
class DriftMonitor:
    """One Monitor on Ray: ``MonitorCore`` plus Prometheus metrics and the time-window ticker."""

    def __init__(self, config: dict[str, Any], reference: Any) -> None:
        if config["detector"]["kind"] in TORCH_KINDS:
            import torch

            # The actor reserves no CPU: intra-op threads would fight the replicas for cores.
            torch.set_num_threads(1)
        self._config = config
        self.core = MonitorCore(config, reference, metrics=_Prometheus(config["name"], config["deployment"]))
        self.ticker: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return monitor_repr(self._config)

    async def offer(self, batch: list[TapItem], dropped: int = 0) -> None:
        if self.ticker is None and self.core.window_seconds is not None:
            self.ticker = asyncio.get_running_loop().create_task(self._tick_forever())
        self.core.offer(batch, dropped)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self.core.tick()

    async def check_rows(self, arm: str, rows: Any) -> int:
        return self.core.check_rows(arm, rows)

    async def history(self, since: int = 0) -> dict[str, Any]:
        return self.core.history(since)

    async def pending_actions(self) -> list[dict[str, Any]]:
        return self.core.pending_actions()

    async def ack_action(self, id: int, outcome: str, message: str = "") -> bool:
        return self.core.ack_action(id, outcome, message)

    async def config(self) -> dict[str, Any]:
        return self._config
