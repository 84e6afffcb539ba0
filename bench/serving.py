"""Served throughput and latency: mlopsfile against bare Ray Serve and plain FastAPI.

One registered scikit-learn model (the quickstart iris pipeline), one JSON payload, three
servers measured one at a time on loopback, all in this run:

  mlopsfile        Project.apply of a Deployment (1 replica, num_cpus 0.1, no batching)
  bare-serve       one plain @serve.deployment on the same Ray cluster, same replica
                   count, num_cpus and max_ongoing_requests, behind the same Serve proxy
  fastapi          FastAPI on uvicorn, one worker, same model, same payload

All servers are up at once but only one is under load at a time: points are taken in
interleaved rounds (rotating order) and every ratio is formed within a round, so load
from other work on the machine falls on all servers alike. Each figure is printed with
its ratio against the baselines measured in the same run. Extra rows, for finding where
time goes (not part of the headline ratios):

  mlopsfile+batch  the same Deployment with dynamic batching (max 32, 5 ms)
  bare-serve+rt    bare Serve scoring with mlopsfile's runtime/scoring.py helpers
  handler costs    the per-request cost of each scoring step, measured in this process

Everything runs in a temporary project directory with its own local Ray head, MLflow
store and state store; all of it is stopped and removed on exit, Ctrl-C included.

    .venv/bin/python bench/serving.py            # full run (about 5 minutes)
    .venv/bin/python bench/serving.py --quick    # short run (about 2.5 minutes)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT))  # mlopsfile and runtime, when run as a plain script

from mlopsfile.api import Project  # noqa: E402

PYTHON = sys.executable
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SAMPLE_ROW = [5.1, 3.5, 1.4, 0.2]
MAX_ONGOING_REQUESTS = 32  # the spec's default
START_TIMEOUT_S = 240.0
# Settings from the environment would point the temporary project at someone else's
# Ray cluster, MLflow or state store; the benchmark must only touch what it starts.
FOREIGN_ENV = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLOPSFILE_STATE_URL",
               "RAY_DASHBOARD_URL")


# -- results -----------------------------------------------------------------------------


@dataclass
class Point:
    server: str
    round: int
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    server_ms: float | None
    cpu_ms_per_req: dict[str, float] = field(default_factory=dict)
    machine_busy: float | None = None
    others_busy: float | None = None
    first_error: str = ""


@dataclass
class Run:
    points: list[Point] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def of(self, server: str, concurrency: int) -> list[Point]:
        return [p for p in self.points if p.server == server and p.concurrency == concurrency]

    def servers(self) -> list[str]:
        return list(dict.fromkeys(p.server for p in self.points))


def say(message: str) -> None:
    print(message, flush=True)


# -- processes ---------------------------------------------------------------------------


class Children:
    """Every process this benchmark starts, stopped by pid in reverse order on exit."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[Any]] = []

    def start(self, command: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        # A new session keeps the terminal's Ctrl-C away from the children, so they are
        # stopped in order by stop() (a bare-Serve child first deletes its application).
        process = subprocess.Popen(command, start_new_session=True, **kwargs)
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[Any], grace_s: float = 20.0) -> None:
        if process.poll() is None and process.stdin is not None:
            # Children that read stdin (bare Serve) clean up after themselves on a line.
            with contextlib.suppress(OSError, ValueError):
                process.stdin.write("done\n")
                process.stdin.flush()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(60)
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.wait(10)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if process in self.processes:
            self.processes.remove(process)

    def stop_all(self) -> None:
        # Ask every stdin-driven child to clean up first so their deletes overlap.
        for process in self.processes:
            if process.poll() is None and process.stdin is not None:
                with contextlib.suppress(OSError, ValueError):
                    process.stdin.write("done\n")
                    process.stdin.flush()
        for process in reversed(list(self.processes)):
            self.stop(process)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env | (extra or {})


def session_processes(session_id: int, app: str | None) -> dict[str, list[int]]:
    """Processes of one session (the Ray head mlopsfile started), grouped by role.

    ``replica`` holds the replicas of application ``app`` only; idle replicas of the
    other applications count as ``ray-other``. Only the head's own session is looked
    at, so another Ray instance on the same machine is never counted as ours.
    """
    groups: dict[str, list[int]] = {"replica": [], "proxy": [], "controller": [], "ray-other": []}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[3]) != session_id:
                continue
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if app is not None and f"ServeReplica:{app}:" in title:
            groups["replica"].append(int(entry.name))
        elif "ProxyActor" in title:
            groups["proxy"].append(int(entry.name))
        elif "ServeController" in title:
            groups["controller"].append(int(entry.name))
        else:
            groups["ray-other"].append(int(entry.name))
    return groups


