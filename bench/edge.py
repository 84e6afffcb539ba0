"""Latency of one model on the edge target against the same model on the online target.

One registered scikit-learn model (the quickstart iris pipeline), one spec set applied
once with Project.plan() + Project.apply(): two Deployments of the same model version,

  online    type online: Ray Serve, 1 replica, num_cpus 0.1, no batching, reached
            through the project's Serve proxy (POST /iris/predict)
  edge      type edge: converted to ONNX (parity-checked) and built into a Docker image
            on a private engine (.ci/docker-engine), from the local base image
            .ci/edge-base-image builds; its container runs on the host network
            (the engine has no bridge) and serves POST /predict on a free loopback port

and, as context only, a third server:

  fastapi   FastAPI on uvicorn, one worker, scoring with MLflow pyfunc
            (bench/plain_servers.py, as in bench/serving.py)

Each is measured alone at concurrency 1 (closed loop, keep-alive, the same 1-row body),
in interleaved rounds in a rotating order; every ratio is formed within a round before
its median is taken, so load from other work on the machine falls on all servers alike.
The goal: edge p50 <= 0.5x online p50. It also prints the CPU time per request of each
server's processes, the image's size, the size of its layers above the base image and the
size of the ONNX model.

Everything runs in a temporary project directory with its own MLflow store, state store,
local Ray head (started by apply) and Docker engine (in a temporary directory of its own);
the container, servers, Ray head and engine are stopped by pid and the directories removed
on exit, Ctrl-C and SIGTERM included.

    .venv/bin/python bench/edge.py            # 5 rounds (about 3.5 minutes)
    .venv/bin/python bench/edge.py --quick    # one short round (about 2-2.5 minutes)

A first run on a machine also builds the base image's root file system (about a minute,
cached under ~/.cache/mlopsfile) and downloads the image's wheels.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/serving.py, when run as a plain script

from rollout import difference_text, paired_p50, verdict
from serving import (
    DEPLOYMENT,
    DEPLOYMENT_HEAD,
    MODEL,
    REPO_ROOT,
    START_TIMEOUT_S,
    Bench,
    Run,
    Target,
    add_load_arguments,
    bench_parser,
    check_answer,
    clean_env,
    free_port,
    median,
    print_cpu,
    print_notes,
    print_points,
    ratio_text,
    run_bench,
    say,
)

from mlopsfile.drivers.edge_parity import human_bytes

EDGE, ONLINE, FASTAPI = "edge", "online", "fastapi"
EDGE_NAME = "iris-edge"  # the edge Deployment; its image repository defaults to this name
LATENCY_GOAL = 0.5  # edge p50 over online p50
EDGE_DEPLOYMENT = DEPLOYMENT_HEAD + """\
    type: edge
    base_image: {base_image}
