"""Planner wall time: a no-change ``plan`` over 10, 100 and 1,000 synthetic deployments.

Observation comes from an in-memory driver that reports every deployment exactly as a
real driver would after an apply (ownership marks, the applied serving config, health
RUNNING), and models resolve through an in-memory registry, so the figures are
mlopsfile's own work: spec loading and validation, resolution bookkeeping, digests,
observation plumbing, the state store read and the diff.

The baseline, measured in the same run on the same files, is a single-process loop that
does nothing but ``yaml.load_all`` each spec file with the same YAML loader mlopsfile
uses (libyaml's CSafeLoader where installed). ``plan / baseline`` says how much the planner costs on top of reading
the YAML at all; ``1000/100`` says whether it scales linearly (10x the deployments should
cost about 10x the time).

    .venv/bin/python bench/planning.py            # 10, 100, 1000; median of 5 runs
    .venv/bin/python bench/planning.py --quick    # 10, 100, 1000; median of 3 runs
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # mlopsfile, when run as a plain script

from mlopsfile.api import Project, _now  # noqa: E402
from mlopsfile.config import load_settings  # noqa: E402
from mlopsfile.desired import build_desired, online_serving  # noqa: E402
from mlopsfile.plan.planner import make_plan  # noqa: E402
from mlopsfile.plan.types import Action, Plan  # noqa: E402
from mlopsfile.resources import (  # noqa: E402
    DesiredDeployment,
    Health,
    ObservedDeployment,
    ObservedState,
    OnlineServing,
    Ownership,
    ResolvedModel,
)
from mlopsfile.spec.documents import validate_document  # noqa: E402
from mlopsfile.spec.loader import spec_files  # noqa: E402
from mlopsfile.spec.references import check_references  # noqa: E402
from mlopsfile.spec.specset import SpecSet  # noqa: E402
from mlopsfile.spec.yaml_source import SAFE_LOADER, read_yaml_documents  # noqa: E402

RUNTIME_DIGEST = "bench0runtime000"
GOAL_SCALING = 12.0  # 1000/100 at most this: linear, with some slack
GOAL_SECONDS_1000 = 2.0


# -- synthetic project -------------------------------------------------------------------


MODEL = """\
apiVersion: mlopsfile/v1
kind: Model
metadata:
  name: m{i:04d}
  labels:
    team: team-{team}
spec:
  uri: models:/m{i:04d}@champion
  description: Synthetic model {i} for the planning benchmark.
"""

DEPLOYMENT = """\
---
apiVersion: mlopsfile/v1
kind: Deployment
metadata:
  name: d{i:04d}
  labels:
    team: team-{team}
    tier: online
  annotations:
    owner: bench
spec:
  model: m{i:04d}
  target:
    type: online
    route: /d{i:04d}
    replicas: {replicas}
    resources:
      num_cpus: 0.1
      memory: 256Mi
    max_ongoing_requests: 16
"""

BATCHING = """\
    batching:
      max_batch_size: 16
      batch_wait_timeout_s: 0.01
