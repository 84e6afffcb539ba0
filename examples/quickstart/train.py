"""Train an iris classifier and register it in the project's MLflow as models:/iris@champion.

The tracking URI is the one mlopsfile itself uses (mlopsfile.yaml, MLFLOW_TRACKING_URI,
or SQLite under .mlopsfile/), so `mlopsfile plan` finds the model without more setup.
"""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlopsfile.config import load_settings

EXPERIMENT = "mlopsfile-quickstart"


def iris_frame() -> tuple:
    """Iris features with column names that are valid identifiers, and the labels."""
    frame = load_iris(as_frame=True).frame
    features, labels = frame.drop(columns="target"), frame["target"]
    features.columns = [c.replace(" (cm)", "").replace(" ", "_") for c in features.columns]
    return features, labels


def train_and_register(tracking_uri: str, artifact_root: Path, name: str = "iris", alias: str | None = "champion",
                       regularisation: float = 1.0) -> str:
    """Fit, log and register one model version; point ``alias`` at it. Returns the version."""
    warnings.filterwarnings("ignore")
    mlflow.set_tracking_uri(tracking_uri)
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifact_root.resolve().as_uri())
    mlflow.set_experiment(EXPERIMENT)
    features, labels = iris_frame()
    model = make_pipeline(StandardScaler(), LogisticRegression(C=regularisation, max_iter=500)).fit(features, labels)
    with mlflow.start_run():
        mlflow.log_param("C", regularisation)
        mlflow.log_metric("train_accuracy", float(model.score(features, labels)))
        # cloudpickle, not MLflow's skops default: MLflow puts every format behind the same trust
        # setting, and importing skops scans all of scikit-learn (seconds in every new replica).
        info = mlflow.sklearn.log_model(model, name="model", signature=infer_signature(features, model.predict(features)),
                                        input_example=features.head(3), registered_model_name=name,
                                        serialization_format="cloudpickle")
    version = str(info.registered_model_version)
    if alias:
        MlflowClient(tracking_uri).set_registered_model_alias(name, alias, version)
    return version


def registered_alias(tracking_uri: str, name: str, alias: str) -> str | None:
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    try:
        return str(MlflowClient(tracking_uri).get_model_version_by_alias(name, alias).version)
    except mlflow.exceptions.MlflowException:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="iris", help="registered model name")
    parser.add_argument("--alias", default="champion", help="alias to point at the new version")
    parser.add_argument("--C", type=float, default=1.0, help="inverse regularisation strength")
    parser.add_argument("--project", type=Path, default=None, help="project directory (default: here)")
    parser.add_argument("--if-missing", action="store_true", help="do nothing when the alias is already set")
    args = parser.parse_args()
    settings = load_settings(args.project)
    if args.if_missing:
        existing = registered_alias(settings.tracking_uri, args.name, args.alias)
        if existing:
            print(f"models:/{args.name}@{args.alias} is version {existing}; not training again")
            return
    version = train_and_register(settings.tracking_uri, settings.state_dir / "artifacts", args.name, args.alias, args.C)
    print(f"registered models:/{args.name}/{version} as @{args.alias}")


if __name__ == "__main__":
    main()