"""


def ci_script(name: str, *args: str, env: dict[str, str] | None = None,
              timeout: float = 900) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["bash", str(REPO_ROOT / ".ci" / name), *args], capture_output=True, text=True,
                          timeout=timeout, env=clean_env(env), check=False)
    if done.returncode != 0:
        raise RuntimeError(f".ci/{name} {' '.join(args)} failed (exit {done.returncode}): "
                           f"{done.stderr.strip()[-800:]}")
    return done


def read_pid(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text().strip())
    return None


def parent_pid(pid: int) -> int | None:
    with contextlib.suppress(OSError, IndexError, ValueError):
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return None


def mounts_under(directory: Path) -> list[str]:
    lines = Path("/proc/mounts").read_text().splitlines() if Path("/proc/mounts").exists() else []
    return [fields[1] for fields in (line.split() for line in lines)
            if len(fields) > 1 and fields[1].startswith(f"{directory}/")]


@dataclass
class EdgeBench(Bench):
    """bench/serving.py's Bench with an edge Deployment next to the online one, on a private Docker engine."""

    engine_dir: Path | None = None
    docker_host: str = ""
    base_image: str = ""
    image_ref: str = ""
    container: Any = None
    container_pid: int | None = None
    sizes: list[str] = field(default_factory=list)
    _docker: Any = None

    # -- the Docker engine ---------------------------------------------------------------

    def start_engine(self) -> None:
        # A directory of its own, not under the project: the engine mounts below it, and
        # it is removed only once nothing is mounted there any more. A short path, as the
        # engine's unix sockets live below it.
        self.engine_dir = Path(tempfile.mkdtemp(prefix="mlopsfile-bench-docker-", dir="/tmp"))
        say(f"docker: starting a private engine in {self.engine_dir}")
        started = time.monotonic()
        done = ci_script("docker-engine", "start", str(self.engine_dir))
        exports = [line for line in done.stdout.splitlines() if line.startswith("export DOCKER_HOST=")]
        if not exports:
            raise RuntimeError(f".ci/docker-engine printed no DOCKER_HOST: {done.stdout.strip()[-300:]}")
        self.docker_host = exports[-1].split("=", 1)[1]
        say(f"  engine up in {time.monotonic() - started:.1f} s at {self.docker_host} "
            f"(dockerd pid {read_pid(self.engine_dir / 'docker.pid')})")
        started = time.monotonic()
        done = ci_script("edge-base-image", env={"DOCKER_HOST": self.docker_host}, timeout=1800)
        self.base_image = done.stdout.strip().splitlines()[-1]
        say(f"  base image {self.base_image} ready in {time.monotonic() - started:.1f} s")

    def docker(self) -> Any:
        if self._docker is None:
            import docker

            self._docker = docker.DockerClient(base_url=self.docker_host)
        return self._docker

    def engine_pids(self) -> list[int]:
        """dockerd, its containerd and the container's shim: the engine's own processes."""
        assert self.engine_dir is not None
        pids = [read_pid(self.engine_dir / "docker.pid"),
                read_pid(self.engine_dir / "exec" / "containerd" / "containerd.pid")]
        if self.container_pid is not None:
            pids.append(parent_pid(self.container_pid))
        return [pid for pid in pids if pid]

    def stop_engine(self) -> None:
        if self.engine_dir is None:
            return
        if self._docker is not None:
            with contextlib.suppress(Exception):
                self._docker.close()
            self._docker = None
        try:
            ci_script("docker-engine", "stop", str(self.engine_dir), timeout=120)
            say("docker: engine stopped")
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            say(f"could not stop the Docker engine: {exc}")
        if self.args.keep:
            say(f"kept {self.engine_dir}")
        elif mounts := mounts_under(self.engine_dir):
            say(f"left {self.engine_dir} in place: {len(mounts)} mount(s) below it, e.g. {mounts[0]}")
        else:
            shutil.rmtree(self.engine_dir, ignore_errors=True)
        self.engine_dir = None

    # -- set-up --------------------------------------------------------------------------

    def write_project(self) -> None:
        super().write_project()  # mlopsfile.yaml with a free port, own MLflow and state store
        settings = self.root / "mlopsfile.yaml"
        settings.write_text(settings.read_text() + f'docker:\n  host: "{self.docker_host}"\n')
        text = MODEL + DEPLOYMENT.format(name="iris", model="iris", max_ongoing=self.args.max_ongoing)
        text += EDGE_DEPLOYMENT.format(name=EDGE_NAME, model="iris", base_image=self.base_image)
        (self.root / "specs" / "bench.yaml").write_text(text)

    def deploy(self) -> None:
        """Plan + apply both Deployments (serving.py's deploy_mlopsfile), then name the online target."""
        self.deploy_mlopsfile()
        for target in self.targets:
            if target.server == "mlopsfile":
                target.server = ONLINE
                target.watch = self.with_engine(target.watch)

    def with_engine(self, watch: Callable[[], dict[str, list[int]]]) -> Callable[[], dict[str, list[int]]]:
        """A watch that also counts the (idle) engine and container, so `others` is other people's work."""
        def both() -> dict[str, list[int]]:
            idle = self.engine_pids() + ([self.container_pid] if self.container_pid else [])
            return {**watch(), "docker": idle}
        return both

    def start_fastapi(self) -> Callable[[], None]:
        ready = super().start_fastapi()

        def wrapped() -> None:
            ready()
            target = self.targets[-1]
            target.watch = self.with_engine(target.watch)
        return wrapped

    # -- the edge container --------------------------------------------------------------

    def run_edge(self) -> None:
        """Run the image that apply built and tagged, on loopback, and wait for /healthz."""
        assert self.project is not None
        want = self.project.desired().edge(EDGE_NAME)
        if want is None:
            raise RuntimeError(f"no edge deployment {EDGE_NAME} in the desired state")
        self.image_ref = f"{want.image}:stable"
        port = free_port()
        say(f"edge: running {self.image_ref} on 127.0.0.1:{port} (host network)")
        started = time.monotonic()
        self.container = self.docker().containers.run(
            self.image_ref, command=["--host", "127.0.0.1", "--port", str(port)], network_mode="host", detach=True,
            name=f"{self.root.name}-edge")
        self.container.reload()
        self.container_pid = int(self.container.attrs["State"]["Pid"]) or None
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            self.container.reload()
            if self.container.status == "exited" or time.monotonic() > deadline:
                logs = self.container.logs(tail=15).decode(errors="replace")
                raise RuntimeError(f"the edge container is {self.container.status}, not healthy; logs:\n{logs}")
            time.sleep(0.2)
        say(f"  healthy in {time.monotonic() - started:.1f} s (server pid {self.container_pid} on the host)")
        check_answer(f"{url}/predict", self.body, self.expected)
        answer = httpx.post(f"{url}/predict", content=self.body, headers={"content-type": "application/json"},
                            timeout=30)
        version = answer.headers.get("x-model-version")  # as the online target sends it
        if version != want.model.version:
            raise RuntimeError(f"the edge container serves model version {version}, the plan pinned "
                               f"{want.model.version}")
        ray_groups = self.ray_watch(None)

        def watch() -> dict[str, list[int]]:
            # The idle Ray cluster counts as ours, so "others" means other people's work.
            return {"server": [self.container_pid] if self.container_pid else [], "docker": self.engine_pids(),
                    **ray_groups()}
        self.targets.insert(0, Target(EDGE, f"{url}/predict", watch))
        self.sizes = self.image_sizes(Path(want.edge_dir))

    def image_sizes(self, edge_dir: Path) -> list[str]:
        """The image, its layers above the base image, and the model it carries."""
        image = self.docker().images.get(self.image_ref)
        base = self.docker().images.get(self.base_image)
        history, base_history = image.history(), base.history()
        above = history[:max(0, len(history) - len(base_history))]  # newest first
        size, base_size = int(image.attrs.get("Size") or 0), int(base.attrs.get("Size") or 0)
        filled = [layer for layer in reversed(above) if int(layer.get("Size") or 0) > 0]
        lines = [f"  image {self.image_ref} ({image.short_id}): {human_bytes(size)}; base image {self.base_image}: "
                 f"{human_bytes(base_size)}",
                 f"  layers above the base: {human_bytes(sum(int(h.get('Size') or 0) for h in above))} "
                 f"(image minus base: {human_bytes(size - base_size)}) in {len(filled)} layer(s) with content "
                 f"({len(above)} history entries):"]
        for layer in filled:
            lines.append(f"    {human_bytes(int(layer['Size'])):>10}  {layer_text(layer.get('CreatedBy', ''))}")
        onnx = edge_dir / "model.onnx"
        onnx_text = human_bytes(onnx.stat().st_size) if onnx.is_file() else "missing"
        assert self.project is not None
        cached = self.project.settings.state_dir / "edge" / "models"
        original = sum(p.stat().st_size for p in cached.rglob("*") if p.is_file()) if cached.is_dir() else 0
        lines.append(f"  ONNX model: {onnx_text} (model.onnx); the MLflow model it came from: "
                     f"{human_bytes(original)} (its artifact directory)")
        return lines

    def stop_edge(self) -> None:
        if self.container is None:
            return
        try:
            self.container.remove(force=True)
            say("edge: container removed")
        except Exception as exc:  # docker.errors.APIError, or the engine already gone
            say(f"could not remove the edge container: {exc}")
        self.container = None

    def destroy_mlopsfile(self) -> None:
        """serving.py's clean-up calls this before it stops the Ray head: the container goes first,
        then the Serve application and the images (destroy), then the engine, whatever failed."""
        try:
            self.stop_edge()
            super().destroy_mlopsfile()
        finally:
            self.stop_engine()


