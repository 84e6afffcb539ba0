"""What progressive delivery costs callers: the router's extra hop and throughput mid-canary.

Two versions of the quickstart iris model are registered (the same pipeline trained
twice, so both cost the same to score); three mlopsfile Deployments are applied at
version 1, the alias moves to version 2 and a second apply starts two canaries through
the real control plane (Executor -> RolloutController -> OnlineDriver):

  steady        strategy direct: replaced by version 2, scored inside the ingress (no rollout)
  canary 100%   canary held at one step {weight: 100}: every request goes through the
                ingress to the candidate application "canary-100.candidate" by handle
  canary 20%    canary held at one step {weight: 20}: 80% scored in the ingress, 20%
                forwarded to "canary-20.candidate"
  bare-serve    one plain @serve.deployment (bench/plain_servers.py) with version 2 on the
                same cluster and proxy: same replica count, num_cpus and max_ongoing_requests
  bare-serve hop  the same plain deployment behind a plain ingress deployment that
                  forwards the body by DeploymentHandle (.score.remote(body)) and returns
                  its answer: the shape of canary 100%'s path with none of our code
  shadow        strategy shadow at sample 1.0: version 1 scored in the ingress, every
                request also mirrored to a second Model of version 1 ("shadow.candidate")

No reconcile loop runs, so both rollouts hold at their step for the whole run. Printed,
each against a baseline of the same run:

  (a) the router's extra hop: p50 at concurrency 1 of canary 100% minus (and over) steady;
      goal <= 3 ms. For context, Ray Serve's own handle hop (bare-serve hop minus
      bare-serve) and what our hop adds beyond it, both per round at concurrency 1
  (b) req/s at concurrency 32 of canary 20% over bare-serve; goal >= 0.8x; and steady over
      bare-serve for reference
  (c) what mirroring costs callers: p50 at concurrency 1 of shadow minus (and over)
      steady; goal <= 2 ms. For context, req/s at concurrency 32 of shadow over steady, and
      the mirrored count and agreement the ingress recorded

Points are taken in interleaved rounds (rotating order) and every difference or ratio is
formed within a round, as in bench/serving.py, whose helpers this script reuses. Everything
runs in a temporary project with its own local Ray head, MLflow and state store; it is
all stopped (by pid) and removed on exit, Ctrl-C and SIGTERM included.

    .venv/bin/python bench/rollout.py            # full run (about 7 minutes)
    .venv/bin/python bench/rollout.py --quick    # short run (about 4-5 minutes)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/serving.py, when run as a plain script

from serving import (
    DEPLOYMENT,
    MODEL,
    Bench,
    Run,
    Target,
    add_load_arguments,
    check_answer,
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
    two_point_parser,
)

from mlopsfile.resources import candidate_app

ROLLOUT = """\
  rollout:
    strategy: canary
    steps:
      - weight: {weight}
"""
# Both pinned to version 1, so the alias moving to version 2 leaves the shadow running.
SHADOW_MODELS = """\
---
apiVersion: mlopsfile/v1
kind: Model
metadata:
  name: iris-v1
spec:
  uri: models:/iris/1
---
apiVersion: mlopsfile/v1
kind: Model
metadata:
  name: iris-v1-twin
spec:
  uri: models:/iris/1
"""
SHADOW_ROLLOUT = """\
  rollout:
    strategy: shadow
    candidate: iris-v1-twin
    sample: 1.0
