"""The drift monitor's behaviour (MonitorCore) with real alibi-detect detectors, no Ray.

Rows reach the monitor as a tap sends them: (arm, scoring request body, prediction
payload or None). Alerts go to a real HTTP server on 127.0.0.1 and verdicts to a real
MLflow tracking store in SQLite.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runtime import drift_monitor
from runtime.drift_engine import DetectorSpec, build_detector
from runtime.drift_monitor import (
    MonitorCore,
    monitor_actor_name,
    monitor_repr,
    prediction_rows,
    request_rows,
    table_rows,
)

FEATURES = ["a", "b", "c"]
STABLE, CANDIDATE = "stable/3", "candidate/4"


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((2000, len(FEATURES)))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Metrics:
    """Records what the actor would hand to Prometheus."""

    def __init__(self) -> None:
        self.rows_seen: dict[str, int] = {}
        self.dropped_seen = 0
        self.verdicts: list[dict[str, Any]] = []

    def rows(self, arm: str, count: int) -> None:
        self.rows_seen[arm] = self.rows_seen.get(arm, 0) + count

    def dropped(self, count: int) -> None:
        self.dropped_seen += count

    def verdict(self, record: dict[str, Any]) -> None:
        self.verdicts.append(record)


def monitor_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "iris-drift", "deployment": "iris", "digest": "abc123",
        "detector": {"kind": "ks", "p_val": 0.05, "parameters": {}, "categorical": []},
        "features": FEATURES, "target": "inputs", "window_rows": 100, "window_seconds": None,
        "cooldown_s": 1800.0, "actions": [], "mlflow": {"tracking_uri": None, "run_id": None}, "history_limit": 1000,
    }
    config.update(overrides)
    return config


def split_body(rows: np.ndarray, columns: list[str] = FEATURES) -> bytes:
    return json.dumps({"dataframe_split": {"columns": columns, "data": rows.tolist()}}).encode()


def requests(arm: str, rows: np.ndarray, per_request: int = 10) -> list[tuple[str, bytes, bytes | None]]:
    return [(arm, split_body(rows[i:i + per_request]), None) for i in range(0, len(rows), per_request)]


def run(core_factory: Callable[[], MonitorCore], scenario: Callable[[MonitorCore], Any]) -> MonitorCore:
    """Build the monitor and play a scenario on one event loop, then wait for its work."""

    async def main() -> MonitorCore:
        core = core_factory()
        result = scenario(core)
        if asyncio.iscoroutine(result):
            await result
        await core.settle()
        return core

    return asyncio.run(main())


def normal(seed: int, rows: int, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, len(FEATURES))) + shift


# -- windows -------------------------------------------------------------------------------


def test_windows_take_exactly_window_rows_and_carry_the_rest_over(reference: np.ndarray) -> None:
    metrics = Metrics()

    def scenario(core: MonitorCore) -> None:
        core.offer(requests(STABLE, normal(2, 250), per_request=30))
        core.offer(requests(CANDIDATE, normal(3, 40)), dropped=7)

    core = run(lambda: MonitorCore(monitor_config(), reference, metrics=metrics), scenario)
    history = core.history()
    assert [(v["seq"], v["arm"], v["rows"]) for v in history["verdicts"]] == [(1, STABLE, 100), (2, STABLE, 100)]
    counters = history["counters"]
    assert counters["buffered"] == {STABLE: 50, CANDIDATE: 40}
    assert (counters["rows"], counters["windows"], counters["dropped"], counters["unparsed"]) == (290, 2, 7, 0)
    assert metrics.rows_seen == {STABLE: 250, CANDIDATE: 40} and metrics.dropped_seen == 7
    assert [v["seq"] for v in metrics.verdicts] == [1, 2]

    def more(core: MonitorCore) -> None:
        core.offer(requests(STABLE, normal(4, 60)))

    asyncio.run(_continue(core, more))  # the same monitor, a later batch
    history = core.history(since=2)
    assert [(v["seq"], v["rows"]) for v in history["verdicts"]] == [(3, 100)]
    assert history["counters"]["buffered"][STABLE] == 10


async def _continue(core: MonitorCore, scenario: Callable[[MonitorCore], None]) -> None:
    scenario(core)
    await core.settle()


def test_verdicts_equal_the_engine_on_the_same_rows(reference: np.ndarray) -> None:
    rows = normal(5, 100, shift=0.2)
    core = run(lambda: MonitorCore(monitor_config(), reference), lambda core: core.offer(requests(STABLE, rows)))
    verdict = core.history()["verdicts"][0]
    direct = build_detector(DetectorSpec("ks", p_val=0.05, feature_names=tuple(FEATURES)), reference).check(rows)
    assert verdict["p_value"] == direct.p_value and verdict["statistic"] == direct.statistic
    assert verdict["feature_p_values"] == direct.feature_p_values
    assert verdict["feature_statistics"] == direct.feature_statistics
    assert verdict["is_drift"] == direct.is_drift and verdict["threshold"] == 0.05
    assert set(verdict) == {"seq", "time", "arm", "is_drift", "statistic", "threshold", "p_value", "feature_p_values",
                            "feature_statistics", "rows", "seconds", "distance_threshold"}


def test_rows_handed_over_whole_are_one_window_whatever_the_window_size(reference: np.ndarray) -> None:
    rows = normal(6, 1234, shift=0.5)
    rows[3, 1] = np.nan  # a missing value is left out and counted, as in requests
    core = run(lambda: MonitorCore(monitor_config(), reference), lambda core: core.check_rows(STABLE, rows))
    history = core.history()
    assert [(v["arm"], v["rows"], v["is_drift"]) for v in history["verdicts"]] == [(STABLE, 1233, True)]
    assert (history["counters"]["rows"], history["counters"]["unparsed"]) == (1233, 1)


def test_time_windows_wait_for_their_span_and_ten_rows(reference: np.ndarray) -> None:
    clock = Clock()

    def scenario(core: MonitorCore) -> None:
        core.offer(requests(STABLE, normal(6, 5)))
        clock.now += 61
        core.tick()  # due, but 5 rows are too few to test
        assert core.history()["counters"]["buffered"] == {STABLE: 5}
        core.offer(requests(STABLE, normal(7, 10)))
        clock.now += 1
        core.tick()

    config = monitor_config(window_rows=None, window_seconds=60.0)
    core = run(lambda: MonitorCore(config, reference, clock=clock), scenario)
    history = core.history()
    assert [v["rows"] for v in history["verdicts"]] == [15]
    assert history["counters"]["buffered"] == {STABLE: 0}
    assert history["describe"]["window"] == {"seconds": 60.0}

    def quiet(core: MonitorCore) -> None:
        core.offer(requests(STABLE, normal(8, 20)))
        clock.now += 30
        core.tick()  # only half the span since the first of these rows

    asyncio.run(_continue(core, quiet))
    assert len(core.history()["verdicts"]) == 1


def test_a_window_the_detector_refuses_is_counted_and_the_monitor_goes_on(reference: np.ndarray,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def scenario(core: MonitorCore) -> None:
        calls = []

        def check(rows: np.ndarray) -> Any:
            calls.append(rows)
            if len(calls) == 1:
                raise ValueError("window: refused")
            return build_detector(DetectorSpec("ks", feature_names=tuple(FEATURES)), reference).check(rows)

        monkeypatch.setattr(core.engine, "check", check)
        core.offer(requests(STABLE, normal(9, 200)))

    core = run(lambda: MonitorCore(monitor_config(), reference), scenario)
    history = core.history()
    assert history["counters"]["errors"] == 1 and history["counters"]["last_error"] == "ValueError: window: refused"
    assert [v["seq"] for v in history["verdicts"]] == [1]


def test_windows_beyond_the_backlog_are_skipped(reference: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drift_monitor, "MAX_PENDING_WINDOWS", 2)
    core = run(lambda: MonitorCore(monitor_config(), reference),
               lambda core: core.offer(requests(STABLE, normal(10, 500))))  # 5 windows in one call
    counters = core.history()["counters"]
    assert counters["windows"] == 2 and counters["skipped_windows"] == 3


# -- reading rows ----------------------------------------------------------------------------


def test_requests_are_read_by_feature_name_or_by_position() -> None:
    rows = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    reordered = {"dataframe_split": {"columns": ["c", "extra", "a", "b"], "data": [[3.0, 9, 1.0, 2.0],
                                                                                    [6.0, 9, 4.0, 5.0]]}}
    records = {"dataframe_records": [{"a": 1.0, "b": 2.0, "c": 3.0, "extra": "x"}, {"c": 6.0, "b": 5.0, "a": 4.0}]}
    forms = [reordered, records, {"dataframe_split": {"data": rows}}, {"instances": rows}, {"inputs": rows},
             {"inputs": {"a": [1.0, 4.0], "b": [2.0, 5.0], "c": [3.0, 6.0]}},
             {"instances": [{"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 4.0, "b": 5.0, "c": 6.0}]}]
    for form in forms:
        assert request_rows(json.dumps(form).encode(), FEATURES) == (rows, 0), form


def test_predictions_are_read_as_columns_by_name_or_position() -> None:
    assert prediction_rows(b'{"predictions": [0, 1, 2]}', ["label"]) == ([[0], [1], [2]], 0)
    assert prediction_rows(b'{"predictions": [[0.1, 0.9], [0.8, 0.2]]}', ["p0", "p1"]) == ([[0.1, 0.9], [0.8, 0.2]], 0)
    records = b'{"predictions": [{"p1": 0.9, "p0": 0.1}]}'
    assert prediction_rows(records, ["p0", "p1"]) == ([[0.1, 0.9]], 0)
    assert prediction_rows(records, ["x", "y"]) == ([[0.9, 0.1]], 0)  # unknown names: by position
    assert prediction_rows(b'{"predictions": {"p0": [0.1, 0.2], "p1": [0.9, 0.8]}}', ["p0", "p1"]) == (
        [[0.1, 0.9], [0.2, 0.8]], 0)
    assert prediction_rows(b'{"predictions": [1, 2]}', ["p0", "p1"]) == ([], 2)
    assert prediction_rows(b"not json", ["label"]) == ([], 1)
    assert prediction_rows(b'{"other": 1}', ["label"]) == ([], 1)


def test_named_inputs_lacking_a_feature_are_not_read_by_position() -> None:
    assert table_rows([{"a": 1, "b": 2, "d": 3}], FEATURES, by_position=False) == ([], 1)
    split = {"dataframe_split": {"columns": ["a", "b", "d"], "data": [[1, 2, 3], [4, 5, 6]]}}
    assert request_rows(json.dumps(split).encode(), FEATURES) == ([], 2)


def test_unreadable_rows_are_counted_and_skipped(reference: np.ndarray) -> None:
    bad = [
        (STABLE, b"{not json", None),  # 1
        (STABLE, b'{"columns": []}', None),  # 1: not a scoring request
        (STABLE, json.dumps({"dataframe_records": [{"a": 1, "b": 2}, {"a": 1, "b": 2, "c": 3}]}).encode(), None),  # 1
        (STABLE, json.dumps({"instances": [[1, 2], [1, 2, 3], [1, "high", 3]]}).encode(), None),  # 2
        (STABLE, json.dumps({"instances": [[1, None, 3], [1, float("nan"), 3], [1, 2, 3]]}).encode(), None),  # 2
    ]
    core = run(lambda: MonitorCore(monitor_config(), reference), lambda core: core.offer(bad))
    counters = core.history()["counters"]
    assert counters["unparsed"] == 7 and counters["rows"] == 3 and counters["buffered"] == {STABLE: 3}


def test_a_predictions_monitor_reads_the_payload(reference: np.ndarray) -> None:
    config = monitor_config(target="predictions", features=["label"])
    one_column = reference[:, :1]
    batch = [(STABLE, b"ignored", b'{"predictions": [0.5, -0.5]}'), (STABLE, b"ignored", None),
             (STABLE, b"ignored", b'{"predictions": [{"label": 1.5}]}')]
    core = run(lambda: MonitorCore(config, one_column), lambda core: core.offer(batch))
    history = core.history()
    assert history["counters"]["buffered"] == {STABLE: 3} and history["counters"]["unparsed"] == 1
    assert history["describe"]["target"] == "predictions"


# -- actions -----------------------------------------------------------------------------------


ACTIONS = [{"type": "rollback"}, {"type": "run", "deployment": "rescore"}]


def test_a_drifting_stream_requests_each_action_once_then_holds_it_for_the_cooldown(reference: np.ndarray) -> None:
    clock = Clock()
    config = monitor_config(actions=ACTIONS)

    async def scenario(core: MonitorCore) -> None:
        for seed in range(3):
            core.offer(requests(STABLE, normal(20 + seed, 100, shift=1.0)))
            await core.settle()
            clock.now += 60

    core = run(lambda: MonitorCore(config, reference, clock=clock), scenario)
    history = core.history()
    assert [v["is_drift"] for v in history["verdicts"]] == [True, True, True]
    assert all(v["p_value"] < 1e-6 for v in history["verdicts"])
    outcomes = [(a["verdict_seq"], a["type"], a["outcome"]) for a in history["actions"]]
    assert outcomes == [(1, "rollback", "requested"), (1, "run", "requested"), (2, "rollback", "held"),
                        (2, "run", "held"), (3, "rollback", "held"), (3, "run", "held")]
    assert history["actions"][2]["message"] == "cooldown: next in 1740 s"
    pending = core.pending_actions()
    assert pending == [{"id": 1, "type": "rollback", "verdict_seq": 1, "time": history["actions"][0]["time"]},
                       {"id": 2, "type": "run", "deployment": "rescore", "verdict_seq": 1,
                        "time": history["actions"][1]["time"]}]

    assert core.ack_action(1, "done", "rolled back to revision 2")
    assert not core.ack_action(1, "done") and not core.ack_action(99, "done")
    assert [p["id"] for p in core.pending_actions()] == [2]
    assert core.history()["actions"][0] | {"time": 0} == {"seq": 1, "time": 0, "verdict_seq": 1, "type": "rollback",
                                                         "outcome": "done", "message": "rolled back to revision 2",
                                                         "attempts": 0}

    def after_cooldown(core: MonitorCore) -> None:
        clock.now += 1800
        core.offer(requests(STABLE, normal(30, 100, shift=1.0)))

    asyncio.run(_continue(core, after_cooldown))
    assert [(a["verdict_seq"], a["outcome"]) for a in core.history()["actions"][6:]] == [(4, "requested"),
                                                                                       (4, "requested")]


def test_candidate_windows_never_fire_actions(reference: np.ndarray) -> None:
    config = monitor_config(actions=ACTIONS)
    core = run(lambda: MonitorCore(config, reference),
               lambda core: core.offer(requests(CANDIDATE, normal(40, 200, shift=1.0))))
    history = core.history()
    assert [(v["arm"], v["is_drift"]) for v in history["verdicts"]] == [(CANDIDATE, True), (CANDIDATE, True)]
    assert history["actions"] == [] and core.pending_actions() == []


def test_windows_without_drift_fire_nothing(reference: np.ndarray) -> None:
    config = monitor_config(actions=ACTIONS, window_rows=500)
    core = run(lambda: MonitorCore(config, reference), lambda core: core.offer(requests(STABLE, normal(41, 500))))
    assert [v["is_drift"] for v in core.history()["verdicts"]] == [False]
    assert core.history()["actions"] == []


class Webhook:
    """A real HTTP server on 127.0.0.1 answering with the given statuses, then 200."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {name.lower(): value for name, value in self.headers.items()}
                hook.received.append((headers, json.loads(body)))
                status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/drift"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Callable[[list[int]], Webhook]]:
    started: list[Webhook] = []

    def start(statuses: list[int]) -> Webhook:
        started.append(Webhook(statuses))
        return started[-1]

    yield start
    for hook in started:
        hook.close()


