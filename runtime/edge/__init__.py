"""The edge data plane: an ONNX model and its manifest served over HTTP with onnxruntime and numpy only.

``predictor`` turns MLflow scoring requests into predictions; ``server`` is the HTTP/1.1
server an edge container runs (``python -m runtime.edge.server``); ``Dockerfile`` builds
that container from a prepared context.
"""
