"""Drift detection cost per window: the drift engine against direct alibi-detect calls.

For every detector kind, one detector is built through ``runtime.drift_engine`` and one
straight from alibi-detect (``KSDrift(x_ref, p_val=0.05)`` and friends, as a user would
write it) on the same reference. Both then see the same windows, interleaved: window i
goes to the engine first when i is even and to the direct detector first when it is odd,
so background load falls on both alike. Each figure is the median over windows; the
ratio is formed per window (engine time / direct time) before its median is taken.
Goal: engine ≤ 1.1x direct.

  ks, chi2, tabular   500 rows × 10 features per window, reference 5,000 rows
  mmd, lsdd           the same windows, reference 1,000 rows (a 5,000-row reference makes
                      every permutation index a 6,000 × 6,000 kernel matrix)
  cvm-online,         a chunk of 500 rows fed one row at a time (engine.update(chunk) vs a
  fet-online          loop of detector.predict(row)), both streams reset before each chunk;
                      reference 500 rows (cvm-online's threshold simulation is quadratic
                      in it). A last line feeds one long stream to both, without resets.

``overhead`` is the engine's time around the alibi-detect call (its total minus the
detector time it reports in ``Verdict.seconds``). torch runs on one thread by default, as
in a Ray actor (``--torch-threads``).

    .venv/bin/python bench/drift.py            # 60 windows per kind (about 4.5 minutes)
    .venv/bin/python bench/drift.py --quick    # 15 windows per kind (about 2 minutes)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/serving.py, when run as a plain script
# numba (online detectors) would write its compiled-code cache into the installed alibi-detect
# package; it goes under the temporary directory instead (kept between runs).
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "mlopsfile-bench-numba"))

from serving import median, say

from runtime.drift_engine import DetectorSpec, DriftEngine, build_detector

GOAL = 1.1
SHIFTED_FEATURE = 3


@dataclass
class Case:
    kind: str
    spec: DetectorSpec
    reference: np.ndarray
    windows: list[np.ndarray]
    direct: Callable[[], Any]  # builds the alibi-detect detector a user would write


@dataclass
class Result:
    kind: str
    shape: str
    reference_rows: int
    engine_s: list[float] = field(default_factory=list)
    direct_s: list[float] = field(default_factory=list)
    overhead_s: list[float] = field(default_factory=list)
    build_s: tuple[float, float] = (0.0, 0.0)
    agree: int = 0
    compared: int = 0
    note: str = ""

    def ratios(self) -> list[float]:
        return [e / d for e, d in zip(self.engine_s, self.direct_s, strict=True) if d > 0]


def make_cases(args: argparse.Namespace) -> list[Case]:
    from alibi_detect import cd

    rng = np.random.default_rng(args.seed)
    rows, features, count = args.rows, args.features, args.windows

    def normal(n: int) -> np.ndarray:
        return rng.standard_normal((n, features))

    def shifted(make: Callable[[int], np.ndarray]) -> list[np.ndarray]:
        # Half the windows drift, so both outcomes of the test are in the timings.
        windows = [make(rows) for _ in range(count)]
        for window in windows[1::2]:
            window[:, SHIFTED_FEATURE] += 0.5
        return windows

    def categorical(n: int) -> np.ndarray:
        return rng.choice(5, size=(n, features), p=[0.4, 0.25, 0.15, 0.1, 0.1]).astype(np.float64)

    def mixed(n: int) -> np.ndarray:
        x = normal(n)
        x[:, features // 2:] = categorical(n)[:, features // 2:]
        return x

    cat_columns = tuple(range(features // 2, features))
    ref, torch_ref = normal(args.reference_rows), normal(args.torch_reference_rows)
    cat_ref, mixed_ref = categorical(args.reference_rows), mixed(args.reference_rows)
    binary_ref = (rng.random((args.online_reference_rows, features)) < 0.3).astype(np.int64)
    online_ref = normal(args.online_reference_rows)
    normal_windows = shifted(normal)
    online = {"ert": 100, "window_sizes": [20, 50], "n_bootstraps": args.bootstraps}
    chunks = max(4, count // 3)
    binary_chunks = [(rng.random((rows, features)) < 0.3).astype(np.int64) for _ in range(chunks)]
    return [
        Case("ks", DetectorSpec("ks"), ref, normal_windows, lambda: cd.KSDrift(ref, p_val=0.05)),
        Case("chi2", DetectorSpec("chi2"), cat_ref, [categorical(rows) for _ in range(count)],
             lambda: cd.ChiSquareDrift(cat_ref, p_val=0.05)),
        Case("tabular", DetectorSpec("tabular", categorical=cat_columns), mixed_ref, shifted(mixed),
             lambda: cd.TabularDrift(mixed_ref, p_val=0.05, categories_per_feature=dict.fromkeys(cat_columns))),
        Case("mmd", DetectorSpec("mmd"), torch_ref, normal_windows[: max(4, count // 2)],
             lambda: cd.MMDDrift(torch_ref, backend="pytorch", p_val=0.05)),
        Case("lsdd", DetectorSpec("lsdd"), torch_ref, normal_windows,
             lambda: cd.LSDDDrift(torch_ref, backend="pytorch", p_val=0.05)),
        Case("cvm-online", DetectorSpec("cvm-online", parameters=online), online_ref, normal_windows[:chunks],
             lambda: cd.CVMDriftOnline(online_ref, verbose=False, **online)),
        Case("fet-online", DetectorSpec("fet-online", parameters=online), binary_ref, binary_chunks,
             lambda: cd.FETDriftOnline(binary_ref, verbose=False, **online)),
    ]


def build_both(case: Case, seed: int) -> tuple[DriftEngine, Any, float, float]:
    # Online thresholds are simulated with numpy's global generator: the same seed gives
    # both detectors the same thresholds.
    np.random.seed(seed)
    start = time.perf_counter()
    engine = build_detector(case.spec, case.reference)
    engine_s = time.perf_counter() - start
    np.random.seed(seed)
    start = time.perf_counter()
    direct = case.direct()
    return engine, direct, engine_s, time.perf_counter() - start


def measure(case: Case, args: argparse.Namespace) -> Result:
    engine, direct, engine_build, direct_build = build_both(case, args.seed)
    rows, features = case.windows[0].shape
    result = Result(case.kind, f"{rows}×{features}", case.reference.shape[0], build_s=(engine_build, direct_build))
    if engine.online:
        def run_engine(window: np.ndarray) -> tuple[bool, float]:
            verdicts = engine.update(window)
            return any(v.is_drift for v in verdicts), sum(v.seconds for v in verdicts)

        def run_direct(window: np.ndarray) -> bool:
            return any([bool(direct.predict(row)["data"]["is_drift"]) for row in window])
    else:
        def run_engine(window: np.ndarray) -> tuple[bool, float]:
            verdict = engine.check(window)
            return verdict.is_drift, verdict.seconds

        def run_direct(window: np.ndarray) -> bool:
            return bool(direct.predict(window)["data"]["is_drift"])

    warmup = 2
    for i, window in enumerate([*case.windows[:warmup], *case.windows]):
        if engine.online:
            engine.reset()
            direct.reset_state()
        order = ("engine", "direct") if i % 2 == 0 else ("direct", "engine")
        timings: dict[str, float] = {}
        for who in order:
            start = time.perf_counter()
            if who == "engine":
                engine_drift, inner = run_engine(window)
            else:
                direct_drift = run_direct(window)
            timings[who] = time.perf_counter() - start
        if i < warmup:
            continue
        result.engine_s.append(timings["engine"])
        result.direct_s.append(timings["direct"])
        result.overhead_s.append(timings["engine"] - inner)
        # Permutation tests draw fresh permutations per call, so only the others must agree.
        if case.kind not in ("mmd", "lsdd"):
            result.compared += 1
            result.agree += engine_drift == direct_drift
    if engine.online and args.long_rows:
        engine.reset()
        direct.reset_state()
        result.note = long_stream(case, engine, direct, args)
    return result


def long_stream(case: Case, engine: DriftEngine, direct: Any, args: argparse.Namespace) -> str:
    """Per-row cost after a long stream without resets: alibi-detect keeps every row's
    history and copies it on each step; the engine trims it."""
    rng = np.random.default_rng(args.seed + 1)
    stream = (rng.random((args.long_rows, case.reference.shape[1])) < 0.3).astype(np.int64) \
        if case.kind == "fet-online" else rng.standard_normal((args.long_rows, case.reference.shape[1]))
    tail = args.rows
    start = time.perf_counter()
    engine.update(stream[:-tail])
    engine_feed = time.perf_counter() - start
    start = time.perf_counter()
    engine.update(stream[-tail:])
    engine_tail = time.perf_counter() - start
    start = time.perf_counter()
    for row in stream[:-tail]:
        direct.predict(row)
    direct_feed = time.perf_counter() - start
    start = time.perf_counter()
    for row in stream[-tail:]:
        direct.predict(row)
    direct_tail = time.perf_counter() - start
    kept = direct.xs.nbytes + direct.test_stats.nbytes + direct.drift_preds.nbytes
    return (f"{case.kind}: {args.long_rows:,} rows in one stream: last {tail} rows {engine_tail / tail * 1e6:.0f} µs/row "
            f"(engine) vs {direct_tail / tail * 1e6:.0f} µs/row (direct, {kept / 1e6:.1f} MB of history kept); "
            f"whole stream {engine_feed + engine_tail:.1f} s vs {direct_feed + direct_tail:.1f} s")


def report(results: list[Result], args: argparse.Namespace) -> None:
    say("")
    say(f"== drift detection per window: engine (runtime/drift_engine.py) vs direct alibi-detect, "
        f"median over windows; torch threads {args.torch_threads}")
    say(f"{'kind':<12}{'window':>8}{'ref':>7}{'n':>4}{'engine ms':>11}{'direct ms':>11}{'ratio':>8}"
        f"{'p10-p90':>13}{'overhead µs':>13}{'build s (engine/direct)':>26}{'agree':>9}")
    for r in results:
        ratios = r.ratios()
        deciles = statistics.quantiles(ratios, n=10) if len(ratios) > 1 else ratios * 9
        low, high = deciles[0], deciles[-1]
        agree = f"{r.agree}/{r.compared}" if r.compared else "n/a"
        say(f"{r.kind:<12}{r.shape:>8}{r.reference_rows:>7}{len(r.engine_s):>4}{median(r.engine_s) * 1e3:>11.2f}"
            f"{median(r.direct_s) * 1e3:>11.2f}{median(ratios):>7.3f}x{f'{low:.2f}-{high:.2f}':>13}"
            f"{median(r.overhead_s) * 1e6:>13.0f}{f'{r.build_s[0]:.2f} / {r.build_s[1]:.2f}':>26}{agree:>9}")
    say("")
    worst = max(results, key=lambda r: median(r.ratios()))
    verdict = "met" if median(worst.ratios()) <= GOAL else "NOT met"
    say(f"goal engine <= {GOAL}x direct per window: {verdict} (highest median ratio: {worst.kind}, "
        f"{median(worst.ratios()):.3f}x)")
    say("ratio: engine time / direct time per window (median, p10-p90); overhead: engine time outside the "
        "alibi-detect call; agree: windows with the same is_drift (permutation tests draw their own "
        "permutations, so mmd and lsdd are not compared)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="15 windows per kind")
    parser.add_argument("--windows", type=int, help="windows per kind (default 60, --quick 15)")
    parser.add_argument("--rows", type=int, default=500, help="rows per window (default 500)")
    parser.add_argument("--features", type=int, default=10, help="features (default 10)")
    parser.add_argument("--reference-rows", type=int, default=5000, help="ks/chi2/tabular reference rows")
    parser.add_argument("--torch-reference-rows", type=int, default=1000, help="mmd/lsdd reference rows")
    parser.add_argument("--online-reference-rows", type=int, default=500, help="cvm/fet-online reference rows")
    parser.add_argument("--bootstraps", type=int, default=5000, help="online threshold simulations (default 5000)")
    parser.add_argument("--long-rows", type=int, default=10_000, help="rows of the long online stream (0: skip)")
    parser.add_argument("--kinds", nargs="+", help="only these detector kinds")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    args.windows = args.windows or (15 if args.quick else 60)
    if args.quick:
        args.long_rows = min(args.long_rows, 3000)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    import torch

    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(args.seed)
    say(f"building cases: {args.windows} windows of {args.rows} × {args.features} (importing alibi-detect...)")
    start = time.perf_counter()
    cases = [c for c in make_cases(args) if not args.kinds or c.kind in args.kinds]
    say(f"alibi-detect imported and data made in {time.perf_counter() - start:.1f} s")
    results: list[Result] = []
    try:
        for case in cases:
            try:
                result = measure(case, args)
            except ValueError as error:  # e.g. alibi-detect failing to simulate online thresholds
                say(f"{case.kind}: skipped: {error}")
                continue
            results.append(result)
            say(f"{case.kind}: engine {median(result.engine_s) * 1e3:.2f} ms, direct "
                f"{median(result.direct_s) * 1e3:.2f} ms, ratio {statistics.median(result.ratios()):.3f}x")
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    if not results:
        return 1
    report(results, args)
    for result in results:
        if result.note:
            say(result.note)
    say(f"\ntotal time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