@pytest.fixture
def short_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drift_monitor, "ALERT_BACKOFF_S", 0.01)


def alert_once(reference: np.ndarray, url: str) -> dict[str, Any]:
    config = monitor_config(actions=[{"type": "alert", "url": url, "headers": {"authorization": "Bearer t0k"}}])
    core = run(lambda: MonitorCore(config, reference),
               lambda core: core.offer(requests(STABLE, normal(50, 100, shift=1.0))))
    [action] = core.history()["actions"]
    return action


def test_an_alert_is_posted_and_retried_after_a_server_error(reference: np.ndarray, short_backoff: None,
                                                             webhook: Callable[[list[int]], Webhook]) -> None:
    hook = webhook([500])
    action = alert_once(reference, hook.url)
    assert (action["type"], action["outcome"], action["message"], action["attempts"]) == ("alert", "sent", "HTTP 200", 2)
    assert len(hook.received) == 2
    headers, body = hook.received[-1]
    assert headers["authorization"] == "Bearer t0k" and headers["content-type"] == "application/json"
    assert (body["monitor"], body["deployment"], body["arm"]) == ("iris-drift", "iris", STABLE)
    assert body["verdict"]["seq"] == 1 and body["verdict"]["is_drift"] is True and body["time"] == action["time"]


def test_an_alert_fails_after_its_attempts(reference: np.ndarray, short_backoff: None,
                                           webhook: Callable[[list[int]], Webhook]) -> None:
    hook = webhook([503] * 10)
    action = alert_once(reference, hook.url)
    assert (action["outcome"], action["message"], action["attempts"]) == ("failed", "HTTP 503", drift_monitor.ALERT_ATTEMPTS)
    assert len(hook.received) == drift_monitor.ALERT_ATTEMPTS