# -- measuring ---------------------------------------------------------------------------


def payload(rows: int) -> bytes:
    return json.dumps({"dataframe_split": {"columns": FEATURES, "data": [SAMPLE_ROW] * rows}}).encode()


def check_answer(url: str, body: bytes, expected: list[Any] | None) -> list[Any]:
    """One request before measuring: the server answers 200 with the same predictions."""
    response = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=60)
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")
    predictions = response.json().get("predictions")
    if expected is not None and predictions != expected:
        raise RuntimeError(f"{url} predicted {predictions}, other servers {expected}")
    return predictions


@dataclass
class Target:
    """One server to put load on."""

    server: str
    url: str
    watch: Callable[[], dict[str, list[int]]]
    core: bool = True  # the three headline servers; variants may run fewer rounds


def measure_point(target: Target, concurrency: int, number: int, duration_s: float, warmup_s: float,
                  args: argparse.Namespace, body_file: Path) -> Point:
    command = [PYTHON, str(BENCH_DIR / "httpload.py"), "--url", target.url, "--body-file", str(body_file),
               "-c", str(concurrency), "-d", str(duration_s), "-w", str(warmup_s), "-n", str(args.max_requests)]
    for name, pids in target.watch().items():
        if pids:
            command += ["--watch", f"{name}={','.join(map(str, pids))}"]
    limit = duration_s + warmup_s + 120  # the generator stops itself; this is only a backstop
    done = subprocess.run(command, capture_output=True, text=True, timeout=limit, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout)
    measured = max(1, result["requests"])
    cpu = dict(result["cpu_s"])
    machine = cpu.pop("machine", None)
    capacity = result["seconds"] * (os.cpu_count() or 1)
    others = (machine - sum(cpu.values())) / capacity if machine is not None and capacity > 0 else None
    point = Point(
        server=target.server, round=number, concurrency=concurrency, rps=result["rps"], p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"], errors=result["errors"], requests=result["requests"], server_ms=result["server_ms"],
        cpu_ms_per_req={k: v * 1000 / measured for k, v in cpu.items()},
        machine_busy=result["machine_busy"], others_busy=max(0.0, others) if others is not None else None,
        first_error=result["first_error"],
    )
    say(f"  r{number} {target.server:<16} c={concurrency:<3} {point.rps:8.1f} req/s  p50 {point.p50_ms:7.2f} ms  "
        f"p99 {point.p99_ms:7.2f} ms  errors {point.errors}"
        + (f"  other load {point.others_busy * 100:.0f}%" if point.others_busy is not None else "")
        + (f"  ({point.first_error})" if point.first_error else ""))
    return point


# -- the servers -------------------------------------------------------------------------


DEPLOYMENT_HEAD = """\
---
apiVersion: mlopsfile/v1
kind: Deployment
metadata:
  name: {name}
spec:
  model: {model}
  target:
"""
DEPLOYMENT = DEPLOYMENT_HEAD + """\
    type: online
    route: /{name}
    replicas: 1
    resources:
      num_cpus: 0.1
    max_ongoing_requests: {max_ongoing}
"""

MODEL = """\
apiVersion: mlopsfile/v1
kind: Model
metadata:
  name: iris
spec:
  uri: models:/iris@champion
"""

BATCHING = """\
    batching:
      max_batch_size: 32
      batch_wait_timeout_s: 0.005
"""