def layer_text(created_by: str) -> str:
    """A layer's Dockerfile instruction, without the classic builder's shell prefix and content hashes."""
    text = created_by.strip()
    if text.startswith("|"):  # "|1 BASE_IMAGE=… /bin/sh -c …": the build arguments of a RUN step
        text = text[text.find("/bin/sh -c "):]
    text = text.replace("/bin/sh -c #(nop) ", "").replace("/bin/sh -c ", "RUN ")
    words = [word.split(":", 1)[0] + ":…" if word.startswith(("dir:", "file:")) else word for word in text.split()]
    text = " ".join(words)
    return text if len(text) <= 100 else text[:99] + "…"


# -- report ------------------------------------------------------------------------------


def report(run: Run, args: argparse.Namespace, sizes: list[str]) -> None:
    say("")
    say(f"== edge vs online latency: concurrency 1, closed loop, keep-alive, {args.rows} row(s) per request, "
        f"{args.duration:g} s per point after {args.warmup:g} s warm-up, median of {args.rounds} round(s); online: "
        f"Serve replica 1 x num_cpus 0.1, max_ongoing_requests {args.max_ongoing}, through the Serve proxy; edge: "
        f"the image's container on the host network; fastapi: uvicorn + pyfunc (context) ==")
    keys = list(dict.fromkeys((p.server, p.concurrency) for p in run.points))
    print_points(run, keys, width=20)
    say("  (generator ceiling): the load generator against a trivial server, the floor of any p50 here;")
    say("  handler ms: x-inference-ms, the handler's own timer (online and fastapi; the edge server sends none);")
    say("  others: CPU used by processes outside this benchmark during the point.")
    say("CPU ms per request by process (median over rounds; client = the load generator; docker = dockerd, "
        "containerd, the shim, and for the non-edge rows the idle edge server):")
    print_cpu(run, keys, width=20)
    say("")
    say("== p50 at c=1, per round, then median [min to max] ==")
    for server, baseline in ((EDGE, ONLINE), (EDGE, FASTAPI), (ONLINE, FASTAPI)):
        pairs = paired_p50(run, server, baseline, 1)
        if pairs:
            say(f"  {server + ' - ' + baseline:<18} {difference_text(pairs)}")
    mine = {p.round: p.p99_ms for p in run.of(EDGE, 1)}
    base = {p.round: p.p99_ms for p in run.of(ONLINE, 1)}
    p99 = [mine[r] / base[r] for r in sorted(mine) if r in base and base[r] > 0]
    if p99:
        say(f"  p99 edge / online  {ratio_text(p99)}")
    goal = [ratio for _, ratio in paired_p50(run, EDGE, ONLINE, 1).values()]
    if goal:
        say(f"goal: edge p50 <= {LATENCY_GOAL:g}x online p50: {median(goal):.2f}x -> "
            f"{verdict(median(goal) <= LATENCY_GOAL)}")
    if sizes:
        say("")
        say("== the edge image (docker image attrs Size; layers from its history) ==")
        for line in sizes:
            say(line)
    print_notes(run)


# -- main --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(__doc__, 5)
    parser.add_argument("--duration", type=float, help="seconds measured per point (default 5, --quick 2)")
    add_load_arguments(parser, "the Serve replica")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    # The shape bench/serving.py's Bench reads: one concurrency, every point equally long.
    args.concurrency = [1]
    args.duration_top = args.duration
    args.variant_rounds = args.rounds
    args.batching = False
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def steps(bench: EdgeBench) -> list[str]:
        bench.start_engine()
        bench.write_project()
        bench.train()
        bench.measure_ceiling()
        bench.open_project()  # converts to ONNX and checks parity (the plan's desired state)
        wait = bench.start_fastapi()  # boots while apply builds the image and starts Ray
        bench.deploy()
        wait()
        bench.run_edge()
        bench.measure_rounds()
        return bench.sizes

    return run_bench(args, "mlopsfile-bench-edge-", EdgeBench, steps, lambda run, sizes: report(run, args, sizes or []))


if __name__ == "__main__":
    sys.exit(main())
