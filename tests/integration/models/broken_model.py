"""A model whose every prediction raises: a candidate a canary must abort on its own.

Logged as MLflow "models from code", so Serve replicas load it without this repository.
"""

import mlflow.models
import mlflow.pyfunc


class BrokenModel(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        raise RuntimeError("this model version is broken")


mlflow.models.set_model(BrokenModel())