"""
# Deployment name -> the server name printed; canaries hold at their only step's weight.
STEADY, CANARY_100, CANARY_20, BARE, SHADOW = "steady", "canary 100%", "canary 20%", "bare-serve", "shadow"
BARE_HOP = BARE + " hop"  # the server name Bench.start_bare_serve(..., hop=True) gives
DEPLOYMENTS = {"steady": (STEADY, None), "canary-100": (CANARY_100, 100), "canary-20": (CANARY_20, 20)}
HOP_GOAL_MS = 3.0
SHADOW_GOAL_MS = 2.0
THROUGHPUT_GOAL = 0.8


class RolloutBench(Bench):
    """bench/serving.py's Bench with three Deployments, two of them rolling out."""

    def write_project(self) -> None:
        super().write_project()  # mlopsfile.yaml with a free port, own MLflow and state store
        text = MODEL + SHADOW_MODELS
        for name, (_, weight) in DEPLOYMENTS.items():
            text += DEPLOYMENT.format(name=name, model="iris", max_ongoing=self.args.max_ongoing)
            text += ROLLOUT.format(weight=weight) if weight else ""
        text += DEPLOYMENT.format(name=SHADOW, model="iris-v1", max_ongoing=self.args.max_ongoing) + SHADOW_ROLLOUT
        (self.root / "specs" / "bench.yaml").write_text(text)

    def pin_model(self) -> str:
        """The version models:/iris@champion resolves to now; what bare-serve loads."""
        assert self.project is not None
        model = next(m for m in self.project.desired().models if m.name == "iris")
        self.model_uri = model.pinned_uri
        return model.version

    def apply(self, what: str) -> None:
        assert self.project is not None
        started = time.monotonic()
        result = self.project.plan()
        self.applied = True  # from here on a failure still destroys what apply made
        report = self.project.apply(result.plan)
        if report.failed:
            raise RuntimeError(f"apply failed: {report.failed[0].message}")
        actions = ", ".join(f"{o.change.action.value} {o.change.name} ({o.outcome})" for o in report.outcomes)
        say(f"  {what}: {actions or 'nothing'} in {time.monotonic() - started:.1f} s")

    def start_rollouts(self, version: str) -> None:
        """Check both canaries hold at their step with the weights of the spec, then add the targets."""
        assert self.project is not None
        again = self.project.plan().plan
        if again.has_changes:
            detail = "; ".join(f"{c.action.value} {c.name}: {c.reason}" for c in again.changes)
            self.run.notes.append(f"a plan right after the rollout apply still shows changes: {detail}")
        driver = self.project.drivers["online"]
        base = f"http://127.0.0.1:{self.http_port}"
        self.expected = check_answer(f"{base}/steady/predict", self.body, None)
        for name, (server, weight) in DEPLOYMENTS.items():
            url = f"{base}/{name}/predict"
            check_answer(url, self.body, self.expected)
            if weight is None:
                self.targets.append(Target(server, url, self.ray_watch(name)))
                continue
            record = self.project.store.active_rollout(name)
            live = driver.observe_one(name)  # type: ignore[attr-defined]
            traffic = live.traffic if live is not None else None
            if record is None or record.state != "step" or traffic is None \
                    or traffic.weight_of("candidate") != weight or live.candidate is None:
                raise RuntimeError(f"{name}: expected a canary holding at {weight}%, found rollout "
                                   f"{record.state if record else None}, traffic {traffic}")
            arms = " / ".join(f"{a.role} v{a.version} {a.weight:g}%" for a in traffic.arms)
            say(f"  {name}: rollout {record.state} (step {record.step + 1}), traffic {arms}")
            if weight == 100:  # every answer must come from the candidate, i.e. through the hop
                with httpx.Client(timeout=30) as client:
                    seen = {client.post(url, content=self.body, headers={"content-type": "application/json"})
                            .headers.get("x-model-version") for _ in range(5)}
                if seen != {version}:
                    raise RuntimeError(f"{name} answered with model versions {seen}, expected only {version}")
            self.targets.append(Target(server, url, self.rollout_watch(name)))
        self.start_shadow()

    def start_shadow(self) -> None:
        """Check the shadow mirrors every request to its twin, then add it to the targets."""
        assert self.project is not None
        url = f"http://127.0.0.1:{self.http_port}/{SHADOW}/predict"
        check_answer(url, self.body, None)  # version 1, which may predict otherwise than steady's version 2
        record = self.project.store.active_rollout(SHADOW)
        live = self.project.drivers["online"].observe_one(SHADOW)  # type: ignore[attr-defined]
        traffic = live.traffic if live is not None else None
        if record is None or traffic is None or traffic.mode != "shadow" or traffic.shadow_sample != 1.0:
            raise RuntimeError(f"{SHADOW}: expected a shadow mirroring every request, found rollout "
                               f"{record.state if record else None}, traffic {traffic}")
        say(f"  {SHADOW}: rollout {record.state}, mirroring {traffic.shadow_sample:.0%} of requests")
        self.targets.append(Target(SHADOW, url, self.rollout_watch(SHADOW)))

    def rollout_watch(self, app: str) -> Callable[[], dict[str, list[int]]]:
        """Processes of one rolling-out deployment: its ingress and its candidate apart."""
        def watch() -> dict[str, list[int]]:
            session = self.head_session()
            if not session:
                return {}
            groups = session_processes(session, app)
            candidate = session_processes(session, candidate_app(app))["replica"]
            groups["ray-other"] = [pid for pid in groups["ray-other"] if pid not in candidate]
            return {"ingress": groups.pop("replica"), "candidate": candidate, **groups}
        return watch

    def measure_rounds(self) -> None:
        """c=1: steady, canary 100%, bare-serve, bare-serve hop; c=top: steady, canary 20%, bare-serve.

        Each group rotates its order every round, and points of one group follow each other,
        so the two sides of every difference or ratio see nearly the same background load.
        """
        top = self.args.concurrency[-1]
        by_name = {t.server: t for t in self.targets}
        groups = [(1, self.args.duration, [STEADY, CANARY_100, BARE, BARE_HOP, SHADOW]),
                  (top, self.args.duration_top, [STEADY, CANARY_20, BARE, SHADOW])]
        for number in range(1, self.args.rounds + 1):
            say(f"round {number}/{self.args.rounds}")
            for concurrency, duration, names in groups:
                shift = (number - 1) % len(names)
                for name in names[shift:] + names[:shift]:
                    self.run.points.append(measure_point(by_name[name], concurrency, number, duration,
                                                         self.args.warmup, self.args, self.body_file))

    def split_seen(self) -> list[str]:
        """The share each canary's candidate really answered, from the ingress' own counters."""
        assert self.project is not None
        driver = self.project.drivers["online"]
        lines = []
        for name, (_, weight) in DEPLOYMENTS.items():
            live = driver.observe_one(name)  # type: ignore[attr-defined]
            if weight is None or live is None:
                continue
            arms = driver.traffic_stats(live).get("arms", {})  # type: ignore[attr-defined]
            counts = {key: int(counters.get("requests", 0)) for key, counters in arms.items()}
            total = sum(counts.values())
            candidate = sum(n for key, n in counts.items() if key.startswith("candidate/"))
            errors = sum(int(counters.get("errors", 0)) for counters in arms.values())
            share = f"{candidate / total * 100:.1f}%" if total else "n/a"
            lines.append(f"  {name}: the candidate answered {share} of {total} requests (spec: {weight:g}%), "
                         f"{errors} 5xx; counters {counts}")
        live = driver.observe_one(SHADOW)  # type: ignore[attr-defined]
        if live is not None:
            arms = driver.traffic_stats(live).get("arms", {})  # type: ignore[attr-defined]
            answered = sum(int(c.get("requests", 0)) for c in arms.values())
            mirrored = sum(int(c.get("shadow_requests", 0)) for c in arms.values())
            compared = sum(int(c.get("compared_rows", 0)) for c in arms.values())
            agreed = sum(int(c.get("agreed_rows", 0)) for c in arms.values())
            dropped = sum(int(c.get("shadow_dropped", 0)) for c in arms.values())
            failed = sum(int(c.get("shadow_errors", 0)) for c in arms.values())
            agreement = f"{agreed / compared:.4f}" if compared else "n/a"
            lines.append(f"  {SHADOW}: answered {answered}, mirrored {mirrored} ({failed} failed, {dropped} dropped "
                         f"from a full queue), agreement {agreement} over {compared} rows")
        return lines


