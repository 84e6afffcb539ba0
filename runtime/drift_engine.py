"""The drift engine: the one seam between drift monitors and alibi-detect.

A monitor describes its detector with a ``DetectorSpec``, builds it once from the
reference data with ``build_detector`` and then feeds it live data:

- batch detectors (``ks``, ``chi2``, ``tabular``, ``mmd``, ``lsdd``) test one full window
  at a time: ``engine.check(window) -> Verdict``;
- online detectors (``cvm-online``, ``fet-online``) see a stream one row at a time, as
  alibi-detect's do: ``engine.update(rows) -> list[Verdict]`` gives one verdict per row,
  each the detector's decision at that time step (``Verdict.step``). alibi-detect does not
  reset a detector after a detection, and neither does the engine; ``engine.reset()``
  starts a new stream with the same thresholds. alibi-detect keeps every row's history
  and copies it on each row; the engine trims what the next rows cannot read, so a stream
  can run for ever at a constant cost per row.

Data with NaN is refused: alibi-detect would turn it into a NaN p-value, read as no drift.

alibi-detect (Business Source License 1.1) is imported only here, and only when a detector
is built, so importing this module costs nothing. The PyTorch backend is always used for
``mmd`` and ``lsdd``; TensorFlow is never touched. alibi-detect's own defaults stand unless
the spec says otherwise (e.g. Bonferroni correction for feature-wise tests). Random draws
(permutation tests, threshold simulation) come from numpy's and torch's global generators,
as in alibi-detect.

This module imports nothing from ``mlopsfile`` (runtime/ ships to Ray on its own).
"""

from __future__ import annotations

import importlib.util
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BATCH_KINDS = ("ks", "chi2", "tabular", "mmd", "lsdd")
ONLINE_KINDS = ("cvm-online", "fet-online")
KINDS = BATCH_KINDS + ONLINE_KINDS
TORCH_KINDS = ("mmd", "lsdd")
FEATURE_WISE_KINDS = ("ks", "chi2", "tabular")
# alibi-detect's online detectors append every row to histories they never read again
# beyond the last window; the engine cuts them back this often so a long-lived monitor
# neither grows without bound nor slows down row by row.
TRIM_EVERY_ROWS = 256
# cvm-online simulates its thresholds with boolean matrices of (batch_size, n+t, n+t)
# and keeps one of (n, n, features): a large reference would exhaust a monitor's memory.
CVM_MAX_CONFIG_BYTES = 2 * 1024**3


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"parameters.{name}: must be a positive integer, got {value!r}")
    return value


def _positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
        raise ValueError(f"parameters.{name}: must be a positive number, got {value!r}")
    return float(value)


def _choice(*options: str) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if value not in options:
            raise ValueError(f"parameters.{name}: must be one of {', '.join(options)}, got {value!r}")
        return value
    return check


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"parameters.{name}: must be true or false, got {value!r}")
    return value


def _sigma(name: str, value: Any) -> list[float]:
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ValueError(f"parameters.{name}: must be a positive number or a list of them, got {value!r}")
    return [_positive_float(name, v) for v in values]


def _ert(name: str, value: Any) -> float:
    if _positive_float(name, value) <= 1:
        raise ValueError(f"parameters.{name}: the expected run time must be above 1 row, got {value!r}")
    return float(value)


def _window_sizes(name: str, value: Any) -> list[int]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"parameters.{name}: must be a non-empty list of positive integers, got {value!r}")
    return [_positive_int(name, v) for v in value]


def _lam(name: str, value: Any) -> float:
    if _positive_float(name, value) > 1:
        raise ValueError(f"parameters.{name}: must be in (0, 1], got {value!r}")
    return float(value)


def _categories(name: str, value: Any) -> dict[int | str, int | list[Any]]:
    if not isinstance(value, Mapping):
        raise ValueError(f"parameters.{name}: must map features to a category count or a list of values")
    for key, cats in value.items():
        if isinstance(cats, (list, tuple)):
            if not cats:
                raise ValueError(f"parameters.{name}.{key}: the list of categories is empty")
        else:
            _positive_int(f"{name}.{key}", cats)
    return dict(value)


