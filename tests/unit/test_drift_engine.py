"""The drift engine against real alibi-detect detectors on seeded data (no mocks).

The ks figures follow the monitor's defaults: a 5,000-row reference of 10 standard-normal
features and windows of 500 rows. alibi-detect draws permutations and threshold
simulations from numpy's and torch's global generators, so tests that use them seed both.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from runtime.drift_engine import DetectorSpec, DriftEngine, Verdict, build_detector

REPO_ROOT = Path(__file__).resolve().parents[2]
REF_ROWS, WINDOW_ROWS, FEATURES = 5000, 500, 10
NULL_WINDOWS, SHIFT_WINDOWS = 200, 50
SHIFTED_FEATURE = 3


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return np.random.default_rng(11).standard_normal((REF_ROWS, FEATURES))


@pytest.fixture(scope="module")
def null_windows() -> np.ndarray:
    return np.random.default_rng(12).standard_normal((NULL_WINDOWS, WINDOW_ROWS, FEATURES))


@pytest.fixture(scope="module")
def shifted_windows() -> np.ndarray:
    windows = np.random.default_rng(13).standard_normal((SHIFT_WINDOWS, WINDOW_ROWS, FEATURES))
    windows[:, :, SHIFTED_FEATURE] += 0.5
    return windows


@pytest.fixture(scope="module")
def ks_engine(reference: np.ndarray) -> DriftEngine:
    return build_detector(DetectorSpec("ks", p_val=0.05), reference)


@pytest.fixture(scope="module")
def null_verdicts(ks_engine: DriftEngine, null_windows: np.ndarray) -> list[Verdict]:
    return [ks_engine.check(window) for window in null_windows]


@pytest.fixture(scope="module")
def shifted_verdicts(ks_engine: DriftEngine, shifted_windows: np.ndarray) -> list[Verdict]:
    return [ks_engine.check(window) for window in shifted_windows]


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    # Two intra-op threads on a busy two-core machine spin against each other: a
    # permutation test then takes ten times longer. Monitor actors run with one thread.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)
    yield
    torch.set_num_threads(before)


# -- ks: statistical honesty and faithfulness to alibi-detect ------------------------------


def test_ks_false_positive_rate_is_the_level(null_verdicts: list[Verdict]) -> None:
    rate = sum(v.is_drift for v in null_verdicts) / len(null_verdicts)
    assert 0.02 <= rate <= 0.08, rate
    assert all(v.rows == WINDOW_ROWS and v.kind == "ks" and v.seconds > 0 for v in null_verdicts)


def test_ks_detects_half_sigma_shift_in_one_feature(shifted_verdicts: list[Verdict]) -> None:
    detected = [v for v in shifted_verdicts if v.is_drift]
    assert len(detected) / len(shifted_verdicts) >= 0.95
    name = f"f{SHIFTED_FEATURE}"
    for verdict in detected:
        assert min(verdict.feature_p_values, key=verdict.feature_p_values.__getitem__) == name
        assert verdict.statistic == verdict.feature_statistics[name]


def test_ks_p_value_is_bonferroni_corrected_minimum(null_verdicts: list[Verdict],
                                                    shifted_verdicts: list[Verdict]) -> None:
    for verdict in null_verdicts + shifted_verdicts:
        assert verdict.p_value == min(1.0, min(verdict.feature_p_values.values()) * FEATURES)
        assert verdict.threshold == 0.05
        assert (verdict.p_value < verdict.threshold) == verdict.is_drift


def test_ks_verdicts_equal_direct_alibi_calls(reference: np.ndarray, null_windows: np.ndarray,
                                              shifted_windows: np.ndarray, null_verdicts: list[Verdict],
                                              shifted_verdicts: list[Verdict]) -> None:
    from alibi_detect.cd import KSDrift

    direct = KSDrift(reference, p_val=0.05)
    # Every false positive, some quiet windows and some drifting ones.
    flagged = [i for i, v in enumerate(null_verdicts) if v.is_drift]
    pairs = [(null_windows[i], null_verdicts[i]) for i in sorted({*flagged, *range(8)})]
    pairs += [(shifted_windows[i], shifted_verdicts[i]) for i in range(6)]
    assert any(v.is_drift for _, v in pairs) and not all(v.is_drift for _, v in pairs)
    for window, verdict in pairs:
        data = direct.predict(window)["data"]
        assert verdict.is_drift == bool(data["is_drift"])
        assert list(verdict.feature_p_values.values()) == data["p_val"].tolist()
        assert list(verdict.feature_statistics.values()) == data["distance"].tolist()


def test_ks_fdr_correction_equals_alibi(reference: np.ndarray, null_windows: np.ndarray,
                                        shifted_windows: np.ndarray) -> None:
    from alibi_detect.cd import KSDrift

    engine = build_detector(DetectorSpec("ks", parameters={"correction": "fdr"}), reference)
    direct = KSDrift(reference, p_val=0.05, correction="fdr")
    for window in [*null_windows[:3], *shifted_windows[:3]]:
        verdict, data = engine.check(window), direct.predict(window)["data"]
        assert verdict.is_drift == bool(data["is_drift"])
        assert list(verdict.feature_p_values.values()) == data["p_val"].tolist()
        assert (verdict.p_value < 0.05) == verdict.is_drift
    assert engine.describe()["parameters"]["correction"] == "fdr"


# -- the other batch detectors -------------------------------------------------------------


def categorical_rows(rng: np.random.Generator, rows: int, probabilities: list[float]) -> np.ndarray:
    return rng.choice(len(probabilities), size=(rows, 3), p=probabilities).astype(np.int64)


def test_chi2_detects_shifted_categories() -> None:
    rng = np.random.default_rng(21)
    reference = categorical_rows(rng, 2000, [0.5, 0.3, 0.2])
    spec = DetectorSpec("chi2", feature_names=("plan", "region", "device"), parameters={"categories": {"plan": 4}})
    engine = build_detector(spec, reference)
    same = engine.check(categorical_rows(rng, 400, [0.5, 0.3, 0.2]))
    shifted = engine.check(categorical_rows(rng, 400, [0.2, 0.3, 0.5]))
    assert not same.is_drift and same.p_value > 0.05
    assert shifted.is_drift and shifted.p_value < 1e-6
    assert set(shifted.feature_p_values) == {"plan", "region", "device"}
    # The declared value 3 is absent from the reference: alibi-detect would fail on every
    # window without it; a window that has it is still tested.
    assert engine.describe()["parameters"]["categories_per_feature"][0] == [0, 1, 2]
    with_new_value = categorical_rows(rng, 400, [0.5, 0.3, 0.2])
    with_new_value[:40, 0] = 3
    assert engine.check(with_new_value).is_drift
    with pytest.raises(ValueError, match=r"^parameters.categories.region: the reference holds undeclared values \[2\]"):
        build_detector(DetectorSpec("chi2", feature_names=spec.feature_names, parameters={"categories": {"region": 2}}),
                       reference)


def test_tabular_tests_categorical_columns_with_chi2() -> None:
    rng = np.random.default_rng(22)
    reference = np.column_stack([rng.standard_normal((2000, 2)), categorical_rows(rng, 2000, [0.6, 0.3, 0.1])[:, 0]])
    engine = build_detector(DetectorSpec("tabular", categorical=(2,)), reference)
    identical = engine.check(reference[:500])
    window = reference[500:1000].copy()
    window[:, 2] = np.where(rng.random(500) < 0.5, 2, window[:, 2])
    shifted = engine.check(window)
    assert not identical.is_drift and identical.p_value > 0.5
    assert shifted.is_drift
    assert min(shifted.feature_p_values, key=shifted.feature_p_values.__getitem__) == "f2"
    assert shifted.feature_p_values["f0"] > 0.05 and shifted.feature_p_values["f1"] > 0.05


@pytest.mark.parametrize(("kind", "parameters"), [
    ("mmd", {"n_permutations": 50}),
    ("mmd", {"n_permutations": 50, "sigma": 2.0}),
    ("lsdd", {"n_permutations": 50}),
])
def test_torch_detectors_detect_gross_shift(kind: str, parameters: dict[str, object], one_torch_thread: None) -> None:
    rng = np.random.default_rng(23)
    reference = rng.standard_normal((200, 5)).astype(np.float32)
    engine = build_detector(DetectorSpec(kind, parameters=parameters), reference)
    identical = engine.check(reference[:100])
    shifted = engine.check(rng.standard_normal((100, 5)) + 1.0)  # float64: cast to the reference's dtype
    assert not identical.is_drift and identical.p_value > 0.05
    assert shifted.is_drift and shifted.p_value == 0.0
    assert shifted.statistic is not None and shifted.distance_threshold is not None
    assert shifted.statistic > shifted.distance_threshold
    assert shifted.feature_p_values == {}
    described = engine.describe()
    assert described["backend"] == "pytorch" and described["device"] == "cpu"
    assert "tensorflow" not in sys.modules


# -- online detectors ----------------------------------------------------------------------

CVM = DetectorSpec("cvm-online", parameters={"ert": 50, "window_sizes": [10, 20], "n_bootstraps": 3000})
FET = DetectorSpec("fet-online", parameters={"ert": 50, "window_sizes": [10, 20], "n_bootstraps": 3000})
CVM_SEED = 31


def cvm_reference() -> np.ndarray:
    return np.random.default_rng(CVM_SEED).standard_normal((200, 3))


@pytest.fixture(scope="module")
def cvm_engine() -> DriftEngine:
    np.random.seed(CVM_SEED)  # the thresholds are simulated with numpy's global generator
    return build_detector(CVM, cvm_reference())


def first_detection(engine: DriftEngine, rng: np.random.Generator, shift: float, limit: int = 2000) -> int:
    """Rows fed to a fresh stream up to and including its first drift verdict."""
    engine.reset()
    for _ in range(0, limit, 25):
        for verdict in engine.update(rng.standard_normal((25, 3)) + np.array([shift, 0.0, 0.0])):
            if verdict.is_drift:
                return int(verdict.step)
    return limit


def test_cvm_online_expected_run_time_without_drift(cvm_engine: DriftEngine) -> None:
    rng = np.random.default_rng(32)
    # alibi-detect counts the run time from the step at which the smallest window is full.
    smallest_window = 10
    runs = [first_detection(cvm_engine, rng, 0.0) - (smallest_window - 1) for _ in range(100)]
    assert 0.6 * 50 <= np.mean(runs) <= 1.5 * 50, np.mean(runs)


def test_cvm_online_detects_shift_quickly(cvm_engine: DriftEngine) -> None:
    rng = np.random.default_rng(33)
    delays = [first_detection(cvm_engine, rng, 1.5) for _ in range(10)]
    assert np.median(delays) <= 20, delays


def test_online_verdicts_equal_direct_alibi_beyond_history_trims(cvm_engine: DriftEngine) -> None:
    from alibi_detect.cd import CVMDriftOnline, FETDriftOnline

    rng = np.random.default_rng(41)
    fet_reference = (rng.random((300, 3)) < 0.4).astype(np.int64)
    # Thresholds and FET's tie-breaks draw from numpy's global generator: same seeds, same draws.
    np.random.seed(42)
    fet_engine = build_detector(FET, fet_reference)
    np.random.seed(42)
    direct_fet = FETDriftOnline(fet_reference, verbose=False, **FET.parameters)
    np.random.seed(CVM_SEED)
    direct_cvm = CVMDriftOnline(cvm_reference(), verbose=False, **CVM.parameters)
    cases = [(cvm_engine, direct_cvm, rng.standard_normal((520, 3)) + 0.3),
             (fet_engine, direct_fet, (rng.random((520, 3)) < 0.45).astype(np.int64))]
    cvm_engine.reset()
    for engine, direct, stream in cases:
        np.random.seed(43)
        verdicts = engine.update(stream)
        np.random.seed(43)
        assert len(verdicts) == len(stream) > 2 * 256
        for row, verdict in zip(stream, verdicts, strict=True):
            data = direct.predict(row)["data"]
            assert (verdict.is_drift, verdict.step) == (bool(data["is_drift"]), data["time"])
            if verdict.statistic is not None:
                per_feature = np.fmax.reduce(data["test_stat"], axis=0)
                assert list(verdict.feature_statistics.values()) == per_feature.tolist()
                assert verdict.threshold in data["threshold"].tolist()
        assert any(v.is_drift for v in verdicts), engine.kind
        assert verdicts[0].statistic is None and verdicts[0].step == 1


def test_fet_online_detects_rate_change() -> None:
    rng = np.random.default_rng(51)
    np.random.seed(51)
    spec = DetectorSpec("fet-online", parameters={"ert": 100, "window_sizes": [20], "n_bootstraps": 3000})
    engine = build_detector(spec, (rng.random((500, 2)) < 0.2).astype(np.int64))
    verdicts = engine.update((rng.random((60, 2)) < np.array([0.2, 0.9])).astype(np.int64))
    first = next(v for v in verdicts if v.is_drift)
    assert first.step <= 25 and first.statistic == first.feature_statistics["f1"] > first.threshold


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "message"), [
    ({"kind": "psi"}, "kind: unknown detector 'psi'"),
    ({"kind": "ks", "p_val": 1.5}, "p_val: must be in (0, 1)"),
    ({"kind": "ks", "p_val": 0}, "p_val: must be in (0, 1)"),
    ({"kind": "ks", "parameters": {"correction": "holm"}}, "parameters.correction: must be one of bonferroni, fdr"),
    ({"kind": "ks", "parameters": {"ert": 10}}, "parameters.ert: not a parameter of ks"),
    ({"kind": "mmd", "parameters": {"n_permutations": 0}}, "parameters.n_permutations: must be a positive integer"),
    ({"kind": "mmd", "parameters": {"backend": "tensorflow"}}, "parameters.backend: not a parameter of mmd"),
    ({"kind": "lsdd", "parameters": {"sigma": -1.0}}, "parameters.sigma: must be a positive number"),
    ({"kind": "cvm-online", "parameters": {"window_sizes": [10]}}, "parameters.ert: required by cvm-online"),
    ({"kind": "cvm-online", "parameters": {"ert": 1, "window_sizes": [10]}}, "parameters.ert: the expected run time"),
    ({"kind": "fet-online", "parameters": {"ert": 50, "window_sizes": []}}, "parameters.window_sizes: must be a non-empty"),
    ({"kind": "fet-online", "parameters": {"ert": 50, "window_sizes": [10], "t_max": 5}}, "parameters.t_max"),
    ({"kind": "fet-online", "parameters": {"ert": 50, "window_sizes": [10], "lam": 2}}, "parameters.lam"),
    ({"kind": "ks", "categorical": (1,)}, "categorical: ks tests numerical features only"),
    ({"kind": "chi2", "parameters": {"categories": {"a": 0}}}, "parameters.categories.a: must be a positive integer"),
])
def test_bad_spec_is_one_line_value_error(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        DetectorSpec(**spec)  # type: ignore[arg-type]
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_bad_reference_or_data_is_one_line_value_error(ks_engine: DriftEngine,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def fails(spec: DetectorSpec, reference: object, message: str) -> None:
        with pytest.raises(ValueError, match=message) as raised:
            build_detector(spec, reference)
        assert "\n" not in str(raised.value)

    ks = DetectorSpec("ks")
    fails(ks, np.zeros(10), r"^reference: expected a 2-D array")
    fails(DetectorSpec("ks", feature_names=("a", "b")), np.zeros((10, 3)), r"^feature_names: 2 names for 3")
    fails(DetectorSpec("tabular", categorical=(5,)), np.zeros((10, 3)), r"^categorical: index out of range")
    fails(DetectorSpec("chi2", categorical=(1,)), np.zeros((10, 3)), r"^categorical: chi2 tests every column")
    fails(DetectorSpec("tabular", categorical=(0,), parameters={"categories": {"f1": 2}}), np.zeros((10, 3)),
          r"^parameters.categories.f1: not a categorical feature")
    fails(DetectorSpec("fet-online", parameters={"ert": 50, "window_sizes": [10]}), np.full((10, 2), 0.5),
          r"^reference: fet-online needs binary")
    fails(DetectorSpec("cvm-online", parameters={"ert": 50, "window_sizes": [10]}), np.zeros((6000, 3)),
          r"^reference: cvm-online on 6000 rows needs")
    with pytest.raises(ValueError, match=r"^window: expected rows × 10 features, got shape \(5, 9\)"):
        ks_engine.check(np.zeros((5, 9)))
    with pytest.raises(ValueError, match=r"^rows: ks is a batch detector"):
        ks_engine.update(np.zeros((5, 10)))
    window = np.zeros((5, 10))
    window[2, 4] = np.nan  # alibi-detect would call this window "no drift"
    with pytest.raises(ValueError, match=r"^window: 1 row\(s\) hold NaN"):
        ks_engine.check(window)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *args: None)
    fails(DetectorSpec("mmd"), np.zeros((10, 3)), r"^kind: mmd needs torch")


def test_specs_and_verdicts_survive_pickling(null_verdicts: list[Verdict]) -> None:
    # Ray ships specs to the monitor actor and verdicts back by pickle.
    spec = DetectorSpec("lsdd", p_val=0.01, parameters={"sigma": [0.5, 1.0], "n_permutations": 20},
                        feature_names=("a", "b"))
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert pickle.loads(pickle.dumps(null_verdicts[0])) == null_verdicts[0]


def test_importing_the_engine_does_not_import_alibi_detect() -> None:
    code = "import sys, runtime.drift_engine; print(sorted({'alibi_detect', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
