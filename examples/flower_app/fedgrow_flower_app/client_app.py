"""The Fed-Grow ClientApp; each SuperNode's ``partition-id`` picks its party in the federation config."""

from fedgrow_hf.federated.client_app import app

__all__ = ["app"]
