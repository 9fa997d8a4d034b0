"""Fed-Grow Flower app: the ServerApp and ClientApp of ``fedgrow_hf.federated``."""