def test_an_alert_refused_by_the_receiver_is_not_retried(reference: np.ndarray, short_backoff: None,
                                                         webhook: Callable[[list[int]], Webhook]) -> None:
    hook = webhook([401])
    action = alert_once(reference, hook.url)
    assert (action["outcome"], action["message"], action["attempts"]) == ("failed", "HTTP 401", 1)


def test_an_alert_to_a_closed_port_fails_with_the_connection_error(reference: np.ndarray, short_backoff: None,
                                                                    webhook: Callable[[list[int]], Webhook]) -> None:
    hook = webhook([])
    url = hook.url
    hook.close()
    action = alert_once(reference, url)
    assert action["outcome"] == "failed" and action["message"].startswith("ConnectError")
    assert action["attempts"] == drift_monitor.ALERT_ATTEMPTS


# -- MLflow ------------------------------------------------------------------------------------


def test_verdicts_are_logged_to_the_mlflow_run(reference: np.ndarray, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("drift", artifact_location=str(tmp_path / "art"))).info.run_id
    config = monitor_config(mlflow={"tracking_uri": uri, "run_id": run_id})

    def scenario(core: MonitorCore) -> None:
        core.offer(requests(STABLE, normal(60, 200)))
        core.offer(requests(CANDIDATE, normal(61, 100, shift=1.0)))

    core = run(lambda: MonitorCore(config, reference), scenario)
    verdicts = core.history()["verdicts"]
    stable = [(m.step, m.value) for m in client.get_metric_history(run_id, "p_value")]
    assert sorted(stable) == [(v["seq"], v["p_value"]) for v in verdicts if v["arm"] == STABLE]
    [candidate] = client.get_metric_history(run_id, "candidate.is_drift")
    assert (candidate.step, candidate.value) == (3, 1.0)
    keys = set(client.get_run(run_id).data.metrics)
    assert {"statistic", "rows", "p_value.a", "candidate.p_value.c"} <= keys
    assert core.history()["counters"]["mlflow_errors"] == 0


