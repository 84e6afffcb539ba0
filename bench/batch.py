"""Batch scoring throughput and memory: mlopsfile's batch target against a single-process loop.

One CPU-heavy model (a 200-tree scikit-learn random forest over 10 float features,
``n_jobs=1`` so each replica uses one core) is trained and registered in MLflow with a
signature; a parquet input of N rows (default 2,000,000, several files, with an ``id``
column) and a second one of 4 x N rows are written in chunks. Then, in this run:

  baseline       one process: load the same pyfunc model, read the parquet with pyarrow
                 ``iter_batches`` (same batch size), predict, write parquet
  mlopsfile 1x   ``Project.apply`` of a batch Deployment over the N-row input: a Ray Job
                 (runtime/batch_job.py: Ray Data read_parquet -> map_batches on an actor
                 pool of ``--concurrency`` model replicas, which write parquet parts -> publish), the
                 first job on a freshly started head
  1x again       the 1x input once more, on the head the first job warmed (Ray Data's
                 service actors are up)
  mlopsfile 4x   the same over the 4 x N-row input
  baseline again the baseline once more, last (the head stopped)

The baseline also runs after each 1x run (the head idle), and each mlopsfile run is judged
against the mean of the baselines just before and just after it: a shared machine's speed
drifts by 10-20 % over minutes. Printed, each against its baselines: rows/s of the whole
apply (wall time) and of the manifest's ``score_and_write_s`` over the baseline's rows/s
(goal >= 1.3x on 2 cores); what
the warm 1x and the 4x runs say together (the rate of each further row against the baseline's
loop, a job's fixed cost, and from how many rows a run reaches the goal);
the peak summed RSS of the job's processes (job driver, job supervisor, Ray Data workers
and model replicas, sampled every 0.5 s from the process tree of the project's own Ray
head), and the ratio 4x / 1x (goal <= 1.5x). The head's long-lived services (gcs_server,
raylet, dashboard, agents) are reported on their own, and PSS beside RSS, because summed
RSS counts the object store pages every worker maps once per worker. Each phase also shows
how many cores other work on the machine took meanwhile ("others' CPU"), and each job what
Ray Data made of it (its plan, warnings, and per operator: tasks, blocks, when it finished),
from the job's log and Ray Data's log in the head's session directory.

``--job-env NAME=VALUE`` starts the head (and so every job) with an extra environment
variable: a what-if for Ray Data settings without changing runtime/.

Everything runs in a temporary project directory with its own MLflow store, state store and
local Ray head (started by mlopsfile); all of it is stopped by pid and removed on exit,
Ctrl-C and SIGTERM included.

    .venv/bin/python bench/batch.py            # 2M and 8M rows (about 7 minutes on an idle 2-core machine)
    .venv/bin/python bench/batch.py --quick    # 200k and 800k rows (about 3-4 minutes)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

try:
    import psutil
except ImportError:  # Ray vendors psutil and puts it on sys.path when imported; Ray need not be imported here
    _ray = importlib.util.find_spec("ray")
    if _ray is None or _ray.origin is None:
        raise
    sys.path.append(str(Path(_ray.origin).parent / "thirdparty_files"))
    import psutil

if TYPE_CHECKING:
    import numpy as np

    from mlopsfile.api import Project

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT))  # mlopsfile and runtime, when run as a plain script
sys.path.insert(0, str(BENCH_DIR))  # bench/serving.py's helpers

from serving import FOREIGN_ENV, clean_env, say, sigterm_as_interrupt, stop_local_ray  # noqa: E402

PYTHON = sys.executable
MODEL = "forest"
FEATURES = [f"f{i}" for i in range(10)]
TREES = 200
# MLflow saves scikit-learn models with skops, which loads only the types it is told to trust:
# the forest's trees hold raw node indices. We made this file ourselves, so we trust it.
TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]
TRAIN_ROWS = 20_000
DEFAULT_ROWS = 2_000_000
QUICK_ROWS = 200_000
SCALE = 4  # the large input is SCALE times the small one
FILES = 8  # files of the 1x input; the 4x input has SCALE times as many, of the same size
# Sampling costs CPU that the measured job then lacks: every 0.2 s, and with PSS read for every process
# (PSS makes the kernel walk a process's page tables), it took a quarter of a core from the jobs it
# measured. RSS is read every 0.5 s, PSS every 5 s and only for the job's processes (its memory is flat
# while a job streams, so a peak is not missed).
SAMPLE_INTERVAL_S = 0.5
PSS_INTERVAL_S = 5.0
WARM_1X = "mlopsfile 1x again"  # the 1x input once more, on the head the earlier jobs warmed
THROUGHPUT_GOAL = 1.3
MEMORY_GOAL = 1.5
MB = 1024 * 1024
LABEL_WIDTH = 42  # of the throughput table's first column
HEAD_SERVICES = "head services"
# Ray workers title themselves "ray::<actor class or task>"; the first prefix that matches names the role.
WORKER_ROLES = (
    ("DashboardAgent", HEAD_SERVICES), ("RuntimeEnvAgent", HEAD_SERVICES),
    ("JobSupervisor", "job supervisor"),
    ("MapWorker", "model replicas"),
    ("_StatsActor", "Ray Data service actors"), ("ActorLocationTracker", "Ray Data service actors"),
    ("_AutoscalingCoordinator", "Ray Data service actors"),
    ("IDLE", "idle workers"),
)
SPEC_MODEL = """\
apiVersion: mlopsfile/v1
kind: Model
metadata: {{name: {model}}}
spec: {{uri: "models:/{model}@champion"}}
"""
SPEC_DEPLOYMENT = """\
---
apiVersion: mlopsfile/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  model: {model}
  target:
    type: batch
    input: data/{data}/*.parquet
    format: parquet
    output: out/{name}
    columns: [id]
    batch_size: {batch_size}
    concurrency: {concurrency}
    resources: {{num_cpus: {num_cpus}}}
"""


# -- results -----------------------------------------------------------------------------


@dataclass
class Usage:
    """What one measured phase used: the largest summed memory seen over its samples (bytes), and CPU."""

    job_rss: int = 0
    job_pss: int = 0
    head_rss: int = 0
    all_rss: int = 0  # job + head services in the same sample
    at_job_peak: dict[str, tuple[int, int]] = field(default_factory=dict)  # role -> (processes, rss)
    samples: int = 0
    seconds: float = 0.0
    cpu_ours_s: float = 0.0  # CPU seconds of the sampled tree and of this script
    cpu_script_s: float = 0.0  # CPU seconds of this script (its sampling, its apply) during the phase
    cpu_others_s: float = 0.0  # the machine's busy CPU seconds minus ours: other work on the machine
    cpu_by_role: dict[str, float] = field(default_factory=dict)  # role -> CPU seconds of its processes


@dataclass
class Result:
    label: str
    rows: int
    seconds: float  # the whole apply (mlopsfile) or the whole loop (baseline)
    score_s: float | None = None  # the manifest's score_and_write_s
    total_s: float | None = None  # the manifest's total_s (the job's own run time)
    usage: Usage = field(default_factory=Usage)
    notes: list[str] = field(default_factory=list)  # what the job's logs say about its Ray Data plan
    load_s: float = 0.0  # the baseline's imports and model load, before its first row

    def rate(self, seconds: float | None = None) -> float:
        return self.rows / (seconds if seconds is not None else self.seconds)


@dataclass
class Inputs:
    label: str  # the directory under data/
    rows: int
    files: int
    bytes: int


# -- memory ------------------------------------------------------------------------------


def role_of(title: str) -> str:
    """What a process of the Ray head's tree is, from its command line (Ray workers set theirs)."""
    if "runtime.batch_job" in title:
        return "job driver"
    if not title.startswith("ray::"):
        return HEAD_SERVICES  # ray start, gcs_server, raylet, dashboard and its modules, monitors
    name = title[len("ray::"):]
    return next((role for marker, role in WORKER_ROLES if name.startswith(marker)), "read/list/write tasks")


def tree_processes(root_pid: int, classify: Callable[[str], str]) -> dict[str, list[psutil.Process]]:
    """``root_pid`` and every descendant, grouped by ``classify(command line)``.

    The job driver runs in a session of its own (Ray's job supervisor starts it so), so
    processes are found by parentage, not by session; only this tree is looked at, so another
    Ray instance on the machine is never counted.
    """
    try:
        root = psutil.Process(root_pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return {}
    groups: dict[str, list[psutil.Process]] = {}
    for process in processes:
        try:
            title = " ".join(process.cmdline())
        except psutil.Error:
            continue
        groups.setdefault(classify(title), []).append(process)
    return groups


def memory_of(processes: list[psutil.Process]) -> tuple[int, int]:
    """Summed (RSS, PSS) of processes; one that exits meanwhile counts as 0."""
    rss = pss = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            info = process.memory_full_info()
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
    return rss, pss


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy since boot."""
    times = psutil.cpu_times()  # Linux counts guest time inside user time already
    return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))


class MemorySampler:
    """Samples the summed memory of a process tree every ``interval_s`` on a thread; keeps the peaks.

    It also follows the tree's CPU time, so the share of the machine other work took meanwhile
    can be told (a process that exits between two samples loses up to one interval of it).
    """

    def __init__(self, find: Callable[[], dict[str, list[psutil.Process]]], interval_s: float = SAMPLE_INTERVAL_S):
        self.find = find
        self.interval_s = interval_s
        self.usage = Usage()
        self._cpu: dict[int, list[float]] = {}  # pid -> [CPU seconds when first seen in this phase, last seen]
        self._role: dict[int, str] = {}  # pid -> role, as last classified
        self._me = psutil.Process()
        self._next_pss = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)

    def __enter__(self) -> MemorySampler:
        self._started = (time.monotonic(), time.time(), busy_cpu_s(), self._cpu_of(self._me))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        started, _, busy, mine = self._started
        usage = self.usage
        usage.seconds = time.monotonic() - started
        usage.cpu_script_s = self._cpu_of(self._me) - mine
        usage.cpu_ours_s = sum(last - first for first, last in self._cpu.values()) + usage.cpu_script_s
        usage.cpu_others_s = max(0.0, busy_cpu_s() - busy - usage.cpu_ours_s)
        for pid, (first, last) in self._cpu.items():
            role = self._role.get(pid, "?")
            usage.cpu_by_role[role] = usage.cpu_by_role.get(role, 0.0) + last - first

    @staticmethod
    def _cpu_of(process: psutil.Process) -> float:
        times = process.cpu_times()
        return times.user + times.system

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.sample()
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def _measure(self, process: psutil.Process, pss: bool) -> tuple[int, int] | None:
        """(RSS, PSS if ``pss`` else 0) of one process, following its CPU time; None when it is gone."""
        try:
            with process.oneshot():
                info = process.memory_full_info() if pss else process.memory_info()
                cpu = self._cpu_of(process)
                born_here = process.create_time() >= self._started[1]
        except psutil.Error:
            return None
        self._cpu.setdefault(process.pid, [0.0 if born_here else cpu, cpu])[1] = cpu
        return info.rss, getattr(info, "pss", info.rss) if pss else 0

    def sample(self) -> None:
        pss = time.monotonic() >= self._next_pss
        if pss:
            self._next_pss = time.monotonic() + PSS_INTERVAL_S
        by_role: dict[str, tuple[int, int, int]] = {}
        for role, processes in self.find().items():
            self._role.update((process.pid, role) for process in processes)
            measured = [m for m in (self._measure(p, pss and role != HEAD_SERVICES) for p in processes) if m is not None]
            by_role[role] = (len(measured), sum(m[0] for m in measured), sum(m[1] for m in measured))
        job = [v for role, v in by_role.items() if role != HEAD_SERVICES]
        job_rss, job_pss = sum(v[1] for v in job), sum(v[2] for v in job)
        head_rss = by_role.get(HEAD_SERVICES, (0, 0, 0))[1]
        usage = self.usage
        usage.samples += 1
        if job_rss > usage.job_rss:
            usage.job_rss = job_rss
            usage.at_job_peak = {role: (v[0], v[1]) for role, v in by_role.items()}
        if pss:
            usage.job_pss = max(usage.job_pss, job_pss)
        usage.head_rss = max(usage.head_rss, head_rss)
        usage.all_rss = max(usage.all_rss, job_rss + head_rss)


LOG_TIME_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})")
OPERATOR_DONE_RE = re.compile(r"Operator \w+\[(.+)\] completed")
OPERATOR_METRIC_RE = re.compile(r"'(num_tasks_finished|num_task_outputs_generated|average_total_task_completion_time_s)'"
                                r": ([0-9.eE+-]+)")


def ray_data_log(temp_dir: Path) -> list[str]:
    """The lines of the newest Ray Data dataset log in the head's session directory."""
    logs = sorted((temp_dir / "session_latest" / "logs" / "ray-data").glob("ray-data-dataset_*.log"),
                  key=lambda p: p.stat().st_mtime)
    return logs[-1].read_text(errors="replace").splitlines() if logs else []


def ray_data_progress(temp_dir: Path) -> list[str]:
    """The last progress report of each operator in the newest Ray Data log (where a stuck job stands)."""
    last: dict[str, str] = {}
    for line in ray_data_log(temp_dir):
        if "streaming_executor.py" in line and " - Tasks: " in line:
            report = line.split(" -- ", 1)[-1]
            last[report.split(" - ", 1)[0]] = report
    return list(last.values())


def ray_data_timeline(temp_dir: Path) -> str:
    """From the newest Ray Data log of the head: when each operator finished, its tasks, blocks out."""
    lines = ray_data_log(temp_dir)
    started: datetime | None = None
    parts = []
    for line, following in zip(lines, [*lines[1:], ""], strict=True):
        stamp = LOG_TIME_RE.match(line)
        if stamp is None:
            continue
        at = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f")
        if "Starting execution of Dataset" in line:
            started = at
        done = OPERATOR_DONE_RE.search(line)
        if done and started is not None and done.group(1) != "Input":
            metrics = {key: float(value) for key, value in OPERATOR_METRIC_RE.findall(following)}
            parts.append(f"{done.group(1)} +{(at - started).total_seconds():.1f} s "
                         f"({metrics.get('num_tasks_finished', 0):.0f} tasks of "
                         f"{metrics.get('average_total_task_completion_time_s', 0):.1f} s avg, "
                         f"{metrics.get('num_task_outputs_generated', 0):.0f} blocks out)")
    return "; ".join(parts)


# -- the single-process baseline (run in a child process: `--baseline-child`) -------------


def baseline_child(input_dir: Path, output: Path, model_uri: str, tracking_uri: str, batch_size: int) -> int:
    """Load the pyfunc model, then read -> predict -> write in chunks; print one JSON line.

    The time counted starts before the imports, as the job's score_and_write_s includes its
    actors' start, imports and model load."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    started = time.monotonic()
    import mlflow.pyfunc
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(model_uri)
    loaded = time.monotonic()
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for path in sorted(input_dir.glob("*.parquet")):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=["id", *FEATURES]):
                frame = batch.to_pandas()
                predictions = np.asarray(model.predict(frame[FEATURES]))
                out = pa.Table.from_pandas(pd.DataFrame({"id": frame["id"].to_numpy(), "prediction": predictions}),
                                           preserve_index=False)
                writer = writer or pq.ParquetWriter(output, out.schema)
                writer.write_table(out)
                rows += len(frame)
    finally:
        if writer is not None:
            writer.close()
    done = time.monotonic()
    print(json.dumps({"rows": rows, "seconds": done - started, "load_s": loaded - started}), flush=True)
    return 0


# -- the benchmark -------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    root: Path
    project: Project | None = None
    child: subprocess.Popen[str] | None = None
    head_pid: int = 0
    head_temp_dir: str = ""
    model_uri: str = ""
    train_rows: np.ndarray | None = None
    inputs: dict[str, Inputs] = field(default_factory=dict)
    results: list[Result] = field(default_factory=list)

    @property
    def state(self) -> Path:
        return self.root / ".mlopsfile"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.state / 'mlflow.db'}"

    # -- set-up ------------------------------------------------------------------------

    def write_project(self) -> None:
        (self.root / "specs").mkdir(parents=True)
        self.state.mkdir()
        (self.root / "mlopsfile.yaml").write_text(textwrap.dedent(f"""\
            project: batchbench
            specs: specs
            mlflow:
              tracking_uri: {self.tracking_uri}
            state:
              url: sqlite:///{self.state / 'state.db'}
            """))
        spec = SPEC_MODEL.format(model=MODEL)
        for label in ("1x",) if self.args.only_1x else ("1x", f"{SCALE}x"):
            spec += SPEC_DEPLOYMENT.format(name=f"score-{label}", model=MODEL, data=label,
                                           batch_size=self.args.batch_size, concurrency=self.args.concurrency,
                                           num_cpus=self.args.num_cpus)
        (self.root / "specs" / "batch.yaml").write_text(spec)

    def train(self) -> None:
        """Fit the forest (both cores), then set n_jobs=1 so each replica scores on one core; register it."""
        import logging
        import warnings

        import mlflow
        import pandas as pd
        from mlflow import MlflowClient
        from mlflow.models import infer_signature
        from sklearn.datasets import make_classification
        from sklearn.ensemble import RandomForestClassifier

        started = time.monotonic()
        warnings.filterwarnings("ignore")
        logging.getLogger("mlflow").setLevel(logging.ERROR)
        features, labels = make_classification(n_samples=TRAIN_ROWS, n_features=len(FEATURES), n_informative=6,
                                               random_state=0)
        self.train_rows = features
        frame = pd.DataFrame(features, columns=FEATURES)
        model = RandomForestClassifier(n_estimators=TREES, min_samples_leaf=5, n_jobs=-1, random_state=0)
        model.fit(frame, labels)
        model.n_jobs = 1
        mlflow.set_tracking_uri(self.tracking_uri)
        experiment = mlflow.create_experiment("batch-bench", artifact_location=(self.state / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.sklearn.log_model(model, name="model", registered_model_name=MODEL,
                                            signature=infer_signature(frame.head(100), model.predict(frame.head(100))),
                                            skops_trusted_types=TRUSTED_TYPES)
        version = str(info.registered_model_version)
        MlflowClient(self.tracking_uri).set_registered_model_alias(MODEL, "champion", version)
        self.model_uri = f"models:/{MODEL}/{version}"
        say(f"  trained a {TREES}-tree random forest on {TRAIN_ROWS:,} rows and registered {self.model_uri} "
            f"(@champion) in {time.monotonic() - started:.1f} s")

    def write_inputs(self, label: str, rows: int, files: int) -> None:
        """``files`` parquet files of rows drawn near the training rows, one file in memory at a time."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq

        assert self.train_rows is not None
        started = time.monotonic()
        directory = self.root / "data" / label
        directory.mkdir(parents=True)
        rng = np.random.default_rng(len(label) * 1000 + rows)
        first = 0
        for number in range(files):
            count = rows // files + (1 if number < rows % files else 0)
            values = self.train_rows[rng.integers(0, len(self.train_rows), count)]
            values = values + rng.normal(0.0, 0.1, values.shape)
            columns = {"id": pa.array(np.arange(first, first + count, dtype=np.int64))}
            columns |= {name: pa.array(values[:, i]) for i, name in enumerate(FEATURES)}
            pq.write_table(pa.table(columns), directory / f"part-{number:03d}.parquet")
            first += count
        size = sum(p.stat().st_size for p in directory.iterdir())
        self.inputs[label] = Inputs(label, rows, files, size)
        say(f"  wrote input {label}: {rows:,} rows in {files} files, {size / MB:.0f} MB, "
            f"in {time.monotonic() - started:.1f} s")

    # -- baseline ------------------------------------------------------------------------

    def run_baseline(self, label: str = "baseline") -> None:
        say(f"{label}: one process, pyarrow iter_batches({self.args.batch_size}) -> pyfunc predict -> parquet")
        output = self.root / "out" / "baseline.parquet"
        output.parent.mkdir(exist_ok=True)
        command = [PYTHON, str(Path(__file__).resolve()), "--baseline-child", str(self.root / "data" / "1x"),
                   str(output), self.model_uri, self.tracking_uri, str(self.args.batch_size)]
        self.child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True,
                                      env=clean_env(), cwd=self.root)
        pid = self.child.pid
        with MemorySampler(lambda: tree_processes(pid, lambda _: "baseline process")) as sampler:
            out, _ = self.child.communicate()
        code, self.child = self.child.returncode, None
        if code != 0:
            raise RuntimeError(f"the baseline process exited with code {code}")
        facts = json.loads(out.strip().splitlines()[-1])
        result = Result(label, facts["rows"], facts["seconds"], usage=sampler.usage, load_s=facts["load_s"])
        self.results.append(result)
        say(f"  {result.rows:,} rows in {result.seconds:.1f} s (imports + model load {facts['load_s']:.1f} s): "
            f"{result.rate():,.0f} rows/s; peak RSS {result.usage.job_rss / MB:,.0f} MB")

    # -- mlopsfile -----------------------------------------------------------------------

    def open_project(self) -> None:
        from mlopsfile.api import Project

        self.project = Project.open(self.root)
        resolved = next(m for m in self.project.desired().models if m.name == MODEL)
        if resolved.pinned_uri != self.model_uri:
            raise RuntimeError(f"the project resolves {resolved.pinned_uri}, the baseline loaded {self.model_uri}")

    def start_head(self) -> None:
        """Start the project's local Ray head before timing anything (as a first apply would)."""
        from mlopsfile.drivers.ray_cluster import LocalHead

        assert self.project is not None
        started = time.monotonic()
        self.project.batch.cluster.endpoint(start=True)  # type: ignore[attr-defined]
        record = LocalHead(self.project.settings.state_dir).record()
        assert record is not None
        self.head_pid, self.head_temp_dir = record.pid, record.temp_dir
        self.wait_for_dashboard()
        groups = tree_processes(self.head_pid, role_of)
        rss = {role: memory_of(procs)[0] for role, procs in groups.items()}
        say(f"mlopsfile: local Ray head (pid {self.head_pid}, {os.cpu_count()} CPUs) up in "
            f"{time.monotonic() - started:.1f} s; idle: "
            + ", ".join(f"{role} {len(groups[role])} procs {rss[role] / MB:,.0f} MB RSS" for role in sorted(groups)))

    def wait_for_dashboard(self, timeout_s: float = 180.0) -> None:
        """A fresh head answers /api/version before its job API keeps up (slowly, on a busy machine)."""
        from mlopsfile.errors import DriverError

        assert self.project is not None
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.project.batch.jobs()  # type: ignore[attr-defined]
                self.project.observe()
                return
            except DriverError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2.0)

    def run_batch(self, label: str, title: str = "") -> None:
        """Apply the batch Deployment over input ``label`` (a forced run); ``title`` names the result."""
        assert self.project is not None
        name = f"score-{label}"
        title = title or f"mlopsfile {label}"
        say(f"{title}: apply of batch Deployment {name} (concurrency {self.args.concurrency}, "
            f"num_cpus {self.args.num_cpus}, batch_size {self.args.batch_size})")
        self.wait_for_dashboard()
        plan = self.project.run_one(name)
        if not plan.changes:
            raise RuntimeError(f"the plan runs nothing for {name}")
        with MemorySampler(lambda: tree_processes(self.head_pid, role_of)) as sampler:
            started = time.monotonic()
            report = self.project.apply(plan, events=lambda _, message: say(
                f"  +{time.monotonic() - started:4.1f} s  {message}"))
            seconds = time.monotonic() - started
        if report.failed:
            self.show_logs(name)
            say("  Ray Data's last progress report per operator:")
            for line in ray_data_progress(Path(self.head_temp_dir)):
                say(f"    | {line}")
            raise RuntimeError(f"apply of {name} failed: {report.failed[0].message}")
        manifest = json.loads((self.root / "out" / name / "current" / "_manifest.json").read_text())
        timings = manifest["timings"]
        result = Result(title, int(manifest["rows"]), seconds, timings["score_and_write_s"],
                        timings["total_s"], sampler.usage)
        if result.rows != self.inputs[label].rows:
            raise RuntimeError(f"{name} published {result.rows:,} rows of {self.inputs[label].rows:,}")
        self.results.append(result)
        say(f"  {result.rows:,} rows: apply {seconds:.1f} s, job {timings['total_s']:.1f} s (check "
            f"{timings['check_s']:.1f} s, score+write {timings['score_and_write_s']:.1f} s); "
            f"peak job RSS {result.usage.job_rss / MB:,.0f} MB over {result.usage.samples} samples")
        result.notes = self.job_notes(name)  # printed with the summary

    def job_notes(self, name: str) -> list[str]:
        """What the job's log (`mlopsfile logs`) and Ray Data's own log say about the run's plan."""
        assert self.project is not None
        notes = []
        with contextlib.suppress(Exception):
            for line in self.project.logs(name)[1].splitlines():
                if "Execution plan of Dataset " in line:
                    notes.append("Ray Data plan: " + line.split("Execution plan of Dataset ", 1)[1].split(": ", 1)[-1])
                elif "mlopsfile: model replica" in line:
                    notes.append(line.split("mlopsfile: ", 1)[1].strip())
                elif "UserWarning: " in line:
                    notes.append("Ray Data warning: " + line.split("UserWarning: ", 1)[1].strip())
        timeline = ray_data_timeline(Path(self.head_temp_dir))
        if timeline:
            notes.append("Ray Data operators (done at, from the start of execution): " + timeline)
        return notes

    def check_predictions(self) -> None:
        """The 1x output holds, per id, exactly the baseline's prediction."""
        import pyarrow.parquet as pq

        mine = pq.read_table(self.root / "out" / "score-1x" / "current", columns=["id", "prediction"]).sort_by("id")
        theirs = pq.read_table(self.root / "out" / "baseline.parquet").sort_by("id")
        same = mine.num_rows == theirs.num_rows and mine["id"].equals(theirs["id"]) \
            and (mine["prediction"].to_numpy() == theirs["prediction"].to_numpy()).all()
        if not same:
            raise RuntimeError("the mlopsfile 1x output differs from the baseline's predictions")
        say(f"  checked: the 1x output has the baseline's prediction for each of its {mine.num_rows:,} ids")

    def show_logs(self, name: str) -> None:
        assert self.project is not None
        with contextlib.suppress(Exception):
            job_id, logs = self.project.logs(name)
            say(f"  last lines of job {job_id} (`mlopsfile logs {name}`):")
            for line in logs.splitlines()[-40:]:
                say(f"    | {line}")

    def stop(self) -> None:
        """Stop everything this run started, by pid: the baseline child, then the Ray head."""
        if self.child is not None and self.child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child.pid, signal.SIGKILL)
            self.child.wait(10)
        stop_local_ray(self.project)


# -- report --------------------------------------------------------------------------------


def verdict(met: bool) -> str:
    return "MET" if met else "MISSED"


def report(bench: Bench) -> None:
    results = {r.label: r for r in bench.results}
    baselines = [r for r in bench.results if is_baseline(r)]
    runs = [r for r in bench.results if r not in baselines]
    baseline = reference(baselines)
    say("\n== summary ==")
    say(f"model: {TREES}-tree RandomForestClassifier (n_jobs=1), {len(FEATURES)} float features; "
        f"batch_size {bench.args.batch_size}; mlopsfile: concurrency {bench.args.concurrency}, "
        f"num_cpus {bench.args.num_cpus} per replica; {os.cpu_count()} CPUs")
    if bench.args.job_env:
        say(f"what-if: the Ray head and its jobs ran with {' '.join(bench.args.job_env)}")
    for inputs in bench.inputs.values():
        say(f"input {inputs.label}: {inputs.rows:,} rows in {inputs.files} parquet files ({inputs.bytes / MB:,.0f} MB)")
    if baseline is None:
        return
    say(f"\n{'throughput':<{LABEL_WIDTH}}{'rows':>11}{'seconds':>10}{'rows/s':>12}{'vs baseline':>13}   others' CPU")
    for result in baselines:
        say(throughput_row(f"{result.label} (1 process, loop)", result, result.seconds, baseline))
    if len(baselines) > 1:
        say(throughput_row(baseline.label, baseline, baseline.seconds, baseline, others=False))
    say("each mlopsfile run against the mean of the baselines just before and just after it:")
    for result in runs:
        near = bracketing(bench.results, result)
        say(throughput_row(f"{result.label}, whole apply", result, result.seconds, near))
        if result.score_s is not None:
            say(throughput_row(f"{result.label}, score_and_write_s", result, result.score_s, near, others=False))
    for label, head in (("mlopsfile 1x", "the first job on a fresh head, which also starts Ray Data's three "
                                          "cluster-wide service actors"),
                        (WARM_1X, "a head that has run a Ray Data job before")):
        run = results.get(label)
        if run is not None:
            near = bracketing(bench.results, run)
            wall, scored = run.rate() / near.rate(), run.rate(run.score_s) / near.rate()
            say(f"goal: {label} ({head}) rows/s >= {THROUGHPUT_GOAL}x the baseline ({near.seconds:.1f} s, "
                f"{near.label}): whole apply {wall:.2f}x {verdict(wall >= THROUGHPUT_GOAL)}; "
                f"score_and_write {scored:.2f}x {verdict(scored >= THROUGHPUT_GOAL)}")
    big = results.get(f"mlopsfile {SCALE}x")
    if big is not None:
        # Its rows/s above are over the baseline's on the 1x input, where the model load weighs 4x as much.
        near = bracketing(bench.results, big)
        scaled = near.load_s + big.rows / loop_rate(near)
        say(f"{big.label} against the baseline scaled to its {big.rows:,} rows ({scaled:.1f} s: imports and model "
            f"load once, the loop {big.rows / near.rows:.0f}x): {scaled / big.seconds:.2f}x "
            f"{verdict(scaled / big.seconds >= THROUGHPUT_GOAL)}")
    one = results.get("mlopsfile 1x")
    say("\npeak memory (MB)                  job RSS    job PSS  head services RSS  job+head RSS")
    for result in bench.results:
        peak = result.usage
        head = f"{peak.head_rss / MB:>17,.0f}" if result in runs else f"{'-':>17}"
        say(f"{result.label:<30}{peak.job_rss / MB:>11,.0f}{peak.job_pss / MB:>11,.0f}  {head}"
            f"{peak.all_rss / MB:>14,.0f}")
    for result in runs:
        parts = ", ".join(f"{role} {n}x {rss / MB:,.0f}" for role, (n, rss) in sorted(result.usage.at_job_peak.items()))
        say(f"  {result.label} at its job-RSS peak: {parts}")
    if one is not None and big is not None:
        rss, pss = big.usage.job_rss / one.usage.job_rss, big.usage.job_pss / one.usage.job_pss
        total = big.usage.all_rss / one.usage.all_rss
        say(f"goal: peak job RSS {SCALE}x / 1x <= {MEMORY_GOAL}x: {rss:.2f}x {verdict(rss <= MEMORY_GOAL)} "
            f"(PSS {pss:.2f}x; job+head RSS {total:.2f}x)")
        say(f"mlopsfile 1x peak job RSS / baseline peak RSS: {one.usage.job_rss / baseline.usage.job_rss:.2f}x")
        say(steady_state(results.get(WARM_1X, one), big, baseline))
    say(f"\nCPU seconds by role (the machine had {os.cpu_count()} cores x the phase's wall time)")
    for result in bench.results:
        usage = result.usage
        parts = ", ".join(f"{role} {seconds:,.1f}" for role, seconds in
                          sorted(usage.cpu_by_role.items(), key=lambda item: -item[1]) if seconds >= 0.05)
        say(f"  {result.label} ({usage.seconds:.1f} s x {os.cpu_count()} = {usage.seconds * (os.cpu_count() or 1):,.0f}):"
            f" {parts}; this script (apply, sampling) {usage.cpu_script_s:,.1f}; others {usage.cpu_others_s:,.1f}")
    for result in runs:
        for note in result.notes:
            say(f"{result.label}: {note}")
    say("others' CPU: the machine's busy CPU time during the phase minus that of the measured processes and "
        "of this script, per second")


def is_baseline(result: Result) -> bool:
    return result.label.startswith("baseline")


def reference(baselines: list[Result]) -> Result | None:
    """The one baseline, or the mean of several (the speed of a shared machine drifts over minutes)."""
    if len(baselines) < 2:
        return baselines[0] if baselines else None
    mean = sum(b.seconds for b in baselines) / len(baselines)
    return Result(f"baseline, mean of {len(baselines)}", baselines[0].rows, mean, usage=baselines[0].usage,
                  load_s=sum(b.load_s for b in baselines) / len(baselines))


def bracketing(results: list[Result], run: Result) -> Result:
    """What ``run`` is judged against: the mean of the baselines run just before and just after it."""
    at = results.index(run)
    before = next((r for r in reversed(results[:at]) if is_baseline(r)), None)
    after = next((r for r in results[at + 1:] if is_baseline(r)), None)
    near = reference([b for b in (before, after) if b is not None])
    assert near is not None  # the first baseline runs before any job
    return near


def loop_rate(baseline: Result) -> float:
    """Rows/s of the baseline's loop, after its imports and model load."""
    return baseline.rows / (baseline.seconds - baseline.load_s)


def steady_state(one: Result, big: Result, baseline: Result) -> str:
    """What the 1x and 4x applies say together: the rate each further row costs, and the cost of a job
    before its rows (start, model load, tail), as a line against the baseline's loop after its model load."""
    marginal = (big.rows - one.rows) / (big.seconds - one.seconds)
    fixed = one.seconds - one.rows / marginal
    loop = loop_rate(baseline)
    line = (f"{one.label} and {SCALE}x together: each further row at {marginal:,.0f} rows/s, {marginal / loop:.2f}x the "
            f"baseline's loop ({loop:,.0f} rows/s after its {baseline.load_s:.1f} s of imports and model load); "
            f"a job's cost before and after its rows: {fixed:.1f} s")
    # rows / (fixed + rows / marginal) >= goal * rows / (load + rows / loop), solved for rows
    per_row = 1 / loop - THROUGHPUT_GOAL / marginal
    if per_row > 0:
        line += (f"; at these figures a run reaches {THROUGHPUT_GOAL}x the baseline from about "
                 f"{max(0.0, (THROUGHPUT_GOAL * fixed - baseline.load_s) / per_row):,.0f} rows")
    return line


def throughput_row(label: str, result: Result, seconds: float, baseline: Result, others: bool = True) -> str:
    """One row; ``others``: how many cores other work on the machine took meanwhile, on average."""
    rate = result.rows / seconds
    usage = result.usage
    busy = f"{usage.cpu_others_s / usage.seconds:>10.2f} cores" if others and usage.seconds else ""
    return f"{label:<{LABEL_WIDTH}}{result.rows:>11,}{seconds:>10.1f}{rate:>12,.0f}{rate / baseline.rate():>10.2f}x  {busy}"


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, help=f"rows of the 1x input (default {DEFAULT_ROWS:,}, --quick {QUICK_ROWS:,})")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run over {QUICK_ROWS:,} rows")
    parser.add_argument("--files", type=int, default=FILES, help=f"files of the 1x input (default {FILES})")
    parser.add_argument("--batch-size", type=int, default=4096, help="rows per model call, both sides (default 4096)")
    parser.add_argument("--concurrency", type=int, default=2, help="model replicas of the batch job (default 2)")
    parser.add_argument("--num-cpus", type=float, default=0.5,
                        help="CPUs each replica reserves (default 0.5: two replicas leave one CPU for "
                             "the Ray Data tasks that reserve a whole CPU: ListFiles, Write)")
    parser.add_argument("--job-env", action="append", default=[], metavar="NAME=VALUE",
                        help="what-if: an environment variable for the Ray head, which its jobs inherit "
                             "(e.g. RAY_DATA_OP_RESERVATION_RATIO=0.3); repeatable")
    parser.add_argument("--only-1x", action="store_true",
                        help=f"skip the {SCALE}x input (quicker; no memory ratio is reported)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project directory")
    parser.add_argument("--baseline-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.rows = args.rows or (QUICK_ROWS if args.quick else DEFAULT_ROWS)
    if any("=" not in item for item in args.job_env):
        parser.error("--job-env takes NAME=VALUE")
    return args


def steps(bench: Bench) -> None:
    bench.write_project()
    say("set-up")
    bench.train()
    bench.write_inputs("1x", bench.args.rows, bench.args.files)
    if not bench.args.only_1x:
        bench.write_inputs(f"{SCALE}x", SCALE * bench.args.rows, SCALE * bench.args.files)
    bench.run_baseline()
    bench.open_project()
    bench.start_head()
    bench.run_batch("1x")
    bench.check_predictions()
    bench.run_baseline("baseline after 1x")  # each 1x run has a baseline just before and just after it
    if bench.args.only_1x:
        return
    # The first job on a fresh head also starts Ray Data's service actors;
    # a head that is kept running (as `mlopsfile watch` keeps it) pays that once.
    bench.run_batch("1x", WARM_1X)
    bench.run_baseline("baseline after 1x again")
    bench.run_batch(f"{SCALE}x")
    stop_local_ray(bench.project)  # the first baseline ran with no head either
    bench.run_baseline("baseline again")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.baseline_child:
        input_dir, output, model_uri, tracking_uri, batch_size = args.baseline_child
        return baseline_child(Path(input_dir), Path(output), model_uri, tracking_uri, int(batch_size))
    for name in FOREIGN_ENV:
        os.environ.pop(name, None)
    os.environ.update(item.split("=", 1) for item in args.job_env)  # the head starts with (a copy of) ours
    root = Path(tempfile.mkdtemp(prefix="mlopsfile-batch-bench-", dir="/tmp"))
    bench = Bench(args, root)
    started = time.monotonic()
    status = 1
    with sigterm_as_interrupt():
        try:
            say(f"project dir {root}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
            steps(bench)
            say(f"load average {os.getloadavg()[0]:.2f}")
            status = 0
        except KeyboardInterrupt:
            say("interrupted; cleaning up")
            status = 130
        except Exception as exc:
            say(f"FAILED: {type(exc).__name__}: {exc}")
        finally:
            cleanup(bench, root, args.keep)
    report(bench)
    say(f"\ntotal time {time.monotonic() - started:.0f} s")
    return status


def cleanup(bench: Bench, root: Path, keep: bool) -> None:
    # A second Ctrl-C must not cut the clean-up short and leave a Ray head running.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        bench.stop()
        if keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())
