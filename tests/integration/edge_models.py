"""Registry models for the edge tests beyond the quickstart's classifier: a regressor and a PyTorch net."""

from __future__ import annotations

from tests.integration.conftest import Registry


def _start(registry: Registry) -> None:
    import mlflow

    mlflow.set_tracking_uri(registry.tracking_uri)
    if mlflow.get_experiment_by_name(registry.train.EXPERIMENT) is None:  # type: ignore[attr-defined]
        registry.train.train_and_register(registry.tracking_uri, registry.artifacts, "edge-warmup", None)  # type: ignore[attr-defined]
    mlflow.set_experiment(registry.train.EXPERIMENT)  # type: ignore[attr-defined]


def register_regressor(registry: Registry, name: str) -> str:
    """A linear regression on iris: float64 in MLflow, float32 in ONNX, so the two differ in the last bits."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    _start(registry)
    features, labels = registry.train.iris_frame()  # type: ignore[attr-defined]
    model = LinearRegression().fit(features, labels.astype(float) * 1000.0)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name=name,
                                        signature=infer_signature(features, model.predict(features)),
                                        input_example=features.head(20))
    return str(info.registered_model_version)


def register_torch(registry: Registry, name: str, seed: int = 0, alias: str | None = "champion") -> str:
    """A small PyTorch MLP (4 -> 8 -> 3) on float32 tensors, logged in the pytorch flavor;
    ``seed`` picks its weights."""
    import mlflow
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    _start(registry)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    example = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    with torch.no_grad():
        output = net(torch.from_numpy(example)).numpy()
    with mlflow.start_run():
        info = mlflow.pytorch.log_model(net, name="model", registered_model_name=name,
                                        signature=infer_signature(example, output), input_example=example)
    version = str(info.registered_model_version)
    if alias:
        registry.set_alias(name, alias, version)
    return version