def test_mlflow_failures_are_counted_and_never_raise(reference: np.ndarray, tmp_path: Path) -> None:
    config = monitor_config(mlflow={"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "run_id": "no-such-run"})
    core = run(lambda: MonitorCore(config, reference), lambda core: core.offer(requests(STABLE, normal(62, 200))))
    counters = core.history()["counters"]
    assert counters["windows"] == 2 and counters["mlflow_errors"] == 2


# -- online detectors and the rest -------------------------------------------------------------


def test_online_detectors_keep_one_stream_per_arm(reference: np.ndarray) -> None:
    detector = {"kind": "cvm-online", "parameters": {"ert": 100, "window_sizes": [10], "n_bootstraps": 2000}}
    config = monitor_config(detector=detector, window_rows=50)
    np.random.seed(0)  # alibi-detect simulates the thresholds with numpy's global generator

    def scenario(core: MonitorCore) -> None:
        core.offer(requests(STABLE, normal(70, 100)))
        core.offer(requests(CANDIDATE, normal(71, 50, shift=2.0)))

    core = run(lambda: MonitorCore(config, reference[:300]), scenario)
    verdicts = core.history()["verdicts"]
    assert [(v["arm"], v["rows"]) for v in verdicts] == [(STABLE, 50), (STABLE, 50), (CANDIDATE, 50)]
    assert verdicts[2]["is_drift"] and verdicts[2]["p_value"] is None
    assert verdicts[2]["statistic"] is not None and verdicts[2]["threshold"] is not None
    assert core.engines[STABLE]._detector.t == 100 and core.engines[CANDIDATE]._detector.t == 50
    assert core.engine._detector.t == 0  # the template stays untouched
    assert "p_val" not in core.history()["describe"]


def test_history_describes_the_monitor_and_filters_by_sequence(reference: np.ndarray) -> None:
    core = run(lambda: MonitorCore(monitor_config(), reference),
               lambda core: core.offer(requests(STABLE, normal(80, 300))))
    history = core.history(since=1)
    assert [v["seq"] for v in history["verdicts"]] == [2, 3]
    described = history["describe"]
    assert (described["name"], described["deployment"], described["digest"]) == ("iris-drift", "iris", "abc123")
    assert described["kind"] == "ks" and described["features"] == FEATURES and described["window"] == {"rows": 100}
    assert described["target"] == "inputs" and described["reference_rows"] == 2000
    assert described["started_at"] > 0 and len(history["incarnation"]) == 32
    assert monitor_actor_name("iris-drift") == "drift-monitor:iris-drift"


def test_the_actor_repr_names_the_monitor_and_its_config_digest() -> None:
    assert monitor_repr(monitor_config()) == "DriftMonitor:iris-drift:abc123"
    assert monitor_repr(monitor_config(project="demo")) == "DriftMonitor:demo:iris-drift:abc123"


def test_a_config_must_set_exactly_one_window(reference: np.ndarray) -> None:
    with pytest.raises(ValueError, match="exactly one of window_rows or window_seconds"):
        MonitorCore(monitor_config(window_seconds=60.0), reference)