_CORRECTION = _choice("bonferroni", "fdr")
# Per kind: the parameters the spec may set (beyond p_val) and how each is checked.
# Keys are alibi-detect's argument names unless noted at their translation below.
_PARAMETERS: dict[str, dict[str, Callable[[str, Any], Any]]] = {
    "ks": {"correction": _CORRECTION, "alternative": _choice("two-sided", "less", "greater")},
    "chi2": {"correction": _CORRECTION, "categories": _categories},
    "tabular": {"correction": _CORRECTION, "alternative": _choice("two-sided", "less", "greater"),
                "categories": _categories},
    "mmd": {"n_permutations": _positive_int, "sigma": _sigma, "configure_kernel_from_x_ref": _boolean},
    "lsdd": {"n_permutations": _positive_int, "sigma": _sigma, "n_kernel_centers": _positive_int,
             "lambda_rd_max": _positive_float},
    "cvm-online": {"ert": _ert, "window_sizes": _window_sizes, "n_bootstraps": _positive_int,
                   "batch_size": _positive_int},
    "fet-online": {"ert": _ert, "window_sizes": _window_sizes, "n_bootstraps": _positive_int,
                   "t_max": _positive_int, "alternative": _choice("greater", "less"), "lam": _lam},
}
_REQUIRED = {"cvm-online": ("ert", "window_sizes"), "fet-online": ("ert", "window_sizes")}


@dataclass(frozen=True)
class DetectorSpec:
    """What to build: the detector kind, its level and its alibi-detect parameters.

    ``p_val`` is the test's level (feature-wise tests apply it after their correction);
    online detectors are calibrated by ``parameters.ert`` instead and ignore it.
    ``categorical`` holds the column indices ``tabular`` tests with chi-squared (``chi2``
    treats every column as categorical). Invalid values raise a one-line ``ValueError``.
    """

    kind: str
    p_val: float = 0.05
    parameters: Mapping[str, Any] = field(default_factory=dict)
    feature_names: tuple[str, ...] = ()
    categorical: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: unknown detector {self.kind!r} (one of {', '.join(KINDS)})")
        p_val = self.p_val
        if isinstance(p_val, bool) or not isinstance(p_val, (int, float)) or not 0 < p_val < 1:
            raise ValueError(f"p_val: must be in (0, 1), got {p_val!r}")
        allowed = _PARAMETERS[self.kind]
        checked = {}
        for name, value in dict(self.parameters).items():
            if name not in allowed:
                known = ", ".join(allowed)
                raise ValueError(f"parameters.{name}: not a parameter of {self.kind} (known: {known})")
            checked[name] = allowed[name](name, value)
        for name in _REQUIRED.get(self.kind, ()):
            if name not in checked:
                raise ValueError(f"parameters.{name}: required by {self.kind}")
        if self.kind == "fet-online" and checked.get("t_max", math.inf) < 2 * max(checked["window_sizes"]) - 1:
            raise ValueError("parameters.t_max: must be at least 2 * max(window_sizes) - 1")
        if self.categorical and self.kind not in ("tabular", "chi2"):
            raise ValueError(f"categorical: {self.kind} tests numerical features only (use tabular or chi2)")
        if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in self.categorical):
            raise ValueError(f"categorical: must be column indices, got {list(self.categorical)!r}")
        object.__setattr__(self, "p_val", float(p_val))
        # A plain dict, not a read-only proxy: specs travel to Ray actors by pickle.
        object.__setattr__(self, "parameters", checked)
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        object.__setattr__(self, "categorical", tuple(self.categorical))


@dataclass(frozen=True)
class Verdict:
    """One decision of a detector.

    Feature-wise tests (ks, chi2, tabular): ``p_value`` is the smallest feature p-value
    after the correction (Bonferroni: times the feature count; FDR: Benjamini-Hochberg
    adjusted), ``threshold`` is ``p_val`` and ``statistic`` is the statistic of that
    feature. mmd and lsdd: the permutation test's p-value and distance, with
    ``distance_threshold`` the distance drift starts at. Online detectors: no p-values;
    ``statistic`` and ``threshold`` are those of the feature nearest to (or furthest
    past) its threshold, both ``None`` until the smallest window is full. ``is_drift`` is
    always alibi-detect's own decision; ``seconds`` is the detector's time alone.
    """

    kind: str
    is_drift: bool
    statistic: float | None
    threshold: float | None
    p_value: float | None
    feature_p_values: dict[str, float]
    feature_statistics: dict[str, float]
    rows: int
    seconds: float
    distance_threshold: float | None = None
    step: int | None = None


