"""What a drift monitor costs the deployment it watches, and whether it keeps up.

One registered model (the quickstart iris pipeline) served by two identical online
Deployments of one project (1 replica, num_cpus 0.1 each); only the second is watched by a
Monitor (ks detector, windows of 500 rows, every request sampled, no actions):

  plain       the Deployment without a monitor
  monitored   the same Deployment; its ingress hands every answered request to the
              monitor's actor (drift-monitor:bench-drift) through its tap

Printed, each against a baseline of the same run:

  (a) req/s at concurrency 32 of monitored over plain, per round; goal >= 0.95x. For
      context, p50 at concurrency 1 (difference and ratio) and the CPU per request of the
      ingress replica and of the monitor actor
  (b) what the monitor did during the monitored points: requests answered, sampled and
      dropped by the tap; rows, windows tested and windows skipped by the actor (read
      before and after every point from the ingress' /-/stats and the actor's counters),
      and at the end `mlopsfile drift NAME --format json` and `mlopsfile status --format json`
  (c) detector time per window: the drift engine against the same alibi-detect detector
      called directly (bench/drift.py's measurement), on the monitor's own shape (iris
      reference, 500 x 4 windows) and on bench/drift.py's ks case; goal <= 1.1x

Points are taken in interleaved rounds, plain and monitored one after the other, their order
swapping every round; every ratio is formed within a round before its median [min-max] is
taken, as in bench/serving.py, whose helpers this script reuses. Everything runs in a
temporary project with its own local Ray head, MLflow and state store; it is all stopped
(by pid) and removed on exit, Ctrl-C and SIGTERM included.

    .venv/bin/python bench/monitor.py            # full run (about 4.5 minutes)
    .venv/bin/python bench/monitor.py --quick    # short run (about 2 minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/*.py, when run as a plain script

from serving import (
    DEPLOYMENT,
    MODEL,
    PYTHON,
    REPO_ROOT,
    Bench,
    Run,
    Target,
    add_load_arguments,
    check_answer,
    clean_env,
    finish_two_point_args,
    measure_point,
    median,
    paired_ratios,
    print_cpu,
    print_notes,
    print_points,
    ratio_text,
    run_bench,
    say,
    session_processes,
    time_steps,
    two_point_parser,
)

PLAIN, MONITORED = "plain", "monitored"
MONITOR_NAME = "bench-drift"
REFERENCE = "data/reference.parquet"
THROUGHPUT_GOAL = 0.95
DETECTOR_GOAL = 1.1
SETTLE_TIMEOUT_S = 15.0
MONITOR = """\
---
apiVersion: mlopsfile/v1
kind: Monitor
metadata:
  name: {name}
spec:
  deployment: {deployment}
  reference: {reference}
  detector: {{kind: ks, p_val: 0.05}}
  window: {{rows: {window}}}
  sample: {sample}
  on_drift: []
"""
# The monitor's counters that move while it works (runtime/drift_monitor.py MonitorCore.counters).
ACTOR_COUNTERS = ("rows", "windows", "drifted", "skipped_windows", "unparsed", "dropped", "errors", "mlflow_errors")


@dataclass
class Counters:
    """The monitored deployment's counters at one moment: its ingress and the monitor actor."""

    answered: int  # requests the ingress answered (every arm)
    tap: dict[str, int]  # sampled, sent, dropped, queued
    actor: dict[str, Any]  # MonitorCore.counters, with buffered and pending_windows

    def minus(self, before: Counters) -> dict[str, int]:
        delta = {"answered": self.answered - before.answered}
        delta |= {f"tap_{k}": int(self.tap.get(k, 0)) - int(before.tap.get(k, 0))
                  for k in ("sampled", "sent", "dropped")}
        delta |= {k: int(self.actor.get(k, 0)) - int(before.actor.get(k, 0)) for k in ACTOR_COUNTERS}
        return delta