@dataclass
class Bench:
    args: argparse.Namespace
    root: Path
    children: Children
    run: Run
    body_file: Path
    body: bytes
    http_port: int = 0
    project: Project | None = None
    applied: bool = False
    expected: list[Any] | None = None
    model_uri: str = ""
    tracking_uri: str = ""
    targets: list[Target] = field(default_factory=list)

    # -- set-up ------------------------------------------------------------------------

    def write_project(self) -> None:
        self.http_port = free_port()
        state = self.root / ".mlopsfile"
        (self.root / "specs").mkdir(parents=True, exist_ok=True)
        (self.root / "mlopsfile.yaml").write_text(textwrap.dedent(f"""\
            project: bench
            specs: specs
            ray:
              http_host: 127.0.0.1
              http_port: {self.http_port}
            mlflow:
              tracking_uri: sqlite:///{state / 'mlflow.db'}
            state:
              url: sqlite:///{state / 'state.db'}
            """))
        # Two Deployments of the same Model: one without batching (the headline figure)
        # and, with --batching, one with dynamic batching on its own route.
        text = MODEL + DEPLOYMENT.format(name="iris", model="iris", max_ongoing=self.args.max_ongoing)
        if self.args.batching:
            text += DEPLOYMENT.format(name="iris-batch", model="iris", max_ongoing=self.args.max_ongoing) + BATCHING
        (self.root / "specs" / "bench.yaml").write_text(text)

    def train(self) -> None:
        started = time.monotonic()
        done = subprocess.run([PYTHON, str(REPO_ROOT / "examples" / "quickstart" / "train.py"), "--project", str(self.root)],
                              cwd=self.root, env=clean_env(), capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"training failed: {done.stderr.strip()[-800:]}")
        say(f"  trained and registered the iris model in {time.monotonic() - started:.1f} s: {done.stdout.strip()}")

    def head_session(self) -> int | None:
        from mlopsfile.drivers.ray_cluster import LocalHead

        if self.project is None:
            return None
        record = LocalHead(self.project.settings.state_dir).record()
        return record.pid if record else None

    def ray_watch(self, app: str | None) -> Callable[[], dict[str, list[int]]]:
        def watch() -> dict[str, list[int]]:
            session = self.head_session()
            return session_processes(session, app) if session else {}
        return watch

    # -- mlopsfile -----------------------------------------------------------------------

    def open_project(self) -> None:
        """Open the project and pin the model: the baselines load exactly the planned version."""
        from mlopsfile.config import load_settings

        self.project = Project(load_settings(self.root))
        model = self.project.desired().models[0]
        self.model_uri = model.pinned_uri
        self.tracking_uri = self.project.settings.tracking_uri

    def deploy_mlopsfile(self) -> None:
        result = self.apply_project()
        if result.plan.models[0].pinned_uri != self.model_uri:
            raise RuntimeError(f"plan pinned {result.plan.models[0].pinned_uri}, the baselines load {self.model_uri}")
        url = f"http://127.0.0.1:{self.http_port}/iris/predict"
        self.expected = check_answer(url, self.body, None)
        self.targets.append(Target("mlopsfile", url, self.ray_watch("iris")))
        if self.args.batching:
            url = f"http://127.0.0.1:{self.http_port}/iris-batch/predict"
            check_answer(url, self.body, self.expected)
            self.targets.append(Target("mlopsfile+batch", url, self.ray_watch("iris-batch"), core=False))

    def apply_project(self) -> Any:
        """Plan and apply the project's specs, then check a second plan finds nothing to do."""
        assert self.project is not None
        say("mlopsfile: plan + apply (this starts the project's local Ray head)")
        started = time.monotonic()
        result = self.project.plan()
        self.applied = True  # from here on a failure still destroys what apply made
        report = self.project.apply(result.plan)
        if report.failed:
            raise RuntimeError(f"apply failed: {report.failed[0].message}")
        actions = ", ".join(f"{c.action.value} {c.name}" for c in result.plan.changes) or "nothing"
        say(f"  applied ({actions}) in {time.monotonic() - started:.1f} s")
        again = self.project.plan().plan
        if again.has_changes:
            # A real driver must observe what it just applied as up to date.
            detail = "; ".join(f"{c.action.value} {c.name}: {c.reason}" for c in again.changes)
            self.run.notes.append(f"a plan right after apply still shows changes: {detail}")
            say(f"  !! a plan right after apply still shows changes: {detail}")
        else:
            say("  a plan right after apply shows no changes (observation matches what was applied)")
        return result

    def destroy_mlopsfile(self) -> None:
        if self.project is None or not self.applied:
            return
        started = time.monotonic()
        report = self.project.apply(self.project.plan(destroy=True).plan)
        self.applied = False
        if report.failed:
            raise RuntimeError(f"destroy failed: {report.failed[0].message}")
        say(f"mlopsfile: destroyed in {time.monotonic() - started:.1f} s")

    # -- bare Ray Serve ----------------------------------------------------------------

    def start_bare_serve(self, scoring: str, hop: bool = False) -> Callable[[], None]:
        """Start the serve.run child; the returned function waits until it is deployed.

        ``hop``: an ingress deployment forwarding to the model by handle (bench/rollout.py).
        """
        from mlopsfile.drivers.ray_cluster import LocalHead

        assert self.project is not None
        endpoint = LocalHead(self.project.settings.state_dir).endpoint()
        if endpoint is None:
            raise RuntimeError("the project's Ray head is not running")
        name = ("bench-bare" if scoring == "plain" else "bench-bare-rt") + ("-hop" if hop else "")
        server = ("bare-serve" if scoring == "plain" else "bare-serve+rt") + (" hop" if hop else "")
        shape = "an ingress forwarding by handle to a plain deployment" if hop else "one plain deployment"
        say(f"{server}: serve.run of {shape} on the same cluster and proxy")
        started = time.monotonic()
        log = self.root / f"{name}.log"
        process = self.children.start(
            [PYTHON, str(BENCH_DIR / "plain_servers.py"), "serve", "--address", endpoint.address,
             "--name", name, "--route", "/" + name, "--model-uri", self.model_uri, "--tracking-uri", self.tracking_uri,
             "--scoring", scoring, "--replicas", "1", "--num-cpus", "0.1",
             "--max-ongoing-requests", str(self.args.max_ongoing)] + (["--hop"] if hop else []),
            env=clean_env(endpoint.client_env()), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=log.open("ab"), text=True,
        )

        def ready() -> None:
            wait_for_line(process, "READY", START_TIMEOUT_S, log)
            say(f"  {server} deployed in {time.monotonic() - started:.1f} s")
            url = f"http://127.0.0.1:{self.http_port}/{name}/predict"
            check_answer(url, self.body, self.expected)
            self.targets.append(Target(server, url, self.ray_watch(name), core=scoring == "plain"))
        return ready

    # -- FastAPI -----------------------------------------------------------------------

    def start_fastapi(self) -> Callable[[], None]:
        """Start uvicorn; the returned function waits until it answers."""
        server = "fastapi"
        say(f"{server}: uvicorn, one worker, on 127.0.0.1")
        port = free_port()
        log = self.root / f"{server}.log"
        process = self.children.start(
            [PYTHON, str(BENCH_DIR / "plain_servers.py"), "fastapi", "--port", str(port), "--model-uri", self.model_uri,
             "--tracking-uri", self.tracking_uri, "--scoring", "plain"],
            env=clean_env(), stdout=log.open("ab"), stderr=subprocess.STDOUT,
        )

        def ready() -> None:
            wait_for_http(f"http://127.0.0.1:{port}/healthz", process, START_TIMEOUT_S, log)
            url = f"http://127.0.0.1:{port}/predict"
            check_answer(url, self.body, self.expected)
            ray_groups = self.ray_watch(None)

            def watch() -> dict[str, list[int]]:
                # The idle Ray cluster counts as ours, so "others" means other people's work.
                return {"server": [process.pid], **ray_groups()}
            self.targets.append(Target(server, url, watch))
        return ready

    # -- measuring -----------------------------------------------------------------------

    def measure_rounds(self) -> None:
        """Every server at every concurrency, round after round, in a rotating order.

        Interleaving (rather than measuring one server for a long time, then the next)
        spreads whatever else the machine is doing evenly over the servers, and the
        ratios are taken within each round before their median is reported.
        """
        top = max(self.args.concurrency)
        for number in range(1, self.args.rounds + 1):
            say(f"round {number}/{self.args.rounds}")
            targets = [t for t in self.targets if t.core or number <= self.args.variant_rounds]
            shift = (number - 1) % len(targets)
            for target in targets[shift:] + targets[:shift]:
                for concurrency in self.args.concurrency:
                    # The top concurrency is the headline figure and the slowest to settle
                    # (few requests per second when Serve queues), so it gets longer points.
                    duration = self.args.duration_top if concurrency == top else self.args.duration
                    self.run.points.append(measure_point(target, concurrency, number, duration,
                                                         self.args.warmup, self.args, self.body_file))

    def measure_ceiling(self) -> None:
        """The load generator against a trivial server: its own ceiling on this machine."""
        port = free_port()
        process = self.children.start([PYTHON, str(BENCH_DIR / "httpload.py"), "--trivial-server", str(port),
                                       "--lifetime", "60"])
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
                time.sleep(0.1)
            target = Target("(generator ceiling)", f"http://127.0.0.1:{port}/predict", lambda: {"server": [process.pid]})
            self.run.points.append(measure_point(target, max(self.args.concurrency), 0, min(3.0, self.args.duration),
                                                 0.5, self.args, self.body_file))
        finally:
            self.children.stop(process)