# -- report ------------------------------------------------------------------------------


def paired_p50(run: Run, server: str, baseline: str, concurrency: int) -> dict[int, tuple[float, float]]:
    """Round -> (p50 difference in ms, p50 ratio), server against baseline."""
    mine = {p.round: p.p50_ms for p in run.of(server, concurrency)}
    base = {p.round: p.p50_ms for p in run.of(baseline, concurrency)}
    return {r: (mine[r] - base[r], mine[r] / base[r]) for r in sorted(mine) if r in base and base[r] > 0}


def spread(values: list[float], unit: str) -> str:
    text = f"{median(values):+.2f} {unit}"
    return text + (f" [{min(values):+.2f} to {max(values):+.2f}]" if len(values) > 1 else "")


def difference_text(pairs: dict[int, tuple[float, float]]) -> str:
    """What paired_p50 found, as median [min to max] in ms and as a ratio."""
    return f"{spread([d for d, _ in pairs.values()], 'ms')}   ratio {ratio_text([r for _, r in pairs.values()])}"


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def report(run: Run, args: argparse.Namespace, split: list[str]) -> None:
    top = args.concurrency[-1]
    say("")
    say(f"== rollout overhead: closed loop, keep-alive, {args.rows} row(s) per request, {args.duration:g} s per "
        f"point at c=1 and {args.duration_top:g} s at c={top} after {args.warmup:g} s warm-up, median of "
        f"{args.rounds} round(s); every Serve replica 1 x num_cpus 0.1, max_ongoing_requests {args.max_ongoing} ==")
    keys = list(dict.fromkeys((p.server, p.concurrency) for p in run.points if p.round > 0))
    print_points(run, keys, width=14)
    say("  handler ms: x-inference-ms of the replica that scored (for forwarded requests, the candidate's);")
    say("  others: CPU used by processes outside this benchmark during the point.")
    say("CPU ms per request by process (median over rounds; client = the load generator):")
    print_cpu(run, keys, width=14)
    say("")
    say("== (a) the router's extra hop: p50 at c=1, canary 100% (ingress -> handle -> candidate) vs steady "
        "(scored in the ingress), and bare-serve hop (plain ingress -> handle -> plain model) vs bare-serve; "
        "per round, then median [min to max] ==")
    ours, bare = paired_p50(run, CANARY_100, STEADY, 1), paired_p50(run, BARE_HOP, BARE, 1)
    if ours:
        differences = [d for d, _ in ours.values()]
        say(f"  p50 canary 100% - steady: {difference_text(ours)}")
        say(f"  goal: extra hop <= {HOP_GOAL_MS:g} ms: {median(differences):+.2f} ms -> "
            f"{verdict(median(differences) <= HOP_GOAL_MS)}")
    if bare:
        say(f"  context, Ray Serve's own handle hop: p50 bare-serve hop - bare-serve: {difference_text(bare)}")
    beyond = [ours[r][0] - bare[r][0] for r in ours if r in bare]
    if beyond:
        say(f"  context, our hop beyond Ray Serve's: (canary 100% - steady) - (bare-serve hop - bare-serve): "
            f"{spread(beyond, 'ms')}")
    say(f"== (b) throughput at c={top} (req/s ratios per round, then median [min-max]) ==")
    for server, baseline, note in ((CANARY_20, BARE, ""), (STEADY, BARE, "  (reference: no rollout)"),
                                   (CANARY_20, STEADY, "  (what the canary costs over steady)")):
        values = paired_ratios(run, server, baseline, top)
        if values:
            say(f"  {server + ' / ' + baseline:<26} {ratio_text(values):<20}{note}")
    goal = paired_ratios(run, CANARY_20, BARE, top)
    if goal:
        say(f"  goal: canary 20% >= {THROUGHPUT_GOAL:.2f}x bare Ray Serve at c={top}: {median(goal):.2f}x -> "
            f"{verdict(median(goal) >= THROUGHPUT_GOAL)}")
    say("== (c) what shadowing costs callers: shadow (sample 1.0, scored in the ingress, mirrored in batches) "
        "vs steady (scored in the ingress), per round, then median [min to max] ==")
    mirrored = paired_p50(run, SHADOW, STEADY, 1)
    if mirrored:
        differences = [d for d, _ in mirrored.values()]
        say(f"  p50 shadow - steady at c=1: {difference_text(mirrored)}")
        say(f"  goal: shadow adds <= {SHADOW_GOAL_MS:g} ms to p50: {median(differences):+.2f} ms -> "
            f"{verdict(median(differences) <= SHADOW_GOAL_MS)}")
    values = paired_ratios(run, SHADOW, STEADY, top)
    if values:
        say(f"  {SHADOW + ' / ' + STEADY:<26} {ratio_text(values):<20}  (req/s at c={top}, every request mirrored)")
    if split:
        say("traffic split counted by the ingress (all requests of the run, warm-up included):")
        for line in split:
            say(line)
    print_notes(run)


# -- main --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = two_point_parser(__doc__, 5)
    add_load_arguments(parser, "every Serve replica")
    return finish_two_point_args(parser.parse_args(argv), 5)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def steps(bench: RolloutBench) -> list[str]:
        bench.write_project()
        bench.train()  # version 1, @champion
        bench.measure_ceiling()
        bench.open_project()
        say("mlopsfile: plan + apply of steady, canary-100, canary-20 and shadow at version 1 (starts the Ray head)")
        bench.apply("applied")
        bench.train()  # version 2, @champion moves to it
        version = bench.pin_model()
        waits = [bench.start_bare_serve("plain", hop) for hop in (False, True)]  # boot while the rollouts start
        say(f"mlopsfile: plan + apply after @champion moved to version {version}")
        bench.apply("applied")
        bench.start_rollouts(version)
        for wait in waits:
            wait()
        bench.measure_rounds()
        return bench.split_seen()

    return run_bench(args, "mlopsfile-bench-rollout-", RolloutBench, steps,
                     lambda run, split: report(run, args, split or []))


if __name__ == "__main__":
    sys.exit(main())