@dataclass
class Work:
    """What the monitor did during one monitored point (warm-up included)."""

    round: int
    concurrency: int
    measured: int  # requests the load generator counted (after its warm-up)
    seconds: float  # from the read before the point to the read after it settled
    delta: dict[str, int]
    settled: bool


@dataclass
class Extra:
    work: list[Work] = field(default_factory=list)
    verdict_seconds: list[float] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)
    cli: list[str] = field(default_factory=list)
    detector: list[Any] = field(default_factory=list)  # bench/drift.py Results
    detector_labels: list[str] = field(default_factory=list)
    costs: list[tuple[str, float]] = field(default_factory=list)


def iris_features() -> Any:
    """The iris features of examples/quickstart/train.py, as the model was trained on them."""
    path = REPO_ROOT / "examples" / "quickstart" / "train.py"
    spec = importlib.util.spec_from_file_location("quickstart_train", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    features, _ = module.iris_frame()
    return features


class MonitorBench(Bench):
    """bench/serving.py's Bench with two identical Deployments, one watched by a Monitor."""

    extra: Extra
    incarnation: str = ""
    last_seq: int = 0

    def write_project(self) -> None:
        super().write_project()  # mlopsfile.yaml with a free port, own MLflow and state store
        text = MODEL
        for name in (PLAIN, MONITORED):
            text += DEPLOYMENT.format(name=name, model="iris", max_ongoing=self.args.max_ongoing)
        text += MONITOR.format(name=MONITOR_NAME, deployment=MONITORED, reference=REFERENCE, window=self.args.window,
                               sample=self.args.sample)
        (self.root / "specs" / "bench.yaml").write_text(text)
        (self.root / "data").mkdir(exist_ok=True)
        iris_features().to_parquet(self.root / REFERENCE)
        self.extra = Extra()

    def deploy(self) -> None:
        assert self.project is not None
        self.apply_project()  # PLAIN, MONITORED and the monitor, in one plan
        base = f"http://127.0.0.1:{self.http_port}"
        self.expected = check_answer(f"{base}/{PLAIN}/predict", self.body, None)
        check_answer(f"{base}/{MONITORED}/predict", self.body, self.expected)
        live = {m.name: m for m in self.project.monitors.observe()}
        if MONITOR_NAME not in live:
            raise RuntimeError(f"monitor/{MONITOR_NAME} is not running after apply (found {sorted(live)})")
        taps = {name: httpx.get(f"{base}/{name}/-/stats", timeout=10).json().get("taps") or {}
                for name in (PLAIN, MONITORED)}
        if taps[PLAIN] or MONITOR_NAME not in taps[MONITORED]:
            raise RuntimeError(f"expected a tap on {MONITORED} only, found {taps}")
        say(f"  monitor/{MONITOR_NAME}: {live[MONITOR_NAME].state}; taps: {PLAIN} none, {MONITORED} -> {MONITOR_NAME} "
            f"(sample {self.args.sample}, windows of {self.args.window} rows)")
        for name in (PLAIN, MONITORED):
            self.targets.append(Target(name, f"{base}/{name}/predict", self.monitor_watch(name)))

    def monitor_watch(self, app: str) -> Callable[[], dict[str, list[int]]]:
        """Processes of one deployment's ingress, with the monitor actor counted apart."""
        def watch() -> dict[str, list[int]]:
            session = self.head_session()
            if not session:
                return {}
            groups = session_processes(session, app)
            others = groups.pop("ray-other")
            monitor = [pid for pid in others if "DriftMonitor" in _title(pid)]
            return {**groups, "monitor": monitor, "ray-other": [pid for pid in others if pid not in monitor]}
        return watch

    # -- the monitor's counters ---------------------------------------------------------

    def counters(self) -> Counters:
        assert self.project is not None
        stats = httpx.get(f"http://127.0.0.1:{self.http_port}/{MONITORED}/-/stats", timeout=10).json()
        answered = sum(int(arm.get("requests", 0)) for arm in (stats.get("arms") or {}).values())
        tap = (stats.get("taps") or {}).get(MONITOR_NAME, {})
        history = self.project.monitors.history(MONITOR_NAME, self.last_seq)
        if self.incarnation and history["incarnation"] != self.incarnation:
            self.run.notes.append("the monitor actor restarted during the run: its counters started again")
            self.last_seq = 0
        self.incarnation = history["incarnation"]
        for verdict in history["verdicts"]:
            self.last_seq = max(self.last_seq, int(verdict["seq"]))
            if verdict.get("seconds") is not None:
                self.extra.verdict_seconds.append(float(verdict["seconds"]))
        return Counters(answered, tap, history["counters"])

    def settled(self) -> tuple[Counters, bool]:
        """Counters once every sampled request reached the actor (or was dropped) and every
        full window was tested (or skipped), or after SETTLE_TIMEOUT_S."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            now = self.counters()
            tap, actor = now.tap, now.actor
            delivered = int(tap.get("sampled", 0)) == int(tap.get("sent", 0)) + int(tap.get("dropped", 0)) \
                and not tap.get("queued")
            buffered = sum((actor.get("buffered") or {}).values())
            cut = (int(actor["rows"]) - buffered) // self.args.window
            tested = int(actor["windows"]) + int(actor["skipped_windows"]) + int(actor["errors"]) >= cut
            if (delivered and tested and not actor.get("pending_windows")) or time.monotonic() > deadline:
                return now, delivered and tested
            time.sleep(0.2)

    # -- measuring ----------------------------------------------------------------------

    def measure_rounds(self) -> None:
        """c=1 then c=top, plain and monitored back to back, their order swapping every round."""
        top = self.args.concurrency[-1]
        by_name = {t.server: t for t in self.targets}
        groups = [(1, self.args.duration), (top, self.args.duration_top)]
        self.counters()  # the verdicts of the warm-up check requests are not part of the run
        for number in range(1, self.args.rounds + 1):
            say(f"round {number}/{self.args.rounds}")
            order = [PLAIN, MONITORED] if number % 2 else [MONITORED, PLAIN]
            for concurrency, duration in groups:
                for name in order:
                    before = self.counters() if name == MONITORED else None
                    started = time.monotonic()
                    point = measure_point(by_name[name], concurrency, number, duration, self.args.warmup, self.args,
                                          self.body_file)
                    self.run.points.append(point)
                    if before is None:
                        continue
                    after, settled = self.settled()  # also keeps queued windows out of the next point
                    work = Work(number, concurrency, point.requests, time.monotonic() - started, after.minus(before),
                                settled)
                    self.extra.work.append(work)
                    d = work.delta
                    say(f"       monitor: answered {d['answered']}, sampled {d['tap_sampled']}, tap dropped "
                        f"{d['tap_dropped']}, rows in {d['rows']}, windows {d['windows']} "
                        f"(skipped {d['skipped_windows']})" + ("" if settled else "  (not settled)"))

    def final_counters(self) -> None:
        now, settled = self.settled()
        self.extra.totals = {"answered": now.answered, "tap": dict(now.tap), "actor": dict(now.actor),
                             "settled": settled}

    def read_cli(self) -> None:
        """What the CLI shows of the monitor: `mlopsfile drift NAME --format json` and `status --format json`."""
        lines = self.extra.cli
        base = [PYTHON, "-m", "mlopsfile"]
        drift = self._cli([*base, "drift", MONITOR_NAME, "--format", "json", "--limit", "100000"])
        if drift is not None:
            windows = drift.get("windows") or []
            stable = [w for w in windows if str(w.get("arm", "")).startswith("stable")]
            rows = [int(w.get("rows") or 0) for w in windows]
            seconds = [float(w["seconds"]) for w in windows if w.get("seconds") is not None]
            lines.append(f"  `mlopsfile drift {MONITOR_NAME} --format json`: {len(windows)} windows "
                         f"({len(stable)} of arm stable, {sum(bool(w.get('is_drift')) for w in windows)} drifted), "
                         f"{sum(rows)} rows, rows per window {sorted(set(rows))}, detector time per window "
                         + (f"median {median(seconds) * 1e3:.2f} ms [{min(seconds) * 1e3:.2f}-{max(seconds) * 1e3:.2f}]"
                            if seconds else "n/a")
                         + f", {len(drift.get('actions') or [])} actions")
        status = self._cli([*base, "status", "--format", "json"])
        if status is not None:
            row = next((r for r in status if r.get("kind") == "Monitor" and r.get("name") == MONITOR_NAME), None)
            if row is None:
                lines.append(f"  `mlopsfile status --format json`: no Monitor row named {MONITOR_NAME}")
            else:
                latest = row.get("latest") or {}
                lines.append(f"  `mlopsfile status --format json`: state {row.get('state')}, windows "
                             f"{row.get('windows')}, drifted {row.get('drifted')}, latest p-value "
                             f"{latest.get('p_value')}, "
                             f"error {row.get('error')}")

    def _cli(self, command: list[str]) -> Any:
        done = subprocess.run(command, cwd=self.root, env=clean_env({"NO_COLOR": "1"}), capture_output=True, text=True,
                              timeout=180, check=False)
        if done.returncode != 0:
            self.extra.cli.append(f"  `{' '.join(command[2:])}` failed ({done.returncode}): "
                                  f"{done.stderr.strip()[-300:]}")
            return None
        try:
            return json.loads(done.stdout)
        except ValueError:
            self.extra.cli.append(f"  `{' '.join(command[2:])}` printed no JSON: {done.stdout.strip()[:300]}")
            return None


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# -- (c) detector time per window, and in-process costs ------------------------------------


def detector_times(args: argparse.Namespace, features: Any) -> tuple[list[str], list[Any]]:
    """bench/drift.py's engine-vs-direct measurement: on this monitor's shape, and its own ks case."""
    import drift
    from alibi_detect import cd

    from runtime.drift_engine import DetectorSpec

    drift_args = drift.parse_args(["--windows", str(args.detector_windows), "--rows", str(args.window),
                                   "--kinds", "ks"])
    rng = np.random.default_rng(drift_args.seed)
    reference = features.to_numpy(dtype=np.float64)
    windows = []
    for i in range(args.detector_windows):
        window = reference[rng.integers(0, len(reference), args.window)].copy()
        if i % 2:  # half the windows drift, so both outcomes are in the timings
            window[:, 2] += 0.5  # petal_length
        windows.append(window)
    ours = drift.Case("ks", DetectorSpec("ks", p_val=0.05, feature_names=tuple(features.columns)), reference, windows,
                      lambda: cd.KSDrift(reference, p_val=0.05))
    theirs = next(c for c in drift.make_cases(drift_args) if c.kind == "ks")
    labels = [f"ks, this monitor's shape: {args.window}x{reference.shape[1]} iris rows vs the {len(reference)}-row "
              "iris reference", f"ks, bench/drift.py's case: {drift_args.rows}x{drift_args.features} normal rows vs "
              f"{drift_args.reference_rows} reference rows"]
    return labels, [drift.measure(ours, drift_args), drift.measure(theirs, drift_args)]


def monitor_costs(body: bytes, features: Any, window: int, budget_s: float) -> list[tuple[str, float]]:
    """Per-request cost of each step a monitored request adds, in this process (no Ray, no HTTP)."""
    from runtime.drift_engine import DetectorSpec, build_detector
    from runtime.drift_monitor import MonitorCore
    from runtime.drift_tap import MAX_BATCH, DriftTaps

    names = list(features.columns)
    reference = features.to_numpy(dtype=np.float64)
    batch = [("stable/1", body, None)] * MAX_BATCH
    # Windows never fill (window_rows larger than any batch), so offer only reads and buffers.
    core = MonitorCore({"name": "cost", "deployment": "cost", "features": names, "window_rows": 1_000_000,
                        "detector": {"kind": "ks", "p_val": 0.05}}, reference)

    def actor_offer() -> None:
        core.offer(batch)
        core.buffers.clear()

    engine = build_detector(DetectorSpec("ks", p_val=0.05, feature_names=tuple(names)), reference)
    rows = np.asarray(reference[np.random.default_rng(0).integers(0, len(reference), window)])
    steps = time_steps([("actor: read one batch of requests into rows (MonitorCore.offer)", actor_offer),
                        ("actor: test one window (engine.check)", lambda: engine.check(rows))], budget_s)
    per_request = [(f"{label}, per request", micros / (MAX_BATCH if "offer" in label else window))
                   for label, micros in steps]

    async def tap_offer() -> float:
        async def send(monitor: str, items: list[Any], dropped: int) -> None:
            return None

        taps = DriftTaps(send)
        taps.configure([{"monitor": "cost", "sample": 1.0}])
        best = float("inf")
        for _ in range(7):
            taps._taps[0].queue.clear()
            started = time.perf_counter()
            for _ in range(4000):  # below MAX_QUEUED: every offer appends
                taps.offer("stable/1", body, b"")
            best = min(best, (time.perf_counter() - started) / 4000 * 1e6)
        if taps.task is not None:
            taps.task.cancel()
        return best

    return [("ingress: tap offer (DriftTaps.offer, sample 1.0)", asyncio.run(tap_offer())), *per_request]


# -- report ------------------------------------------------------------------------------


def paired_p50(run: Run, concurrency: int) -> dict[int, tuple[float, float]]:
    mine = {p.round: p.p50_ms for p in run.of(MONITORED, concurrency)}
    base = {p.round: p.p50_ms for p in run.of(PLAIN, concurrency)}
    return {r: (mine[r] - base[r], mine[r] / base[r]) for r in sorted(mine) if r in base and base[r] > 0}


def spread(values: list[float], unit: str, digits: int = 2) -> str:
    text = f"{median(values):+.{digits}f} {unit}"
    return text + (f" [{min(values):+.{digits}f} to {max(values):+.{digits}f}]" if len(values) > 1 else "")


def cpu_of(run: Run, server: str, concurrency: int, group: str) -> list[float]:
    return [p.cpu_ms_per_req.get(group, 0.0) for p in run.of(server, concurrency)]


def round_ratios(run: Run, concurrency: int) -> list[tuple[int, float]]:
    """(round, req/s monitored / plain) of every round that measured both."""
    base = {p.round: p.rps for p in run.of(PLAIN, concurrency)}
    return [(p.round, p.rps / base[p.round]) for p in run.of(MONITORED, concurrency) if base.get(p.round)]


def others_of(run: Run, number: int, concurrency: int) -> float:
    """The CPU other work used during a round's two points at ``concurrency`` (the higher of the two)."""
    return max((p.others_busy or 0.0 for p in run.points if p.round == number and p.concurrency == concurrency
                and p.server in (PLAIN, MONITORED)), default=0.0)


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def report(run: Run, args: argparse.Namespace, extra: Extra) -> None:
    top = args.concurrency[-1]
    say("")
    say(f"== monitor overhead: closed loop, keep-alive, {args.rows} row(s) per request, {args.duration:g} s per point "
        f"at c=1 and {args.duration_top:g} s at c={top} after {args.warmup:g} s warm-up, median of {args.rounds} "
        f"round(s); both Deployments 1 replica x num_cpus 0.1, max_ongoing_requests {args.max_ongoing}; monitor: ks, "
        f"windows of {args.window} rows, sample {args.sample}, no actions ==")
    keys = list(dict.fromkeys((p.server, p.concurrency) for p in run.points if p.round > 0))
    print_points(run, keys, width=12)
    say("  others: CPU used by processes outside this benchmark during the point.")
    say("CPU ms per request by process (median over rounds; replica = the deployment's ingress replica, monitor = the")
    say("monitor actor, client = the load generator):")
    print_cpu(run, keys, width=12)
    say("")
    say(f"== (a) throughput at c={top}: monitored / plain, per round, then median [min-max] ==")
    ratios = paired_ratios(run, MONITORED, PLAIN, top)
    if ratios:
        say(f"  req/s monitored / plain at c={top}: {ratio_text(ratios)}")
        say("  per round (the higher others figure of its two points in brackets): "
            + ", ".join(f"r{r} {ratio:.3f} ({others_of(run, r, top):.0%})" for r, ratio in round_ratios(run, top)))
        say(f"  goal: monitored >= {THROUGHPUT_GOAL:.2f}x plain at c={top}: {median(ratios):.3f}x -> "
            f"{verdict(median(ratios) >= THROUGHPUT_GOAL)}")
    latency = paired_p50(run, 1)
    if latency:
        say(f"  p50 at c=1 monitored - plain: {spread([d for d, _ in latency.values()], 'ms')}   ratio "
            f"{ratio_text([r for _, r in latency.values()])}")
    for concurrency in (1, top):
        mine, base = cpu_of(run, MONITORED, concurrency, "replica"), cpu_of(run, PLAIN, concurrency, "replica")
        actor = cpu_of(run, MONITORED, concurrency, "monitor")
        if mine and base:
            say(f"  c={concurrency:<3} CPU ms/request: ingress replica monitored {median(mine):.3f} vs plain "
                f"{median(base):.3f} ({median(mine) - median(base):+.3f}); monitor actor {median(actor):.3f}")
    if extra.work:
        say("")
        say("== (b) what the monitor did during each monitored point (counter differences across the point, warm-up "
            "included; the ingress' /-/stats taps and the monitor actor's own counters) ==")
        say(f"{'round':>6}{'conc':>6}{'answered':>10}{'sampled':>9}{'share':>8}{'dropped':>9}{'rows in':>9}"
            f"{'windows':>9}{'skipped':>9}{'rows/s':>9}  settled")
        for w in extra.work:
            d = w.delta
            share = d["tap_sampled"] / d["answered"] if d["answered"] else float("nan")
            say(f"{w.round:>6}{w.concurrency:>6}{d['answered']:>10}{d['tap_sampled']:>9}{share:>8.1%}"
                f"{d['tap_dropped']:>9}{d['rows']:>9}{d['windows']:>9}{d['skipped_windows']:>9}"
                f"{d['rows'] / w.seconds:>9.0f}  {'yes' if w.settled else 'NO'}")
        total = {k: sum(w.delta[k] for w in extra.work) for k in extra.work[0].delta}
        share = total["tap_sampled"] / total["answered"] if total["answered"] else float("nan")
        say(f"  monitored points: {total['answered']} requests answered, {total['tap_sampled']} sampled "
            f"({share:.1%}; spec {args.sample}), {total['tap_sent']} sent to the actor, {total['tap_dropped']} "
            f"dropped by the tap, {total['dropped']} counted as dropped by the actor (tap drops it was told of, full "
            f"buffers); {total['rows']} rows read, {total['windows']} windows tested ({total['drifted']} drifted), "
            f"{total['skipped_windows']} skipped, {total['unparsed']} unparsed, {total['errors']} detector errors, "
            f"{total['mlflow_errors']} MLflow errors")
    if extra.totals:
        tap, actor = extra.totals["tap"], extra.totals["actor"]
        say(f"  whole run (check requests and warm-ups included): ingress answered {extra.totals['answered']}; tap "
            f"sampled {tap.get('sampled')}, sent {tap.get('sent')}, dropped {tap.get('dropped')}, queued "
            f"{tap.get('queued')}; actor rows {actor.get('rows')}, windows {actor.get('windows')}, drifted "
            f"{actor.get('drifted')}, skipped {actor.get('skipped_windows')}, dropped {actor.get('dropped')}, "
            f"buffered {actor.get('buffered')}, last error {actor.get('last_error')}"
            + ("" if extra.totals.get("settled") else "  (not settled)"))
        full = (int(actor.get("rows") or 0) - sum((actor.get("buffered") or {}).values())) // args.window
        tested = int(actor.get("windows") or 0)
        say(f"  full windows cut from the rows read: {full}; tested {tested} ({tested / full:.0%}), skipped "
            f"{actor.get('skipped_windows')} (the detector fell behind), detector errors {actor.get('errors')}"
            if full else "  no full window was cut")
    if extra.verdict_seconds:
        s = extra.verdict_seconds
        say(f"  detector time per window inside the actor, under load: median {median(s) * 1e3:.2f} ms "
            f"[{min(s) * 1e3:.2f}-{max(s) * 1e3:.2f}] over {len(s)} windows (Verdict.seconds)")
    for line in extra.cli:
        say(line)
    if args.sample == 1.0 and args.rows == 1:
        say("  every request carries the same row, so every window differs from the iris reference: all drift, "
            "as expected (no actions are configured)")
    if extra.detector:
        say("")
        say("== (c) detector time per window: engine (runtime/drift_engine.py) vs direct alibi-detect, "
            "bench/drift.py's measurement (interleaved, median over windows, ratio per window) ==")
        say(f"{'case':<86}{'n':>4}{'engine ms':>11}{'direct ms':>11}{'ratio':>8}{'p10-p90':>12}{'min-max':>12}"
            f"{'overhead µs':>13}{'agree':>8}")
        for label, r in zip(extra.detector_labels, extra.detector, strict=True):
            values = r.ratios()
            deciles = statistics.quantiles(values, n=10) if len(values) > 1 else values * 9
            say(f"{label:<86}{len(values):>4}{median(r.engine_s) * 1e3:>11.3f}{median(r.direct_s) * 1e3:>11.3f}"
                f"{median(values):>7.3f}x{f'{deciles[0]:.2f}-{deciles[-1]:.2f}':>12}"
                f"{f'{min(values):.2f}-{max(values):.2f}':>12}{median(r.overhead_s) * 1e6:>13.0f}"
                f"{f'{r.agree}/{r.compared}':>8}")
        worst = max(median(r.ratios()) for r in extra.detector)
        say(f"  goal: engine <= {DETECTOR_GOAL}x direct per window: highest median {worst:.3f}x -> "
            f"{verdict(worst <= DETECTOR_GOAL)}")
    if extra.costs:
        say("")
        say("== in-process cost of what a monitored request adds (µs per request, best of 7 batches; "
            "no Ray, no HTTP) ==")
        for label, micros in extra.costs:
            say(f"  {label:<78}{micros:>9.2f} µs")
    print_notes(run)


# -- main --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = two_point_parser(__doc__, 6)
    parser.add_argument("--window", type=int, default=500, help="rows per drift window (default 500)")
    parser.add_argument("--sample", type=float, default=1.0,
                        help="the Monitor's sample (default 1.0: every request)")
    parser.add_argument("--detector-windows", type=int,
                        help="windows per detector case in (c) (default 60, --quick 15)")
    parser.add_argument("--costs", action=argparse.BooleanOptionalAction, default=True,
                        help="time the tap, the actor's reading and one window test in-process")
    add_load_arguments(parser, "both Deployments")
    args = finish_two_point_args(parser.parse_args(argv), 6)
    args.detector_windows = args.detector_windows or (15 if args.quick else 60)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def steps(bench: MonitorBench) -> Extra:
        bench.write_project()
        bench.train()
        bench.measure_ceiling()
        bench.open_project()
        bench.deploy()
        bench.measure_rounds()
        bench.final_counters()
        say("reading the monitor through the CLI (drift, status)")
        bench.read_cli()
        features = iris_features()
        say(f"(c) detector time per window: {args.detector_windows} windows per case (imports alibi-detect)")
        bench.extra.detector_labels, bench.extra.detector = detector_times(args, features)
        if args.costs:
            say("timing the monitor's steps in this process")
            bench.extra.costs = monitor_costs(bench.body, features, args.window, 0.7)
        return bench.extra

    return run_bench(args, "mlopsfile-bench-monitor-", MonitorBench, steps,
                     lambda run, extra: report(run, args, extra or Extra()))


if __name__ == "__main__":
    sys.exit(main())