def wait_for_line(process: subprocess.Popen[Any], expected: str, timeout_s: float, log: Path) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode}; {tail(log)}")
        ready, _, _ = select.select([process.stdout], [], [], 1.0)
        if ready:
            line = process.stdout.readline()
            if line.strip() == expected:
                return
    raise RuntimeError(f"server not ready within {timeout_s:.0f} s; {tail(log)}")


def wait_for_http(url: str, process: subprocess.Popen[Any], timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode}; {tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"server not ready within {timeout_s:.0f} s; {tail(log)}")


def tail(log: Path, lines: int = 15) -> str:
    try:
        return "log tail:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"no log at {log}"


# -- handler costs (in this process, no server) ------------------------------------------


def time_steps(steps: list[tuple[str, Callable[[], object]]], budget_s: float,
               repeats: int = 7) -> list[tuple[str, float]]:
    """Microseconds per call of each step: the best of ``repeats`` timed batches.

    The steps take turns batch by batch, so a burst of other work on the machine hits
    them all alike, and the best batch is the one least disturbed (as timeit does).
    """
    for _, function in steps:
        for _ in range(20):
            function()
    best = {label: float("inf") for label, _ in steps}
    slice_s = budget_s / repeats
    for _ in range(repeats):
        for label, function in steps:
            calls, started = 0, time.perf_counter()
            while True:
                function()
                calls += 1
                elapsed = time.perf_counter() - started
                if elapsed >= slice_s or calls >= 5_000:
                    break
            best[label] = min(best[label], elapsed / calls * 1e6)
    return [(label, best[label]) for label, _ in steps]