class DriftEngine:
    """A built detector with the reference data in it; see the module docstring."""

    def __init__(self, spec: DetectorSpec, detector: Any, names: tuple[str, ...], effective: dict[str, Any],
                 reference: np.ndarray) -> None:
        self.spec = spec
        self.kind = spec.kind
        self.online = spec.kind in ONLINE_KINDS
        self.feature_names = names
        self._detector = detector
        self._n_features = len(names)
        self._effective = effective
        self._bonferroni = effective.get("correction") == "bonferroni"
        self._reference_rows = reference.shape[0]
        # torch will not mix float32 and float64 tensors: windows take the reference's dtype.
        self._dtype = reference.dtype if spec.kind in TORCH_KINDS else None

    def check(self, window: Any) -> Verdict:
        """Test one window (rows × features) against the reference."""
        if self.online:
            raise ValueError(f"window: {self.kind} is an online detector; feed it rows with update()")
        x = np.asarray(window, dtype=self._dtype)
        if x.ndim != 2 or x.shape[1] != self._n_features or x.shape[0] == 0:
            raise ValueError(f"window: expected rows × {self._n_features} features, got shape {x.shape}")
        _refuse_nan("window", x)
        start = time.perf_counter()
        data = self._detector.predict(x)["data"]
        seconds = time.perf_counter() - start
        if self.kind in TORCH_KINDS:
            return Verdict(self.kind, bool(data["is_drift"]), float(data["distance"]), self.spec.p_val,
                           float(data["p_val"]), {}, {}, x.shape[0], seconds,
                           distance_threshold=float(data["distance_threshold"]))
        p_values, statistics = data["p_val"], data["distance"]
        worst = int(p_values.argmin())
        if self._bonferroni:
            p_value = min(1.0, float(p_values[worst]) * self._n_features)
        else:
            ranked = np.sort(p_values.astype(np.float64))
            p_value = min(1.0, float((ranked * (self._n_features / np.arange(1, self._n_features + 1))).min()))
        names = self.feature_names
        return Verdict(self.kind, bool(data["is_drift"]), float(statistics[worst]), self.spec.p_val, p_value,
                       dict(zip(names, p_values.tolist(), strict=True)), dict(zip(names, statistics.tolist(), strict=True)),
                       x.shape[0], seconds)

    def update(self, rows: Any) -> list[Verdict]:
        """Feed rows to an online detector, in order; one verdict per row."""
        if not self.online:
            raise ValueError(f"rows: {self.kind} is a batch detector; test whole windows with check()")
        x = np.asarray(rows)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self._n_features:
            raise ValueError(f"rows: expected rows × {self._n_features} features, got shape {np.shape(rows)}")
        _refuse_nan("rows", x)
        detector = self._detector
        predict, clock, kind, names = detector.predict, time.perf_counter, self.kind, self.feature_names
        min_window, max_window, features = detector.min_ws, detector.max_ws, range(self._n_features)
        verdicts = []
        # A row costs alibi-detect a few hundred µs: the bookkeeping per row below stays in
        # plain Python on short lists, where numpy's per-call cost would dominate.
        for row in x:
            start = clock()
            data = predict(row)["data"]
            seconds = clock() - start
            step = data["time"]
            if step < min_window:
                verdicts.append(Verdict(kind, bool(data["is_drift"]), None, None, None, {}, {}, 1, seconds, step=step))
            else:
                stats = data["test_stat"]
                if step < max_window:  # windows not yet full are NaN: fmax skips them quietly
                    per_feature = np.fmax.reduce(stats, axis=0).tolist()
                elif len(stats) == 1:
                    per_feature = stats[0].tolist()
                else:
                    per_feature = list(map(max, *stats.tolist()))
                thresholds = data["threshold"].tolist()
                if len(thresholds) == 1:
                    nearest = max(features, key=per_feature.__getitem__)
                    threshold = thresholds[0]
                else:
                    nearest = max(features, key=lambda i: per_feature[i] - thresholds[i])
                    threshold = thresholds[nearest]
                verdicts.append(Verdict(kind, bool(data["is_drift"]), per_feature[nearest], threshold, None, {},
                                        dict(zip(names, per_feature, strict=False)), 1, seconds, step=step))
            if step % TRIM_EVERY_ROWS == 0:
                self._trim()
        return verdicts

    def reset(self) -> None:
        """Start an online detector's stream again (step 0), keeping its thresholds."""
        if not self.online:
            raise ValueError(f"kind: {self.kind} is a batch detector and keeps no stream")
        self._detector.reset_state()

    def describe(self) -> dict[str, Any]:
        """What was built, as plain values for logs and monitor records."""
        described: dict[str, Any] = {
            "kind": self.kind,
            "features": list(self.feature_names),
            "reference_rows": self._reference_rows,
            "parameters": {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in self._effective.items()},
        }
        if not self.online:
            described["p_val"] = self.spec.p_val
        if self.spec.categorical:
            described["categorical"] = list(self.spec.categorical)
        if self.kind in TORCH_KINDS:
            described["backend"] = "pytorch"
            described["device"] = str(self._detector._detector.device)
        return described

    def _trim(self) -> None:
        # Only the last max_ws rows and the last statistics feed the next step (FET smooths
        # from test_stats[-1]); everything older is history alibi-detect keeps but never reads.
        detector = self._detector
        detector.xs = detector.xs[-int(detector.max_ws):]
        detector.test_stats = detector.test_stats[-1:]
        detector.drift_preds = detector.drift_preds[-1:]


