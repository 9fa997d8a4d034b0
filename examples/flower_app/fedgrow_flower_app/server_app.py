"""The Fed-Grow ServerApp; its config comes from ``[tool.flwr.app.config]`` (``config``, ``run-dir``)."""

from fedgrow_hf.federated.server_app import app

__all__ = ["app"]
