"""A model that takes a whole second to answer: a shadow candidate callers must never wait for.

Logged as MLflow "models from code", so Serve replicas load it without this repository.
"""

import time

import mlflow.models
import mlflow.pyfunc

DELAY_S = 1.0


class SlowModel(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        time.sleep(DELAY_S)
        return [0] * len(model_input)


mlflow.models.set_model(SlowModel())