def handler_costs(model_uri: str, tracking_uri: str, body: bytes, budget_s: float) -> list[tuple[str, float]]:
    """Per-request cost of each scoring step, plain handler against runtime/scoring.py."""
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(BENCH_DIR))
    from plain_servers import Scorer

    from runtime.scoring import parse_payload, predict, predictions_json

    plain = Scorer(model_uri, tracking_uri, "plain")
    model, schema = plain.model, plain.input_schema
    split = json.loads(body)["dataframe_split"]
    frame = pd.DataFrame(split["data"], columns=split["columns"])
    parsed = parse_payload(body, schema)
    predictions = model.predict(frame)
    raw_model = model.get_raw_model() if hasattr(model, "get_raw_model") else None

    # A proposal for runtime/scoring.py, timed here without changing it: when every
    # column of the signature has one numpy dtype (typical of tabular models), build the
    # frame from one array of that dtype instead of casting column by column (what
    # infer_and_parse_data does). Ints sent for double columns are still accepted, which
    # a bare pd.DataFrame would not be; other schemas keep the current path.
    dtypes = {spec.type.to_numpy() for spec in schema.inputs} if schema is not None and not schema.is_tensor_spec() else set()
    common = next(iter(dtypes)) if len(dtypes) == 1 else None

    def fast_path() -> bytes:
        if common is None:
            data = parse_payload(body, schema).data
        else:
            decoded = json.loads(body)["dataframe_split"]
            data = pd.DataFrame(np.asarray(decoded["data"], dtype=common), columns=decoded["columns"])
        return predictions_json(predict(model, data, None))

    steps: list[tuple[str, Callable[[], object]]] = [
        ("plain: whole handler (json + DataFrame + pyfunc.predict + json)", lambda: plain.score(body)),
        ("runtime/scoring.py: parse_payload + predict + predictions_json",
         lambda: predictions_json(predict(model, parse_payload(body, schema).data, None))),
        ("  proposal: one-dtype dataframe_split parse + predict + json", fast_path),
        ("  plain parse: json.loads + pd.DataFrame", lambda: pd.DataFrame(split["data"], columns=split["columns"])),
        ("  runtime parse_payload (infer_and_parse_data)", lambda: parse_payload(body, schema)),
        ("  pyfunc.predict on the plain frame", lambda: model.predict(frame)),
        ("  runtime predict() on the parsed frame", lambda: predict(model, parsed.data, None)),
        ("  plain serialise: json.dumps(tolist)",
         lambda: json.dumps({"predictions": np.asarray(predictions).tolist()})),
        ("  runtime predictions_json (predictions_to_json)", lambda: predictions_json(predictions)),
    ]
    if raw_model is not None:
        steps.append(("  sklearn predict alone (no pyfunc schema enforcement)", lambda: raw_model.predict(frame)))
    return time_steps(steps, budget_s)


