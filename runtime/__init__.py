"""The data plane: code that runs inside Ray (Serve replicas, jobs) and in edge containers.

Nothing here imports the control plane (``mlopsfile``): Ray ships this package to the
cluster as a working directory and it is configured only through the values it is handed.
"""