def build_detector(spec: DetectorSpec, reference: Any) -> DriftEngine:
    """Build the detector of ``spec`` on ``reference`` (rows × features), once."""
    x_ref = np.asarray(reference)
    if x_ref.ndim != 2 or x_ref.shape[0] < 2 or x_ref.shape[1] < 1:
        raise ValueError(f"reference: expected a 2-D array of at least 2 rows, got shape {x_ref.shape}")
    _refuse_nan("reference", x_ref)
    n_features = x_ref.shape[1]
    names = spec.feature_names or tuple(f"f{i}" for i in range(n_features))
    if len(names) != n_features:
        raise ValueError(f"feature_names: {len(names)} names for {n_features} reference columns")
    if len(set(names)) != len(names):
        raise ValueError("feature_names: names must be unique")
    if any(i >= n_features for i in spec.categorical):
        raise ValueError(f"categorical: index out of range for {n_features} features: {list(spec.categorical)}")
    if spec.kind == "chi2" and spec.categorical and set(spec.categorical) != set(range(n_features)):
        raise ValueError("categorical: chi2 tests every column as categorical; use tabular for mixed columns")
    if spec.kind in TORCH_KINDS and importlib.util.find_spec("torch") is None:
        raise ValueError(f"kind: {spec.kind} needs torch (alibi-detect's pytorch backend); install the torch extra")
    if spec.kind in ("cvm-online", "fet-online", "mmd", "lsdd", "ks") and not np.issubdtype(x_ref.dtype, np.number):
        raise ValueError(f"reference: {spec.kind} needs numerical columns, got dtype {x_ref.dtype}")
    kwargs = _alibi_arguments(spec, x_ref, names)
    cls = _detector_class(spec.kind)
    try:
        detector = cls(x_ref, **kwargs)
    except (ValueError, TypeError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        hint = " (raise parameters.n_bootstraps)" if spec.kind in ONLINE_KINDS else ""
        raise ValueError(f"parameters: alibi-detect could not build {spec.kind}: {message}{hint}") from error
    shown = {k: v for k, v in kwargs.items() if k not in ("verbose", "backend")}
    return DriftEngine(spec, detector, names, shown, x_ref)


def _refuse_nan(field_name: str, x: np.ndarray) -> None:
    # alibi-detect turns a NaN into a NaN p-value, which is never below the level: the
    # window would pass as "no drift" without a word.
    if x.dtype.kind == "f" and np.isnan(x).any():
        rows = int(np.isnan(x).any(axis=1).sum())
        raise ValueError(f"{field_name}: {rows} row(s) hold NaN; drop or impute missing values before drift tests")


def _alibi_arguments(spec: DetectorSpec, x_ref: np.ndarray, names: tuple[str, ...]) -> dict[str, Any]:
    """The keyword arguments of the alibi-detect constructor, alibi's defaults filled in."""
    parameters = dict(spec.parameters)
    kind = spec.kind
    if kind in FEATURE_WISE_KINDS:
        kwargs: dict[str, Any] = {"p_val": spec.p_val, "correction": parameters.pop("correction", "bonferroni")}
        if "alternative" in parameters:
            kwargs["alternative"] = parameters.pop("alternative")
        if kind != "ks":
            columns = range(x_ref.shape[1]) if kind == "chi2" else spec.categorical
            kwargs["categories_per_feature"] = _categories_per_feature(
                kind, x_ref, names, columns, parameters.pop("categories", {}))
        return kwargs
    if kind in TORCH_KINDS:
        if "sigma" in parameters:
            parameters["sigma"] = np.array(parameters["sigma"], dtype=np.float64)
        return {"backend": "pytorch", "p_val": spec.p_val, **parameters}
    if kind == "fet-online":
        values = np.unique(x_ref)
        if not np.isin(values, (0, 1)).all():
            raise ValueError("reference: fet-online needs binary (0/1) columns")
    if kind == "cvm-online":
        t_max = 2 * max(parameters["window_sizes"]) - 1
        batch = min(parameters.get("batch_size", 64), parameters.get("n_bootstraps", 10000))
        needed = batch * (x_ref.shape[0] + t_max) ** 2 + x_ref.shape[0] ** 2 * x_ref.shape[1]
        if needed > CVM_MAX_CONFIG_BYTES:
            raise ValueError(f"reference: cvm-online on {x_ref.shape[0]} rows needs ~{needed / 1024**3:.1f} GiB to "
                             "configure thresholds; subsample the reference or lower parameters.batch_size")
    # alibi-detect prints threshold-configuration progress by default.
    return {**parameters, "verbose": False}


def _categories_per_feature(kind: str, x_ref: np.ndarray, names: tuple[str, ...], columns: Any,
                            given: Mapping[int | str, int | list[Any]]) -> dict[int, list[Any]]:
    """Every categorical column with its list of values, as alibi-detect's ``categories_per_feature``.

    alibi-detect refuses a mix of counts, lists and inferred entries, so all of them are
    spelled out here: a count N means values 0..N-1; a column not listed gets the values
    seen in the reference. Declared values the reference never shows are left out: a
    category absent from both the reference and a window makes alibi-detect's chi-squared
    test fail on that window (zero expected frequency), while a value that does turn up in a
    window is counted anyway. Reference values outside the declared ones are an error.
    """
    index = {name: i for i, name in enumerate(names)}
    resolved: dict[int, list[Any]] = {}
    for key, values in given.items():
        column = index.get(key) if isinstance(key, str) and key in index else key
        if isinstance(column, str) and column.isdigit():
            column = int(column)
        if not isinstance(column, int) or isinstance(column, bool) or not 0 <= column < x_ref.shape[1]:
            raise ValueError(f"parameters.categories.{key}: not a feature name or column index")
        if column not in columns:
            raise ValueError(f"parameters.categories.{key}: not a categorical feature of {kind}")
        declared = np.arange(values) if isinstance(values, int) else np.asarray(values)
        seen = np.unique(x_ref[:, column])
        outside = seen[~np.isin(seen, declared)]
        if outside.size:
            raise ValueError(f"parameters.categories.{key}: the reference holds undeclared values {outside.tolist()}")
        resolved[column] = declared[np.isin(declared, seen)].tolist()
    return {c: resolved[c] if c in resolved else np.unique(x_ref[:, c]).tolist() for c in columns}


def _detector_class(kind: str) -> type:
    # alibi_detect.cd imports every detector (and torch) at once: seconds, paid at build time.
    from alibi_detect import cd

    return {"ks": cd.KSDrift, "chi2": cd.ChiSquareDrift, "tabular": cd.TabularDrift, "mmd": cd.MMDDrift,
            "lsdd": cd.LSDDDrift, "cvm-online": cd.CVMDriftOnline, "fet-online": cd.FETDriftOnline}[kind]
