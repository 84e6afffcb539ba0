"""A monitor's reference data and its model's signature, read at plan time.

Everything that can be wrong with a monitor's data is found here, before a plan shows
a monitor: a missing or unreadable reference, features the model does not take (or
the reference does not hold), non-numeric or missing values where a test needs numbers.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from mlopsfile.drivers.edge_bundle import file_sha256
from mlopsfile.errors import MonitorDataError
from mlopsfile.monitor_resources import PreparedMonitor
from mlopsfile.spec.monitor import MonitorSpec
from mlopsfile.values import ResolvedModel

MIN_REFERENCE_ROWS = 10
READERS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


class MonitorData:
    """Reads reference files (local, or MLflow artifacts downloaded once) and model signatures."""

    def __init__(self, tracking_uri: str, cache_dir: Path, registry_uri: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        self.cache_dir = cache_dir

    def prepare(self, name: str, spec: MonitorSpec, model: ResolvedModel, root: Path) -> PreparedMonitor:
        path = self.reference_file(spec.reference, root)
        frame = read_reference(path)
        signature = self._signature(model)
        features = tuple(spec.features) if spec.features else default_features(spec, signature, frame, model)
        check_features(spec, features, signature, frame, model)
        categorical = tuple(features.index(c) for c in spec.detector.categorical)
        check_values(spec, frame, features, categorical)
        return PreparedMonitor(features=features, categorical=categorical, reference_path=str(path),
                               reference_sha256=file_sha256(path), reference_rows=len(frame))

    def reference_file(self, reference: str, root: Path) -> Path:
        if reference.startswith(("runs:/", "models:/")):
            return self._download(reference)
        if reference.startswith(("s3://", "gs://")):
            raise MonitorDataError(f"{reference}: object-store references are not read yet; use a local file or "
                                   "an MLflow artifact (runs:/RUN_ID/PATH)", "reference")
        path = Path(reference.removeprefix("file://"))
        path = path if path.is_absolute() else (root / path).resolve()
        if not path.is_file():
            raise MonitorDataError(f"reference file {path} does not exist", "reference")
        return path

    def _download(self, uri: str) -> Path:
        import mlflow.artifacts
        from mlflow.exceptions import MlflowException

        target = self.cache_dir / hashlib.sha256(uri.encode()).hexdigest()[:16]
        target.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(target),
                                                             tracking_uri=self.tracking_uri))
        except (MlflowException, OSError) as exc:
            raise MonitorDataError(f"cannot download reference {uri}: {str(exc).splitlines()[0]}", "reference") from exc
        if not local.is_file():
            raise MonitorDataError(f"reference {uri} is a directory; name one parquet or csv file", "reference")
        return local

    def _signature(self, model: ResolvedModel) -> Any:
        import mlflow
        from mlflow.exceptions import MlflowException
        from mlflow.models import get_model_info

        # models:/ URIs are read through the process' registry: the project's, not MLflow's default.
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.registry_uri)
        try:
            return get_model_info(model.pinned_uri).signature
        except (MlflowException, OSError) as exc:
            raise MonitorDataError(f"cannot read the signature of model {model.name}: {exc}", "deployment") from exc


def read_reference(path: Path) -> Any:
    import pandas as pd

    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise MonitorDataError(f"reference {path.name}: unsupported file type (use .parquet or .csv)", "reference")
    try:
        frame = pd.read_parquet(path) if kind == "parquet" else pd.read_csv(path)
    except Exception as exc:  # pandas and pyarrow raise many types for one meaning: unreadable
        raise MonitorDataError(f"cannot read reference {path}: {type(exc).__name__}: {exc}", "reference") from exc
    if len(frame) < MIN_REFERENCE_ROWS:
        raise MonitorDataError(f"reference {path.name} has {len(frame)} rows; a drift test needs at least "
                               f"{MIN_REFERENCE_ROWS}", "reference")
    return frame


def _names(schema: Any) -> list[str]:
    if schema is None or not schema.has_input_names():
        return []
    return [str(n) for n in schema.input_names()]


def default_features(spec: MonitorSpec, signature: Any, frame: Any, model: ResolvedModel) -> tuple[str, ...]:
    """Inputs: the signature's input columns. Predictions: its output columns, or the reference's only column."""
    if signature is None:
        raise MonitorDataError(f"model {model.name} (version {model.version}) has no signature; list the "
                               "features to test", "features")
    if spec.target == "inputs":
        names = _names(signature.inputs)
        if not names:
            raise MonitorDataError(f"model {model.name}'s signature has unnamed (tensor) inputs; list the features "
                                   "to test by reference column", "features")
        return tuple(names)
    names = _names(signature.outputs)
    if names:
        return tuple(names)
    if len(frame.columns) == 1:
        return (str(frame.columns[0]),)
    raise MonitorDataError("the model's predictions are one unnamed column and the reference has "
                           f"{len(frame.columns)} columns; name the prediction column in features", "features")


def check_features(spec: MonitorSpec, features: tuple[str, ...], signature: Any, frame: Any,
                   model: ResolvedModel) -> None:
    if spec.target == "inputs" and signature is not None:
        known = _names(signature.inputs)
        unknown = [f for f in features if known and f not in known]
        if unknown:
            raise MonitorDataError(
                f"not inputs of model {model.name} (version {model.version}): {', '.join(unknown)} "
                f"(its signature has: {', '.join(known)})", "features")
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise MonitorDataError(f"the reference has no column {', '.join(repr(m) for m in missing)} "
                               f"(it has: {', '.join(map(str, frame.columns))})",
                               "features" if spec.features else "reference")


def check_values(spec: MonitorSpec, frame: Any, features: tuple[str, ...], categorical: tuple[int, ...]) -> None:
    import pandas as pd

    for index, column in enumerate(features):
        values = frame[column]
        if values.isna().any():
            raise MonitorDataError(f"reference column {column!r} has missing values; a drift test cannot read them",
                                   "reference")
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if not numeric and index not in categorical:
            raise MonitorDataError(f"reference column {column!r} is not numeric ({values.dtype}); list it in "
                                   "detector.categorical with a tabular or chi2 detector", "reference")
        if not numeric:
            raise MonitorDataError(f"categorical column {column!r} must hold integer category codes, not "
                                   f"{values.dtype}", "reference")


def reference_array(path: str, features: list[str]) -> Any:
    """The reference rows as the detector takes them: rows × features, in feature order."""
    frame = read_reference(Path(path))
    return frame[features].to_numpy()



def published_rows(output_path: str, input_files: list[str], features: list[str], target: str, sample: float,
                   seed: str) -> Any:
    """The rows of one published batch run a monitor tests: its predictions (the output), or the
    inputs it scored (the output's columns when it kept them, else the input files), sampled
    the same way for the same ``seed`` (the run id)."""
    import pandas as pd

    frame = pd.read_parquet(output_path)
    if target == "inputs" and not set(features) <= set(frame.columns):
        frame = pd.concat([pd.read_parquet(p) if p.endswith((".parquet", ".pq")) else pd.read_csv(p)
                           for p in input_files], ignore_index=True)
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise MonitorDataError(f"the published run at {output_path} has no column {', '.join(missing)}", "features")
    if sample < 1.0:
        frame = frame.sample(frac=sample, random_state=int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16))
    return frame[features].to_numpy()