# -- report ------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def paired_ratios(run: Run, server: str, baseline: str, concurrency: int) -> list[float]:
    """Throughput ratio server/baseline within each round (same background load)."""
    mine = {p.round: p.rps for p in run.of(server, concurrency)}
    base = {p.round: p.rps for p in run.of(baseline, concurrency)}
    return [mine[r] / base[r] for r in sorted(mine) if r in base and base[r] > 0]


def ratio_text(values: list[float]) -> str:
    if not values:
        return "n/a"
    text = f"{median(values):.2f}x"
    if len(values) > 1:
        text += f" [{min(values):.2f}-{max(values):.2f}]"
    return text


def report(run: Run, args: argparse.Namespace, costs: list[tuple[str, float]]) -> None:
    say("")
    say(f"== served throughput and latency: closed loop, keep-alive, {args.rows} row(s) per request, "
        f"{args.duration:g} s per point ({args.duration_top:g} s at c={max(args.concurrency)}) after "
        f"{args.warmup:g} s warm-up, median of {args.rounds} round(s) ({args.variant_rounds} for variants); "
        f"Serve replicas: 1 x num_cpus 0.1, max_ongoing_requests {args.max_ongoing} ==")
    keys = [(server, concurrency) for server in run.servers()
            for concurrency in sorted({p.concurrency for p in run.points if p.server == server})]
    print_points(run, keys, busy=True)
    say("  handler ms: mean x-inference-ms, the handler's own timer (parse + predict + serialise, from the")
    say("    moment the body has arrived; the baselines' handlers time the same span);")
    say("  busy: all CPUs of the machine; others: CPU used by processes outside this benchmark.")
    say("")
    say("CPU ms per request by process (median over rounds; client = the load generator):")
    print_cpu(run, keys)
    say("")
    say("== ratios of throughput (per round, then median [min-max]) ==")
    pairs = [("mlopsfile", "bare-serve"), ("mlopsfile", "fastapi"), ("bare-serve", "fastapi"),
             ("mlopsfile+batch", "bare-serve"), ("bare-serve+rt", "bare-serve"), ("mlopsfile", "bare-serve+rt")]
    for server, baseline in pairs:
        if not run.of(server, args.concurrency[0]) or not run.of(baseline, args.concurrency[0]):
            continue
        cells = "   ".join(f"c={c}: {ratio_text(paired_ratios(run, server, baseline, c)):<18}" for c in args.concurrency)
        say(f"  {server + '/' + baseline:<28} {cells}")
    top = max(args.concurrency)
    goal = paired_ratios(run, "mlopsfile", "bare-serve", top)
    if goal:
        verdict = "MET" if median(goal) >= 0.9 else "MISSED"
        say(f"  goal: mlopsfile >= 0.90x bare Ray Serve at c={top}: {median(goal):.2f}x -> {verdict}")
    for concurrency in args.concurrency:
        mine, bare = run.of("mlopsfile", concurrency), run.of("bare-serve", concurrency)
        if mine and bare:
            a, b = median([p.p50_ms for p in mine]), median([p.p50_ms for p in bare])
            say(f"  c={concurrency:<3} p50 latency mlopsfile/bare-serve {a / b:.2f}x ({a - b:+.2f} ms)")
    if costs:
        say("")
        say("== handler costs in one process (µs per call, best of 7 batches; no server, no HTTP) ==")
        base = costs[0][1]
        for label, micros in costs:
            say(f"  {label:<66}{micros:>9.0f} µs  {micros / base:>5.2f}x plain handler")
    print_notes(run)


