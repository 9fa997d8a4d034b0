"""Fed-Grow federation: a party's ``FedGrowTrainer`` and the Flower app around it.

Importing this package needs neither Flower nor Ray: the Flower apps live in ``client_app``,
``server_app`` and ``simulate``, which are imported only by whoever runs a federation.
"""

from .trainer import FedGrowTrainer

__all__ = ["FedGrowTrainer"]
