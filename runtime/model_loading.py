"""Loading an MLflow pyfunc model inside a replica, as cheaply as MLflow allows."""

from __future__ import annotations

from typing import Any


def load_pyfunc(location: str) -> Any:
    """Load the model stored at ``location`` (a storage URI the control plane resolved from the pinned
    ``models:/`` or ``runs:/`` URI, so no registry or tracking-store lookup happens here).

    MLflow's check of the model's pip requirements against the installed packages reads the
    metadata of every installed distribution, which costs more than loading a small model;
    the replica skips it.
    """
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(location, suppress_warnings=True)