"""


def write_project(root: Path, count: int, per_file: int) -> None:
    """mlopsfile.yaml plus ``count`` Model + Deployment pairs, ``per_file`` pairs per file."""
    root.mkdir(parents=True)
    state = root / ".mlopsfile"
    (root / "mlopsfile.yaml").write_text(
        f"project: plan-bench\nspecs: specs\nstate:\n  url: sqlite:///{state / 'state.db'}\n"
        f"mlflow:\n  tracking_uri: sqlite:///{state / 'unused-mlflow.db'}\n"
    )
    specs = root / "specs"
    specs.mkdir()
    for start in range(0, count, per_file):
        parts = []
        for i in range(start, min(count, start + per_file)):
            text = MODEL.format(i=i, team=i % 7) + DEPLOYMENT.format(i=i, team=i % 7, replicas=1 + i % 3)
            parts.append(text + (BATCHING if i % 2 else ""))
        (specs / f"stack-{start:04d}.yaml").write_text("---\n".join(parts))


class MemoryResolver:
    """The registry, in memory: every alias resolves to version 3 with a stable digest."""

    def resolve(self, name: str, uri: str) -> ResolvedModel:
        registered = uri.removeprefix("models:/").split("@")[0]
        return ResolvedModel(
            name=name, uri=uri, registered_name=registered, version="3", alias="champion",
            pinned_uri=f"models:/{registered}/3", run_id=hashlib.sha1(registered.encode()).hexdigest(),
            digest="sha256:" + hashlib.sha256(registered.encode()).hexdigest(),
        )


@dataclass
class MemoryDriver:
    """An online driver whose live state is a list in memory; planning only reads it."""

    deployments: list[ObservedDeployment] = field(default_factory=list)
    target: str = "online"

    def observe(self) -> list[ObservedDeployment]:
        return list(self.deployments)

    def _refuse(self, *_: object) -> None:
        raise RuntimeError("the planning benchmark never applies")

    create = update = replace = restore = delete = _refuse

    def health(self, name: str) -> Health | None:
        found = next((d for d in self.deployments if d.name == name), None)
        return found.health if found else None


def observed_as_applied(plan: Plan) -> list[ObservedDeployment]:
    """What a real driver reports after applying ``plan``'s creates: marks and config."""
    live = []
    for change in plan.changes:
        assert change.action == Action.CREATE and change.desired is not None
        serving: OnlineServing = change.desired.serving
        live.append(ObservedDeployment(
            name=change.name,
            ownership=Ownership(project=plan.project, resource=change.address,
                                spec_digest=change.desired.spec_digest, revision=change.revision),
            serving=serving,
            health=Health(status="RUNNING", running_replicas=serving.replicas or 1,
                          target_replicas=serving.replicas or 1),
            details={"route": serving.route, "source": "bench"},
        ))
    return live


def open_project(root: Path, driver: MemoryDriver) -> Project:
    # A new Project per run, as each CLI invocation makes one (state store included).
    return Project(load_settings(root), resolver_override=MemoryResolver(), drivers_override={"online": driver},
                   runtime_digest_override=RUNTIME_DIGEST)


# -- timing ------------------------------------------------------------------------------


def timed(function: Callable[[], object], runs: int) -> tuple[float, object]:
    """Median wall time in seconds of ``runs`` calls (after one untimed call), and a result."""
    result = function()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        result = function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), result


def yaml_baseline(root: Path) -> int:
    documents = 0
    for path in spec_files(root / "specs"):
        documents += sum(1 for _ in yaml.load_all(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER))
    return documents


def yaml_pure_baseline(root: Path) -> int:
    documents = 0
    for path in spec_files(root / "specs"):
        documents += sum(1 for _ in yaml.load_all(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader))
    return documents


