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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", default="iris", help="registered model name")
    parser.add_argument("--alias", default="champion", help="alias to point at the new version")
    parser.add_argument("--C", type=float, default=1.0, help="inverse regularisation strength")
    parser.add_argument("--project", type=Path, default=None, help="project directory (default: here)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)

    settings = load_settings(args.project)
    mlflow.set_tracking_uri(settings.tracking_uri)
    if settings.registry_uri:
        mlflow.set_registry_uri(settings.registry_uri)
    experiment = "mlopsfile-quickstart"
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=(settings.state_dir / "artifacts").as_uri())
    mlflow.set_experiment(experiment)

    features = load_iris(as_frame=True).frame
    x, y = features.drop(columns="target"), features["target"]
    x.columns = [c.replace(" (cm)", "").replace(" ", "_") for c in x.columns]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=args.C, max_iter=500)).fit(x, y)
    with mlflow.start_run() as run:
        mlflow.log_param("C", args.C)
        mlflow.log_metric("train_accuracy", float(model.score(x, y)))
        info = mlflow.sklearn.log_model(model, name="model", signature=infer_signature(x, model.predict(x)),
                                        input_example=x.head(3), registered_model_name=args.name)
    version = info.registered_model_version
    MlflowClient().set_registered_model_alias(args.name, args.alias, version)
    print(f"registered models:/{args.name}/{version} (run {run.info.run_id[:8]}) as @{args.alias}")


if __name__ == "__main__":
    main()