# -- main --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(__doc__, 3)
    parser.add_argument("--duration", type=float, help="seconds measured per point (default 3)")
    parser.add_argument("--duration-top", type=float,
                        help="seconds measured per point at the highest concurrency (default 6, --quick 3)")
    parser.add_argument("--variant-rounds", type=int, default=1,
                        help="rounds that also measure mlopsfile+batch and bare-serve+rt (default 1)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    add_load_arguments(parser, "every Serve replica, mlopsfile's and bare")
    parser.add_argument("--batching", action=argparse.BooleanOptionalAction, default=None,
                        help="also measure an mlopsfile Deployment with dynamic batching (default: on, off with --quick)")
    parser.add_argument("--variants", action=argparse.BooleanOptionalAction, default=None,
                        help="also measure bare-serve+rt (default: on, off with --quick)")
    parser.add_argument("--handler-costs", action=argparse.BooleanOptionalAction, default=True,
                        help="time each scoring step in-process")
    args = parser.parse_args(argv)
    args.duration = args.duration or 3.0
    args.duration_top = args.duration_top or (3.0 if args.quick else 6.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.batching = (not args.quick) if args.batching is None else args.batching
    args.variants = (not args.quick) if args.variants is None else args.variants
    return args


def bench_parser(doc: str | None, rounds: int) -> argparse.ArgumentParser:
    """The options every benchmark of interleaved rounds takes."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument("--rounds", type=int, help=f"interleaved rounds (default {rounds}, --quick 1)")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds of warm-up per point (default 0.5)")
    return parser


def two_point_parser(doc: str | None, rounds: int) -> argparse.ArgumentParser:
    """The options of a bench that compares deployments at c=1 (latency) and one top concurrency."""
    parser = bench_parser(doc, rounds)
    parser.add_argument("--duration", type=float, help="seconds measured per c=1 point (default 4, --quick 2)")
    parser.add_argument("--duration-top", type=float, help="seconds measured per c=32 point (default 6, --quick 3)")
    parser.add_argument("--concurrency", type=int, default=32, help="the throughput concurrency (default 32)")
    return parser


def finish_two_point_args(args: argparse.Namespace, rounds: int) -> argparse.Namespace:
    """Defaults that depend on --quick, and the shape Bench reads."""
    args.rounds = args.rounds or (1 if args.quick else rounds)
    args.duration = args.duration or (2.0 if args.quick else 4.0)
    args.duration_top = args.duration_top or (3.0 if args.quick else 6.0)
    args.concurrency = [1, args.concurrency]
    args.batching = False
    return args


def add_load_arguments(parser: argparse.ArgumentParser, replicas: str) -> None:
    """The load-generation options every HTTP benchmark takes; ``replicas`` says whose
    max_ongoing_requests --max-ongoing sets."""
    parser.add_argument("--max-requests", type=int, default=100_000, help="cap on requests per point")
    parser.add_argument("--rows", type=int, default=1, help="rows per request")
    parser.add_argument("--max-ongoing", type=int, default=MAX_ONGOING_REQUESTS,
                        help=f"max_ongoing_requests of {replicas} (default: the spec default, 32)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories (logs)")


def print_points(run: Run, keys: list[tuple[str, int]], width: int = 20, busy: bool = False) -> None:
    """One row per (server, concurrency): medians over rounds of req/s, p50, p99, handler time."""
    say(f"{'server':<{width}}{'conc':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'requests':>9}"
        f"{'handler ms':>12}" + (f"{'busy':>7}" if busy else "") + f"{'others':>8}")
    for server, concurrency in keys:
        points = run.of(server, concurrency)
        handler = [p.server_ms for p in points if p.server_ms is not None]
        machine = [p.machine_busy for p in points if p.machine_busy is not None]
        others = [p.others_busy for p in points if p.others_busy is not None]
        say(f"{server:<{width}}{concurrency:>5}{median([p.rps for p in points]):>9.1f}"
            f"{median([p.p50_ms for p in points]):>9.2f}{median([p.p99_ms for p in points]):>9.2f}"
            f"{sum(p.errors for p in points):>8}{sum(p.requests for p in points):>9}"
            f"{(f'{median(handler):.2f}' if handler else '-'):>12}"
            + (f"{(f'{median(machine) * 100:.0f}%' if machine else '-'):>7}" if busy else "")
            + f"{(f'{median(others) * 100:.0f}%' if others else '-'):>8}")


def print_cpu(run: Run, keys: list[tuple[str, int]], width: int = 20) -> None:
    """CPU ms per request by process group, median over rounds, one line per point."""
    for server, concurrency in keys:
        points = run.of(server, concurrency)
        names = list(dict.fromkeys(k for p in points for k in p.cpu_ms_per_req))
        parts = [f"{k} {median([p.cpu_ms_per_req.get(k, 0.0) for p in points]):.2f}" for k in names]
        say(f"  {server:<{width}} c={concurrency:<3} " + "  ".join(parts))


def print_notes(run: Run) -> None:
    for note in run.notes:
        say(f"NOTE: {note}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the finally blocks stop everything we started."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_bench(args: argparse.Namespace, prefix: str, make: Callable[..., Bench], steps: Callable[[Bench], Any],
              report_with: Callable[[Run, Any], None]) -> int:
    """One benchmark run: a temporary project, ``steps`` under Ctrl-C/SIGTERM-safe clean-up,
    then ``report_with(run, what steps returned)`` if any point was measured."""
    for name in FOREIGN_ENV:
        os.environ.pop(name, None)
    # Read by ray.init: otherwise Ray's C++ failure handler catches SIGTERM in this process and
    # aborts it a few seconds later, in the middle of the clean-up.
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    body = payload(args.rows)
    body_file = root / "request.json"
    body_file.write_bytes(body)
    children = Children()
    run = Run()
    bench = make(args=args, root=root, children=children, run=run, body_file=body_file, body=body)
    extra: Any = None
    started = time.monotonic()
    status = 1
    with sigterm_as_interrupt():
        try:
            say(f"project dir {root}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
            extra = steps(bench)
            say(f"load average {os.getloadavg()[0]:.2f}")
            status = 0
        except KeyboardInterrupt:
            say("interrupted; cleaning up")
            status = 130
        except SystemExit as exc:  # ray.init puts in a SIGTERM handler of its own, which exits
            if exc.code != signal.SIGTERM:
                raise
            say("interrupted; cleaning up")
            status = 130
        except Exception as exc:
            say(f"FAILED: {type(exc).__name__}: {exc}")
        finally:
            cleanup(bench, children, root, args.keep)
    if run.points:
        report_with(run, extra)
    say(f"\ntotal time {time.monotonic() - started:.0f} s")
    return status


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def steps(bench: Bench) -> list[tuple[str, float]]:
        bench.write_project()
        bench.train()
        bench.measure_ceiling()
        bench.open_project()
        # Servers boot side by side to keep the run short; they are measured one at a
        # time. FastAPI runs while the (idle) Ray cluster is up too, so every server
        # shares the machine with the same background processes.
        waits = [bench.start_fastapi()]
        bench.deploy_mlopsfile()
        scorings = ["plain", "runtime"] if args.variants else ["plain"]
        waits = [bench.start_bare_serve(scoring) for scoring in scorings] + waits
        for wait in waits:
            wait()
        bench.measure_rounds()
        if not args.handler_costs:
            return []
        say("handler costs: timing each scoring step in this process")
        return handler_costs(bench.model_uri, bench.tracking_uri, bench.body, 0.7)

    return run_bench(args, "mlopsfile-bench-", Bench, steps, lambda run, costs: report(run, args, costs or []))


def stop_local_ray(project: Project | None) -> None:
    """Leave this process' Ray client, then stop the project's own local head (by pid)."""
    if "ray" in sys.modules:
        import ray

        with contextlib.suppress(Exception):
            if ray.is_initialized():
                ray.shutdown()
    if project is not None:
        try:
            stopped = project.down()
            say(f"local Ray head {'stopped' if stopped else 'was not running'}")
        except Exception as exc:
            say(f"could not stop the local Ray head: {exc}")


def cleanup(bench: Bench, children: Children, root: Path, keep: bool) -> None:
    # A second Ctrl-C must not cut the clean-up short and leave a Ray head running.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        children.stop_all()  # FastAPI servers; bare-Serve children delete their apps first
        try:
            bench.destroy_mlopsfile()
        except Exception as exc:
            say(f"destroy failed ({exc}); stopping the Ray head removes the applications anyway")
        stop_local_ray(bench.project)
        if keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())