def stage_breakdown(root: Path, driver: MemoryDriver, runs: int) -> dict[str, float]:
    """The steps of Project.plan one by one (same functions, in the same order)."""
    stages: dict[str, float] = {}
    stages["open project: settings + state store"], project = timed(lambda: open_project(root, driver).store, runs)
    project = open_project(root, driver)
    settings = project.settings
    stages["find spec files"], files = timed(lambda: spec_files(settings.specs), runs)
    assert isinstance(files, list)

    def read_yaml() -> list[tuple[str, object]]:
        raws = []
        for path in files:
            documents, errors = read_yaml_documents(path.read_text(encoding="utf-8"), str(path))
            assert not errors
            raws.extend(documents)
        return raws

    stages["read YAML with positions"], raws = timed(read_yaml, runs)
    if SAFE_LOADER is not yaml.SafeLoader:
        # For reference, not part of the sum: the same reader on the pure-Python parser.
        def read_pure() -> None:
            for path in files:
                read_yaml_documents(path.read_text(encoding="utf-8"), str(path), yaml.SafeLoader)

        stages["(what-if) the same with pure-Python yaml.SafeLoader"], _ = timed(read_pure, runs)

    def validate() -> list[object]:
        located = []
        for raw in raws:  # type: ignore[attr-defined]
            document, problems = validate_document(raw)
            assert not problems
            located.append(document)
        return located

    stages["validate documents (pydantic)"], located = timed(validate, runs)

    def references() -> SpecSet:
        specset = SpecSet.from_documents(located)  # type: ignore[arg-type]
        assert not check_references(specset, located)  # type: ignore[arg-type]
        return specset

    stages["cross-document checks"], specset = timed(references, runs)
    assert isinstance(specset, SpecSet)
    resolver = MemoryResolver()
    stages["resolve models (in-memory registry)"], _ = timed(
        lambda: [resolver.resolve(n, specset.model(n).spec.uri) for n in sorted(specset.models)], runs)
    stages["deployment digests"], _ = timed(
        lambda: [specset.deployment_digest(n) for n in sorted(specset.deployments)], runs)
    stages["spec-set digest"], _ = timed(specset.digest, runs)
    resolved = {n: resolver.resolve(n, specset.model(n).spec.uri) for n in specset.models}
    stages["serving configs + DesiredDeployment"], _ = timed(lambda: [
        DesiredDeployment(name=n, spec_digest="x", source=specset.deployments[n].at(),
                          model=resolved[specset.deployment(n).spec.model],
                          serving=online_serving(specset.deployment(n), resolved[specset.deployment(n).spec.model],
                                                 RUNTIME_DIGEST),
                          labels=specset.deployment(n).metadata.labels)
        for n in sorted(specset.deployments)], runs)
    stages["= build_desired (all of the above from resolve on)"], desired = timed(
        lambda: build_desired(specset, resolver, settings.project, RUNTIME_DIGEST), runs)
    stages["observe (in-memory driver + ObservedState)"], observed = timed(project.observe, runs)
    stages["state store: last revisions (SQLite)"], revisions = timed(project.store.last_revisions, runs)
    stages["make_plan (the diff)"], plan = timed(
        lambda: make_plan(desired, observed, revisions, _now()), runs)  # type: ignore[arg-type]
    # Not part of plan(), but `plan -o FILE` writes it: shown for scale.
    stages["(extra) plan.model_dump_json for plan -o"], _ = timed(plan.model_dump_json, runs)  # type: ignore[attr-defined]
    return stages


@dataclass
class Size:
    count: int
    baseline_s: float
    plan_s: float
    make_plan_s: float
    stages: dict[str, float]
    c_baseline_s: float | None = None
    plan_min_s: float = 0.0
    baseline_min_s: float = 0.0


def interleaved(functions: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    """Wall times of several functions, taking turns run by run.

    Taking turns puts the baseline and the planner under the same background load on
    a shared machine, so their ratio is steadier than if each ran in its own stretch.
    """
    for function in functions.values():
        function()  # warm: imports, pydantic schema builds, SQLite file creation
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(runs):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            samples[name].append(time.perf_counter() - started)
    return samples


def measure(count: int, work: Path, runs: int, per_file: int) -> Size:
    root = work / f"n{count}"
    write_project(root, count, min(per_file, count))
    driver = MemoryDriver()
    # The live state a real apply would leave: plan against nothing, then "apply" it.
    first = open_project(root, driver).plan().plan
    driver.deployments = observed_as_applied(first)
    plan = open_project(root, driver).plan().plan
    if plan.has_changes or len(plan.unchanged) != count:
        raise AssertionError(f"a no-change plan over {count} deployments shows changes: "
                             f"{[(c.action.value, c.name, c.reason) for c in plan.changes[:3]]}")
    assert yaml_baseline(root) == 2 * count
    project = open_project(root, driver)
    desired = project.desired()
    observed = ObservedState(deployments=tuple(driver.deployments))
    revisions = project.store.last_revisions()
    functions: dict[str, Callable[[], object]] = {
        "yaml": lambda: yaml_baseline(root),
        "plan": lambda: open_project(root, driver).plan(),
        "make_plan": lambda: make_plan(desired, observed, revisions, _now()),
    }
    if SAFE_LOADER is not yaml.SafeLoader:
        functions["c_yaml"] = lambda: yaml_pure_baseline(root)
    samples = interleaved(functions, runs)
    median = {name: statistics.median(values) for name, values in samples.items()}
    return Size(count, median["yaml"], median["plan"], median["make_plan"], stage_breakdown(root, driver, runs),
                median.get("c_yaml"), plan_min_s=min(samples["plan"]), baseline_min_s=min(samples["yaml"]))


# -- report ------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def report(sizes: list[Size], runs: int) -> None:
    print()
    print(f"== no-change plan, median of {runs} interleaved runs (each run: a new Project, as one CLI call) ==")
    print(f"{'deployments':>11}{'yaml ms':>10}{'plan ms':>10}{'plan/yaml':>11}{'make_plan ms':>14}"
          f"{'make_plan/yaml':>16}{'µs/deployment':>15}{'py-yaml ms':>11}")
    for s in sizes:
        c_yaml = ms(s.c_baseline_s) if s.c_baseline_s is not None else "-"
        print(f"{s.count:>11}{ms(s.baseline_s):>10}{ms(s.plan_s):>10}{s.plan_s / s.baseline_s:>10.2f}x"
              f"{ms(s.make_plan_s):>14}{s.make_plan_s / s.baseline_s:>15.3f}x{s.plan_s / s.count * 1e6:>15.0f}"
              f"{c_yaml:>11}")
    print("  yaml = the baseline: yaml.load_all of the same files with mlopsfile's loader, in one loop, nothing else")
    print("  py-yaml = for reference only: the same loop with the pure-Python yaml.SafeLoader")
    by_count = {s.count: s for s in sizes}
    print()
    if 100 in by_count and 1000 in by_count:
        small, large = by_count[100], by_count[1000]
        scaling = large.plan_s / small.plan_s
        print(f"  plan 1000/100:      {scaling:.1f}x  (goal <= {GOAL_SCALING:g}: "
              f"{'MET' if scaling <= GOAL_SCALING else 'MISSED'}; from the fastest runs "
              f"{large.plan_min_s / small.plan_min_s:.1f}x)")
        print(f"  make_plan 1000/100: {large.make_plan_s / small.make_plan_s:.1f}x")
        print(f"  yaml 1000/100:      {large.baseline_s / small.baseline_s:.1f}x (baseline)")
        within = large.plan_s <= GOAL_SECONDS_1000
        print(f"  1000 deployments planned in {large.plan_s:.2f} s (fastest run {large.plan_min_s:.2f} s): "
              f"{'within' if within else 'NOT within'} {GOAL_SECONDS_1000:g} s")
    print()
    print("== stage breakdown, ms (share of the sum of stages) ==")
    labels = list(sizes[0].stages)
    header = "".join(f"{'n=' + str(s.count):>18}" for s in sizes)
    print(f"{'stage':<52}{header}")
    skip = ("=", "(extra)", "(what-if)")
    for s in sizes:
        s.stages["(extra) plan() minus the stages: not accounted for"] = max(
            0.0, s.plan_s - sum(v for k, v in s.stages.items() if not k.startswith(skip)))
    labels = list(sizes[0].stages)
    for label in labels:
        cells = ""
        for s in sizes:
            total = sum(v for k, v in s.stages.items() if not k.startswith(skip))
            value = s.stages[label]
            share = "" if label.startswith(skip) else f" ({value / total * 100:.0f}%)"
            cells += f"{ms(value) + share:>18}"
        print(f"{label:<52}{cells}")
    if len(sizes) >= 2:
        print()
        print(f"  growth of each stage from n={sizes[-2].count} to n={sizes[-1].count} "
              f"(x{sizes[-1].count // sizes[-2].count} deployments; about that much is linear):")
        for label in labels:
            before, after = sizes[-2].stages[label], sizes[-1].stages[label]
            print(f"    {label:<52}{after / before if before > 0 else float('nan'):>7.1f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer runs per size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000], help="deployment counts")
    parser.add_argument("--runs", type=int, help="timed runs per figure (default 5, --quick 3)")
    parser.add_argument("--per-file", type=int, default=1,
                        help="Model + Deployment pairs per spec file (default 1: one file per deployment)")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 5)
    work = Path(tempfile.mkdtemp(prefix="mlopsfile-plan-bench-"))
    started = time.monotonic()
    sizes: list[Size] = []
    try:
        for count in args.sizes:
            size = measure(count, work, runs, args.per_file)
            sizes.append(size)
            print(f"n={count}: plan {ms(size.plan_s)} ms (fastest {ms(size.plan_min_s)}), make_plan "
                  f"{ms(size.make_plan_s)} ms, yaml baseline {ms(size.baseline_s)} ms "
                  f"(fastest {ms(size.baseline_min_s)})", flush=True)
    except KeyboardInterrupt:
        print("interrupted")
        return 130
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(sizes, runs)
    print(f"\ntotal time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
